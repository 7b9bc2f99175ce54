"""The local web app: compositing, the HTTP API in-process (every bad input answered with the command
line's message, the server serving on), the command, a load test on loopback and the page in headless
Chromium."""
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from ..browser import chrome, wait
from ..conftest import ROOT

pytest.importorskip("starlette")
pytest.importorskip("multipart")


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _scene(h=96, w=128, seed=0):
    """A composite (a bright square pasted into a textured photo), its mask, a background and an RGBA cut-out."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([80 + 60 * np.sin(xx / 9), 90 + 50 * np.cos(yy / 7), 120 + 0 * xx], -1) + rng.normal(0, 6, (h, w, 3))
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    comp, mask = bg.copy(), np.zeros((h, w), np.uint8)
    comp[h // 4: 3 * h // 4, w // 4: w // 2] = (230, 190, 60)
    mask[h // 4: 3 * h // 4, w // 4: w // 2] = 255
    cut = np.zeros((40, 30, 4), np.uint8)
    cut[..., :3] = (230, 190, 60)
    cut[5:35, 4:26, 3] = 255
    return comp, mask, bg, cut


@pytest.fixture(scope="module")
def client(detector_zoo):
    from starlette.testclient import TestClient

    from router.webapp import app
    return TestClient(app(detector_zoo, backend="torch"))


def test_compose_places_scales_flips_and_crops():
    from common.io import InputError
    from router.webapp import compose
    bg = np.zeros((10, 12, 3), np.float32)
    cut = np.zeros((2, 3, 4), np.float32)
    cut[0, 0] = (1, 0, 0, 1)    # red, top-left
    cut[0, 2] = (0, 0, 1, 0.5)  # blue, half transparent, top-right
    img, m = compose(bg, cut, 4, 5)
    assert np.allclose(img[5, 4], (1, 0, 0)) and np.allclose(img[5, 6], (0, 0, 0.5), atol=1 / 255)
    assert m[5, 4] == 1 and abs(m[5, 6] - 0.5) < 1 / 255 and m.sum() == pytest.approx(1.5, abs=0.01)
    img, m = compose(bg, cut, 4, 5, flip=True)     # mirrored left-right
    assert np.allclose(img[5, 6], (1, 0, 0)) and abs(m[5, 4] - 0.5) < 1 / 255
    img, m = compose(bg, cut, -2, 9, scale=2.0)    # 6×4, cropped to the 2 rows and 4 columns inside
    assert m.shape == (10, 12) and m[9:, :4].any() and not m[:9].any() and not m[:, 4:].any()
    with pytest.raises(InputError, match="lies outside the background"):
        compose(bg, cut, 50, 0)
    with pytest.raises(InputError, match="scale must be a number > 0"):
        compose(bg, cut, 0, 0, scale=0)


def test_api_answers_bad_input_with_the_command_lines_message_and_keeps_serving(client, monkeypatch, tmp_path):
    comp, mask, bg, cut = _scene()
    good = {"image": ("c.png", _png(comp)), "mask": ("m.png", _png(mask))}
    info = client.get("/api/zoo").json()
    assert info["detector"] is True and "unified" in info["modes"] and info["modes"][0] == "default"

    def ok():
        r = client.post("/api/harmonize", files=good)
        assert r.status_code == 200, r.text
        res = json.loads(r.headers["X-Harmony-Result"])
        assert Image.open(io.BytesIO(r.content)).size == (128, 96) and res["score"] is not None
        return res

    # the same one-line messages predict prints for the same files (named by the form field here)
    cmd = subprocess.run([sys.executable, "-m", "router", "predict", str(_file(tmp_path, "c.png", b"junk")),
                          str(_file(tmp_path, "m.png", _png(mask))), "--zoo", str(client.app.state.service.zoo),
                          "--out", str(tmp_path / "o.png")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cmd.returncode == 2 and "c.png: not an image Pillow can read" in cmd.stderr
    cases = [
        ({"image": ("c.png", b"junk"), "mask": good["mask"]}, {}, 400, "image: not an image Pillow can read"),
        ({"image": good["image"], "mask": ("m.png", _png(mask[:50]))}, {}, 400, "mask is 128x50 but image is 128x96"),
        ({"image": good["image"], "mask": ("m.png", _png(np.zeros_like(mask)))}, {}, 400, "no foreground"),
        (good, {"mode": "bogus"}, 400, "mode must be routed, soft, unified or oracle:DOMAIN, got 'bogus'"),
        (good, {"mode": "oracle:Nowhere"}, 400, "no harmonizer for 'Nowhere'"),
        (good, {"strength": "-1"}, 400, "--strength must be a number >= 0"),
        (good, {"strength": "lots"}, 400, "strength must be a number"),
        (good, {"format": "gif"}, 400, "format must be png or jpeg"),
        ({"image": good["image"]}, {}, 400, "send image + mask, or background + cutout"),
        ({"background": ("b.png", _png(bg)), "cutout": ("k.png", _png(cut))}, {"x": "500"}, 400, "lies outside"),
    ]
    for files, data, status, msg in cases:
        r = client.post("/api/harmonize", files=files, data=data)
        assert r.status_code == status and msg in r.json()["error"], (data, r.text)
        assert len(r.json()["error"].splitlines()) == 1
        ok()  # still serving, and right
    monkeypatch.setenv("HARMONY_MAX_PIXELS", "5000")
    r = client.post("/api/harmonize", files=good)
    assert r.status_code == 400 and "over the limit of 5000" in r.json()["error"]
    monkeypatch.delenv("HARMONY_MAX_PIXELS")
    ok()
    assert client.get("/api/harmonize").status_code == 405 and client.get("/nothing").status_code == 404


def _file(d, name, data):
    (d / name).write_bytes(data)
    return d / name


def test_upload_limit_and_composed_request(detector_zoo, monkeypatch):
    from starlette.testclient import TestClient

    from router.webapp import app
    monkeypatch.setenv("HARMONY_MAX_UPLOAD_MB", "0.01")
    c = TestClient(app(detector_zoo, backend="torch"))
    comp, mask, bg, cut = _scene(200, 240)
    r = c.post("/api/harmonize", files={"image": ("c.png", _png(comp)), "mask": ("m.png", _png(mask))})
    assert r.status_code == 413 and "HARMONY_MAX_UPLOAD_MB" in r.json()["error"]
    monkeypatch.delenv("HARMONY_MAX_UPLOAD_MB")
    c = TestClient(app(detector_zoo, backend="torch"))
    r = c.post("/api/harmonize", files={"background": ("b.png", _png(bg)), "cutout": ("k.png", _png(cut))},
               data={"x": "30", "y": "20", "scale": "1.5", "flip": "1", "format": "jpeg", "mode": "unified",
                     "gate": "0"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    res = json.loads(r.headers["X-Harmony-Result"])
    assert res["mode"] == "unified" and res["gate"] is None and res["output"] is None
    out = np.asarray(Image.open(io.BytesIO(r.content)))
    assert out.shape == bg.shape
    from router.webapp import encode
    same = np.asarray(Image.open(io.BytesIO(encode(bg, "jpeg"))))
    top = np.abs(out[:16].astype(int) - same[:16])  # above the cut-out: the background as JPEG'd
    assert top.mean() < 0.05 and top.max() <= 3
    diff = np.abs(out.astype(int) - bg).mean(-1)
    assert diff[20 + 10: 20 + 50, 30 + 10: 30 + 30].mean() > 30  # the cut-out, 1.5× its size, flipped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.fixture(scope="module")
def server(detector_zoo):
    """The app under uvicorn on loopback, in this process (so its memory is ours to read)."""
    uvicorn = pytest.importorskip("uvicorn")
    from router.webapp import app
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app(detector_zoo, backend="torch"), host="127.0.0.1", port=port,
                                        log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    wait(lambda: srv.started, timeout=60)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=30)


def test_load_on_loopback(server):
    """200 requests, 4 at a time: no error, bounded time, memory flat after the first rounds."""
    httpx = pytest.importorskip("httpx")
    comp, mask, _, _ = _scene(384, 512)
    files = {"image": ("c.png", _png(comp)), "mask": ("m.png", _png(mask))}
    lat, rss = [], []

    def one(i):
        t0 = time.perf_counter()
        r = httpx.post(server + "/api/harmonize", files=files, timeout=120)
        lat.append(time.perf_counter() - t0)
        if i % 25 == 0:
            rss.append(_rss_mb())
        return r.status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(one, range(200)))
    wall = time.perf_counter() - t0
    assert codes == [200] * 200 and wall < 600
    p95 = float(np.percentile(lat, 95))
    print(f"200 requests of 512x384, 4 at a time: {wall:.1f} s, p95 {p95:.3f} s, RSS MB {rss}")
    assert max(rss[2:]) - rss[2] < 150  # flat once warm: no per-request growth


def test_serve_command_prints_its_address_and_refuses_bad_options(detector_zoo):
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "router", "serve", "--zoo", str(detector_zoo), "--port", str(port),
                          "--backend", "torch"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = json.loads(p.stdout.readline())
        assert line["url"] == f"http://127.0.0.1:{port}/"
        import httpx
        info = wait(lambda: _get(httpx, line["url"] + "api/zoo"), timeout=60)
        assert info["zoo"] == str(detector_zoo)
    finally:
        p.terminate()
        p.wait(timeout=30)
    r = subprocess.run([sys.executable, "-m", "router", "serve", "--backend", "nope"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--backend must be one of" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _get(httpx, url):
    try:
        return httpx.get(url, timeout=5).json()
    except httpx.TransportError:
        return None


def test_page_in_headless_chromium(server, tmp_path):
    """Open a background and a cut-out, drag the cut-out, harmonize, toggle before/after, download a
    PNG of the background's size; then keyboard moves and a bad file's message."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    _, _, bg, cut = _scene(300, 400)
    bgf, cutf = _file(tmp_path, "bg.png", _png(bg)), _file(tmp_path, "cut.png", _png(cut))
    dl = tmp_path / "downloads"
    dl.mkdir()
    drv = chrome(dl, tmp_path / "profile")
    try:
        drv.get(server + "/")
        wait(lambda: drv.execute_script("return document.querySelectorAll('#mode option').length > 1;"))
        drv.find_element(By.ID, "background").send_keys(str(bgf))
        drv.find_element(By.ID, "cutout").send_keys(str(cutf))
        wait(lambda: drv.execute_script("return st.bg !== null && st.cut !== null;"))
        x0, y0 = drv.execute_script("return [st.x, st.y];")
        stage = drv.find_element(By.ID, "stage")
        ActionChains(drv).move_to_element(stage).click_and_hold().move_by_offset(40, 25).release().perform()
        x1, y1 = drv.execute_script("return [st.x, st.y];")
        assert x1 > x0 + 10 and y1 > y0 + 5  # dragged (in image pixels)
        drv.find_element(By.ID, "stage").click()
        drv.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft', shiftKey: true}));")
        assert drv.execute_script("return st.x;") < drv.execute_script("return arguments[0];", x1 + 1)
        drv.find_element(By.ID, "go").click()
        wait(lambda: drv.execute_script("return st.result !== null && !st.busy;"), timeout=120)
        assert drv.find_element(By.ID, "result").is_displayed()
        assert "gate" in drv.find_element(By.ID, "score").text
        drv.find_element(By.ID, "toggle").click()                      # before
        assert not drv.find_element(By.ID, "result").is_displayed()
        drv.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'b'}));")  # after again
        assert drv.find_element(By.ID, "result").is_displayed()
        drv.find_element(By.ID, "download").click()
        png = wait(lambda: next((p for p in dl.glob("*.png") if not p.name.endswith(".crdownload")), None))
        wait(lambda: png.stat().st_size > 0 and not list(dl.glob("*.crdownload")))
        assert Image.open(png).size == (400, 300)
        # a file that is not an image: the server's message on the page, and the page goes on
        drv.find_element(By.CSS_SELECTOR, "input[value=pair]").click()
        drv.find_element(By.ID, "composite").send_keys(str(bgf))
        drv.find_element(By.ID, "mask").send_keys(str(_file(tmp_path, "bad.png", b"not a png")))
        wait(lambda: drv.find_element(By.ID, "go").is_enabled())
        drv.find_element(By.ID, "go").click()
        wait(lambda: "not an image Pillow can read" in drv.find_element(By.ID, "error").text, timeout=60)
        # a phone-sized window: everything reachable without sideways scrolling
        drv.set_window_size(390, 844)
        assert drv.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
        drv.execute_script("document.getElementById('go').scrollIntoView();")
        go = drv.find_element(By.ID, "go")
        assert go.is_displayed() and go.rect["x"] + go.rect["width"] <= 390
    finally:
        drv.quit()


def test_page_assets_are_local():
    html = (ROOT / "router" / "web" / "index.html").read_text()
    assert "http://" not in html and "https://" not in html and 'name="viewport"' in html
    assert os.path.getsize(ROOT / "router" / "web" / "index.html") < 64_000
