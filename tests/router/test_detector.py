"""The composite detector: features, the trees against scikit-learn, the gate, training, files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.io import InputError
from router.detect import calibrate, items, roc_auc, source_folds, train, weights
from router.detector import Detector, Gate, _working, feature_names, features


def _texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.6, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.clip(base + rng.normal(0, 0.02, (h, w, 3)), 0, 1).astype(np.float32)


def _disc(h, w):
    yy, xx = np.mgrid[:h, :w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 4) ** 2).astype(np.float32)


# ---- features -------------------------------------------------------------------------------------

def test_features_shape_and_finite():
    x, m = _texture(120, 160), _disc(120, 160)
    f = features(x, m)
    assert f.shape == (len(feature_names()),) and f.dtype == np.float32
    assert np.isfinite(f).all()


def test_features_are_relations_not_colours():
    """The same brightening of foreground and background leaves the fg−bg differences near 0,
    while brightening the foreground alone moves them by about the change in L."""
    x, m = _texture(128, 128), _disc(128, 128)
    names = feature_names()
    q50 = names.index("fg-bg q50 L")
    same = features(np.clip(x + 0.1, 0, 1), m)
    fg_only = features(np.clip(x + 0.1 * m[..., None], 0, 1), m)
    base = features(x, m)
    assert abs(same[q50] - base[q50]) < 0.15          # tenths of a CIELAB L unit
    assert fg_only[q50] - base[q50] > 0.5              # L rises by about 8 units → 0.8 after the 1/10 scale


def test_seam_feature_sees_a_pasted_region():
    """A region pasted from another texture leaves a discontinuity at the mask's edge."""
    h = w = 128
    m = _disc(h, w)
    photo = _texture(h, w, 0)
    pasted = m[..., None] * np.clip(_texture(h, w, 1) * 1.4, 0, 1) + (1 - m[..., None]) * photo
    seam = feature_names().index("seam L")
    assert features(pasted, m)[seam] > features(photo, m)[seam] + 0.2


def test_features_work_at_any_resolution():
    """Large inputs are brought to the working size: the features of a 4× larger copy stay close."""
    x, m = _texture(96, 128), _disc(96, 128)
    big_x, big_m = x.repeat(4, 0).repeat(4, 1), m.repeat(4, 0).repeat(4, 1)
    a, b = features(x, m), features(big_x, big_m)
    q = [i for i, n in enumerate(feature_names()) if n.startswith("fg-bg q")]
    np.testing.assert_allclose(a[q], b[q], atol=0.1)


# ---- trees, gate, AUC -----------------------------------------------------------------------------

def test_trees_equal_scikit_learn_decision_function():
    """The NumPy trees give scikit-learn's own decision function (an independent reference)."""
    from router.detect import fit_trees
    sk = pytest.importorskip("sklearn.ensemble")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.3, 300) > 0.5).astype(int)
    t = fit_trees(x, y, np.ones(300), trees=25, depth=3, seed=1)
    ref = sk.GradientBoostingClassifier(n_estimators=25, max_depth=3, learning_rate=0.05, subsample=0.8,
                                        random_state=1).fit(x, y, sample_weight=np.ones(300))
    z = rng.normal(size=(50, 6))
    np.testing.assert_allclose(t.logit(z), ref.decision_function(z), atol=1e-9)


def test_gate_is_monotone_and_clamped():
    g = Gate(0.3, 0.7)
    p = np.linspace(0, 1, 201)
    s = g(p)
    assert np.all(np.diff(s) >= 0)
    assert g(0.0) == 0.0 and g(0.3) == 0.0 and g(0.7) == 1.0 and g(1.0) == 1.0
    assert 0 < g(0.5) < 1 and abs(g(0.5) - 0.5) < 1e-12      # smoothstep's midpoint
    with pytest.raises(ValueError, match="lo < hi"):
        Gate(0.6, 0.4)


def test_calibrate_gives_composites_the_most_within_the_photo_budget():
    rng = np.random.default_rng(0)
    lm, modern = rng.beta(2, 8, 800), rng.beta(5, 3, 100)      # two kinds of photo, one scored high
    comp = rng.beta(8, 2, 500)
    g = calibrate([lm, modern], [comp], budget=0.3)
    share = np.mean([g(lm).mean(), g(modern).mean()])           # each kind weighs the same
    assert share <= 0.3 + 1e-9
    assert g(comp).mean() > 0.5
    # a larger budget never gives composites less; the grid's every gate within budget loses to it
    assert calibrate([lm, modern], [comp], budget=0.6)(comp).mean() >= g(comp).mean() - 1e-9
    for lo, hi in ((0.2, 0.5), (0.5, 0.9), (0.7, 0.8)):
        h = Gate(lo, hi)
        if np.mean([h(lm).mean(), h(modern).mean()]) <= 0.3:
            assert h(comp).mean() <= g(comp).mean() + 1e-9
    with pytest.raises(InputError, match="photos and of composites"):
        calibrate([], [comp])


