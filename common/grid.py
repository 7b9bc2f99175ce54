"""Pictures that people look at: image grids (composite | result | ground truth) and thumbnails."""
from __future__ import annotations

import heapq

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


class Extremes:
    """The ``n`` lowest and ``n`` highest ranked items of a stream: what a grid of the best and worst
    cases needs, in memory bounded by ``2n`` items whatever the stream's length.

    ``add(rank, item)`` offers one (equal ranks keep the order they came in); ``picked()`` returns
    ``(rank, item)`` in rank order, the ``n`` lowest then the ``n`` highest, or every item when there
    were at most ``2n``: what sorting the whole stream and taking both ends gives.
    """

    def __init__(self, n: int):
        self.n, self.low, self.high, self.items, self.count = n, [], [], {}, 0

    def add(self, rank: float, item) -> None:
        seq, self.count = self.count, self.count + 1
        self.items[seq] = item
        heapq.heappush(self.low, (-rank, -seq))   # max-heap of the lowest
        heapq.heappush(self.high, (rank, seq))    # min-heap of the highest
        out = []
        if len(self.low) > self.n:
            out.append(-heapq.heappop(self.low)[1])
        if len(self.high) > self.n:
            out.append(heapq.heappop(self.high)[1])
        kept = {-s for _, s in self.low} | {s for _, s in self.high}
        for s in out:
            if s not in kept:
                self.items.pop(s, None)

    def picked(self) -> list[tuple]:
        low = sorted((-r, -s) for r, s in self.low)
        high = sorted(self.high)
        both = low + high if self.count > 2 * self.n else sorted(set(low) | set(high))
        return [(r, self.items[s]) for r, s in both]
