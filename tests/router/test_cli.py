import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from common.io import read_image
from domains.build import MINI4_NAMES

from ..conftest import ROOT


@pytest.mark.parametrize("how", ["python -m fire router predict", "fire router predict", "python -m router predict"])
def test_predict_cli(tiny_zoo, pair, how):
    img, mask = pair
    exe = how.split()
    if exe[0] == "python":
        exe[0] = sys.executable
    else:
        exe[0] = os.path.join(os.path.dirname(sys.executable), "fire")
    cmd = exe + [str(img), str(mask), "--zoo", str(tiny_zoo)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    out = img.with_name("comp_harmonized.png")
    assert res["output"] == str(out) and out.is_file()
    assert res["domain"] in MINI4_NAMES and set(res["seconds"]) >= {"load", "classify", "harmonize", "full_res", "write"}
    assert res["mode"] == "soft" and res["model"] == "soft" and set(res["weights"]) == set(MINI4_NAMES)  # the zoo's default
    assert read_image(out).shape == read_image(img).shape
    before = out.read_bytes()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before
    out.unlink()


def test_predict_bad_input(tiny_zoo, pair, tmp_path):
    img, _ = pair
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros(Image.open(img).size[::-1], np.uint8)).save(empty)
    for args, msg in [([str(img), str(empty)], "no foreground"), ([str(tmp_path / "nope.jpg"), str(empty)], "not found")]:
        r = subprocess.run([sys.executable, "-m", "router", "predict", *args, "--zoo", str(tiny_zoo)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not img.with_name("comp_harmonized.png").exists()


def _predict(*args, zoo):
    return subprocess.run([sys.executable, "-m", "router", *args, "--zoo", str(zoo)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_predict_options_and_swapped_inputs(tiny_zoo, pair, tmp_path):
    img, mask = pair
    cases = [([str(img), str(mask), "--device", "tpu"], "'tpu': unknown device"),
             ([str(mask), str(img)], "looks like a photo, not a mask"),
             ([str(img), str(img)], "looks like a photo, not a mask"),
             ([str(img), str(mask), "--out", str(tmp_path / "result")], "unknown image suffix")]
    if not torch.cuda.is_available():
        cases.append(([str(img), str(mask), "--device", "cuda"], "no CUDA GPU is usable"))
    for args, msg in cases:
        r = _predict("predict", *args, zoo=tiny_zoo)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    grey = np.asarray(Image.open(mask).convert("L"))  # a mask passed as the image, with a real mask
    Image.fromarray(np.repeat(grey[..., None], 3, 2)).save(tmp_path / "mask_as_image.png")
    r = _predict("predict", str(tmp_path / "mask_as_image.png"), str(mask), zoo=tiny_zoo)
    assert r.returncode == 2 and "mask_as_image.png: looks like a mask, not a photo" in r.stderr
    assert not list(img.parent.glob("*_harmonized.png"))
    # --out an existing folder: the result goes inside, under the default name
    (tmp_path / "outdir").mkdir()
    r = _predict("predict", str(img), str(mask), "--out", str(tmp_path / "outdir"), zoo=tiny_zoo)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["output"] == str(tmp_path / "outdir" / "comp_harmonized.png")
    assert (tmp_path / "outdir" / "comp_harmonized.png").is_file()


def test_predict_dir(tiny_zoo, pair, tmp_path, capsys):
    from router import predict_dir
    img, mask = pair
    predict_dir(str(img.parent), masks=str(img.parent), out=str(tmp_path / "res"), zoo=str(tiny_zoo))
    assert (tmp_path / "res" / "comp_harmonized.png").is_file()


def test_predict_dir_skips_existing_and_survives_bad_pairs(tiny_zoo, pair, tmp_path):
    img, mask = pair
    src = tmp_path / "set"
    (src / "masks").mkdir(parents=True)
    for stem in ("a", "b"):
        shutil.copy(img, src / f"{stem}.jpg")
        shutil.copy(mask, src / "masks" / f"{stem}.png")
    (src / "bad.jpg").write_bytes(b"not an image")
    shutil.copy(mask, src / "masks" / "bad.png")
    out = tmp_path / "res"
    r = _predict("predict_dir", str(src), "--out", str(out), zoo=tiny_zoo)
    assert r.returncode == 2 and "1 of 3 composites failed" in r.stderr and "bad.jpg:" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_harmonized.png", "b_harmonized.png"]
    (out / "b_harmonized.png").unlink()
    before = (out / "a_harmonized.png").read_bytes()
    r = _predict("predict_dir", str(src), "--out", str(out), zoo=tiny_zoo)
    assert r.returncode == 2 and "1 of 3 outputs already exist" in r.stderr and "--skip_existing" in r.stderr
    assert not (out / "b_harmonized.png").exists()
    r = _predict("predict_dir", str(src), "--out", str(out), "--skip_existing", zoo=tiny_zoo)
    assert "skipped 1 of 3" in r.stderr and (out / "b_harmonized.png").is_file()
    assert (out / "a_harmonized.png").read_bytes() == before and r.returncode == 2  # bad.jpg still fails
    r = _predict("predict_dir", str(src), "--out", str(out), "--device", "tpu", zoo=tiny_zoo)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown device" in r.stderr


def test_unified_and_oracle_modes_never_import_timm(tiny_zoo, pair, tmp_path):
    """The classifier (and with it timm, ~3 s of imports here) loads only when routing needs it."""
    img, mask = pair
    code = ("import sys, json; from router import Harmonizer; h = Harmonizer.from_zoo(sys.argv[1]); "
            "h(sys.argv[2], sys.argv[3], mode='unified'); h(sys.argv[2], sys.argv[3], mode='oracle:MiniFlickr'); "
            "a = 'timm' in sys.modules; h.classify(sys.argv[2], sys.argv[3]); "
            "print(json.dumps([a, 'timm' in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code, str(tiny_zoo), str(img), str(mask)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [False, True]
