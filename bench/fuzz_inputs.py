"""Odd and malformed inputs through predict, predict_dir and the study export: every case must end
with a result (exit 0) or one line naming the problem (exit 2); never a traceback, a hang, an
output written for a refused input, or an existing file replaced.

    .venv/bin/python bench/fuzz_inputs.py                 # the whole corpus (500 cases)
    .venv/bin/python bench/fuzz_inputs.py --n_random 20   # a smaller one (tests/test_fuzz.py runs one)

Cases (``corpus``): random bytes under every image suffix; valid files truncated at every tenth of
their length; PNG headers declaring huge or zero sizes; 1×1 images; every Pillow mode we convert
(16-bit, CMYK, palette, LA, RGBA, I, F, 1); every EXIF orientation; animated GIF and WebP; masks of
the wrong size, all one value, soft noise, label masks, cut-outs, opaque RGBA masks, noise floors,
JPEG masks; folders and missing files where files are expected; random sizes down to 2×2.
"""
from __future__ import annotations

import io
import json
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.io import InputError  # noqa: E402

SUFFIXES = (".jpg", ".png", ".webp", ".tif", ".bmp")


def _photo(rng, w, h) -> np.ndarray:
    """A smooth colourful picture (a photo stand-in) of ``w×h``."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w, 1)
    base = np.stack([np.sin(6 * x + rng.random() * 3), np.cos(5 * y + rng.random() * 3), np.sin(4 * (x + y))], 2)
    return np.clip((base * 0.4 + 0.5 + rng.normal(0, 0.03, (h, w, 3))) * 255, 0, 255).astype(np.uint8)


def _mask(w, h, soft=False) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4: max(h // 4 + 1, 3 * h // 4), w // 4: max(w // 4 + 1, 3 * w // 4)] = 255
    if soft and h > 4 and w > 4:
        m[h // 4 - 1, w // 4: 3 * w // 4] = 128
    return m


def _save(arr_or_img, path: Path, **kw) -> Path:
    im = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    im.save(path, **kw)
    return path


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose IHDR declares ``w×h`` and whose data is a few bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def corpus(folder: Path, n_random: int = 180, seed: int = 0) -> list[dict]:
    """Write the cases under ``folder``; each is ``{"kind", "image", "mask"}`` (paths)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    W, H = 48, 36
    good_img = _save(_photo(rng, W, H), folder / "good.png")
    good_mask = _save(_mask(W, H), folder / "good_mask.png")

    def add(kind, image=good_img, mask=good_mask):
        cases.append({"kind": kind, "image": str(image), "mask": str(mask)})

    for i in range(n_random):  # random bytes under image suffixes, as image or as mask
        s = SUFFIXES[i % len(SUFFIXES)]
        p = folder / f"rand{i}{s}"
        p.write_bytes(rng.bytes(int(rng.integers(0, 4000))))
        add("random bytes", image=p) if i % 2 else add("random bytes", mask=p)
    for s in SUFFIXES:  # valid files truncated at every tenth of their length
        for role in ("image", "mask"):
            buf = io.BytesIO()
            src = Image.fromarray(_photo(rng, W, H) if role == "image" else _mask(W, H))
            src.save(buf, format={".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".bmp": "BMP"}[s])
            data = buf.getvalue()
            for k in range(1, 10):
                p = folder / f"trunc_{role}{k}{s}"
                p.write_bytes(data[: len(data) * k // 10])
                add("truncated", **{role: p})
    for w, h in ((100_000, 100_000), (0, 0), (0, 10), (1, 1 << 30), (70_000, 1)):  # lying headers
        p = folder / f"header_{w}x{h}.png"
        p.write_bytes(_png_header(w, h))
        add("huge/zero header", image=p)
        add("huge/zero header", mask=p)
    one = _save(_photo(rng, 1, 1), folder / "one.png")
    add("1x1", image=one, mask=_save(np.full((1, 1), 255, np.uint8), folder / "one_mask.png"))
    add("1x1", image=one, mask=_save(np.zeros((1, 1), np.uint8), folder / "one_mask0.png"))
    rgb = Image.fromarray(_photo(rng, W, H))
    modes = {"L": rgb.convert("L"), "P": rgb.convert("P"), "CMYK": rgb.convert("CMYK"), "RGBA": rgb.convert("RGBA"),
             "LA": rgb.convert("LA"), "I": rgb.convert("I"), "F": rgb.convert("F"), "1": rgb.convert("1"),
             "I;16": Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257))}
    for mode, im in modes.items():  # every mode we convert, as the image
        suffix = ".jpg" if mode == "CMYK" else ".tif" if mode in ("I", "F") else ".png"
        add(f"mode {mode}", image=_save(im, folder / f"mode_{mode.replace(';', '')}{suffix}"))
    for o in range(1, 9):  # EXIF orientations: the mask stored the same way, so they agree
        exif = Image.Exif()
        exif[0x0112] = o
        add("exif orientation", image=_save(rgb, folder / f"exif{o}.jpg", exif=exif),
            mask=_save(Image.fromarray(_mask(W, H)), folder / f"exif{o}_mask.jpg", exif=exif))
    frames = [Image.fromarray(_photo(rng, W, H)) for _ in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:])
    add("animated", image=folder / "anim.gif")
    add("animated", image=folder / "anim.webp")
    mframes = [Image.fromarray(_mask(W, H)) for _ in range(2)]
    mframes[0].save(folder / "anim_mask.gif", save_all=True, append_images=mframes[1:])
    add("animated", mask=folder / "anim_mask.gif")
    masks = {  # odd masks for the good image
        "wrong size": _mask(W + 1, H), "all 0": np.zeros((H, W), np.uint8), "all 255": np.full((H, W), 255, np.uint8),
        "all 128": np.full((H, W), 128, np.uint8), "soft noise": rng.integers(0, 256, (H, W)).astype(np.uint8),
        "label 0/1": _mask(W, H) // 255, "noise floor": np.maximum(_mask(W, H), rng.integers(20, 26, (H, W)).astype(np.uint8)),
        "one pixel": np.pad(np.full((1, 1), 255, np.uint8), ((0, H - 1), (0, W - 1))),
    }
    for name, m in masks.items():
        add(f"mask {name}", mask=_save(m, folder / f"mask_{name.replace(' ', '_').replace('/', '')}.png"))
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = _photo(rng, W, H)
    rgba[..., 3] = _mask(W, H)
    add("mask cut-out", mask=_save(rgba, folder / "mask_cutout.png"))
    opaque = np.dstack([np.repeat(_mask(W, H)[..., None], 3, 2), rng.integers(217, 256, (H, W)).astype(np.uint8)])
    add("mask opaque RGBA", mask=_save(opaque, folder / "mask_opaque.png"))
    add("mask JPEG", mask=_save(np.repeat(_mask(W, H)[..., None], 3, 2), folder / "mask_jpeg.jpg", quality=60))
    add("mask 16-bit", mask=_save(Image.fromarray(_mask(W, H).astype(np.uint16) * 257), folder / "mask16.png"))
    add("mask is the photo", mask=good_img)
    add("image is the mask", image=good_mask)
    (folder / "a_dir.png").mkdir(exist_ok=True)
    add("directory", image=folder / "a_dir.png")
    add("directory", mask=folder / "a_dir.png")
    add("missing", image=folder / "missing.jpg")
    add("missing", mask=folder / "missing.png")
    for i in range(n_random):  # valid pairs of random sizes (down to 2×2) and random masks
        w, h = int(rng.integers(2, 200)), int(rng.integers(2, 200))
        m = np.zeros((h, w), np.uint8)
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        m[y0: y0 + int(rng.integers(1, h + 1)), x0: x0 + int(rng.integers(1, w + 1))] = 255
        add("random size", image=_save(_photo(rng, w, h), folder / f"size{i}.jpg"),
            mask=_save(m, folder / f"size{i}_mask.png"))
    return cases


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang()


def run_case(fn, timeout: int = 60) -> tuple[str, str]:
    """(outcome, detail): ``ok``, ``refused`` (InputError, one line), or ``bad`` (anything else)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        fn()
        return "ok", ""
    except InputError as e:
        msg = str(e)
        return ("refused", msg) if "\n" not in msg else ("bad", f"multi-line message: {msg!r}")
    except _Hang:
        return "bad", f"hang over {timeout} s"
    except Exception:
        return "bad", traceback.format_exc(limit=3)
    finally:
        signal.alarm(0)


def fuzz(n_random: int = 180, seed: int = 0, zoo=None, backend: str = "auto", out_json: str | None = None) -> dict:
    from router.cli import predict_one
    from eval.userstudy import export
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = corpus(tmp / "in", n_random, seed)
        outcomes, bad = Counter(), []
        per_kind: dict[str, Counter] = {}
        for i, c in enumerate(cases):
            out = tmp / "out" / f"{i}.png"
            outcome, detail = run_case(lambda: predict_one(c["image"], c["mask"], out, zoo, "routed", False, "cpu",
                                                            backend))
            if outcome == "refused" and out.exists():
                outcome, detail = "bad", "output written for a refused input"
            if outcome == "ok" and not out.is_file():
                outcome, detail = "bad", "exit 0 without an output"
            outcomes[outcome] += 1
            per_kind.setdefault(c["kind"], Counter())[outcome] += 1
            if outcome == "bad":
                bad.append({"case": c, "detail": detail})
        # an existing output is never replaced
        keep = tmp / "out" / "existing.png"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_bytes(b"keep me")
        outcome, _ = run_case(lambda: predict_one(cases[0]["image"], cases[0]["mask"], keep, zoo, backend=backend))
        if keep.read_bytes() != b"keep me" or outcome == "bad":
            bad.append({"case": "existing output", "detail": "replaced or crashed"})
        # the whole corpus as one folder: predict_dir and the study export list failures, never crash
        batch = tmp / "batch"
        (batch / "masks").mkdir(parents=True)
        for i, c in enumerate(cases):
            for role, dst in (("image", batch / f"c{i:04d}{Path(c['image']).suffix}"),
                              ("mask", batch / "masks" / f"c{i:04d}{Path(c['mask']).suffix}")):
                src = Path(c[role])
                if src.is_file():
                    dst.write_bytes(src.read_bytes())
        batch_outcomes = {}
        from common.io import BatchError, InputError
        # the corpus as a photo folder for the benchmark builder: it builds or refuses naming a file
        photos = tmp / "photos"
        (photos / "images").mkdir(parents=True)
        (photos / "masks").mkdir(parents=True)
        for i, c in enumerate(cases):
            img, msk = Path(c["image"]), Path(c["mask"])
            if img.is_file() and msk.is_file():
                (photos / "images" / f"p{i:04d}{img.suffix}").write_bytes(img.read_bytes())
                (photos / "masks" / f"p{i:04d}.png").write_bytes(msk.read_bytes())
        try:
            from domains.build import build
            build(photos, tmp / "built", max_side=48)
            batch_outcomes["domains.build"] = "ok"
        except InputError as e:
            named = "photos" in str(e) or ".png" in str(e) or ".jpg" in str(e)
            batch_outcomes["domains.build"] = "refused, naming the file" if named else "refused"
            if not named:
                bad.append({"case": "domains.build", "detail": f"refusal names no file: {e}"})
            if (tmp / "built").exists():
                bad.append({"case": "domains.build", "detail": "partial output left after a refusal"})
        except Exception:
            batch_outcomes["domains.build"] = "bad"
            bad.append({"case": "domains.build", "detail": traceback.format_exc(limit=3)})
        # the corpus as an iHarmony4-layout test split for the scorer: it scores or refuses naming a file
        dom = tmp / "ihd" / "Fuzz"
        for sub in ("composite_images", "masks", "real_images"):
            (dom / sub).mkdir(parents=True)
        names = []
        for i, c in enumerate(cases):
            img, msk = Path(c["image"]), Path(c["mask"])
            if img.is_file() and msk.is_file():
                (dom / "composite_images" / f"f{i:04d}_1_1{img.suffix}").write_bytes(img.read_bytes())
                (dom / "real_images" / f"f{i:04d}{img.suffix}").write_bytes(img.read_bytes())
                (dom / "masks" / f"f{i:04d}_1.png").write_bytes(msk.read_bytes())
                names.append(f"f{i:04d}_1_1{img.suffix}")
        (dom / "Fuzz_test.txt").write_text("\n".join(names) + "\n")
        try:
            from eval.baselines import BASELINES
            from eval.score import score
            score(tmp / "ihd", BASELINES["composite"])
            batch_outcomes["eval.score"] = "ok"
        except InputError as e:
            named = "Fuzz" in str(e)
            batch_outcomes["eval.score"] = "refused, naming the file" if named else "refused"
            if not named:
                bad.append({"case": "eval.score", "detail": f"refusal names no file: {e}"})
        except Exception:
            batch_outcomes["eval.score"] = "bad"
            bad.append({"case": "eval.score", "detail": traceback.format_exc(limit=3)})
        for name, fn in (("predict_dir", lambda: _batch_predict(batch, tmp / "pd", zoo, backend)),
                         ("userstudy export", lambda: export(batch, tmp / "study", methods="composite,reinhard",
                                                             seed=0, max_side=64))):
            signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(600)
            try:
                fn()
                batch_outcomes[name] = "ok"
            except BatchError as e:
                batch_outcomes[name] = "exit 2, failures listed" if name == "predict_dir" else \
                    f"exit 2, {len(e.failures)} failures listed"
            except Exception:
                batch_outcomes[name] = "bad"
                bad.append({"case": name, "detail": traceback.format_exc(limit=3)})
            finally:
                signal.alarm(0)
    res = {"cases": len(cases), "outcomes": dict(outcomes), "per_kind": {k: dict(v) for k, v in per_kind.items()},
           "batches": batch_outcomes, "bad": bad, "seconds": round(time.perf_counter() - t0, 1)}
    if out_json:
        Path(out_json).write_text(json.dumps(res, indent=1, default=str))
    return res


def _batch_predict(folder, out, zoo, backend):
    """predict_dir is a CLI: it prints its batch error and exits 2; turn that back into the error."""
    from common.io import BatchError
    from router import predict_dir
    try:
        predict_dir(str(folder), out=str(out), zoo=zoo, backend=backend)
    except SystemExit as e:
        if e.code != 2:
            raise
        raise BatchError(["(listed on stderr)"], 0) from None


def main(n_random: int = 180, seed: int = 0, zoo=None, backend: str = "auto", out_json: str | None = None):
    res = fuzz(n_random, seed, zoo, backend, out_json)
    print(f"{res['cases']} cases in {res['seconds']} s: {res['outcomes']}; batches: {res['batches']}")
    print("| kind | cases | exit 0 | exit 2 | other |\n|---|---:|---:|---:|---:|")
    for k, v in res["per_kind"].items():
        print(f"| {k} | {sum(v.values())} | {v.get('ok', 0)} | {v.get('refused', 0)} | {v.get('bad', 0)} |")
    for b in res["bad"][:10]:
        print("BAD", b["case"], b["detail"][-600:])
    return 1 if res["bad"] else 0


if __name__ == "__main__":
    import fire
    sys.exit(fire.Fire(main))
