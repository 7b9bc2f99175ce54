"""The detector's NumPy early features against timm's own network."""
import numpy as np
import pytest
import torch

from router.style import OUT_BLOCKS, Style, feature_names, imagenet


@pytest.fixture(scope="module")
def nets():
    import timm
    torch.manual_seed(3)
    model = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=OUT_BLOCKS).eval()
    with torch.no_grad():                      # batch norms away from the identity, so folding is tested
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    from router.style import from_timm
    return model, from_timm(model)


@pytest.mark.parametrize("hw", [(64, 48), (37, 53)])   # even and odd sizes: TF "same" padding
def test_numpy_maps_equal_timm_features(nets, hw):
    model, style = nets
    img = np.random.default_rng(0).random((*hw, 3), dtype=np.float32)
    with torch.no_grad():
        ref = model((torch.from_numpy(img).permute(2, 0, 1)[None] - 0.5) / 0.5)
    got = style.maps(img)
    assert [g.shape for g in got] == [tuple(r.shape[1:]) for r in ref]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r[0].numpy(), rtol=1e-4, atol=1e-4)


def test_features_are_relational_and_round_trip(nets):
    _, style = nets
    rng = np.random.default_rng(1)
    img = rng.random((64, 64, 3), dtype=np.float32)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    f = style.features(img, mask)
    assert f.shape == (len(feature_names()),) == (128,) and np.isfinite(f).all()
    # a smooth foreground in a textured picture: its spread falls against the background's
    smooth = img.copy()
    smooth[16:48, 16:48] = img[16:48, 16:48].mean((0, 1))
    assert (style.features(smooth, mask) - f)[24:48].mean() < -0.3      # the stride-4 spreads
    # an empty or full mask gives zeros, not NaN
    assert not style.features(img, np.zeros_like(mask)).any()
    # tensors and layout round-trip
    back = Style.from_tensors(style.tensors(), style.layout())
    np.testing.assert_array_equal(back.features(img, mask), f)


def test_seeded_random_weights_need_no_file():
    a, b = imagenet(seed=0), imagenet(seed=0)
    np.testing.assert_array_equal(a.stem.weight, b.stem.weight)
