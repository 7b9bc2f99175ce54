"""The helper scripts under scripts/: what they write, and that the v3 pipeline runs recipes that
exist and parses as shell."""
import json
import re
import subprocess
import sys

from common import recipes
from domains.dataset import load_samples

from .conftest import ROOT


def test_benchmark_photos_exports_each_split_photo_once_with_a_mask(mini_data, tmp_path):
    out = tmp_path / "p"
    run = lambda: subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_photos.py"),  # noqa: E731
                                  "--data", str(mini_data), "--split", "test", "--out", str(out)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
    r = run()
    assert r.returncode == 0, r.stderr
    samples = load_samples(mini_data, "all", "test")
    rows = json.loads((out / "manifest.json").read_text())
    assert len(rows) == len({s.real for s in samples}) == json.loads(r.stdout)["photos"]
    for row in rows:
        img = next((out / "images").glob(row["name"] + ".*"))
        assert img.resolve() in {s.real.resolve() for s in samples}
        assert (out / "masks" / (row["name"] + ".png")).resolve().is_file()
    again = run()  # an existing output is never replaced
    assert again.returncode != 0 and "exists" in again.stderr


def test_v3_pipeline_uses_recipes_that_exist_and_parses():
    script = ROOT / "scripts" / "train_v3.sh"
    used = set(re.findall(r"common\.recipes args (\w+)", script.read_text()))
    assert used and used <= set(recipes.RECIPES), used - set(recipes.RECIPES)
    for name in ("train_v3.sh", "modern_unseen.sh"):
        assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / name)], capture_output=True).returncode == 0
    # the variables modern_unseen.sh sets are the ones train_v3.sh reads
    call = (ROOT / "scripts" / "modern_unseen.sh").read_text().split("bash scripts/train_v3.sh")[0]
    sets = set(re.findall(r"\b([A-Z_0-9]+)=\S", call[call.index("MODERN="):]))
    reads = set(re.findall(r"\$\{([A-Z_0-9]+)[:}]", script.read_text()))
    assert sets == {"MODERN", "V3_DATA", "V2_DATA", "RUNS", "MEASURE"} and sets <= reads, (sets, reads)


def _photo_folder(dst, sources):
    """A photo folder whose manifest gives each photo a package (``source_package``), bundled style."""
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    rows = []
    for i, src in enumerate(sources):
        (dst / "images" / f"p{i}.jpg").write_bytes(b"jpg")
        (dst / "masks" / f"p{i}.png").write_bytes(b"png")
        rows.append({"name": f"p{i}", "source_package": f"{src}-1.{i}-1_all.deb", "domain": "MiniCOCO"})
    (dst / "manifest.json").write_text(json.dumps(rows))
    return rows


def test_holdout_split_keeps_a_package_in_one_split_and_the_largest_in_train(monkeypatch, tmp_path):
    hs = _script("holdout_split", monkeypatch)
    sources = ["big"] * 3 + ["alpha"] * 2 + ["beta"] * 2 + ["gamma"]
    rows = _photo_folder(tmp_path / "photos", sources)
    hs.main(str(tmp_path / "photos"), out=str(tmp_path / "all"), test_share=1.0)
    train = json.loads((tmp_path / "all" / "train" / "photos" / "manifest.json").read_text())
    test = json.loads((tmp_path / "all" / "test" / "photos" / "manifest.json").read_text())
    assert {r["source"] for r in train} == {"big"} and {r["source"] for r in test} == {"alpha", "beta", "gamma"}
    assert sorted(r["name"] for r in train + test) == sorted(r["name"] for r in rows)
    for split, part in (("train", train), ("test", test)):
        for r in part:  # each row's files are links to the originals
            link = tmp_path / "all" / split / "photos" / "images" / f"{r['name']}.jpg"
            assert link.is_symlink() and link.resolve() == (tmp_path / "photos" / "images" / f"{r['name']}.jpg").resolve()
        assert len(list((tmp_path / "all" / split / "photos" / "masks").iterdir())) == len(part)
    assert not (tmp_path / "all" / "test" / "composites").exists()  # no composites given: none written
    hs.main(str(tmp_path / "photos"), out=str(tmp_path / "none"), test_share=0.0)
    assert not json.loads((tmp_path / "none" / "test" / "photos" / "manifest.json").read_text())
    hs.main(str(tmp_path / "photos"), out=str(tmp_path / "half"), test_share=0.5)
    halves = [{r["source"] for r in json.loads((tmp_path / "half" / s / "photos" / "manifest.json").read_text())}
              for s in ("train", "test")]
    assert not halves[0] & halves[1] and "big" in halves[0]
    import zlib  # seed 0 draws by the name alone; another seed draws by seed and name, the same each time
    assert halves[1] == {n for n in ("alpha", "beta", "gamma") if zlib.crc32(n.encode()) % 1000 < 500}
    seeded = []
    for k in range(2):
        hs.main(str(tmp_path / "photos"), out=str(tmp_path / f"s{k}"), test_share=0.5, seed=7)
        seeded.append({r["source"] for r in json.loads((tmp_path / f"s{k}" / "test" / "photos" / "manifest.json").read_text())})
    assert seeded[0] == seeded[1] == {n for n in ("alpha", "beta", "gamma") if zlib.crc32(f"7:{n}".encode()) % 1000 < 500}


