import json

import pytest

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


def test_benchmark_scores_the_gated_default_when_the_zoo_has_a_detector(mini_data, detector_zoo, tmp_path):
    import shutil

    from router.detector import Detector, Gate
    res = benchmark(mini_data, detector_zoo, tmp_path / "rep", domains="MiniFlickr")
    assert "default" in res["methods"] and res["ranked_by"] == "default"
    # a zoo whose gate is shut for every score below 0.999: its default is the composite, image for image
    shut = tmp_path / "shut"
    shutil.copytree(detector_zoo, shut)
    det = Detector.load(shut / "detector.safetensors")
    det.gate = Gate(0.999, 1.0)
    det.save(shut / "detector.safetensors", overwrite=True)
    res = benchmark(mini_data, shut, tmp_path / "rep_shut", domains="MiniFlickr")
    comp = {r["name"]: r["fMSE"] for r in res["images"]["composite"]}
    assert {r["name"]: r["fMSE"] for r in res["images"]["default"]} == comp
    assert res["methods"]["default"]["real_drift"]["All"] == 0


def test_benchmark_scores_the_methods_asked_for(mini_data, detector_zoo, tmp_path):
    """--methods: the composite and those named (each as in the full run, routing still measured);
    a method this zoo cannot score is refused by name before anything is written."""
    full = benchmark(mini_data, detector_zoo, tmp_path / "all", domains="MiniFlickr")
    some = benchmark(mini_data, detector_zoo, tmp_path / "some", domains="MiniFlickr", methods="soft,default")
    assert list(some["methods"]) == ["composite", "soft", "default"] and some["ranked_by"] == "default"
    for m in some["methods"]:
        assert some["methods"][m]["summary"] == full["methods"][m]["summary"]
    assert some["router"] == full["router"]
    from eval.benchmark import main
    with pytest.raises(InputError, match="--methods: paint cannot be scored"):
        main(data=str(mini_data), zoo=str(detector_zoo), out=str(tmp_path / "bad"), methods="default,paint")
    assert not (tmp_path / "bad").exists()


def test_benchmark_runs_the_models_in_inference_mode(mini_data, tiny_zoo, tmp_path, monkeypatch):
    """No autograd graph is kept while the zoo runs over a test split."""
    import torch

    import eval.benchmark as B
    seen, real = [], B._run_methods
    monkeypatch.setattr(B, "_run_methods", lambda *a, **k: seen.append(torch.is_inference_mode_enabled()) or real(*a, **k))
    benchmark(mini_data, tiny_zoo, tmp_path / "rep", domains="MiniFlickr", methods="unified")
    assert seen and all(seen)
