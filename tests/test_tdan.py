"TDAN models in the tools people use (torch.compile, ONNX export, the GPU path), and against the authors' code."
import copy
from pathlib import Path

import pytest
import torch

from conftest import dead_parameters
from tda import create_model


def test_torch_compile_runs_forward_and_backward():
    """Compiled training step (inductor) against eager: the same logits, the same gradient direction.

    A ResNet-18 of width 16 with TDAN's searchlight (every code path of the module, a third of ResNet-50's graph to
    compile). In train mode the gradients of the first layers pass through dozens of BatchNorms of small batches;
    float32 eager is itself 1-2% away from a float64 reference there (measured on ResNet-50), so the check is on the
    whole gradient vector."""
    torch.manual_seed(0)
    model = create_model('resnet18_tdjoint_t2_m1', num_classes=10, width=16).train()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 3, 5, 7])

    def step(m):
        model.zero_grad(set_to_none=True)
        out = m(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        return out.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    eager_out, eager_grad = step(model)
    out, grad = step(torch.compile(model))
    torch.testing.assert_close(out, eager_out, rtol=1e-3, atol=1e-3)
    assert torch.isfinite(grad).all()
    assert torch.nn.functional.cosine_similarity(grad, eager_grad, dim=0) > 0.999
    assert (grad - eager_grad).norm() / eager_grad.norm() < 0.05


def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = create_model('resnet50_tdjoint_t2_m1', num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    torch.onnx.export(model, (x,), tmp_path/'td.onnx', dynamo=True)
    sess = ort.InferenceSession(str(tmp_path/'td.onnx'))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), model(x).detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_td_model_trains_a_step_in_mixed_precision_on_gpu():
    torch.manual_seed(0)
    model = create_model('resnet50_tdjoint_t2_m1', num_classes=10).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 3, 128, 128, device='cuda'), torch.randint(0, 10, (8,), device='cuda')
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


@pytest.fixture(scope='module')
def crops(datasets, tmp_path_factory):
    from tda.data.imagefolder import mref_crops
    return mref_crops(datasets['mref'], tmp_path_factory.mktemp('crops')/'crops', size=32, progress=False)


@pytest.mark.parametrize('name', __import__('tda').list_models('classification'))
def test_every_model_of_the_factory_trains(name, crops):
    "A few SGD steps of every model of list_models() on real digit crops: a finite loss that goes down; every parameter counts."
    from tda.data.imagefolder import ImageFolderDataset
    from tda.models.outputs import as_outputs
    # the paper's trunk pools four times, unpadded: 64 px leave its last softmax 2x2 cells (at 46 px, one cell: no gradient)
    size = 64 if name.startswith('hattnet') else 32
    ds = ImageFolderDataset(crops, 'train', size=size, augment='none')
    batch = [ds[i] for i in range(8)]
    x, y = torch.stack([b['image'] for b in batch]), torch.tensor([b['label'] for b in batch])
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(ds.classes)).train()
    initial = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5 if name.startswith('hattnet') else 3):  # HAttNet: dropout 0.5 on 32 features, a noisier start
        loss = torch.nn.functional.cross_entropy(as_outputs(model(x))['logits'], y)  # HAttNet classifiers: a dict
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses))) and losses[-1] < losses[0]
    dead = dead_parameters([initial, model], lambda m: torch.nn.functional.cross_entropy(as_outputs(m(x.double()))['logits'], y))
    assert not dead, f"parameters the loss does not depend on: {dead[:5]}"


# --- Agreement with the authors' code ------------------------------------------------------------------------------
# tests/fixtures/tdan_reference/outputs.json holds the outputs of the TDAN authors' own code (their
# timm_td_resnet.py) at the weights of the models built here; tests/fixtures/tdan_reference/make.py regenerates it
# from a checkout of their repository. This test needs none of their code.
REFERENCE = Path(__file__).resolve().parent/'fixtures'/'tdan_reference'/'outputs.json'
REFERENCE_CLASSES, REFERENCE_SIZE = 10, 64


