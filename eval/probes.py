"""The probes: diagnoses of the data and the models, each a command.

    python -m eval.probes prior --data data/mini4                 # foreground-statistics priors, no network
    python -m eval.probes frontier --data data/mini4 --ckpt models/default/harmonizer_unified.safetensors
    python -m eval.probes strength --data data/mini4 --ckpt runs/issam_all.safetensors
    python -m eval.probes separability --data data/mini4 [--hidden 64]   # can colour statistics route?
    python -m eval.probes routing_sources --data data/mini4   # routing photos of a source never trained on
    python -m eval.probes realness --data data/mini4          # can a composite be told from its real photo?
    python -m eval.probes modes --data data/mini4 --runs runs # unified, routed, soft, oracle on held-out photos

Each probe lives in the module of the question it answers:

- :mod:`eval.priors` (``prior``, ``frontier``): how much of a composite's error global colour
  statistics can remove, and at what cost to real photos;
- :mod:`eval.strength` (``strength``): does a harmonizer's change point the right way, and how far;
- :mod:`eval.routability` (``separability``, ``routing_sources``): do the domains' processes leave a
  trace a classifier can route by, and does routing carry to photos of unseen sources;
- :mod:`eval.detectability` (``realness``): can a composite be told from its real photo;
- :mod:`eval.modes` (``modes``): which routing mode is best on held-out training photos.
"""
from __future__ import annotations

import functools

from common.cli import run

from .detectability import realness
from .modes import modes
from .priors import frontier, prior
from .routability import routing_sources, separability
from .strength import strength


def _quiet(fn):
    """The CLI form: the table is printed, the returned dict is not printed again by fire."""
    @functools.wraps(fn)
    def cli(*args, **kwargs):
        fn(*args, **kwargs)
    return cli


CLI = {"prior": _quiet(prior), "frontier": _quiet(frontier), "strength": _quiet(strength),
       "separability": _quiet(separability), "realness": _quiet(realness), "modes": _quiet(modes),
       "routing_sources": _quiet(routing_sources)}

if __name__ == "__main__":
    run(CLI)
