"The trainer as users run it: `tda train` on one process and under `accelerate launch` on two."
import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest
import torch
import yaml

from tda.train import TrainConfig, train

# Two processes train on the same global batches as one. Without batch norm and dropout (which depend on the other
# samples of a batch, or on random masks), the runs differ only in the order of floating-point sums:
TOL_CURVE = 1e-3   # relative, per-epoch train and validation loss
TOL_METRIC = 0.02  # absolute, test accuracy / strength / pointing (one question of the 56 is 0.018)


def run(args, env=None, timeout=600):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def tda_train(*args):
    return run([sys.executable, '-m', 'tda.cli', 'train', *map(str, args)])


def launch(nproc, *args):
    # --multi_gpu starts torchrun; without CUDA Accelerate runs the processes on the CPU (gloo)
    # a free rendezvous port: other tests may launch at the same time (pytest-xdist workers)
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    # torchrun's agent leaves its log folder (torchelastic_*) in TMPDIR: a short one of ours, removed after
    with tempfile.TemporaryDirectory(prefix='tda-launch-') as tmp:
        return run([sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', str(nproc),
                    '--num_machines', '1', '--main_process_port', str(port), '--mixed_precision', 'no',
                    '--dynamo_backend', 'no', '-m', 'tda.cli', 'train', *map(str, args)], env={'TMPDIR': tmp})


@pytest.fixture
def config(tmp_path, datasets):
    cfg = {'model': 'hattnet_ctx', 'model_args': {'head_norm': False, 'dropout': 0.0}, 'data': str(datasets['mref']),
           'preset': 'seo2016', 'epochs': 2, 'batch_size': 40, 'eval_batch_size': 14, 'seed': 11,
           'progress': False}  # eval batch 14: the last test batch is padded on two processes
    p = tmp_path/'cfg.yaml'
    p.write_text(yaml.safe_dump(cfg))
    return p


def results(d): return json.loads((d/'results.json').read_text())


def test_two_processes_agree_with_one(config, tmp_path):
    r1 = tda_train(config, '--set', f'out_dir={tmp_path/"one"}')
    assert r1.returncode == 0, r1.stderr
    assert 'test accuracy' in r1.stdout
    r2 = launch(2, config, '--set', f'out_dir={tmp_path/"two"}')
    assert r2.returncode == 0, r2.stderr[-3000:]
    one, two = results(tmp_path/'one'), results(tmp_path/'two')
    assert one['processes'] == 1 and two['processes'] == 2
    assert one['test']['n'] == two['test']['n']  # gather_for_metrics drops the padding: every question once
    for k in ('accuracy', 'tps', 'pointing'):
        assert abs(one['test'][k] - two['test'][k]) <= TOL_METRIC, (k, one['test'][k], two['test'][k])
    h1, h2 = (json.loads((tmp_path/d/'metrics.json').read_text()) for d in ('one', 'two'))
    for a, b in zip(h1, h2):
        for k in ('train_loss', 'val_loss'):
            assert a[k] == pytest.approx(b[k], rel=TOL_CURVE), (k, a[k], b[k])
    # the same checkpoint evaluated on two processes gives exactly the one-process test metrics
    r3 = launch(2, config, '--set', f'out_dir={tmp_path/"one"}', '--resume')
    assert r3.returncode == 0, r3.stderr[-3000:]
    again = results(tmp_path/'one')
    assert again['processes'] == 2
    for k in ('n', 'accuracy', 'loss', 'tps', 'uniform_tps', 'pointing', 'average_precision'):
        assert again['test'][k] == pytest.approx(one['test'][k], rel=1e-5, abs=1e-6), k
    assert again['test']['count_per_scale'] == one['test']['count_per_scale']


def test_non_finite_loss_stops_with_a_clear_message(config, tmp_path):
    r = tda_train(config, '--set', f'out_dir={tmp_path/"nan"}', '--set', 'lr=1e12', '--set', 'clip_grad_norm=null',
                  '--set', 'optimizer=sgd')
    assert r.returncode == 2 and 'non-finite at epoch' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    rec = results(tmp_path/'nan')
    assert 'non-finite' in rec['stopped'] and rec['step'] >= 0


