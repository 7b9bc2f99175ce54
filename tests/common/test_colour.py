"""The one colour module: CIELAB against published reference values, NumPy and torch computing the
same numbers, any channel axis, round trips, and finite gradients at black."""
import numpy as np
import pytest
import torch

from common import colour

# sRGB (D65) → CIELAB, as tabulated by Lindbloom's calculator and the CSS Color 4 sample code
REFERENCE = [((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
             ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
             ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
             ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
             ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
             ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))]


@pytest.mark.parametrize("rgb,lab", REFERENCE)
def test_lab_matches_published_values(rgb, lab):
    got = colour.rgb_to_lab(np.array(rgb))
    assert np.allclose(got, lab, atol=0.02), got
    assert np.allclose(colour.lab_to_rgb(np.array(lab)), rgb, atol=2e-4)


def test_srgb_transfer_curve_matches_iec_61966_2_1():
    x = np.array([0.0, 0.04045, 0.5, 1.0])
    assert np.allclose(colour.srgb_to_linear(x), [0.0, 0.04045 / 12.92, 0.2140411, 1.0], atol=1e-7)
    assert np.allclose(colour.linear_to_srgb(colour.srgb_to_linear(x)), x, atol=1e-12)
    assert colour.linear_to_srgb(np.array([-0.2]))[0] == 0.0     # negative light is clipped


def test_numpy_and_torch_agree_on_any_channel_axis():
    rgb = np.random.default_rng(2).random((4, 5, 6, 3))
    lab = colour.rgb_to_lab(rgb)
    t = torch.from_numpy(rgb)
    assert np.allclose(colour.rgb_to_lab(t).numpy(), lab, atol=1e-9)
    assert np.allclose(colour.lab_to_rgb(torch.from_numpy(lab)).numpy(), colour.lab_to_rgb(lab), atol=1e-9)
    first = colour.rgb_to_lab(t.movedim(-1, 1), dim=1)                  # N×3×H×W
    assert first.shape == (4, 3, 5, 6) and torch.allclose(first.movedim(1, -1), torch.from_numpy(lab), atol=1e-9)
    assert np.allclose(colour.rgb_to_lab(np.moveaxis(rgb, -1, 1), dim=1), np.moveaxis(lab, -1, 1), atol=1e-12)
    scaled = colour.rgb_to_lab(t.float(), scale=0.01)
    assert torch.allclose(scaled * 100, torch.from_numpy(lab).float(), atol=2e-3)
    assert torch.allclose(colour.lab_to_rgb(scaled, scale=0.01), t.float(), atol=1e-4)


def test_torch_gradients_are_finite_at_black_and_white():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.02, 0.5, 0.9]], requires_grad=True)
    lab = colour.rgb_to_lab(x)
    back = colour.lab_to_rgb(lab - torch.tensor([30.0, 0, 0]))          # darker than black: clipped
    (lab.sum() + back.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_inference_mode_first_then_autograd():
    with torch.inference_mode():
        colour.rgb_to_lab(torch.rand(2, 3))
    x = torch.rand(4, 3, requires_grad=True)
    colour.rgb_to_lab(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_the_module_imports_no_torch():
    """The ONNX predict path (router.fast, the detector) reads colours without torch."""
    import subprocess
    import sys
    code = "import sys, numpy as np; from common import colour; colour.rgb_to_lab(np.ones((2, 3))); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_torch_inverse_is_the_inverse_in_each_precision():
    """The written-out inverse is torch's own to within its last bits (which LAPACK kernel a CPU
    runs decides those: the constants keep every machine's output the same) and inverts the
    matrix to the precision's accuracy."""
    for dt, tol in ((torch.float32, 2e-7), (torch.float64, 1e-15)):
        m = torch.tensor(colour._M_RGB2XYZ.tolist(), dtype=dt)
        inv = colour._matrices(torch.zeros(1, dtype=dt))[2]
        assert inv.dtype == dt and torch.allclose(inv, torch.linalg.inv(m), rtol=4 * tol, atol=0)
        assert torch.allclose(m @ inv, torch.eye(3, dtype=dt), rtol=0, atol=8 * tol)
