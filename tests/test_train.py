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