@pytest.mark.parametrize('args, match', [
    (['--set', 'learning_rate=0.1'], "unknown training config key(s) ['learning_rate']"),
    (['--set', 'learning_rate=0.1'], "learning_rate: did you mean lr?"),
    (['--set', 'epoch=3'], 'epoch: did you mean epochs?'),
    (['--set', 'model=hattnet_cxt'], "the closest known: hattnet_ctx"),
    (['--set', 'log_with=tensorbored'], "are not Accelerate trackers"),
    (['--set', 'model=resnet9000'], "unknown model 'resnet9000'"),
    (['--set', 'data=no_such.h5'], 'no_such.h5 not found'),
    (['--set', 'batch_size=0'], 'batch sizes must be positive'),
    (['--resume'], 'nothing to resume'),
    (['--set', 'mixed_precision=fp16', '--set', 'cpu=true'], "'fp16' needs a GPU"),
    (['--set', 'momentum=.nan'], 'momentum must be finite (not NaN or infinity)'),
    (['--set', 'weight_decay=.inf'], 'weight_decay must be finite'),
    (['--set', 'epochs=2147483648'], 'epochs must be at most 2**31 - 1'),
    (['--set', 'eval_batch_size=9223372036854775808'], 'eval_batch_size must be at most 2**31 - 1'),
    (['--set', 'variant=mdist'], "holds MREF data, but the config expects variant 'mdist'"),
])
def test_bad_config_is_one_clear_error(config, tmp_path, args, match):
    r = tda_train(config, '--set', f'out_dir={tmp_path/"bad"}', *args)
    assert r.returncode == 2 and match in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_existing_run_is_not_overwritten(config, tmp_path):
    out = tmp_path/'keep'
    out.mkdir(); (out/'notes.txt').write_text('mine')
    r = tda_train(config, '--set', f'out_dir={out}', '--overwrite')
    assert r.returncode == 2 and 'does not look like a tda run folder' in r.stderr
    assert (out/'notes.txt').read_text() == 'mine'


@pytest.mark.gpu
def test_gpu_bf16(datasets, tmp_path):
    res = train(TrainConfig(model='hattnet_ctx', data=str(datasets['mref']), epochs=1, batch_size=40, mixed_precision='bf16',
                            out_dir=str(tmp_path/'gpu'), progress=False))
    assert torch.cuda.is_available() and res['test']['n'] > 0 and 0 <= res['test']['accuracy'] <= 1


# ---- an ImageFolder of real JPEGs: the ImageNet path at 32 px ----

@pytest.fixture(scope='module')
def jpegs(tmp_path_factory):
    """A tiny ImageFolder of real JPEGs: MNIST digits 0-3 on coloured backgrounds, 32 px; train 8 per class, val and
    test 3 per class; one training JPEG truncated (its header is right, its data is not)."""
    import numpy as np
    from PIL import Image
    from tda.data.mnist import load_mnist
    m, rng = load_mnist('test'), np.random.default_rng(3)
    root = tmp_path_factory.mktemp('jpegs')/'digits'
    taken = {c: list(np.flatnonzero(m.labels == c)[:14]) for c in range(4)}
    for split, n in (('train', 8), ('val', 3), ('test', 3)):
        for c in range(4):
            (root/split/str(c)).mkdir(parents=True)
            for k in range(n):
                digit = m.images[taken[c].pop()].astype(float)[..., None] / 255
                bg, ink = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
                img = (bg * (1 - digit) + ink * digit).astype(np.uint8)
                Image.fromarray(img).resize((32, 32), Image.BILINEAR).save(root/split/str(c)/f"{k}.jpg", quality=90)
    cut = root/'train'/'2'/'5.jpg'
    cut.write_bytes(cut.read_bytes()[:300])
    return root


@pytest.fixture
def folder_config(tmp_path, jpegs):
    "The TDAN preset on the JPEG folder: merged dataset_args, 3 short epochs, an evaluation batch 2 processes cannot split."
    cfg = {'preset': 'jaiswal2022', 'model': 'resnet18_tdjoint_t2_m1', 'data': str(jpegs),
           'dataset_args': {'size': 32, 'crop_pct': 1.0, 'max_bad_fraction': 0.1},
           'epochs': 3, 'warmup_epochs': 1, 'cooldown_epochs': 1, 'batch_size': 8, 'eval_batch_size': 7,
           'num_workers': 1, 'progress': False}
    p = tmp_path/'folder.yaml'
    p.write_text(yaml.safe_dump(cfg))
    return p


def history(d): return json.loads((d/'metrics.json').read_text())


