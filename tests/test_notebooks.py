"The tests inside the library notebooks (nbs/*.ipynb) and the front page, run as nbdev-test runs them."
import signal
import tempfile

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

import tda.core
import tda.models  # noqa: F401  (every registration made before the first snapshot below)
import tda.train  # noqa: F401
from conftest import REPO

NOTEBOOKS = sorted((REPO/'nbs').glob('[0-9]*.ipynb')) + [REPO/'nbs'/'index.ipynb']


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb, env_paths, monkeypatch):
    monkeypatch.chdir(REPO)
    # the notebook's temporary folders under this test's own (pytest removes old ones): a notebook removes them when
    # it ends, but an xdist worker exits without the interpreter's exit hooks
    (env_paths/'tmp').mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(env_paths/'tmp'))
    monkeypatch.setenv('TMPDIR', str(env_paths/'tmp'))
    flags = get_config().tst_flags
    sigint = signal.getsignal(signal.SIGINT)  # nbdev's test_nb installs its own Ctrl-C handler and leaves it there
    # a notebook's cells register their own copies of its classes in this process's registries: put ours back after,
    # so that later tests build the package's classes (isinstance checks hold) whatever the order
    registries = [r for r in vars(tda.core).values() if isinstance(r, tda.core.Registry)]
    saved = [(dict(r._items), dict(r._tasks), list(r._patterns)) for r in registries]
    try: ok, _ = run_notebook(nb, skip_flags=flags.split() if isinstance(flags, str) else flags)
    finally:
        signal.signal(signal.SIGINT, sigint)
        for r, (items, tasks, patterns) in zip(registries, saved): r._items, r._tasks, r._patterns = items, tasks, patterns
    assert ok, f"{nb.name} failed; run `nbdev-test {nb.relative_to(REPO)}` to see the cell"
