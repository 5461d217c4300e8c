"""Why a TDAF model costs more time than its FLOPs: throughput of the backbone at each flow's resolution.

Flow n of N runs the backbone's stem and first L-(N-n) stages on the input down-sampled N-n times (TDAF Eqs. 1-2).
This times exactly those pieces of the plain backbone (inference mode, batch 8, 224 px input by default) and
reports multiply-accumulates per second for each: if the coarse flows' pieces run at a lower rate than the full
backbone, a TDAF model's latency ratio exceeds its FLOP ratio by that much, whatever the wrapper does. Every
repetition times every piece once, in a new random order.

    python bench/tdaf_flows.py                          # ResNet-50, 3 flows, CPU
    python bench/tdaf_flows.py --backbone resnet101 --device cuda

Prints a table and writes bench/results/tdaf_flows_<backbone>_f<N>_<device>.json (with the run record and device name).
"""
import argparse
import random
import statistics
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from model_cost import device_name, forward_seconds
from tda.core import run_record, write_json
from tda.models.tdaf import tdaf_backbone


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--backbone', default='resnet50')
    p.add_argument('--flows', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--repeats', type=int, default=12)
    p.add_argument('--device', default='cpu')
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    stem, stages, _, _ = tdaf_backbone(a.backbone)
    L, N = len(stages), a.flows
    pieces = {}
    for n in range(1, N + 1):
        size = a.size // 2 ** (N - n)
        depth = L - (N - n)
        pieces[f'flow {n}: stem + {depth} stages @ {size} px'] = (nn.Sequential(stem, *stages[:depth]).eval().to(device),
                                                                torch.randn(a.batch_size, 3, size, size, device=device))
    macs = {}
    with torch.inference_mode():
        for k, (m, x) in pieces.items():
            with FlopCounterMode(display=False) as fc: m(x)
            macs[k] = fc.get_total_flops() / 2
            forward_seconds(m, x, device)   # warm-up
    times = {k: [] for k in pieces}
    rng = random.Random(0)
    for _ in tqdm(range(a.repeats), desc='repetitions'):
        order = list(pieces)
        rng.shuffle(order)
        for k in order: times[k].append(forward_seconds(*pieces[k], device))
    full = list(pieces)[-1]
    rows = []
    for k in pieces:
        t = statistics.median(times[k])
        rows.append({'piece': k, 'gmacs': macs[k] / 1e9, 'ms': 1000 * t, 'gmacs_per_s': macs[k] / 1e9 / t,
                     'ms_at_full_rate': 1000 * macs[k] / (macs[full] / statistics.median(times[full]))})
    extra = sum(r['ms'] - r['ms_at_full_rate'] for r in rows)
    base = rows[-1]['ms']
    print(f"{device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads, {a.backbone}, batch {a.batch_size}, "
          f"median of {a.repeats} interleaved repetitions")
    print(f"{'piece':44s} {'GMACs':>7s} {'ms':>8s} {'GMAC/s':>7s} {'ms at the full rate':>20s}")
    for r in rows: print(f"{r['piece']:44s} {r['gmacs']:7.2f} {r['ms']:8.1f} {r['gmacs_per_s']:7.1f} {r['ms_at_full_rate']:20.1f}")
    print(f"the coarse flows take {extra:.1f} ms more than at the full backbone's rate: {100 * extra / base:.1f}% of the backbone's time")
    out = Path(__file__).parent/'results'/f'tdaf_flows_{a.backbone}_f{N}_{device.type}.json'
    write_json(out, {'device': device_name(device), 'rows': rows, 'extra_ms': extra, 'extra_fraction_of_backbone': extra / base,
                     'run': run_record(vars(a), seed=0, threads=torch.get_num_threads())})
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
