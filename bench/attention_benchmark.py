"""The attention benchmark's cost on this CPU, and its report from the finished runs.

    python bench/attention_benchmark.py cost            # a paper-size run's cost per model here, the grid's total
    python bench/attention_benchmark.py cost --replan   # the stored measurements planned again (other epochs)
    python bench/attention_benchmark.py report          # the report of the attention_benchmark sweep's finished runs

`cost` measures, one thread per measurement (as the sweep's runs train with `--jobs 2` on two cores):

- every model's training speed on a synthetic batch of 128 images of 64 px (forward, backward, SGD step; images per
  CPU-second after warm-up steps): the models' relative cost;
- a real start of the paper-size runs of the cheapest and the dearest models (`--calibrate`, `--epochs` epochs of
  the trainer on the paper-size file; every epoch's training images per CPU-second, validation and set-up included
  in the run's CPU time), which scales the synthetic figures to the trainer's;
- every model's scoring of the paper-size test split (`tda.experiments.benchmark`: every map, the resolutions, the
  latency), an untrained network being as dear to score as a trained one, timed on `--score-images` test images and
  scaled to the split;

then predicts each paper-size run's CPU-seconds (`PAPER_EPOCHS` epochs, validation, scoring) and the grid's
CPU-hours, and writes bench/results/attention_benchmark_cost_cpu.json. The machine's load average is recorded beside
every figure: CPU-seconds are the process's own, but caches and memory bandwidth are shared.

`report` writes bench/results/attention_benchmark_cpu/ (`tda.experiments.benchmark_report.benchmark_report`): the
table, the figures, the claims table, and every run's record under runs/ (kept for the next report, in git).
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tda.core import get_settings, run_record, write_json
from tda.data.locate import LocateDataset, ensure_locate
from tda.experiments.benchmark import (PAPER_EPOCHS, RESOLUTIONS, accuracy_over_resolutions, localisation, model_cost,
                                       run_benchmark)
from tda.experiments.benchmark_report import benchmark_report, kept_records, record_name, rows_from_csv
from tda.models.benchmark import BENCHMARK_MODELS, benchmark_model

RESULTS = Path(__file__).resolve().parent/'results'


def load() -> list:
    "The load averages (1, 5, 15 min) and the CPU count: what else ran while a figure was measured."
    return [*os.getloadavg(), os.cpu_count()]


def train_speed(name: str, steps: int = 8, warmup: int = 3, batch: int = 128) -> float:
    "Training images per CPU-second of model `name` on a synthetic batch (SGD, cross-entropy, channels_last)."
    torch.manual_seed(0)
    m = benchmark_model(name).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    for i in range(warmup + steps):
        if i == warmup: c0 = time.process_time()
        out = m(x)
        loss = F.cross_entropy(out['logits'] if isinstance(out, dict) else out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.process_time() - c0)


def scoring_cost(name: str, test: LocateDataset, n: int) -> dict:
    """CPU-seconds of scoring an (untrained) `name` on the test split as a run does (maps, resolutions, latency),
    measured on its first `n` images and scaled to the whole split (the scoring is linear in the images)."""
    net = benchmark_model(name).eval()
    scale = len(test) / n
    c0 = time.process_time()
    loc = localisation(net, test, n)
    c1 = time.process_time()
    accuracy_over_resolutions(net, test, RESOLUTIONS, n)
    c2 = time.process_time()
    model_cost(net, 64, 20)
    c3 = time.process_time()
    return {'maps': len(loc['maps']), 'localisation_cpu_s': (c1 - c0) * scale, 'resolutions_cpu_s': (c2 - c1) * scale,
            'cost_cpu_s': c3 - c2, 'scoring_cpu_s': (c2 - c0) * scale + c3 - c2, 'measured_on': n}


def measure(a) -> tuple[dict, dict, int]:
    "Every model's synthetic speed and scoring cost, and real runs of the calibration models: (rows, real, images)."
    rows = {m: {'model': m} for m in a.models}
    for m in a.models:
        rows[m]['synthetic_img_per_cpu_s'] = train_speed(m)
        rows[m]['load_synthetic'] = load()
        print(f"{m:34s} synthetic training {rows[m]['synthetic_img_per_cpu_s']:7.1f} img/CPU-s  load {load()[0]:.1f}",
              flush=True)
    cheap = min(a.models, key=lambda m: 1 / rows[m]['synthetic_img_per_cpu_s'])
    dear = max(a.models, key=lambda m: 1 / rows[m]['synthetic_img_per_cpu_s'])
    data = ensure_locate(a.difficulty, 'paper', progress=False)
    test = LocateDataset(data, 'test', masks=True)
    n_train = len(LocateDataset(data, 'train'))
    for m in a.models:
        rows[m].update(scoring_cost(m, test, a.score_images), load_scoring=load())
        print(f"{m:34s} scoring {rows[m]['scoring_cpu_s']:6.1f} CPU-s ({rows[m]['maps']} maps)  load {load()[0]:.1f}",
              flush=True)
    real = {}
    with tempfile.TemporaryDirectory() as d:
        for m in a.calibrate or [cheap, dear]:
            s = run_benchmark(m, a.difficulty, 0, 'paper', out=Path(d)/m/'out', epochs=a.epochs,
                              train_dir=Path(d)/m/'train', progress=False, latency_repeats=5,
                              test_images=a.score_images)
            hist = json.loads((Path(s['train_dir'])/'metrics.json').read_text())
            real[m] = {'epochs': a.epochs, 'train_img_per_cpu_s': [h['train_samples_per_cpu_s'] for h in hist],
                       'train_total_cpu_s': s['train_total_cpu_seconds'],
                       'epoch_train_cpu_s': [h['train_cpu_seconds'] for h in hist], 'top1': s['top1'], 'load': load()}
            print(f"{m:34s} real: {a.epochs} epochs in {s['train_total_cpu_seconds']:.0f} CPU-s "
                  f"({', '.join(f'{v:.0f}' for v in real[m]['train_img_per_cpu_s'])} img/CPU-s), "
                  f"top-1 {s['top1']:.3f}  load {load()[0]:.1f}", flush=True)
    return rows, real, n_train


def plan(rows: dict, real: dict, n_train: int, a) -> dict:
    """Each model's paper-size run in CPU-seconds (`PAPER_EPOCHS` epochs, validation, scoring, start-up) and the grid's:
    the synthetic speeds scaled by the trainer's speed over them in the real runs (their last epoch: the first pays
    the warm-up), plus what an epoch costs there beyond its training steps (validation, checkpoints)."""
    ratio = sum(r['train_img_per_cpu_s'][-1] / rows[m]['synthetic_img_per_cpu_s'] for m, r in real.items()) / len(real)
    extra = sum((r['train_total_cpu_s'] - sum(r['epoch_train_cpu_s'])) / r['epochs'] for r in real.values()) / len(real)
    for m, r in rows.items():
        speed = r['synthetic_img_per_cpu_s'] * ratio
        r.update(predicted_img_per_cpu_s=speed, predicted_epoch_cpu_s=n_train / speed + extra,
                 predicted_run_cpu_s=PAPER_EPOCHS * (n_train / speed + extra) + r['scoring_cpu_s'] + a.startup)
    runs = a.seeds * 2  # seeds x both difficulties
    total = sum(r['predicted_run_cpu_s'] for r in rows.values()) * runs
    print(f"\ntrainer/synthetic speed {ratio:.3f}; {extra:.1f} CPU-s per epoch beyond training (validation, "
          f"checkpoints); {PAPER_EPOCHS} epochs of {n_train} images; {a.startup:.0f} CPU-s start-up per run")
    print(f"{'model':34s} {'img/CPU-s':>10s} {'epoch CPU-s':>12s} {'scoring CPU-s':>14s} {'run CPU-s':>10s}")
    for m, r in rows.items():
        print(f"{m:34s} {r['predicted_img_per_cpu_s']:10.1f} {r['predicted_epoch_cpu_s']:12.1f} "
              f"{r['scoring_cpu_s']:14.1f} {r['predicted_run_cpu_s']:10.0f}")
    print(f"grid: {len(rows)} models x {a.seeds} seeds x 2 difficulties = {len(rows) * runs} runs, "
          f"{total / 3600:.2f} CPU-hours predicted")
    return {'train_images': n_train, 'paper_epochs': PAPER_EPOCHS, 'trainer_over_synthetic': ratio,
            'epoch_extra_cpu_s': extra, 'startup_cpu_s': a.startup, 'calibration': real, 'models': list(rows.values()),
            'grid_runs': len(rows) * runs, 'grid_cpu_hours': total / 3600}


def cmd_cost(a):
    out = RESULTS/'attention_benchmark_cost_cpu.json'
    if a.replan:  # the stored measurements, planned again (another PAPER_EPOCHS, start-up or number of seeds)
        old = json.loads(out.read_text())
        rows = {r['model']: r for r in old['models'] if r['model'] in a.models}
        measured = {k: old[k] for k in ('cpu', 'avx512_bf16', 'threads', 'precision', 'measured')}
        p = plan(rows, old['calibration'], old['train_images'], a)
    else:
        torch.set_num_threads(a.threads)
        import cv2
        cv2.setNumThreads(a.threads)
        rows, real, n_train = measure(a)
        flags = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
        cpu = next((l.split(':', 1)[1].strip() for l in flags.splitlines() if l.startswith('model name')),
                   platform.processor())
        measured = {'cpu': cpu, 'avx512_bf16': 'avx512_bf16' in flags, 'threads': a.threads, 'precision': 'fp32',
                    'measured': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
        p = plan(rows, real, n_train, a)
    write_json(out, {**measured, **p, 'run': run_record(vars(a), seed=0)})
    print(f"wrote {out}")


def cmd_report(a):
    root = Path(a.root) if a.root else get_settings().runs_dir/a.sweep
    if a.from_csv:  # runs whose folders are gone: their records rebuilt from a runs.csv, where none is kept
        kept = kept_records(a.out)
        for r in rows_from_csv(a.from_csv, note=a.note):
            if record_name(r) not in kept: write_json(Path(a.out)/'runs'/record_name(r), r, overwrite=False)
    rep = benchmark_report(root, a.out, n_samples=a.samples)
    print(rep['table.md'])
    print(rep['claims.md'])
    print(f"{len(rep['rows'])} runs from {root}; wrote {a.out}: {', '.join(rep['files'])}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('cost', help="a paper-size run's cost per model, and the grid's CPU-hours")
    c.add_argument('--models', nargs='+', default=list(BENCHMARK_MODELS))
    c.add_argument('--calibrate', nargs='+', help='models trained for real (default: the cheapest and the dearest)')
    c.add_argument('--epochs', type=int, default=2, help='epochs of the real runs')
    c.add_argument('--difficulty', default='clutter')
    c.add_argument('--seeds', type=int, default=3)
    c.add_argument('--threads', type=int, default=1)
    c.add_argument('--startup', type=float, default=8.0, help="CPU-seconds of a run's start (kernel, imports)")
    c.add_argument('--score-images', type=int, default=500, help='test images the scoring is timed on (then scaled)')
    c.add_argument('--replan', action='store_true',
                   help="plan again from the measurements stored in the results file, measuring nothing")
    c.set_defaults(func=cmd_cost)
    r = sub.add_parser('report', help='the report of the finished runs of a benchmark sweep')
    r.add_argument('--sweep', default='attention_benchmark', help='the sweep, by name in the runs folder')
    r.add_argument('--root', help='the sweep folder (default: <runs_dir>/<sweep>)')
    r.add_argument('--out', default=str(RESULTS/'attention_benchmark_cpu'))
    r.add_argument('--samples', type=int, default=4, help='test images in the figures of maps')
    r.add_argument('--from-csv', help="a runs.csv of this report: records of its runs that have none kept (their "
                   "folders lost) are rebuilt from it, marked as such")
    r.add_argument('--note', default='', help='why, written into every record rebuilt by --from-csv')
    r.set_defaults(func=cmd_report)
    a = p.parse_args()
    a.func(a)


if __name__ == '__main__':
    main()
