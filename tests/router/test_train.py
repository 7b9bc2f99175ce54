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
    assert fitted["n"] == len(train) + sum(s.domain == "MiniFlickr" for s in train)
    # data that names no sources (no photo manifest with source packages): domain balance
    rtrain(data=str(mini_data), out=str(tmp_path / "plain.safetensors"), backbone="resnet10t", size=32, batch_size=8,
           device="cpu")
    assert composite_sources(mini_data) == {}
    assert checkpoint.read_meta(tmp_path / "plain.safetensors")["probe"]["balance"] == "domain"
    for bad, msg in (({"relight": "MiniFlickr"}, "give DAY:NIGHT"), ({"relight": "MiniFlickr:HFlickr"}, "give DAY:NIGHT"),
                     ({"balance": "photo"}, "--balance must be one of"),
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
