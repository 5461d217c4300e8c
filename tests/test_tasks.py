"""TDAF beyond classification, trained end to end with the shared trainer on data the project makes: moving-digit clips
(video), MNIST Reference digit boxes (detection, FCOS) and digit centres (pose, SimplePose)."""
import copy
import json

import h5py
import numpy as np
import pytest
import torch

from conftest import dead_parameters
from tda.data.tasks import MREFObjectsDataset, make_moving_digits
from tda.train import load_best, train


def _run(tmp_path, **cfg):
    base = dict(dataset_args={}, optimizer='adam', lr=1e-3, batch_size=8, eval_batch_size=8, epochs=3, channels_last=False,
                progress=False, out_dir=str(tmp_path/'run'))
    res = train({**base, **cfg})
    history = json.loads((tmp_path/'run'/'metrics.json').read_text())
    assert len(history) == cfg.get('epochs', 3) and (tmp_path/'run'/'checkpoints'/'best.pt').is_file()
    assert history[-1]['train_loss'] < history[0]['train_loss'], [h['train_loss'] for h in history]
    return res, history


def test_video_tdaf_learns_the_direction_of_motion(tmp_path):
    "3D TDAF (r3d_18, ANAR-5, 3 flows over 8-, 4- and 2-frame clips) tells the direction a digit moves, well above chance."
    data = make_moving_digits(tmp_path/'clips.h5', train=128, val=32, test=32, seed=0, progress=False)
    res, _ = _run(tmp_path, model='r3d_18_tdaf_anar5_f3', dataset='moving_digits', data=str(data), inputs=['video'],
                  target='label', metrics='classification', metrics_args={'top_k': 2}, batch_size=16, eval_batch_size=32)
    assert res['score'] == 'accuracy' and res['test']['n'] == 32
    assert res['test']['accuracy'] > 0.5, res['test']   # 4 directions: chance is 0.25
    model = load_best(res['run_dir'])
    with torch.no_grad(), h5py.File(data) as f:
        clip = torch.from_numpy(f['test/clips'][:2]).float().div(255)[:, None].expand(-1, 3, -1, -1, -1)
        _, maps = model(clip, return_attention=True)
    assert maps[(1, 3)].shape == (2, 1, 8, 16, 16) and maps[(1, 2)].shape == (2, 1, 4, 8, 8)


def test_detection_fcos_on_tdaf_trains(tmp_path, datasets):
    "FCOS on a ResNet-18 TDAF feature pyramid trains on MDIST digit boxes; COCO mAP is computed on the test split."
    res, _ = _run(tmp_path, model='fcos_resnet18_tdaf_anar3_f3', model_args={'image_size': 100}, dataset='mref_objects',
                  data=str(datasets['mdist']), inputs=['image', 'boxes', 'box_labels'], target='box_labels',
                  loss='model_loss', metrics='detection', optimizer='sgd', lr=0.01, momentum=0.9, clip_grad_norm=10.0)
    t = res['test']
    assert res['score'] == 'map' and t['n'] == 8 and all(0 <= t[k] <= 1 for k in ('map', 'map_50', 'mar_100'))
    table = res['table']
    assert table['det_boxes'].shape == (8, 100, 4) and (table['det_labels'] < 10).all()
    kept = table['det_labels'] >= 0
    assert kept.any() and (table['det_boxes'][kept] >= -1e-3).all() and (table['det_boxes'][kept] <= 100 + 1e-3).all()
    assert (table['det_scores'][kept] >= 0.05).all()   # the score threshold


def test_pose_simplepose_tdaf_trains(tmp_path, datasets):
    "SimplePose with its deconvolutions as three TDAF flows trains on MDIST digit centres; PCK is computed."
    res, _ = _run(tmp_path, model='simplepose_resnet18_tdaf_anar3_f3', dataset='mref_objects', data=str(datasets['mdist']),
                  inputs=['image'], target='keypoints', loss='heatmap_mse', metrics='keypoints')
    ds = MREFObjectsDataset(datasets['mdist'], 'test')
    visible = sum(int(ds[i]['visible'].sum()) for i in range(len(ds)))
    t = res['test']
    assert res['score'] == 'pck' and t['keypoints'] == visible and 0 <= t['pck'] <= 1 and np.isfinite(t['error'])
    assert res['table']['pred'].shape == (8, 10, 2)


