import json

import numpy as np
from PIL import Image

from eval.benchmark import benchmark
from eval.compose import compose

from .conftest import ASSETS


def test_benchmark_report(mini_data, tiny_zoo, tmp_path):
    res = benchmark(mini_data, tiny_zoo, tmp_path / "rep", domains="MiniFlickr,MiniDay2night")
    assert set(res["methods"]) == {"composite", "reinhard", "unified", "routed", "oracle"}
    comp = res["methods"]["composite"]["summary"]
    assert set(comp) == {"MiniFlickr", "MiniDay2night", "All"}
    assert comp["All"]["n"] == comp["MiniFlickr"]["n"] + comp["MiniDay2night"]["n"]
    assert 0 <= res["router"]["accuracy"] <= 1
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## fMSE" in text and "| All (" in text and "grid_MiniFlickr.png" in text
    assert (tmp_path / "rep" / "grid_MiniDay2night.png").is_file()
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["methods"]["oracle"]["summary"]["All"]["fMSE"] == res["methods"]["oracle"]["summary"]["All"]["fMSE"]


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
