"""Route a composite to its domain's harmonizer.

    python -m fire router predict image.jpg mask.png            # or: fire router predict ..., python -m router predict ...
    python -m router predict image.jpg mask.png --mode unified --out result.png --overwrite
    python -m router predict image.jpg mask.png --mode routed   # the most likely domain's model alone
    python -m router predict image.jpg mask.png --strength 0.5  # half of the model's change
    python -m router predict_dir composites/ --out results/
    python -m router score image.jpg mask.png                   # P(the masked region was pasted in)
    python -m router predict image.jpg mask.png --gate False    # the harmonizer's change whatever the score
    python -m router serve                                      # the local web app, http://127.0.0.1:8765

``--mode``: ``soft`` (the shipped zoo's default, ``zoo.json`` ``"mode"``: every domain's model,
their results blended by the classifier's probabilities), ``routed``, ``unified`` or
``oracle:DOMAIN``. ``predict`` writes the harmonized image at the input's resolution (default
``<image stem>_harmonized.png`` next to the input; never over an existing file without
``--overwrite``) and prints one JSON line: chosen domain, class probabilities, model used, output
path, strength, backend and seconds per stage (a soft blend adds its ``weights``).
``--strength S`` (default 1) applies the share S of the network's change (0: the input unchanged;
above 1 pushes further), on either backend. Bad input exits with status 2 and a one-line reason, writing
nothing.

``--backend``: ``auto`` (default) runs the zoo's ONNX export on ONNX Runtime when onnxruntime is
installed and the export matches the checkpoints (``python -m router.fast export``; a command
then never imports torch), else torch; ``onnx`` insists on the former, ``torch`` on the latter.
A ``--device`` other than ``cpu`` means torch.

Importing this package does not import torch: ``Harmonizer`` is loaded on first use.
"""
from __future__ import annotations

from .cli import predict, predict_dir, score, serve  # noqa: F401 (the commands: python -m fire router predict …)

__all__ = ["Harmonizer", "predict", "predict_dir", "score", "serve"]


def __getattr__(name):
    if name == "Harmonizer":
        from .api import Harmonizer
        return Harmonizer
    raise AttributeError(f"module 'router' has no attribute {name!r}")
