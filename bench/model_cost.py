"""Model cost of the TDAN (Table 1) and TDAF (Tables 2-3) papers: parameters, FLOPs and forward latency.

Parameters and multiply-accumulates (torch's FLOP counter / 2, the unit of the papers' "FLOPs") of every model of
the table, beside the paper's figures; then forward latency (inference mode, batch 8, 224 px by default) of each
model, measured side by side in one run: every repetition times every model once, after one warm-up pass each, in
a new random order each time, so that drifts of the machine fall on all models alike. The ratio is the median over
repetitions of the model's latency over its plain backbone's in the same repetition (ResNet-50 for the TDAN table;
for a TDAF model the backbone it wraps), with its interquartile range, beside the FLOP ratio. The TDAF table also times ResNet-50 ANAR-3 3F with its flows run one after the other
(order='flow') against the default stage-major order, and the same three flows without ANARs (the concatenation
ablation) and a single flow (the backbone inside the wrapper, with Multi-Flow BatchNorm), which split the overhead
into wrapper, flows and attention. The tasks table (`--table tasks`) times TDAF beyond
classification against its own baseline, each on its paper's input: 3D ResNet-18 on 16-frame 112 px clips, FCOS with a
ResNet-50 pyramid on 512 px images (post-processing and NMS included, as the paper's "total time"), SimplePose on
256x192 px; batch 2 by default for it. On a GPU (`--device cuda`) it adds training and inference
images/s and peak memory.

    python bench/model_cost.py                       # the TDAN table, CPU, batch 8, 12 repetitions
    python bench/model_cost.py --table tdaf
    python bench/model_cost.py --table tasks
    python bench/model_cost.py --device cuda --batch-size 64

Prints a table and writes bench/results/model_cost_<table>_<device>.json (with the run record and the device name).
"""
import argparse
import platform
import random
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tda.core import run_record, write_json
from tda import create_model
from tda.models.factory import PAPER_PARAMS, PAPER_TDAF, count_macs, count_params, paper_cost

PAPER_GPU_RATIO = {'resnet50_tdjoint_t2_m1': 570 / 493,   # TDAN: validation images/s, ResNet-50 over TDjoint
                   'resnet50_tdaf_anar3_f3': 0.018 / 0.015, 'resnet101_tdaf_anar3_f3': 0.035 / 0.031}  # TDAF: TitanXP forward time
# label -> (model name, options)
TABLES = {'tdan': {n: (n, {}) for n in PAPER_PARAMS},
          'tdaf': {'resnet50': ('resnet50', {}), 'resnet50_tdaf_anar3_f3': ('resnet50_tdaf_anar3_f3', {}),
                   'resnet50_tdaf_anar3_f3 (flow order)': ('resnet50_tdaf_anar3_f3', {'order': 'flow'}),
                   'resnet50_tdaf_concat_f3': ('resnet50_tdaf_concat_f3', {}),   # the flows without ANARs: what they cost alone
                   'resnet50_tdaf_anar3_f1': ('resnet50_tdaf_anar3_f1', {}),     # one flow: the wrapper alone (Multi-Flow BN, set_flow)
                   'resnet50_tdaf_anar5_f3': ('resnet50_tdaf_anar5_f3', {}), 'resnet50_tdaf_anar7_f3': ('resnet50_tdaf_anar7_f3', {}),
                   'resnet101': ('resnet101', {}), 'resnet101_tdaf_anar3_f3': ('resnet101_tdaf_anar3_f3', {}),
                   'vgg16': ('vgg16', {}), 'vgg16_tdaf_anar5_f3': ('vgg16_tdaf_anar5_f3', {})},
          'tasks': {'r3d_18': ('r3d_18', {}), 'r3d_18_tdaf_anar5_f3': ('r3d_18_tdaf_anar5_f3', {}),
                    'fcos_resnet50': ('fcos_resnet50', {'image_size': 512}),
                    'fcos_resnet50_tdaf_anar3_f4': ('fcos_resnet50_tdaf_anar3_f4', {'image_size': 512}),
                    'simplepose_resnet50': ('simplepose_resnet50', {}),
                    'simplepose_resnet50_tdaf_anar3_f3': ('simplepose_resnet50_tdaf_anar3_f3', {}),
                    'simplepose_resnet50_tdaf_anar5_f3': ('simplepose_resnet50_tdaf_anar5_f3', {})}}
DEFAULT_BATCH = {'tasks': 2}


def input_shape(name: str, size: int) -> tuple:
    "One input of model `name` (C, [T,] H, W): a 16-frame 112 px clip, a 512 px or 256x192 image, else `size` px."
    if name.startswith('r3d_'): return (3, 16, 112, 112)
    if name.startswith('fcos_'): return (3, 512, 512)
    if name.startswith('simplepose_'): return (3, 256, 192)
    return (3, size, size)
assert set(PAPER_TDAF) <= set(TABLES['tdaf'])


def baseline(name: str) -> str:
    "The plain backbone a model's latency is compared with."
    if '_tdaf_' in name: return name.split('_tdaf_')[0]
    return 'resnet50' if name.startswith(('resnet', 'mobilenet')) and '_' in name else name


