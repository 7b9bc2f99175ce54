"""``python -m router predict IMAGE MASK``, ``python -m router predict_dir DIR``, ``python -m router score IMAGE MASK``,
``python -m router serve``."""
import fire

from . import predict, predict_dir, score, serve

CLI = {"predict": predict, "predict_dir": predict_dir, "score": score, "serve": serve}

if __name__ == "__main__":
    fire.Fire(CLI)
