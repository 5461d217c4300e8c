"Nothing from disk is trusted: checkpoints, resumed data, run folders and configs, tried as a careful user would."
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tda.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from tda.core import TdaError, temporary_owner, temporary_path
from tda.data.mref import generate_mref, mref_params
from tda.train import NonFiniteLoss, TrainConfig, load_best, train

TINY = {'train': 6, 'val': 3, 'test': 3}  # images: about 40 / 20 / 20 questions


def tda_train(*args):
    return subprocess.run([sys.executable, '-m', 'tda.cli', 'train', *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def tiny(tmp_path):
    return generate_mref(tmp_path/'tiny.h5', mref_params('mref', splits=TINY, seed=3), workers=1, progress=False)


@pytest.fixture
def config(tmp_path, tiny):
    p = tmp_path/'cfg.yaml'
    p.write_text(yaml.safe_dump({'model': 'soft', 'data': str(tiny), 'preset': 'seo2016', 'epochs': 1, 'batch_size': 20,
                                 'progress': False, 'out_dir': str(tmp_path/'run')}))
    return p


class Payload:
    "A pickled object whose unpickling runs a shell command (touches a file)."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def test_a_pickled_payload_is_refused_by_resume_and_load_best(config, tmp_path):
    assert tda_train(config).returncode == 0
    marker = tmp_path/'pwned'
    for name in ('last.pt', 'best.pt'):
        torch.save({'format': CHECKPOINT_FORMAT, 'record': '{}', 'model': Payload(marker)}, tmp_path/'run'/'checkpoints'/name)
    r = tda_train(config, '--resume', '--set', 'epochs=2')
    assert r.returncode == 2 and 'never runs code from a file' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    with pytest.raises(TdaError, match='never runs code from a file'): load_best(tmp_path/'run')
    assert not marker.exists()
    # one line in our words: the global it names, no escape codes, no advice to load it unsafely
    last = tmp_path/'run'/'checkpoints'/'last.pt'
    torch.save({'format': CHECKPOINT_FORMAT, 'record': '{}', 'model': {'w': np.zeros(3)}}, last)
    for r in (r, tda_train(config, '--resume', '--set', 'epochs=2')):
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith('tda: error: checkpoint ') and 'Python objects beyond tensors (it names ' in line, line
        assert '\x1b' not in line and 'weights_only' not in line and 'trust' not in line, line


def test_resume_refuses_overwritten_pixels_and_resumes_a_checkpoint_from_before_the_fingerprint(tmp_path, tiny):
    "The identity covers every pixel; a checkpoint written before that key existed still resumes (and checks the rest)."
    cfg = TrainConfig(preset='seo2016', model='soft', data=str(tiny), epochs=1, batch_size=20, progress=False,
                      out_dir=str(tmp_path/'run'), seed=5)
    train(cfg)
    last = tmp_path/'run'/'checkpoints'/'last.pt'
    with h5py.File(tiny, 'r+') as f: f['train/images'][0] = 255 - f['train/images'][0]  # the tables stay as they were
    with pytest.raises(TdaError, match=r'its data changed since the run started \(images_sha256 differ'):
        train(TrainConfig(**{**cfg.to_dict(), 'epochs': 2}), resume=True)
    # a checkpoint of an earlier version: its identity has no images_sha256; the keys both have are compared
    rec, tensors = load_checkpoint(last)
    rec['data'].pop('images_sha256')
    save_checkpoint(last, rec, **tensors)
    assert train(TrainConfig(**{**cfg.to_dict(), 'epochs': 2}), resume=True)['epochs_run'] == 2
    rec['data']['content_sha256'] = '0' * 64  # ... and what differs in them is still refused
    save_checkpoint(last, rec, **tensors)
    with pytest.raises(TdaError, match=r'\(content_sha256 differ'):
        train(TrainConfig(**{**cfg.to_dict(), 'epochs': 3}), resume=True)


def test_the_largest_seed_trains(tmp_path, tiny):
    "Each epoch seeds NumPy with seed * 1000 + epoch, which must stay below 2**32 (before: ValueError from NumPy)."
    res = train(TrainConfig(preset='seo2016', model='soft', data=str(tiny), epochs=1, batch_size=20, progress=False,
                            out_dir=str(tmp_path/'run'), seed=2**32 - 1))
    assert res['epochs_run'] == 1


def test_resume_refuses_changed_data_and_accepts_the_same_data(config, tmp_path, tiny):
    assert tda_train(config).returncode == 0
    generate_mref(tiny, mref_params('mref', splits={**TINY, 'val': 4}, seed=3), workers=1, progress=False, overwrite=True)
    r = tda_train(config, '--resume', '--set', 'epochs=2')
    assert r.returncode == 2 and 'its data changed' in r.stderr and 'content_sha256' in r.stderr, r.stderr
    # the same parameters give the same data, byte for byte: resuming on a regenerated file is fine
    generate_mref(tiny, mref_params('mref', splits=TINY, seed=3), workers=2, progress=False, overwrite=True)
    r = tda_train(config, '--resume', '--set', 'epochs=2')
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/'run'/'results.json').read_text())['epochs_run'] == 2


def test_overwrite_replaces_only_a_training_run(config, tmp_path):
    sweep_run = tmp_path/'sweep_run'
    sweep_run.mkdir()
    (sweep_run/'run.json').write_text(json.dumps({'job': 'sweep', 'parameters': {}}))
    (sweep_run/'notebook.ipynb').write_text('{}')
    r = tda_train(config, '--set', f'out_dir={sweep_run}', '--overwrite')
    assert r.returncode == 2 and 'refusing to delete it' in r.stderr, r.stderr
    assert (sweep_run/'notebook.ipynb').read_text() == '{}'
    assert tda_train(config).returncode == 0
    assert tda_train(config, '--overwrite').returncode == 0  # a training run may be replaced


