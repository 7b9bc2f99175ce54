"""The batched (device) processes against the per-image numpy processes they stand for."""
import random

import numpy as np
import pytest
import torch

from domains import batched as B
from domains import transfer as T
from domains.build import MAX_FMSE, MIN_FMSE


@pytest.fixture(scope="module")
def batch():
    """Three small smooth images with different foregrounds and colour casts."""
    g = torch.Generator().manual_seed(0)
    n, h, w = 3, 24, 32
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    imgs = []
    for k in range(n):
        base = torch.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy, 0.5 - 0.3 * xx * yy]) * (0.7 + 0.15 * k)
        imgs.append((base + 0.08 * torch.rand(3, h, w, generator=g)).clamp(0, 1))
    real = torch.stack(imgs)
    mask = torch.zeros(n, 1, h, w)
    mask[0, :, 4:20, 6:22] = 1
    mask[1, :, 2:12, 2:30] = 1
    mask[2, :, 10:23, 12:31] = 1
    return real, mask


def _numpy(real, mask, i, j, method, strength, seed=0):
    """The per-image process: image i, reference pixels from image j's foreground."""
    ref = real[j].permute(1, 2, 0).reshape(-1, 3)[mask[j, 0].reshape(-1) > 0.5].double().numpy()
    return T.transfer(real[i], mask[i], method, ref=ref, strength=strength, seed=seed)


def _pixels(real, mask):
    return real.flatten(2).transpose(1, 2).double(), mask.flatten(1) > 0.5


@pytest.mark.parametrize("method", ["reinhard", "xiao", "histogram", "pitie"])
def test_colour_transfers_equal_the_per_image_ones(batch, method):
    real, mask = batch
    x, m = _pixels(real, mask)
    pairs, strength = [(0, 1), (1, 2), (2, 0)], torch.tensor([1.0, 0.8, 0.6], dtype=torch.float64)
    refs = torch.tensor([j for _, j in pairs])
    args = (x, m, x[refs], m[refs], strength)
    if method == "pitie":
        rots = []
        for seed in range(3):  # the rotations fit_pitie draws from its seed
            rng = np.random.default_rng(seed)
            rots.append([np.linalg.qr(rng.standard_normal((3, 3)))[0] for _ in range(10)])
        got = B.pitie(*args, torch.from_numpy(np.array(rots)))
    else:
        got = getattr(B, method)(*args)
    for k, (i, j) in enumerate(pairs):
        want = _numpy(real, mask, i, j, method, float(strength[k]), seed=k).flatten(1).T.double()
        fg = m[k]
        assert (got[k][fg] - want[fg]).abs().max() < 1e-5, (method, k)


def test_row_wise_interp_and_quantiles_equal_numpys():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(4, 300))
    m = rng.random((4, 300)) < np.array([[0.9], [0.5], [0.1], [0.02]])
    m[:, 0] = True
    q = np.linspace(0, 1, 256)
    got = B.masked_quantiles(torch.from_numpy(v), torch.from_numpy(m), torch.from_numpy(q)).numpy()
    for r in range(4):
        assert np.allclose(got[r], np.quantile(v[r][m[r]], q), rtol=0, atol=1e-12)
        xp = np.maximum.accumulate(got[r] + np.arange(256) * 1e-9)
        x = np.concatenate([v[r], [xp[0] - 1, xp[-1] + 1, xp[7]]])
        want = np.interp(x, xp, got[r][::-1].copy())
        mine = B.interp(torch.from_numpy(x)[None], torch.from_numpy(xp)[None], torch.from_numpy(got[r][::-1].copy())[None])
        assert np.allclose(mine[0].numpy(), want, rtol=0, atol=1e-9)


def test_looks_equal_the_luts_they_come_from(batch):
    real, mask = batch
    x, _ = _pixels(real, mask)
    luts = torch.stack([T.expert_lut(k) for k in (0, 3, 1)])
    got = B.looks(x.float(), luts)
    for k in range(3):
        want = T.render_expert(real[k], [0, 3, 1][k]).flatten(1).T
        assert (got[k] - want).abs().max() < 1e-6


