"""Sweeps and training as jobs of a real single-node SLURM cluster (conftest's `slurm_cluster`): a sweep of three
notebook runs with a failure and a cancelled job; a training stopped by SLURM's warning signal that requeues its job
and resumes, alone and inside a sweep's notebook; one model trained by the two tasks of an `srun`."""
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tda.data.mref import generate_mref, mref_params
from tda.notebooks import write_experiment
from tda.slurm import sweep_status
from tda.sweep import collect_sweep, load_sweep, run_sweep
from test_train import launch

PY = sys.executable


def tda(*args, timeout=600, env=None):
    return subprocess.run([PY, '-m', 'tda.cli', *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def wait_until(what, ok, timeout=180, every=0.2):
    t0 = time.time()
    while not ok():
        assert time.time() - t0 < timeout, f"{what}: not within {timeout} s"
        time.sleep(every)
    return time.time() - t0


def job_state(cluster, job) -> str:
    "SLURM's state of `job` (squeue remembers ended jobs for MinJobAge, 5 minutes on the test cluster)."
    out = cluster.run('squeue', '-h', '-r', '--states=all', '-o', '%i|%T', '-j', str(job).split('_')[0]).stdout
    return dict(line.split('|') for line in out.split()).get(str(job), '')


def read(path): return json.loads(path.read_text())


@pytest.fixture(scope='module')
def small_mref(tmp_path_factory):
    "Small MREF (48x48 canvases of two or three digits): epochs of a fraction of a second on one CPU core."
    d = tmp_path_factory.mktemp('slurm_data')
    return generate_mref(d/'small.h5', mref_params('mref', splits={'train': 32, 'val': 8, 'test': 8}, seed=7, canvas=48,
                                                   digits=[2, 3], scale=[0.5, 1.0]), workers=1, progress=False)


@pytest.fixture(scope='module')
def train_config(tmp_path_factory, small_mref):
    cfg = {'model': 'hattnet_ctx', 'model_args': {'head_norm': False, 'dropout': 0.0}, 'data': str(small_mref),
           'preset': 'seo2016', 'epochs': 3, 'batch_size': 8, 'eval_batch_size': 14, 'seed': 11, 'progress': False}
    p = tmp_path_factory.mktemp('slurm_train')/'cfg.yaml'
    p.write_text(yaml.safe_dump(cfg))
    return p


def sweep_of(folder, name, parameters, code, sweep):
    "A notebook of a `parameters` cell and one of `code`, and a sweep file of it (`sweep`: what follows `notebook:`)."
    write_experiment(folder/f"{name}.ipynb", parameters, [code])
    p = folder/f"{name}.sweep.yaml"
    p.write_text(f"notebook: {name}.ipynb\n{sweep}")
    return p


def toy_sweep(folder, gate):
    "Three runs of a notebook: one finishes, one raises, one waits for the file `gate` (so it can be cancelled)."
    return sweep_of(folder, 'toy', "seed = 0\nfail_seed = -1\nhold_seed = -1\ngate = ''\noutput_dir = ''",
                    "import json, os, time\nfrom pathlib import Path\nassert seed != fail_seed, 'asked to fail'\n"
                    "Path(output_dir, 'started').write_text(os.environ['SLURM_JOB_ID'])\n"
                    "while seed == hold_seed and not Path(gate).exists(): time.sleep(0.2)\n"
                    "Path(output_dir, 'summary.json').write_text(json.dumps({'score': 10 * seed}))",
                    f"parameters: {{gate: {gate}, fail_seed: 1, hold_seed: 2}}\ngrid: {{seed: [0, 1, 2]}}\n"
                    f"slurm: {{cpus: 1, time: 10}}\n")


def test_sweep_as_jobs_cancel_one_and_rerun(slurm_cluster, tmp_path, env_paths):
    sweep, gate = toy_sweep(tmp_path, tmp_path/'gate'), tmp_path/'gate'
    root = env_paths/'runs'/'toy'
    ok, bad, held = (root/r for r in ('seed=0', 'seed=1', 'seed=2'))
    r = tda('sweep', sweep, '--executor', 'slurm')
    assert r.returncode == 0 and 'submitted 3 run(s) as SLURM job' in r.stdout, r.stdout + r.stderr
    jobs = {d.name: read(d/'job.json') for d in (ok, bad, held)}
    assert all(j['executor'] == 'slurm' and j['job_id'].count('_') == 1 for j in jobs.values()), jobs
    assert len({j['job_id'].split('_')[0] for j in jobs.values()}) == 1  # one array
    # the held run is running and the others have ended: --cancel cancels it, mid-run
    wait_until('the held run starts', lambda: (held/'output'/'started').exists())
    wait_until('the other two end', lambda: (ok/'status.json').exists() and (bad/'status.json').exists())
    assert [r['state'] for r in sweep_status(load_sweep(sweep), root)] == ['done', 'failed', 'running']
    r = tda('sweep', sweep, '--cancel')
    assert r.returncode == 0 and jobs[held.name]['job_id'] in r.stdout, r.stdout + r.stderr
    wait_until('the cancelled job ends', lambda: job_state(slurm_cluster, jobs[held.name]['job_id']) == 'CANCELLED')
    assert not (held/'status.json').exists()  # stopped, not failed: the next invocation submits it again
    status = tda('sweep', sweep, '--status').stdout
    lines = {line.split()[0]: line for line in status.splitlines()[1:] if not line.strip().startswith('|')}
    assert lines['seed=0'].split()[1] == 'done', status
    assert 'failed' in lines['seed=1'] and 'AssertionError: asked to fail [code cell 1' in status, status
    assert "| ----> 3 assert seed != fail_seed, 'asked to fail'" in status  # the log's last lines
    assert 'cancelled' in lines['seed=2'] and 'submits it again' in status, status
    # the failed run's error reaches the user as locally: its cell, in status.json and the executed notebook
    assert read(bad/'status.json')['error']['evalue'] == 'asked to fail'
    # run again: only the cancelled run is submitted; the failed one is skipped (it needs --retry-failed)
    gate.write_text('go')
    done_at = (ok/'status.json').stat().st_mtime_ns
    r = tda('sweep', sweep, '--executor', 'slurm', '--wait')
    assert '1 to submit' in r.stdout and 'submitted 1 run(s)' in r.stdout, r.stdout + r.stderr
    assert r.returncode == 1 and 'failed runs: seed=1;' in r.stderr, r.stdout + r.stderr
    again = read(held/'job.json')['job_id']
    assert again != jobs[held.name]['job_id'] and read(held/'status.json')['status'] == 'done'
    assert (ok/'status.json').stat().st_mtime_ns == done_at
    assert read(ok/'job.json')['job_id'] == jobs['seed=0']['job_id']
    assert collect_sweep(sweep, progress=False)['table']['run'].tolist() == ['seed=0', 'seed=2']  # as for local runs


def node_fails(cluster, job):
    "The node of `job` goes down, as after a hardware fault: SLURM ends the job (NODE_FAIL where it may not requeue)."
    node = socket.gethostname().split('.')[0]
    cluster.run('scontrol', 'update', f'nodename={node}', 'state=down', 'reason=tda-test')
    wait_until(f"job {job} ends", lambda: job_state(cluster, job) == 'NODE_FAIL', 60)
    cluster.run('scontrol', 'update', f'nodename={node}', 'state=resume', check=False)  # where it did not come back
    wait_until('the node is back', lambda: cluster.run('sinfo', '-h', '-o', '%T').stdout.strip() == 'idle', 60)


def test_status_says_what_the_next_submission_does_and_its_hint_reaches_the_sweep(slurm_cluster, tmp_path, env_paths):
    (tmp_path/'sweeps').mkdir(), (tmp_path/'here').mkdir()
    gate = tmp_path/'gate'
    sweep = toy_sweep(tmp_path/'sweeps', gate)
    sweep.write_text(sweep.read_text().replace('slurm: {cpus: 1, time: 10}', "slurm: {cpus: 1, time: 10, sbatch: "
                                                                             "['--no-requeue']}"))
    root = env_paths/'runs'/'my-runs'  # not a folder of the working one: in the runs folder
    ok, bad, held = (root/r for r in ('seed=0', 'seed=1', 'seed=2'))
    # typed by a user in tmp_path/here: the sweep file by a relative path, a sweep folder of their own
    r = subprocess.run([PY, '-m', 'tda.cli', 'sweep', '../sweeps/toy.sweep.yaml', '--executor', 'slurm', '--out',
                        'my-runs'], capture_output=True, text=True, timeout=300, cwd=tmp_path/'here')
    hint = re.search(r"`(tda sweep [^`]*)` to follow", r.stdout)
    assert r.returncode == 0 and hint, r.stdout + r.stderr
    wait_until('the held run starts', lambda: (held/'output'/'started').exists())
    wait_until('the other two end', lambda: (ok/'status.json').exists() and (bad/'status.json').exists())
    job = read(held/'job.json')['job_id']
    node_fails(slurm_cluster, job)
    # the hint, typed as printed in another folder, shows this sweep
    status = subprocess.run([PY, '-m', 'tda.cli', *shlex.split(hint.group(1))[1:]], capture_output=True, text=True,
                            timeout=300, cwd='/')
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:-1] if not line.strip().startswith('|')}
    assert status.stdout.startswith(f"sweep toy in {root}: 1 done, 2 failed"), status.stdout + status.stderr
    assert lines['seed=0'].endswith('the next submission keeps it'), status.stdout
    assert lines['seed=1'].endswith('the next submission skips it (--retry-failed submits it again)'), status.stdout
    assert 'SLURM: NODE_FAIL, its node failed; the next submission submits it again' in lines['seed=2'], status.stdout
    assert status.returncode == 1, status.stdout + status.stderr  # a run failed: exit status 1
    # ... and the next submission does what it said: it submits the run of the failed node, and only that one
    nxt = re.search(r"the next submission, `(tda sweep [^`]*)` .* submits 1: seed=2$", status.stdout)
    assert nxt and str(sweep.resolve()) in nxt.group(1), status.stdout
    gate.write_text('go')
    again = tda(*shlex.split(nxt.group(1))[1:], '--wait')
    assert '1 to submit' in again.stdout and 'failed runs: seed=1;' in again.stderr, again.stdout + again.stderr
    assert read(held/'status.json')['status'] == 'done' and read(held/'job.json')['job_id'] != job


