import shutil

import pytest


@pytest.fixture
def pair(mini_data, tmp_path):
    real = sorted((mini_data / "MiniFlickr" / "composite_images").iterdir())[0]
    rid = real.stem.rsplit("_", 1)[0]
    img, mask = tmp_path / "comp.jpg", tmp_path / "comp_mask.png"
    shutil.copy(real, img)
    shutil.copy(mini_data / "MiniFlickr" / "masks" / f"{rid}.png", mask)
    return img, mask