def _script(name, monkeypatch):
    import importlib
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module(name)


def test_zoo_table_reads_the_reports(monkeypatch):
    """The default's All fMSE against the composite's, its harm rate and the domains it makes worse;
    on real sets the change and each composite set's AUC against each photo set."""
    zt = _script("zoo_table", monkeypatch)
    img = lambda n, d, f: {"name": n, "domain": d, "fMSE": f}  # noqa: E731
    res = {"methods": {"composite": {"summary": {"A": {"fMSE": 100.0}, "B": {"fMSE": 50.0}, "All": {"fMSE": 80.0}}},
                       "default": {"summary": {"A": {"fMSE": 60.0}, "B": {"fMSE": 55.0}, "All": {"fMSE": 60.0}},
                                   "real_drift": {"All": 1.5}}},
           "images": {"composite": [img("a", "A", 100.0), img("b", "B", 50.0)],
                      "default": [img("a", "A", 60.0), img("b", "B", 55.0)]},
           "router": {"accuracy": 0.9}}
    r = zt.synthetic(res)
    assert r["fMSE"] == -0.25 and r["harm"] == 0.5 and r["worse"] == ["B"] and r["drift"] == 1.5 and r["routing"] == 0.9
    sets = {"composites_c": {"kind": "composites", "summary": {"default": {"change": 8.0}},
                             "images": [{"score": 0.9}, {"score": 0.8}]},
            "photos_p": {"kind": "photos", "summary": {"default": {"change": 1.0}},
                         "images": [{"score": 0.1}, {"score": 0.85}, {"error": "unreadable"}]}}
    out = zt.real({"sets": sets, "selectivity": {"default": 8.0}})
    assert out["composites_c"] == 8.0 and out["photos_p"] == 1.0 and out["selectivity"] == 8.0
    assert out["AUC composites_c vs photos_p"] == 0.75  # 3 of the 4 pairs ordered right


def test_detector_resampling_bench_scores_every_size_of_every_picture(tiny_detector, photos12, tmp_path):
    import importlib.util

    import numpy as np
    spec = importlib.util.spec_from_file_location("detector_resampling", ROOT / "bench" / "detector_resampling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x, m = np.random.default_rng(0).random((30, 40, 3), dtype=np.float32), np.zeros((30, 40), np.float32)
    assert bench.resized(x, m, 1.0, None)[0] is x                      # as is: untouched
    assert bench.resized(x, m, 2.0, bench.Image.BICUBIC)[0].shape == (60, 80, 3)
    assert bench.resized(x, m, 0.5, bench.Image.BOX)[1].shape == (15, 20)
    out = tmp_path / "r.md"
    bench.main(str(tiny_detector[0]), f"same={photos12}", f"photos={photos12}", out=str(out))
    text, name = out.read_text(), f"{tiny_detector[0].parent.name}/detector"
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} | same vs photos |")]
    assert len(rows) == 1 and rows[0].count("0.500") == len(bench.SCALES)  # a set against itself: chance
    from common.io import find_pairs, read_image_array, read_mask_array
    from router.detector import Detector
    det = Detector.load(tiny_detector[0])
    mean = np.mean([det.score(read_image_array(a), read_mask_array(b)) for a, b in find_pairs(photos12)])
    assert f"| {name} | photos | {mean:.3f} |" in text           # "as is" is the detector's own score


def test_model_card_recipe_says_how_many_photos_chose_the_gate_scale(monkeypatch):
    mc = _script("model_card", monkeypatch)
    cal = lambda n, **kw: {"calibration": {"strength": 1.5, "drift_limit": None,  # noqa: E731
                                           "scores": {"0.0": {"fMSE": 1.0, "photos": n}}, **kw}}
    assert "gate scale 1.50 (on 1 held-out training photo)," in mc._recipe(cal(1))
    assert "(on 8 held-out training photos)" in mc._recipe(cal(8))
    assert "(cross-fitted over 2 folds, 22 photos)" in mc._recipe(cal(22, folds=[{}, {}]))
    assert "(on held-out training photos)" in mc._recipe({"calibration": {"strength": 1.0}})  # older metadata
    assert "gate scale" not in mc._recipe({})
