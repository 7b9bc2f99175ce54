import math

import numpy as np
import pytest
import torch

from eval import metrics as M


def _naive_ssim_channel(x, y, data_range=255.0, sigma=1.5, r=5):
    """Direct float64 reference: Gaussian-weighted local statistics with reflect padding."""
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    xp, yp = np.pad(x, r, mode="reflect"), np.pad(y, r, mode="reflect")
    h, wd = x.shape
    out = np.zeros_like(x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    for i in range(h):
        for j in range(wd):
            a, b = xp[i:i + 2 * r + 1, j:j + 2 * r + 1], yp[i:i + 2 * r + 1, j:j + 2 * r + 1]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
            cov = (w * a * b).sum() - ma * mb
            out[i, j] = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return out


def test_identical_images():
    x = torch.rand(2, 3, 32, 32)
    m = (torch.rand(2, 1, 32, 32) > 0.5).float()
    r = M.compute(x, x, m, size=None)
    assert torch.all(r["MSE"] == 0) and torch.all(r["fMSE"] == 0)
    assert torch.allclose(r["fSSIM"], torch.ones(2), atol=1e-5)
    assert torch.all(r["PSNR"] > 90)


def test_known_values():
    t = torch.zeros(1, 3, 16, 16)
    p = torch.zeros(1, 3, 16, 16)
    m = torch.zeros(1, 1, 16, 16)
    m[..., :8, :] = 1  # top half is foreground
    p[..., :8, :] = 10 / 255  # foreground off by 10 levels, background exact
    r = M.compute(p, t, m, size=None)
    assert r["fMSE"].item() == pytest.approx(100, rel=1e-5)
    assert r["MSE"].item() == pytest.approx(50, rel=1e-5)
    assert r["PSNR"].item() == pytest.approx(10 * math.log10(255 ** 2 / 50), rel=1e-5)
    assert r["fPSNR"].item() == pytest.approx(10 * math.log10(255 ** 2 / 100), rel=1e-5)
    assert r["fg_ratio"].item() == 0.5


def test_ssim_against_reference():
    rng = np.random.default_rng(0)
    t = rng.random((3, 24, 20))
    p = np.clip(t + 0.1 * rng.standard_normal(t.shape), 0, 1)
    m = np.zeros((1, 24, 20))
    m[:, 4:18, 3:15] = 1
    ref_map = np.stack([_naive_ssim_channel(p[c] * 255, t[c] * 255) for c in range(3)])
    ref = (ref_map * m).sum() / (3 * m.sum())
    got = M.fssim(torch.from_numpy(p)[None], torch.from_numpy(t)[None], torch.from_numpy(m)[None])
    assert got.item() == pytest.approx(ref, abs=1e-6)


def test_resize_to_256_and_accumulator():
    p, t = torch.rand(1, 3, 100, 60), torch.rand(1, 3, 100, 60)
    m = torch.zeros(1, 1, 100, 60)
    m[..., 10:50, 10:50] = 1
    r = M.compute(p, t, m)
    acc = M.Accumulator()
    acc.add("A", r)
    acc.add("A", M.compute(t, t, m))
    acc.add("B", M.compute(t, t, m))
    s = acc.summary()
    assert s["A"]["n"] == 2 and s["B"]["n"] == 1 and s["All"]["n"] == 3
    assert s["All"]["fMSE"] == pytest.approx(r["fMSE"].item() / 3)  # image-weighted
    assert s["A"]["fMSE"] == pytest.approx(r["fMSE"].item() / 2)
    assert "| All | 3 |" in M.markdown_table(s)


def test_public_functions_match_direct_formulas():
    g = torch.Generator().manual_seed(0)
    p, t = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    m = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    d2 = ((p - t) * 255).double() ** 2
    want_mse = d2.mean((1, 2, 3))
    want_fmse = (d2 * m).sum((1, 2, 3)) / (3 * m.sum((1, 2, 3)))
    assert torch.allclose(M.mse(p, t).double(), want_mse, rtol=1e-5)
    assert torch.allclose(M.fmse(p, t, m).double(), want_fmse, rtol=1e-5)
    assert torch.allclose(M.psnr(p, t).double(), 10 * torch.log10(255.0 ** 2 / want_mse), rtol=1e-5)
    assert torch.allclose(M.fpsnr(p, t, m).double(), 10 * torch.log10(255.0 ** 2 / want_fmse), rtol=1e-5)
    assert M.fssim(p, t, m).shape == (2,) and torch.allclose(M.fssim(t, t, m), torch.ones(2), atol=1e-5)
    assert M.fmse(p, t, m, size=8).shape == (2,)


def test_drift_is_the_mean_absolute_change_inside_the_mask():
    from eval.metrics import drift
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0, :, :2] = 10 / 255          # inside the mask: 10 levels on every channel
    y[0, :, 2:] = 1.0               # outside the mask: ignored
    y[1, 0, :2] = 30 / 255          # one channel of three: 10 levels on average
    m = torch.zeros(2, 1, 4, 4)
    m[:, :, :2] = 1
    assert drift(y, x, m).tolist() == pytest.approx([10.0, 10.0], abs=1e-4)
    assert drift(y, x, torch.zeros_like(m)).tolist() == [0.0, 0.0]    # no mask: nothing moved


def test_harm_means_worse_beyond_rounding():
    from eval.metrics import HARM_TOL, harms
    assert not harms(100.0, 100.0) and not harms(100.0 * (1 + 1e-7), 100.0)  # an identity model's float noise
    assert harms(100.0 * (1 + 2 * HARM_TOL), 100.0) and harms(101.0, 100.0) and not harms(99.0, 100.0)
