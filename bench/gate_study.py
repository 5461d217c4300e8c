"""What makes HAttNet-CTX's first sigmoid gates open on the background: short controlled runs, one change at a time.

Every variant trains HAttNet-CTX on paper-size MREF with the authors' recipe (`configs/hattnet_ctx_mref_paper.yaml`,
preset `seo2016`), the same seed and data, for `--epochs` epochs, changing one thing; then the best epoch's weights
are measured on `--n` fixed validation questions with `tda.experiments.table1.attention_statistics`: validation
accuracy, the library's TPS (placed maps, strokes and one pixel around them) of the product of the maps and of each
layer's map, and each layer's mean attention on the background, the queried digit and the other digits.

The variants (`--variants`, default all):

- `authors`: the recipe as it is (the Table 1 runs' setting);
- `gate_bias_-2`, `gate_bias_+2`: the sigmoid gates start shut (0.12) or open (0.88) instead of about 0.5;
- `before_pool`: the intermediate gates sit on the convolutions' outputs, before the pool;
- `before_relu`: the gates' units see the pooled pre-activations (the gate before the ReLU);
- `glorot`: Theano-era initialisation (Glorot-uniform weights, zero biases, N(0, 0.01²) query embeddings);
- `random_batches`: batches of random questions instead of whole images;
- `shipped_40_epochs` (no training): the shipped weights after 40 epochs of the authors' recipe, for "more epochs".

Runs go to `--runs` (one folder per variant) and resume where they stopped (`tda.train` checkpoints every epoch);
a finished run is measured again without training. Prints a table and writes `bench/results/gate_study_cpu.json`
(the run record, the data identity and each variant's config).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/gate_study.py --runs /path/to/runs --epochs 4
"""
import argparse
import json
import time
from pathlib import Path

import torch

from tda import create_model
from tda.core import run_record, write_json
from tda.data.dataset import MREFDataset
from tda.experiments.table1 import attention_statistics
from tda.train import TrainConfig, load_best, resolve_data, train

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    'authors': {},
    'gate_bias_-2': {'model_args': {'gate_bias': -2.0}},
    'gate_bias_+2': {'model_args': {'gate_bias': 2.0}},
    'before_pool': {'model_args': {'gate_position': 'before_pool'}},
    'before_relu': {'model_args': {'gate_position': 'before_relu'}},
    'glorot': {'model_args': {'init': 'glorot'}},
    'random_batches': {'dataset_args': {'in_memory': True, 'group_by_image': False}},
    'shipped_40_epochs': None,
}


def config_of(variant: str, args) -> TrainConfig:
    "The study's config of `variant`: the paper config with the variant's one change."
    import yaml
    cfg = yaml.safe_load((REPO/'configs'/'hattnet_ctx_mref_paper.yaml').read_text())
    cfg.update(VARIANTS[variant], epochs=args.epochs, out_dir=str(Path(args.runs)/variant), progress=False,
               mixed_precision=args.precision, data=args.data)
    return TrainConfig.from_dict(cfg)


def train_variant(variant: str, args) -> Path:
    "Train (or resume, or leave alone when finished) the run of `variant`; its folder."
    cfg = config_of(variant, args)
    out = Path(cfg.out_dir)
    if (out/'results.json').exists() and 'test' in json.loads((out/'results.json').read_text()):
        return out
    train(cfg, resume=(out/'checkpoints'/'last.pt').exists(), overwrite=out.exists() and not (out/'checkpoints'/'last.pt').exists())
    return out


def row_of(variant: str, model, ds, args, extra: dict) -> dict:
    st = attention_statistics(model, ds, n=args.n)
    return {'variant': variant, **extra, **st}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--runs', required=True, help='folder of the study runs (one per variant)')
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument('--data', default='mref_paper.h5')
    p.add_argument('--n', type=int, default=2000, help='validation questions measured')
    p.add_argument('--precision', default='bf16', choices=['no', 'bf16'], help="training precision ('no': fp32)")
    p.add_argument('--out', default=str(REPO/'bench'/'results'/'gate_study_cpu.json'))
    args = p.parse_args(argv)
    t0, data = time.time(), resolve_data(args.data)
    val = MREFDataset(data, 'val', in_memory=True)
    rows = []
    for v in args.variants:
        if VARIANTS[v] is None:
            model = create_model('hattnet_ctx', pretrained='mref')
            rows.append(row_of(v, model, val, args, {'epochs': 40, 'best_epoch': None, 'config': 'shipped weights'}))
        else:
            run = train_variant(v, args)
            res = json.loads((run/'results.json').read_text())
            rows.append(row_of(v, load_best(run), val, args, {'epochs': res['epochs_run'], 'best_epoch': res['best_epoch'],
                                                              'config': res['config']}))
        r = rows[-1]
        print(f"{v:18s} val acc {r['accuracy']:.3f}  TPS product {100 * r['tps']['product']:.2f}  "
              + '  '.join(f"{k} {100 * t:.2f}" for k, t in r['tps'].items() if k != 'product')
              + f"  | layer 1 mean: background {r['mean']['attention1']['background']:.3f}, "
                f"queried {r['mean']['attention1']['queried digit']:.3f}", flush=True)
    record = run_record(vars(args), seed=0, job='gate_study', data=val_identity(data),
                        threads=torch.get_num_threads(), seconds=round(time.time() - t0, 1))
    write_json(args.out, {'rows': rows, 'run': record}, overwrite=True)
    print(f"wrote {args.out}")


def val_identity(data) -> dict:
    return {**MREFDataset(data, 'train').identity(), 'file': Path(data).name}


if __name__ == '__main__':
    main()
