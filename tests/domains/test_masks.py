import numpy as np
import pytest


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
