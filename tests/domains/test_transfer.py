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
