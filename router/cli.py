"""``predict``, ``predict_dir`` and ``score``: the commands' work, on either backend (see :mod:`router`).
``python -m router``, ``fire router`` and ``python -m fire router`` all reach these functions."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from common.cli import guarded
from common.io import BatchError, InputError, check_new, check_strength, find_pairs, image_format, write_image

BACKENDS = ("auto", "onnx", "torch")

_CACHE: dict = {}


def _zoo(zoo) -> dict:
    """The zoo's checked manifest, read once per process (:func:`router.zoo.read`)."""
    key = ("zoo", str(zoo))
    if key not in _CACHE:
        from .zoo import read
        _CACHE[key] = read(zoo)
    return _CACHE[key]


def _backend(zoo, device, backend: str):
    """(backend, freshly loaded) for a zoo, cached per process; both backends share one reading
    of the zoo's manifest."""
    key = (str(zoo), str(device), backend)
    if key in _CACHE:
        return _CACHE[key], False
    z = _zoo(zoo)
    if backend == "onnx":
        from .fast import FastHarmonizer
        h = FastHarmonizer.from_manifest(z)
    else:
        from .api import Harmonizer
        h = Harmonizer(z, device)
    _CACHE[key] = h
    return h, True


def _harmonize(image, mask, zoo, mode, device, backend, strength, gate=True):
    """Read the pair once, then :func:`harmonize_arrays` → (prediction, load seconds, backend used)."""
    from common.io import read_image_array, read_mask_array

    from .inference import Stopwatch
    watch = Stopwatch()
    with watch("read"):
        img, m = read_image_array(image), read_mask_array(mask)
    r, t_load, used = harmonize_arrays(img, m, (str(image), str(mask)), zoo, mode, device, backend, strength, gate)
    r.seconds = {"read": watch.seconds["read"], **r.seconds}
    return r, t_load, used


def harmonize_arrays(img, m, names, zoo, mode, device, backend, strength, gate=True):
    """Harmonize arrays on ONNX Runtime when it can serve (``auto``, ``onnx``), else on torch →
    (prediction, load seconds, backend used); ``img`` is overwritten by the result."""
    from .fast import Unavailable
    from .inference import Stopwatch, run
    watch = Stopwatch()
    order = [backend] if backend != "auto" else ["onnx", "torch"] if str(device) == "cpu" else ["torch"]
    for used in order:
        try:
            with watch(f"load {used}"):
                h, fresh = _backend(zoo, device, used)
                h.load(mode)
            r = run(h, img, m, mode, strength, names=names, inplace=True, gate=gate)
        except Unavailable as e:  # no current ONNX export of a model this mode needs
            if backend == "onnx":
                raise InputError(f"--backend onnx: {e}") from None
            continue
        return r, watch.seconds[f"load {used}"] if fresh else 0.0, used
    raise AssertionError("unreachable: torch is always available")


def result_json(r, strength: float, used: str, seconds: dict, output) -> dict:
    """The JSON line ``predict`` prints for a prediction (the web app answers with it too)."""
    probs = {k: round(v, 4) for k, v in r.probabilities.items()} if r.probabilities else None
    res = {"domain": r.domain, "probabilities": probs, "model": r.model, "mode": r.mode, "strength": strength,
           "score": None if r.score is None else round(r.score, 4), "gate": None if r.gate is None else round(r.gate, 4),
           "output": output, "backend": used, "seconds": seconds}
    if r.weights:
        res["weights"] = {k: round(v, 4) for k, v in r.weights.items()}
    return res


def to_u8(px: np.ndarray) -> np.ndarray:
    """A float result in [0, 1] rounded to 8 bits, in place (no float copies of a large photo)."""
    np.clip(px, 0, 1, out=px)
    px *= 255
    np.rint(px, out=px)
    return px.astype(np.uint8)


