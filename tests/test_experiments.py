"Every experiment notebook runs through papermill with tiny parameters."
import json

import h5py
import nbformat
import papermill as pm

from conftest import REPO

EXPERIMENTS = REPO/'nbs'/'experiments'


def test_every_experiment_has_a_parameters_cell():
    for nb in EXPERIMENTS.glob('*.ipynb'):
        cells = nbformat.read(nb, as_version=4).cells
        assert any('parameters' in c.metadata.get('tags', []) for c in cells), nb.name
        assert not any('nbdev_export' in c.source for c in cells), f"{nb.name}: no nbdev_export() in experiments"


def test_make_datasets(tmp_path, env_paths):
    out = tmp_path/'tiny_mbg.h5'
    pm.execute_notebook(EXPERIMENTS/'make_datasets.ipynb', tmp_path/'run.ipynb', cwd=tmp_path, progress_bar=False,
                        parameters=dict(variant='mbg', size='smoke', seed=5, output_path=str(out),
                                        splits={'train': 8, 'val': 4, 'test': 4}))
    with h5py.File(out) as f:
        assert f.attrs['variant'] == 'mbg' and f.attrs['seed'] == 5 and f['train/images'].shape[0] == 8
    nb = nbformat.read(tmp_path/'run.ipynb', as_version=4)
    text = json.dumps([c.get('outputs', []) for c in nb.cells])
    assert 'image/png' in text and 'mean scale' in text
