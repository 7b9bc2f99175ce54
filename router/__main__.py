"""``python -m router predict IMAGE MASK`` and ``python -m router predict_dir DIR``."""
import fire

from . import predict, predict_dir

CLI = {"predict": predict, "predict_dir": predict_dir}

if __name__ == "__main__":
    fire.Fire(CLI)
