import json

import numpy as np
import torch
import pytest

from common.io import InputError


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


def test_probe_prior_reports_fmse_and_real_photo_drift(mini_data):
    from eval.probes import prior
    from eval.score import score
    res = prior(data=str(mini_data), alphas=(0.0, 0.5), kinds="bg")
    comp = score(mini_data, lambda x, m: x, "all").summary()
    fm, drift = res["fMSE"], res["drift"]
    assert set(fm) == {"composite", "bg α=0", "bg α=0.5"} and set(drift) == {"bg α=0", "bg α=0.5"}
    for d, r in comp.items():
        assert abs(fm["composite"][d] - r["fMSE"]) < 1e-6
        assert abs(fm["bg α=0"][d] - r["fMSE"]) < 0.01 * r["fMSE"] + 0.5   # alpha 0: the composite
    assert set(drift["bg α=0"]) == set(comp)                               # every domain and All
    assert drift["bg α=0"]["All"] < 0.5 < drift["bg α=0.5"]["All"]        # only a real move moves photos


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


def test_roc_auc_against_pairwise_counting():
    import torch
    from common.io import InputError
    from eval.probes import roc_auc
    g = torch.Generator().manual_seed(0)
    score = torch.randint(0, 5, (40,), generator=g).float()   # many ties
    label = torch.randint(0, 2, (40,), generator=g)
    pos, neg = score[label == 1].tolist(), score[label == 0].tolist()
    want = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert abs(roc_auc(score, label) - want) < 1e-12
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([0, 1])) == 1.0
    with pytest.raises(InputError, match="positives and negatives"):
        roc_auc(torch.ones(3), torch.ones(3, dtype=torch.long))


def test_realness_scores_held_out_photos(mini_data):
    from domains.dataset import load_samples
    from eval.probes import realness
    res = realness(data=str(mini_data), folds=2, size=32)
    samples = load_samples(mini_data, "all", "train")
    assert res["composites"] == len(samples) and res["photos"] == len({s.real for s in samples})
    assert res["features"] == 39 and 0 <= res["auc"] <= 1 and 0 <= res["accuracy"] <= 1
    assert set(res["per_domain"]) == {s.domain for s in samples}
    assert realness(data=str(mini_data), folds=2, size=32, fg_chroma=True)["features"] == 41
    with pytest.raises(InputError, match="folds"):
        realness(data=str(mini_data), folds=1)
    with pytest.raises(InputError, match="gct or classifier"):
        realness(data=str(mini_data), features="pixels")


def test_realness_with_classifier_features(mini_data, tmp_path):
    from eval.probes import realness
    from router.classifier import ClassifierConfig, DomainClassifier, meta
    from common import checkpoint
    model = DomainClassifier(ClassifierConfig(domains=("MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night"),
                                              backbone="resnet10t", size=32, use_mask=False, head="probe")).eval()
    ck = checkpoint.save(tmp_path / "c.safetensors", model.state_dict(), meta(model, "fp"))
    res = realness(data=str(mini_data), folds=2, features="classifier", ckpt=str(ck))
    assert res["features"] == model.pooled(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)).shape[1]
    assert 0 <= res["auc"] <= 1


def test_routing_sources_leaves_each_source_out(photos12, tmp_path):
    import shutil

    from domains.build import MINI4_NAMES, build, source_of
    from eval.probes import routing_sources
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


def test_modes_scores_each_fold_with_the_models_that_left_it_out(mini_data, tmp_path):
    """The unified row equals the cross-fitted calibration scores of the fold models at the zoo's
    scale (computed independently, by harmonizers.train.calibration_raw); every mode sees every
    training composite once; a missing fold model is named."""
    from common import checkpoint
    from domains.build import MINI4_NAMES
    from domains.dataset import load_samples, split_folds, train_val
    from eval.probes import modes
    from harmonizers.models import load
    from harmonizers.train import calibration_raw, main, summarise
    from router import zoo as Z
    from router.classifier import ClassifierConfig, DomainClassifier, meta
    kw = dict(data=str(mini_data), steps=2, batch_size=4, augment="processes:0.5", device="cpu", workers=0,
              calibrate_folds=2)
    main(arch="gct_test", out=str(tmp_path / "g_all.safetensors"), **kw)
    samples = load_samples(mini_data, "all", "train")
    doms = [d for d in sorted({s.domain for s in samples})  # domains with photos on both sides of both folds
            if all(all(split_folds([s for s in samples if s.domain == d], 2, k)) for k in range(2))]
    assert doms
    for d in doms:
        main(domains=d, init=str(tmp_path / "g_all.safetensors"), out=str(tmp_path / f"g_{d}.safetensors"), **kw)
    tensors, m = checkpoint.load(tmp_path / "g_all.safetensors")  # a scale that acts, whatever calibration chose
    checkpoint.save(tmp_path / "u.safetensors", {**tensors, "net.strength": torch.tensor(0.7)}, m)
    clf = DomainClassifier(ClassifierConfig(domains=tuple(MINI4_NAMES), backbone="resnet10t", size=32,
                                            use_mask=False, head="probe")).eval()
    zoo = Z.build(tmp_path / "zoo", checkpoint.save(tmp_path / "c.safetensors", clf.state_dict(), meta(clf, "fp")),
                  domains={d: str(tmp_path / f"g_{d}.safetensors") for d in doms}, unified=tmp_path / "u.safetensors")
    res = modes(data=str(mini_data), zoo=str(zoo), runs=str(tmp_path), family="g", folds=2, batch_size=4)
    assert res["composites"] == len(samples) and res["photos"] == len({s.real for s in samples})
    raws = []
    for k in range(2):
        model, _ = load(tmp_path / f"g_all.fold{k}.safetensors")
        raws.append(calibration_raw(model, train_val(mini_data, "all", model.size, fold=(k, 2))[1], grid=(0.0, 0.7)))
    ref = summarise(raws)
    assert res["modes"]["unified"]["fMSE"] == pytest.approx(ref[0.7]["fMSE"], rel=1e-5)
    assert res["modes"]["unified"]["drift"] == pytest.approx(ref[0.7]["drift"], rel=1e-5)
    assert res["fMSE_composite"] == pytest.approx(ref[0.0]["fMSE"], rel=1e-5)
    assert set(res["modes"]) == {"unified", "routed", "soft", "oracle"}
    assert all(0 <= r["harm_rate"] <= 1 and r["drift"] >= 0 for r in res["modes"].values())
    # the zoo lacks some domains' models: their oracle falls back to the unified model, never to nothing
    assert set(doms) != {s.domain for s in samples}
    assert all(r["fMSE"] < 2 * res["fMSE_composite"] for r in res["modes"].values())
    (tmp_path / f"g_{doms[0]}.fold1.safetensors").unlink()
    with pytest.raises(InputError, match=rf"g_{doms[0]}.fold1.safetensors: no fold model"):
        modes(data=str(mini_data), zoo=str(zoo), runs=str(tmp_path), family="g", folds=2)


