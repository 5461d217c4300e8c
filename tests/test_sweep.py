"`tda sweep`: real papermill runs of the experiment notebooks, failures, resumption, a killed sweep, collection."
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from tda.sweep import load_sweep, run_sweep

EXPERIMENTS = REPO/'nbs'/'experiments'


def tda(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'tda.cli', *map(str, args)], capture_output=True, text=True, **kw)


def write(path, text):
    path.write_text(text)
    return path


def working_in(folder) -> list[int]:
    "The processes whose working folder is `folder` or lies inside it (papermill runs a notebook's kernel in its run)."
    found = []
    for p in Path('/proc').iterdir():
        try:
            if p.name.isdigit() and (folder == (cwd := Path(os.readlink(p/'cwd'))) or folder in cwd.parents):
                found.append(int(p.name))
        except OSError: pass  # gone, or not ours to see
    return found


@pytest.fixture
def table1_sweep(tmp_path, datasets):
    "Table 1 on a tiny MREF file over two seeds, crossed with a run that names a model that does not exist."
    return write(tmp_path/'t1.sweep.yaml', f"""
notebook: {EXPERIMENTS/'mref_table1.ipynb'}
parameters: {{epochs: 1, batch_size: 40, n_samples: 2, progress: false, data: {{mref: {datasets['mref']}}}}}
grid: {{seed: [0, 1]}}
runs: [{{models: [soft]}}, {{models: [no_such_model]}}]
collect: {{metrics: [accuracy, tps]}}
""")


def test_table1_sweep_runs_fails_resumes_and_collects(table1_sweep, env_paths):
    rep = run_sweep(table1_sweep, jobs=2, progress=False)
    root = env_paths/'runs'/'t1'
    ok, bad = ['models=soft,seed=0', 'models=soft,seed=1'], ['models=no_such_model,seed=0', 'models=no_such_model,seed=1']
    assert rep['dir'] == str(root) and rep['done'] == ok and rep['failed'] == bad
    for rid in ok:
        d = root/rid
        assert json.loads((d/'status.json').read_text())['status'] == 'done'
        assert (d/'notebook.ipynb').is_file() and (d/'output'/'summary.json').is_file() and (d/'output'/'pr_curves.png').is_file()
        rec = json.loads((d/'run.json').read_text())
        assert rec['config']['parameters']['seed'] == int(rid[-1]) and rec['versions']['papermill'] and 'git' in rec
    for rid in bad:  # papermill's error: the cell and the exception, and the notebook that shows it
        st = json.loads((root/rid/'status.json').read_text())
        assert st['status'] == 'failed' and st['error']['ename'] == 'TdaError' and 'unknown model' in st['error']['evalue']
        assert 'run_table1(' in st['error']['source'] and st['error']['traceback']

    listing = tda('sweep', table1_sweep, '--dry-run', env=os.environ).stdout.splitlines()
    assert [line.split()[0] for line in listing] == ['finished', 'finished', 'failed', 'failed']

    # a second invocation runs nothing: finished runs are kept, failed ones reported (exit status 1)
    stamps = {rid: (root/rid/'status.json').stat().st_mtime_ns for rid in ok + bad}
    r = tda('sweep', table1_sweep, '--quiet', env=os.environ)
    assert r.returncode == 1 and '2 finished (0 now), 2 failed' in r.stdout and '--retry-failed' in r.stderr, r.stderr
    assert stamps == {rid: (root/rid/'status.json').stat().st_mtime_ns for rid in ok + bad}

    # the collected table: a row per finished run and model, the parameters as columns, each run's own numbers
    table = pd.read_csv(root/'results.csv')
    assert table['run'].tolist() == ok and table['model'].tolist() == ['soft', 'soft'] and table['seed'].tolist() == [0, 1]
    assert {'epochs', 'batch_size', 'models', 'variant', 'accuracy', 'tps', 'pointing'} <= set(table.columns)
    for _, row in table.iterrows():
        res = json.loads((root/row['run']/'output'/'summary.json').read_text())['results']['mref']['soft']
        assert row['accuracy'] == pytest.approx(res['accuracy']) and row['tps'] == pytest.approx(res['tps'])
    pd.testing.assert_frame_equal(pd.read_hdf(root/'results.h5', 'runs')[['run', 'seed', 'accuracy']], table[['run', 'seed', 'accuracy']],
                                  check_dtype=False)
    summary = pd.read_hdf(root/'results.h5', 'summary')
    assert summary['accuracy_count'].tolist() == [2] and summary['accuracy_mean'].iloc[0] == pytest.approx(table['accuracy'].mean())
    assert (root/'comparison.png').read_bytes()[:4] == b'\x89PNG' and 'accuracy' in (root/'summary.md').read_text()

    # --retry-failed runs the failed ones again (and they fail again, reported, without touching the others)
    rep = run_sweep(table1_sweep, retry_failed=True, progress=False, collect=False)
    assert rep['ran'] == bad and rep['failed'] == bad and rep['done'] == ok


