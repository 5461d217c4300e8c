"Shared fixtures: small real datasets of every variant, generated once per test session."
import copy
import os
from pathlib import Path

import pytest
import torch

from tda.data.mref import VARIANTS, generate_mref, mref_params

REPO = Path(__file__).resolve().parents[1]
TINY = {'train': 24, 'val': 8, 'test': 8}


def dead_parameters(models, loss_of, modes=('train', 'eval'), tol: float = 1e-12):
    """Names of the parameters that `loss_of(model)` depends on for none of `models` in none of `modes`.

    "Depends on" is a float64 gradient above `tol`. Float32 rounding gives a parameter with no gradient by construction
    a tiny one (4.7e-10 on a Zen 3 CPU, exactly 0 on a Zen 4), so "it moved in training" says nothing; in float64 such
    a gradient is below 1e-16, while the smallest real one in these tests is above 1e-9 (FCOS's upper FPN levels).
    `models` are copies of one model at different weights (as built, and after a few steps) and `modes` the two
    modes, because each hides some live parameters: at initialisation HAttNet's last softmax is exactly uniform, a
    few large steps on eight images can switch a TDAF flow's ReLUs off, a batch norm in training cancels a
    per-channel shift before it (torchvision's MobileNets have such biases), and in eval mode a batch norm with unit
    statistics can saturate a gate (MobileNetV3's hard-sigmoid squeeze-excitation). A parameter that is dead by
    construction is dead in all of them. `modes=('train',)` for a loss that exists only in training."""
    dead = None
    for model in models:
        for mode in modes:
            m = copy.deepcopy(model).double().train(mode == 'train')
            loss_of(m).backward()
            zero = {n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().max().item() <= tol}
            dead = zero if dead is None else dead & zero
    return sorted(dead)


def pytest_configure(config):
    "These tests test the package of their own checkout: refuse to test another one by mistake."
    import tda
    here = Path(tda.__file__).resolve().parent
    if here != REPO/'tda':
        raise pytest.UsageError(f"the tests of {REPO} import tda from {here}, another copy; install this checkout "
                                f"first: pip install -e {REPO}")


    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    if workers > 1 and 'OMP_NUM_THREADS' not in os.environ:  # share the cores: a worker and its subprocesses
        cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
        os.environ['OMP_NUM_THREADS'] = str(max(1, cores // workers))
        torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


def pytest_xdist_auto_num_workers(config):
    "`-n auto`: one worker per core, at most four (each worker trains small models and holds its own datasets)."
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1, 4))


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


NEEDS_SLURM = {'06_cluster'}  # tutorials that run their steps as jobs of the test cluster (`slurm_cluster`)


@pytest.fixture(scope='session')
def tutorial_runs(tmp_path_factory, request):
    """Every tutorial (nbs/tutorials/*.ipynb) run once with papermill at CI's tiny parameters (nbs/tutorials/ci.yaml),
    in a scratch folder with its own data and runs folders:
    {name: {'executed', 'error', 'wall', 'wrote_in_nbs', 'runs', 'no_slurm'}}; those of NEEDS_SLURM against the
    test cluster, or without one ('no_slurm': why, and whether to skip or fail).
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
        no_slurm = None
        if nb.stem in NEEDS_SLURM:
            try: request.getfixturevalue('slurm_cluster')
            except (pytest.skip.Exception, pytest.fail.Exception) as e:
                no_slurm = ('skip' if isinstance(e, pytest.skip.Exception) else 'fail', str(e))
        before = {f: f.stat().st_mtime_ns for f in (REPO/'nbs').rglob('*')}
        mp, t0, err = pytest.MonkeyPatch(), time.time(), None
        mp.setenv('TDA_DATA_DIR', str(d/'data')); mp.setenv('TDA_RUNS_DIR', str(d/'runs'))
        try: pm.execute_notebook(str(nb), str(root/'tutorials'/nb.name), parameters=ci.get(nb.stem, {}), cwd=str(d),
                                 kernel_name='python3', progress_bar=False)
        except Exception as e: err = e
        finally: mp.undo()
        wrote = sorted(f for f in (REPO/'nbs').rglob('*') if before.get(f) != f.stat().st_mtime_ns)
        res[nb.stem] = {'executed': root/'tutorials'/nb.name, 'error': err, 'wall': time.time() - t0, 'runs': d/'runs',
                        'wrote_in_nbs': wrote, 'no_slurm': no_slurm}
    return res


def _slurm_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location('tda_test_slurm_cluster', REPO/'tests'/'slurm'/'cluster.py')
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


@pytest.fixture(scope='session')
def slurm_cluster():
    """A real single-node SLURM cluster (tests/slurm/: munged, slurmctld and slurmd on this machine), started once for
    the session with SLURM_CONF pointing every client at it, and stopped afterwards with nothing left running. Skipped,
    with the install command, where SLURM is missing or does not start (an error instead with TDA_REQUIRE_SLURM=1)."""
    import os
    slurm = _slurm_module()
    give_up = pytest.fail if os.environ.get('TDA_REQUIRE_SLURM') == '1' else pytest.skip
    if lacking := slurm.missing():
        give_up(f"SLURM is not installed here ({', '.join(lacking)} missing): {slurm.INSTALL}")
    c = slurm.Cluster()
    try: c.start()
    except RuntimeError as e:
        c.remove()
        give_up(f"SLURM did not start here ({str(e)[:300]}); it needs {slurm.INSTALL}")
    mp = pytest.MonkeyPatch()
    mp.setenv('SLURM_CONF', str(c.conf))
    try: yield c
    finally:
        mp.undo()
        left = c.stop()
        c.remove()
        assert not left, f"the SLURM test cluster left {left} running"
