"""Export a generation-only SycoNet (E^r, FC, basis LUTs; float16) for shipping.

    python -m syconet.export --ckpt runs/syconet_all.safetensors --out models/syconet_all.safetensors
"""
from common.cli import print_json, run

from .model import export_generation


def main(ckpt: str, out: str, fp16: bool = True, overwrite: bool = False) -> None:
    p = export_generation(ckpt, out, fp16, overwrite)
    print_json({"out": str(p), "bytes": p.stat().st_size})


if __name__ == "__main__":
    run(main)
