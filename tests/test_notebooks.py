"The tests inside the library notebooks (nbs/*.ipynb) and the front page, each run as nbdev-test runs it."
import subprocess
import sys

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO/'nbs').glob('[0-9]*.ipynb')) + [REPO/'nbs'/'index.ipynb']

# nbdev's own runner, with the project's flags and cell timeout, in a process of its own: a notebook never sees what
# another registered, and its temporary folders go when its process ends (an xdist worker exits without exit hooks)
RUN = """import sys
from nbdev.config import get_config
from nbdev.test import test_nb
flags = get_config().tst_flags
ok, _ = test_nb(sys.argv[1], skip_flags=flags.split() if isinstance(flags, str) else flags)
sys.exit(0 if ok else 1)
"""


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb, env_paths):
    # TMPDIR stays short: a DataLoader's workers make Unix sockets there (a path of at most 107 bytes)
    r = subprocess.run([sys.executable, '-c', RUN, str(nb)], cwd=REPO, capture_output=True, text=True, timeout=850)
    assert r.returncode == 0, (f"{nb.name} failed; run `nbdev-test {nb.relative_to(REPO)}` to see the cell\n"
                               + (r.stdout + r.stderr)[-3000:])
