import json

import numpy as np
import pytest
import torch

from common.io import InputError, read_image, read_mask
from domains import transfer as T
from domains.build import MINI4_NAMES, build
from domains.dataset import list_domains, load_samples

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


def _renamed_copy(photos, dst):
    """A second photo folder: the same photos, their names prefixed with ``b_``."""
    import shutil
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for f in (photos / sub).iterdir():
            shutil.copy(f, dst / sub / f"b_{f.name}")
    return dst


def test_several_photo_folders_keep_the_first_ones_split(photos12, mini_data, tmp_path):
    """Two collections: the first assigned and split exactly as alone (the same test photos as the
    benchmark built from it), every composite naming its folder; clashing names are refused."""
    from domains.build import composite_collections
    other = _renamed_copy(photos12, tmp_path / "other")
    out = build(f"{photos12},{other}", tmp_path / "v3", seed=0, max_side=96)
    man = json.loads((out / "manifest.json").read_text())
    alone = json.loads((mini_data / "manifest.json").read_text())
    assert man["photos"] == [str(photos12), str(other)]
    for d, info in alone["domains"].items():
        for split in ("train", "test"):
            mine = [n for n in man["domains"][d]["photos"][split] if not n.startswith("b_")]
            assert mine == info["photos"][split], (d, split)
    cols = composite_collections(out)
    assert set(cols.values()) == {str(photos12), str(other)}
    assert all((v == str(other)) == c_photo.startswith("b_") for d in man["domains"].values()
               for c in d["composites"] for v, c_photo in [(cols[c["composite"]], c["photo"])])
    assert composite_collections(mini_data) == {}
    with pytest.raises(InputError, match="also in an earlier folder"):
        build(f"{photos12},{photos12}", tmp_path / "clash", seed=0, max_side=96)
    assert not (tmp_path / "clash").exists()


def test_a_folder_put_in_one_domain(photos12, mini_data, tmp_path):
    """FOLDER=DOMAIN puts every photo of that folder in DOMAIN (its manifest aside), the first
    folder split as alone; an unknown domain is refused before anything is written."""
    other = _renamed_copy(photos12, tmp_path / "other")
    out = build(f"{photos12},{other}=MiniFlickr", tmp_path / "v3", seed=0, max_side=96)
    man = json.loads((out / "manifest.json").read_text())
    assert man["photos"] == [str(photos12), str(other)] and man["folder_domains"] == {str(other): "MiniFlickr"}
    for d, info in man["domains"].items():
        theirs = [n for sp in ("train", "test") for n in info["photos"][sp] if n.startswith("b_")]
        assert (len(theirs) == 12) if d == "MiniFlickr" else not theirs, d
    alone = json.loads((mini_data / "manifest.json").read_text())
    for d, info in alone["domains"].items():
        assert [n for n in man["domains"][d]["photos"]["test"] if not n.startswith("b_")] == info["photos"]["test"]
    with pytest.raises(InputError, match="'MiniMars' is not a domain"):
        build(f"{photos12},{other}=MiniMars", tmp_path / "bad", seed=0, max_side=96)
    assert not (tmp_path / "bad").exists()
