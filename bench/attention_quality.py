"""Attention quality of every shipped weight, with the library's one definition of true-positive strength.

For each pretrained model of the package (`tda.list_pretrained()`), `tda.experiments.table1.attention_statistics`
on the whole test split (or `--n` fixed questions of it) of the paper-size file it was trained on: accuracy, TPS of the product of
its placed maps and of each layer's map (segmentation: strokes and one pixel around them), uniform attention's TPS,
and each layer's mean attention on the background, the queried digit and the other digits. Prints a table and writes
`bench/results/attention_quality_cpu.json` (with the run record, the CPU and each file's identity).

    OMP_NUM_THREADS=2 python bench/attention_quality.py
"""
import argparse
import json
import time
from pathlib import Path

import torch

from tda.core import run_record, write_json
from tda.data.dataset import MREFDataset
from tda.experiments.table1 import PAPER_TABLE1, attention_statistics
from tda.models.pretrained import load_pretrained, pretrained_cards
from tda.train import resolve_data

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try: return next(l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines()
                     if l.startswith('model name'))
    except (OSError, StopIteration): return 'unknown CPU'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=10_000, help='test questions per model (fixed, seed 0; all of a split when more)')
    p.add_argument('--out', default=str(REPO/'bench'/'results'/'attention_quality_cpu.json'))
    args = p.parse_args(argv)
    t0, rows, data = time.time(), [], {}
    for (name, dataset), card in sorted(pretrained_cards().items(), key=lambda kv: (kv[0][1], kv[0][0])):
        fn = resolve_data(card['data']['file'])
        ds = MREFDataset(fn, 'test', in_memory=True)
        if ds.identity()['content_sha256'] != card['data']['content_sha256']:
            raise SystemExit(f"{fn} is not the file {name}-{dataset} was trained on (content differs from its card); "
                             f"generate it again with `tda data generate data_gen/{dataset}_paper.yaml --overwrite`.")
        data[dataset] = {**ds.identity(), 'file': fn.name}
        st = attention_statistics(load_pretrained(name, dataset), ds, n=args.n)
        rows.append({'model': name, 'dataset': dataset, **st,
                     'paper': {'accuracy': PAPER_TABLE1['accuracy'][dataset].get(name),
                               'tps': PAPER_TABLE1['tps'][dataset].get(name),
                               'uniform_tps': PAPER_TABLE1['tps'][dataset]['uniform']}})
        r, layers = rows[-1], [k for k in st['tps'] if k != 'product']
        first = st['mean'][layers[0]]
        print(f"{dataset:5s} {name:12s} acc {100 * r['accuracy']:5.1f}  TPS product {100 * st['tps']['product']:5.2f} "
              f"(paper {r['paper']['tps']}, uniform {100 * st['uniform_tps']:.2f})  per layer "
              + ' '.join(f"{100 * st['tps'][k]:.2f}" for k in layers)
              + f"  | first map: background {first['background']:.3f}, queried {first['queried digit']:.3f}",
              flush=True)
    record = run_record(vars(args), seed=0, job='attention_quality', data=data, cpu=cpu_name(),
                        threads=torch.get_num_threads(), seconds=round(time.time() - t0, 1))
    write_json(args.out, {'rows': rows, 'run': record}, overwrite=True)
    print(f"wrote {args.out}")


if __name__ == '__main__':
    main()
