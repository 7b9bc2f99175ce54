"""The README's picture of the web app: a cut-out placed on a photo, harmonized, in headless Chromium.

    .venv/bin/python scripts/webapp_screenshot.py --out docs/webapp.jpg

Starts ``python -m router serve`` on a free loopback port (the shipped zoo), opens the page at a
laptop's window size, loads a bundled photo and cut-out, moves the cut-out with the keyboard,
harmonizes and saves the window.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fire

ROOT = Path(__file__).resolve().parents[1]


def main(out: str = "docs/webapp.jpg", background: str = "assets/photos/images/073_1920x1080.jpg",
         cutout: str = "assets/cutouts/animals_birds_ostrich.png", zoo: str = "models/default") -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([sys.executable, "-m", "router", "serve", "--zoo", zoo, "--port", str(port)], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True)
    url = json.loads(srv.stdout.readline())["url"]
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    profile = tempfile.mkdtemp()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1040", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        for _ in range(300):
            try:
                drv.get(url)
                break
            except Exception:
                time.sleep(0.2)
        time.sleep(1)
        drv.find_element(By.ID, "background").send_keys(str(ROOT / background))
        drv.find_element(By.ID, "cutout").send_keys(str(ROOT / cutout))
        time.sleep(1)
        for _ in range(12):
            drv.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', shiftKey: true}));")
        drv.find_element(By.ID, "go").click()
        for _ in range(600):
            if drv.execute_script("return st.result !== null && !st.busy;"):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        from PIL import Image
        shot = Path(profile) / "shot.png"
        drv.save_screenshot(str(shot))
        Image.open(shot).convert("RGB").save(ROOT / out, quality=85, optimize=True)
    finally:
        drv.quit()
        srv.terminate()
        srv.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
    print(out)


if __name__ == "__main__":
    fire.Fire(main)
