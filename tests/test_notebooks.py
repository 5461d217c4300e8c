"The tests inside the library notebooks (nbs/*.ipynb) and the front page, run as nbdev-test runs them."
import signal

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

from conftest import REPO

NOTEBOOKS = sorted((REPO/'nbs').glob('[0-9]*.ipynb')) + [REPO/'nbs'/'index.ipynb']


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb, env_paths, monkeypatch):
    monkeypatch.chdir(REPO)
    flags = get_config().tst_flags
    sigint = signal.getsignal(signal.SIGINT)  # nbdev's test_nb installs its own Ctrl-C handler and leaves it there
    try: ok, _ = run_notebook(nb, skip_flags=flags.split() if isinstance(flags, str) else flags)
    finally: signal.signal(signal.SIGINT, sigint)
    assert ok, f"{nb.name} failed; run `nbdev-test {nb.relative_to(REPO)}` to see the cell"
