import json

import pytest
import torch

from common import checkpoint
from common.io import InputError
from domains.finetune import main as finetune, plan
from harmonizers import augment as A
from harmonizers.models import (VARIANTS, apply_colour_transform, create, fit_colour_transform, harmonize, load)
from harmonizers.train import fn_mse, main as train_main
from syconet.train import main as syco_train


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


def test_fn_mse_matches_formula():
    p, t = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    m = torch.zeros(2, 1, 16, 16)
    m[0, :, :4, :4] = 1  # 16 px: below min_area → the area counts as min_area, then × 3 channels
    m[1, :, :, :] = 1
    e = ((p - t) * 255).pow(2)       # the official loss sums the error over the whole image
    want = (e[0].sum() / (3 * 100) + e[1].sum() / (3 * 256)) / 2
    assert fn_mse(p, t, m, min_area=100) == pytest.approx(want.item(), rel=1e-5)


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


@pytest.fixture(scope="module")
def runs(mini_data, tmp_path_factory):
    """Tiny base harmonizer and SycoNets in a runs/ folder, as the real pipeline leaves them."""
    r = tmp_path_factory.mktemp("runs")
    kw = dict(data=str(mini_data), size=32, batch_size=4, device="cpu")
    train_main(arch="issam_test", out=str(r / "issam_test_all.safetensors"), steps=3, **kw)
    syco_train(arch="syconet_test", out=str(r / "syconet_all.safetensors"), steps=2, **kw)
    for d in ("MiniFlickr", "MiniDay2night"):
        syco_train(domains=d, init=str(r / "syconet_all.safetensors"), out=str(r / f"syconet_{d}.safetensors"),
                   steps=1, **{**kw, "batch_size": 2})
    return r


@pytest.mark.parametrize("row", [2, 3, 4, 5, 6, 7])
def test_table1_rows_run(runs, mini_data, row, capsys):
    finetune(domain="MiniDay2night", data=str(mini_data), arch="issam_test", row=row, runs=str(runs),
             steps=2, batch_size=2, device="cpu", regrade=0.5 if row == 4 else 0.0)
    out = runs / f"issam_test_MiniDay2night_row{row}.safetensors"
    model, md = load(out)
    assert md["domains"] == ["MiniDay2night"] and md["init"].endswith("issam_test_all.safetensors")
    want = {2: "none", 3: "ct", 4: "lut", 5: "syconet_all", 6: "syconet_MiniDay2night", 7: "syconet_MiniDay2night"}[row]
    assert want in md["augment"] and md["only_aug"] == (row == 6) and md["regrade"] == (0.5 if row == 4 else 0.0)


def test_row1_and_defaults(runs, mini_data, capsys):
    finetune(domain="MiniFlickr", data=str(mini_data), arch="issam_test", row=1, runs=str(runs))
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["row"] == 1 and res["summary"]["MiniFlickr"]["n"] > 0
    p = plan("MiniFlickr", data=str(mini_data), arch="issam_test", runs=str(runs))
    assert p["augment"].endswith("syconet_MiniFlickr.safetensors")
    assert p["init"] == str(runs / "issam_test_all.safetensors")
    with pytest.raises(InputError, match="pass --data"):
        plan("HFlickr", runs=str(runs))
    with pytest.raises(InputError, match="base model not found"):
        plan("MiniFlickr", data=str(mini_data), arch="rainnet", runs=str(runs))


def test_finetune_defaults_on_a_fresh_clone(mini_data, tmp_path, monkeypatch):
    """No runs/ yet: the shipped base harmonizer and SycoNet stand in; no data/mini4: say how to build it."""
    from common import shipped
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="data/mini4: folder not found .*make benchmark"):
        plan("MiniFlickr")
    p = plan("MiniFlickr", data=str(mini_data))
    assert p["init"] == str(shipped.BASE_HARMONIZER) and p["augment"] == f"syconet:{shipped.SYCONET_ALL}"
    assert plan("MiniFlickr", data=str(mini_data), row=5)["augment"] == f"syconet:{shipped.SYCONET_ALL}"
    assert A.parse("syconet") == ("syconet", str(shipped.SYCONET_ALL))
    for f in (shipped.BASE_HARMONIZER, shipped.SYCONET_ALL):
        assert f.is_file()


def test_static_augmentation(runs, mini_data, tmp_path, monkeypatch):
    train_main(data=str(mini_data), domains="MiniFlickr", arch="issam_test", size=32, steps=2, batch_size=2,
               device="cpu", augment=f"static:2:{runs / 'syconet_all.safetensors'}", out=str(tmp_path / "s.safetensors"))
    assert checkpoint.read_meta(tmp_path / "s.safetensors")["augment"].startswith("static:2:")
    # the generated set is checked against its memory budget before anything is generated
    from domains.dataset import HarmonyDataset
    ds = HarmonyDataset(mini_data, "MiniFlickr", "train", size=32)
    monkeypatch.setenv("HARMONY_STATIC_MB", "0.01")
    with pytest.raises(InputError, match="need .* MB, over HARMONY_STATIC_MB"):
        A.StaticAugmented(ds, runs / "syconet_all.safetensors", k=2)


