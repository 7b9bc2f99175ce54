import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from common.io import InputError, read_image, read_mask
from domains import transfer as T
from domains.build import MINI4_NAMES, build
from domains.dataset import HarmonyDataset, list_domains, load_samples
from eval.baselines import composite
from eval.score import score

from ..conftest import make_photos


class TestBuild:
    def test_layout_and_splits(self, mini_data):
        assert list_domains(mini_data) == list(MINI4_NAMES)
        man = json.loads((mini_data / "manifest.json").read_text())
        seen = {}
        for d, info in man["domains"].items():
            tr, te = info["photos"]["train"], info["photos"]["test"]
            assert tr and te, d  # every domain keeps a train and a test photo
            for name in tr + te:
                assert name not in seen, f"{name} in {seen.get(name)} and {d}"
                seen[name] = d
            assert (mini_data / d / "preview.png").is_file()
            for split in ("train", "test"):
                samples = load_samples(mini_data, d, split)
                photos = {c["photo"] for c in info["composites"] if c["split"] == split}
                assert len(samples) == sum(1 for c in info["composites"] if c["split"] == split)
                assert photos == set(info["photos"][split])
        assert len(seen) == 12
        counts = {d: len(i["photos"]["train"]) + len(i["photos"]["test"]) for d, i in man["domains"].items()}
        assert counts["MiniCOCO"] >= counts["MiniFlickr"] and counts["MiniAdobe"] >= counts["MiniDay2night"]

    def test_composites_change_only_foreground(self, mini_data):
        for s in load_samples(mini_data, "all", "test")[:6]:
            c, r, m = read_image(s.composite), read_image(s.real), read_mask(s.mask)
            bg = (m < 0.5).expand_as(c)
            fg = (m > 0.5).expand_as(c)
            assert (c - r)[bg].abs().mean() < 0.02  # JPEG noise only
            assert (c - r)[fg].abs().mean() > 0.01  # the foreground really changed

    def test_same_seed_same_bytes(self, photos12, tmp_path, mini_data):
        again = build(photos12, tmp_path / "again", seed=0, max_side=96)
        a = sorted(p.relative_to(mini_data) for p in mini_data.rglob("*") if p.is_file())
        b = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
        assert a == b
        for rel in a:
            assert (mini_data / rel).read_bytes() == (again / rel).read_bytes(), rel

    def test_refuses_few_photos_and_existing_output(self, tmp_path, mini_data):
        few = make_photos(tmp_path / "few", 7, side=32)
        with pytest.raises(InputError, match="found 7 photo.*at least 8"):
            build(few, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        with pytest.raises(InputError, match="already exists"):
            build(few, mini_data)
        assert (mini_data / "manifest.json").is_file()

    def test_eight_photos_work(self, tmp_path):
        out = build(make_photos(tmp_path / "p8", 8, side=48), tmp_path / "d8", max_side=48)
        for d in MINI4_NAMES:
            assert load_samples(out, d, "train") and load_samples(out, d, "test")


class TestDataset:
    def test_items_and_paired_transforms(self, mini_data):
        ds = HarmonyDataset(mini_data, "all", "train", size=32)
        torch.manual_seed(0)
        for i in range(0, len(ds), max(1, len(ds) // 8)):
            b = ds[i]
            assert b["composite"].shape == (3, 32, 32) and b["mask"].shape == (1, 32, 32)
            assert ds.domains[b["domain"]] == b["domain_name"]
            bg = (b["mask"] < 0.01).expand(3, -1, -1)
            if bg.any():  # same crop and flip on all three: backgrounds still agree
                assert (b["composite"] - b["real"])[bg].abs().mean() < 0.03

    def test_cache_is_bounded_and_transparent(self, mini_data, monkeypatch):
        full = HarmonyDataset(mini_data, "all", "train", size=16, train=False)
        none = HarmonyDataset(mini_data, "all", "train", size=16, train=False, cache=False)
        small = HarmonyDataset(mini_data, "all", "train", size=16, train=False, cache_mb=0.02)
        for i in range(len(full)):
            a, b, c = full[i], none[i], small[i]
            for k in ("composite", "real", "mask"):
                assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])
            assert torch.equal(full[i]["composite"], a["composite"])  # served from the cache: the same
        assert none.cache is None
        assert small.cache_bytes <= 0.02 * 2 ** 20 and 0 < len(small.cache) < len(full.cache)
        assert full.cache_bytes == sum(t.numel() for t in full.cache.values())
        # every image is reduced to a short side of 2*size before cropping, cached or not
        assert all(min(t.shape[1:]) <= 32 for t in full.cache.values())
        monkeypatch.setenv("HARMONY_CACHE_MB", "0")
        assert HarmonyDataset(mini_data, "all", "train", size=16).cache_budget == 0
        monkeypatch.setenv("HARMONY_CACHE_MB", "lots")
        with pytest.raises(InputError, match="HARMONY_CACHE_MB"):
            HarmonyDataset(mini_data, "all", "train", size=16)

    def test_mismatched_sizes_named(self, mini_data, tmp_path):
        root = tmp_path / "d"
        shutil.copytree(mini_data / "MiniFlickr", root / "MiniFlickr")
        s = load_samples(root, "MiniFlickr", "train")[0]
        Image.open(s.mask).resize((10, 12)).save(s.mask)
        ds = HarmonyDataset(root, "MiniFlickr", "train", size=16)
        with pytest.raises(InputError, match=f"{s.composite.name}.*sizes differ"):
            ds[0]

    def test_ihd_layout(self, ihd_data, mini_data):
        assert list_domains(ihd_data) == ["HFlickr"]
        ours = load_samples(ihd_data, "HFlickr", "test")
        assert ours and all(s.real.name.startswith("f1") for s in ours)
        a = score(ihd_data, composite).summary()
        b = score(mini_data, composite, domains="MiniFlickr").summary()
        for k in ("MSE", "fMSE", "PSNR", "fSSIM"):
            assert a["HFlickr"][k] == pytest.approx(b["MiniFlickr"][k], rel=1e-6)

    def test_bad_lists(self, ihd_data, tmp_path):
        root = tmp_path / "bad"
        shutil.copytree(ihd_data, root)
        lines = (root / "IHD_test.txt").read_text().split()
        (root / "IHD_test.txt").write_text("\n".join(lines + ["HFlickr/../../../etc/x_1_1.jpg"]))
        with pytest.raises(InputError, match="outside the dataset root"):
            load_samples(root, "all", "test")
        (root / "IHD_test.txt").write_text("\n".join(lines + ["HFlickr/composite_images/f9999_1_1.jpg"]))
        with pytest.raises(InputError, match=r"3 listed file\(s\) are missing, e.g. .*f9999_1_1.jpg"):
            load_samples(root, "all", "test")
        with pytest.raises(InputError, match="unknown domain"):
            load_samples(root, "HCOCO", "test")


class TestTransfer:
    @pytest.fixture
    def pair(self):
        g = torch.Generator().manual_seed(0)
        img = torch.rand(3, 40, 40, generator=g) * 0.6 + 0.2
        mask = torch.zeros(1, 40, 40)
        mask[:, 10:30, 10:30] = 1
        ref = np.random.default_rng(1).random((5000, 3)) * 0.5 + np.array([0.4, 0.2, 0.1])
        return img, mask, ref

    def test_reinhard_matches_lab_stats(self, pair):
        img, mask, ref = pair
        out = T.transfer(img, mask, "reinhard", ref=ref)
        fg = out.permute(1, 2, 0)[mask[0] > 0.5].double().numpy()
        lab, rlab = T.rgb_to_lab(fg), T.rgb_to_lab(ref)
        assert np.allclose(lab.mean(0), rlab.mean(0), atol=1.0)
        assert np.allclose(lab.std(0), rlab.std(0), rtol=0.1)
        assert torch.equal(out[:, mask[0] == 0], img[:, mask[0] == 0])

    def test_xiao_matches_covariance(self, pair):
        img, mask, ref = pair
        fg = T.transfer(img, mask, "xiao", ref=ref).permute(1, 2, 0)[mask[0] > 0.5].double().numpy()
        assert np.allclose(np.cov(fg.T), np.cov(ref.T), atol=2e-3)
        assert np.allclose(fg.mean(0), ref.mean(0), atol=1e-2)

    @pytest.mark.parametrize("method", ["histogram", "pitie"])
    def test_distribution_matching(self, pair, method):
        img, mask, ref = pair
        fg = T.transfer(img, mask, method, ref=ref).permute(1, 2, 0)[mask[0] > 0.5].double().numpy()
        for c in range(3):
            assert np.abs(np.quantile(fg[:, c], [0.1, 0.5, 0.9]) - np.quantile(ref[:, c], [0.1, 0.5, 0.9])).max() < 0.05

    def test_looks_are_identity_at_neutral(self, pair):
        img, mask, _ = pair
        neutral = {"wb_r": 1.0, "wb_b": 1.0, "ev": 0.0, "gamma": 1.0, "contrast": 0.0, "saturation": 1.0}
        assert (T.transfer(img, mask, "retouch", params=neutral) - img).abs().max() < 2e-3
        dark = T.transfer(img, mask, "illumination", params={"ev": -1.0, "temperature": 0.0, "contrast": 1.0,
                                                              "shadows": 0.0, "saturation": 1.0})
        assert dark[:, 15, 15].sum() < img[:, 15, 15].sum()


def test_holdout_validation_split(mini_data):
    from domains.dataset import load_samples, split_holdout, train_val
    samples = load_samples(mini_data, "all", "train")
    fit, val = split_holdout(samples, 0.25)
    reals = {(s.domain, s.real.name) for s in samples}
    fit_r, val_r = {(s.domain, s.real.name) for s in fit}, {(s.domain, s.real.name) for s in val}
    assert fit_r.isdisjoint(val_r) and fit_r | val_r == reals  # by photo, nothing lost
    assert len(val_r) == max(1, round(0.25 * len(reals))) and len(fit) + len(val) == len(samples)
    assert split_holdout(list(reversed(samples)), 0.25)[1] == [s for s in reversed(samples) if s in val]  # order-free
    assert split_holdout(samples, 0.0) == (samples, [])
    tr, va = train_val(mini_data, "all", size=32, val_fraction=0.25)
    assert {s.real for s in tr.samples}.isdisjoint({s.real for s in va.samples}) and not va.train
    test_reals = {s.real for s in load_samples(mini_data, "all", "test")}
    assert test_reals.isdisjoint({s.real for s in va.samples})  # validation never touches the test split
    assert train_val(mini_data, "all", size=32, val_fraction=0.0)[1] is None


class TestContentDomains:
    """Domains from the photo manifest (benchmark v2), HAdobe5k-style experts, HDR relighting."""

    def _tagged(self, tmp_path, doms):
        photos = make_photos(tmp_path / "p", len(doms), side=48)
        names = sorted(p.stem for p in (photos / "images").iterdir())
        rows = [{"name": n, "domain": d} for n, d in zip(names, doms) if d]
        (photos / "manifest.json").write_text(json.dumps(rows))
        return photos, dict(zip(names, doms))

    def test_manifest_decides_domain_and_small_domains_are_skipped(self, tmp_path):
        doms = ["MiniCOCO"] * 4 + ["MiniFlickr"] * 2 + ["MiniAdobe"] + [None]
        photos, want = self._tagged(tmp_path, doms)
        out = build(photos, tmp_path / "d", max_side=48)
        man = json.loads((out / "manifest.json").read_text())
        assert set(man["domains"]) == {"MiniCOCO", "MiniFlickr"}   # MiniAdobe has 1 photo: skipped
        for d, info in man["domains"].items():
            names = info["photos"]["train"] + info["photos"]["test"]
            assert {want[n] for n in names} == {d} and len(info["photos"]["test"]) >= 1
        assert sum(len(i["photos"]["train"]) + len(i["photos"]["test"])
                   for i in man["domains"].values()) == 6          # the untagged photo is left out

    def test_unknown_domain_names_the_file(self, tmp_path):
        photos, _ = self._tagged(tmp_path, ["MiniCOCO", "MiniCOCO"])
        (photos / "manifest.json").write_text(json.dumps([{"name": "x", "domain": "Mars"}]))
        with pytest.raises(InputError, match="manifest.json.*'Mars'"):
            build(photos, tmp_path / "d")

    def test_split_keeps_eight_test_photos(self):
        from domains.build import split
        assert [len(split(list(range(n)))["test"]) for n in (2, 3, 10, 16, 22, 40, 100)] == \
            [1, 1, 5, 8, 8, 10, 25]

    def test_expert_composites(self, tmp_path):
        photos, _ = self._tagged(tmp_path, ["MiniAdobe"] * 3)
        out = build(photos, tmp_path / "d", max_side=48)
        man = json.loads((out / "manifest.json").read_text())
        recs = man["domains"]["MiniAdobe"]["composites"]
        for photo in {r["photo"] for r in recs}:
            mine = [r for r in recs if r["photo"] == photo]
            reals = {r["params"]["real"] for r in mine}
            fgs = [r["params"]["foreground"] for r in mine]
            assert len(reals) == 1 and len(mine) == 4 and reals.isdisjoint(fgs) and len(set(fgs)) == 4
        s = load_samples(out, "MiniAdobe", "train")[0]
        c, r, m = read_image(s.composite), read_image(s.real), read_mask(s.mask)
        assert (c - r)[(m < 0.5).expand_as(c)].abs().mean() < 0.02

    def test_hdr_relight_matches_8bit_where_nothing_clips(self):
        rng = np.random.default_rng(0)
        p = T.sample_illumination(rng)
        img = torch.rand(3, 8, 8) * 0.9
        zero = torch.zeros(3, 8, 8)
        want = torch.from_numpy(T.illumination_fn(p)(img.permute(1, 2, 0).double().numpy())).permute(2, 0, 1)
        assert torch.allclose(T.relight_hdr(img, zero, p), want.float(), atol=1e-5)
        # a clipped highlight 2 stops above white stays white when darkened by 1 stop
        sun = torch.ones(3, 1, 1)
        dark = dict(p, ev=-1.0, temperature=0.0, contrast=1.0, shadows=0.0, saturation=1.0)
        assert T.relight_hdr(sun, torch.full((3, 1, 1), 2.0), dark).min() > 0.99
        assert T.relight_hdr(sun, torch.zeros(3, 1, 1), dark).max() < 0.75


class TestMasks:
    def test_largest_region_and_plausibility(self):
        from domains.masks import largest_region, main_share, plausible
        m = np.zeros((100, 100), bool)
        m[10:50, 10:50] = True                 # 1600 px
        m[70:80, 70:80] = True                 # 100 px
        assert main_share(m) == pytest.approx(1600 / 1700, abs=0.02)
        big = largest_region(m)
        assert big[10:50, 10:50].all() and not big[70:80, 70:80].any()
        assert plausible(big) is None
        assert "foreground is 1%" in plausible(np.pad(np.ones((10, 10), bool), 45))
        two = np.zeros((100, 100), bool)
        two[:, :20] = two[:, 80:] = True
        assert "largest region holds 50%" in plausible(two)

    def test_subject_crop_frames_the_subject(self):
        from domains.masks import subject_crop
        m = np.zeros((1000, 1500), bool)
        m[600:650, 900:960] = True
        left, top, right, bottom = subject_crop(m, share=0.15)
        assert left <= 900 and right >= 960 and top <= 600 and bottom >= 650
        assert m[top:bottom, left:right].mean() == pytest.approx(0.15, rel=0.35)
        assert (right - left) / (bottom - top) == pytest.approx(1.5, rel=0.05)


def _rcc(files: dict[str, bytes]) -> bytes:
    """A Qt resource file (format 1, flat root) built from the documented layout."""
    import struct
    import zlib
    names, payload, nodes = b"", b"", []
    for i, (name, data) in enumerate(files.items()):
        noff = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        doff = len(payload)
        compressed = i % 2 == 1
        blob = struct.pack(">I", len(data)) + zlib.compress(data) if compressed else data
        payload += struct.pack(">I", len(blob)) + blob
        nodes.append(struct.pack(">IHHHI", noff, 1 if compressed else 0, 0, 0, doff))
    root = struct.pack(">IHII", 0, 2, len(files), 1)
    tree = root + b"".join(nodes)
    head = 20
    return (b"qres" + struct.pack(">IIII", 1, head, head + len(tree) + len(names), head + len(tree))
            + tree + names + payload)


def test_photo_pool_reads_qt_resources_and_embedded_jpegs():
    import importlib.util
    import io
    from ..conftest import ROOT
    spec = importlib.util.spec_from_file_location("photo_pool", ROOT / "scripts" / "photo_pool.py")
    pool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pool)
    files = {"a.webp": b"plain bytes", "b.jpg": b"compressed " * 50}
    assert pool.read_rcc(_rcc(files)) == files
    with pytest.raises(InputError, match="qres"):
        pool.read_rcc(b"nope" + bytes(20))
    small, large = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(small, "JPEG")
    Image.new("RGB", (64, 48), "blue").save(large, "JPEG")
    blob = b"EET header" + small.getvalue() + b"\0" * 7 + large.getvalue() + b"tail"
    assert pool.largest_jpeg(blob) == large.getvalue()


