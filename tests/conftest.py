"""Shared fixtures: tiny photo folders and a tiny offline benchmark built from the bundled photos."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
os.environ["HARMONY_VARIANTS"] = "tests.variants"  # the tiny variants, here and in the commands tests run
from . import variants  # noqa: E402,F401 - registers them in this process


def make_photos(dst: Path, n: int, side: int = 96) -> Path:
    """Copy ``n`` bundled photos (downscaled to ``side``) with their masks into ``dst``."""
    names = sorted(p.stem for p in (ASSETS / "photos" / "masks").glob("*.png"))[:n]
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir(parents=True)
    for nm in names:
        im = Image.open(ASSETS / "photos" / "images" / f"{nm}.jpg").convert("RGB")
        m = Image.open(ASSETS / "photos" / "masks" / f"{nm}.png").convert("L")
        s = side / max(im.size)
        size = (max(8, round(im.size[0] * s)), max(8, round(im.size[1] * s)))
        im.resize(size, Image.BILINEAR).save(dst / "images" / f"{nm}.jpg", quality=95)
        m.resize(size, Image.NEAREST).save(dst / "masks" / f"{nm}.png")
    return dst


@pytest.fixture(scope="session")
def photos12(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos12"), 12)


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory, photos12) -> Path:
    """A tiny offline benchmark (12 photos, 96 px) shared by the tests of every package."""
    from domains.build import build
    return build(photos12, tmp_path_factory.mktemp("data") / "mini", seed=0, max_side=96)


@pytest.fixture(scope="session")
def ihd_data(tmp_path_factory, mini_data) -> Path:
    """The MiniFlickr data renamed into the real iHarmony4 layout and naming (HFlickr, entries in the
    combined IHD_train.txt / IHD_test.txt only, ``f`` + digits names)."""
    root = tmp_path_factory.mktemp("ihd") / "iHarmony4"
    src = mini_data / "MiniFlickr"
    dst = root / "HFlickr"
    for sub in ("composite_images", "masks", "real_images"):
        (dst / sub).mkdir(parents=True)
    lists = {}
    for split in ("train", "test"):
        lines = []
        for entry in (src / f"MiniFlickr_{split}.txt").read_text().split():
            rid, k1, k2 = Path(entry).stem.rsplit("_", 2)
            new = f"f{int(rid[1:]) + 1000}"
            shutil.copy(src / "composite_images" / entry, dst / "composite_images" / f"{new}_{k1}_{k2}.jpg")
            shutil.copy(src / "masks" / f"{rid}_{k1}.png", dst / "masks" / f"{new}_{k1}.png")
            shutil.copy(src / "real_images" / f"{rid}.jpg", dst / "real_images" / f"{new}.jpg")
            lines.append(f"HFlickr/composite_images/{new}_{k1}_{k2}.jpg")
        lists[split] = lines
    (root / "IHD_test.txt").write_text("\n".join(lists["test"]) + "\n")
    (root / "IHD_train.txt").write_text("\n".join(lists["train"]) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_zoo(mini_data, tmp_path_factory):
    """A zoo of tiny models (a few steps each) over the tiny benchmark."""
    from domains.build import MINI4_NAMES
    from harmonizers.train import main as htrain
    from router import zoo as Z
    from router.train import main as rtrain
    r = tmp_path_factory.mktemp("zoo_runs")
    rtrain(data=str(mini_data), out=str(r / "router.safetensors"), backbone="resnet10t", size=32, steps=2,
           batch_size=4, device="cpu")
    kw = dict(data=str(mini_data), arch="issam_test", size=32, steps=1, batch_size=2, device="cpu")
    for d in MINI4_NAMES:
        htrain(domains=d, out=str(r / f"h_{d}.safetensors"), **kw)
    htrain(domains="all", out=str(r / "h_all.safetensors"), **kw)
    z = Z.build(tmp_path_factory.mktemp("zoo") / "zoo", r / "router.safetensors",
                domains={d: str(r / f"h_{d}.safetensors") for d in MINI4_NAMES}, unified=r / "h_all.safetensors",
                fp16=True)
    return z


@pytest.fixture(scope="session")
def tiny_detector(photos12, tmp_path_factory):
    from router.detect import train
    out = tmp_path_factory.mktemp("det") / "detector.safetensors"
    rep = train(photos=[str(photos12)], out=str(out), folds=2, trees=20, pastes=1.0, regions=0.5, workers=1)
    return out, rep


@pytest.fixture(scope="session")
def detector_zoo(tiny_zoo, tiny_detector, tmp_path_factory):
    """The tiny zoo with the tiny detector in it."""
    import json
    z = tmp_path_factory.mktemp("dzoo") / "zoo"
    shutil.copytree(tiny_zoo, z, ignore=shutil.ignore_patterns("onnx"))
    shutil.copyfile(tiny_detector[0], z / "detector.safetensors")
    man = json.loads((z / "zoo.json").read_text())
    man["detector"] = "detector.safetensors"
    (z / "zoo.json").write_text(json.dumps(man))
    return z


