"""Table 1 of the progressive attention paper on the CPU, from the weights we ship.

    python bench/table1_cpu.py export RUN VARIANT            # a run's best weights into the package, with their card
    python bench/table1_cpu.py report [--record V:MODEL=RUN]  # -> bench/results/table1_paper_cpu/

`export` writes the best weights of training run folder RUN (`tda train configs/<model>_<variant>_paper.yaml`) and
their model card into the package's weights (`tda.models.pretrained`), the test metrics measured again by today's
metrics on the test split of the run's data (`tda.experiments.table1.test_best`); a run still training is exported
only with --interim, and its card says so. `report` tests every shipped model on the test split of the paper-size
file of its variant (`<variant>_paper.h5` in the data folder: `tda data generate data_gen/<variant>_paper.yaml`) and
writes the table beside the paper's, the figures and the training curves of the records kept under `runs/` there;
`--record` copies the record of the run that made shipped weights in first.
"""
import argparse
import json
from pathlib import Path

from tda.core import TdaError
from tda.experiments.table1 import PAPER_TABLE1, report_pretrained, test_best
from tda.models.pretrained import export_pretrained
from tda.train import resolve_data

RESULTS = Path(__file__).resolve().parent/'results'


def paper_cell(model: str, variant: str) -> dict:
    "The paper's Table 1 numbers of `model` on `variant`, for a model card."
    tps = PAPER_TABLE1['tps'][variant]
    return {'accuracy': PAPER_TABLE1['accuracy'][variant][model], **({'tps': tps[model]} if model in tps else {}),
            'uniform_tps': tps['uniform'], 'source': 'Seo et al., Table 1'}


def cmd_export(a):
    run = Path(a.run)
    model = json.loads((run/'run.json').read_text())['config']['model']
    if not (run/'results.json').exists() and not a.interim:
        raise TdaError(f"{run} has not finished; finish it with `tda train ... --resume`, or pass --interim to ship its "
                       f"best epoch so far.")
    test = test_best(run, progress=True)
    test.pop('_table')
    card = export_pretrained(run, a.variant, folder=a.weights, test=test, paper=paper_cell(model, a.variant),
                             overwrite=a.overwrite)
    print(f"{card}: {model} on {a.variant}, test accuracy {100 * test['accuracy']:.2f}%, TPS {100 * test['tps']:.2f}")


def cmd_report(a):
    records = {}
    for r in a.record:
        key, _, run = r.partition('=')
        v, _, m = key.partition(':')
        if not (v and m and run): raise TdaError(f"--record {r!r}: give VARIANT:MODEL=RUN, e.g. mdist:stn=runs/stn_mdist")
        records.setdefault(v, {})[m] = run
    files = {v: resolve_data(f'{v}_paper.h5') for v in a.variants}
    s = report_pretrained(a.out, files, records=records, progress=True)
    print(s['table'])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    e = sub.add_parser('export', help="a training run's best weights into the package, with their card")
    e.add_argument('run')
    e.add_argument('variant', choices=sorted(PAPER_TABLE1['accuracy']))
    e.add_argument('--interim', action='store_true', help='ship a run that is still training (its best epoch so far)')
    e.add_argument('--overwrite', action='store_true', help='replace shipped weights of the same model and variant')
    e.add_argument('--weights', help="the folder of the weights and cards (default: the package's)")
    e.set_defaults(func=cmd_export)
    r = sub.add_parser('report', help='the Table 1 report of the shipped weights')
    r.add_argument('--variants', nargs='+', default=['mref', 'mdist', 'mbg'])
    r.add_argument('--record', action='append', default=[], metavar='VARIANT:MODEL=RUN',
                   help='the run that made shipped weights: its record joins the report (repeatable)')
    r.add_argument('--out', default=str(RESULTS/'table1_paper_cpu'))
    r.set_defaults(func=cmd_report)
    a = p.parse_args(argv)
    try: a.func(a)
    except TdaError as err: p.exit(2, f"table1_cpu.py: {err}\n")


if __name__ == '__main__':
    main()
