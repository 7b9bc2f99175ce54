import pytest
import torch

from common import checkpoint
from common.io import InputError
from harmonizers import augment as A
from harmonizers.models import create, load
from harmonizers.train import fn_mse, main as train_main


def test_fn_mse_matches_formula():
    p, t = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    m = torch.zeros(2, 1, 16, 16)
    m[0, :, :4, :4] = 1  # 16 px: below min_area → the area counts as min_area, then × 3 channels
    m[1, :, :, :] = 1
    e = ((p - t) * 255).pow(2)       # the official loss sums the error over the whole image
    want = (e[0].sum() / (3 * 100) + e[1].sum() / (3 * 256)) / 2
    assert fn_mse(p, t, m, min_area=100) == pytest.approx(want.item(), rel=1e-5)


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


def test_cpu_augmenters_run_in_the_loader_and_do_not_depend_on_the_workers(mini_data, tmp_path):
    """--augment processes is made by the loader (in worker processes when there are any), under
    a per-batch seed: the same run with 0 and 2 workers draws the same pairs and the same losses."""
    import json

    from harmonizers.augment import ProcessAugmenter
    from harmonizers.train import HarmonizerTask, main
    assert ProcessAugmenter().to("cpu").in_loader and not ProcessAugmenter().to("meta").in_loader
    logs = {}
    for w in (0, 2):
        out = tmp_path / f"w{w}.safetensors"
        main(data=str(mini_data), arch="gct_test", augment="processes:0.2", steps=3, batch_size=4, size=32,
             workers=w, device="cpu", out=str(out), save_every=100)
        logs[w] = [json.loads(x)["loss"] for x in open(tmp_path / f"w{w}.log.jsonl") if '"loss"' in x]
    assert logs[0] and logs[0] == pytest.approx(logs[2], rel=1e-5)
    a, _ = checkpoint.load(tmp_path / "w0.safetensors")
    b, _ = checkpoint.load(tmp_path / "w2.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # the loader's batch carries the augmented composites; the loss module uses them as they are
    task = HarmonizerTask(create("gct_test"), ProcessAugmenter(0.0), False, ["A"], "fp", None, {})
    g = torch.Generator().manual_seed(0)
    batch = {"composite": torch.rand(4, 3, 16, 16, generator=g), "real": torch.rand(4, 3, 16, 16, generator=g),
             "mask": torch.zeros(4, 1, 16, 16)}
    batch["mask"][..., 4:12, 4:12] = 1
    out = task.prepare(dict(batch))
    assert out["augmented"].shape == batch["real"].shape and not torch.equal(out["augmented"], batch["real"])


def test_subset_and_balance_options(mini_data, tmp_path, monkeypatch):
    """--train_photos trains on that many photos (recorded); --balance weighs groups alike in the
    batches, falls back to uniform (with a warning) where the data names none; bad values refused."""
    import numpy as np

    from harmonizers import train as T
    seen = {}
    real_shaped = T.shaped
    monkeypatch.setattr(T, "shaped", lambda ds, o, seed, groups: seen.setdefault("ds", real_shaped(ds, o, seed, groups)))
    out = tmp_path / "h.safetensors"
    groups = {}
    import domains.build as B
    monkeypatch.setattr(B, "composite_collections", lambda data: groups)
    from domains.dataset import load_samples
    samples = load_samples(mini_data, "all", "train")
    groups.update({s.composite.name: ("big" if s.domain == "MiniCOCO" else "small") for s in samples})
    train_main(data=str(mini_data), arch="issam_test", out=str(out), steps=1, batch_size=2, device="cpu",
               train_photos=4, balance="collection")
    ds = seen["ds"]
    assert len({s.real for s in ds.samples}) == 4 and load(out)[1]["train_photos"] == 4
    w = np.asarray(ds.weights)
    coco = np.array([s.domain == "MiniCOCO" for s in ds.samples])
    assert abs(w[coco].sum() - 0.5) < 1e-9 and abs(w[~coco].sum() - 0.5) < 1e-9
    g = tmp_path / "g.safetensors"  # the gate's calibration weighs the same groups alike
    train_main(data=str(mini_data), arch="gct_test", out=str(g), steps=1, batch_size=2, device="cpu",
               augment="processes:0.5", calibrate_folds=2, balance="collection")
    assert load(g)[1]["calibration"]["scores"]["1.0"]["groups"] == 2
    with pytest.raises(InputError, match="--balance must be one of none, collection, source"):
        train_main(data=str(mini_data), arch="issam_test", out=str(tmp_path / "x.safetensors"), steps=1, balance="photo")
