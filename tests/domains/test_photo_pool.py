import json

import numpy as np
import pytest
from PIL import Image

from common.io import InputError


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