def output_path(image, out=None) -> Path:
    """Where ``predict`` writes IMAGE's result: OUT when it names a file, ``OUT/<stem>_harmonized.png``
    when OUT is an existing folder (or ends with ``/``), else ``<stem>_harmonized.png`` beside IMAGE."""
    name = Path(image).stem + "_harmonized.png"
    if not out:
        return Path(image).with_name(name)
    out_s = str(out)
    out = Path(out)
    if out.is_dir() or out_s.endswith(("/", os.sep)):
        return out / name
    image_format(out, "--out")
    return out


def predict_one(image, mask, out=None, zoo=None, mode=None, overwrite=False, device="cpu",
                 backend="auto", strength=1.0, gate=True) -> dict:
    t0 = time.perf_counter()
    strength = _check_options(device, backend, strength)
    out = check_new(output_path(image, out), overwrite)  # before the work (write_image checks again)
    if str(device) != "cpu" and backend == "onnx":
        raise InputError(f"--backend onnx runs on the CPU; use --backend torch for --device {device}")
    r, t_load, used = _harmonize(image, mask, zoo, mode, device, backend, strength, _check_gate(gate))
    t1 = time.perf_counter()
    write_image(to_u8(r.output), out, overwrite=overwrite)
    seconds = {"load": round(t_load, 4), **{k: round(v, 4) for k, v in r.seconds.items()},
               "write": round(time.perf_counter() - t1, 4)}
    seconds["total"] = round(time.perf_counter() - t0, 4)
    return result_json(r, strength, used, seconds, str(out))


def _check_gate(gate) -> bool:
    if not isinstance(gate, bool):
        raise InputError(f"--gate must be True or False, got {gate!r}")
    return gate


def _check_options(device, backend, strength) -> float:
    """Check the options every image shares (before any image is read); returns the strength."""
    strength = check_strength(strength)
    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if str(device) != "cpu":
        from common.device import resolve
        resolve(device)
    return strength


def predict(image, mask, out=None, zoo=None, mode: str | None = None, overwrite: bool = False, device: str = "cpu",
            backend: str = "auto", strength: float = 1.0, gate: bool = True):
    """Harmonize IMAGE with MASK (1 = foreground) and print one JSON line: domain, probabilities,
    model, the detector's score and the gate's share, output path, backend and seconds per stage.

    Args:
        image: the composite (any image Pillow reads).
        mask: its foreground mask, same size (grey, label, RGBA cut-out; see the README).
        out: output file (.png/.jpg) or an existing folder; default <image stem>_harmonized.png beside IMAGE.
        zoo: model zoo folder (default models/default).
        mode: routed (the classifier picks the domain's model), soft (domain models blended by
            probability), unified (one model for all domains) or oracle:DOMAIN; default the zoo's
            (zoo.json "mode": soft for the shipped zoo).
        overwrite: replace an existing output file.
        device: cpu, cuda, cuda:N or auto; anything but cpu runs on torch.
        backend: auto (ONNX Runtime when the zoo's export is current, else torch), onnx or torch.
        strength: share of the network's change applied: 0 = the input, 1 = as trained, >1 further
            (multiplied by the gate's share).
        gate: scale the change by the composite detector's gate (a real photo is left alone, a clear
            composite gets the whole change); False applies the harmonizer's change whatever the score.
    """
    res = guarded(lambda: predict_one(str(image), str(mask), out, zoo, mode, overwrite, device, backend, strength, gate))
    print(json.dumps(res))


def score(image, mask, zoo=None):
    """Print one JSON line with the composite detector's probability that MASK's region of IMAGE was
    pasted in or recoloured, and the share of the harmonizer's change the gate gives it.

    Args:
        image: the picture (any image Pillow reads).
        mask: the region to judge, same size (read as for predict).
        zoo: model zoo folder (default models/default); it must hold a detector.
    """
    def one():
        from common.io import read_image_array, read_mask_array

        from .inference import Stopwatch, load_detector, required
        from .inference import score as detect
        t0 = time.perf_counter()
        z = _zoo(zoo)
        watch = Stopwatch()
        with watch("load"):
            det = required(load_detector(z.get("detector")), z["root"])  # before reading the photo
        with watch("read"):
            img, m = read_image_array(str(image)), read_mask_array(str(mask))
        with watch("score"):
            p = detect(det, img, m, (str(image), str(mask)), z["root"])
        seconds = {k: round(v, 4) for k, v in watch.seconds.items()}
        seconds["total"] = round(time.perf_counter() - t0, 4)
        return {"image": str(image), "mask": str(mask), "score": round(p, 4), "gate": round(det.strength(p), 4),
                "seconds": seconds}
    print(json.dumps(guarded(one)))


