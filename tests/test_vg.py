"""Attribute prediction as on Visual Genome (Seo et al., section 5.2), end to end on data the project writes in VG's own
layout: the real loader, the three VGG-16 models in both settings with the shared trainer, the weighted mAP, and the
Table 2 experiment under papermill."""
import json

import nbformat
import numpy as np
import papermill as pm
import pytest
import torch

from conftest import REPO
from tda import create_model
from tda.data.vg import VGAttributesDataset, make_vg_mref, prepare_vg, vg_info
from tda.models.vg import attribute_bce
from tda.multilabel_ap import weighted_map
from tda.train import load_best, train

VG_MODELS = ('vgg16_hattnet_ctx', 'vgg16_soft', 'vgg16_hard')
EXPERIMENTS = REPO/'nbs'/'experiments'


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    "These tiny models train many times faster on one thread than on two shared cores that wait for each other."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # the papermill kernel's
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def vg_cache(tmp_path_factory):
    "24 generated images in VG's layout, read by the loader into a 64 px cache (about 80 / 25 / 22 samples)."
    d = tmp_path_factory.mktemp('vg')
    root = make_vg_mref(d/'vg', images=24, seed=0, progress=False)
    return prepare_vg(root, d/'vg.h5', image_size=64, min_object_count=5, min_attribute_count=5, val=0.2, test=0.2,
                      workers=1, progress=False)


@pytest.mark.parametrize('setting', ['attention', 'prior'])
@pytest.mark.parametrize('model', VG_MODELS)
def test_trains_on_vg_layout_data(model, setting, vg_cache, tmp_path):
    "Two epochs with the shared trainer (VGG-16 at 1/8 width, 64 px): the loss is finite and falls, the metric in range."
    info = vg_info(vg_cache)
    res = train(dict(model=model, model_args={'num_queries': len(info['classes']), 'width': 0.125},
                     dataset='vg_attributes', data=str(vg_cache), dataset_args={'in_memory': True},
                     inputs=['image', 'query'] + (['prior'] if setting == 'prior' else []), target='labels',
                     loss='attribute_bce', metrics='vg_attributes', optimizer='adam', lr=3e-3, epochs=2, batch_size=16,
                     eval_batch_size=64, progress=False, out_dir=str(tmp_path/'run')))
    losses = [h['train_loss'] for h in json.loads((tmp_path/'run'/'metrics.json').read_text())]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    t, n_attr = res['test'], len(info['attributes'])
    assert res['score'] == 'wmap_voc11' and t['n'] == info['splits']['test']['samples']
    assert 0 < t['wmap_voc11'] <= 1 and 0 < t['wmap_allpoint'] <= 1 and 0 <= t['tps'] <= 1 and 0 <= t['pointing'] <= 1
    # the score is the weighted mAP of the saved test predictions against the cache's labels
    labels = VGAttributesDataset(vg_cache, 'test').labels
    assert res['table']['scores'].shape == (t['n'], n_attr) and (res['table']['labels'] == labels).all()
    assert t['wmap_voc11'] == pytest.approx(weighted_map(res['table']['scores'], labels)['wmap'])
    # the best checkpoint rebuilds the model and gives the saved scores again
    ds = VGAttributesDataset(vg_cache, 'test')
    b = torch.utils.data.default_collate([ds[i] for i in range(4)])
    with torch.no_grad():
        out = load_best(res['run_dir'])(b['image'], b['query'], *([b['prior']] if setting == 'prior' else []))
    assert torch.allclose(out['logits'], torch.from_numpy(res['table']['scores'][:4]), atol=1e-4)


def test_full_vgg16_models_take_a_step(vg_cache):
    "The full-width models (VGG-16's 14.7M trunk weights): one step on a real batch; the loss is finite, every weight learns."
    ds = VGAttributesDataset(vg_cache, 'train')
    b = torch.utils.data.default_collate([ds[i] for i in range(4)])
    for name in VG_MODELS:
        torch.manual_seed(0)
        model = create_model(name, num_classes=len(ds.classes), num_queries=len(ds.objects)).train()
        loss = attribute_bce(model(b['image'], b['query'], b['prior']), b).mean()
        loss.backward()
        assert torch.isfinite(loss), name
        still = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not still, f"{name}: weights without a gradient: {still[:5]}"
        assert model.weights_source == 'random' and sum(p.numel() for p in model.features.parameters()) == 14_714_688


def test_vg_attributes_experiment(tmp_path, env_paths):
    "The Table 2 / Figure 8 notebook with tiny parameters: data made in VG's layout, six runs, the table beside the paper's."
    out = tmp_path/'vg'
    pm.execute_notebook(EXPERIMENTS/'vg_attributes.ipynb', tmp_path/'run.ipynb', cwd=tmp_path, progress_bar=False,
                        parameters=dict(images=16, image_size=64, min_count=5, width=0.125, epochs=1, batch_size=16,
                                        n_samples=2, output_dir=str(out), progress=False))
    s = json.loads((out/'summary.json').read_text())
    assert set(s['results']) == {f"{m}/{t}" for m in VG_MODELS for t in ('attention', 'prior')}
    assert all(0 < r['wmap_voc11'] <= 1 and 0 < r['wmap_allpoint'] <= 1 and r['epochs_run'] == 1
               for r in s['results'].values())
    assert s['weights_source'] == 'random' and s['data_info']['source'] == str((out/'vg_mref').resolve())
    table = (out/'table2.md').read_text()
    assert all(x in table for x in ('HAttNet-CTX', 'w/ prior', '27.04', '30.38', '23.81', 'Trunk: random'))
    assert (out/'figure8.png').read_bytes()[:4] == b'\x89PNG' and (out/'vg_attributes.h5').is_file()
    text = json.dumps([c.get('outputs', []) for c in nbformat.read(tmp_path/'run.ipynb', as_version=4).cells])
    assert 'image/png' in text and '24.84' in text
    assert not any(p.name.endswith(('.h5', '.png', '.json')) for p in EXPERIMENTS.rglob('*'))  # nothing inside nbs/
