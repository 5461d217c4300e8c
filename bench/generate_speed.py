"""Generation speed of the MNIST Reference datasets: tda's generator against a deliberately naive one.

The naive generator exists only here. It does what a first attempt would: one digit at a time with
PIL (paste with a mask, rejection test by cropping an occupancy image), one process, and h5py
compressing in the writing process. Both are timed side by side in one run on the same machine.

    python bench/generate_speed.py                 # paper sizes, naive timed on 600 images per variant
    python bench/generate_speed.py --naive-images 0   # naive on the full paper size (minutes)

Prints a table and writes bench/results/generate_speed.json (with the run record).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageChops

from tda.core import run_record, write_json
from tda.data.mnist import load_mnist
from tda.data.mref import SIZES, background_files, generate_mref, mref_params

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)]


def naive_image(rng, variant, mnist, bgs):
    "One canvas, one digit at a time with PIL."
    H = W = 100
    if variant == 'mbg':
        photo = bgs[rng.integers(len(bgs))]
        x, y = rng.integers(photo.width - W + 1), rng.integers(photo.height - H + 1)
        canvas = photo.crop((x, y, x + W, y + H))
    else:
        canvas = Image.new('RGB', (W, H))
    if variant == 'mdist':
        for _ in range(17):
            d = Image.fromarray(mnist.images[rng.integers(len(mnist.images))])
            cy, cx = rng.integers(4, 20, size=2)
            z = max(1, round(5 * rng.uniform(0.5, 3.0)))
            crop = d.crop((cx, cy, cx + 5, cy + 5)).resize((z, z), Image.BILINEAR)
            col = Image.new('RGB', (z, z), PALETTE[rng.integers(5)])
            layer = Image.new('RGB', (W, H))
            layer.paste(ImageChops.multiply(col, crop.convert('RGB')), (int(rng.integers(W - z + 1)), int(rng.integers(H - z + 1))))
            canvas = ImageChops.add(canvas, layer)
    occ, inst = Image.new('L', (W, H)), Image.new('L', (W, H))
    n = rng.integers(5, 10)
    rows = []
    for k, label in enumerate(rng.permutation(10)[:n], 1):
        pool = np.flatnonzero(mnist.labels == label)            # naive: searched for every digit
        d = Image.fromarray(mnist.images[pool[rng.integers(len(pool))]])
        placed = None
        for _ in range(20):
            s = rng.uniform(0.5, 3.0); z = round(28 * s)
            for _ in range(50):
                x, y = int(rng.integers(W - z + 1)), int(rng.integers(H - z + 1))
                if occ.crop((x, y, x + z, y + z)).getbbox() is None:
                    placed = (x, y, z); break
            if placed: break
        if not placed: continue
        x, y, z = placed
        g = d.resize((z, z), Image.BILINEAR)
        c = int(rng.integers(5))
        rgb = tuple(int(np.clip(v + rng.normal(0, 10), 0, 255)) for v in PALETTE[c])
        canvas.paste(Image.new('RGB', (z, z), rgb), (x, y), mask=g)
        occ.paste(255, (x, y, x + z, y + z), mask=g.point(lambda v: 255 if v > 0 else 0))
        inst.paste(k, (x, y, x + z, y + z), mask=g.point(lambda v: 255 if v > 127 else 0))
        rows.append((k, label, c, s))
    return np.asarray(canvas), np.asarray(inst), rows


def naive_generate(path, variant, splits, seed=0):
    pools = {'train': load_mnist('train'), 'test': load_mnist('test')}
    bgs = [Image.open(f).convert('RGB') for f in background_files('builtin')] if variant == 'mbg' else None
    bgs = [b if min(b.size) >= 100 else b.resize((max(100, b.width), max(100, b.height))) for b in bgs or []]
    rng = np.random.default_rng(seed)
    with h5py.File(path, 'w') as f:
        for s, n in splits.items():
            m = pools['test' if s == 'test' else 'train']
            out = [naive_image(rng, variant, m, bgs) for _ in range(n)]
            f.create_dataset(f'{s}/images', data=np.stack([o[0] for o in out]), chunks=(1, 100, 100, 3), compression='gzip')
            f.create_dataset(f'{s}/instances', data=np.stack([o[1] for o in out]), chunks=(1, 100, 100), compression='gzip')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--size', default='paper', choices=sorted(SIZES))
    ap.add_argument('--variants', nargs='+', default=['mref', 'mdist', 'mbg'])
    ap.add_argument('--naive-images', type=int, default=600, help='images the naive generator makes per variant (0: all)')
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'generate_speed.json'))
    a = ap.parse_args()
    t = time.perf_counter(); load_mnist('train'); load_mnist('test'); t_mnist = time.perf_counter() - t
    workers = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for v in a.variants:
            p = mref_params(v, a.size)
            n = sum(p.splits.values())
            r = {'variant': v, 'size': a.size, 'images': n}
            for w in sorted({1, workers}):
                t = time.perf_counter()
                generate_mref(Path(d)/f'{v}_{w}.h5', p, workers=w, progress=False)
                r[f'tda_{w}proc_s'] = time.perf_counter() - t
                r[f'tda_{w}proc_bytes'] = (Path(d)/f'{v}_{w}.h5').stat().st_size
            k = n if a.naive_images <= 0 else min(n, a.naive_images)
            sub = {s: round(c * k / n) for s, c in p.splits.items()}
            t = time.perf_counter()
            naive_generate(Path(d)/f'{v}_naive.h5', v, sub)
            tn = time.perf_counter() - t
            r.update(naive_images=sum(sub.values()), naive_s=tn, naive_s_full=tn * n / sum(sub.values()))
            r['speedup'] = r['naive_s_full'] / r[f'tda_{workers}proc_s']
            rows.append(r)
            print(f"{v}: tda {r[f'tda_{workers}proc_s']:.1f} s with {workers} processes "
                  f"({r['tda_1proc_s']:.1f} s with 1), naive {r['naive_s_full']:.1f} s", flush=True)
    print(f"\nMNIST load (once per process, from {load_mnist('train').source.split(':')[0]}): {t_mnist:.2f} s, not counted below")
    print(f"\n| dataset | images | tda, {workers} processes (s) | tda, 1 process (s) | naive PIL, 1 process (s) | speed-up |")
    print('|---|---|---|---|---|---|')
    for r in rows:
        est = '' if r['naive_images'] == r['images'] else f" (rate of {r['naive_images']} images)"
        print(f"| {r['variant']} {r['size']} | {r['images']} | {r[f'tda_{workers}proc_s']:.1f} | {r['tda_1proc_s']:.1f} | "
              f"{r['naive_s_full']:.1f}{est} | {r['speedup']:.1f}x |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, {'rows': rows, 'mnist_load_s': t_mnist, 'workers': workers,
                       'run': run_record(vars(a), seed=0, cpu_count=os.cpu_count())})
    print(f"\nwrote {a.out}")


if __name__ == '__main__':
    main()
