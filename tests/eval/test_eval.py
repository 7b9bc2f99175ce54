import json

import numpy as np
import pytest
from PIL import Image

from common.io import InputError

from eval.benchmark import benchmark
from eval.compose import compose

from ..conftest import ASSETS


def test_benchmark_report(mini_data, tiny_zoo, tmp_path):
    res = benchmark(mini_data, tiny_zoo, tmp_path / "rep", domains="MiniFlickr,MiniDay2night")
    assert set(res["methods"]) == {"composite", "reinhard", "unified", "routed", "soft", "oracle"}
    comp = res["methods"]["composite"]["summary"]
    assert set(comp) == {"MiniFlickr", "MiniDay2night", "All"}
    assert comp["All"]["n"] == comp["MiniFlickr"]["n"] + comp["MiniDay2night"]["n"]
    assert 0 <= res["router"]["accuracy"] <= 1
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## fMSE" in text and "| All (" in text and "grid_MiniFlickr.png" in text
    assert (tmp_path / "rep" / "grid_MiniDay2night.png").is_file()
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["methods"]["oracle"]["summary"]["All"]["fMSE"] == res["methods"]["oracle"]["summary"]["All"]["fMSE"]
    assert "## Harm rate" in text and "## Real-photo drift" in text
    drift = {m: res["methods"][m]["real_drift"] for m in res["methods"]}
    assert drift["composite"]["All"] == 0 and drift["reinhard"]["All"] > 1
    assert all(v >= 0 for d in drift.values() for v in d.values())
    from eval.benchmark import harm_rates
    harm = harm_rates(saved, list(saved["methods"]))
    assert harm["composite"]["All"] == 0 and 0 <= harm["routed"]["All"] <= 1
    worse = [r["fMSE"] > c["fMSE"] for r, c in zip(saved["images"]["reinhard"], saved["images"]["composite"])]
    assert harm["reinhard"]["All"] == pytest.approx(sum(worse) / len(worse))


def test_benchmark_on_foreign_domains_scores_unified_only(ihd_data, tiny_zoo, tmp_path):
    """A zoo trained on other domains (Mini* against iHarmony4's HFlickr): no routing columns, a note."""
    res = benchmark(ihd_data, tiny_zoo, tmp_path / "rep")
    assert set(res["methods"]) == {"composite", "reinhard", "unified"}
    assert res["router"] is None and "HFlickr" in res["note"]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "**Note.**" in text and "Router accuracy" not in text and "## Routing" not in text


def test_compose_real_composites(photos12, tmp_path):
    out = compose(ASSETS / "cutouts", photos12, tmp_path / "rc", n=4, seed=1, max_side=128)
    man = json.loads((out / "manifest.json").read_text())
    assert len(man["composites"]) >= 3
    for row in man["composites"]:
        img = Image.open(out / "composites" / f"{row['name']}.jpg")
        mask = np.asarray(Image.open(out / "masks" / f"{row['name']}.png"))
        assert img.size == mask.shape[::-1]
        fg = (mask > 127).mean()
        assert 0.002 < fg < 0.6


def test_tables_run_resume_and_report(mini_data, tmp_path):
    """Both table commands end to end on tiny models; a second call finds every run done."""
    from harmonizers.train import main as train_h
    from syconet.train import main as train_s

    from eval.tables import table1, table2
    runs = tmp_path / "runs"
    kw = dict(data=str(mini_data), size=32, batch_size=4, device="cpu")
    train_h(arch="issam_test", out=str(runs / "issam_test_all.safetensors"), steps=2, **kw)
    train_h(arch="rainnet_test", out=str(runs / "rainnet_test_all.safetensors"), steps=2, **kw)
    train_s(arch="syconet_test", out=str(runs / "syconet_all.safetensors"), steps=2, **kw)
    train_s(arch="syconet_test", domains="MiniDay2night", init=str(runs / "syconet_all.safetensors"),
            out=str(runs / "syconet_MiniDay2night.safetensors"), steps=1, **kw)
    t1 = dict(data=str(mini_data), domains="MiniDay2night", runs=str(runs), steps=1, batch_size=2,
              archs="issam_test,rainnet_test", device="cpu", syconet_arch="syconet_test", syconet_size=32)
    table1(out=str(tmp_path / "t1"), **t1)
    res = json.loads((tmp_path / "t1" / "results.json").read_text())
    keys = set(res["runs"])
    # iS2AM rows 1-7, rows 2 and 7 twice; RainNet rows 1, 2, 7, rows 2 and 7 twice
    assert len(keys) == 9 + 5 and "MiniDay2night/issam_test/row7/seed1" in keys
    assert all(np.isfinite(r["fMSE"]) and r["fMSE"] >= 0 for r in res["runs"].values())
    text = (tmp_path / "t1" / "report.md").read_text()
    assert "iS2AM + SycoNet(D) (ours) (2 seeds)" in text and "RainNet + finetune on D (2 seeds)" in text
    assert " ± " in text and "row 7:" in text
    stamp = (tmp_path / "t1" / "results.json").stat().st_mtime_ns
    table1(out=str(tmp_path / "t1"), **t1)  # everything recorded: nothing is trained again
    assert json.loads((tmp_path / "t1" / "results.json").read_text())["runs"].keys() == keys
    assert (tmp_path / "t1" / "results.json").stat().st_mtime_ns == stamp

    table2(data=str(mini_data), domain="MiniDay2night", out=str(tmp_path / "t2"), runs=str(runs), syconet_steps=1,
           steps=1, batch_size=2, k=3, arch="issam_test", device="cpu", syconet_arch="syconet_test", syconet_size=32)
    res2 = json.loads((tmp_path / "t2" / "results.json").read_text())["runs"]
    assert set(res2) == {"no_rec", "no_real", "move_z", "lutv2", "zc", "none"}
    assert all(r["Div"] >= 0 for r in res2.values())
    text2 = (tmp_path / "t2" / "report.md").read_text()
    assert "| 5 | z^c |" in text2 and "Div of Ours / Div w/o rec" in text2


