"""A local web app: place a cut-out on a background (or open a composite and its mask) and harmonize
it in the browser, on a zoo's models, offline.

    python -m router serve                                # http://127.0.0.1:8765, the shipped zoo
    python -m router serve --zoo my_zoo --port 9000       # fire router serve ... works the same way

Built on Starlette (routing, multipart uploads, the in-process test client) served by uvicorn:
a small, well-kept ASGI pair, so the page and its API are a few hundred lines we own, with every
asset in this package (nothing fetched from the internet). Gradio was the other candidate; its
image components do not do the drag-scale-flip placement of a cut-out over a background, and it
brings a large front end.

The API the page uses, for scripts too (``curl -F image=@c.jpg -F mask=@m.png
http://127.0.0.1:8765/api/harmonize -D - -o out.png``):

- ``GET /api/zoo``: the zoo's domains, modes, default mode, whether it has a detector, the pixel limit.
- ``POST /api/harmonize`` (multipart): either ``image`` + ``mask`` (files, as ``predict`` reads them),
  or ``background`` + ``cutout`` (an RGBA cut-out; its alpha is the mask) with the placement ``x``,
  ``y`` (the scaled cut-out's top-left corner in background pixels), ``scale`` (of the cut-out's own
  size) and ``flip`` (0/1, mirrored left–right); ``mode`` (``default``, ``soft``, ``routed``,
  ``unified``, ``oracle:DOMAIN``), ``strength``, ``gate`` (1/0) and ``format`` (``png``/``jpeg``).
  The answer is the harmonized image at the full resolution of the input (the background), and the
  JSON line ``predict`` prints in its ``X-Harmony-Result`` header (``output`` is null).
- Bad input gets a 4xx answer ``{"error": "..."}`` with the command line's one-line message (413 for an
  upload over ``HARMONY_MAX_UPLOAD_MB``, default 200); the server goes on serving.

The server binds to 127.0.0.1 unless ``--host`` says otherwise, takes no file paths from clients,
writes nothing to disk, and runs at most ``HARMONY_SERVE_JOBS`` (default 2) harmonizations at once.
"""
from __future__ import annotations

import io
import json
import math
import os
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from common.io import InputError, Upload, check_strength, env_megabytes, max_pixels, read_image_array, read_mask_array, read_rgba_array

from .cli import harmonize_arrays, result_json, to_u8

WEB = Path(__file__).with_name("web")
DEFAULT_PORT = 8765
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg")}


