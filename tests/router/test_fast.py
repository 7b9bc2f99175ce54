"""The ONNX Runtime predict path (router.fast) against the torch path it stands in for."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.io import InputError, read_image_array, read_mask_array
from harmonizers.fullres import _upsample_window, harmonize
from router import arrays, fast, zoo as Z

from ..conftest import ROOT


@pytest.mark.parametrize("h,w,s", [(150, 200, 64), (40, 30, 64), (64, 64, 64), (97, 301, 32)])
def test_resize_matches_torch_antialias(h, w, s):
    x = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=(s, s), mode="bilinear",
                        antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(arrays.resize(x, s) - ref).max() < 1e-5


def test_upsample_window_matches_grid_sample():
    c = np.random.default_rng(1).random((16, 16), dtype=np.float32)
    ys, xs = slice(7, 120), slice(0, 77)
    ours = arrays.interp_matrix(130, 16, ys.start, ys.stop) @ c @ arrays.interp_matrix(90, 16, xs.start, xs.stop).T
    ref = _upsample_window(torch.from_numpy(c)[None, None], (130, 90), ys, xs)[0, 0].numpy()
    assert np.abs(ours - ref).max() < 1e-5


@pytest.fixture(scope="module")
def onnx_zoo(tiny_zoo, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    z = Z.read(tiny_zoo)
    root = Z.build(tmp_path_factory.mktemp("onnx") / "zoo", z["classifier"], unified=z["unified"],
                   domains={"MiniFlickr": z["domains"]["MiniFlickr"]})
    fast.export(root)
    return root


@pytest.fixture(scope="module")
def inputs(mini_data):
    comp = sorted((mini_data / "MiniFlickr" / "composite_images").iterdir())[0]
    mask = mini_data / "MiniFlickr" / "masks" / (comp.stem.rsplit("_", 1)[0] + ".png")
    return comp, mask


@pytest.mark.parametrize("mode", ["routed", "soft", "unified", "oracle:MiniFlickr"])
def test_onnx_run_equals_torch_run(onnx_zoo, inputs, mode):
    from router.api import Harmonizer
    img, m = read_image_array(inputs[0]), read_mask_array(inputs[1])
    ours = fast.FastHarmonizer.from_zoo(onnx_zoo).run(img, m, mode)
    ref = Harmonizer.from_zoo(onnx_zoo).run(img, m, mode)  # one interface: same inputs, same result type
    assert type(ours) is type(ref) and ours.output.dtype == ref.output.dtype == np.float32
    assert ours.model == ref.model and ours.domain == ref.domain and ours.weights == ref.weights
    assert set(ours.seconds) == set(ref.seconds) == {"classify", "harmonize", "full_res"}
    if mode in ("routed", "soft"):
        assert ours.probabilities == pytest.approx(ref.probabilities, abs=1e-5)
    assert np.abs(ours.output - ref.output).max() < 1e-4
    bg = m == 0
    assert np.array_equal(ours.output[bg], img[bg])  # background untouched
    # paths in: a PIL image out of both, equal to the rounded float result
    a, b = fast.FastHarmonizer.from_zoo(onnx_zoo).run(*map(str, inputs), mode), Harmonizer.from_zoo(onnx_zoo).run(*map(str, inputs), mode)
    assert np.abs(np.asarray(a.output, int) - np.asarray(b.output, int)).max() <= 1
    assert np.array_equal(np.asarray(a.output), np.rint(ours.output * 255).astype(np.uint8))


def test_full_resolution_step_equals_harmonize_on_large_image(onnx_zoo):
    """The numpy full-resolution step on a big, non-square image with a small foreground (crop)."""
    from router.api import Harmonizer
    rng = np.random.default_rng(2)
    img = rng.random((300, 500, 3), dtype=np.float32)
    m = np.zeros((300, 500), np.float32)
    m[40:170, 300:460] = 1
    fh = fast.FastHarmonizer.from_zoo(onnx_zoo)
    ours = fh.run(img, m, "unified").output
    model = Harmonizer.from_zoo(onnx_zoo).unified
    ref = harmonize(model, torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(m)[None]).permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() < 1e-4


def test_missing_or_stale_export_is_refused(tiny_zoo, onnx_zoo, inputs, tmp_path):
    with pytest.raises(fast.Unavailable, match="python -m router.fast export"):
        fast.FastHarmonizer.from_zoo(tiny_zoo)
    with pytest.raises(InputError, match="already exists"):
        fast.export(onnx_zoo)
    import shutil
    stale = tmp_path / "stale"
    shutil.copytree(onnx_zoo, stale)
    from common import checkpoint
    tensors, meta = checkpoint.load(stale / "harmonizer_unified.safetensors")  # retrained after the export
    checkpoint.save(stale / "harmonizer_unified.safetensors", {k: v * 1.01 for k, v in tensors.items()}, meta)
    fh = fast.FastHarmonizer.from_zoo(stale)
    with pytest.raises(fast.Unavailable, match="changed since its ONNX export"):
        fh.run(read_image_array(inputs[0]), read_mask_array(inputs[1]), "unified")


def _predict(args, cwd):
    """``python -m router predict ...`` in a fresh process; also reports whether torch got imported."""
    code = ("import sys, runpy; sys.argv = ['router'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('router', run_name='__main__')\n"
            "finally:\n    print('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code, "predict", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_predict_command_never_imports_torch_on_onnx(onnx_zoo, inputs, tmp_path):
    out = tmp_path / "r.png"
    r = _predict([*inputs, "--zoo", onnx_zoo, "--out", out], ROOT)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["backend"] == "onnx" and res["model"] == "MiniFlickr" and out.is_file()
    assert res["mode"] == "routed"  # the zoo's default: one domain model, nothing to blend
    assert "TORCH False" in r.stderr
    ref = tmp_path / "t.png"
    r = _predict([*inputs, "--zoo", onnx_zoo, "--out", ref, "--backend", "torch"], ROOT)
    assert json.loads(r.stdout.strip().splitlines()[-1])["backend"] == "torch" and "TORCH True" in r.stderr
    a, b = read_image_array(out), read_image_array(ref)
    assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # same image up to rounding


def test_predict_backend_choice(tiny_zoo, inputs, tmp_path):
    r = _predict([*inputs, "--zoo", tiny_zoo, "--out", tmp_path / "a.png"], ROOT)  # no export: torch
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["backend"] == "torch"
    r = _predict([*inputs, "--zoo", tiny_zoo, "--out", tmp_path / "b.png", "--backend", "onnx"], ROOT)
    assert r.returncode == 2 and "--backend onnx" in r.stderr and "router.fast export" in r.stderr
    assert not (tmp_path / "b.png").exists()
    r = _predict([*inputs, "--zoo", tiny_zoo, "--out", tmp_path / "c.png", "--backend", "tf"], ROOT)
    assert r.returncode == 2 and "--backend must be one of" in r.stderr


def test_classifier_without_mask_channel_and_bad_manifest(mini_data, tiny_zoo, inputs, tmp_path):
    """The exporter drops an input the network ignores; the runtime feeds what the graph kept."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from router.api import Harmonizer
    from router.train import main as rtrain
    rtrain(data=str(mini_data), out=str(tmp_path / "c.safetensors"), backbone="resnet10t", size=32, steps=1,
           batch_size=4, device="cpu", head="finetune", use_mask=False)
    z = Z.read(tiny_zoo)
    root = Z.build(tmp_path / "zoo", tmp_path / "c.safetensors", domains={"MiniFlickr": z["domains"]["MiniFlickr"]})
    fast.export(root)
    img, m = read_image_array(inputs[0]), read_mask_array(inputs[1])
    ours = fast.FastHarmonizer.from_zoo(root).run(img, m, "routed")
    ref = Harmonizer.from_zoo(root).run(img, m, "routed")
    assert ours.probabilities == pytest.approx(ref.probabilities, abs=1e-5)
    (root / "onnx" / "manifest.json").write_text("{not json")
    with pytest.raises(fast.Unavailable, match="unreadable manifest"):
        fast.FastHarmonizer.from_zoo(root)


