"""Validation accuracy of every shipped weight with its batch-norm statistics as shipped and as `precise_bn` makes them.

`tda.train.precise_bn` recomputes batch-norm statistics over training batches before an evaluation (the STN configs of
MREF and MBG use it: there the running averages lagged the weights and left validation at chance). This checks what it
would change for the weights we ship, trained without it: for each pretrained model, the accuracy on the first `--n`
validation questions of the paper-size file it was trained on, with the shipped statistics and with statistics
recomputed over the first `--batches` training batches of 200 (as `TrainConfig.precise_bn` does). Prints a table and
writes `bench/results/precise_bn_cpu.json` (with the run record, the CPU and each file's identity).

    OMP_NUM_THREADS=2 python bench/precise_bn.py
"""
import argparse
import itertools
import time
from pathlib import Path

import torch

from tda.core import run_record, write_json
from tda.data.dataset import MREFDataset
from tda.models.pretrained import load_pretrained, pretrained_cards
from tda.train import TrainConfig, data_loader, precise_bn, resolve_data

from attention_quality import cpu_name  # bench/, beside this script

REPO = Path(__file__).resolve().parents[1]
INPUTS = ['image', 'query', 'image_id']


@torch.no_grad()
def accuracy(model, loader, n_batches) -> float:
    right = seen = 0
    for b in itertools.islice(loader, n_batches):
        right += (model(*[b[k] for k in INPUTS])['logits'].argmax(-1) == b['answer']).sum().item()
        seen += len(b['answer'])
    return right / seen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=3000, help='validation questions per model (the first ones, in batches of 500)')
    p.add_argument('--batches', type=int, default=25, help='training batches of 200 the statistics are recomputed over')
    p.add_argument('--out', default=str(REPO/'bench'/'results'/'precise_bn_cpu.json'))
    args = p.parse_args(argv)
    cfg = TrainConfig(num_workers=0)
    t0, rows, data = time.time(), [], {}
    for (name, dataset), card in sorted(pretrained_cards().items(), key=lambda kv: (kv[0][1], kv[0][0])):
        fn = resolve_data(card['data']['file'])
        ds = {s: MREFDataset(fn, s, in_memory=True, group_by_image=True) for s in ('train', 'val')}
        if ds['train'].identity()['content_sha256'] != card['data']['content_sha256']:
            raise SystemExit(f"{fn} is not the file {name}-{dataset} was trained on (content differs from its card); "
                             f"generate it again with `tda data generate data_gen/{dataset}_paper.yaml --overwrite`.")
        data[dataset] = {**ds['train'].identity(), 'file': fn.name}
        model = load_pretrained(name, dataset).eval()
        val = data_loader(ds['val'], 500, False, cfg)
        before = accuracy(model, val, -(-args.n // 500))
        precise_bn(model, itertools.islice(data_loader(ds['train'], 200, False, cfg), args.batches), INPUTS)
        after = accuracy(model, val, -(-args.n // 500))
        rows.append({'model': name, 'dataset': dataset, 'shipped': before, 'precise_bn': after})
        print(f"{dataset:5s} {name:12s} validation accuracy shipped {100 * before:6.2f}  precise_bn {100 * after:6.2f}  "
              f"({100 * (after - before):+.2f})", flush=True)
    record = run_record(vars(args), seed=0, job='precise_bn', data=data, cpu=cpu_name(),
                        threads=torch.get_num_threads(), seconds=round(time.time() - t0, 1))
    write_json(args.out, {'rows': rows, 'run': record}, overwrite=True)
    print(f"wrote {args.out}")


if __name__ == '__main__':
    main()