def test_issam_residual_output_starts_at_identity():
    m = create("issam64").eval()
    assert m.cfg.output == "residual"
    x = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 10:40, 10:40] = 1
    assert torch.allclose(m(x, mask), x, atol=1e-5)
    with pytest.raises(ValueError, match="fusion or residual"):
        create("issam_test", output="sum")


def test_finetune_on_real_ihd_layout(runs, ihd_data, tmp_path):
    out = tmp_path / "issam_HFlickr.safetensors"
    finetune(domain="HFlickr", data=str(ihd_data), base=str(runs / "issam_test_all.safetensors"), augment="ct",
             out=str(out), steps=2, batch_size=2, device="cpu")
    _, md = load(out)
    assert md["domains"] == ["HFlickr"] and md["augment"] == "ct"


def test_gan_loss_gradients_are_separated():
    """One optimizer, two players: the critic's gradient comes from its own term only, and the
    harmonizer's from the reconstruction + adversarial terms only."""
    from harmonizers.train import HarmonizerLoss
    torch.manual_seed(0)
    lm = HarmonizerLoss(create("rainnet_test"), gan_weight=0.5).eval()  # no dropout: repeatable outputs
    batch = {"composite": torch.rand(2, 3, 32, 32), "real": torch.rand(2, 3, 32, 32),
             "mask": (torch.rand(2, 1, 32, 32) > 0.5).float()}
    res = lm(batch)
    assert set(res) == {"loss", "rec", "g_adv", "d"}
    res["loss"].backward()
    got = {k: p.grad.clone() for k, p in lm.critic.named_parameters()}
    lm.zero_grad()
    with torch.no_grad():
        out = lm.model(batch["composite"], batch["mask"])
    d_only = (lm.critic(batch["real"], batch["mask"]) - 1).pow(2).mean() + lm.critic(out, batch["mask"]).pow(2).mean()
    d_only.backward()
    for k, p in lm.critic.named_parameters():
        assert torch.allclose(got[k], p.grad, rtol=1e-4, atol=1e-12), k  # critic grads are ~1e-6
    lm.zero_grad()
    out = lm.model(batch["composite"], batch["mask"])  # what the harmonizer should receive:
    frozen = {k: v.detach() for k, v in lm.critic.named_parameters()}
    g_adv = (torch.func.functional_call(lm.critic, frozen, (out, batch["mask"])) - 1).pow(2).mean()
    ((out - batch["real"]).abs().mean() * 255 + 0.5 * g_adv).backward()
    assert all(p.grad is None or not p.grad.any() for p in lm.critic.parameters())
    want = {k: p.grad.clone() for k, p in lm.model.named_parameters()}
    lm.zero_grad()
    lm(batch)["loss"].backward()
    for k, p in lm.model.named_parameters():
        assert torch.allclose(want[k], p.grad, rtol=1e-4, atol=1e-9), k


def test_gan_training_saves_harmonizer_only(mini_data, tmp_path):
    from common import checkpoint
    out = tmp_path / "r.safetensors"
    train_main(data=str(mini_data), arch="rainnet_test", size=32, steps=2, batch_size=2, device="cpu", out=str(out),
           gan_weight=1.0)
    tensors, meta = checkpoint.load(out, kind="harmonizer")
    assert meta["gan_weight"] == 1.0 and not any(k.startswith("critic.") for k in tensors)
    load(out)  # a plain harmonizer
    last, _ = checkpoint.load(out.with_name("r.last.safetensors"))
    assert any(k.startswith("model.critic.") for k in last)  # resume keeps the critic
    with pytest.raises(InputError, match="gan_weight"):
        train_main(data=str(mini_data), arch="rainnet_test", size=32, steps=1, out=str(tmp_path / "x.safetensors"),
               gan_weight=-1.0)


def test_validation_holds_out_training_photos(mini_data, tmp_path):
    from domains.dataset import fingerprint, load_samples
    out = tmp_path / "v.safetensors"
    train_main(data=str(mini_data), arch="issam_test", size=32, steps=2, batch_size=2, device="cpu", out=str(out),
               val_every=1, val_fraction=0.25)
    assert "fMSE" in checkpoint.read_meta(out.with_name("v.best.safetensors"))["val"]
    # trained on the training split minus the held-out photos
    assert checkpoint.read_meta(out)["data_fingerprint"] != fingerprint(load_samples(mini_data, "all", "train"))


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


def test_training_with_regrade(mini_data, tmp_path):
    out = tmp_path / "h.safetensors"
    train_main(data=str(mini_data), arch="issam_test", size=32, steps=2, batch_size=2, device="cpu", out=str(out),
               augment="lut", regrade=0.5)
    _, meta = checkpoint.load(out, kind="harmonizer")
    assert meta["regrade"] == 0.5 and meta["augment"] == "lut"
    # the loss re-grades what the network sees and what it is scored against, in training only
    from harmonizers.train import HarmonizerLoss
    net = create("issam_test")
    seen = []
    net.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    loss = HarmonizerLoss(net, regrade=A.Regrade(1.0, n=8, dim=9))
    g = torch.Generator().manual_seed(0)
    batch = {"composite": torch.rand(2, 3, 32, 32, generator=g), "real": torch.rand(2, 3, 32, 32, generator=g),
             "mask": torch.ones(2, 1, 32, 32)}
    loss.train()(batch)
    assert (seen[-1] - batch["composite"]).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    loss.eval()(batch)
    assert torch.equal(seen[-1], batch["composite"])


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