def test_benchmark_real_composites(photos12, tiny_zoo, tmp_path):
    from eval.benchmark import real_composites
    rc = compose(ASSETS / "cutouts", photos12, tmp_path / "rc", n=3, seed=3, max_side=128)
    res = real_composites(rc / "composites", tiny_zoo, tmp_path / "rep")
    assert res["n"] == 3 and sum(res["routing"].values()) == 3
    fm = [r["routed_vs_unified"]["fMSE"] for r in res["rows"]]
    assert fm == sorted(fm, reverse=True) and all(f >= 0 for f in fm)
    for r in res["rows"]:
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4 and r["confidence"] == max(r["probabilities"].values())
    assert "| routed to | composites | share |" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "grid.png").is_file()


def test_probe_renormalise_and_prior_fit():
    import torch
    from eval.probes import StatsPrior, lab_stats, renormalise
    g = torch.Generator().manual_seed(0)
    img = 0.2 + 0.6 * torch.rand(3, 40, 50, generator=g)
    mask = torch.zeros(1, 40, 50)
    mask[:, 10:30, 15:40] = 1
    fg, bg = lab_stats(img, mask)
    same = renormalise(img, mask, fg + 5.0, alpha=0.0)
    assert (same - img).abs().max() < 1e-4  # alpha 0: the composite (up to the CIELAB round trip)
    target = np.r_[fg[:3] + np.array([4.0, -3.0, 2.0]), fg[3:] * 0.8]
    out = renormalise(img, mask, target, alpha=1.0)
    assert np.allclose(lab_stats(out, mask)[0], target, atol=0.05)  # alpha 1: the target statistics
    assert torch.equal(out * (1 - mask), img * (1 - mask))  # the background is never touched
    half = renormalise(img, mask, target, alpha=0.5)
    assert np.allclose(lab_stats(half, mask)[0], (fg + target) / 2, atol=0.05)
    # the background regression recovers an exact linear relation; the prior is the mean
    rng = np.random.default_rng(0)
    b = rng.normal(size=(30, 6))
    w = rng.normal(size=(6, 6))
    f = b @ w + 1.5
    sp = StatsPrior(ridge=1e-9).fit(f, b)
    assert np.allclose(sp.target(b[3], "bg"), f[3], atol=1e-6)
    assert np.allclose(sp.target(b[3], "prior"), f.mean(0))
    with pytest.raises(InputError, match="prior kind 'mean'"):
        sp.target(b[3], "mean")


def test_probe_strength_matches_the_scorer(mini_data, tmp_path):
    from eval.probes import strength
    from eval.score import evaluate_checkpoint, score
    from harmonizers.train import main as htrain
    ck = tmp_path / "h.safetensors"
    htrain(data=str(mini_data), arch="issam_test", size=32, steps=3, batch_size=4, lr=1e-2, device="cpu", out=str(ck))
    res = strength(data=str(mini_data), ckpt=str(ck), domains="MiniAdobe")
    want = evaluate_checkpoint(ck, mini_data, "MiniAdobe")["summary"]["MiniAdobe"]["fMSE"]
    comp = score(mini_data, lambda x, m: x, "MiniAdobe").summary()["MiniAdobe"]["fMSE"]
    r = res["MiniAdobe"]
    assert abs(r["fMSE_model"] - want) < 1e-3 * want and abs(r["fMSE_composite"] - comp) < 1e-3 * comp
    assert r["fMSE_model"] != r["fMSE_composite"]  # the model changed something
    assert r["fMSE_beta_star"] <= min(r["fMSE_model"], r["fMSE_composite"]) + 1e-3


