"""Split a photo folder and a composite folder by source into train/ and test/ folders of symlinks.

    python scripts/holdout_split.py --photos /path/to/labelme/photos --composites /path/to/labelme/composites \\
        --out runs/lm_split --test_share 0.25
    python scripts/holdout_split.py --photos assets/photos --out runs/modern_split --test_share 0.5

A source (``domains.build.photo_source``: the package of a manifest row's ``source_package``, else
its ``source``) is in one split only; a composite goes where its
background photo's source goes (``background_source`` matched to a photo's ``original``; unknown
ones stay in train), and a ``test_share`` of the other composites goes to test too (the composites
come from few sources). The largest source stays in train; ``--seed`` draws another split.
Without ``--composites`` only the photos are split. Each output folder has ``images/``, ``masks/``
and the manifest rows of its files, so every command reads it as it reads the original.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import fire

from domains.build import photo_source


def _link(rows, src: Path, dst: Path, mask_suffix=".png"):
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for r in rows:
        img = next((src / "images").glob(r["name"] + ".*"))
        for a, b in ((img, dst / "images" / img.name), (src / "masks" / (r["name"] + mask_suffix), dst / "masks" / (r["name"] + mask_suffix))):
            if not b.exists():
                b.symlink_to(a.resolve())
    (dst / "manifest.json").write_text(json.dumps(rows, indent=1))


def main(photos, composites=None, out="runs/lm_split", test_share: float = 0.25, seed: int = 0):
    photos, out = Path(photos), Path(out)
    prow = json.loads((photos / "manifest.json").read_text())
    for r in prow:
        r["source"] = photo_source(r)
    crow = json.loads((Path(composites) / "manifest.json").read_text()) if composites else []
    sources = {}
    for r in prow:
        sources[r["source"]] = sources.get(r["source"], 0) + 1
    biggest = max(sources, key=sources.get)
    def drawn(name: str) -> bool:  # a fixed draw per name; another seed draws anew (seed 0: the name alone)
        return zlib.crc32((f"{seed}:{name}" if seed else name).encode()) % 1000 < 1000 * test_share
    test = {s for s in sources if s != biggest and drawn(s)}
    orig = {r["original"]: r["source"] for r in prow if "original" in r}
    def held(c):  # a composite on a held-out source's photo, or one in test_share of the rest
        return orig.get(c["background_source"]) in test or drawn(c["name"])
    split = {"train": ([r for r in prow if r["source"] not in test], [c for c in crow if not held(c)]),
             "test": ([r for r in prow if r["source"] in test], [c for c in crow if held(c)])}
    for name, (p, c) in split.items():
        _link(p, photos, out / name / "photos")
        if composites:
            _link(c, Path(composites), out / name / "composites")
        print(name, "photos", len(p), "composites", len(c), "sources", len({r["source"] for r in p}))


if __name__ == "__main__":
    fire.Fire(main)
