import json

import numpy as np
from PIL import Image


from eval.compose import compose

from ..conftest import ASSETS


def test_compose_real_composites(photos12, tmp_path):
    out = compose(ASSETS / "cutouts", photos12, tmp_path / "rc", n=4, seed=1, max_side=128)
    man = json.loads((out / "manifest.json").read_text())
    assert len(man["composites"]) >= 3
    for row in man["composites"]:
        img = Image.open(out / "composites" / f"{row['name']}.jpg")
        mask = np.asarray(Image.open(out / "masks" / f"{row['name']}.png"))
        assert img.size == mask.shape[::-1]
        fg = (mask > 127).mean()
        assert 0.002 < fg < 0.6