def compose(background: np.ndarray, cutout: np.ndarray, x: float, y: float, scale: float = 1.0,
            flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The composite and its mask: ``cutout`` (``h×w×4`` RGBA floats) scaled by ``scale`` (alpha-
    premultiplied, so edges keep their colour), mirrored when ``flip``, its top-left corner at
    (``x``, ``y``) of ``background`` (``H×W×3``) and alpha-blended there; the mask is the placed alpha.
    Parts outside the background are cut off."""
    from PIL import Image
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a number > 0, got {scale}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(f"placement x, y must be numbers, got {x}, {y}")
    h, w = cutout.shape[:2]
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    H, W = background.shape[:2]
    if th * tw > max_pixels():
        raise InputError(f"cutout: scaled to {tw}x{th} = {tw * th} pixels, over the limit of {max_pixels()}")
    pil = Image.fromarray(np.rint(np.clip(cutout, 0, 1) * 255).astype(np.uint8), "RGBA").convert("RGBa")
    if (th, tw) != (h, w):
        pil = pil.resize((tw, th), Image.Resampling.LANCZOS)
    if flip:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cut = np.asarray(pil.convert("RGBA"), dtype=np.float32) / 255.0
    x0, y0 = round(x), round(y)
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(W, x0 + tw), min(H, y0 + th)
    if bx0 >= bx1 or by0 >= by1:
        raise InputError(f"placement: the cut-out ({tw}x{th} at {x0}, {y0}) lies outside the background ({W}x{H})")
    part = cut[by0 - y0: by1 - y0, bx0 - x0: bx1 - x0]
    image = background.copy()
    mask = np.zeros((H, W), np.float32)
    a = part[..., 3:]
    image[by0:by1, bx0:bx1] = part[..., :3] * a + image[by0:by1, bx0:bx1] * (1 - a)
    mask[by0:by1, bx0:bx1] = a[..., 0]
    return image, mask


def encode(u8: np.ndarray, fmt: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    name, _ = FORMATS[fmt]
    Image.fromarray(u8).save(buf, name, **({"quality": 95} if name == "JPEG" else {"compress_level": 1}))
    return buf.getvalue()


class Service:
    """What the routes call: one zoo, its backend loaded once, a bound on concurrent jobs."""

    def __init__(self, zoo=None, backend: str = "auto", jobs: int | None = None):
        from .cli import _zoo
        self.zoo, self.backend = zoo, backend
        self.manifest = _zoo(zoo)
        self.jobs = threading.Semaphore(jobs or int(os.environ.get("HARMONY_SERVE_JOBS", 2)))
        self._load, self._warm = threading.Lock(), False

    def info(self) -> dict:
        z = self.manifest
        domains = list(z["domains"])
        modes = ["default", *(["soft", "routed"] if domains else []), *(["unified"] if z.get("unified") else []),
                 *(f"oracle:{d}" for d in domains)]
        return {"zoo": str(z["root"]), "domains": domains, "default_mode": z["mode"], "modes": modes,
                "detector": z.get("detector") is not None, "max_pixels": max_pixels(),
                "formats": ["png", "jpeg"]}

    @staticmethod
    def mode(mode: str | None) -> str | None:
        """``default`` is the zoo's mode; the others are checked where ``predict`` checks them."""
        return None if mode in (None, "", "default") else str(mode)

    def harmonize(self, img: np.ndarray, mask: np.ndarray, names, mode=None, strength=1.0, gate=True) -> tuple[np.ndarray, dict]:
        """(the 8-bit result, the JSON ``predict`` prints with ``output`` null)."""
        t0 = time.perf_counter()
        mode, strength = self.mode(mode), check_strength(strength)
        # the first requests load the backend one at a time; later ones run side by side
        with self.jobs, (nullcontext() if self._warm else self._load):
            r, t_load, used = harmonize_arrays(img, mask, names, self.zoo, mode, "cpu", self.backend, strength, gate)
            self._warm = True
        seconds = {"load": round(t_load, 4), **{k: round(v, 4) for k, v in r.seconds.items()}}
        seconds["total"] = round(time.perf_counter() - t0, 4)
        return to_u8(r.output), result_json(r, strength, used, seconds, None)


def _number(form, key: str, default: float) -> float:
    v = form.get(key)
    if v is None or v == "":
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number, got {str(v)[:40]!r}") from None


def _flag(form, key: str, default: bool) -> bool:
    v = str(form.get(key, "")).strip().lower()
    if v == "":
        return default
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{key} must be 1 or 0, got {v[:40]!r}")


async def _upload(form, key: str) -> Upload | None:
    f = form.get(key)
    if f is None:
        return None
    if isinstance(f, str):
        raise InputError(f"{key}: expected a file upload, got a text field")
    return Upload(await f.read(), key)


def app(zoo=None, backend: str = "auto"):
    """The Starlette application for ``zoo``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    service = Service(zoo, backend)
    limit = int(env_megabytes("HARMONY_MAX_UPLOAD_MB", 200) * 1024 * 1024)

    async def index(request: Request):
        return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8")

    async def zoo_info(request: Request):
        return JSONResponse(service.info())

    async def harmonize(request: Request):
        if int(request.headers.get("content-length") or 0) > limit:
            return JSONResponse({"error": f"upload over the limit of {limit // 2**20} MB (HARMONY_MAX_UPLOAD_MB)"},
                                status_code=413)
        try:
            async with request.form(max_files=4, max_fields=16, max_part_size=limit) as form:
                fmt = str(form.get("format") or "png").lower()
                if fmt not in FORMATS:
                    raise InputError(f"format must be png or jpeg, got {fmt[:20]!r}")
                mode, strength = form.get("mode"), _number(form, "strength", 1.0)
                gate = _flag(form, "gate", True)
                image, mask = await _upload(form, "image"), await _upload(form, "mask")
                bg, cut = await _upload(form, "background"), await _upload(form, "cutout")
                place = (_number(form, "x", 0.0), _number(form, "y", 0.0), _number(form, "scale", 1.0),
                         _flag(form, "flip", False))
            body, res = await run_in_threadpool(_work, service, (image, mask), (bg, cut), place, mode, strength, gate, fmt)
        except InputError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except MultiPartException as e:
            return JSONResponse({"error": f"malformed upload ({e.message})"}, status_code=400)
        return Response(body, media_type=FORMATS[fmt][1], headers={"X-Harmony-Result": json.dumps(res)})

    async def error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    application = Starlette(routes=[Route("/", index), Route("/api/zoo", zoo_info),
                                    Route("/api/harmonize", harmonize, methods=["POST"])],
                            exception_handlers={HTTPException: error})
    application.state.service = service
    return application


def _work(service, pair, placed, place, mode, strength, gate, fmt):
    """One harmonization from uploads: image + mask, or background + cut-out placed by ``place``;
    the encoded result and its JSON record."""
    if None not in pair:
        img, m = read_image_array(pair[0]), read_mask_array(pair[1])
        names = ("image", "mask")
    elif None not in placed:
        img, m = compose(read_image_array(placed[0]), read_rgba_array(placed[1]), *place)
        names = ("background", "cutout")
    else:
        raise InputError("send image + mask, or background + cutout (multipart files)")
    u8, res = service.harmonize(img, m, names, mode, strength, gate)
    return encode(u8, fmt), res


def run_server(zoo=None, host: str = "127.0.0.1", port: int = DEFAULT_PORT, backend: str = "auto"):
    """Start the local web app and print its address (Ctrl+C stops it).

    Args:
        zoo: model zoo folder (default models/default).
        host: the address to bind; 127.0.0.1 (default) keeps it on this machine, 0.0.0.0 opens it
            to the network.
        port: the port (default 8765).
        backend: auto (ONNX Runtime when the zoo's export is current, else torch), onnx or torch.
    """
    try:
        import uvicorn
    except ImportError:
        raise InputError("router serve needs starlette, uvicorn and python-multipart: "
                         "pip install -e '.[serve]'") from None
    application = app(zoo, backend)
    print(json.dumps({"url": f"http://{host}:{port}/", "zoo": application.state.service.info()["zoo"]}), flush=True)
    uvicorn.run(application, host=host, port=int(port), log_level="warning")
