"""Training pairs made by the colour processes (``--augment processes``): per image in numpy, as one
DataLoader worker makes them, against batched torch on a device, as a GPU training step makes them.

    .venv/bin/python bench/process_pairs.py                      # this CPU, one thread for both
    python bench/process_pairs.py --device cuda                  # the GPU path on a lent machine

Items/s for batches of real crops (``mini4`` training split at ``--size``, every process drawn,
``--identity`` of them left alone, as the GCT recipe's ``processes:0.8`` with 0.3 here so that most
items are made); per image: ``ProcessAugmenter(batched=False)``, one thread (W loader workers make
up to W times it); batched: ``ProcessAugmenter(batched=True)`` on ``--device``, synchronised. Both
under the same seeds; median of ``--reps`` batches after a warm-up.
"""
from __future__ import annotations

import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from timing import timed  # noqa: E402


def main(data: str = "data/mini4", size: int = 256, batches: str = "16,64", identity: float = 0.3, reps: int = 5,
         device: str = "cpu", out: str = str(ROOT / "bench" / "process_pairs.md")) -> None:
    from domains.dataset import HarmonyDataset
    from harmonizers.augment import ProcessAugmenter
    torch.set_num_threads(1)  # one loader worker's share; the device path on a GPU does not use it
    ds = HarmonyDataset(str(ROOT / data) if not Path(data).is_absolute() else data, "all", "train", size=size)
    sizes = [int(b) for b in str(batches).split(",")]
    items = [ds[i % len(ds)] for i in range(max(sizes))]
    dev = torch.device(device)
    lines = [f"# Process pairs, per image (numpy, one loader worker) and batched on `{device}` "
             f"(`bench/process_pairs.py --device {device}`)", "",
             f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}, torch "
             f"{torch.__version__}{', ' + torch.cuda.get_device_name(dev) if dev.type == 'cuda' else ''}; "
             f"`{Path(data).name}` training crops at {size} px; identity share {identity}; median of {reps} batches.", "",
             "| batch | per image, 1 worker: items/s | batched on the device: items/s | ratio |", "|---:|---:|---:|---:|"]
    for b in sizes:
        real = torch.stack([it["real"] for it in items[:b]])
        mask = torch.stack([it["mask"] for it in items[:b]])
        rates = []
        for batched in (False, True):
            aug = ProcessAugmenter(identity, batched=batched).to(dev if batched else "cpu")
            r, m = (real.to(dev), mask.to(dev)) if batched else (real, mask)

            def step():
                aug(r, m)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            random.seed(0)
            torch.manual_seed(0)
            t, _ = timed(step, reps=reps, warmup=2)
            rates.append(b / t)
            print(b, "batched" if batched else "per image", round(b / t, 1), flush=True)
        lines.append(f"| {b} | {rates[0]:.1f} | {rates[1]:.1f} | {rates[1] / rates[0]:.2f}× |")
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import fire
    fire.Fire(main)
