"""Pictures that people look at: image grids (composite | result | ground truth) and thumbnails."""
from __future__ import annotations

import torch


def resize_to_height(image: torch.Tensor, height: int) -> torch.Tensor:
    """``C×H×W`` scaled to ``height`` rows keeping its aspect ratio (bilinear, antialiased)."""
    w = max(1, round(image.shape[2] * height / image.shape[1]))
    return torch.nn.functional.interpolate(image.float()[None], size=(height, w), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def thumbnail(image: torch.Tensor, height: int, aspect: float) -> torch.Tensor:
    """``C×H×W`` scaled to ``height`` rows and ``aspect`` (width / height): a picture of an image that
    was resized to a square for scoring, shown with its photo's shape again."""
    w = max(1, round(height * aspect))
    return torch.nn.functional.interpolate(image.float()[None], size=(height, w), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def image_grid(rows: list[list[torch.Tensor]], height: int = 192, pad: int = 4) -> torch.Tensor:
    """Tile rows of ``C×H×W`` images (masks are shown grey) into one ``3×H×W`` picture.

    Each image is scaled to ``height`` keeping its aspect ratio.
    """
    tiles = []
    for row in rows:
        cells = []
        for im in row:
            im = im.float()
            if im.shape[0] == 1:
                im = im.expand(3, -1, -1)
            cells.append(resize_to_height(im, height).clamp(0, 1))
            cells.append(torch.ones(3, height, pad))
        tiles.append(torch.cat(cells[:-1], dim=2))
    width = max(t.shape[2] for t in tiles)
    out = []
    for t in tiles:
        out.append(torch.nn.functional.pad(t, (0, width - t.shape[2]), value=1.0))
        out.append(torch.ones(3, pad, width))
    return torch.cat(out[:-1], dim=1)
