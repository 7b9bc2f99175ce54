import pytest
import torch

from common.io import InputError
from harmonizers import augment as A


def test_augmenters_change_foreground_only(mini_data):
    from domains.dataset import HarmonyDataset
    ds = HarmonyDataset(mini_data, "all", "train", size=32)
    b = [ds[i] for i in range(3)]
    real, mask = torch.stack([x["real"] for x in b]), torch.stack([x["mask"] for x in b])
    for aug in (A.CTAugmenter(ds, n_refs=4), A.LUTAugmenter(n=8, dim=9)):
        out = aug(real, mask)
        assert out.shape == real.shape
        bg = (mask == 0).expand_as(real)          # soft edges blend; the background proper is kept
        assert bg.any() and torch.allclose(out[bg], real[bg], atol=1e-6)
        assert (out - real).abs().sum() > 0
    with pytest.raises(InputError, match="static:K:SYCONET_CKPT"):
        A.parse("static:x")


def test_regrade_applies_one_look_to_both_images():
    from syconet.lut import apply_lut
    g = torch.Generator().manual_seed(0)
    comp, real = torch.rand(6, 3, 16, 20, generator=g), torch.rand(6, 3, 16, 20, generator=g)
    rg = A.Regrade(1.0, n=8, dim=9)
    torch.manual_seed(3)
    c2, r2 = rg(comp, real)
    torch.manual_seed(3)  # the same draws: every image selected, then one look each
    assert bool((torch.rand(6) < 1.0).all())
    luts = rg.pool[torch.randint(len(rg.pool), (6,))]
    assert torch.allclose(c2, apply_lut(comp, luts), atol=1e-6) and torch.allclose(r2, apply_lut(real, luts), atol=1e-6)
    assert (c2 - comp).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every image changed
    # a pair whose composite is its real image stays a pair (the background and target share a look)
    c3, r3 = rg(real, real)
    assert torch.equal(c3, r3)
    # p = 0 leaves the batch alone; some p selects a share
    assert all(torch.equal(a, b) for a, b in zip(A.Regrade(0.0, n=8, dim=9)(comp, real), (comp, real)))
    c4, _ = A.Regrade(0.5, n=8, dim=9)(comp.repeat(50, 1, 1, 1), real.repeat(50, 1, 1, 1))
    changed = (c4 - comp.repeat(50, 1, 1, 1)).abs().amax(dim=(1, 2, 3)) > 0
    assert 0.3 < changed.float().mean() < 0.7
    with pytest.raises(InputError, match="--regrade"):
        A.Regrade(1.5)