def test_roc_auc_equals_scikit_learn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    pos, neg = np.round(rng.normal(1, 1, 40), 1), np.round(rng.normal(0, 1, 60), 1)
    ref = metrics.roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[pos, neg])
    assert roc_auc(pos, neg) == pytest.approx(ref, abs=1e-12)
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_source_folds_keep_a_source_in_one_fold():
    groups = [f"s{i % 7}" for i in range(100)]
    f = source_folds(groups, 3)
    for g in set(groups):
        assert len({f[i] for i, x in enumerate(groups) if x == g}) == 1
    assert set(f) == {0, 1, 2}


# ---- training on tiny fixtures and the file --------------------------------------------------------

def test_items_make_both_classes_and_weights_balance(photos12):
    its = items([str(photos12)], pastes=1.0, regions=0.5)
    sets = {it.set for it in its}
    assert sets == {"photos", "regions", "pastes"}
    w = weights(its)
    y = np.array([it.label for it in its])
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())
    for s in ("photos", "regions"):                               # sets of one class weigh the same
        assert w[[it.set == s for it in its]].sum() == pytest.approx(w[y == 0].sum() / 2)


def test_a_benchmark_gives_real_images_and_on_request_its_composites(photos12, mini_data):
    plain = items([str(photos12)], data=str(mini_data))
    assert {"data_reals"} <= {it.set for it in plain} and "data_composites" not in {it.set for it in plain}
    syn = items([str(photos12)], data=str(mini_data), synthetic=True)
    comps = [it for it in syn if it.set == "data_composites"]
    assert comps and all(it.label == 1 for it in comps)
    # held out with their photo's source, not as a source of their own
    photo_groups = {it.group for it in syn if it.set == "photos"}
    assert {it.group for it in comps} <= photo_groups
    # the benchmark's test photos are never learnt from
    import json as _json
    test = {n for d in _json.loads((mini_data / "manifest.json").read_text())["domains"].values() for n in d["photos"]["test"]}
    assert test and not any(it.set == "photos" and Path(it.image).stem in test for it in syn)


def test_extract_reads_its_cache(photos12, tmp_path, monkeypatch):
    from router import detect
    its = items([str(photos12)], pastes=0.5, regions=0.0)
    x1, kept = detect.extract(its, workers=1, cache=tmp_path / "c.npz")
    monkeypatch.setattr(detect, "_item_features", lambda it: (_ for _ in ()).throw(AssertionError("read again")))
    x2, _ = detect.extract(its, workers=1, cache=tmp_path / "c.npz")
    np.testing.assert_array_equal(x1, x2)
    assert len(kept) == len(its)


def test_train_writes_a_detector_with_a_held_out_report(tiny_detector):
    out, rep = tiny_detector
    det = Detector.load(out)
    assert 0 <= det.gate.lo < det.gate.hi <= 1
    assert "pastes vs photos" in rep["auc"] and 0 <= rep["auc"]["pastes vs photos"] <= 1
    assert json.loads(out.with_suffix(".report.json").read_text())["gate"]["lo"] == pytest.approx(det.gate.lo, abs=1e-4)
    assert det.info["held_out"]["counts"]["photos"] == 12
    x, m = _texture(64, 64), _disc(64, 64)
    p = det.score(x, m)
    assert 0 <= p <= 1 and det.strength(p) == det.gate(p)


def test_detector_round_trip_and_refusals(tiny_detector, tmp_path):
    out, _ = tiny_detector
    det = Detector.load(out)
    copy = det.save(tmp_path / "d.safetensors")
    x, m = _texture(64, 80, 3), _disc(64, 80)
    assert Detector.load(copy).score(x, m) == det.score(x, m)
    with pytest.raises(InputError, match="already exists"):
        det.save(copy)
    with pytest.raises(InputError, match="expected a 'detector'"):
        from safetensors.numpy import save_file
        bad = tmp_path / "h.safetensors"
        save_file({"w": np.zeros(1)}, str(bad), metadata={"config": json.dumps({"kind": "harmonizer", "arch": "x"})})
        Detector.load(bad)


