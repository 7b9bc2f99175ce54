import numpy as np
import pytest
import torch

from domains import transfer as T


class TestTransfer:
    @pytest.fixture
    def pair(self):
        g = torch.Generator().manual_seed(0)
        img = torch.rand(3, 40, 40, generator=g) * 0.6 + 0.2
        mask = torch.zeros(1, 40, 40)
        mask[:, 10:30, 10:30] = 1
        ref = np.random.default_rng(1).random((5000, 3)) * 0.5 + np.array([0.4, 0.2, 0.1])
        return img, mask, ref

    def test_reinhard_matches_lab_stats(self, pair):
        img, mask, ref = pair
        out = T.transfer(img, mask, "reinhard", ref=ref)
        fg = out.permute(1, 2, 0)[mask[0] > 0.5].double().numpy()
        lab, rlab = T.rgb_to_lab(fg), T.rgb_to_lab(ref)
        assert np.allclose(lab.mean(0), rlab.mean(0), atol=1.0)
        assert np.allclose(lab.std(0), rlab.std(0), rtol=0.1)
        assert torch.equal(out[:, mask[0] == 0], img[:, mask[0] == 0])

    def test_xiao_matches_covariance(self, pair):
        img, mask, ref = pair
        fg = T.transfer(img, mask, "xiao", ref=ref).permute(1, 2, 0)[mask[0] > 0.5].double().numpy()
        assert np.allclose(np.cov(fg.T), np.cov(ref.T), atol=2e-3)
        assert np.allclose(fg.mean(0), ref.mean(0), atol=1e-2)

    @pytest.mark.parametrize("method", ["histogram", "pitie"])
    def test_distribution_matching(self, pair, method):
        img, mask, ref = pair
        fg = T.transfer(img, mask, method, ref=ref).permute(1, 2, 0)[mask[0] > 0.5].double().numpy()
        for c in range(3):
            assert np.abs(np.quantile(fg[:, c], [0.1, 0.5, 0.9]) - np.quantile(ref[:, c], [0.1, 0.5, 0.9])).max() < 0.05

    def test_looks_are_identity_at_neutral(self, pair):
        img, mask, _ = pair
        neutral = {"wb_r": 1.0, "wb_b": 1.0, "ev": 0.0, "gamma": 1.0, "contrast": 0.0, "saturation": 1.0}
        assert (T.transfer(img, mask, "retouch", params=neutral) - img).abs().max() < 2e-3
        dark = T.transfer(img, mask, "illumination", params={"ev": -1.0, "temperature": 0.0, "contrast": 1.0,
                                                              "shadows": 0.0, "saturation": 1.0})
        assert dark[:, 15, 15].sum() < img[:, 15, 15].sum()


def test_quantiles_equal_numpys_value_for_value():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 17, 256, 1000, 4097):
        for x in (rng.random(n), rng.integers(0, 256, n) / 255.0, np.round(rng.normal(size=n), 1)):
            for q in (np.linspace(0, 1, 256), np.array([0.0, 0.25, 0.5, 1.0]), rng.random(7)):
                assert np.array_equal(T.quantiles(x, q), np.quantile(x, q)), (n, q[:3])


def test_pitie_reuses_its_fit_only_for_the_very_pixels_it_was_fitted_on():
    rng = np.random.default_rng(1)
    src, ref = rng.random((3000, 3)), rng.random((2000, 3)) * 0.5
    fn = T.fit_pitie(src, ref, 0.7, seed=2)
    long_way = fn(src[::-1].copy())[::-1]  # other order: carried through every step again
    assert np.array_equal(fn(src), long_way)
    other = src.copy()
    other[0] += 0.01
    assert not np.array_equal(fn(other), fn(src))


def test_interp_equals_numpys_value_for_value():
    """The transfers' curve lookup (numba, binned) is np.interp, exactly: ties, knots hit exactly,
    values outside the range, NaN, strided columns and a flat curve."""
    rng = np.random.default_rng(0)
    q = np.linspace(0, 1, 256)
    for trial in range(30):
        x = rng.normal(size=(20000, 3)) @ rng.normal(size=(3, 3))
        if trial % 3 == 0:
            x = np.round(x * 4) / 4  # heavy ties: many equal quantiles
        xq = np.maximum.accumulate(T.quantiles(x[:, 0], q) + np.arange(256) * 1e-9)
        yq = T.quantiles(rng.gamma(2.0, size=5000), q)
        f = T.Interp(xq, yq)
        v = x[:, trial % 3]  # a strided column, as the transfers pass
        v[:64] = xq[rng.integers(0, 256, 64)]
        v[64:70] = [xq[0], xq[-1], np.nan, -1e9, 1e9, np.inf]
        assert np.array_equal(f(v), np.interp(v, xq, yq), equal_nan=True), trial
        assert np.array_equal(f(v[:100]), np.interp(v[:100], xq, yq), equal_nan=True)  # small inputs: numpy
    flat = T.Interp(np.arange(256.0), np.full(256, 0.5))
    assert np.array_equal(flat(rng.random(5000) * 300 - 20), np.full(5000, 0.5))


def test_expert_looks_are_built_once_and_render_as_before():
    from common.lut import apply_lut, lut_from_function
    img = torch.rand(3, 12, 16)
    for k in range(len(T.EXPERTS)):
        want = apply_lut(img[None], lut_from_function(T.retouch_fn(T.EXPERTS[k])))[0].clamp(0, 1)
        assert torch.equal(T.render_expert(img, k), want)
        assert T.expert_lut(k) is T.expert_lut(k)


def test_looks_on_the_foreground_equal_the_whole_image_product():
    from common.lut import apply_lut
    g = torch.Generator().manual_seed(3)
    img = torch.rand(3, 20, 24, generator=g)
    mask = torch.zeros(1, 20, 24)
    mask[:, 4:15, 5:20] = 1
    mask[:, 4:15, 3:5] = 0.4  # a soft edge is touched too
    lut = T.expert_lut(2) * 1.2 - 0.05  # leaves [0, 1]: the clamp matters
    for clamp in (False, True):
        whole = apply_lut(img[None], lut)[0]
        whole = whole.clamp(0, 1) if clamp else whole
        assert torch.equal(T.look_on(img, mask, lut, clamp), mask * whole + (1 - mask) * img)


@pytest.mark.parametrize("method", sorted(T.STAT_METHODS))
def test_foreground_only_transfer_equals_the_whole_image_computation(method):
    """transfer() fits, applies and blends on the pixels the mask touches; the values must be the
    whole-image computation's, bit for bit (the benchmark is rebuilt byte-identically from them)."""
    g = torch.Generator().manual_seed(4)
    img = torch.rand(3, 120, 160, generator=g) * 0.7 + 0.1  # large enough for summation order to show
    ref = np.random.default_rng(5).random((700, 3)) * 0.5 + 0.3
    for soft in (False, True):
        mask = torch.zeros(1, 120, 160)
        mask[:, 10:110, 20:150] = 1
        if soft:
            mask[:, 10:110, 12:20] = 0.3
        hwc = img.permute(1, 2, 0).double().numpy()  # the whole-image computation, as it was written
        fn = T.STAT_METHODS[method](hwc[mask[0].numpy() > 0.5], ref, 0.8, seed=3)
        touched = mask[0].numpy() > 0
        full = hwc.copy()
        full[touched] = fn(hwc[touched])
        want = mask * torch.from_numpy(full).permute(2, 0, 1).float() + (1 - mask) * img
        assert torch.equal(T.transfer(img, mask, method, ref=ref, strength=0.8, seed=3), want), (method, soft)
