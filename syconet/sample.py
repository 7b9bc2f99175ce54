"""Sample K synthetic composites for one real image and mask, at full resolution.

    python -m syconet.sample photo.jpg mask.png --ckpt models/syconet_all.safetensors -k 10 --out samples/
    python -m syconet.sample photo.jpg mask.png -k 4 --seed 3 --out samples/ --overwrite

Writes ``<stem>_syco_<k>.png`` for k = 1..K and ``<stem>_syco_grid.png`` (real | samples), and
prints one JSON line with the paths. The encoder sees the image at the model's size; the LUT is
applied to the full-resolution foreground, so no detail is lost.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from common import registry
from common.cli import print_json, run, shared_args
from common.grid import image_grid
from common.io import InputError, read_pair, to_uint8, write_image
from common.lut import apply_lut_u8, combine

DEFAULT_CKPT = Path(__file__).resolve().parents[1] / "models" / "syconet_all.safetensors"  # generation-only


@torch.inference_mode()
def sample(model, real: torch.Tensor, mask: torch.Tensor, k: int = 10, seed: int = 0) -> torch.Tensor:
    """``K×3×H×W`` composites of one ``3×H×W`` real image (full resolution)."""
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    z = torch.randn(k, model.cfg.z_dim, generator=g, device=dev)
    small = model._small(torch.cat([real, mask])[None].to(dev))
    alpha = model.coefficients(small[:, :3].expand(k, -1, -1, -1), small[:, 3:].expand(k, -1, -1, -1), z)
    if dev.type != "cpu":
        outs = [model.render(real[None].to(dev), mask[None].to(dev), alpha[i:i + 1])[0].cpu() for i in range(k)]
        return torch.stack(outs)
    # CPU: the 8-bit fast path (``apply_lut_u8``), blended with the mask in float
    luts = combine(alpha, model.bank).float()
    real_u8 = to_uint8(real)
    outs = []
    for i in range(k):
        fg = torch.from_numpy(apply_lut_u8(real_u8, luts[i])).permute(2, 0, 1).float().div_(255)
        outs.append(mask * fg + (1 - mask) * real)
    return torch.stack(outs)


@shared_args
def main(image: str, mask: str, ckpt: str = str(DEFAULT_CKPT), k: int = 10, out: str = "samples",
         seed: int = 0, overwrite: bool = False, device: str = "cpu") -> None:
    """Generate K synthetic composites of a real image and its foreground mask with SycoNet.

    Args:
        image: the real photo.
        mask: its foreground mask.
        ckpt: SycoNet checkpoint (default the shipped one).
        k: number of samples.
        out: output folder.
    """
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    t0 = time.time()
    real, m = read_pair(image, mask)
    model, _ = registry.load(ckpt, device, kind="syconet")
    outs = sample(model, real, m, k, seed)
    out_dir, stem = Path(out), Path(image).stem
    paths = [out_dir / f"{stem}_syco_{i + 1}.png" for i in range(k)]
    grid_path = out_dir / f"{stem}_syco_grid.png"
    existing = [str(p) for p in paths + [grid_path] if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: already exists (pass --overwrite to replace it)")
    for p, o in zip(paths, outs):
        write_image(o, p, overwrite=overwrite)
    cols = [real] + list(outs)
    rows = [cols[i:i + 6] for i in range(0, len(cols), 6)]
    write_image(image_grid(rows, height=192), grid_path, overwrite=overwrite)
    print_json({"samples": [str(p) for p in paths], "grid": str(grid_path), "seconds": round(time.time() - t0, 2)})


CLI = main

if __name__ == "__main__":
    run(CLI)
