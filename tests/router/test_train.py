import pytest
import torch


def test_balanced_weights_favour_small_domains(mini_data):
    from domains.dataset import HarmonyDataset
    from router.train import balanced_weights, domain_labels
    ds = HarmonyDataset(mini_data, "all", "train", size=32)
    w = balanced_weights(domain_labels(ds), len(ds.domains))
    counts = [sum(s.domain == d for s in ds.samples) for d in ds.domains]
    assert w.mean().item() == pytest.approx(1.0)
    assert w[counts.index(min(counts))] >= w[counts.index(max(counts))]
    assert (w * torch.tensor(counts, dtype=torch.float)).std() < 1e-3 * w.sum() * max(counts)


def test_relit_rows_are_night_versions_labelled_the_night_domain(mini_data):
    from domains.dataset import HarmonyDataset
    from common.colour import luma
    from common.io import InputError
    from router.synth import Relit
    ds = HarmonyDataset(mini_data, "MiniFlickr", "train", size=32, train=False,
                        domain_names=["MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night"])
    r = Relit(ds, "MiniDay2night", list(ds.domains), seed=0)
    assert len(r) == len(ds)
    for i in range(3):
        day, night = ds[i], r[i]
        assert night["domain"] == 3 and night["domain_name"] == "MiniDay2night"
        assert torch.equal(night["mask"], day["mask"]) and night["composite"].shape == day["composite"].shape
        # 1.6-3 stops down in linear light: the picture's mean luma drops by more than half
        assert luma(night["composite"].permute(1, 2, 0).numpy()).mean() < 0.5 * luma(day["composite"].permute(1, 2, 0).numpy()).mean()
        assert 0 <= night["composite"].min() and night["composite"].max() <= 1
    assert torch.equal(r[1]["composite"], Relit(ds, "MiniDay2night", list(ds.domains), seed=0)[1]["composite"])
    assert not torch.equal(r[1]["composite"], Relit(ds, "MiniDay2night", list(ds.domains), seed=1)[1]["composite"])
    with pytest.raises(InputError, match="not one of"):
        Relit(ds, "Hday2night", list(ds.domains))
    # keys: a subset relit as the whole relights those items
    from torch.utils.data import Subset
    sub = Relit(Subset(ds, [2, 0]), "MiniDay2night", list(ds.domains), seed=0, keys=[2, 0])
    assert torch.equal(sub[0]["composite"], r[2]["composite"]) and torch.equal(sub[1]["composite"], r[0]["composite"])
    with pytest.raises(ValueError, match="1 keys for 2 items"):
        Relit(Subset(ds, [2, 0]), "MiniDay2night", list(ds.domains), keys=[2])


def test_relit_folders_are_those_with_night_rows():
    from router.train import relit_folders
    labels = torch.tensor([2, 3, 2, 2, 0, 3])
    assert relit_folders(labels, ["lm", "b", "lm", "b", "c", "b"], night=3) == {"b"}
    assert relit_folders(labels, ["lm", "b", "lm", "b", "c", "c"], night=3) == {"b", "c"}
    assert relit_folders(labels, ["one"] * 6, night=3) is None  # one folder: every day row, as before
    assert relit_folders(labels, None, night=3) is None
    assert relit_folders(torch.tensor([2, 2]), ["lm", "b"], night=3) == set()


def test_probe_with_source_balance_and_relit_rows(photos12, mini_data, tmp_path):
    import json
    import shutil

    from common import checkpoint
    from common.io import InputError
    from domains.build import MINI4_NAMES, build, composite_sources
    from domains.dataset import load_samples
    from router.train import main as rtrain
    photos = tmp_path / "photos"
    shutil.copytree(photos12, photos)
    names = sorted(p.stem for p in (photos / "images").glob("*.jpg"))
    (photos / "manifest.json").write_text(json.dumps(
        [{"name": n, "domain": MINI4_NAMES[i % 4], "source_package": f"pkg-{'abc'[i % 3]} 1.0"} for i, n in enumerate(names)]))
    data = build(photos, tmp_path / "data", seed=0, max_side=64)
    assert set(composite_sources(data).values()) == {"pkg-a", "pkg-b", "pkg-c"}
    out = tmp_path / "probe.safetensors"
    rtrain(data=str(data), out=str(out), backbone="resnet10t", size=32, batch_size=8, device="cpu",
           relight="MiniFlickr:MiniDay2night")
    fitted = checkpoint.read_meta(out)["probe"]
    train = load_samples(data, "all", "train")
    assert fitted["balance"] == "source" and fitted["relight"] == "MiniFlickr:MiniDay2night"
    assert fitted["relight_from"] == "night_folders"  # one photo folder: every day row relit
    assert fitted["n"] == len(train) + sum(s.domain == "MiniFlickr" for s in train)
    # data that names no sources (no photo manifest with source packages): domain balance
    rtrain(data=str(mini_data), out=str(tmp_path / "plain.safetensors"), backbone="resnet10t", size=32, batch_size=8,
           device="cpu")
    assert composite_sources(mini_data) == {}
    assert checkpoint.read_meta(tmp_path / "plain.safetensors")["probe"]["balance"] == "domain"
    for bad, msg in (({"relight": "MiniFlickr"}, "give DAY:NIGHT"), ({"relight": "MiniFlickr:HFlickr"}, "give DAY:NIGHT"),
                     ({"balance": "photo"}, "--balance must be one of"),
                     ({"relight_from": "labelme"}, "--relight_from must be one of"),
                     ({"relight": "MiniFlickr:MiniDay2night", "head": "finetune"}, "use it with --head probe")):
        with pytest.raises(InputError, match=msg):
            rtrain(data=str(mini_data), out=str(tmp_path / "x.safetensors"), backbone="resnet10t", size=32,
                   batch_size=8, device="cpu", steps=1, **bad)
    assert not (tmp_path / "x.safetensors").exists()