def test_a_style_detector_trains_saves_loads_and_scores_with_its_network(photos12, tmp_path):
    from safetensors.numpy import load_file

    from router.detector import all_feature_names
    from router.style import imagenet
    style = imagenet(seed=0)                                   # random weights: no weights file in tests
    out = tmp_path / "s.safetensors"
    train(photos=[str(photos12)], out=str(out), folds=2, trees=10, workers=1, style=style,
          cache=tmp_path / "c.npz")
    det = Detector.load(out)
    assert det.style is not None and det.info["training"]["style"]
    assert det.info["held_out"]["counts"]["photos"] == 12
    x, m = _texture(64, 80, 3), _disc(64, 80)
    f = det.features(x, m)
    assert f.shape == (len(all_feature_names(True)),) == (len(feature_names()) + 128,)
    np.testing.assert_array_equal(f[:len(feature_names())], features(x, m))
    np.testing.assert_array_equal(f[len(feature_names()):], style.features(*_working(x, m)))
    assert det.score(x, m) == Detector.load(det.save(tmp_path / "copy.safetensors")).score(x, m)
    # the network travels in the file: a detector without its tensors is refused by name
    t = load_file(str(out))
    from common.checkpoint import read_meta
    meta = read_meta(out)
    from safetensors.numpy import save_file
    bad = tmp_path / "bad.safetensors"
    save_file({k: v for k, v in t.items() if not k.startswith("style.0")}, str(bad),
              metadata={"config": json.dumps(meta)})
    with pytest.raises(InputError, match="style network is incomplete"):
        Detector.load(bad)
    # the cache keeps the colour-only and the style features of the same pictures apart
    from router import detect
    its = items([str(photos12)], pastes=0.5, regions=0.0)
    a, _ = detect.extract(its, workers=1, cache=tmp_path / "c.npz")
    b, _ = detect.extract(its, workers=1, cache=tmp_path / "c.npz", style=style)
    assert a.shape[1] == len(feature_names()) and b.shape[1] == a.shape[1] + 128
    np.testing.assert_array_equal(a, b[:, :a.shape[1]])


def test_train_refuses_an_existing_output_and_one_class(tiny_detector, photos12, tmp_path):
    out, _ = tiny_detector
    with pytest.raises(InputError, match="already exists"):
        train(photos=[str(photos12)], out=str(out), folds=0, trees=2, workers=1)
    with pytest.raises(InputError, match="both photos"):
        train(photos=[str(photos12)], out=str(tmp_path / "x.safetensors"), folds=0, trees=2, pastes=0.0, workers=1)


def test_photo_folder_without_masks_is_named(tmp_path):
    (tmp_path / "p" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="no masks/ folder"):
        items([str(tmp_path / "p")])


# ---- the detector in the product: predict, score, the API, the ONNX path -----------------------------

