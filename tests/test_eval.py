import json

import numpy as np
from PIL import Image

from eval.benchmark import benchmark
from eval.compose import compose

from .conftest import ASSETS


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
