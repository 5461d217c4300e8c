"""Training throughput of the Table 1 models: tda's trainer against a bare PyTorch loop, fp32 and bf16, eager and compiled.

Every row trains one model on the same training images (a file generated with paper-size MREF's parameters and
`--train-images` training images, held in memory as uint8) at batch 200 with the authors' recipe (RMSprop 3e-3 as in
`seo2016`, gradient-norm clip 5, cross-entropy), and times the same work: one epoch of that file, every full batch
(the trainer its second epoch; the bare loops one epoch after 3 warm-up steps, in the order the trainer's sampler
draws; bf16 bare loops only `--bf16-steps` steps of it):

- `bare (as it was)`: the loop of the last release: one dict per question (with its 100x100 mask), collated by a
  DataLoader, random batches, the trunk's ReLU before its max-pool, glibc's default allocator;
- `bare`: the plainest correct loop over what the trainer does now: each batch gathered by index from the uint8
  tensor, batches of whole images (`group_by_image`), the query-free part once per image (`image_id`), freed memory
  kept in the process (`tda.train.cache_cpu_memory`);
- `trainer`: `tda.train` with the same settings (its own `train_samples_per_cpu_s` and `train_samples_per_s` of its
  second epoch: validation and checkpoints excluded).

Each measurement runs in a process of its own (the allocator setting and torch.compile's caches stay in a process).

Settings are interleaved (one repetition of every setting, then the next), and each is measured in questions per
CPU-second of its own process (time.process_time over the timed steps) as well as per wall-clock second: on a shared
machine the wall-clock figure depends on what else runs, the CPU-time figure much less (caches and memory bandwidth
are still shared). By default each run uses one thread, as the Table 1 runs train (one per core, two side by side);
with one busy thread, questions per CPU-second is the questions/s of that core on an otherwise idle machine.
Each figure is also given as a fraction of the machine's peak: multiply-adds per question (forward and backward,
torch's FlopCounterMode, no sharing) x questions per CPU-second, against (a) one core's nominal FMA rate (clock x FMA
pipes x fp32 lanes, from /proc/cpuinfo and the ISA flags) and (b) the rate a large fp32 matrix product reaches per
CPU-second here (what the BLAS gets out of a core).

    python bench/train_throughput.py                          # the three models, fp32 and bf16, eager and compiled
    python bench/train_throughput.py --models hattnet_ctx --precisions fp32 --modes eager --repeats 5

Prints a table and writes bench/results/train_throughput_<device>.json (with the run record).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from tda import create_model
from tda.core import run_record, write_json
from tda.data.dataset import MREFDataset, QuestionsByImage
from tda.data.mref import generate_mref, mref_info, mref_params
from tda.train import TrainConfig, cache_cpu_memory, resolve_data, train

BATCH = 200


def macs_per_question(name, ds=None):
    """Multiply-adds of one question, forward and backward, counted by torch: without `ds`, on a batch of 2 questions
    of different images (nothing shared); with `ds`, over the first 3 batches of 200 grouped by image as the loops
    train (the query-free part computed once per image), what a question costs there."""
    m = create_model(name).train()
    if ds is None:
        x, q, ids, y = torch.rand(2, 3, 100, 100), torch.tensor([1, 2]), None, torch.tensor([0, 1])
        batches = [(x, q, ids, y)]
    else:
        order = list(QuestionsByImage(ds._q['image'], seed=0))
        batches = [(b['image'], b['query'], b['image_id'], b['answer'])
                   for b in (ds.batch(order[i:i + BATCH]) for i in range(0, 3 * BATCH, BATCH))]
    with FlopCounterMode(display=False) as fc:
        for x, q, ids, y in batches: F.cross_entropy(m(x, q, ids)['logits'], y).backward()
    return fc.get_total_flops() / 2 / sum(len(b[3]) for b in batches)


def nominal_peak():
    "Nominal fp32 multiply-adds per second of the cores this process may use, and how it was worked out."
    flags = open('/proc/cpuinfo').read() if os.path.exists('/proc/cpuinfo') else ''
    mhz = [float(l.split(':')[1]) for l in flags.splitlines() if l.startswith('cpu MHz')]
    lanes = 16 if ' avx512f ' in flags else 8 if ' avx2 ' in flags else 4   # fp32 lanes per FMA instruction
    units = 2                                                              # FMA pipes per core (Zen 2-5, Intel since Haswell)
    cores = torch.get_num_threads()
    ghz = (statistics.median(mhz) / 1000) if mhz else float('nan')
    return cores * ghz * 1e9 * lanes * units, (f"{cores} cores x {ghz:.2f} GHz x {units} FMA pipes x {lanes} fp32 lanes "
                                               f"({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'})")


def matmul_peak(n=2048, reps=5):
    "fp32 multiply-adds per CPU-second of a large matrix product: what the BLAS reaches on these cores."
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    t = time.process_time()
    for _ in range(reps): a @ b
    return reps * n ** 3 / (time.process_time() - t)


def subset_file(src, out, images):
    "An MREF file with the same parameters as `src` and `images` training images (val/test tiny): a few dozen steps."
    p = mref_info(src)['params']
    params = mref_params(p['variant'], 'paper', seed=p['seed'], splits={'train': images, 'val': 20, 'test': 20})
    return generate_mref(out, params, workers=1, progress=False)


class OldDataset(torch.utils.data.Dataset):
    "The last release's item path: one dict per question, a 100x100 mask in each, stacked by the default collate."
    def __init__(self, ds): self.ds = ds
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        b = self.ds.batch([i])
        return {'image': b['image'][0], 'query': b['query'][0], 'answer': b['answer'][0], 'scale': b['scale'][0],
                'mask': (self.ds._instances[int(b['image_id'][0])] == self.ds._q['slot'][i]), 'index': b['index'][0]}


def relu_before_pool(model):
    "The trunk as it was: conv, ReLU, max-pool (the same function, more work)."
    for trunk in [getattr(model, 'trunk', None), getattr(model, 'localisation', None)]:
        for stage in trunk or []:
            stage[1], stage[2] = stage[2], stage[1]
    return model


def bare(name, ds, precision, mode, max_steps=None, old=False, seed=0):
    """Questions/s of the plainest loop (or the last release's) over what the trainer times: after 3 warm-up steps,
    one epoch of `ds` (every full batch of 200, in the order the trainer's sampler draws for its second epoch with
    `seed`), at most `max_steps` steps of it."""
    if not old: cache_cpu_memory()
    torch.manual_seed(seed)
    model = create_model(name)
    if old: model = relu_before_pool(model)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.RMSprop(model.parameters(), lr=3e-3, alpha=0.9, eps=1e-6)
    fwd = torch.compile(model) if mode == 'compiled' else model

    def epoch(e):
        if old:
            g = torch.Generator().manual_seed(seed * 1000 + e)
            yield from DataLoader(OldDataset(ds), batch_size=BATCH, shuffle=True, drop_last=True, generator=g)
            return
        sampler = QuestionsByImage(ds._q['image'], seed=seed)
        sampler.set_epoch(e)
        order = list(sampler)
        yield from (ds.batch(order[i:i + BATCH]) for i in range(0, len(order) - BATCH + 1, BATCH))

    def step(b):
        x = b['image'].contiguous(memory_format=torch.channels_last)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'):
            out = fwd(x, b['query']) if old else fwd(x, b['query'], b['image_id'])
        loss = F.cross_entropy(out['logits'].float(), b['answer'])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return len(b['answer'])

    for _, b in zip(range(3), epoch(0)): step(b)  # warm-up (and compilation)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for s, b in enumerate(epoch(1)):
        if max_steps is not None and s == max_steps: break
        n += step(b)
    return {'q_per_s': n / (time.perf_counter() - t0), 'q_per_cpu_s': n / (time.process_time() - c0)}


def trainer(name, data, precision, mode, tmp, rep):
    "Questions/s of `tda.train` over its second epoch (the first warms up and compiles)."
    cfg = TrainConfig(preset='seo2016', model=name, data=str(data), epochs=2, mixed_precision='bf16' if precision == 'bf16' else 'no',
                      compile=mode == 'compiled', dataset_args={'in_memory': True, 'group_by_image': True},
                      cpu=True, progress=False, out_dir=f"{tmp}/{name}-{precision}-{mode}-{rep}", seed=rep)
    train(cfg)
    last = json.loads(Path(cfg.out_dir, 'metrics.json').read_text())[-1]
    return {'q_per_s': last['train_samples_per_s'], 'q_per_cpu_s': last['train_samples_per_cpu_s']}


def one(a):
    "One measurement, in this process: prints its questions/s as the last line."
    m, pr, mo, loop = a.one
    loop = loop.replace('_', ' ')
    torch.set_num_threads(a.threads)
    if loop == 'trainer':
        with tempfile.TemporaryDirectory() as tmp: v = trainer(m, a.subset, pr, mo, tmp, a.repeats)
    else:
        steps = None if pr == 'fp32' else a.bf16_steps
        v = bare(m, MREFDataset(a.subset, 'train', in_memory=True), pr, mo, steps, old=loop == 'bare (as it was)',
                 seed=a.repeats)
    print(json.dumps(v))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='mref_paper.h5', help='paper-size MREF (tda data generate data_gen/mref_paper.yaml)')
    p.add_argument('--models', nargs='+', default=['hattnet_ctx', 'hattnet', 'soft'])
    p.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'])
    p.add_argument('--modes', nargs='+', default=['eager', 'compiled'])
    p.add_argument('--train-images', type=int, default=600,
                   help="training images of the file every loop trains on (~7 questions each; an epoch of 200-question batches)")
    p.add_argument('--bf16-steps', type=int, default=5, help='timed steps of the bare loops in bf16 (fp32: the whole epoch)')
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--trainer-precisions', nargs='+', default=['fp32'],
                   help="precisions the trainer runs in too (bf16 without hardware support takes ~10x as long as fp32)")
    p.add_argument('--threads', type=int, default=1,
                   help='threads per run (1: as the Table 1 runs train, one per core, two side by side)')
    p.add_argument('--out', default=None)
    p.add_argument('--one', nargs=4, metavar=('MODEL', 'PRECISION', 'MODE', 'LOOP'), help=argparse.SUPPRESS)
    p.add_argument('--subset', help=argparse.SUPPRESS)
    a = p.parse_args()
    data = resolve_data(a.data)
    if a.one: return one(a)
    torch.set_num_threads(a.threads)
    peak, peak_how = nominal_peak()
    mm = matmul_peak()
    settings = [(m, pr, mo, loop) for m in a.models for pr in a.precisions for mo in a.modes
                for loop in ('bare (as it was)', 'bare', 'trainer')
                if not (loop == 'bare (as it was)' and (pr, mo) != ('fp32', 'eager'))
                and not (loop == 'trainer' and pr not in a.trainer_precisions)]
    speeds = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        small = subset_file(data, Path(tmp)/'train_subset.h5', a.train_images)
        train_ds = MREFDataset(small, 'train', in_memory=True)
        unshared = {m: macs_per_question(m) for m in a.models}
        macs = {m: macs_per_question(m, train_ds) for m in a.models}  # what the loops below compute per question
        del train_ds
        for r in range(a.repeats):
            for s in settings:
                cmd = [sys.executable, __file__, '--data', str(data), '--bf16-steps', str(a.bf16_steps),
                       '--subset', str(small), '--one', *[x.replace(' ', '_') for x in s], '--repeats', str(r), '--threads', str(a.threads)]
                env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads)}
                v = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.splitlines()[-1])
                speeds[s].append(v)
                m, pr, mo, loop = s
                print(f"repeat {r + 1}/{a.repeats} {m:12s} {pr} {mo:8s} {loop:17s} {v['q_per_s']:7.1f} q/s "
                      f"{v['q_per_cpu_s']:7.1f} q/CPU-s", flush=True)
    device = f"{platform.processor() or platform.machine()} CPU, {a.threads} thread(s) per run"
    core_peak, rows = peak / a.threads, []
    for s, v in speeds.items():
        m, pr, mo, loop = s
        cpu, wall = statistics.median(x['q_per_cpu_s'] for x in v), statistics.median(x['q_per_s'] for x in v)
        b = speeds.get((m, pr, mo, 'bare'))
        base = statistics.median(x['q_per_cpu_s'] for x in b) if b else None
        mq = unshared[m] if loop == 'bare (as it was)' else macs[m]  # the old loop shares nothing
        rows.append({'model': m, 'precision': pr, 'mode': mo, 'loop': loop, 'q_per_cpu_s': cpu, 'q_per_s': wall,
                     'runs': v, 'macs_per_question': mq, 'macs_per_question_unshared': unshared[m],
                     'fraction_of_nominal_peak': cpu * mq / core_peak, 'fraction_of_matmul_rate': cpu * mq / mm,
                     'trainer_vs_bare_percent': (cpu / base - 1) * 100 if loop == 'trainer' and base else None})
    print(f"\n{device}; nominal fp32 peak {peak / 1e9:.1f} GMAC/s ({peak_how}), {core_peak / 1e9:.1f} per core; "
          f"a 2048^3 fp32 matmul reaches {mm / 1e9:.1f} GMAC per CPU-second")
    for m in a.models:
        print(f"{m}: {unshared[m] / 1e6:.0f} M multiply-adds per question alone, {macs[m] / 1e6:.0f} M in batches grouped "
              f"by image (forward and backward)")
    print()
    print("| model | precision | mode | loop | questions per CPU-s | questions/s (wall) | of nominal peak | "
          "of matmul rate | trainer vs bare |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tv = f"{r['trainer_vs_bare_percent']:+.1f}%" if r['trainer_vs_bare_percent'] is not None else ''
        print(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['loop']} | {r['q_per_cpu_s']:.1f} | {r['q_per_s']:.1f} | "
              f"{100 * r['fraction_of_nominal_peak']:.1f}% | {100 * r['fraction_of_matmul_rate']:.1f}% | {tv} |")
    out = a.out or Path(__file__).parent/'results'/f"train_throughput_{'cuda' if torch.cuda.is_available() else 'cpu'}.json"
    write_json(out, {'device': device, 'nominal_peak_macs_per_s': peak, 'nominal_peak_how': peak_how,
                     'matmul_macs_per_cpu_s': mm, 'threads': a.threads, 'batch_size': BATCH, 'data': str(data), 'rows': rows,
                     'run': run_record(vars(a))})
    print(f"\nwrote {out}")


if __name__ == '__main__':
    main()