def test_best_is_remade_from_last_after_a_kill_between_them(tmp_path, tiny):
    "A kill after last.pt and before best.pt leaves best.pt an epoch behind; resuming makes it from last.pt again."
    cfg = TrainConfig(preset='seo2016', model='soft', data=str(tiny), epochs=3, batch_size=20, progress=False,
                      out_dir=str(tmp_path/'whole'), seed=5)
    whole = train(cfg)
    part = TrainConfig(**{**cfg.to_dict(), 'out_dir': str(tmp_path/'part'), 'epochs': 1})
    train(part)
    stale = (tmp_path/'part'/'checkpoints'/'best.pt').read_bytes()  # best.pt as the kill left it: epoch 1's
    train(TrainConfig(**{**part.to_dict(), 'epochs': 3}), resume=True)
    (tmp_path/'part'/'checkpoints'/'best.pt').write_bytes(stale)
    last, _ = load_checkpoint(tmp_path/'part'/'checkpoints'/'last.pt')
    res = train(TrainConfig(**{**part.to_dict(), 'epochs': 3}), resume=True)  # nothing left to train: test only
    best, _ = load_checkpoint(tmp_path/'part'/'checkpoints'/'best.pt')
    assert best['epoch'] == last['best']['epoch']
    assert res['test']['accuracy'] == whole['test']['accuracy'] and res['best_epoch'] == whole['best_epoch']


_FIELDS = {
    'seed': st.integers(-3, 2**33), 'epochs': st.integers(-1, 2), 'batch_size': st.integers(-1, 60),
    'eval_batch_size': st.integers(0, 30), 'lr': st.sampled_from([-1.0, 0.0, 1e-4, 3e-3, 1e9, float('nan')]),
    'decay_every': st.integers(-1, 3), 'lr_decay': st.sampled_from([-0.5, 0.0, 0.5, 1.0, 2.0]),
    'num_workers': st.integers(-2, 1), 'patience': st.one_of(st.none(), st.integers(-1, 2)),
    'clip_grad_norm': st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 5.0])),
    'optimizer': st.sampled_from(['adam', 'sgd', 'rmsprop', 'lbfgs']),
    'optimizer_args': st.sampled_from([{}, {'alpha': 0.9}, {'betas': [0.9, 0.99]}, {'nonsense': 1}]),
    'schedule': st.sampled_from(['constant', 'step', 'cosine', 'milestones', 'weekly']),
    'warmup_epochs': st.integers(-1, 2), 'milestones': st.sampled_from([[], [1], [-1], ['one']]),
    'mixed_precision': st.sampled_from(['no', 'bf16', 'fp16', 'fp8']),
    'model': st.sampled_from(['soft', 'hattnet', 'nonet']),
    'model_args': st.sampled_from([{}, {'dropout': 0.1}, {'channels': 8}, {'wings': 2}]),
    'inputs': st.sampled_from([['image', 'query'], ['image', 'query', 'image_id'], [], ['image', 'colour'], 'image']),
    'target': st.sampled_from(['answer', 'colour', '']),
    'data': st.sampled_from(['tiny', 'folder', 'missing', '']),
    'out_dir': st.sampled_from(['run', 'a_file']),
}


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({}, optional=_FIELDS))
def test_a_random_config_fails_before_writing_anything_or_starts(tmp_path_factory, d):
    """Either one `TdaError` before any file exists, or a run that starts (and may then stop on a non-finite loss)."""
    tmp = tmp_path_factory.mktemp('cfg')
    tiny = generate_mref(tmp/'tiny.h5', mref_params('mref', splits=TINY, seed=3), workers=1, progress=False)
    (tmp/'folder').mkdir()
    (tmp/'a_file').write_text('not a folder')
    d = {'epochs': 1, 'batch_size': 20, 'eval_batch_size': 20, 'progress': False, **d}
    d['data'] = {'tiny': str(tiny), 'folder': str(tmp/'folder'), 'missing': str(tmp/'none.h5'), '': ''}[d.get('data', 'tiny')]
    d['out_dir'] = str(tmp/d.get('out_dir', 'run'))
    d['epochs'] = min(d['epochs'], 1)
    before = sorted(p.name for p in tmp.iterdir())
    try:
        res = train(TrainConfig.from_dict(d))
    except NonFiniteLoss:
        return  # the run started and stopped with its own clear message
    except TdaError:
        assert sorted(p.name for p in tmp.iterdir()) == before, d
        return
    assert res['epochs_run'] == 1 and (Path(d['out_dir'])/'run.json').exists()
    shutil.rmtree(d['out_dir'])


def test_a_run_killed_in_its_first_write_is_no_run(config, tmp_path):
    "A folder holding only the temporary run.json of a dead process: the next run starts there (no --overwrite)."
    out = tmp_path/'run'
    out.mkdir()
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    stale = temporary_path(out/'run.json').name.rsplit('-', 2)[0] + f"-{int(dead.stdout)}-0123abcd"
    (out/stale).write_text('{"half": ')
    assert temporary_owner(out/stale)['pid'] == int(dead.stdout)
    r = tda_train(config, '--quiet')
    assert r.returncode == 0, r.stderr
    assert not (out/stale).exists() and (out/'results.json').exists()
