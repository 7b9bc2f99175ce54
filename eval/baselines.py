"""Classical, training-free harmonizers used as baselines."""
from __future__ import annotations

import torch

from domains.transfer import transfer


def composite(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The unharmonized input: the score every method must beat."""
    return image


def reinhard(image: torch.Tensor, mask: torch.Tensor, max_ref: int = 50000) -> torch.Tensor:
    """Reinhard colour transfer (CIELAB mean/std) from the background onto the foreground."""
    bg = image.permute(1, 2, 0)[mask[0] <= 0.5].double().numpy()
    if len(bg) > max_ref:
        bg = bg[torch.linspace(0, len(bg) - 1, max_ref).long().numpy()]
    return transfer(image, mask, "reinhard", ref=bg)


BASELINES = {"composite": composite, "reinhard": reinhard}
