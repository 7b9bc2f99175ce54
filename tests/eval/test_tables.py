import json

import numpy as np


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
    # the resolved configuration, not a rebuilt command: every option, and the recipes of the prerequisites
    from common import recipes
    cfg = res["header"]["config"]
    assert cfg["table"] == "table1" and cfg["options"]["steps"] == 1 and cfg["options"]["archs"] == "issam_test,rainnet_test"
    assert cfg["recipes"]["syconet_domain"] == recipes.kwargs("syconet_domain")
    assert "| `--syconet_size` | `32` |" in text and "`syconet_all` {" in text
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
