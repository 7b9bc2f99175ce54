"""``make demo``: harmonize the bundled real composite with the default zoo.

    python -m router.demo                       # writes runs/demo/{koala_harmonized.png, side_by_side.png}

The side-by-side picture is composite | the zoo's default mode (soft for the shipped zoo) | unified,
both scaled by the zoo's composite detector's gate, as ``router predict`` does | with a detector, the
default mode with the gate off (``--gate False``: the harmonizers' whole change).
"""
from __future__ import annotations

import json
from pathlib import Path

from common.cli import run, shared_args
from common.grid import image_grid
from common.io import read_pair, write_image

from .api import Harmonizer

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "demo"


@shared_args
def main(image: str = str(ASSETS / "koala.jpg"), mask: str = str(ASSETS / "koala_mask.png"), out: str = "runs/demo",
         zoo: str | None = None) -> None:
    """Harmonize the bundled demo composite and write the side-by-side picture (composite | the zoo's
    default mode | unified | with a detector, the default mode with its gate off).

    Args:
        image: the composite.
        mask: its mask.
        out: output folder.
    """
    img, m = read_pair(image, mask)
    h = Harmonizer.from_zoo(zoo)
    default = h.run(img, m)  # the zoo's default mode
    outs, columns = [img, default.output], ["composite", default.mode]
    if h.unified is not None:
        outs.append(h.run(img, m, "unified").output)
        columns.append("unified")
    if h.detector is not None:
        outs.append(h.run(img, m, gate=False).output)
        columns.append(f"{default.mode}, gate off")
    out = Path(out)
    res = write_image(default.output, out / f"{Path(image).stem}_harmonized.png", overwrite=True)
    grid = write_image(image_grid([outs], height=320), out / "side_by_side.png", overwrite=True)
    probs = {k: round(v, 3) for k, v in default.probabilities.items()} if default.probabilities else None
    print(json.dumps({"domain": default.domain, "probabilities": probs, "score": default.score, "gate": default.gate,
                      "output": str(res),
                      "side_by_side": str(grid), "columns": columns}))


CLI = main

if __name__ == "__main__":
    run(CLI)