def _cli(*args):
    import subprocess
    import sys

    from ..conftest import ROOT
    return subprocess.run([sys.executable, "-m", "router", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_predict_reports_the_score_and_applies_the_gate(detector_zoo, pair, tmp_path):
    from router.cli import predict_one
    from router.detector import Detector
    img, mask = pair
    gated = predict_one(str(img), str(mask), tmp_path / "g.png", detector_zoo, "unified", backend="torch")
    whole = predict_one(str(img), str(mask), tmp_path / "w.png", detector_zoo, "unified", backend="torch", gate=False)
    det = Detector.load(detector_zoo / "detector.safetensors")
    from common.io import read_image_array, read_mask_array
    x, m = read_image_array(img), read_mask_array(mask)
    assert gated["score"] == pytest.approx(det.score(x, m), abs=1e-4) == whole["score"]
    assert gated["gate"] == pytest.approx(det.gate(det.score(x, m)), abs=1e-4) and whole["gate"] is None
    # the gated result is the input moved by gate × the whole change (same network, strength scaled)
    from router.api import Harmonizer
    h = Harmonizer.from_zoo(detector_zoo)
    full = h.run(x, m, "unified", gate=False).output
    part = h.run(x, m, "unified", strength=max(gated["gate"], 1e-6), gate=False).output
    np.testing.assert_allclose(h.run(x, m, "unified").output, part if gated["gate"] > 0 else x, atol=1e-5)
    assert full.shape == x.shape
    # a gate of one half around this score: half the change, on top of --strength
    p = det.score(x, m)
    lo = min(max(p - 0.05, 0.0), 0.9)
    h.detector.gate = Gate(lo, lo + 0.1)
    share = h.detector.gate(p)
    assert 0 < share < 1
    r = h.run(x, m, "unified", strength=0.8)
    assert r.gate == pytest.approx(share)
    np.testing.assert_allclose(r.output, h.run(x, m, "unified", strength=0.8 * share, gate=False).output, atol=1e-5)
    assert np.abs(r.output - full).max() > 1e-3 or np.abs(full - x).max() < 1e-6


def test_zero_gate_leaves_the_input_as_it_is(detector_zoo, pair):
    from common.io import read_image_array, read_mask_array
    from router.api import Harmonizer
    h = Harmonizer.from_zoo(detector_zoo)
    h.detector.gate = Gate(0.999, 1.0)                          # everything below 0.999: leave it
    x, m = read_image_array(pair[0]), read_mask_array(pair[1])
    r = h.run(x, m)
    assert r.gate == 0.0 and np.array_equal(r.output, x) and "harmonize" not in r.seconds


def test_score_command_api_and_errors(detector_zoo, tiny_zoo, pair, tmp_path):
    from router.api import Harmonizer
    img, mask = pair
    r = _cli("score", img, mask, "--zoo", detector_zoo)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert set(row) == {"image", "mask", "score", "gate", "seconds"} and 0 <= row["score"] <= 1
    assert row["score"] == pytest.approx(Harmonizer.from_zoo(detector_zoo).score(str(img), str(mask)), abs=1e-4)
    # the errors predict gives: a missing file, a size mismatch, a zoo without a detector
    r = _cli("score", tmp_path / "nope.jpg", mask, "--zoo", detector_zoo)
    assert r.returncode == 2 and "nope.jpg" in r.stderr and r.stderr.count("\n") == 1
    from PIL import Image
    Image.new("L", (7, 5), 255).save(tmp_path / "small.png")
    r = _cli("score", img, tmp_path / "small.png", "--zoo", detector_zoo)
    assert r.returncode == 2 and "small.png" in r.stderr
    r = _cli("score", img, mask, "--zoo", tiny_zoo)
    assert r.returncode == 2 and "no composite detector" in r.stderr
    with pytest.raises(InputError, match="no composite detector"):
        Harmonizer.from_zoo(tiny_zoo).score(str(img), str(mask))


def test_predict_gate_flag_is_checked(detector_zoo, pair, tmp_path):
    r = _cli("predict", *pair, "--zoo", detector_zoo, "--out", tmp_path / "o.png", "--gate", "maybe", "--backend", "torch")
    assert r.returncode == 2 and "--gate" in r.stderr and not (tmp_path / "o.png").exists()


def test_zoo_refuses_a_detector_that_is_not_one(detector_zoo, tmp_path):
    from router import zoo as Z
    z = tmp_path / "z"
    shutil.copytree(detector_zoo, z)
    shutil.copyfile(z / "harmonizer_unified.safetensors", z / "detector.safetensors")
    with pytest.raises(InputError, match="not one"):
        Z.read(z)
    with pytest.raises(InputError, match="not a detector"):
        Z.build(tmp_path / "z2", Z.read(detector_zoo)["classifier"], unified=z / "harmonizer_unified.safetensors",
                detector=z / "harmonizer_unified.safetensors")


def test_onnx_path_scores_and_gates_as_torch(detector_zoo, pair):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from common.io import read_image_array, read_mask_array
    from router import fast
    from router.api import Harmonizer
    fast.export(detector_zoo, overwrite=True)
    x, m = read_image_array(pair[0]), read_mask_array(pair[1])
    ours = fast.FastHarmonizer.from_zoo(detector_zoo).run(x, m, "unified")
    ref = Harmonizer.from_zoo(detector_zoo).run(x, m, "unified")
    assert ours.score == ref.score and ours.gate == ref.gate
    assert np.abs(ours.output - ref.output).max() < 2e-3
    assert fast.FastHarmonizer.from_zoo(detector_zoo).score(str(pair[0]), str(pair[1])) == pytest.approx(ref.score)


@pytest.mark.parametrize("h,w", [(3, 2000), (2000, 2), (1, 1), (8, 8)])
def test_features_of_slivers_and_tiny_images_are_finite(h, w):
    rng = np.random.default_rng(0)
    x = rng.random((h, w, 3)).astype(np.float32)
    m = np.zeros((h, w), np.float32)
    m[: max(1, h // 2), : max(1, w // 2)] = 1
    if m.all():
        m[-1, -1] = 0 if m.size > 1 else 1
    f = features(x, m)
    assert f.shape == (len(feature_names()),) and np.isfinite(f).all()
