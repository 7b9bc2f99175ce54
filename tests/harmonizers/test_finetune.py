import json

import pytest

from common import checkpoint
from common.io import InputError
from domains.finetune import main as finetune, plan
from harmonizers import augment as A
from harmonizers.models import load
from harmonizers.train import main as train_main
from syconet.train import main as syco_train


@pytest.fixture(scope="module")
def runs(mini_data, tmp_path_factory):
    """Tiny base harmonizer and SycoNets in a runs/ folder, as the real pipeline leaves them."""
    r = tmp_path_factory.mktemp("runs")
    kw = dict(data=str(mini_data), size=32, batch_size=4, device="cpu")
    train_main(arch="issam_test", out=str(r / "issam_test_all.safetensors"), steps=3, **kw)
    syco_train(arch="syconet_test", out=str(r / "syconet_all.safetensors"), steps=2, **kw)
    for d in ("MiniFlickr", "MiniDay2night"):
        syco_train(domains=d, init=str(r / "syconet_all.safetensors"), out=str(r / f"syconet_{d}.safetensors"),
                   steps=1, **{**kw, "batch_size": 2})
    return r


@pytest.mark.parametrize("row", [2, 3, 4, 5, 6, 7])
def test_table1_rows_run(runs, mini_data, row, capsys):
    finetune(domain="MiniDay2night", data=str(mini_data), arch="issam_test", row=row, runs=str(runs),
             steps=2, batch_size=2, device="cpu", regrade=0.5 if row == 4 else 0.0)
    out = runs / f"issam_test_MiniDay2night_row{row}.safetensors"
    model, md = load(out)
    assert md["domains"] == ["MiniDay2night"] and md["init"].endswith("issam_test_all.safetensors")
    want = {2: "none", 3: "ct", 4: "lut", 5: "syconet_all", 6: "syconet_MiniDay2night", 7: "syconet_MiniDay2night"}[row]
    assert want in md["augment"] and md["only_aug"] == (row == 6) and md["regrade"] == (0.5 if row == 4 else 0.0)


def test_row1_and_defaults(runs, mini_data, capsys):
    finetune(domain="MiniFlickr", data=str(mini_data), arch="issam_test", row=1, runs=str(runs))
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["row"] == 1 and res["summary"]["MiniFlickr"]["n"] > 0
    p = plan("MiniFlickr", data=str(mini_data), arch="issam_test", runs=str(runs))
    assert p["augment"].kind == "syconet" and p["augment"].ckpt.endswith("syconet_MiniFlickr.safetensors")
    assert p["init"] == str(runs / "issam_test_all.safetensors")
    with pytest.raises(InputError, match="pass --data"):
        plan("HFlickr", runs=str(runs))
    with pytest.raises(InputError, match="base model not found"):
        plan("MiniFlickr", data=str(mini_data), arch="rainnet", runs=str(runs))


def test_finetune_defaults_on_a_fresh_clone(mini_data, tmp_path, monkeypatch):
    """No runs/ yet: the shipped base harmonizer and SycoNet stand in; no data/mini4: say how to build it."""
    from common import shipped
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="data/mini4: folder not found .*make benchmark"):
        plan("MiniFlickr")
    p = plan("MiniFlickr", data=str(mini_data))
    assert p["init"] == str(shipped.BASE_HARMONIZER) and p["augment"].text == f"syconet:{shipped.SYCONET_ALL}"
    assert plan("MiniFlickr", data=str(mini_data), row=5)["augment"].text == f"syconet:{shipped.SYCONET_ALL}"
    assert A.parse("syconet") == A.AugmentSpec("syconet", ckpt=str(shipped.SYCONET_ALL), text="syconet")
    for f in (shipped.BASE_HARMONIZER, shipped.SYCONET_ALL):
        assert f.is_file()


def test_static_augmentation(runs, mini_data, tmp_path, monkeypatch):
    train_main(data=str(mini_data), domains="MiniFlickr", arch="issam_test", size=32, steps=2, batch_size=2,
               device="cpu", augment=f"static:2:{runs / 'syconet_all.safetensors'}", out=str(tmp_path / "s.safetensors"))
    assert checkpoint.read_meta(tmp_path / "s.safetensors")["augment"].startswith("static:2:")
    # the generated set is checked against its memory budget before anything is generated
    from domains.dataset import HarmonyDataset
    ds = HarmonyDataset(mini_data, "MiniFlickr", "train", size=32)
    monkeypatch.setenv("HARMONY_STATIC_MB", "0.01")
    with pytest.raises(InputError, match="need .* MB, over HARMONY_STATIC_MB"):
        A.StaticAugmented(ds, runs / "syconet_all.safetensors", k=2)


def test_finetune_on_real_ihd_layout(runs, ihd_data, tmp_path):
    out = tmp_path / "issam_HFlickr.safetensors"
    finetune(domain="HFlickr", data=str(ihd_data), base=str(runs / "issam_test_all.safetensors"), augment="ct",
             out=str(out), steps=2, batch_size=2, device="cpu")
    _, md = load(out)
    assert md["domains"] == ["HFlickr"] and md["augment"] == "ct"
