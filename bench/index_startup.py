"""Start-up of one training process from a built ImageFolder index (tda.data.folder_index), at ImageNet's size.

A synthetic index of 1,281,167 training files in 1,000 classes and 50,000 validation files (ImageNet-1k's counts,
paths as long as ImageNet's: `train/n01440764/n01440764_10026.JPEG`) over real, empty class folders (so that the
staleness check stats real folders), written with the library's own writer. Then, in fresh processes, one after the
other: the time to open the index (read and check the arrays and the folders' modification times), to build the
training and validation datasets from it as every process of a launch does, and to compute the run's data identity
from it. The figure is wall time of one process on an idle file cache (the index was just written); the target of
issue 34 is 5 s per process. The files themselves are not needed: nothing is decoded.

    python bench/index_startup.py              # 1,281,167 + 50,000 files, 5 repetitions
    python bench/index_startup.py --train 100000 --repeats 3

Prints a table and writes bench/results/index_startup_cpu.json (with the run record and the CPU's name).
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tda.core import run_record, write_json

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from tda.data.folder_index import FolderIndex, index_path
from tda.data.imagefolder import ImageFolderDataset
import accelerate.state, torchvision.transforms  # the trainer has them imported before it builds the datasets
t1 = time.perf_counter()
root = sys.argv[1]
ix = FolderIndex(index_path(root), root); assert ix.changed(['train', 'val']) is None
t2 = time.perf_counter()
ds = {s: ImageFolderDataset(root, s, progress=False) for s in ('train', 'val')}
t3 = time.perf_counter()
ident = ds['train'].identity()
t4 = time.perf_counter()
print(json.dumps({'import_s': t1 - t0, 'open_index_s': t2 - t1, 'datasets_s': t3 - t2, 'identity_s': t4 - t3,
                  'images': ident['images'], 'train': len(ds['train'])}))
"""


def cpu_name() -> str:
    try:
        return next(l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines()
                    if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown CPU'


def synthetic(root: Path, train: int, val: int, classes: int = 1000):
    "An index of `train` + `val` files over `classes` real, empty class folders (ImageNet's names and lengths)."
    from tda.data.folder_index import write_index
    scanned = {}
    for folder, n in (('train', train), ('val', val)):
        names = [f"n{1440764 + c:08d}" for c in range(classes)]
        for c in names: (root/folder/c).mkdir(parents=True)
        files = [(f"{folder}/{names[i % classes]}/{names[i % classes]}_{i:05d}.JPEG", 110_000, 0, i % classes)
                 for i in range(n)]
        files.sort(key=lambda f: (f[3], f[0]))
        stamps = {folder: (root/folder).stat().st_mtime_ns,
                  **{f"{folder}/{c}": (root/folder/c).stat().st_mtime_ns for c in names}}
        scanned[folder] = (names, files, stamps, [])
    return write_index(root, scanned)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--train', type=int, default=1_281_167)
    p.add_argument('--val', type=int, default=50_000)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--out', default=str(Path(__file__).parent/'results'/'index_startup_cpu.json'))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='tda-index-bench-') as tmp:
        root = Path(tmp)/'imagenet'
        t = time.perf_counter()
        path = synthetic(root, a.train, a.val)
        write_s, size = time.perf_counter() - t, path.stat().st_size
        runs = []
        for _ in range(a.repeats):
            r = subprocess.run([sys.executable, '-c', PROBE, str(root)], capture_output=True, text=True, check=True)
            runs.append(json.loads(r.stdout))
    keys = ('import_s', 'open_index_s', 'datasets_s', 'identity_s')
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    startup = statistics.median(r['open_index_s'] + r['datasets_s'] + r['identity_s'] for r in runs)
    cpu = cpu_name()
    print(f"index of {a.train:,} + {a.val:,} files ({size / 2**20:.1f} MiB), written in {write_s:.1f} s; {cpu}")
    print(f"{'step':28s} {'median s':>9s}")
    for k in keys: print(f"{k:28s} {med[k]:9.3f}")
    print(f"{'start-up from the index':28s} {startup:9.3f}   (target: 5 s per process; imports not counted)")
    write_json(a.out, run_record(vars(a), job='index_startup', cpu=cpu, index_bytes=size, write_s=write_s,
                                 median=med, startup_s=startup, runs=runs, target_s=5.0))


if __name__ == '__main__':
    main()