def test_folder_run_killed_mid_epoch_resumes_to_the_same_metrics(folder_config, tmp_path, jpegs):
    """A truncated JPEG is replaced, named and counted every epoch; the preset's augmentation is kept under a
    dataset_args of the config; SIGKILL in epoch 2 (at the warning that names the bad file in that epoch) and --resume
    give the metrics of the uninterrupted run (each sample's augmentation drawn from (seed, epoch, sample) in the
    loader worker, not from the worker's own random state, which a restart resets)."""
    import signal
    full = tda_train(folder_config, '--set', f'out_dir={tmp_path/"full"}')
    assert full.returncode == 0, full.stderr[-3000:]
    assert full.stderr.count('train/2/5.jpg failed to decode') == 3, full.stderr  # once per epoch, named
    rec = json.loads((tmp_path/'full'/'run.json').read_text())
    assert rec['config']['dataset_args'] == {'augment': 'tdan', 'size': 32, 'erasing_mode': 'pixel',
                                             'interpolation': 'random', 'crop_pct': 1.0, 'max_bad_fraction': 0.1}
    assert rec['config']['optimizer_args'] == {'nesterov': True} and rec['loader_workers'] == 1
    h = history(tmp_path/'full')
    assert [r['train_replaced'] for r in h] == [1, 1, 1] and all(r['train_cpu_seconds'] > 0 for r in h)
    p = subprocess.Popen([sys.executable, '-m', 'tda.cli', 'train', str(folder_config), '--set',
                          f'out_dir={tmp_path/"cut"}'], stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in p.stderr:
        seen += 'train/2/5.jpg failed to decode' in line
        if seen == 2: break  # in epoch 2
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    from tda.checkpoint import load_checkpoint
    assert seen == 2 and load_checkpoint(tmp_path/'cut'/'checkpoints'/'last.pt')[0]['epoch'] == 0  # mid-epoch 2
    again = tda_train(folder_config, '--set', f'out_dir={tmp_path/"cut"}', '--resume')
    assert again.returncode == 0, again.stderr[-3000:]
    for a, b in zip(h, history(tmp_path/'cut'), strict=True):  # the same process, the same sums: only timings differ
        for k in ('lr', 'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'train_replaced'):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), (k, a[k], b[k])
    assert results(tmp_path/'cut')['test'] == pytest.approx(results(tmp_path/'full')['test'], rel=1e-6, abs=1e-9)


def test_folder_on_two_processes(folder_config, tmp_path):
    """Two processes (gloo) with the same global batch: an evaluation batch they cannot split (7) is rounded with a
    note, not refused; both see every sample once (the index read, not built again), with the same augmentation draws
    (drawn per sample) and the same replaced file. Batch norm takes its statistics over each process's slice (off by
    default, as the authors trained), so the weights differ from one process's; the same checkpoint evaluated on two
    processes gives the one-process test metrics, up to the order of the sums."""
    args = ['--set', 'epochs=1', '--set', 'cooldown_epochs=0', '--set', 'warmup_epochs=0']
    one = tda_train(folder_config, '--set', f'out_dir={tmp_path/"one"}', *args)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(2, folder_config, '--set', f'out_dir={tmp_path/"two"}', *args)
    assert two.returncode == 0, two.stderr[-3000:]
    assert 'eval_batch_size 7 does not split over 2 processes: using 6 (3 per process' in two.stderr, two.stderr
    assert two.stderr.count('indexing') == 0  # the folder was indexed already (by the first run)
    assert one.stderr.count('replaced by train/') == two.stderr.count('replaced by train/') == 1
    assert one.stderr.split('replaced by ')[1].split()[0] == two.stderr.split('replaced by ')[1].split()[0]
    r1, r2 = results(tmp_path/'one'), results(tmp_path/'two')
    assert (r1['processes'], r2['processes'], r2['config']['eval_batch_size']) == (1, 2, 6)
    assert r1['test']['n'] == r2['test']['n'] == 12 and r1['data_identity'] == r2['data_identity']
    assert history(tmp_path/'one')[0]['train_replaced'] == history(tmp_path/'two')[0]['train_replaced'] == 1
    ev = launch(2, folder_config, '--set', f'out_dir={tmp_path/"one"}', *args, '--resume')
    assert ev.returncode == 0, ev.stderr[-3000:]
    again = results(tmp_path/'one')
    assert again['processes'] == 2
    for k in ('n', 'accuracy', 'loss'):
        assert again['test'][k] == pytest.approx(r1['test'][k], rel=1e-5, abs=1e-6), k


def test_too_many_bad_files_stop_with_one_line(folder_config, tmp_path):
    r = tda_train(folder_config, '--set', f'out_dir={tmp_path/"strict"}', '--set',
                  'dataset_args={max_bad_fraction: 0.01}')
    errors = [line for line in r.stderr.splitlines() if line.startswith('tda: error: ')]
    assert r.returncode == 2 and len(errors) == 1 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert 'train/2/5.jpg' in errors[0] and 'more than max_bad_fraction 0.01 of 32' in errors[0], errors