def test_batched_composites_change_only_foregrounds_plausibly(batch):
    from harmonizers.augment import LookPool
    real, mask = batch
    real, mask = real.repeat(4, 1, 1, 1), mask.repeat(4, 1, 1, 1)
    mask[-1] = 0
    mask[-1, :, 0, 0] = 1  # a 1-pixel foreground: left alone
    proc = B.BatchedProcesses(identity=0.0, lut_pool=LookPool(n=8))
    random.seed(0)
    torch.manual_seed(0)
    out = proc(real, mask)
    assert out.shape == real.shape and out.dtype == real.dtype
    bg = (mask < 0.5).expand_as(real)
    assert torch.equal(out[bg], real[bg])  # the background exactly as it was
    assert torch.equal(out[-1], real[-1])
    fm = B.fmse255(out.flatten(2).transpose(1, 2)[:-1], real.flatten(2).transpose(1, 2)[:-1], mask.flatten(1)[:-1] > 0.5)
    assert ((fm >= MIN_FMSE) & (fm <= MAX_FMSE)).float().mean() >= 0.8, fm  # plausible draws kept
    # every process runs; identity 1 - tiny leaves (nearly) everything alone; seeded runs repeat
    for method in B.BatchedProcesses.METHODS:
        one = B.BatchedProcesses(0.0, (method,), lut_pool=LookPool(n=8))(real[:3], mask[:3])
        assert not torch.equal(one, real[:3]), method
    random.seed(1)
    torch.manual_seed(1)
    a = proc(real, mask)
    random.seed(1)
    torch.manual_seed(1)
    assert torch.equal(a, proc(real, mask))
    assert torch.equal(B.BatchedProcesses(0.999999, lut_pool=LookPool(n=8))(real, mask), real)


def test_a_training_steps_autocast_does_not_reach_the_processes(batch, monkeypatch):
    """The augmenter runs inside the training step's bf16 autocast: the processes switch it off
    (their curves need float64 knots, their LUT sampling float32)."""
    from harmonizers.augment import LookPool
    real, mask = batch
    seen, looks = [], B.looks
    monkeypatch.setattr(B, "looks", lambda x, luts: seen.append(torch.is_autocast_enabled("cpu")) or looks(x, luts))
    proc = B.BatchedProcesses(identity=0.0, methods=("expert",))
    outs = []
    for amp in (False, True):
        random.seed(3)
        torch.manual_seed(3)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=amp):
            outs.append(proc(real, mask))
    assert seen and not any(seen)
    assert outs[1].dtype == torch.float32 and torch.equal(outs[0], outs[1])


def test_unknown_processes_and_a_missing_look_pool_are_refused():
    with pytest.raises(ValueError, match="unknown process"):
        B.BatchedProcesses(0.3, ("sepia",))
    with pytest.raises(ValueError, match="lut_pool"):
        B.BatchedProcesses(0.3)
    proc = B.BatchedProcesses(0.3, ("reinhard", "expert"))
    assert proc.methods == ("reinhard", "expert")
    real, mask = torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8)
    with pytest.raises(ValueError, match="picks must name"):
        proc(real, mask, picks=["reinhard", "illumination"])
    with pytest.raises(ValueError, match="picks must name"):
        proc(real, mask, picks=["expert"])


def test_a_pick_of_none_leaves_the_row_and_lends_its_colours():
    """Rows picked None stay as they are and are the others' only references: Reinhard then moves
    row 0's foreground mean to row 1's."""
    real = torch.stack([torch.full((3, 8, 8), 0.3), torch.full((3, 8, 8), 0.7)])
    real = real + 0.05 * torch.rand(2, 3, 8, 8)
    mask = torch.ones(2, 1, 8, 8)
    random.seed(0)
    torch.manual_seed(0)
    out = B.BatchedProcesses(0.0, ("reinhard",))(real, mask, picks=["reinhard", None])
    assert torch.equal(out[1], real[1])
    assert (out[0].mean() - real[0].mean()).item() > 0.2  # towards the reference's 0.7, strength ≥ 0.6
