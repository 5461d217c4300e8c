"The wheel is whole: built from a copy of the tree, installed into a fresh environment, used from an empty folder."
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.timeout(600)
SHIPPED = {'data_gen': ('*.yaml',), 'configs': ('*.yaml',), 'nbs/experiments': ('*.ipynb', '*.yaml')}
IGNORE = shutil.ignore_patterns('.git', 'runs', 'build', 'dist', '*.egg-info', '__pycache__', '.pytest_cache', '_docs',
                                '_proc', 'shipped', '*.h5', '*.png', '.cache', 'MNIST', '*_crops*', '.*.tmp-*')


def copy_tree(dst: Path):
    "The files of the checkout a build would see: git's tracked and new unignored files (a plain copy without git)."
    r = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO, capture_output=True)
    if r.returncode != 0: return shutil.copytree(REPO, dst, ignore=IGNORE)
    for name in filter(None, r.stdout.decode().split('\0')):
        if (REPO/name).is_file():
            (dst/name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO/name, dst/name)


@pytest.fixture(scope='module')
def wheel_env(tmp_path_factory):
    "(wheel, venv python, environment) of a wheel built from a copy of the tree and installed into a new venv."
    tmp = tmp_path_factory.mktemp('wheel')
    tree = tmp/'tree'
    copy_tree(tree)
    weights = tree/'tda'/'weights'
    if not list(weights.glob('*.pt')):  # no trained weights yet: a stand-in pair proves the folder is package data
        weights.mkdir(parents=True, exist_ok=True)
        (weights/'wheel-probe.pt').write_bytes(b'probe')
        (weights/'wheel-probe.json').write_text('{}')
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '--no-input']
    r = subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-w', tmp/'dist', tree],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheel, = (tmp/'dist').glob('tda-*.whl')
    venv = tmp/'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', venv], check=True,
                   timeout=120)
    py = venv/('Scripts' if os.name == 'nt' else 'bin')/'python'
    r = subprocess.run([*pip, '--python', py, 'install', '--no-deps', '--no-index', '--force-reinstall', wheel],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    home = tmp/'home'
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(('TDA_', 'XDG_', 'PYTHON'))}
    env.update(HOME=str(home), PATH=f"{py.parent}{os.pathsep}{env.get('PATH', '')}")
    return wheel, tree, py, env


def test_the_wheel_carries_the_shipped_files_weights_and_licence(wheel_env):
    wheel, tree, _, _ = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, patterns in SHIPPED.items():
        files = [f for p in patterns for f in (tree/folder).glob(p)]
        assert files and {f"tda/shipped/{folder}/{f.name}" for f in files} <= names, folder
    assert {f"tda/weights/{f.name}" for f in (tree/'tda'/'weights').iterdir()} <= names
    licence, = [n for n in names if n.endswith('.dist-info/licenses/LICENSE')]
    assert 'Apache License' in zipfile.ZipFile(wheel).read(licence).decode()
    assert 'Apache License' in (REPO/'LICENSE').read_text() and (tree/'LICENSE').is_file()
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    assert 'License-Expression: Apache-2.0' in meta and 'Provides-Extra: lab' in meta
    lab = ('jupyterlab>=4', 'ipywidgets>=8', 'nbconvert>=7')
    assert {f'Requires-Dist: {p}; extra == "lab"' for p in lab} <= set(meta.splitlines())


def test_commands_by_name_from_an_empty_folder(wheel_env, tmp_path):
    "Outside any checkout the installed package finds its recipes, configs and notebooks by name."
    _, _, py, env = wheel_env
    work = tmp_path/'empty'
    work.mkdir()
    def run(*args, ok=True):
        r = subprocess.run([*map(str, args)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r
    where = run(py, '-c', 'import tda, tda.core; print(tda.__file__); print(tda.core.shipped_root())').stdout.split()
    assert all(Path(w).is_relative_to(py.parent.parent) for w in where), where  # the wheel's package, not ours
    r = run('tda', 'data', 'generate', 'mref_smoke', '--set', 'splits={train: 4, val: 2, test: 2}', '--workers', 1,
            '--quiet')
    assert 'wrote' in r.stdout and '(mref, seed 0: train 4 images' in r.stdout
    user = Path(env['HOME'])/'.local'/'share'/'tda' if sys.platform.startswith('linux') else None
    if user: assert (user/'data'/'mref_smoke.h5').is_file() and (user/'data'/'.cache').is_dir()  # the user's folder
    assert r.stderr.count('tda: no settings.ini here') == 1 and 'TDA_DATA_DIR' in r.stderr, r.stderr  # said once
    r = run('tda', 'train', 'hattnet_ctx_mref_smoke', '--set', 'epochs=1', '--set', 'batch_size=10', '--quiet')
    assert 'hattnet_ctx: test accuracy' in r.stdout
    if user: assert (user/'runs'/'hattnet_ctx-mref_smoke-seed0'/'results.json').is_file()
    r = run('tda', 'sweep', '--show', 'mref_table1')
    assert 'Parameters of' in r.stdout and 'variants' in r.stdout and 'shipped' in r.stdout
    assert 'hattnet_ctx_mref_paper' in run('tda', 'train', '--help').stdout  # names a shipped config
    r = run('tda', 'train', 'no_such_config', ok=False)
    assert r.returncode == 2 and 'config no_such_config not found' in r.stderr and 'hattnet_ctx_mref_paper' in r.stderr
    r = run('tda', 'train', 'hattnet_ctx_mref_paper', ok=False)  # the config is found; its paper-size data is not made
    assert 'mref_paper.h5 not found' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert run(py, '-m', 'tda', '--help').stdout.startswith('usage: tda')
    assert list(work.iterdir()) == []  # nothing lands in the folder a command starts in
