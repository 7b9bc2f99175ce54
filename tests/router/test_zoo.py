import json
import shutil

import pytest

from common import checkpoint
from common.io import InputError
from domains.build import MINI4_NAMES
from router import zoo as Z


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


def test_zoo_default_mode(tiny_zoo, tmp_path):
    """A built zoo of same-size domain models records soft; zoo.json's mode is what runs when none is
    asked; a zoo.json without the field routes; a bad one is refused."""
    import numpy as np

    from router.api import Harmonizer
    man = json.loads((tiny_zoo / "zoo.json").read_text())
    assert man["mode"] == "soft" and Z.read(tiny_zoo)["mode"] == "soft"
    rng = np.random.default_rng(0)
    img = rng.random((40, 48, 3), dtype=np.float32)
    mask = np.zeros((40, 48), np.float32)
    mask[10:30, 12:36] = 1
    r = Harmonizer.from_zoo(tiny_zoo).run(img, mask)
    assert r.mode == "soft" and r.model == "soft" and set(r.weights) == set(MINI4_NAMES)
    np.testing.assert_allclose(r.output, Harmonizer.from_zoo(tiny_zoo).run(img, mask, "soft").output)
    old = tmp_path / "old"
    shutil.copytree(tiny_zoo, old)
    (old / "zoo.json").write_text(json.dumps({k: v for k, v in man.items() if k != "mode"}))
    r = Harmonizer.from_zoo(old).run(img, mask)
    assert r.mode == "routed" and r.model in MINI4_NAMES and r.weights is None
    (old / "zoo.json").write_text(json.dumps({**man, "mode": "blend"}))
    with pytest.raises(InputError, match=r"zoo.json: mode must be one of \('routed', 'soft', 'unified'\), got 'blend'"):
        Z.read(old)
    with pytest.raises(InputError, match="--mode: mode 'unified' but the zoo has no unified model"):
        Z.build(tmp_path / "u", tiny_zoo / man["classifier"], domains={"MiniCOCO": str(tiny_zoo / man["domains"]["MiniCOCO"])},
                mode="unified")
    assert not (tmp_path / "u").exists()  # refused before anything was written
    one = Z.build(tmp_path / "one", tiny_zoo / man["classifier"],
                  domains={"MiniCOCO": str(tiny_zoo / man["domains"]["MiniCOCO"])})
    assert Z.read(one)["mode"] == "routed"
