"""``router.demo``: the side-by-side picture and what it prints."""
import json

import numpy as np
from PIL import Image

from router.demo import main


def test_demo_shows_the_gate_off_column_when_the_zoo_has_a_detector(detector_zoo, tiny_zoo, pair, tmp_path, capsys):
    img, mask = pair
    main(str(img), str(mask), out=str(tmp_path / "d"), zoo=str(detector_zoo))
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["columns"][0] == "composite" and rep["columns"][-1].endswith("gate off") and len(rep["columns"]) == 4
    four = Image.open(rep["side_by_side"]).size
    main(str(img), str(mask), out=str(tmp_path / "t"), zoo=str(tiny_zoo))          # no detector: no such column
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(rep["columns"]) == 3 and "gate off" not in " ".join(rep["columns"])
    three = Image.open(rep["side_by_side"]).size
    assert four[1] == three[1] and four[0] > three[0]                                # one more column, same height
    assert np.asarray(Image.open(tmp_path / "d" / f"{img.stem}_harmonized.png")).shape[:2] == \
        np.asarray(Image.open(img)).shape[:2]
