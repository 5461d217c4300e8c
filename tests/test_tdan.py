"TDAN models in the tools people use: torch.compile, ONNX export, and the GPU path."
import copy

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