def device_name(device: torch.device) -> str:
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    try: return next(l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'cpu'


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


@torch.inference_mode()
def forward_seconds(model, x, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    model(x)
    sync(device)
    return time.perf_counter() - t0


def gpu_throughput(model, batch_size, size, device, steps=10) -> dict:
    "Training and inference images/s and peak memory on a GPU (mixed precision off, channels-last off)."
    x = torch.randn(batch_size, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch_size,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    res = {}
    for mode in ('train', 'val'):
        model.train(mode == 'train')
        torch.cuda.reset_peak_memory_stats(device)
        for k in range(steps + 2):
            if k == 2: sync(device); t0 = time.perf_counter()
            if mode == 'train':
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            else:
                with torch.inference_mode(): model(x)
        sync(device)
        res[f'{mode}_images_per_s'] = steps * batch_size / (time.perf_counter() - t0)
        res[f'{mode}_peak_memory_gib'] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--table', choices=sorted(TABLES), default='tdan')
    p.add_argument('--models', nargs='+', help='model names (default: those of --table)')
    p.add_argument('--batch-size', type=int, help='default 8 (2 for --table tasks)')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--repeats', type=int, default=12)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', help='JSON file (default bench/results/model_cost_<device>.json)')
    a = p.parse_args()
    device = torch.device(a.device)
    a.batch_size = a.batch_size or DEFAULT_BATCH.get(a.table, 8)
    torch.manual_seed(0)
    spec = {n: (n, {}) for n in a.models} if a.models else TABLES[a.table]
    models = {label: create_model(n, **opts).eval() for label, (n, opts) in spec.items()}
    rows = {}
    for label, m in models.items():
        pp, pg = paper_cost(spec[label][0])
        rows[label] = {'model': label, 'params_m': count_params(m) / 1e6, 'paper_params_m': pp,
                       'gmacs': count_macs(m, shape=input_shape(spec[label][0], a.size)) / 1e9, 'paper_gmacs': pg,
                       'input': list(input_shape(spec[label][0], a.size))}
    for m in models.values(): m.to(device)
    gen = torch.Generator().manual_seed(0)
    xs = {n: torch.rand(a.batch_size, *input_shape(spec[n][0], a.size), generator=gen).to(device) for n in models}
    times = {n: [] for n in models}
    for n, m in models.items(): forward_seconds(m, xs[n], device)  # warm-up
    rng = random.Random(0)
    for _ in tqdm(range(a.repeats), desc='repetitions'):
        order = list(models)
        rng.shuffle(order)  # a new order each repetition: no model always runs after the same one
        for n in order: times[n].append(forward_seconds(models[n], xs[n], device))
    for n in models:
        b = baseline(spec[n][0])
        r = rows[n]
        r['latency_ms'] = 1000 * statistics.median(times[n])
        r['latency_all_ms'] = [round(1000 * t, 1) for t in times[n]]
        if b in times:
            paired = [t / u for t, u in zip(times[n], times[b])]  # the two timed in the same repetition
            q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
            r.update(baseline=b, latency_ratio=statistics.median(paired), latency_ratio_quartiles=[q[0], q[2]],
                     ratio_of_median_latencies=statistics.median(times[n]) / statistics.median(times[b]),
                     flop_ratio=r['gmacs'] / rows[b]['gmacs'])
            r['latency_over_flop_ratio'] = r['latency_ratio'] / r['flop_ratio']
    if device.type == 'cuda':
        for n, m in models.items():
            if input_shape(spec[n][0], a.size) == (3, a.size, a.size): rows[n].update(gpu_throughput(m, a.batch_size, a.size, device))
    dev = device_name(device)
    print(f"{dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch_size}, {a.size} px, "
          f"median of {a.repeats} interleaved repetitions")
    print(f"{'model':38s} {'params':>8s} {'paper':>7s} {'GMACs':>6s} {'paper':>6s} {'latency':>9s} {'x base':>6s} {'IQR':>11s} {'FLOPs x':>7s}")
    nan = float('nan')
    for r in rows.values():
        print(f"{r['model']:38s} {r['params_m']:7.2f}M {r['paper_params_m'] or '':>6}M {r['gmacs']:6.2f} {r['paper_gmacs'] or '':>6} "
              f"{r['latency_ms']:7.0f}ms {r.get('latency_ratio', nan):6.3f} {'-'.join(f'{v:.3f}' for v in r.get('latency_ratio_quartiles', [])):>11s} "
              f"{r.get('flop_ratio', nan):7.3f}")
    name = a.table if not a.models else 'custom'
    out = Path(a.out) if a.out else Path(__file__).parent/'results'/f'model_cost_{name}_{device.type}.json'
    write_json(out, {'device': dev, 'rows': list(rows.values()), 'paper_gpu_latency_ratio': PAPER_GPU_RATIO,
                     'run': run_record(vars(a), seed=0, threads=torch.get_num_threads())})
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