def test_full_resolution_step_when_the_fitted_map_leaves_range():
    """A strong change (clipped gain) makes the fitted quadratic overshoot [0, 1]: both paths clamp
    it at the same places, at the network size and at full size."""
    class Gain(torch.nn.Module):
        size = 32

        def forward(self, image, mask):
            return mask * (image * 2.2 - 0.1).clamp(0, 1) + (1 - mask) * image

    rng = np.random.default_rng(3)
    img = rng.random((120, 90, 3), dtype=np.float32)
    m = np.zeros((120, 90), np.float32)
    m[20:100, 10:70] = 1
    net = Gain()
    net.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))  # harmonize asks for a device
    ref = harmonize(net, torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(m)[None]).permute(1, 2, 0).numpy()
    xs, ms = arrays.resize(img, 32), np.clip(arrays.resize(m[..., None], 32)[..., 0], 0, 1)
    with torch.no_grad():
        ys = net(torch.from_numpy(xs).permute(2, 0, 1)[None], torch.from_numpy(ms)[None, None])[0].permute(1, 2, 0).numpy()
    coef = arrays.fit_colour_transform(xs[ms > 0.5], ys[ms > 0.5])
    assert arrays.apply_colour_transform(xs, coef).max() > 1.0  # the case this test is about
    assert np.abs(arrays.full_resolution(img, m, xs, ms, ys) - ref).max() < 1e-4


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.5])
def test_strength_on_both_backends(onnx_zoo, inputs, strength):
    from router.api import Harmonizer
    img, m = read_image_array(inputs[0]), read_mask_array(inputs[1])
    ours = fast.FastHarmonizer.from_zoo(onnx_zoo).run(img, m, "unified", strength=strength).output
    ref = Harmonizer.from_zoo(onnx_zoo).run(img, m, "unified", strength=strength).output
    assert np.abs(ours - ref).max() < 1e-4
    if strength == 0:  # no change at all: the fitted map is the identity and the remainder zero
        assert np.abs(ours - img).max() < 1e-4
    else:  # the tiny unified model does change the foreground (0.14 at strength 1)
        assert np.abs(ours - img).max() > 0.03