def test_head_refit_leaves_out_the_relit_rows_of_held_out_rows(mini_data, monkeypatch):
    from domains.dataset import HarmonyDataset
    from router import classifier as C, probe
    from router.train import HeadRefit
    doms = ["MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night"]
    ds = HarmonyDataset(mini_data, "all", "train", size=32, train=False, domain_names=doms)
    model = C.DomainClassifier(C.ClassifierConfig(domains=tuple(doms), backbone="resnet10t", size=32, head="probe",
                                                      use_mask=False))
    groups = [f"src{i % 3}" for i in range(len(ds))]
    refit = HeadRefit(model, {"balance": "source", "relight": "MiniFlickr:MiniDay2night", "l2": 0.1}, ds,
                      ds.samples, groups, batch_size=8)
    seen = {}
    monkeypatch.setattr(probe, "fit_head",
                        lambda m, x, y, l2, **w: seen.update(n=len(x), y=y, l2=l2, **w) or {"train_accuracy": 1.0})
    rows = torch.tensor([g != "src0" for g in groups])
    assert refit.fit(rows)["n"] == seen["n"]
    day = [i for i, s in enumerate(ds.samples) if s.domain == "MiniFlickr"]
    kept = sum(1 for i in day if groups[i] != "src0")
    assert seen["n"] == int(rows.sum()) + kept and seen["l2"] == 0.1
    assert (seen["y"][int(rows.sum()):] == 3).all()  # the relit rows are MiniDay2night's
    assert len(seen["row_weights"]) == seen["n"]


def test_head_refit_relights_only_folders_with_night_rows(mini_data, monkeypatch):
    from domains.dataset import HarmonyDataset
    from router import classifier as C, probe
    from router.train import HeadRefit
    doms = ["MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night"]
    ds = HarmonyDataset(mini_data, "all", "train", size=32, train=False, domain_names=doms)
    model = C.DomainClassifier(C.ClassifierConfig(domains=tuple(doms), backbone="resnet10t", size=32, head="probe",
                                                      use_mask=False)).eval()
    S = ds.samples
    from router.train import photo_folders
    assert photo_folders(mini_data, S) is None  # built from one folder: every day row is relit
    # folder "night" holds every night row and every other row; folder "day" the rest, no night row
    folders = ["night" if s.domain == "MiniDay2night" or i % 2 else "day" for i, s in enumerate(S)]
    groups = [f"src{i % 3}" for i in range(len(S))]
    how = {"balance": "source", "relight": "MiniFlickr:MiniDay2night", "l2": 0.1}
    every = HeadRefit(model, how, ds, S, groups, batch_size=8, folders=folders)  # no relight_from: as before
    some = HeadRefit(model, {**how, "relight_from": "night_folders"}, ds, S, groups, batch_size=8, folders=folders)
    day = [i for i, s in enumerate(S) if s.domain == "MiniFlickr"]
    lit = [i for i in day if folders[i] == "night"]
    assert every.day.tolist() == day and some.day.tolist() == lit and 0 < len(lit) < len(day)
    # the same night for the same row, relit alone or with the others
    pos = [day.index(i) for i in lit]
    assert torch.allclose(some.rfeats, every.rfeats[pos], atol=1e-5)
    seen = {}
    monkeypatch.setattr(probe, "fit_head", lambda m, x, y, l2, **w: seen.update(n=len(x), y=y) or {"train_accuracy": 1.0})
    assert some.fit()["n"] == len(S) + len(lit)
    # without its night rows, no folder is relit
    rows = torch.tensor([s.domain != "MiniDay2night" for s in S])
    assert some.fit(rows)["n"] == int(rows.sum()) and (seen["y"] != 3).all()
    assert every.fit(rows)["n"] == int(rows.sum()) + len(day)
    with pytest.raises(Exception, match="relight_from must be one of"):
        HeadRefit(model, {**how, "relight_from": "lm"}, ds, S, groups, batch_size=8)
