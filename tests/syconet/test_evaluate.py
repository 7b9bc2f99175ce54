import numpy as np
import pytest
import torch


def test_energy_distance_and_lab_shift():
    from syconet.evaluate import energy_distance, lab_shift
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    # direct double loop, V-statistic form
    y = rng.normal(size=(30, 3)) + 1.0
    dxy = np.mean([np.linalg.norm(a - b) for a in x for b in y])
    dxx = np.mean([np.linalg.norm(a - b) for a in x for b in x])
    dyy = np.mean([np.linalg.norm(a - b) for a in y for b in y])
    assert energy_distance(x, y) == pytest.approx(2 * dxy - dxx - dyy, rel=1e-9)
    assert energy_distance(x, y + 2.0) > energy_distance(x, y) > 0
    real = torch.rand(2, 3, 16, 16) * 0.5 + 0.25
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    s = lab_shift(real, real, mask)
    assert s.shape == (2, 6) and np.abs(s).max() < 1e-9  # no adjustment, no shift
    darker = lab_shift(real * 0.7, real, mask)
    assert (darker[:, 0] < -5).all()  # L* drops when the foreground darkens
