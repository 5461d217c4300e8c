"""The fast input pipeline end to end: a run of the trainer on an ImageNet-shaped folder of real JPEGs with the
ImageFolder's `pipeline: fast` (uint8 crops from the loader, the rest of the transform on the device) and `pipeline:
device` (the files' bytes from the loader, decoding too on the device: nvJPEG on CUDA, libjpeg-turbo here)."""
from pathlib import Path

import pytest
import torch

from tda.core import TdaError
from tda.data.fastload import STD, EncodedImages, imagenet_shaped
from tda.data.imagefolder import ImageFolderDataset
from tda.train import TrainConfig, train


@pytest.fixture(scope='module')
def imnet(tmp_path_factory):
    return imagenet_shaped(tmp_path_factory.mktemp('imnet')/'imnet', {'train': 6, 'val': 2}, classes=4,
                           progress=False)


@pytest.mark.timeout(600)
def test_trainer_applies_the_batch_transform_on_the_device(imnet, tmp_path):
    cfg = TrainConfig(model='resnet18', dataset='imagefolder', data=str(imnet), epochs=1, batch_size=8,
                      eval_batch_size=4, lr=0.01, optimizer='sgd', inputs=['image'], target='label',
                      metrics='classification', out_dir=str(tmp_path/'run'), progress=False,
                      dataset_args={'size': 32, 'augment': 'tdan', 'pipeline': 'fast', 'splits': {'test': 'val'}})
    res = train(cfg)
    assert res['epochs_run'] == 1 and res['test']['n'] == 8 and 0 <= res['test']['accuracy'] <= 1
    # the loader gave uint8 crops: without the trainer's hook the model would have seen them unconverted
    item = ImageFolderDataset(imnet, 'train', size=32, augment='tdan', pipeline='fast')[0]['image']
    assert item.dtype == torch.uint8


def test_the_recipe_script_writes_a_folder_and_refuses_to_overwrite(tmp_path):
    import subprocess, sys
    from conftest import REPO
    script, out = REPO/'data_gen'/'imagenet_shaped.py', tmp_path/'imnet'
    r = subprocess.run([sys.executable, str(script), str(out), '--classes', '2', '--train', '1', '--val', '0'],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*.JPEG')) == ['train/n000/000_00000.JPEG',
                                                                                 'train/n001/001_00000.JPEG']
    again = subprocess.run([sys.executable, str(script), str(out), '--classes', '2'], capture_output=True, text=True)
    assert again.returncode == 1 and 'already exists; pass overwrite=True (--overwrite)' in again.stderr


@pytest.mark.timeout(600)
def test_trainer_runs_the_device_decoding_pipeline(imnet, tmp_path):
    cfg = TrainConfig(model='resnet18', dataset='imagefolder', data=str(imnet), epochs=1, batch_size=8,
                      eval_batch_size=4, lr=0.01, optimizer='sgd', inputs=['image'], target='label',
                      metrics='classification', out_dir=str(tmp_path/'run'), progress=False,
                      dataset_args={'size': 32, 'augment': 'tdan', 'pipeline': 'device', 'splits': {'test': 'val'}})
    res = train(cfg)
    assert res['epochs_run'] == 1 and res['test']['n'] == 8 and 0 <= res['test']['accuracy'] <= 1
    # the loader gave the files' bytes: the decoding happened in the trainer's hook, on the device
    item = ImageFolderDataset(imnet, 'train', size=32, augment='tdan', pipeline='device')[0]['image']
    assert isinstance(item, EncodedImages) and item.data[0].numel() == Path(item.paths[0]).stat().st_size


def test_device_decoding_gives_the_fast_paths_crops_for_the_same_seed(imnet):
    kw = dict(size=64, augment='resnet', flip=False)  # bicubic crops; no flip: only decode, crop and resize compared
    fast = ImageFolderDataset(imnet, 'train', pipeline='fast', **kw)
    dev = ImageFolderDataset(imnet, 'train', pipeline='device', **kw)
    idx = list(range(len(fast)))
    torch.manual_seed(5); ref = fast.batch_transform(torch.stack([fast[i]['image'] for i in idx]))
    torch.manual_seed(5); got = dev.batch_transform(dev.batch(idx)['image'])
    d = (got - ref).abs() * torch.tensor(STD).view(1, 3, 1, 1) * 255  # in grey levels
    # the bicubic resize's rounding (see nbs/01_data.fastload.ipynb): a level, rarely more at sharp edges
    assert d.mean() < 0.25 and (d > 2.01).float().mean() < 5e-3 and d.max() < 16.01
    ev_fast = ImageFolderDataset(imnet, 'val', size=64, pipeline='fast')
    ev_dev = ImageFolderDataset(imnet, 'val', size=64, pipeline='device')
    vidx = list(range(len(ev_fast)))
    ref = ev_fast.batch_transform(torch.stack([ev_fast[i]['image'] for i in vidx]))
    d = (ev_dev.batch_transform(ev_dev.batch(vidx)['image']) - ref).abs() * torch.tensor(STD).view(1, 3, 1, 1) * 255
    assert d.mean() < 0.25 and (d > 2.01).float().mean() < 5e-3


def test_a_damaged_file_in_a_device_decoded_batch_is_one_error_naming_it(imnet, tmp_path):
    import shutil
    root = tmp_path/'imnet'
    shutil.copytree(imnet, root)
    victim = sorted((root/'train').rglob('*.JPEG'))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) // 3])  # truncated: its header is whole, its image data is not
    ds = ImageFolderDataset(root, 'train', size=32, augment='tdan', pipeline='device')
    batch = ds.batch(list(range(8)))  # reading and the crop boxes are fine: the header is whole
    with pytest.raises(TdaError, match=f"{victim.name} could not be decoded as an image.*replace or remove"):
        ds.batch_transform(batch['image'])


def test_the_files_of_a_batch_go_where_the_trainer_moves_the_batch(imnet):
    # precise BN and table1's evaluation move batches with the trainer's own `_to` (no Accelerate): the files must
    # follow, or a GPU run would decode on the CPU and feed CPU tensors to a CUDA model
    from tda.train import _to
    ds = ImageFolderDataset(imnet, 'val', size=32, pipeline='device')
    moved = _to(ds.batch([0, 1]), 'meta')
    assert moved['image'].device.type == 'meta' and moved['label'].device.type == 'meta'


@pytest.mark.timeout(120)
def test_loader_workers_hand_over_the_files_bytes(imnet):
    # a worker sends its samples through shared memory: the bytes must be in memory a worker can share (a file-backed
    # tensor, as torchvision.io.read_file gives, fails there and the loader waits for ever)
    from types import SimpleNamespace
    from tda.train import data_loader
    ds = ImageFolderDataset(imnet, 'train', size=32, augment='tdan', pipeline='device')
    batches = list(data_loader(ds, 8, True, SimpleNamespace(num_workers=1, seed=0)))
    assert len(batches) == 3 and all(len(b['image']) == 8 for b in batches)
    assert ds.batch_transform(batches[0]['image']).shape == (8, 3, 32, 32)
