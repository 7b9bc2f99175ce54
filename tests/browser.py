"""Headless Chromium for the tests of our pages (the study page, the web app); skipped where
Chromium, chromedriver or selenium is missing."""
import shutil
import time
from pathlib import Path

import pytest


def chrome(download_dir: Path, profile: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_bin = shutil.which("chromedriver")
    if not browser or not driver_bin:
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1280,900", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False,
                                           "profile.default_content_setting_values.automatic_downloads": 1})
    drv = webdriver.Chrome(service=Service(driver_bin), options=opts)
    drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return drv


def wait(cond, timeout=30.0):  # generous: a busy 2-core CI machine starts Chromium slowly
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")
