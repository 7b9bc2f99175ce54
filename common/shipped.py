"""Where the models shipped with the repository live, and the fallbacks that let training commands
run on a fresh clone (before ``make models`` has filled ``runs/``)."""
from __future__ import annotations

import logging
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"
DEFAULT_ZOO = MODELS / "default"
SYCONET_ALL = MODELS / "syconet_all.safetensors"  # generation-only: E^r, FC and the basis LUTs
BASE_HARMONIZER = DEFAULT_ZOO / "harmonizer_unified.safetensors"  # issam64, all domains

log = logging.getLogger(__name__)


def prefer(path, shipped: Path, what: str) -> str:
    """``path`` when that file exists, else the shipped model (saying so), else ``path`` unchanged
    (so that the caller's "not found" message names what it looked for)."""
    if Path(path).is_file() or not shipped.is_file():
        return str(path)
    log.warning("%s: %s not found, using the shipped %s", what, path, shipped)
    return str(shipped)
