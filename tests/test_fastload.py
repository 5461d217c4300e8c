"""The fast input pipeline end to end: a run of the trainer on an ImageNet-shaped folder of real JPEGs with the
ImageFolder's `pipeline: fast` (uint8 crops from the loader, the rest of the transform on the device)."""
import pytest
import torch

from tda.data.fastload import imagenet_shaped
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
