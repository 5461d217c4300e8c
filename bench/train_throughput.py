"""Training throughput: tda's trainer against a bare PyTorch loop over the same model and data.

Both train the same model (HAttNet-CTX by default) with the authors' recipe (RMSprop 3e-3, gradient-norm clip 5)
on the same in-memory MREF training split, with the same batch size, data loader settings and memory format,
alternating in one run: bare, trainer, bare, trainer, ... Throughput is training questions per second over
each epoch's training loop (validation, checkpoints and logging excluded on both sides: the trainer reports
its own `train_seconds`). The table gives the median over the repetitions and the trainer's overhead.

    python bench/train_throughput.py                        # smoke MREF, CPU (or the GPU when there is one)
    python bench/train_throughput.py --data mref_paper.h5 --epochs 2 --repeats 3

Prints a table and writes bench/results/train_throughput.json (with the run record).
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tda.core import MODELS, run_record, write_json
from tda.data.dataset import MREFDataset
from tda.train import TrainConfig, resolve_data, train


def bare_epoch(model, opt, loader, device, channels_last):
    "One epoch of the plainest correct loop: forward, cross-entropy, backward, clip, step."
    model.train()
    n, t0 = 0, time.perf_counter()
    for b in loader:
        x, q, y = b['image'].to(device, non_blocking=True), b['query'].to(device), b['answer'].to(device)
        if channels_last: x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x, q)['logits'], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        n += len(y)
    if device.type == 'cuda': torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='mref_smoke.h5')
    p.add_argument('--model', default='hattnet_ctx')
    p.add_argument('--batch-size', type=int, default=200)
    p.add_argument('--epochs', type=int, default=3, help='epochs per repetition (the first of each is warm-up)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--cpu', action='store_true')
    p.add_argument('--out', default=str(Path(__file__).parent/'results'/'train_throughput.json'))
    a = p.parse_args()
    device = torch.device('cuda' if torch.cuda.is_available() and not a.cpu else 'cpu')
    data = resolve_data(a.data)
    ds = MREFDataset(data, 'train', in_memory=True)
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            torch.manual_seed(r)
            model = MODELS.create(a.model).to(device).to(memory_format=torch.channels_last)
            opt = torch.optim.RMSprop(model.parameters(), lr=3e-3)
            loader = DataLoader(ds, batch_size=a.batch_size, shuffle=True, pin_memory=device.type == 'cuda')
            speeds = [bare_epoch(model, opt, loader, device, True) for _ in range(a.epochs)]
            bare += speeds[1:]
            cfg = TrainConfig(preset='seo2016', model=a.model, data=str(data), epochs=a.epochs, batch_size=a.batch_size,
                              seed=r, cpu=device.type == 'cpu', out_dir=f"{tmp}/run{r}", progress=False)
            train(cfg)
            hist = json.loads(Path(f"{tmp}/run{r}/metrics.json").read_text())
            ours += [h['train_samples_per_s'] for h in hist[1:]]
            print(f"repeat {r + 1}/{a.repeats}: bare {statistics.median(speeds[1:]):.1f} q/s, "
                  f"trainer {statistics.median(ours[-(a.epochs - 1):]):.1f} q/s", flush=True)
    mb, mo = statistics.median(bare), statistics.median(ours)
    overhead = (mb - mo) / mb * 100
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n| loop | questions/s (median of {len(bare)} epochs) |\n|---|---|\n| bare PyTorch | {mb:.1f} |\n"
          f"| tda trainer | {mo:.1f} |\n\ntrainer overhead: {overhead:+.2f}% on {name} ({a.model}, batch {a.batch_size}, "
          f"{len(ds)} questions of {data.name})")
    write_json(a.out, {'device': name, 'model': a.model, 'data': str(data), 'batch_size': a.batch_size,
                       'bare_q_per_s': bare, 'trainer_q_per_s': ours, 'median_bare': mb, 'median_trainer': mo,
                       'overhead_percent': overhead, 'run': run_record(vars(a))})


if __name__ == '__main__':
    main()
