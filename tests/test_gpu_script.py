"""bench/gpu_table1.sh, the whole Table 1 on one GPU, runs every step with --dry-run on the CPU (tiny data, one short
epoch per run), from any working folder, and refuses what it must refuse."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = REPO/'bench'/'gpu_table1.sh'


def run(args, cwd, **kw):
    env = {**os.environ, 'PYTHON': sys.executable}
    return subprocess.run(['bash', str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, **kw)


@pytest.mark.timeout(1200)
def test_dry_run_makes_the_whole_report(tmp_path):
    runs, out = tmp_path/'runs', tmp_path/'report'
    r = run(['--dry-run', '--runs', str(runs), '--out', str(out)], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for step in ('1/5 data', '2/5 training 15 runs', '3/5 report', '4/5 pytest -m gpu', '5/5 model cost', 'done'):
        assert step in r.stdout
    table, _, order = (out/'table.md').read_text().partition("The paper's order")
    rows = [line for line in table.splitlines() if line.startswith('| M') and 'uniform' not in line]
    assert len([line for line in order.splitlines() if line.startswith('| M')]) == 6, order  # 3 datasets x 2 metrics
    assert len(rows) == 15, table
    for d in ('mref', 'mdist', 'mbg'):
        for m in ('hattnet_ctx', 'hattnet', 'soft', 'hard', 'stn'):
            assert (out/'runs'/d/m/'results.json').exists() and (runs/d/m/'checkpoints'/'best.pt').exists()
    assert (runs/'logs'/'pytest_gpu.log').exists() and (runs/'model_cost_dry.json').exists()
    # the report is never written over without --overwrite; a second start resumes (here: all runs finished)
    again = run(['--dry-run', '--runs', str(runs), '--out', str(out)], cwd=tmp_path)
    assert again.returncode == 2 and 'is not empty; pass --overwrite' in again.stderr


def test_refusals(tmp_path):
    bad = run(['--dry-run', '--jobs', 'x', '--runs', str(tmp_path/'r')], cwd=tmp_path)
    assert bad.returncode == 2 and '--jobs must be a whole number' in bad.stderr
    unknown = run(['--fast'], cwd=tmp_path)
    assert unknown.returncode == 2 and 'unknown option --fast' in unknown.stderr
    if not torch.cuda.is_available():
        r = run(['--runs', str(tmp_path/'r'), '--out', str(tmp_path/'o')], cwd=tmp_path)
        assert r.returncode == 2 and 'no CUDA device here' in r.stderr