def predict_dir(composites, masks=None, out=None, zoo=None, mode: str | None = None, overwrite: bool = False,
                skip_existing: bool = False, device: str = "cpu", backend: str = "auto", strength: float = 1.0,
                gate: bool = True):
    """Harmonize every image in COMPOSITES that has a mask and print one JSON line per image. A pair
    that cannot be read is reported and skipped; the failures are listed at the end (exit status 2).

    Args:
        composites: folder of composites.
        masks: folder of masks named like the composites (<stem>.png or <stem>_mask.*); default a
            masks/ or mask/ folder next to or inside COMPOSITES, or <stem>_mask.* beside each image.
        out: output folder (default <composites>_harmonized); results are <stem>_harmonized.png.
        zoo: model zoo folder (default models/default).
        mode: routed, soft, unified or oracle:DOMAIN (as for predict; default the zoo's).
        overwrite: replace existing outputs.
        skip_existing: keep existing outputs and harmonize only the rest (to resume a batch).
        device: cpu, cuda, cuda:N or auto.
        backend: auto, onnx or torch (as for predict).
        strength: share of the network's change applied (as for predict).
        gate: scale the change by the composite detector's gate (as for predict).
    """
    from tqdm import tqdm

    def run():
        _check_options(device, backend, strength)  # once: a wrong option or zoo would fail every pair
        _check_gate(gate)
        _zoo(zoo)
        src = Path(composites)
        pairs = find_pairs(src, masks)
        dst = Path(out) if out else src.with_name(src.name + "_harmonized")
        if dst.exists() and not dst.is_dir():
            raise InputError(f"--out {dst}: exists and is not a folder")
        todo = [(i, m, dst / f"{i.stem}_harmonized.png") for i, m in pairs]
        existing = [t for t in todo if t[2].exists()]
        if existing and not (overwrite or skip_existing):
            raise InputError(f"{dst}: {len(existing)} of {len(todo)} outputs already exist (first: "
                             f"{existing[0][2].name}); pass --skip_existing to keep them or --overwrite to replace them")
        if skip_existing and not overwrite:
            todo = [t for t in todo if not t[2].exists()]
            if existing:
                print(f"skipped {len(existing)} of {len(pairs)} composites whose output exists in {dst}",
                      file=sys.stderr)
        rows, failed = [], []
        for img, m, o in tqdm(todo, desc="predict", unit="img"):
            try:
                rows.append(predict_one(str(img), str(m), o, zoo, mode, overwrite, device, backend, strength, gate))
            except InputError as e:
                failed.append(f"{img.name}: {e}")
                continue
            print(json.dumps(rows[-1]))
        if failed:
            raise BatchError(failed, len(todo))
        return rows
    guarded(run)


def serve(zoo=None, host: str = "127.0.0.1", port: int = 8765, backend: str = "auto"):
    """Start the local web app (compose a cut-out on a background, harmonize, download) and print
    its address; Ctrl+C stops it. The page and its HTTP API: router.webapp.

    Args:
        zoo: model zoo folder (default models/default).
        host: the address to bind; 127.0.0.1 (default) keeps it on this machine.
        port: the port (default 8765).
        backend: auto (ONNX Runtime when the zoo's export is current, else torch), onnx or torch.
    """
    def start():
        if backend not in BACKENDS:
            raise InputError(f"--backend must be one of {BACKENDS}, got {backend!r}")
        from .webapp import run_server
        run_server(zoo, host, port, backend)
    guarded(start)