def _variants():
    "Every TD ResNet of the paper's four depths, both attention modes, m = 0 to the block's depth."
    out = []
    for depth in (18, 34, 50, 101):
        passes = 3 if depth in (18, 50) else 2  # three passes: two compounding steps and an intermediate pass
        for mode in ('joint', 'top'):
            for m in range(4 if depth >= 50 else 3):
                out.append({'name': f'resnet{depth}_td{mode}_t{passes}_m{m}', 'depth': depth, 'mode': mode,
                            'passes': passes, 'm': m, 'placement': 'alternating' if depth == 101 else 'layer3+4'})
    out.append({'name': 'resnet101_tdjoint_t2_m1_l4', 'depth': 101, 'mode': 'joint', 'passes': 2, 'm': 1,
                'placement': 'layer4'})
    return out


REFERENCE_VARIANTS = _variants()


def reference_model(v) -> torch.nn.Module:
    """Our model of variant `v`, from the factory with seed 0, in float64 and eval mode; every BatchNorm given
    random affine weights and running statistics (seed 1), so that each BN (the per-pass ones included) matters."""
    torch.manual_seed(0)
    model = create_model(v['name'], num_classes=REFERENCE_CLASSES)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            for t, lo, hi in [(bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2), (bn.running_mean, -0.2, 0.2),
                              (bn.running_var, 0.5, 1.5)]:
                t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))
    return model.double().eval()


def reference_input() -> torch.Tensor:
    return torch.randn(2, 3, REFERENCE_SIZE, REFERENCE_SIZE, generator=torch.Generator().manual_seed(2)).double()


def state_signature(sd: dict) -> list[float]:
    "Sum, sum of squares and a position-weighted sum of every tensor of `sd` (float64): what names the same weights."
    ts = [t.double().flatten() for t in sd.values() if t.is_floating_point()]
    return [sum(t.sum().item() for t in ts), sum((t * t).sum().item() for t in ts),
            sum((i + 1) * t.sum().item() for i, t in enumerate(ts))]


def _reference():
    import json
    if not REFERENCE.is_file(): pytest.fail(f"{REFERENCE} is missing; regenerate it with "
                                            f"python {REFERENCE.parent/'make.py'} PATH/TO/THE/AUTHORS/CHECKOUT")
    return {r['name']: r for r in json.loads(REFERENCE.read_text())['variants']}, json.loads(REFERENCE.read_text())


def test_reference_fixture_covers_every_variant():
    records, whole = _reference()
    assert sorted(records) == sorted(v['name'] for v in REFERENCE_VARIANTS)
    assert whole['input'] == pytest.approx(state_signature({'x': reference_input()}), rel=1e-9)


@pytest.mark.parametrize('v', REFERENCE_VARIANTS, ids=lambda v: v['name'])
def test_outputs_match_the_authors_code(v):
    """Our TD ResNet against the authors' code at the same weights: the logits and the per-pass logits
    (`output_over_t`), in float64, max abs difference <= 1e-5; the parameter count the same."""
    ref = _reference()[0][v['name']]
    model = reference_model(v)
    assert state_signature(model.state_dict()) == pytest.approx(ref['signature'], rel=1e-9), \
        "the seeded model is not the one the fixture was made from (the factory's initialisation changed?)"
    assert sum(p.numel() for p in model.parameters()) == ref['params']
    x = reference_input()
    with torch.no_grad(): logits, over_t = model(x), model(x, output_over_t=True)
    torch.testing.assert_close(logits, torch.tensor(ref['logits'], dtype=torch.float64), rtol=0, atol=1e-5)
    assert len(over_t) == len(ref['logits_over_t']) == v['passes']
    for t, (got, want) in enumerate(zip(over_t, ref['logits_over_t']), 1):
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-5,
                                   msg=lambda m, t=t: f"pass {t}: {m}")
