"""Learning curves on the tiny benchmark: nested training subsets, a resumable record, the report."""
import json

import pytest

from common import checkpoint


def test_curve_trains_scores_resumes_and_reports(mini_data, tmp_path):
    from eval.curve import curve, train_options
    out, runs = tmp_path / "curve", tmp_path / "runs"
    res = curve(mini_data, [mini_data], [3, 0], [0], ["gct_test"], out, runs, steps=2, balance="none", log=lambda m: None)
    assert set(res["runs"]) == {"gct_test/3/seed0", "gct_test/all/seed0"}
    r3, rall = res["runs"]["gct_test/3/seed0"], res["runs"]["gct_test/all/seed0"]
    assert r3["photos"] == 3 and rall["photos"] > 3
    t = r3["tests"][str(mini_data)]
    assert set(t) == {"fMSE", "fMSE_vs_composite", "harm_rate", "real_drift", "domains"} and 0 <= t["harm_rate"] <= 1
    _, meta = checkpoint.load(runs / "curve" / "gct_test_3_s0.safetensors")
    assert meta["train_photos"] == 3 and "calibration" in json.dumps(meta)  # the gate calibrated on a hold-out
    text = (out / "report.md").read_text()
    assert "| gct_test | 3 |" in text and "| gct_test | " + str(rall["photos"]) + " |" in text
    stamp = (out / "results.json").stat().st_mtime_ns
    curve(mini_data, [mini_data], [3, 0], [0], ["gct_test"], out, runs, steps=2, balance="none", log=lambda m: None)
    assert (out / "results.json").stat().st_mtime_ns == stamp  # everything recorded: nothing trained again
    from common.io import InputError
    with pytest.raises(InputError, match="recorded for other options"):
        curve(mini_data, [mini_data], [3], [0], ["gct_test"], out, runs, steps=2, log=lambda m: None)  # balance
    more = curve(mini_data, [mini_data], [2], [0], ["gct_test"], out, runs, steps=2, balance="none", log=lambda m: None)
    assert set(more["runs"]) == {"gct_test/3/seed0", "gct_test/all/seed0", "gct_test/2/seed0"}
    assert more["header"]["sizes"] == [2, 3, 0] and "| gct_test | 2 |" in (out / "report.md").read_text()
    kw = train_options("gct64", None)
    assert "calibrate_folds" not in kw and kw["val_fraction"] == 0.1 and kw["arch"] == "gct64"
    assert train_options("issam64", 7)["steps"] == 7
