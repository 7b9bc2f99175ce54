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
