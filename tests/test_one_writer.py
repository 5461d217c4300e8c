"""One writer per run folder and per dataset: two real processes on one folder (fresh, --resume, --overwrite,
staggered) and on one dataset file; exactly one writes, the other is refused in one line naming the holder."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from tda.checkpoint import load_checkpoint
from tda.core import lock_path
from tda.train import TrainConfig, train


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'tda.cli', *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def holder(target: Path, procs, timeout=120) -> subprocess.Popen:
    "The process of `procs` that holds the lock of `target` (read from its record), once one does."
    deadline = time.time() + timeout
    while time.time() < deadline:
        try: pid = json.loads(lock_path(target).read_text())['pid']
        except (OSError, ValueError, KeyError): pid = None
        if (p := next((p for p in procs if p.pid == pid), None)) is not None: return p
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    raise AssertionError('no process took the lock')


def race(target: Path, procs) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Let the processes race for `target`; pause the one that takes its lock until the other has ended (so the other
    surely tries while the lock is held, however busy the machine), then let it finish. Returns (winner, loser)."""
    win = holder(target, procs)
    os.kill(win.pid, signal.SIGSTOP)
    try:
        lose = next(p for p in procs if p is not win)
        lose.wait(timeout=300)
    finally: os.kill(win.pid, signal.SIGCONT)
    win.wait(timeout=300)
    return win, lose


def refused(p: subprocess.Popen, what: str, target: Path, by: subprocess.Popen):
    "`p` ended with one error line: `target` is in use by `by` (its process id and host)."
    err = p.stderr.read()
    lines = [line for line in err.splitlines() if line.startswith('tda: error:')]
    assert p.returncode == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert f"{what} {target} is in use: process {by.pid} on {os.uname().nodename} since " in lines[0], lines[0]


@pytest.fixture
def cfg(tmp_path, datasets):
    p = tmp_path/'cfg.yaml'
    p.write_text(yaml.safe_dump({'model': 'soft', 'data': str(datasets['mref']), 'preset': 'seo2016', 'epochs': 2,
                                 'batch_size': 40, 'progress': False, 'out_dir': str(tmp_path/'run')}))
    return p


def written_by(run: Path) -> set:
    "The (seed, epochs) of the process that wrote the results, the checkpoints and the run record of `run`."
    ck, _ = load_checkpoint(run/'checkpoints'/'last.pt')
    res = json.loads((run/'results.json').read_text())
    seeds = {json.loads((run/'run.json').read_text())['config']['seed'], res['config']['seed'], ck['config']['seed']}
    return {(s, res['epochs_run']) for s in seeds} | {(ck['config']['seed'], ck['epoch'] + 1)}


@pytest.mark.parametrize('mode', ['fresh', 'resume', 'overwrite'])
def test_two_trainers_on_one_folder_one_writes(cfg, tmp_path, mode):
    run = tmp_path/'run'
    if mode != 'fresh':  # a finished run to continue, or to replace
        train(TrainConfig(**{**yaml.safe_load(cfg.read_text()), 'seed': 9, 'epochs': 1}))
    flags = {'fresh': [], 'resume': ['--resume'], 'overwrite': ['--overwrite']}[mode]
    seeds = (9, 9) if mode == 'resume' else (1, 2)
    procs = [start('train', cfg, *flags, '--set', f'seed={s}', '--set', f'epochs={e}')
             for s, e in zip(seeds, (2, 3))]
    win, lose = race(run, procs)
    assert win.returncode == 0, win.stderr.read()
    refused(lose, 'run folder', run, win)
    assert written_by(run) == {(seeds[procs.index(win)], (2, 3)[procs.index(win)])}
    assert not lock_path(run).exists()  # released: removed


def test_a_second_trainer_started_later_never_touches_the_folder(cfg, tmp_path):
    "Staggered: the second (with --overwrite, the most destructive) starts while the first is writing."
    run = tmp_path/'run'
    first = start('train', cfg, '--set', 'seed=1', '--set', 'epochs=2')
    holder(run, [first])
    deadline = time.time() + 120
    while not (run/'run.json').exists():  # writing has begun
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        before = {p: p.stat().st_mtime_ns for p in run.rglob('*')}
        second = start('train', cfg, '--overwrite', '--set', 'seed=2')
        second.wait(timeout=300)
        assert {p: p.stat().st_mtime_ns for p in run.rglob('*')} == before  # not a file touched
    finally: os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    refused(second, 'run folder', run, first)
    assert written_by(run) == {(1, 2)}


def test_two_generators_on_one_file_one_writes(tmp_path):
    out = tmp_path/'m.h5'
    procs = [start('data', 'generate', '--out', out, '--seed', s, '--set', 'splits={test: 40}', '--workers', 1,
                   '--quiet', *(['--overwrite'] if s == 2 else [])) for s in (1, 2)]
    win, lose = race(out, procs)
    assert win.returncode == 0, win.stderr.read()
    refused(lose, 'dataset file', out, win)
    with h5py.File(out) as f: assert int(f.attrs['seed']) == (1, 2)[procs.index(win)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.h5']  # no lock, no temporary left


@pytest.mark.parametrize('flags', [[], ['--resume']], ids=['plain', 'resume'])
def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, datasets, flags):
    """SIGKILL in the first epoch leaves run.json, no checkpoint and the dead process's lock file; the next `tda train`
    (with or without --resume) takes the lock over and starts the run again from scratch, and says so."""
    cfg, run = tmp_path/'cfg.yaml', tmp_path/'run'
    cfg.write_text(yaml.safe_dump({'model': 'hattnet_ctx', 'data': str(datasets['mref']), 'epochs': 1, 'batch_size': 20,
                                   'eval_batch_size': 40, 'progress': False, 'out_dir': str(run)}))
    p = start('train', cfg)
    deadline = time.time() + 120
    while not (run/'run.json').exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.005)
    p.kill()
    p.wait()
    assert not (run/'checkpoints'/'last.pt').exists() and lock_path(run).exists()  # killed before the first checkpoint
    r = subprocess.run([sys.executable, '-m', 'tda.cli', 'train', cfg, *flags], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"tda: {run} holds a run killed before its first checkpoint (no checkpoint, no result); starting it again " \
           f"from scratch" in r.stderr
    assert json.loads((run/'results.json').read_text())['epochs_run'] == 1 and not lock_path(run).exists()


def test_jobs_that_need_the_same_dataset_wait_for_it(tmp_path):
    """Two runs of a sweep that need the same dataset (`ensure_dataset`): the second waits for the first to make it
    (a blocked `flock`, seen in /proc/locks), then both use the one file."""
    code = ("from tda.data.mref import ensure_dataset\n"
            "print(ensure_dataset('mref', 'smoke', seed=3, workers=1, progress=False))\n")
    env = {**os.environ, 'TDA_DATA_DIR': str(tmp_path)}
    fn = tmp_path/'mref_smoke_seed3.h5'
    run = lambda: subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
    first = run()
    holder(fn, [first])
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = run()
        deadline = time.time() + 120
        while not any('->' in x and f' {second.pid} ' in x for x in Path('/proc/locks').read_text().splitlines()):
            assert second.poll() is None and time.time() < deadline, second.communicate()
            time.sleep(0.05)
    finally: os.kill(first.pid, signal.SIGCONT)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == [str(fn)] * 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != '.cache') == [fn.name]  # (.cache: MNIST's)
