"""The shipped ImageNet configs (configs/*_imagenet.yaml) resolve: each loads, its preset applies, its datasets and
model build and a two-sample forward pass fits (tda.train._build, nothing trained, nothing written); without `data`
a run stops with one clear line."""
from pathlib import Path

import pytest
import torch

from tda.cli import load_train_config
from tda.core import TdaError
from tda.data.fastload import imagenet_shaped
from tda.train import _build, train
from tda.train_config import PRESETS

CONFIGS = sorted((Path(__file__).resolve().parents[1]/'configs').glob('*_imagenet.yaml'))


@pytest.fixture(scope='module')
def imnet(tmp_path_factory):
    return imagenet_shaped(tmp_path_factory.mktemp('imnet')/'imnet', {'train': 2, 'val': 1}, classes=3,
                           progress=False)


def test_the_papers_runs_are_shipped():
    models = {load_train_config(p).model for p in CONFIGS}
    assert models == {'resnet18_tdjoint_t2_m2', 'resnet34_tdjoint_t2_m2', 'resnet50_tdjoint_t2_m1',
                      'resnet101_tdjoint_t2_m1', 'resnet50_tdaf_anar3_f3', 'resnet18', 'resnet34', 'resnet50',
                      'resnet101'}


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_resolves(path, imnet):
    cfg = load_train_config(path, {'data': str(imnet)})
    preset = PRESETS[cfg.preset]
    for k in ('lr', 'epochs', 'schedule', 'optimizer', 'batch_size', 'inputs', 'target', 'metrics'):
        assert getattr(cfg, k) == preset[k], k
    assert cfg.dataset_args['augment'] == preset['dataset_args']['augment'] and cfg.dataset_args['pipeline'] == 'fast'
    torch.manual_seed(0)
    data, ds, model, model_args = _build(cfg)  # datasets, model, a two-sample forward pass and loss
    assert model_args['num_classes'] == 3 and len(ds['test']) == 3  # test is val/, as ImageNet has it
    item = ds['train'][0]['image']
    assert item.dtype == torch.uint8 and item.shape == (3, 224, 224)
    assert ds['train'].batch_transform(item[None]).shape == (1, 3, 224, 224)


def test_a_config_without_data_stops_with_one_clear_line(tmp_path):
    cfg = load_train_config(CONFIGS[0], {'out_dir': str(tmp_path/'run')})
    with pytest.raises(TdaError, match=r"no data given: dataset 'imagefolder' needs `data`.*--set data=PATH"):
        train(cfg)
    assert not (tmp_path/'run').exists()
