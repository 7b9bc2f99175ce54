import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from common import checkpoint
from common.io import InputError, read_image
from domains.dataset import HarmonyDataset
from syconet.evaluate import diversity, pairwise_fmse, reconstruction_fmse
from syconet.lut import identity_lut
from syconet.model import SycoNet, create, load, meta
from syconet.train import ABLATIONS, main as train_main

from ..conftest import ROOT


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


def test_train_finetune_sample_evaluate(mini_data, tmp_path):
    out = tmp_path / "all.safetensors"
    train_main(data=str(mini_data), out=str(out), arch="syconet_test", size=32, steps=3, batch_size=4, device="cpu")
    md = checkpoint.read_meta(out)
    assert md["kind"] == "syconet" and md["step"] == 3 and len(md["domains"]) == 4
    ft = tmp_path / "flickr.safetensors"
    train_main(data=str(mini_data), domains="MiniFlickr", init=str(out), out=str(ft), size=32, steps=2,
               batch_size=2, device="cpu")
    assert checkpoint.read_meta(ft)["domains"] == ["MiniFlickr"]
    # the KL weight ramps up from scratch only; a finetune keeps it at full weight from step 0
    assert md["config"]["kl_warmup"] == 0.2 and checkpoint.read_meta(ft)["config"]["kl_warmup"] == 0.0
    s = next(iter(sorted((mini_data / "MiniFlickr" / "real_images").iterdir())))
    mask = mini_data / "MiniFlickr" / "masks" / f"{s.stem}_1.png"
    cmd = [sys.executable, "-m", "syconet.sample", str(s), str(mask), "--ckpt", str(ft), "-k", "3",
           "--out", str(tmp_path / "samples")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(res["samples"]) == 3
    assert read_image(res["samples"][0]).shape == read_image(s).shape  # full resolution
    r2 = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 2 and "already exists" in r2.stderr
    r3 = subprocess.run([sys.executable, "-m", "syconet.evaluate", "--data", str(mini_data), "--ckpt", str(ft),
                         "--domains", "MiniFlickr", "--size", "32", "-k", "3"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
    assert r3.returncode == 0, r3.stderr[-1500:]
    ev = json.loads(r3.stdout.strip().splitlines()[-1])
    assert set(ev["domains"]) == {"MiniFlickr"} and ev["domains"]["MiniFlickr"]["Div"] >= 0


def test_generation_only_export(tmp_path):
    from syconet.model import export_generation
    torch.manual_seed(0)
    m = create("syconet_test").eval()
    checkpoint.save(tmp_path / "full.safetensors", m.state_dict(), meta(m, "syconet_test", ["A"], "fp"))
    export_generation(tmp_path / "full.safetensors", tmp_path / "gen.safetensors")
    g, md = load(tmp_path / "gen.safetensors")
    assert md["generation_only"] and not hasattr(g, "enc_z")
    assert (tmp_path / "gen.safetensors").stat().st_size < (tmp_path / "full.safetensors").stat().st_size
    b = _batch()
    z = torch.randn(2, m.cfg.z_dim)
    assert torch.allclose(m.generate(b["real"], b["mask"], z), g.generate(b["real"], b["mask"], z), atol=2e-2)
    with pytest.raises(ValueError, match="generation-only"):
        g.reconstruct(b["composite"], b["real"], b["mask"])


def test_no_rec_ablation_trains_and_validates(mini_data, tmp_path):
    out = tmp_path / "norec.safetensors"
    train_main(data=str(mini_data), out=str(out), arch="syconet_test", ablation="no_rec", size=32, steps=2,
               batch_size=4, device="cpu")
    m, md = load(out)
    assert md["config"]["rec_branch"] is False and not hasattr(m, "enc_z")
    r = reconstruction_fmse(m, HarmonyDataset(mini_data, "MiniFlickr", "test", size=32, train=False))
    assert r["rec_fMSE"] != r["rec_fMSE"] and r["comp_fMSE"] > 0  # NaN: nothing to reconstruct with


def test_finetune_freeze_bn_keeps_statistics(mini_data, tmp_path):
    out = tmp_path / "all.safetensors"
    train_main(data=str(mini_data), out=str(out), arch="syconet_test", size=32, steps=2, batch_size=4, device="cpu")
    base = checkpoint.load(out, kind="syconet")[0]
    stats = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert stats
    for freeze in (True, False):
        ft = tmp_path / f"ft_{freeze}.safetensors"
        train_main(data=str(mini_data), domains="MiniFlickr", init=str(out), out=str(ft), size=32, steps=2,
                   batch_size=2, device="cpu", freeze_bn=freeze)
        t = checkpoint.load(ft, kind="syconet")[0]
        same = all(torch.equal(t[k], base[k]) for k in stats)
        assert same == freeze


def test_sample_cpu_fast_path_matches_float_render():
    """``syconet.sample`` on the CPU (8-bit ``apply_lut_u8``) equals the float ``render`` to rounding."""
    from syconet.sample import sample
    torch.manual_seed(0)
    m = create("syconet_test").eval()
    real = torch.randint(0, 256, (3, 40, 56)).float() / 255  # an 8-bit image, as read from disk
    mask = torch.zeros(1, 40, 56)
    mask[:, 8:30, 10:45] = 1
    got = sample(m, real, mask, k=3, seed=5)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, m.cfg.z_dim, generator=g)
    small = m._small(torch.cat([real, mask])[None])
    with torch.no_grad():
        alpha = m.coefficients(small[:, :3].expand(3, -1, -1, -1), small[:, 3:].expand(3, -1, -1, -1), z)
        want = m.render(real[None].expand(3, -1, -1, -1), mask[None].expand(3, -1, -1, -1), alpha)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 0.5 / 255 + 1e-5
    assert (got - real).abs().max() > 1 / 255  # the samples do change the foreground


def test_finetune_head_only_with_replay(mini_data, tmp_path):
    out = tmp_path / "all.safetensors"
    train_main(data=str(mini_data), out=str(out), arch="syconet_test", size=32, steps=1, batch_size=4, device="cpu")
    base = checkpoint.load(out, kind="syconet")[0]
    ft = tmp_path / "head.safetensors"
    train_main(data=str(mini_data), domains="MiniFlickr", init=str(out), out=str(ft), size=32, steps=2,
               batch_size=2, device="cpu", tune="head", replay=0.5)
    t, m = checkpoint.load(ft, kind="syconet")
    assert m["domains"] == ["MiniFlickr"]
    changed = {k for k in base if not torch.equal(t[k], base[k])}
    assert changed and all(k.startswith(("fc.", "bank", "to_stats.")) for k in changed)
    with pytest.raises(InputError, match="--tune must be one of"):
        train_main(data=str(mini_data), domains="MiniFlickr", init=str(out), out=str(tmp_path / "x.safetensors"),
                   size=32, steps=1, batch_size=2, device="cpu", tune="encoders")


def test_mixed_dataset_shares():
    from domains.dataset import Mixed
    main, other = list(range(10)), [100 + i for i in range(30)]
    mx = Mixed(main, other, 0.25)
    items = [mx[i] for i in range(len(mx))]
    assert sum(i >= 100 for i in items) == 30 and len(items) == 120  # 30 of 120 = 25 % replayed
    assert sorted(set(i for i in items if i < 100)) == main
    assert [Mixed(main, other, 0.0)[i] for i in range(10)] == main and len(Mixed(main, other, 0.0)) == 10
    assert len(Mixed(main, other, 0.9)) == 40  # main never under one pass
    with pytest.raises(InputError, match="replay must be in"):
        Mixed(main, other, 1.0)


def test_energy_distance_and_lab_shift():
    from syconet.evaluate import energy_distance, lab_shift
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    # direct double loop, V-statistic form
    y = rng.normal(size=(30, 3)) + 1.0
    dxy = np.mean([np.linalg.norm(a - b) for a in x for b in y])
    dxx = np.mean([np.linalg.norm(a - b) for a in x for b in x])
    dyy = np.mean([np.linalg.norm(a - b) for a in y for b in y])
    assert energy_distance(x, y) == pytest.approx(2 * dxy - dxx - dyy, rel=1e-9)
    assert energy_distance(x, y + 2.0) > energy_distance(x, y) > 0
    real = torch.rand(2, 3, 16, 16) * 0.5 + 0.25
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    s = lab_shift(real, real, mask)
    assert s.shape == (2, 6) and np.abs(s).max() < 1e-9  # no adjustment, no shift
    darker = lab_shift(real * 0.7, real, mask)
    assert (darker[:, 0] < -5).all()  # L* drops when the foreground darkens