def test_photo_pool_select_tags_crops_and_refuses_clashes(tmp_path, monkeypatch):
    import importlib.util

    import domains.masks as DM
    from ..conftest import ROOT
    spec = importlib.util.spec_from_file_location("photo_pool", ROOT / "scripts" / "photo_pool.py")
    pool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pool)

    def blob(_sess, im):                      # a stand-in for U²-Netp: one square subject
        a = np.zeros((im.height, im.width), np.float32)
        a[im.height // 2 - 20:im.height // 2 + 20, im.width // 2 - 30:im.width // 2 + 30] = 1
        return a
    monkeypatch.setattr(DM, "session", lambda model: None)
    monkeypatch.setattr(DM, "saliency", blob)
    cand = tmp_path / "cand"
    (cand / "images").mkdir(parents=True)
    rows = []
    for name in ("big", "plain"):
        Image.new("RGB", (1600, 1200), (90, 120, 60)).save(cand / "images" / f"{name}.jpg")
        rows.append({"name": name, "size": [1600, 1200], "source_package": "pkg 1 (debian)",
                     "member": f"x/{name}.jpg", "licence": "CC0"})
    (cand / "candidates.json").write_text(json.dumps(rows))
    out = tmp_path / "photos"
    (out / "images").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps([{"name": "old", "licence": "MIT"}]))
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"keep": {"big": ["MiniCOCO", "animal", "crop"],
                                           "plain": ["MiniFlickr", "building"]},
                                  "existing": {"old": ["MiniAdobe", "flower"]}}))
    pool.select(pool=str(cand), out=str(out), model="unused.onnx", choice=str(choice))
    man = {r["name"]: r for r in json.loads((out / "manifest.json").read_text())}
    assert man["old"]["domain"] == "MiniAdobe" and man["old"]["content"] == "flower"
    assert man["plain"]["domain"] == "MiniFlickr" and max(man["plain"]["size"]) == 1024
    assert "crop" in man["big"] and max(man["big"]["size"]) < 1024       # a crop around the subject
    assert man["big"]["licence"] == "CC0" and man["big"]["member"] == "x/big.jpg"
    with Image.open(out / "masks" / "big.png") as m:
        assert m.size == tuple(man["big"]["size"]) and 0.02 < np.asarray(m).mean() / 255 < 0.6
    with pytest.raises(InputError, match="already holds 2"):
        pool.select(pool=str(cand), out=str(out), model="unused.onnx", choice=str(choice))
