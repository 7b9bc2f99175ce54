"""One set of checks over every registered tiny harmonizer variant (kornia's BaseTester habit):
odd sizes, the background kept, gradients, the checkpoint round trip and the ONNX export."""
import numpy as np
import pytest
import torch

from common import checkpoint, registry

TINY = [n for n in registry.variants("harmonizer") if n.endswith("_test")]


def _inputs(h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h, w, generator=g)
    m = torch.zeros(1, 1, h, w)
    m[..., h // 4: 3 * h // 4, w // 5: 4 * w // 5] = 1
    return x, m


def test_every_family_has_a_tiny_variant():
    assert {n.split("_")[0] for n in TINY} == {"issam", "rainnet", "gct", "hrnet"}


@pytest.mark.parametrize("name", TINY)
def test_odd_sizes_and_background(name):
    model = registry.create(name).eval()
    for h, w in ((37, 53), (64, 31), (17, 17)):
        x, m = _inputs(h, w)
        with torch.no_grad():
            y = model(x, m)
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert torch.equal(y[m.expand_as(y) == 0], x[m.expand_as(x) == 0])  # the background, exactly


@pytest.mark.parametrize("name", TINY)
def test_gradients_reach_the_weights(name):
    model = registry.create(name).train()
    (x, m), (x2, m2) = _inputs(), _inputs(seed=1)  # a batch of two: iDIH's 1×1 bottleneck has batch norm
    model(torch.cat([x, x2]), torch.cat([m, m2])).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_roundtrip(name, tmp_path):
    from harmonizers.models import meta
    model = registry.create(name).eval()
    checkpoint.save(tmp_path / "m.safetensors", model.state_dict(), meta(model, ["all"], "x"))
    loaded, m = registry.load(tmp_path / "m.safetensors")
    x, mk = _inputs()
    with torch.no_grad():
        assert torch.equal(model(x, mk), loaded(x, mk)) and m["arch"] == model.arch


@pytest.mark.parametrize("name", TINY)
def test_onnx_export_matches_torch(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = registry.create(name).eval()
    s = model.size
    x, m = _inputs(s, s)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x, m), str(path), input_names=["image", "mask"], output_names=["output"],
                      opset_version=18, dynamo=True, external_data=False, verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy(), "mask": m.numpy()})[0]
    with torch.no_grad():
        want = model(x, m).numpy()
    # relative to the output's scale: an untrained deep net in eval mode (BN statistics 0 and 1) can
    # leave [0, 1] by orders of magnitude
    assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max()))