def test_probe_colour_features_and_separability(mini_data):
    import torch
    from domains.transfer import rgb_to_lab
    from eval.probes import _fit_linear, colour_features, separability
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 24, 32, generator=g)
    mask = torch.zeros(1, 24, 32)
    mask[:, 4:16, 8:24] = 1
    f = colour_features(img, mask)
    assert f.shape == (49,) and np.isfinite(f).all()
    fg_lab = rgb_to_lab(img.permute(1, 2, 0)[mask[0] > 0.5].double().numpy())
    assert np.allclose(f[:3], fg_lab.mean(0), atol=1e-3) and f[-1] == np.float32(mask.mean())
    # a foreground quantised to 8 levels per channel leaves most 8-bit levels between its extremes empty
    q = img.clone()
    q[:, 4:16, 8:24] = (q[:, 4:16, 8:24] * 7).round() / 7
    assert (colour_features(q, mask)[42:45] > 0.9).all() and (f[42:45] < 0.9).all()
    # the fitter separates separable classes
    x = torch.cat([torch.randn(30, 5, generator=g) + 4 * torch.eye(5)[k] for k in range(3)])
    y = torch.arange(3).repeat_interleave(30)
    assert (_fit_linear(x, y, 3)(x).argmax(1) == y).float().mean() == 1.0
    res = separability(data=str(mini_data), n=24, size=32)
    assert res["n_train"] == 24 and res["n_fresh"] == 8
    assert all(0 <= res[f"accuracy_{k}"] <= 1 for k in ("train", "fresh", "test"))
    assert sum(sum(r.values()) for r in res["confusion_test"].values()) == res["n_test"]


def test_scorer_pred_dir(mini_data, tmp_path):
    import subprocess
    import sys

    from common.io import read_image, write_image
    from domains.dataset import load_samples

    from ..conftest import ROOT
    samples = load_samples(mini_data, "MiniDay2night", "test")
    pred = tmp_path / "pred"
    for s in samples[:-1]:  # perfect results: the real images, named by the composite's stem
        write_image(read_image(s.real), pred / f"{s.composite.stem}.png")
    cmd = [sys.executable, "-m", "eval.score", "--data", str(mini_data), "--domains", "MiniDay2night",
           "--pred", str(pred), "--json", str(tmp_path / "r.json")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "1 prediction(s) missing" in r.stderr and samples[-1].composite.stem in r.stderr
    write_image(read_image(samples[-1].real), pred / f"{samples[-1].composite.stem}.jpg")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["summary"]["MiniDay2night"]["fMSE"] < 5  # PNG exact, one JPEG: near zero
    base = subprocess.run([sys.executable, "-m", "eval.score", "--data", str(mini_data), "--domains", "MiniDay2night",
                           "--pred", "composite"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert base.returncode == 0 and "| MiniDay2night |" in base.stdout


def test_routing_sources_leaves_each_source_out(photos12, tmp_path):
    import shutil

    from domains.build import MINI4_NAMES, build
    from eval.probes import routing_sources, source_of
    from router.train import main as rtrain
    assert [source_of(p) for p in ("blender-data 3.4.1+dfsg-2 (debian)", "gcompris-qt-data_4.1-1_all.deb",
                                   "scikit_image-0.26.0-cp311-cp311-manylinux_2_28_x86_64.whl", "lomiri-wallpapers")] == \
        ["blender-data", "gcompris-qt-data", "scikit_image", "lomiri-wallpapers"]
    photos = tmp_path / "photos"
    shutil.copytree(photos12, photos)
    names = sorted(p.stem for p in (photos / "images").glob("*.jpg"))
    rows = [{"name": n, "domain": MINI4_NAMES[i % 4], "source_package": ["pkg-a 1.0 (debian)", "pkg-b_2.1_all.deb"][i % 2]}
            for i, n in enumerate(names)]
    (photos / "manifest.json").write_text(json.dumps(rows))
    data = build(photos, tmp_path / "data", seed=0, max_side=64)
    ckpt = tmp_path / "probe.safetensors"
    rtrain(data=str(data), out=str(ckpt), backbone="resnet10t", size=32, batch_size=8, device="cpu")
    res = routing_sources(data=str(data), ckpt=str(ckpt), device="cpu")
    n = {(d, s): len((data / d / f"{d}_{s}.txt").read_text().split()) for d in MINI4_NAMES for s in ("train", "test")}
    assert set(res["sources"]) == {"pkg-a", "pkg-b"}
    assert sum(r["composites"] for r in res["sources"].values()) == sum(n.values())
    # each source holds the composites of its photos' domains only (a: 1st and 3rd domain, b: 2nd and 4th)
    assert {d for d, k in res["sources"]["pkg-a"]["domains"].items() if k} == {MINI4_NAMES[0], MINI4_NAMES[2]}
    pooled = sum(r["accuracy"] * r["composites"] for r in res["sources"].values()) / sum(n.values())
    assert res["accuracy"] == pytest.approx(pooled)
    # a source's domains never seen in training cannot be predicted: every answer is wrong
    assert res["accuracy"] == 0.0
    with pytest.raises(InputError, match="refits a probe head"):
        ft = tmp_path / "ft.safetensors"
        rtrain(data=str(data), out=str(ft), backbone="resnet10t", size=32, steps=1, batch_size=4, device="cpu",
               head="finetune")
        routing_sources(data=str(data), ckpt=str(ft), device="cpu")
