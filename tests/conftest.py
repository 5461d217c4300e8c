"Shared fixtures: small real datasets of every variant, generated once per test session."
from pathlib import Path

import pytest
import torch

from tda.data.mref import VARIANTS, generate_mref, mref_params

REPO = Path(__file__).resolve().parents[1]
TINY = {'train': 24, 'val': 8, 'test': 8}


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for it in items:
            if 'gpu' in it.keywords: it.add_marker(skip)


@pytest.fixture(scope='session')
def datasets(tmp_path_factory):
    "One tiny file per variant, made with two worker processes."
    d = tmp_path_factory.mktemp('mref')
    return {v: generate_mref(d/f'{v}.h5', mref_params(v, splits=TINY, seed=7), workers=2, chunk=8, progress=False)
            for v in VARIANTS}


@pytest.fixture
def env_paths(tmp_path, monkeypatch):
    "Point the data and runs folders of tda at a temporary folder."
    monkeypatch.setenv('TDA_DATA_DIR', str(tmp_path/'data'))
    monkeypatch.setenv('TDA_RUNS_DIR', str(tmp_path/'runs'))
    return tmp_path


@pytest.fixture(scope='session')
def tutorial_runs(tmp_path_factory):
    """Every tutorial (nbs/tutorials/*.ipynb) run once with papermill at CI's tiny parameters (nbs/tutorials/ci.yaml),
    in a scratch folder with its own data and runs folders:
    {name: {'executed', 'error', 'wall', 'wrote_in_nbs', 'runs'}}.
    The executed copies lie under `<root>/tutorials/`, as in nbs/, so the docs build can use them."""
    import time
    import papermill as pm
    import yaml
    root = tmp_path_factory.mktemp('tutorials')
    (root/'tutorials').mkdir()
    ci = yaml.safe_load((REPO/'nbs'/'tutorials'/'ci.yaml').read_text()) or {}
    res = {'root': root}
    for nb in sorted((REPO/'nbs'/'tutorials').glob('*.ipynb')):
        d = root/'scratch'/nb.stem
        d.mkdir(parents=True)
        before = {f: f.stat().st_mtime_ns for f in (REPO/'nbs').rglob('*')}
        mp, t0, err = pytest.MonkeyPatch(), time.time(), None
        mp.setenv('TDA_DATA_DIR', str(d/'data')); mp.setenv('TDA_RUNS_DIR', str(d/'runs'))
        try: pm.execute_notebook(str(nb), str(root/'tutorials'/nb.name), parameters=ci.get(nb.stem, {}), cwd=str(d),
                                 kernel_name='python3', progress_bar=False)
        except Exception as e: err = e
        finally: mp.undo()
        wrote = sorted(f for f in (REPO/'nbs').rglob('*') if before.get(f) != f.stat().st_mtime_ns)
        res[nb.stem] = {'executed': root/'tutorials'/nb.name, 'error': err, 'wall': time.time() - t0, 'runs': d/'runs',
                        'wrote_in_nbs': wrote}
    return res