def test_killed_sweep_is_never_taken_for_done(tmp_path, env_paths):
    "Kill a sweep (all its processes) in the middle of a run; the next invocation runs that run again."
    sweep = write(tmp_path/'data.sweep.yaml', f"""
notebook: {EXPERIMENTS/'make_datasets.ipynb'}
parameters: {{variant: mdist, splits: {{train: 8, val: 4, test: 4}}, workers: 1}}
grid: {{seed: [3, 4]}}
""")
    root = env_paths/'runs'/'data'
    p = subprocess.Popen([sys.executable, '-m', 'tda.cli', 'sweep', str(sweep), '--quiet'], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (root/'seed=3'/'pid').exists():
        assert time.time() - t0 < 120 and p.poll() is None, 'the sweep did not start its first run'
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 120  # the orphaned kernel notices its parent is gone (however busy the machine)
    while working_in(root/'seed=3') and time.time() < deadline: time.sleep(0.1)
    assert not working_in(root/'seed=3'), 'the kernel of the killed run is still running'
    assert not (root/'seed=3'/'status.json').exists()
    rep = run_sweep(sweep, progress=False, collect=False)
    assert rep['rerun'] == ['seed=3'] and rep['done'] == ['seed=3', 'seed=4'] and rep['failed'] == []
    assert json.loads((root/'seed=3'/'output'/'summary.json').read_text())['seed'] == 3
    assert (env_paths/'data'/'mdist_smoke_seed3.h5').is_file()


def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, env_paths):
    "A notebook of nbs/experiments/ is found by its name (in the checkout, as here, and from any folder)."
    sweep = write(tmp_path/'bad.sweep.yaml', "notebook: mref_table1\nparameters: {epochs: 1}\ngrid: {sed: [0, 1]}\n")
    r = tda('sweep', sweep, env=os.environ, cwd=REPO)
    assert r.returncode == 2 and "no parameter(s) ['sed']" in r.stderr and 'Traceback' not in r.stderr
    assert not (env_paths/'runs').exists()
    bad2 = write(tmp_path/'bad2.sweep.yaml', "notebook: mref_table1\nparameters: {epochs: three}\n")
    r = tda('sweep', bad2, env=os.environ, cwd=REPO)
    assert r.returncode == 2 and 'epochs is a number' in r.stderr


def test_a_sweep_never_writes_outside_the_runs_folder(tmp_path, env_paths):
    "A sweep named '..' would run in the runs folder's parent: a name is one plain folder, and is refused otherwise."
    nb = EXPERIMENTS/'make_datasets.ipynb'
    files = [(name, write(tmp_path/f'{k}.sweep.yaml', f"name: '{name}'\nnotebook: {nb}\n"))
             for k, name in enumerate(['..', '.', '.hidden', 'a/b'])]
    files.append(('..', write(tmp_path/'...sweep.yaml', f"notebook: {nb}\n")))  # named after its file
    for name, sweep in files:
        r = tda('sweep', sweep, '--dry-run', env=os.environ)
        assert r.returncode == 2 and f"sweep name '{name}' must be a folder name" in r.stderr, r.stdout + r.stderr
    assert not (env_paths/'runs').exists() and not (env_paths/'sweep.json').exists()


def test_show_lists_a_notebooks_parameters():
    r = tda('sweep', '--show', 'mref_table1', cwd=REPO)
    assert r.returncode == 0 and 'epochs' in r.stdout and "cap on the authors' 300 epochs" in r.stdout


def test_shipped_example_sweeps_are_valid():
    for f in (EXPERIMENTS/'table1_seeds.sweep.yaml', REPO/'data_gen'/'mref_smoke_seeds.sweep.yaml'):
        sw = load_sweep(f)
        assert [r.id for r in sw.expand()] == ['seed=0', 'seed=1', 'seed=2'] and sw.parameters['size'] == 'smoke'


@pytest.mark.gpu
def test_each_job_gets_its_own_gpu(tmp_path, env_paths):
    "On a machine with two or more GPUs, two jobs run on two different devices."
    import torch
    if torch.cuda.device_count() < 2: pytest.skip('needs two CUDA devices')
    sweep = write(tmp_path/'gpus.sweep.yaml', f"""
notebook: {EXPERIMENTS/'make_datasets.ipynb'}
parameters: {{variant: mref, splits: {{test: 4}}, workers: 1}}
grid: {{seed: [5, 6]}}
""")
    rep = run_sweep(sweep, jobs=2, progress=False, collect=False)
    devices = {json.loads((env_paths/'runs'/'gpus'/rid/'status.json').read_text())['environment']['CUDA_VISIBLE_DEVICES']
               for rid in rep['done']}
    assert len(devices) == 2


def test_a_sweep_run_held_by_another_process_is_left_alone(tmp_path, env_paths):
    "Each run's folder is locked while it runs: a run some other process holds is refused, naming it, untouched."
    sweep = write(tmp_path/'held.sweep.yaml', f"""
notebook: {EXPERIMENTS/'make_datasets.ipynb'}
parameters: {{variant: mref, splits: {{test: 2}}, workers: 1}}
grid: {{seed: [3]}}
""")
    run = env_paths/'runs'/'held'/'seed=3'
    code = 'import sys, time\nfrom tda.core import writer_lock\nwith writer_lock(sys.argv[1]):\n' \
           '    print("holding", flush=True)\n    time.sleep(120)\n'
    holder = subprocess.Popen([sys.executable, '-c', code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'holding\n'
        r = tda('sweep', sweep, '--quiet', env=os.environ)
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in r.stderr.splitlines() if line.startswith('tda: error:')]
    assert r.returncode == 2 and len(errors) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert f"sweep run {run} is in use: process {holder.pid} on " in errors[0], errors[0]
    assert not run.exists()
