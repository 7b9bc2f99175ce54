import pytest
import torch

from common import checkpoint
from common.io import InputError
from domains.dataset import HarmonyDataset
from syconet.evaluate import diversity, pairwise_fmse, reconstruction_fmse
from syconet.lut import identity_lut
from syconet.model import create, load, meta
from syconet.train import ABLATIONS


def _batch(n=2, s=40):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(n, 3, s, s, generator=g)
    mask = torch.zeros(n, 1, s, s)
    mask[..., 10:30, 8:28] = 1
    comp = mask * real.flip(1) + (1 - mask) * real
    return {"composite": comp, "real": real, "mask": mask}


class TestModel:
    def test_generate_shapes_and_background(self):
        torch.manual_seed(0)
        m = create("syconet_test").eval()
        b = _batch()
        out = m.generate(b["real"], b["mask"])
        assert out.shape == b["real"].shape
        bg = (b["mask"] == 0).expand_as(out)
        assert torch.equal(out[bg], b["real"][bg])
        # any resolution: the LUT is applied at full size, the encoders see enc_size
        big = torch.rand(1, 3, 77, 51)
        bm = torch.zeros(1, 1, 77, 51)
        bm[..., 20:50, 10:40] = 1
        assert m.generate(big, bm).shape == (1, 3, 77, 51)

    def test_coefficients_softmax_and_bank(self):
        m = create("syconet_test")
        b = _batch()
        a = m.coefficients(b["real"], b["mask"], torch.randn(2, m.cfg.z_dim))
        assert torch.allclose(a.sum(1), torch.ones(2)) and (a > 0).all()
        assert torch.equal(m.bank[0], identity_lut(m.cfg.lut_dim))

    def test_z_changes_output(self):
        torch.manual_seed(0)
        m = create("syconet_test").eval()
        b = _batch(1)
        torch.nn.init.normal_(m.fc.weight, std=1.0)
        a = m.generate(b["real"], b["mask"], z=torch.zeros(1, m.cfg.z_dim))
        c = m.generate(b["real"], b["mask"], z=torch.ones(1, m.cfg.z_dim) * 3)
        assert (a - c).abs().max() > 1e-3

    @pytest.mark.parametrize("ablation", sorted(ABLATIONS))
    def test_ablations_train_step(self, ablation):
        torch.manual_seed(0)
        m = create("syconet_test", **ABLATIONS[ablation])
        losses = m(_batch())
        losses["loss"].backward()
        assert torch.isfinite(losses["loss"])
        assert m.bank.grad is not None and m.bank.grad.abs().sum() > 0
        if ablation == "lutv2":
            assert (m.bank[1:] == 0).all()
            a = m.coefficients(_batch()["real"], _batch()["mask"], torch.randn(2, m.cfg.z_dim))
            assert torch.allclose(a, torch.tensor([[1.0] + [0.0] * (m.cfg.n_luts - 1)] * 2))  # starts at identity
        if ablation == "no_rec":
            assert not hasattr(m, "enc_z") and m.disc.net[0].weight.grad is not None

    def test_checkpoint_roundtrip(self, tmp_path):
        torch.manual_seed(0)
        m = create("syconet_test", z_at_input=True).eval()
        checkpoint.save(tmp_path / "s.safetensors", m.state_dict(), meta(m, "syconet_test", ["A"], "fp"))
        m2, md = load(tmp_path / "s.safetensors")
        assert md["domains"] == ["A"] and m2.cfg == m.cfg
        b = _batch()
        z = torch.randn(2, m.cfg.z_dim)
        assert torch.allclose(m.generate(b["real"], b["mask"], z), m2.generate(b["real"], b["mask"], z), atol=1e-6)
        checkpoint.save(tmp_path / "h.safetensors", {"x": torch.zeros(1)}, {"kind": "harmonizer", "arch": "issam"})
        with pytest.raises(InputError, match="is a 'harmonizer', expected a 'syconet'"):
            load(tmp_path / "h.safetensors")

    def test_div_and_reconstruction_metrics(self, mini_data):
        torch.manual_seed(0)
        m = create("syconet_test").eval()
        ds = HarmonyDataset(mini_data, "MiniDay2night", "test", size=32, train=False)
        r = reconstruction_fmse(m, ds)
        assert r["n"] == len(ds) and r["comp_fMSE"] > 0
        x = torch.rand(3, 3, 8, 8)
        mk = torch.ones(1, 8, 8)
        same = pairwise_fmse(x[:1].expand(3, -1, -1, -1), mk)
        assert same == 0
        manual = sum(((x[i] - x[j]) * 255).pow(2).mean().item() for i, j in [(0, 1), (0, 2), (1, 2)]) / 3
        assert pairwise_fmse(x, mk) == pytest.approx(manual, rel=1e-5)
        # a model whose coefficients ignore z has no diversity
        torch.nn.init.zeros_(m.fc.weight)
        assert diversity(m, ds, k=4) == pytest.approx(0, abs=1e-6)
