"""eval.real: where a zoo acts on real composites and real photos, with independent references."""
import json

import numpy as np
import pytest

from common.io import InputError
from eval.compose import compose
from eval.real import change, colour_compatibility, evaluate

from ..conftest import ASSETS


def test_change_is_the_mean_absolute_change_inside_the_mask():
    x = np.zeros((4, 4, 3), np.float32)
    out = x.copy()
    out[:2] += 10 / 255                       # rows 0-1 move by 10 levels
    m = np.zeros((4, 4), np.float32)
    m[:2, :2] = 1                             # inside the mask: all moved
    assert change(out, x, m) == pytest.approx(10.0, abs=1e-4)
    m[:] = 0
    m[2:, :] = 1                              # inside the mask: none moved
    assert change(out, x, m) == pytest.approx(0.0)


def test_colour_compatibility_is_zero_for_one_distribution_and_one_for_disjoint():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, (64, 64, 3)).astype(np.float32)
    m = np.zeros((64, 64), np.float32)
    m[:, ::2] = 1                             # both sides draw from one distribution
    assert colour_compatibility(x, m) < 0.05
    y = x.copy()
    y[:, ::2] = [1.0, 0.0, 0.0]               # a red foreground on a grey-ish background
    y[:, 1::2] = [0.0, 0.0, 1.0]
    assert colour_compatibility(y, m) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def composites(photos12, tmp_path_factory):
    return compose(ASSETS / "cutouts", photos12, tmp_path_factory.mktemp("rc") / "rc", n=3, seed=5, max_side=128)


def test_evaluate_reports_change_drift_selectivity_and_sheets(detector_zoo, composites, photos12, tmp_path):
    res = evaluate([str(composites)], [str(photos12)], detector_zoo, tmp_path / "rep", sheet_rows=2, max_height=64)
    comp, phot = res["sets"]["composites_rc"]["summary"], res["sets"][f"photos_{photos12.name}"]["summary"]
    assert comp["images"] == 3 and phot["images"] == 12
    for lab in ("default", "unified", "ungated"):
        assert comp[lab]["change"] >= 0 and 0 <= comp[lab]["score_lowered"] <= 1
    # ungated is the default mode's whole change: never less than the gated one on average
    assert comp["ungated"]["change"] >= comp["default"]["change"] - 1e-6
    assert "gate" not in comp["ungated"] and 0 <= comp["default"]["gate"] <= 1
    sel = res["selectivity"]["default"]
    assert sel == pytest.approx(comp["default"]["change"] / max(phot["default"]["change"], 1e-6))
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["sets"]["composites_rc"]["images"][0]["default"]["change"] >= 0
    assert 0 <= res["auc"]["composites_rc"] <= 1
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Selectivity" in text and "sheet_composites_rc.png" in text
    from PIL import Image
    sheet = Image.open(tmp_path / "rep" / comp["sheet"])
    assert sheet.height > 2 * 64                  # two rows of the composite and its three results
    with pytest.raises(InputError, match="already holds"):
        evaluate([str(composites)], [], detector_zoo, tmp_path / "rep")