def test_strength_cli(onnx_zoo, inputs, tmp_path):
    r = _predict([*inputs, "--zoo", onnx_zoo, "--out", tmp_path / "s.png", "--strength", "0.5"], ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["strength"] == 0.5
    for bad in ("-1", "nan", "lots"):
        r = _predict([*inputs, "--zoo", onnx_zoo, "--out", tmp_path / "x.png", "--strength", bad], ROOT)
        assert r.returncode == 2 and "--strength must be a number >= 0" in r.stderr, bad
    assert not (tmp_path / "x.png").exists()


def test_gct_zoo_exports_and_matches_torch(tiny_zoo, inputs, tmp_path):
    """The gated colour transform family through the ONNX path (Lab conversion, pooling, gate)."""
    from common import checkpoint
    from harmonizers.models import create, meta
    from router.api import Harmonizer
    h = create("gct_test").eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(h.net.mlp[-1].weight, std=0.3)
    g = checkpoint.save(tmp_path / "gct.safetensors", h.state_dict(), meta(h, ["MiniFlickr"], "fp"))
    root = Z.build(tmp_path / "zoo", Z.read(tiny_zoo)["classifier"], unified=g, domains={"MiniFlickr": g})
    fast.export(root)
    img, m = read_image_array(inputs[0]), read_mask_array(inputs[1])
    ours = fast.FastHarmonizer.from_zoo(root).run(img, m, "unified").output
    ref = Harmonizer.from_zoo(root).run(img, m, "unified").output
    assert np.abs(ours - ref).max() < 1e-3
    assert np.abs(ours - img)[m > 0].max() > 1e-3          # it does change the foreground


def test_threaded_resize_equals_sequential(monkeypatch):
    """Large images have their planes resized on threads; the result is the same, value for value."""
    arr = np.random.default_rng(0).random((70, 90, 3), dtype=np.float32)
    monkeypatch.setattr(arrays, "THREADED_FROM", 10 ** 9)
    seq = arrays.resize(arr, 32)
    monkeypatch.setattr(arrays, "THREADED_FROM", 1)
    assert np.array_equal(arrays.resize(arr, 32), seq) and seq.shape == (32, 32, 3)


def test_full_resolution_in_threaded_bands_equals_one_band_and_can_work_in_place(monkeypatch):
    rng = np.random.default_rng(5)
    img = rng.random((150, 110, 3), dtype=np.float32)
    m = np.zeros((150, 110), np.float32)
    m[20:140, 15:90] = rng.random((120, 75), dtype=np.float32) * 0.5 + 0.5
    xs, ms = arrays.resize(img, 32), np.clip(arrays.resize(m[..., None], 32)[..., 0], 0, 1)
    ys = np.clip(xs * 1.2 - 0.05, 0, 1)
    monkeypatch.setattr(arrays, "ROWS", 10 ** 6)
    one = arrays.full_resolution(img, m, xs, ms, ys)
    monkeypatch.setattr(arrays, "ROWS", 7)
    monkeypatch.setattr(arrays, "THREADED_FROM", 0)  # bands on the thread pool
    bands = arrays.full_resolution(img, m, xs, ms, ys)
    assert np.abs(bands - one).max() < 1e-6 and np.abs(one - img).max() > 0.01
    bg = m == 0
    assert np.array_equal(bands[bg], img[bg])
    copy = img.copy()
    same = arrays.full_resolution(copy, m, xs, ms, ys, inplace=True)
    assert same is copy and np.abs(same - one).max() < 1e-6
