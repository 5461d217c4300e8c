"Every experiment notebook runs through papermill with tiny parameters."
import json

import h5py
import nbformat
import papermill as pm

from conftest import REPO
from tda.data.imagefolder import mref_crops

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



def test_make_datasets_writes_where_its_parameters_say(tmp_path, env_paths):
    "Relative paths follow the one rule: here when there, else the data folder (file) and the runs folder (summary)."
    work = tmp_path/'work'
    work.mkdir()
    pm.execute_notebook(EXPERIMENTS/'make_datasets.ipynb', tmp_path/'run.ipynb', cwd=work, progress_bar=False,
                        parameters=dict(variant='mref', seed=2, output_path='tiny.h5', output_dir='summary',
                                        splits={'train': 4, 'val': 2, 'test': 2}))
    assert (env_paths/'data'/'tiny.h5').is_file() and list(work.iterdir()) == []
    summary = json.loads((env_paths/'runs'/'summary'/'summary.json').read_text())
    assert summary['file'] == str(env_paths/'data'/'tiny.h5')


def test_mref_table1(tmp_path, env_paths, datasets):
    out = tmp_path/'table1'
    pm.execute_notebook(EXPERIMENTS/'mref_table1.ipynb', tmp_path/'run.ipynb', cwd=tmp_path, progress_bar=False,
                        parameters=dict(models=['stn', 'soft', 'hard', 'hattnet', 'hattnet_ctx'], epochs=1, batch_size=40,
                                        output_dir=str(out),
                                        data={'mref': str(datasets['mref'])}, n_samples=2, progress=False))
    summary = json.loads((out/'summary.json').read_text())
    res = summary['results']['mref']
    assert set(res) == {'stn', 'soft', 'hard', 'hattnet', 'hattnet_ctx'} and all(r['epochs_run'] == 1 for r in res.values())
    assert all(0 <= r['tps'] <= 1 and len(r['accuracy_per_scale']) == 5 for r in res.values())
    for f in ('accuracy_per_scale.png', 'pr_curves.png', 'attention_mref.png'):
        assert (out/f).read_bytes()[:4] == b'\x89PNG'
    with h5py.File(out/'results.h5') as f:
        assert len(f['mref/soft/predictions']) == res['soft']['n'] and 'mref/hattnet_ctx/attention/layer4' in f
    nb = nbformat.read(tmp_path/'run.ipynb', as_version=4)
    text = json.dumps([c.get('outputs', []) for c in nb.cells])
    assert 'HAttNet-CTX' in text and '98.51' in text and 'image/png' in text  # the table beside the paper's, figures
    assert not any(p.name.endswith(('.h5', '.png', '.json')) for p in EXPERIMENTS.rglob('*'))  # nothing inside nbs/


def test_tdan_classification(tmp_path, env_paths, datasets):
    "The TDAN experiment end to end on MREF digit crops: training, resolution sweep, per-pass maps, localisation."
    crops = mref_crops(datasets['mref'], tmp_path/'crops', size=32, progress=False)
    out = tmp_path/'tdan'
    pm.execute_notebook(EXPERIMENTS/'tdan_classification.ipynb', tmp_path/'run.ipynb', cwd=tmp_path, progress_bar=False,
                        parameters=dict(data=str(crops), image_size=32, epochs=2, batch_size=32, resolutions=[32, 40],
                                        n_cams=2, output_dir=str(out), progress=False))
    s = json.loads((out/'summary.json').read_text())
    td, plain = s['results']['resnet18_tdjoint_t2_m1'], s['results']['resnet18']
    assert len(td['top1_per_pass']) == 2 and len(plain['top1_per_pass']) == 1 and td['epochs_run'] == 2
    assert td['params_m'] > plain['params_m'] and {r['size'] for r in s['resolution_sweep']} == {32, 40}
    assert len(s['localisation']['resnet18_tdjoint_t2_m1']['passes']) == 2
    assert all(0 <= r[k] <= 1 for r in (td, plain) for k in ('top1', 'maxboxacc_v2', 'gt_known_loc', 'any_pass_accuracy'))
    for f in ('resolution.png', 'cams.png'): assert (out/f).read_bytes()[:4] == b'\x89PNG'
    assert (out/'resnet18_tdjoint_t2_m1'/'checkpoints'/'best.pt').is_file()


def test_tdaf_classification(tmp_path, env_paths, datasets):
    "The TDAF experiment end to end: a backbone and its TDAF version trained side by side, every flow's attention."
    crops = mref_crops(datasets['mref'], tmp_path/'crops', size=32, progress=False)
    out = tmp_path/'tdaf'
    pm.execute_notebook(EXPERIMENTS/'tdaf_classification.ipynb', tmp_path/'run.ipynb', cwd=tmp_path, progress_bar=False,
                        parameters=dict(data=str(crops), image_size=32, epochs=1, batch_size=32, n_maps=2,
                                        output_dir=str(out), progress=False))
    s = json.loads((out/'summary.json').read_text())['results']
    td, plain = s['resnet18_tdaf_anar3_f3'], s['resnet18']
    assert td['gmacs'] > plain['gmacs'] and td['params_m'] > plain['params_m'] and td['epochs_run'] == 1
    assert sorted(k for k in td if k.startswith('tps_')) == ['tps_stage1_flow2', 'tps_stage1_flow3', 'tps_stage2_flow2',
                                                             'tps_stage2_flow3', 'tps_stage3_flow3']
    assert all(0 <= td[k] <= 1 for k in td if k.startswith('tps_'))
    assert (out/'attention_resnet18_tdaf_anar3_f3.png').read_bytes()[:4] == b'\x89PNG'
