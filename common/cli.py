"""Thin fire CLIs: bad input exits non-zero with a one-line reason."""
from __future__ import annotations

import json
import logging
import sys

import fire

from .io import InputError


def run(component, name: str | None = None) -> None:
    """``fire.Fire(component)``, turning :class:`InputError` (and missing files) into ``exit 2``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(component, name=name)
    except (InputError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def names(value) -> list[str]:
    """A comma-separated CLI value (or a list/tuple, as python-fire may pass it) → stripped names."""
    items = value.split(",") if isinstance(value, str) else value
    return [str(v).strip() for v in items if str(v).strip()]


def print_json(obj) -> None:
    print(json.dumps(obj, sort_keys=False))
