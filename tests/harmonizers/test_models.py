import pytest
import torch

from harmonizers.fullres import apply_colour_transform, fit_colour_transform, harmonize
from harmonizers.models import VARIANTS, create


@pytest.mark.parametrize("name", ["issam_test", "rainnet_test"])
@pytest.mark.parametrize("hw", [(32, 32), (37, 50)])
def test_any_size_and_background_kept(name, hw):
    torch.manual_seed(0)
    m = create(name).eval()
    x = torch.rand(2, 3, *hw)
    mask = torch.zeros(2, 1, *hw)
    mask[..., 5:20, 6:25] = 1
    y = m(x, mask)
    assert y.shape == x.shape and y.min() >= -1e-4 or name == "issam_test"
    bg = (mask == 0).expand_as(x)
    assert torch.equal(y[bg], x[bg])
    y.sum().backward()


def test_variants_build():
    for name in VARIANTS:
        if not name.endswith("256"):
            m = create(name)
            assert m.size == VARIANTS[name][2]


def test_colour_transform_recovers_global_map():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, 30, 30, generator=g)
    fn = lambda x: (0.1 + 0.8 * x + 0.1 * x * x).clamp(0, 1)  # noqa: E731
    coef = fit_colour_transform(src.permute(1, 2, 0).reshape(-1, 3), fn(src).permute(1, 2, 0).reshape(-1, 3), ridge=0)
    assert (apply_colour_transform(src, coef) - fn(src)).abs().max() < 1e-4


@pytest.mark.parametrize("method", ["transform", "upsample", "full"])
def test_harmonize_full_resolution(method):
    torch.manual_seed(0)
    m = create("issam_test").eval()
    x = torch.rand(3, 90, 70)
    mask = torch.zeros(1, 90, 70)
    mask[:, 20:70, 10:60] = 1
    y = harmonize(m, x, mask, method=method)
    assert y.shape == x.shape
    assert torch.equal(y[:, mask[0] == 0], x[:, mask[0] == 0])


@pytest.mark.parametrize("method", ["transform", "upsample"])
def test_harmonize_bbox_crop_is_exact(method):
    """Working on the mask's bounding box gives the same image as working on the whole of it."""
    torch.manual_seed(1)
    m = create("issam_test").eval()
    x = torch.rand(3, 97, 83)
    mask = torch.zeros(1, 97, 83)
    mask[:, 31:60, 17:44] = 1
    mask[:, 40:45, 44:50] = 0.5  # soft edge outside the solid block
    a, b = harmonize(m, x, mask, method=method, crop=True), harmonize(m, x, mask, method=method, crop=False)
    assert (a - b).abs().max() < 1e-5
    assert (a - x).abs().max() > 0


def test_issam_residual_output_starts_at_identity():
    m = create("issam64").eval()
    assert m.cfg.output == "residual"
    x = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 10:40, 10:40] = 1
    assert torch.allclose(m(x, mask), x, atol=1e-5)
    with pytest.raises(ValueError, match="fusion or residual"):
        create("issam_test", output="sum")


def test_harmonize_strength_scales_the_change():
    torch.manual_seed(0)
    model = create("issam_test").eval()
    with torch.no_grad():  # a fresh residual model starts at the identity: make it change something
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, mask = torch.rand(3, 70, 90), torch.zeros(1, 70, 90)
    mask[:, 10:60, 20:80] = 1
    full = harmonize(model, x, mask, method="upsample")
    half = harmonize(model, x, mask, method="upsample", strength=0.5)
    none = harmonize(model, x, mask, method="upsample", strength=0.0)
    assert (full - x).abs().max() > 0.02 and torch.allclose(none, x, atol=1e-6)
    inside = (full > 1e-3) & (full < 1 - 1e-3) & (half > 1e-3) & (half < 1 - 1e-3)  # away from clamping
    assert torch.allclose(half[inside], ((x + full) / 2)[inside], atol=1e-5)
    assert torch.allclose(harmonize(model, x, mask, strength=1.0), harmonize(model, x, mask))
    assert (harmonize(model, x, mask, strength=0.0) - x).abs().max() < 1e-4  # transform: identity map
