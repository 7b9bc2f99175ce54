"""The large-data path at a small fraction: the fake iHarmony4 generator (layout, names, counts,
same bytes for a seed) and the scale script's every step, a killed training and a killed
predict_dir resuming where they stopped."""
import filecmp
import json
import importlib

import pytest

from domains.dataset import list_domains, load_samples

from .conftest import ROOT


def _bench(name, monkeypatch):
    """A bench script as a module importable by name (its process pool pickles functions by name)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module(name)


def test_fake_iharmony4_layout_counts_and_bytes(tmp_path, monkeypatch):
    fk = _bench("fake_iharmony4", monkeypatch)
    counts = fk.generate(tmp_path / "a", fraction=0.003, size=32, seed=5, workers=1)
    assert list_domains(tmp_path / "a") == ["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"]
    for name, (prefix, n_train, n_test, k, _) in fk.SUBSETS.items():
        assert counts[name] == (max(1, round(n_train * 0.003)), max(1, round(n_test * 0.003)))
        train = load_samples(tmp_path / "a", name, "train")
        test = load_samples(tmp_path / "a", name, "test")
        assert (len(train), len(test)) == counts[name]
        assert not {s.real for s in train} & {s.real for s in test}       # a real image in one split
        assert all(s.composite.name.startswith(prefix) and s.mask.name.endswith("_1.png") for s in train)
    ihd = (tmp_path / "a" / "IHD_train.txt").read_text().split()
    assert len(ihd) == sum(c[0] for c in counts.values()) and ihd[0].startswith("HCOCO/composite_images/c")
    assert fk.TOTAL_TRAIN == 65742 and fk.TOTAL_TEST == 7404
    fk.generate(tmp_path / "b", fraction=0.003, size=32, seed=5, workers=2)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for sub in ("HCOCO/composite_images", "Hday2night/masks", "HFlickr/real_images"):
        c = filecmp.dircmp(tmp_path / "a" / sub, tmp_path / "b" / sub)
        assert c.common_files and not c.diff_files and not filecmp.cmpfiles(
            tmp_path / "a" / sub, tmp_path / "b" / sub, c.common_files, shallow=False)[1]


def test_scale_script_small_fraction(tmp_path, monkeypatch):
    sc = _bench("scale", monkeypatch)
    kw = dict(fractions="0.01", work=str(tmp_path / "w"), out=str(tmp_path / "scale.md"), size=32, steps=8)
    res = sc.main(**kw, keep=True, syconet_arch="syconet_test")
    r = res[0.01]
    assert r["train killed + resumed"]["ok"] and r["predict_dir killed + resumed"]["ok"]
    assert r["predict_dir killed + resumed"]["images"] == 74 and not r["predict_dir killed + resumed"]["other files"]
    assert r["predict_dir killed + resumed"]["killed midway"] and r["train DDP 2 processes"]["ok"]
    assert all(v["rss_mb"] > 0 and v["seconds"] > 0 for v in r.values())
    assert r["loader 0w"]["items_per_s"] > 0 and r["loader 2w"]["items_per_s"] > 0
    assert "| train killed + resumed |" in (tmp_path / "scale.md").read_text()
    # a marker in the record that only a rerun of the step can replace (its timing may repeat itself)
    stored = json.loads((tmp_path / "scale.json").read_text())
    stored["0.01"]["score"] = {"seconds": -1.0, "rss_mb": -1.0, "code": -1}
    (tmp_path / "scale.json").write_text(json.dumps(stored))
    again = sc.main(**kw, only="score,index")[0.01]  # alone, on the kept tree: the other records kept
    assert again["train killed + resumed"] == r["train killed + resumed"] and again["score"]["code"] == 0
    assert again["score"]["seconds"] > 0 and json.loads((tmp_path / "scale.json").read_text())["0.01"]["score"] == again["score"]
    with pytest.raises(SystemExit, match="cannot run alone"):
        sc.main(**kw, only="train")
