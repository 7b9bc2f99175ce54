"""Where the models shipped with the repository live, and the fallbacks that let training commands
run on a fresh clone (before ``make models`` has filled ``runs/``)."""
from __future__ import annotations

import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
DEFAULT_ZOO = MODELS / "default"
SYCONET_ALL = MODELS / "syconet_all.safetensors"  # generation-only: E^r, FC and the basis LUTs
BASE_HARMONIZER = DEFAULT_ZOO / "harmonizer_unified.safetensors"  # the all-domain GCT

log = logging.getLogger(__name__)


def prefer(path, shipped: Path, what: str) -> str:
    """``path`` when that file exists, else the shipped model (saying so), else ``path`` unchanged
    (so that the caller's "not found" message names what it looked for)."""
    if Path(path).is_file() or not shipped.is_file():
        return str(path)
    log.warning("%s: %s not found, using the shipped %s", what, path, shipped)
    return str(shipped)


def shown(path) -> str:
    """``path`` as reports record it: relative to the repository when inside it (never the absolute
    path of the machine that made the report), else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(path)
