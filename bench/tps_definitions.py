"""True-positive strength (TPS) of our shipped MREF weights under each reading of the paper's definition.

Seo et al. (Table 1b) define TPS as "the sum of the attention probabilities within the ground-truth segmentation
divided by the sum of all attention probabilities", and report on MREF uniform 2.34, SOFT 13.61, HAttNet 17.39,
HAttNet-CTX 22.59 (%). They do not say which map (the product of the layers' maps or the last softmax), at which
resolution, resized how, nor which segmentation. This script measures our shipped checkpoints (and uniform
attention) on the same test questions under every reading the text allows, and, for each reading, the ceiling
a perfect map reaches:

- the map: the product of every layer's map (the library's default, `effective_attention`), the same with each
  layer's map min-max normalised first, the first (49x49 sigmoid) map alone, or the last (4x4 softmax) map alone.
  (Normalising each layer's map by its sum before the product changes nothing: TPS is a ratio, a constant factor
  per layer cancels; the script checks it.)
- how a map reaches the 100x100 mask: bilinear resize over the whole image (`F.interpolate`, the library's),
  nearest, or *registered*: each cell placed at the centre of its receptive field. The trunk's valid 3x3
  convolutions and 2x2 pools put the cells of the 49, 23, 10, 4 grids at input pixels 2p+1.5, 4p+4.5,
  8p+10.5, 16p+22.5, not where an even tiling of the image puts them (the 10x10 map is off by up to 12 px).
  Or no resize: the TPS at a map's own grid, the mask taken as the cells it touches.
- the segmentation: stroke pixels with alpha > 0.5 (the generator's instance map, the library's mask), every
  pixel with ink (alpha > 0; from the black MREF background and the digits' boxes), the stroke mask dilated by
  one pixel, the tight box of the stroke pixels, the digit's placed square box.

The uniform column (all cells equal) is what the paper's "Uniform" row measures under that reading; the paper's
2.34% tells which segmentations and resolutions are the paper's size. The ceilings: `best` is the highest TPS any
map of the reading's finest grid reaches (all mass on the single best cell: TPS is a mass-weighted mean over
cells, so no mixture does better); `oracle` puts the mass on the cells in proportion to the mask's share of each.
For the product readings they are those of the 49x49 map alone (a product of maps can be a little sharper).

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/tps_definitions.py            # 2,000 test questions
    PYTHONPATH=. python bench/tps_definitions.py --n 500 --data path/to/mref_paper.h5

Prints a table and writes bench/results/tps_definitions.json (with the run record and the data identity).
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tda import create_model
from tda.core import run_record, write_json
from tda.data.dataset import MREFDataset
from tda.data.mref import dataset_path, open_mref
from tda.experiments.table1 import PAPER_TABLE1
from tda.metrics import true_positive_strength, uniform_strength
from tda.models.hattnet import effective_attention
from tda.models.outputs import model_outputs
from tda.models.pretrained import pretrained_cards

MODELS = ('hattnet_ctx', 'hattnet', 'soft')
SIZE = 100
GRIDS = {49: (2, 1.5), 23: (4, 4.5), 10: (8, 10.5), 4: (16, 22.5)}  # cells n -> (stride, centre of cell 0) in pixels


def resize_matrix(n: int, how: str, size: int = SIZE) -> torch.Tensor:
    "The (size, n) matrix U that resizes a map a (n, n) to U a U^T (size, size): 'bilinear', 'nearest', 'registered'."
    if how in ('bilinear', 'nearest'):  # exactly F.interpolate's, as the library resizes
        eye = torch.eye(n)[:, None]  # (n, 1, n): one row per cell
        kw = {'align_corners': False} if how == 'bilinear' else {}
        return F.interpolate(eye, size=size, mode='linear' if how == 'bilinear' else 'nearest', **kw)[:, 0].T
    stride, c0 = GRIDS[n]  # registered: linear interpolation between receptive-field centres, constant beyond
    u = ((torch.arange(size, dtype=torch.float64) - c0) / stride).clamp(0, n - 1)
    i0 = u.floor().long().clamp(max=n - 2)
    w = u - i0
    U = torch.zeros(size, n, dtype=torch.float64)
    U[torch.arange(size), i0] = 1 - w
    U[torch.arange(size), i0 + 1] += w
    return U.float()


def cell_of_pixel(n: int, how: str, size: int = SIZE) -> torch.Tensor:
    "The cell (size,) of a grid of n cells each pixel falls in: an even tiling ('tiled') or the receptive fields."
    x = torch.arange(size, dtype=torch.float64)
    if how == 'tiled': return (x * n / size).floor().long().clamp(0, n - 1)
    stride, c0 = GRIDS[n]
    return ((x - c0) / stride + 0.5).floor().long().clamp(0, n - 1)


def up(a: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    "Maps (B, n, n) resized by U (size, n): (B, size, size), clamped at 0."
    return (U @ a @ U.T).clamp_min(0)


def tps(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    "Mass of a (B, H, W) inside m (B, H, W) over all its mass."
    a = a.double()
    return (a * m).sum((1, 2)) / a.sum((1, 2)).clamp_min(1e-300)


def grid_mask(m: torch.Tensor, n: int, how: str) -> torch.Tensor:
    "The cells (B, n, n) of a grid that mask m (B, size, size) touches, and each cell's share of the mask."
    c = cell_of_pixel(n, how)
    onehot = F.one_hot(c, n).float()  # (size, n)
    count = onehot.T @ m.float() @ onehot  # mask pixels per cell
    return count > 0, count


def ceilings(m: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    "Best single-cell TPS and the TPS of the mask-proportional map, for maps of a grid resized by U, per sample."
    mf = m.float()
    inside = U.T @ mf @ U  # (B, n, n): mass inside of each cell's resized kernel
    s = U.sum(0)
    total = s[:, None] * s[None, :]
    best = (inside / total.clamp_min(1e-12)).flatten(1).amax(1)
    # oracle: each cell's mass in proportion to the mask pixels it holds (cells taken as the pixels' nearest kernel)
    share = inside.clamp_min(0)
    return best, tps(up(share, U), m)


def ink_masks(batch: dict, digits: np.ndarray) -> torch.Tensor:
    """Every pixel of the queried digit with ink (alpha > 0): the canvas is black, a pixel with ink belongs to the
    last digit whose box holds it (a digit's box holds no ink of earlier digits)."""
    ink = batch['image'].amax(1) > 0  # (B, H, W)
    img = batch['image_id'].numpy()
    out = torch.zeros_like(ink)
    key = digits['image'].astype(np.int64) * 256 + digits['slot']
    order = np.argsort(key)
    for b, (i, slot) in enumerate(zip(img, batch['slot'])):
        rows = digits[order[np.searchsorted(key[order], i * 256): np.searchsorted(key[order], i * 256 + 256)]]
        own = torch.zeros(SIZE, SIZE, dtype=torch.long)
        for r in sorted(rows, key=lambda r: r['slot']):
            y0, x0, y1, x1 = (int(v) for v in r['box'])
            own[y0:y1, x0:x1] = int(r['slot'])
        out[b] = ink[b] & (own == int(slot))
    return out


def box_masks(batch: dict, digits: np.ndarray, stroke: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    "The tight box of the stroke mask and the digit's placed (square) box, (B, H, W) each."
    tight, placed = torch.zeros_like(stroke), torch.zeros_like(stroke)
    key = digits['image'].astype(np.int64) * 256 + digits['slot']
    order = np.argsort(key)
    q = batch['image_id'].numpy().astype(np.int64) * 256 + batch['slot'].numpy()
    boxes = digits['box'][order][np.searchsorted(key[order], q)]
    for b in range(len(stroke)):
        ys, xs = torch.nonzero(stroke[b], as_tuple=True)
        if len(ys): tight[b, ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        y0, x0, y1, x1 = (int(v) for v in boxes[b])
        placed[b, y0:y1, x0:x1] = True
    return tight, placed


def masks_of(batch: dict, digits: np.ndarray) -> dict:
    stroke = batch['mask']
    tight, placed = box_masks(batch, digits, stroke)
    dil = F.max_pool2d(stroke[:, None].float(), 3, 1, 1)[:, 0] > 0
    return {'stroke>0.5': stroke, 'ink>0': ink_masks(batch, digits), 'stroke+1px': dil, 'tight box': tight,
            'placed box': placed}


# reading -> (which maps, resize / grid); every reading of a SOFT model uses its one map
PIXEL_READINGS = {
    'product, bilinear (library default)': ('product', 'bilinear'),
    'product, registered': ('product', 'registered'),
    'product, per-layer min-max, bilinear': ('product_minmax', 'bilinear'),
    'first map (49x49) only, bilinear': ('first', 'bilinear'),
    'last map, bilinear': ('last', 'bilinear'),
    'last map, nearest': ('last', 'nearest'),
    'last map, registered': ('last', 'registered'),
}
GRID_READINGS = {
    'last map at its 4x4 grid, tiled cells': ('last', 'tiled'),
    'last map at its 4x4 grid, registered cells': ('last', 'registered'),
    'product at the 49x49 grid, registered cells': ('product', 'registered'),
}


def minmax(a: torch.Tensor) -> torch.Tensor:
    "Each map (B, n, n) min-max normalised to [0, 1]; a constant map becomes all ones."
    lo, hi = a.amin((1, 2), keepdim=True), a.amax((1, 2), keepdim=True)
    return torch.where(hi > lo, (a - lo) / (hi - lo).clamp_min(1e-12), torch.ones_like(a))


def pixel_map(maps: list, which: str, how: str) -> torch.Tensor:
    "One (B, 100, 100) map from the layers' maps [(B, n, n), ...] (input side first)."
    if which == 'last' or len(maps) == 1: maps = maps[-1:]
    elif which == 'first': maps = maps[:1]
    out = None
    for a in maps:
        if which == 'product_minmax' and len(maps) > 1: a = minmax(a)
        a = up(a, resize_matrix(a.shape[-1], how))
        out = a if out is None else out * a
    return out


def grid_map(maps: list, which: str, how: str) -> torch.Tensor:
    "One map at a grid: the last map as it is, or the product of the maps at the finest grid (coarser ones registered)."
    if which == 'last' or len(maps) == 1: return maps[-1]
    n = maps[0].shape[-1]
    out = maps[0]
    for a in maps[1:]:  # registered resize to the finest grid: a cell centre of the finest grid as a pixel position
        stride, c0 = GRIDS[n]
        U = resize_matrix(a.shape[-1], 'registered', size=SIZE)
        centres = (c0 + stride * torch.arange(n, dtype=torch.float64)).round().long().clamp(0, SIZE - 1)
        Un = U[centres]
        out = out * up(a, Un)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', help='paper-size MREF file (default: the data folder\'s mref_paper.h5)')
    p.add_argument('--n', type=int, default=2000, help='test questions: the first N of the test split (whole images)')
    p.add_argument('--batch-size', type=int, default=250)
    p.add_argument('--out', help='JSON file (default bench/results/tps_definitions.json)')
    a = p.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    path = Path(a.data) if a.data else dataset_path('mref', 'paper')
    ds = MREFDataset(path, 'test', masks=True)
    with open_mref(path, 'test') as f: digits = f['test']['digits'][()]
    qi = ds.questions['image']
    n = min(a.n, len(ds))
    n = int(np.searchsorted(qi, qi[n - 1], side='right'))  # whole images
    cards = pretrained_cards()
    models = {m: create_model(m, pretrained='mref').eval() for m in MODELS}
    labels = list(PIXEL_READINGS) + list(GRID_READINGS)
    acc = {}  # (reading, mask) -> column -> list of per-sample tensors
    correct = {m: [] for m in MODELS}
    sumnorm_diff, default_diff = 0.0, 0.0
    gates = {}  # model -> layer -> region -> [sum, count]: where the sigmoid gates are open

    def add(key, col, v): acc.setdefault(key, {}).setdefault(col, []).append(v.double())

    for s in range(0, n, a.batch_size):
        idx = torch.arange(s, min(s + a.batch_size, n))
        batch = ds.batch(idx)
        batch['slot'] = torch.as_tensor(ds.questions['slot'][idx.numpy()].astype(np.int64))
        masks = masks_of(batch, digits)
        outs = {}
        with torch.inference_mode():
            for m, model in models.items():
                o = model_outputs(model, batch['image'], batch['query'], image_id=batch['image_id'])
                att = o['attention']
                maps = [t.float()[:, 0] for t in (att.values() if isinstance(att, dict) else att)]
                outs[m] = maps
                correct[m].append(o['logits'].argmax(1) == batch['answer'])
        ink = batch['image'].amax(1) > 0
        regions = {'queried digit': masks['ink>0'], 'other digits': ink & ~masks['ink>0'], 'background': ~ink}
        for m, maps in outs.items():
            for li, g in enumerate(maps[:-1]):  # the sigmoid layers, registered onto the pixels
                g = up(g, resize_matrix(g.shape[-1], 'registered'))
                for rn, rm in regions.items():
                    layer = f'layer {li + 1} ({maps[li].shape[-1]}x{maps[li].shape[-1]})'
                    t = gates.setdefault(m, {}).setdefault(layer, {}).setdefault(rn, [0.0, 0])
                    t[0] += float((g * rm).sum()); t[1] += int(rm.sum())
        fine = outs['hattnet_ctx']  # the grids of the HAttNet maps, for uniform and the ceilings
        for m, maps in outs.items():  # checks: our default equals the library's; per-layer sum normalisation is a no-op
            lib = true_positive_strength(effective_attention([t[:, None] for t in maps], (SIZE, SIZE)),
                                         masks['stroke>0.5'])
            default_diff = max(default_diff, float((lib - tps(pixel_map(maps, 'product', 'bilinear'),
                                                                masks['stroke>0.5'])).abs().max()))
            normed = [t / t.sum((1, 2), keepdim=True) for t in maps]
            sumnorm_diff = max(sumnorm_diff, float((tps(pixel_map(normed, 'product', 'bilinear'), masks['stroke>0.5'])
                                                    - lib).abs().max()))
        for r, (which, how) in PIXEL_READINGS.items():
            for mk, mask in masks.items():
                for m, maps in outs.items(): add((r, mk), m, tps(pixel_map(maps, which, how), mask))
                ones = [torch.ones_like(t) for t in fine]
                add((r, mk), 'uniform', tps(pixel_map(ones, which, how), mask))
                grid = 4 if which == 'last' else 49
                best, oracle = ceilings(mask, resize_matrix(grid, how))
                add((r, mk), 'best', best); add((r, mk), 'oracle', oracle)
        for r, (which, how) in GRID_READINGS.items():
            for mk, mask in masks.items():
                grid = 4 if which == 'last' else 49
                gm, count = grid_mask(mask, grid, how)
                for m, maps in outs.items():
                    g = grid_map(maps, which, how)
                    if g.shape[-1] != grid: g = grid_map(maps, 'last', how)  # SOFT: its one map, at 4x4
                    gm_m = gm if g.shape[-1] == grid else grid_mask(mask, g.shape[-1], how)[0]
                    add((r, mk), m, tps(g, gm_m))
                add((r, mk), 'uniform', gm.flatten(1).float().mean(1))
                add((r, mk), 'best', torch.ones(len(mask)))
                add((r, mk), 'oracle', torch.ones(len(mask)))
    rows = []
    for (r, mk), cols in acc.items():
        row = {'reading': r, 'mask': mk, 'level': 'pixel' if r in PIXEL_READINGS else 'grid'}
        for c, vs in cols.items():
            v = torch.cat(vs)
            row[c] = float(v.mean()) * 100
            row[c + '_se'] = float(v.std() / len(v) ** 0.5) * 100
        rows.append(row)
    accuracy = {m: float(torch.cat(c).float().mean()) * 100 for m, c in correct.items()}
    paper = {m: PAPER_TABLE1['tps']['mref'][m] for m in MODELS} | {'uniform': PAPER_TABLE1['tps']['mref']['uniform']}
    print(f"TPS [%] on the first {n} test questions of {path.name} ({int(np.unique(qi[:n]).size)} images); "
          f"accuracy {', '.join(f'{m} {v:.2f}' for m, v in accuracy.items())}")
    cols = ('hattnet_ctx', 'hattnet', 'soft', 'uniform', 'best', 'oracle')
    names = ('CTX', 'HAttNet', 'SOFT', 'uniform', 'best', 'oracle')
    head = f"{'reading':46s} {'mask':11s} " + ' '.join(f"{c:>11s}" for c in names)
    print(head)
    print(f"{'paper (Table 1b, MREF)':46s} {'':11s} " + ' '.join(f"{paper[c]:11.2f}" for c in cols[:4]))
    last = None
    for row in rows:
        if last is not None and row['reading'] != last: print()
        last = row['reading']
        print(f"{row['reading']:46s} {row['mask']:11s} " + ' '.join(f"{row[c]:11.2f}" for c in cols))
    print(f"checks: library default vs ours max |diff| {default_diff:.2e}; "
          f"per-layer sum normalisation vs none {sumnorm_diff:.2e}")
    gates = {m: {l: {r: v[0] / max(v[1], 1) for r, v in d.items()} for l, d in ls.items()} for m, ls in gates.items()}
    print("mean sigmoid gate (registered onto the pixels) on the queried digit's ink / other digits' ink / background:")
    for m, ls in gates.items():
        print(f"  {m:12s} " + '; '.join(
            f"{l}: {d['queried digit']:.3f} / {d['other digits']:.3f} / {d['background']:.3f}" for l, d in ls.items()))
    out = Path(a.out) if a.out else Path(__file__).parent/'results'/'tps_definitions.json'
    write_json(out, {'n_questions': n, 'n_images': int(np.unique(qi[:n]).size), 'accuracy': accuracy,
                     'paper_tps': paper,
                     'rows': rows, 'gates': gates, 'checks': {'library_default_max_abs_diff': default_diff,
                                              'per_layer_sum_normalisation_max_abs_diff': sumnorm_diff},
                     'weights': {m: cards[(m, 'mref')]['weights_sha256'] for m in MODELS},
                     'data': {**ds.identity(), 'file': path.name}, 'device': 'cpu', 'seconds': time.time() - t0,
                     'run': run_record(vars(a), seed=0, threads=torch.get_num_threads())})
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
