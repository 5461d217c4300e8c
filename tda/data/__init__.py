"""Every dataset of tda, one way in: each module below registers its datasets in `tda.core.DATASETS` where they are
defined, and `create_dataset` (tda.data.dataset) builds any of them by name; `tda.data.files` is the one gate every
reader of our files goes through."""
from . import dataset, files, imagefolder, locate, mnist, moving_digits, mref, tasks, vg  # noqa: F401 (they register)
from .dataset import create_dataset

__all__ = ['create_dataset']
