import json
import subprocess
import sys

import pytest
import torch

from common import checkpoint
from common.io import InputError, read_image
from domains.dataset import HarmonyDataset
from syconet.evaluate import reconstruction_fmse
from syconet.model import load
from syconet.train import main as train_main

from ..conftest import ROOT


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


def _rows(names):
    """A batch of flat-coloured photos with a square foreground: one colour per row."""
    n = len(names)
    real = torch.stack([torch.full((3, 16, 16), 0.0) + torch.tensor([0.2 + 0.15 * i, 0.5, 0.8 - 0.15 * i])[:, None, None]
                        for i in range(n)])
    real = real + 0.05 * torch.rand(n, 3, 16, 16)  # some spread for the transfers to match
    mask = torch.zeros(n, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    comp = real.clone()
    comp[:, :, 4:12, 4:12] = 0.5  # the "stored" composite
    return {"composite": comp, "real": real, "mask": mask, "domain": torch.arange(n), "domain_name": list(names)}


def test_fresh_pairs_replace_trained_rows_and_drop_donors():
    from syconet.train import SycoTask
    model = None  # making pairs needs no network
    batch = _rows(["MiniFlickr", "MiniCOCO", "MiniFlickr", "MiniAdobe"])
    torch.manual_seed(0)
    out = SycoTask(model, "t", ["MiniFlickr"], "fp", None, fresh=1.0, donors_only=True).prepare(batch)
    assert out["domain_name"] == ["MiniFlickr", "MiniFlickr"]  # the other domains lent references only
    for k in ("composite", "real", "mask", "domain"):
        assert len(out[k]) == 2
    inside, outside = out["mask"].bool().expand_as(out["real"]), ~out["mask"].bool().expand_as(out["real"])
    assert torch.equal(out["composite"][outside], out["real"][outside])       # the background is the photo's
    assert not torch.allclose(out["composite"][inside], out["real"][inside])   # the foreground is transferred
    assert not torch.allclose(out["composite"], batch["composite"][[0, 2]])    # not the stored composite
    kept = SycoTask(model, "t", ["MiniFlickr"], "fp", None, fresh=1.0).prepare(batch)
    assert len(kept["composite"]) == 4 and torch.equal(kept["composite"][[1, 3]], batch["composite"][[1, 3]])
    assert SycoTask(model, "t", ["MiniFlickr"], "fp", None).prepare(batch) is batch
    with pytest.raises(InputError, match="HFlickr"):
        SycoTask(model, "t", ["HFlickr"], "fp", None, fresh=1.0)


def test_fresh_finetune_trains_and_refuses_donors_alone(mini_data, tmp_path):
    out = tmp_path / "all.safetensors"
    train_main(data=str(mini_data), out=str(out), arch="syconet_test", size=32, steps=1, batch_size=4, device="cpu")
    ft = tmp_path / "fresh.safetensors"
    train_main(data=str(mini_data), domains="MiniFlickr", init=str(out), out=str(ft), size=32, steps=2,
               batch_size=4, device="cpu", fresh=1.0, donors=0.5)
    assert checkpoint.read_meta(ft)["domains"] == ["MiniFlickr"]
    for bad, msg in (({"donors": 0.5}, "needs --fresh"), ({"fresh": 1.0, "donors": 0.5, "replay": 0.5}, "excludes"),
                     ({"fresh": 1.5}, "--fresh must be in")):
        with pytest.raises(InputError, match=msg):
            train_main(data=str(mini_data), domains="MiniFlickr", init=str(out), out=str(tmp_path / "x.safetensors"),
                       size=32, steps=1, batch_size=2, device="cpu", **bad)
    assert not (tmp_path / "x.safetensors").exists()
