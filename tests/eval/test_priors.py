"""Foreground-statistics priors and the frontier of a harmonizer's change with them."""
import numpy as np
import torch
import pytest

from common.io import InputError


def test_probe_renormalise_and_prior_fit():
    import torch
    from eval.priors import StatsPrior, lab_stats, renormalise
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
    from eval.priors import prior
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


def test_probe_frontier_ends_are_the_model_and_the_prior(mini_data, tmp_path):
    """Each axis of the grid alone is what the scorer and the prior probe read for that estimator."""
    from eval.priors import frontier, prior
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
    from eval.priors import CONTENT_RIDGES, StatsPrior
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
    from eval.priors import prior
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

