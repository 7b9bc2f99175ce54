"""Export a generation-only SycoNet (E^r, FC, basis LUTs; float16) for shipping.

    python -m syconet.export --ckpt runs/syconet_all.safetensors --out models/syconet_all.safetensors
"""
from common.cli import print_json, run, shared_args

from .model import export_generation


@shared_args
def main(ckpt: str, out: str, fp16: bool = True, overwrite: bool = False) -> None:
    """Write the generation-only form of a SycoNet checkpoint (E^r, FC, basis LUTs; E^z dropped).

    Args:
        ckpt: trained SycoNet checkpoint.
        out: file to write.
        fp16: store the weights as float16.
    """
    p = export_generation(ckpt, out, fp16, overwrite)
    print_json({"out": str(p), "bytes": p.stat().st_size})


CLI = main

if __name__ == "__main__":
    run(CLI)
