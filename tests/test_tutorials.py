"""Every tutorial (nbs/tutorials/*.ipynb) runs top to bottom with papermill at CI's tiny parameters
(nbs/tutorials/ci.yaml), in a scratch folder, writing nothing inside nbs/."""
import time

import nbformat
import papermill as pm
import pytest
import yaml

from conftest import REPO

TUTORIALS = sorted((REPO/'nbs'/'tutorials').glob('*.ipynb'))
CI = yaml.safe_load((REPO/'nbs'/'tutorials'/'ci.yaml').read_text())


def test_every_tutorial_has_parameters():
    "A `parameters` cell in each tutorial, tiny parameters for each in ci.yaml, and no ci.yaml entry without a tutorial."
    assert len(TUTORIALS) >= 5
    assert set(CI) == {t.stem for t in TUTORIALS}
    for t in TUTORIALS:
        cells = nbformat.read(t, as_version=4).cells
        assert any('parameters' in c.metadata.get('tags', []) for c in cells), f"{t.name}: no cell tagged `parameters`"
        assert not any('nbdev_export' in c.source for c in cells), t.name


@pytest.mark.parametrize('nb', TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(nb, tmp_path, monkeypatch):
    monkeypatch.setenv('TDA_DATA_DIR', str(tmp_path/'data'))
    monkeypatch.setenv('TDA_RUNS_DIR', str(tmp_path/'runs'))
    before = {f: f.stat().st_mtime_ns for f in (REPO/'nbs').rglob('*')}
    t0 = time.time()
    out = pm.execute_notebook(str(nb), str(tmp_path/nb.name), parameters=CI[nb.stem], cwd=str(tmp_path),
                              kernel_name='python3', progress_bar=False)
    wall = time.time() - t0
    outputs = [o for c in out.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    assert not [o for o in outputs if o.output_type == 'error']
    assert any('image/png' in o.get('data', {}) for o in outputs), f"{nb.name}: no figure"
    assert (tmp_path/'runs'/'tutorials').is_dir(), f"{nb.name}: wrote nothing under the runs folder"
    changed = sorted(f for f in (REPO/'nbs').rglob('*') if before.get(f) != f.stat().st_mtime_ns)
    assert not changed, f"{nb.name} wrote inside nbs/: {changed}"
    assert wall < 240, f"{nb.name} took {wall:.0f} s at its tiny parameters"