@pytest.fixture(scope='module')
def reference(train_config):
    """The uninterrupted run, here (no SLURM), on one thread as the jobs (a CPU's sums depend on the thread count):
    its test metrics and its curve."""
    whole = train_config.parent/'whole'
    r = tda('train', train_config, '--set', f'out_dir={whole}', env={'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr
    return read(whole/'results.json')['test'], curve(whole)


def curve(run): return [(r['train_loss'], r['val_loss']) for r in read(run/'metrics.json')]


def signal_after_first_epoch(cluster, job, run):
    "SIGUSR1 to `job` once `run` finished its first epoch, as SLURM sends it `--signal` seconds before the time limit."
    wait_until('the first epoch', lambda: (run/'metrics.json').exists())
    cluster.run('scancel', '--signal=USR1', job)


def test_warning_signal_requeues_a_training_job_that_resumes(slurm_cluster, train_config, reference, tmp_path):
    script, run = tmp_path/'train.sh', tmp_path/'stopped'
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/train.log\n#SBATCH --open-mode=append\n"
                      f"#SBATCH --cpus-per-task=1\n#SBATCH --signal=USR1@60\nexport OMP_NUM_THREADS=1\n"
                      f"srun {PY} -m tda.cli train {train_config} --set out_dir={run}\n")
    job = slurm_cluster.run('sbatch', '--parsable', script).stdout.strip()
    signal_after_first_epoch(slurm_cluster, job, run)
    wait_until(f"job {job} ends", lambda: job_state(slurm_cluster, job) == 'COMPLETED', 300, 1)
    log, req = (tmp_path/'train.log').read_text(), read(run/'requeue.json')
    assert req['job_id'] == job and req['signal'] == 'SIGUSR1' and req['abandoned_epoch'] >= 2, (req, log)
    assert f"job {job} is requeued and resumes at epoch" in log and f"job {job} was requeued: resuming" in log, log
    assert "tda: SLURM's warning signal stopped" in log and 'tda: error' not in log, log  # information, not an error
    assert 'Restarts=1' in slurm_cluster.run('scontrol', 'show', 'job', job).stdout
    res = read(run/'results.json')
    assert res['epochs_run'] == 3 and (res['test'], curve(run)) == reference


def training_pid(run) -> int:
    "The pid of the `tda train` process writing into `run` (its command line names it)."
    for p in Path('/proc').iterdir():
        try:
            if p.name.isdigit() and f"out_dir={run}".encode() in (p/'cmdline').read_bytes(): return int(p.name)
        except OSError: pass
    raise AssertionError(f"no process trains into {run}")


def ended_by_itself(pid, timeout=120):
    "Wait for process `pid` to end; kill it (and fail) if it does not (a training left without its job)."
    gone = lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == 'Z'
    try: wait_until(f"process {pid} ends", gone, timeout, 0.5)
    except AssertionError:
        os.kill(pid, 9)
        raise


def test_batch_shell_warning_signal_requeues_the_training_it_started(slurm_cluster, train_config, reference,
                                                                     tmp_path):
    "`--signal=B:USR1` with `--wrap 'tda train'`: the batch shell dies of the signal; the training requeues the job."
    run = tmp_path/'stopped'
    job = slurm_cluster.run('sbatch', '--parsable', f'--output={tmp_path}/train.log', '--open-mode=append',
                            '--cpus-per-task=1', '--signal=B:USR1@60', '--time=5', '--wrap',
                            f"OMP_NUM_THREADS=1 {PY} -m tda.cli train {train_config} --set out_dir={run}").stdout.strip()
    wait_until('the first epoch', lambda: (run/'metrics.json').exists())
    pid = training_pid(run)
    slurm_cluster.run('scancel', '--batch', '--signal=USR1', job)  # what B:USR1@60 sends: to the batch shell only
    ended_by_itself(pid)
    wait_until(f"job {job} ends", lambda: job_state(slurm_cluster, job) == 'COMPLETED', 300, 1)
    log, req = (tmp_path/'train.log').read_text(), read(run/'requeue.json')
    assert 'went to the batch shell of job' in log and f"job {job} is requeued and resumes at epoch" in log, log
    assert 'tda: error' not in log and req['job_id'] == job and req['abandoned_epoch'] >= 2, log
    res = read(run/'results.json')
    assert res['epochs_run'] == 3 and (res['test'], curve(run)) == reference


def test_a_training_whose_job_ended_stops_at_its_next_step(slurm_cluster, train_config, tmp_path):
    "The batch script ends (its job with it) while the training it started goes on: the training stops, and says so."
    run = tmp_path/'orphan'
    job = slurm_cluster.run('sbatch', '--parsable', f'--output={tmp_path}/train.log', '--cpus-per-task=1',
                            '--time=5', '--wrap', f"OMP_NUM_THREADS=1 {PY} -m tda.cli train {train_config} "
                            f"--set out_dir={run} --set epochs=1000 & "
                            f"while [ ! -e {run}/metrics.json ]; do sleep 0.2; done").stdout.strip()
    wait_until('the first epoch', lambda: (run/'metrics.json').exists())
    pid = training_pid(run)
    wait_until(f"job {job} ends", lambda: job_state(slurm_cluster, job) == 'COMPLETED', 120, 0.5)
    ended_by_itself(pid, 60)
    log = (tmp_path/'train.log').read_text()
    assert f"tda: error: SLURM job {job} has ended (COMPLETED" in log and '--resume' in log, log
    assert (run/'checkpoints'/'last.pt').exists() and not (run/'results.json').exists()
    assert len(read(run/'metrics.json')) < 1000


def test_a_training_whose_parent_exits_inside_a_running_job_goes_on(slurm_cluster, train_config, tmp_path):
    "A subshell starts the training and exits after its first epoch, the job runs on: the training goes on."
    run = tmp_path/'subshell'
    job = slurm_cluster.run('sbatch', '--parsable', f'--output={tmp_path}/train.log', '--cpus-per-task=1',
                            '--time=5', '--wrap', f"(OMP_NUM_THREADS=1 {PY} -m tda.cli train {train_config} "
                            f"--set out_dir={run} --set epochs=30 & while [ ! -e {run}/metrics.json ]; do sleep 0.2; "
                            f"done); while [ ! -e {run}/results.json ]; do sleep 0.2; done").stdout.strip()
    wait_until(f"job {job} ends", lambda: job_state(slurm_cluster, job) == 'COMPLETED', 180, 0.5)
    log = (tmp_path/'train.log').read_text()
    assert f"its SLURM job {job} runs on, and so does the training" in log and 'tda: error' not in log, log
    assert read(run/'results.json')['epochs_run'] == 30


def test_warning_signal_requeues_a_training_in_a_sweep_notebook(slurm_cluster, train_config, reference, tmp_path,
                                                               env_paths):
    sweep = sweep_of(tmp_path, 'train', "config = ''\noutput_dir = ''",
                     "import json, yaml\nfrom pathlib import Path\nfrom tda.train import train\n"
                     "cfg = {**yaml.safe_load(Path(config).read_text()), 'out_dir': str(Path(output_dir)/'train')}\n"
                     "res = train(cfg)\n"
                     "Path(output_dir, 'summary.json').write_text(json.dumps({'accuracy': res['test']['accuracy']}))",
                     f"parameters: {{config: {train_config}}}\nslurm: {{cpus: 1}}\n")
    rep = run_sweep(sweep, executor='slurm', progress=False)
    d = env_paths/'runs'/'train'/'base'
    job = rep['submitted']['base']
    signal_after_first_epoch(slurm_cluster, job, d/'output'/'train')
    rep = run_sweep(sweep, executor='slurm', wait=True, progress=False)  # nothing to submit: waits for the job
    assert rep['queued'] == ['base'] and rep['done'] == ['base'] and not rep['submitted'], rep
    log = (env_paths/'runs'/'train'/'slurm'/f"{job}_0_log.out").read_text()
    assert 'base was requeued by its training' in log and f"resuming {d} (job {job})" in log, log
    assert read(d/'output'/'train'/'requeue.json')['abandoned_epoch'] >= 2
    res = read(d/'output'/'train'/'results.json')
    assert res['epochs_run'] == 3 and (res['test'], curve(d/'output'/'train')) == reference
    assert read(d/'status.json')['status'] == 'done' and read(d/'job.json')['restarts'] == 1


def test_two_srun_tasks_train_as_the_local_two_process_launch(slurm_cluster, train_config, tmp_path):
    srun = subprocess.Popen(['srun', '--ntasks=2', '--cpus-per-task=1', PY, '-m',
                             'tda.cli', 'train', train_config, '--set', f'out_dir={tmp_path/"srun"}', '--set',
                             'epochs=1'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    local = launch(2, train_config, '--set', f'out_dir={tmp_path/"local"}', '--set', 'epochs=1')
    out = srun.communicate(timeout=300)[0]
    assert srun.returncode == 0 and local.returncode == 0, out[-3000:] + local.stderr[-3000:]
    a, b = (read(tmp_path/d/'results.json') for d in ('srun', 'local'))
    assert a['processes'] == b['processes'] == 2 and a['test'] == b['test'], (a['test'], b['test'])
    rec = read(tmp_path/'srun'/'run.json')
    assert rec['processes'] == 2
    assert curve(tmp_path/'srun') == curve(tmp_path/'local')
