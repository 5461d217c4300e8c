"""bench/gpu_table1.sh, the whole Table 1 on one GPU, runs every step with --dry-run on the CPU (tiny data, one short
epoch per run), from any working folder, and refuses what it must refuse."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = REPO/'bench'/'gpu_table1.sh'


def run(args, cwd, script=SCRIPT, **kw):
    "One of the GPU scripts of bench/ (gpu_table1.sh unless `script`), with this interpreter as its Python."
    env = {**os.environ, 'PYTHON': sys.executable}
    return subprocess.run(['bash', str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, **kw)


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


IMAGENET = REPO/'bench'/'gpu_imagenet.sh'


def run_imagenet(args, cwd, **kw): return run(args, cwd, IMAGENET, **kw)


@pytest.mark.timeout(900)
def test_imagenet_dry_run_measures_every_feed(tmp_path):
    "bench/gpu_imagenet.sh --dry-run: every model x precision x feed timed on the CPU, its JSON and table written."
    import json
    work, out = tmp_path/'work', tmp_path/'gpu.json'
    r = run_imagenet(['--dry-run', '--work', str(work), '--out', str(out)], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for step in ('1/3 data', '2/3 throughput', '3/3 table', 'done'):
        assert step in r.stdout
    d = json.loads(out.read_text())
    got = {(x['model'], x['precision'], x['feed']) for x in d['rows']}
    assert got == {(m, p, f) for m in ('resnet18', 'resnet18_tdjoint_t2_m1', 'resnet18_tdaf_anar3_f3')
                   for p in ('bf16', 'fp16') for f in ('ceiling', 'fast', 'fast-gpu-decode', 'pil')}
    assert all('error' not in x and x['images_per_s'] > 0 and x['loss_finite'] for x in d['rows']), d['rows']
    assert all(x['of_ceiling'] == 1.0 for x in d['rows'] if x['feed'] == 'ceiling')
    assert d['run']['device'] and (work/'imagenet_shaped'/'imagenet_shaped.json').is_file()
    assert r.stdout.count('| resnet18') == 24
    again = run_imagenet(['--dry-run', '--work', str(work), '--out', str(out)], cwd=tmp_path)
    assert again.returncode == 2 and 'exists; pass --overwrite' in again.stderr


def test_imagenet_refusals(tmp_path):
    bad = run_imagenet(['--dry-run', '--workers', 'x'], cwd=tmp_path)
    assert bad.returncode == 2 and '--workers must be a whole number' in bad.stderr
    unknown = run_imagenet(['--fast'], cwd=tmp_path)
    assert unknown.returncode == 2 and 'unknown option --fast' in unknown.stderr
    nodata = run_imagenet(['--dry-run', '--data', str(tmp_path), '--work', str(tmp_path/'w')], cwd=tmp_path)
    assert nodata.returncode == 2 and 'has no train/ folder' in nodata.stderr
    if not torch.cuda.is_available():
        r = run_imagenet(['--work', str(tmp_path/'w')], cwd=tmp_path)
        assert r.returncode == 2 and 'no CUDA device here' in r.stderr