def test_detection_on_two_processes(tmp_path, datasets):
    "`accelerate launch` on two CPU processes: the padded detections are gathered once per test image."
    import yaml
    from test_train import launch
    cfg = dict(model='fcos_resnet18_tdaf_anar3_f2', model_args={'image_size': 100}, dataset='mref_objects', dataset_args={},
               data=str(datasets['mdist']), inputs=['image', 'boxes', 'box_labels'], target='box_labels', loss='model_loss',
               metrics='detection', optimizer='sgd', lr=0.01, momentum=0.9, epochs=1, batch_size=8, eval_batch_size=6,
               channels_last=False, progress=False, out_dir=str(tmp_path/'two'))   # eval batch 6: the last test batch is padded
    (tmp_path/'cfg.yaml').write_text(yaml.safe_dump(cfg))
    r = launch(2, tmp_path/'cfg.yaml')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'test map' in r.stdout
    res = json.loads((tmp_path/'two'/'results.json').read_text())
    assert res['processes'] == 2 and res['test']['n'] == 8 and 0 <= res['test']['map'] <= 1
    assert sorted(np.load(tmp_path/'two'/'test_predictions.npz')['index'].tolist()) == list(range(8))


@pytest.mark.parametrize('path', sorted((__import__('pathlib').Path(__file__).parents[1]/'configs').glob('*.yaml')), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    "Every config of configs/ reads into a TrainConfig whose model, dataset, loss and metric set exist."
    from tda.cli import load_train_config
    from tda.core import DATASETS, LOSSES, METRIC_SETS, MODELS
    cfg = load_train_config(path)
    assert cfg.model in MODELS and cfg.dataset in DATASETS and cfg.loss in LOSSES and cfg.metrics in METRIC_SETS


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    return make_moving_digits(tmp_path_factory.mktemp('clips')/'clips.h5', train=4, val=2, test=2, seed=3, progress=False)


@pytest.mark.parametrize('name', [n for t in ('video', 'detection', 'pose') for n in __import__('tda').list_models(t)])
def test_every_task_model_trains(name, datasets, clips):
    "Three optimiser steps of every video, detection and pose model of list_models() on real data: the loss falls; every parameter counts."
    from tda.data.tasks import MovingDigitsDataset
    from tda import create_model
    from tda.train import heatmap_mse
    torch.manual_seed(0)
    if name.startswith('r3d'):
        ds = MovingDigitsDataset(clips, 'train')
        b = torch.utils.data.default_collate([ds[i] for i in range(4)])
        model = create_model(name, num_classes=4)
        loss_of = lambda m, dt=torch.float32: torch.nn.functional.cross_entropy(m(b['video'].to(dt)), b['label'])
    else:
        ds = MREFObjectsDataset(datasets['mdist'], 'train')
        b = torch.utils.data.default_collate([ds[i] for i in range(2)])
        if name.startswith('fcos'):
            model = create_model(name, num_classes=10, image_size=100)
            loss_of = lambda m, dt=torch.float32: m(b['image'].to(dt), b['boxes'].to(dt), b['box_labels'])['loss']
        else:
            model = create_model(name, num_classes=10)
            loss_of = lambda m, dt=torch.float32: heatmap_mse(m(b['image'].to(dt)), b).mean()
    model.train()
    initial = copy.deepcopy(model)
    opt = (torch.optim.Adam(model.parameters(), lr=2e-4) if name.startswith('simplepose')   # SimplePose's optimiser, a small step for a batch of 2
           else torch.optim.SGD(model.parameters(), lr=0.005 if name.startswith('fcos') else 0.01, momentum=0.9))
    losses = []
    for _ in range(3):
        loss = loss_of(model)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    # FCOS computes its loss in training mode only
    dead = dead_parameters([initial, model], lambda m: loss_of(m, torch.float64), ('train',) if name.startswith('fcos') else ('train', 'eval'))
    assert not dead, f"parameters the loss does not depend on: {dead[:5]}"