def test_probe_frontier_ends_are_the_model_and_the_prior(mini_data, tmp_path):
    """Each axis of the grid alone is what the scorer and the prior probe read for that estimator."""
    from eval.probes import frontier, prior
    from eval.score import evaluate_checkpoint
    from harmonizers.train import main as htrain
    ck = tmp_path / "g.safetensors"
    htrain(data=str(mini_data), arch="gct_test", steps=3, batch_size=4, lr=1e-2, device="cpu", out=str(ck))
    res = frontier(data=str(mini_data), ckpt=str(ck), a="0,1", b="0,1")
    grid = {(r["a"], r["b"]): r for r in res["grid"]}
    assert set(grid) == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}
    none = grid[0.0, 0.0]
    assert abs(none["fMSE"] - res["composite"]) < 1e-6 and none["harm_rate"] == 0 and none["drift"] == 0
    model = evaluate_checkpoint(ck, mini_data)["summary"]["All"]["fMSE"]
    assert abs(grid[1.0, 0.0]["fMSE"] - model) < 1e-3 * model
    p = prior(data=str(mini_data), alphas=(1.0,), kinds="bg")
    assert abs(grid[0.0, 1.0]["fMSE"] - p["fMSE"]["bg α=1"]["All"]) < 1e-3 * res["composite"]
    assert abs(grid[0.0, 1.0]["drift"] - p["drift"]["bg α=1"]["All"]) < 1e-3
    assert grid[1.0, 1.0]["drift"] > 0


def test_content_prior_learns_colour_from_content_and_picks_its_penalty():
    """Foreground colours that follow what the foreground shows are predicted from it, on photos held
    out of the fit; with content unrelated to colour the cross-validation picks a strong penalty."""
    from eval.probes import CONTENT_RIDGES, StatsPrior
    rng = np.random.default_rng(1)
    n = 200
    content, bg = rng.normal(size=(n, 40)), rng.normal(size=(n, 6))
    fg = np.c_[content[:, :3] * 10 + 50, np.abs(rng.normal(size=(n, 3))) + 5]
    folds = np.arange(n) % 5
    tr, te = slice(0, 150), slice(150, None)
    sp = StatsPrior().fit(fg[tr], bg[tr], content[tr], folds[tr])
    pred = np.array([sp.target(b, "content", c) for b, c in zip(bg[te], content[te])])
    err = np.linalg.norm(pred[:, :3] - fg[te, :3], axis=1).mean()
    base = np.linalg.norm(sp.target(bg[0], "prior")[:3] - fg[te, :3], axis=1).mean()
    assert err < 0.1 * base and sp.content_ridge in CONTENT_RIDGES
    noise = StatsPrior().fit(fg[tr], bg[tr], rng.normal(size=(150, 40)), folds[tr])
    assert noise.content_ridge > sp.content_ridge
    with pytest.raises(InputError, match="needs the foreground's grey-level features"):
        StatsPrior().fit(fg, bg).target(bg[0], "content", content[0])


def test_probe_prior_content_kind_runs_with_a_probe_classifier(mini_data, tmp_path):
    from common import checkpoint
    from eval.probes import prior
    from router import classifier as C
    doms = ("MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night")
    clf = C.DomainClassifier(C.ClassifierConfig(domains=doms, backbone="resnet10t", size=32, head="probe",
                                                use_mask=False))
    ck = checkpoint.save(tmp_path / "c.safetensors", clf.state_dict(), C.meta(clf, "fp"))
    res = prior(data=str(mini_data), alphas=(0.0,), kinds="bg,content", ckpt=str(ck))
    assert set(res["mean_error"]) == {"bg", "content"}
    assert all(np.isfinite(v) and v >= 0 for r in res["mean_error"].values() for v in r.values())
    comp = res["fMSE"]["composite"]
    for d in comp:  # alpha 0 leaves every composite as it is
        assert abs(res["fMSE"]["content α=0"][d] - comp[d]) < 0.01 * comp[d] + 0.5
    ft = C.DomainClassifier(C.ClassifierConfig(domains=doms, backbone="resnet10t", size=32))
    bad = checkpoint.save(tmp_path / "f.safetensors", ft.state_dict(), C.meta(ft, "fp"))
    with pytest.raises(InputError, match="a finetune classifier"):
        prior(data=str(mini_data), alphas=(0.0,), kinds="content", ckpt=str(bad))
