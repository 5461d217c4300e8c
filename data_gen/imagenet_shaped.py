"""An ImageNet-shaped ImageFolder for tests and benchmarks, from what every installation has.

1,000 classes (n000 ... n999), 500x375 JPEGs of about 110 KB (one in four 375x500): class c is the number c written
with real MNIST digits on a crop of a photograph that ships with scikit-image / scikit-learn; every image is fixed by
(seed, split, class, index). See `tda.data.fastload.imagenet_shaped`.

    python data_gen/imagenet_shaped.py runs/imagenet_shaped --train 2 --val 1         # 3,000 files, ~330 MB
    python data_gen/imagenet_shaped.py runs/imnet_small --classes 10 --train 8 --val 2  # a small one for tests
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tda, also when not installed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help='the folder to write (refused if it exists, unless --overwrite)')
    p.add_argument('--train', type=int, default=2, help='training images per class')
    p.add_argument('--val', type=int, default=1, help='validation images per class')
    p.add_argument('--classes', type=int, default=1000)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--quality', type=int, default=96, help='JPEG quality (96: about 110 KB per file)')
    p.add_argument('--overwrite', action='store_true')
    a = p.parse_args(argv)
    from tda.core import TdaError
    from tda.data.fastload import imagenet_shaped
    try:
        out = imagenet_shaped(a.out, {'train': a.train, 'val': a.val}, classes=a.classes, seed=a.seed,
                              quality=a.quality, overwrite=a.overwrite)
    except TdaError as e: sys.exit(f"imagenet_shaped.py: {e}")
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
