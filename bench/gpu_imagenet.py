"""Training images/s of the ImageNet models on one device: the compute ceiling and the two input pipelines.

For each model, precision (AMP bf16 / fp16) and compile setting, timed SGD steps (channels_last, cross-entropy,
`cudnn.benchmark`) fed four ways:
- `ceiling`: one batch of float tensors already on the device, reused every step (no input pipeline at all);
- `fast`: JPEGs through `ImageFolderDataset(pipeline='fast', augment='tdan')` (uint8 decode and crop in
  `--workers` loader processes, pinned memory), `tda.data.fastload.Prefetcher` copying the next batch and running
  `BatchAugment` on a side stream;
- `fast-gpu-decode`: JPEGs through `ImageFolderDataset(pipeline='device', augment='tdan')`: the loader processes only
  read the files' bytes and draw the crop boxes (`tda.data.fastload.collate_encoded`), and the `Prefetcher`'s side
  stream decodes the batch with nvJPEG (`decode_jpeg(list, device='cuda')`), crops, resizes and runs `BatchAugment`;
- `pil`: JPEGs through today's `pipeline='pil'` `tdan` transform in the same number of workers, copied to the device.
Peak device memory per setting. Written by bench/gpu_imagenet.sh (see there); `--device cpu` is its dry run.
"""
import argparse
import os
import time
from pathlib import Path

import torch

from tda.core import run_record, write_json
from tda.models.outputs import as_outputs

# NVIDIA's published ResNet-50 v1.5 training throughput, mixed precision, one GPU (NVIDIA DeepLearningExamples,
# PyTorch/Classification/ConvNets/resnet50v1.5 README, pytorch-21.03 container: A100 80GB 2470 img/s, V100 16GB 1200):
# for scale beside our figures. That table has no H100; only card classes with a figure checked there are listed.
PUBLISHED_RN50 = {'A100': 2470, 'V100': 1200}


def device_name(dev: torch.device) -> str:
    if dev.type == 'cuda': return torch.cuda.get_device_name(dev)
    try: return next(l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines()
                     if l.startswith('model name'))
    except (OSError, StopIteration): return 'unknown CPU'


def published(name: str):
    return next(({'card': k, 'images_per_s': v} for k, v in PUBLISHED_RN50.items() if k in name), None)


