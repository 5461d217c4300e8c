"""The wheel is whole: built from a copy of the tree, installed into a fresh environment, used from an empty folder.

The fresh environment is a new venv that sees the packages of the environment running the tests (a .pth file lists its
site-packages), whether that is the base interpreter or a venv: `--system-site-packages` would see the base
interpreter's only, and the wheel could not import what a venv holds."""
import ast
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.timeout(600)
SHIPPED = next(ast.literal_eval(n.value) for n in ast.parse((REPO/'setup.py').read_text()).body  # what setup.py copies
               if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == 'SHIPPED')
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


def see_active_environment(py: Path):
    "Make the venv of `py` see the packages of the environment running this test, after its own (a .pth file)."
    ours = [p for p in dict.fromkeys([*site.getsitepackages(), *sys.path])
            if p.endswith(('site-packages', 'dist-packages')) and Path(p).is_dir()
            and not Path(p).resolve().is_relative_to(REPO)]
    r = subprocess.run([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], capture_output=True,
                       text=True, check=True, timeout=60)
    (Path(r.stdout.strip())/'zz_active_environment.pth').write_text('\n'.join(ours) + '\n')


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
    wheel, = (tmp/'dist').glob('tda_attention-*.whl')
    venv = tmp/'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv], check=True, timeout=120)
    py = venv/('Scripts' if os.name == 'nt' else 'bin')/'python'
    see_active_environment(py)
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
    assert 'Name: tda-attention' in meta.splitlines()  # our name on the registry: `tda` there is another library
    lab = ('jupyterlab>=4', 'ipywidgets>=8', 'nbconvert>=7', 'tensorboard>=2.14')  # tensorboard: log_with
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
    assert 'hattnet_ctx: test accuracy' in r.stdout and 'no settings.ini' not in r.stderr, r.stderr  # not again
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


def test_tutorials_from_the_wheel(wheel_env, tmp_path):
    "`tda tutorials DIR` puts the shipped front page and tutorials where a user works; the front page runs there."
    _, tree, py, env = wheel_env
    r = subprocess.run(['tda', 'tutorials', 'mine'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"jupyter lab {(tmp_path/'mine').resolve()}" in r.stdout, r.stdout + r.stderr
    names = sorted(f.relative_to(tmp_path/'mine').as_posix() for f in (tmp_path/'mine').rglob('*.ipynb'))
    assert names == ['index.ipynb'] + [f"tutorials/{t.name}" for t in sorted((tree/'nbs'/'tutorials').glob('*.ipynb'))]
    index = (tmp_path/'mine'/'index.ipynb').read_text()
    assert '(tutorials/01_mnist_reference.ipynb)' in index and '(https://' in index and '00_core.ipynb' not in index
    r = subprocess.run(['tda', 'tutorials', 'mine'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and '--overwrite' in r.stderr
    # the front page runs in the copy, outside any checkout: the shipped Table 1 report, a model of the wheel
    code = ("import papermill as pm; pm.execute_notebook('mine/index.ipynb', 'ran.ipynb', kernel_name='python3', "
            "progress_bar=False)")
    r = subprocess.run([py, '-c', code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    outputs = [o for c in json.loads((tmp_path/'ran.ipynb').read_text())['cells'] for o in c.get('outputs', [])]
    assert any('image/png' in o.get('data', {}) for o in outputs)
    assert any('HAttNet-CTX' in ''.join(o.get('data', {}).get('text/markdown', '')) for o in outputs)
