"""``make demo``: harmonize the bundled real composite with the default zoo.

    python -m router.demo                       # writes runs/demo/{koala_harmonized.png, side_by_side.png}

The side-by-side picture is composite | routed result | unified result.
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
    """Harmonize the bundled demo composite and write the side-by-side picture (composite | routed | unified).

    Args:
        image: the composite.
        mask: its mask.
        out: output folder.
    """
    img, m = read_pair(image, mask)
    h = Harmonizer.from_zoo(zoo)
    routed = h.run(img, m, "routed")
    outs = [img, routed.output]
    if h.unified is not None:
        outs.append(h.run(img, m, "unified").output)
    out = Path(out)
    res = write_image(routed.output, out / f"{Path(image).stem}_harmonized.png", overwrite=True)
    grid = write_image(image_grid([outs], height=320), out / "side_by_side.png", overwrite=True)
    probs = {k: round(v, 3) for k, v in routed.probabilities.items()}
    print(json.dumps({"domain": routed.domain, "probabilities": probs, "output": str(res),
                      "side_by_side": str(grid), "columns": ["composite", "routed", "unified"][:len(outs)]}))


CLI = main

if __name__ == "__main__":
    run(CLI)
