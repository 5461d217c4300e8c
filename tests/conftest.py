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