def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def time_steps(model, batches, dev, precision: str, steps: int, warmup: int) -> dict:
    "Images/s of `steps` SGD steps over `batches` (an iterator of (images, labels) on `dev`), after `warmup`."
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == 'fp16')
    model.train()
    n = 0
    for i in range(warmup + steps):
        if i == warmup: _sync(dev); t0, n = time.perf_counter(), 0
        x, y = next(batches)
        with torch.autocast(dev.type, dtype=dtype):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(as_outputs(out)['logits'], y)  # TDAF: (logits, maps)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        n += len(y)
    _sync(dev)
    wall = time.perf_counter() - t0
    return {'images_per_s': round(n / wall, 1), 'steps': steps, 'seconds': round(wall, 3),
            'loss_finite': bool(torch.isfinite(loss).item())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', required=True, help='an ImageFolder with train/ (ImageNet-shaped or ImageNet)')
    p.add_argument('--device', default='cuda')
    p.add_argument('--models', nargs='+', default=['resnet50', 'resnet50_tdjoint_t2_m1', 'resnet50_tdaf_anar3_f3'])
    p.add_argument('--precisions', nargs='+', default=['bf16', 'fp16'])
    p.add_argument('--compile', nargs='+', default=['off', 'on'], choices=['off', 'on'])
    feeds = ['ceiling', 'fast', 'fast-gpu-decode', 'pil']
    p.add_argument('--feeds', nargs='+', default=feeds, choices=feeds)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--workers', type=int, default=6, help='loader processes (the target: at most 6 CPU cores per GPU)')
    p.add_argument('--out', required=True)
    a = p.parse_args(argv)
    from torch.utils.data import DataLoader
    from tda.data.fastload import Prefetcher, collate_encoded
    from tda.data.imagefolder import ImageFolderDataset
    from tda.models.factory import create_model
    dev = torch.device(a.device)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    pipelines = {'fast': 'fast', 'fast-gpu-decode': 'device', 'pil': 'pil'}  # feed -> the dataset's pipeline
    ds = {f: ImageFolderDataset(a.data, 'train', size=a.size, augment='tdan', pipeline=pl) for f, pl in pipelines.items()
          if f in a.feeds}
    n_classes = len(next(iter(ds.values())).classes) if ds else 1000

    def loader(f):
        return DataLoader(ds[f], batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers,
                          pin_memory=dev.type == 'cuda', persistent_workers=a.workers > 0,
                          prefetch_factor=4 if a.workers else None,
                          **({'collate_fn': collate_encoded} if f == 'fast-gpu-decode' else {}))

    def feed(f):
        if f == 'ceiling':
            x = torch.randn(a.batch_size, 3, a.size, a.size, device=dev).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, n_classes, (a.batch_size,), device=dev)
            while True: yield x, y
        while True:  # epochs, as long as the timing needs
            if f in ('fast', 'fast-gpu-decode'):  # decoded on the device too for fast-gpu-decode
                for b in Prefetcher(loader(f), dev, ds[f].batch_transform):
                    yield b['image'].contiguous(memory_format=torch.channels_last), b['label']
            else:
                for b in loader('pil'):
                    yield (b['image'].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last),
                           b['label'].to(dev, non_blocking=True))

    rows = []
    for name in a.models:
        for prec in a.precisions:
            for comp in a.compile:
                torch.manual_seed(0)
                model = create_model(name, num_classes=n_classes).to(dev).to(memory_format=torch.channels_last)
                run = torch.compile(model) if comp == 'on' else model
                for f in a.feeds:
                    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
                    c0 = time.process_time()
                    try: r = time_steps(run, feed(f), dev, prec, a.steps, a.warmup)
                    except Exception as e:  # one setting that fails (a compile error, memory) does not end the run
                        r = {'images_per_s': 0.0, 'error': f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
                        print(f"{name} {prec} compile {comp} {f}: failed, {r['error']}", flush=True)
                    r.update(model=name, precision=prec, compile=comp, feed=f, batch_size=a.batch_size,
                             main_process_cpu_s=round(time.process_time() - c0, 2),
                             peak_memory_gib=round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                             if dev.type == 'cuda' else None)
                    rows.append(r)
                    print(f"{name:26s} {prec} compile {comp:3s} {f:15s} {r['images_per_s']:8.1f} images/s"
                          + (f"  peak {r['peak_memory_gib']} GiB" if r['peak_memory_gib'] is not None else ''),
                          flush=True)
    for r in rows:  # each feed against the ceiling of its setting
        top = next(c for c in rows if c['feed'] == 'ceiling' and all(c[k] == r[k] for k in
                                                                       ('model', 'precision', 'compile'))) \
            if 'ceiling' in a.feeds else None
        r['of_ceiling'] = round(r['images_per_s'] / top['images_per_s'], 3) if top and top['images_per_s'] else None
    name = device_name(dev)
    record = run_record(vars(a), seed=0, job='gpu_imagenet', device=name, cpu_cores=len(os.sched_getaffinity(0)),
                        torch=torch.__version__, cuda=torch.version.cuda)
    write_json(a.out, {'rows': rows, 'device': name, 'published_resnet50': published(name),
                       'target': 'fast within 10% of the ceiling with at most 6 CPU cores per GPU', 'run': record},
               overwrite=True)
    print(f"\n{name}; NVIDIA's published ResNet-50 (AMP, one GPU): "
          + (f"{published(name)['images_per_s']} images/s on {published(name)['card']}" if published(name) else
             f"no checked figure for this card (A100: {PUBLISHED_RN50['A100']} images/s)"))
    print(f"wrote {a.out}")


if __name__ == '__main__':
    main()
