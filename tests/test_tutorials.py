"""Every tutorial (nbs/tutorials/*.ipynb) runs top to bottom with papermill at CI's tiny parameters
(nbs/tutorials/ci.yaml), in a scratch folder, writing nothing inside nbs/ (the runs: conftest's `tutorial_runs`)."""
import nbformat
import pytest
import yaml

from conftest import REPO

TUTORIALS = sorted((REPO/'nbs'/'tutorials').glob('*.ipynb'))
CI = yaml.safe_load((REPO/'nbs'/'tutorials'/'ci.yaml').read_text())


def test_every_tutorial_has_parameters():
    "A `parameters` cell in each tutorial, tiny parameters for each in ci.yaml, no ci.yaml entry without a tutorial."
    assert len(TUTORIALS) >= 5
    assert set(CI) == {t.stem for t in TUTORIALS}
    for t in TUTORIALS:
        cells = nbformat.read(t, as_version=4).cells
        assert any('parameters' in c.metadata.get('tags', []) for c in cells), f"{t.name}: no cell tagged `parameters`"
        assert not any('nbdev_export' in c.source for c in cells), t.name


@pytest.mark.parametrize('nb', TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(nb, tutorial_runs):
    r = tutorial_runs[nb.stem]
    if r['error'] is not None: raise r['error']
    if r['no_slurm']:  # it ran cleanly without a cluster, saying what each step would do
        kind, why = r['no_slurm']
        (pytest.fail if kind == 'fail' else pytest.skip)(why)
    out = nbformat.read(r['executed'], as_version=4)
    outputs = [o for c in out.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    assert not [o for o in outputs if o.output_type == 'error']
    assert any('image/png' in o.get('data', {}) for o in outputs), f"{nb.name}: no figure"
    assert (r['runs']/'tutorials').is_dir(), f"{nb.name}: wrote nothing under the runs folder"
    assert not r['wrote_in_nbs'], f"{nb.name} wrote inside nbs/: {r['wrote_in_nbs']}"
