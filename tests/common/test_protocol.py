"""``--protocol iharm`` against the official formulas written here from their description:
Fixed256 bilinear resizing (8-bit images rounded back to 8 bits, the mask kept soft), MSE,
fMSE = Σ m(p−t)² / (3Σm + 1e-6), PSNR = 10·log10(max(t)² / (MSE + 1e-6)), "All" pooling images."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT


def _bilinear(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resampling at half-pixel centres (cv2.INTER_LINEAR): H×W(×C) float64 → size×size."""
    def axis(n):
        x = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        return i0, i1, x - i0
    y0, y1, fy = axis(a.shape[0])
    x0, x1, fx = axis(a.shape[1])
    fy = fy.reshape(-1, 1, *([1] * (a.ndim - 2)))
    fx = fx.reshape(1, -1, *([1] * (a.ndim - 2)))
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bot = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def _official(pred_path, real_path, mask_path, size=256):
    t = np.clip(np.round(_bilinear(np.asarray(Image.open(real_path).convert("RGB"), np.float64), size)), 0, 255)
    m = _bilinear(np.asarray(Image.open(mask_path).convert("L"), np.float64) / 255.0, size)
    p = np.asarray(Image.open(pred_path).convert("RGB"), np.float64)
    if p.shape[:2] != (size, size):  # a full-size result: resized as the images are
        p = np.clip(np.round(_bilinear(p, size)), 0, 255)
    mse = ((p - t) ** 2).mean()
    fmse = (m[..., None] * (p - t) ** 2).sum() / (3 * m.sum() + 1e-6)
    psnr = 10 * np.log10(t.max() ** 2 / (mse + 1e-6))
    return {"MSE": mse, "fMSE": fmse, "PSNR": psnr}


@pytest.fixture
def layout(tmp_path):
    """Three test composites in the iHarmony4 layout: a dark one, one with a soft mask, a non-square
    one; and predictions at the network size (256) or the composite's own size."""
    rng = np.random.default_rng(0)
    root, d = tmp_path / "ihd", tmp_path / "ihd" / "HTest"
    for sub in ("composite_images", "masks", "real_images"):
        (d / sub).mkdir(parents=True)
    preds = tmp_path / "pred"
    preds.mkdir()
    cases = [("dark", (180, 240), 70, "hard", 256), ("soft", (256, 256), 255, "soft", 256),
             ("wide", (150, 330), 255, "hard", None)]
    names = []
    for name, (h, w), top, kind, psize in cases:
        yy, xx = np.mgrid[0:h, 0:w]
        real = np.clip(rng.normal(0.5, 0.2, (h, w, 3)) * top, 0, 255).astype(np.uint8)
        mask = ((yy - h / 2) ** 2 / (h / 3) ** 2 + (xx - w / 2) ** 2 / (w / 3) ** 2 < 1).astype(np.float64)
        if kind == "soft":
            mask = np.clip(1.5 - np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (h / 5), 0, 1)
        comp = real.astype(np.float64)
        comp = np.clip(comp * (1 - 0.4 * mask[..., None]) + 30 * mask[..., None], 0, 255).astype(np.uint8)
        Image.fromarray(real).save(d / "real_images" / f"{name}.jpg", quality=95)
        Image.fromarray(comp).save(d / "composite_images" / f"{name}_1_1.jpg", quality=95)
        Image.fromarray(np.round(mask * 255).astype(np.uint8)).save(d / "masks" / f"{name}_1.png")
        ph, pw = (psize, psize) if psize else (h, w)
        pred = np.clip(rng.normal(0.5, 0.2, (ph, pw, 3)) * top, 0, 255).astype(np.uint8)
        Image.fromarray(pred).save(preds / f"{name}_1_1.png")
        names.append(name)
    (root / "IHD_test.txt").write_text("".join(f"HTest/composite_images/{n}_1_1.jpg\n" for n in names))
    (root / "IHD_train.txt").write_text("".join(f"HTest/composite_images/{n}_1_1.jpg\n" for n in names))
    return root, preds, names


def test_iharm_protocol_matches_the_official_formulas(layout, tmp_path):
    root, preds, names = layout
    out = tmp_path / "scores.json"
    r = subprocess.run([sys.executable, "-m", "eval.score", "--data", str(root), "--pred", str(preds),
                        "--protocol", "iharm", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["protocol"] == "iharm"
    rows = {row["name"]: row for row in res["images"]}
    want = {n: _official(preds / f"{n}_1_1.png", root / "HTest" / "real_images" / f"{n}.jpg",
                         root / "HTest" / "masks" / f"{n}_1.png") for n in names}
    for n in names:
        for k in ("MSE", "fMSE", "PSNR"):
            assert rows[f"{n}_1_1.jpg"][k] == pytest.approx(want[n][k], rel=1e-6), (n, k)
    assert want["dark"]["PSNR"] < 10 * np.log10(255 ** 2 / want["dark"]["MSE"]) - 3  # the peak is the target's
    for k in ("MSE", "fMSE", "PSNR"):  # All pools the images
        assert res["summary"]["All"][k] == pytest.approx(np.mean([want[n][k] for n in names]), rel=1e-6)
    # under ours, a 256-px result for a composite of another size is refused; a bad protocol too
    from common.io import InputError
    from eval.score import main
    with pytest.raises(InputError, match="prediction is 256x256, composite is 240x180"):
        main(data=str(root), pred=str(preds), protocol="fullres")
    with pytest.raises(InputError, match="--protocol must be one of"):
        main(data=str(root), protocol="nope")


def test_iharm_checkpoint_scores_the_network_output(layout):
    """A network trained at the evaluation size is scored on its own output (background predicted):
    the official evaluation does not paste the composite's background back."""
    import torch
    from eval import metrics as M
    from eval.score import checkpoint_predictor
    from harmonizers.models import create, meta
    from common import checkpoint
    root, _, _ = layout
    model = create("issam_test", size=256)
    path = root.parent / "net.safetensors"
    checkpoint.save(path, model.state_dict(), meta(model, ["HTest"], "x"))
    predict = checkpoint_predictor(path, protocol="iharm", size=256)
    x, m = torch.rand(3, 256, 256), torch.zeros(1, 256, 256)
    m[:, 64:192, 64:192] = 1
    out = predict(x, m)
    with torch.no_grad():
        raw = model.eval()(x[None], m[None], keep_background=False)[0].clamp(0, 1)
    assert torch.allclose(out, raw) and not torch.allclose(out[:, :32], x[:, :32])
    proto = M.Protocol("iharm")
    a, b, c = proto.inputs(x, x, m)
    assert a.shape == (3, 256, 256) and torch.equal(a, b)
    assert float(proto.metrics(a[None], b[None], c[None])["fMSE"][0]) == 0.0
