import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from common.io import BatchError, InputError
from eval.compose import compose
from eval.userstudy import CSV_HEADER, analyze, bradley_terry, export

from .conftest import ASSETS


class TestBradleyTerry:
    def test_two_items_closed_form(self):
        s = bradley_terry(np.array([[0, 30], [10, 0]]), ridge=0)
        assert s[0] - s[1] == pytest.approx(np.log(3), abs=1e-8)
        assert s.sum() == pytest.approx(0, abs=1e-12)

    def test_likelihood_equations(self):
        """At the MLE every method's expected number of wins equals its observed wins."""
        rng = np.random.default_rng(0)
        w = rng.integers(1, 20, (5, 5)).astype(float)
        np.fill_diagonal(w, 0)
        s = bradley_terry(w, ridge=0)
        p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
        assert np.allclose(((w + w.T) * p).sum(1), w.sum(1), atol=1e-7)

    def test_recovers_simulated_strengths(self):
        rng = np.random.default_rng(1)
        true = np.array([1.0, 0.3, -0.2, -1.1])
        w = np.zeros((4, 4))
        for _ in range(6000):
            i, j = rng.choice(4, 2, replace=False)
            p = 1 / (1 + np.exp(-(true[i] - true[j])))
            if rng.random() < p:
                w[i, j] += 1
            else:
                w[j, i] += 1
        s = bradley_terry(w)
        assert np.abs(s - (true - true.mean())).max() < 0.1

    def test_never_chosen_stays_finite(self):
        s = bradley_terry(np.array([[0, 5, 5], [3, 0, 4], [0, 0, 0]]))  # method 2 never chosen
        assert np.isfinite(s).all() and s.argmin() == 2 and s.argmax() == 0


@pytest.fixture(scope="module")
def real_composites(photos12, tmp_path_factory):
    out = tmp_path_factory.mktemp("rc") / "rc"
    return compose(ASSETS / "cutouts", photos12, out, n=3, seed=2, max_side=160)


@pytest.fixture(scope="module")
def study(real_composites, tiny_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "study"
    return export(real_composites / "composites", out, zoo=tiny_zoo, seed=0, max_side=96)


def _votes_for(manifest: dict, favourite: str, observer="ann") -> list[list]:
    """pwcmp rows of an observer who always picks ``favourite`` (left/right alternating)."""
    by_scene = {}
    for hid, c in manifest["conditions"].items():
        by_scene.setdefault(c["scene"], {})[c["method"]] = hid
    rows = []
    for scene, ids in by_scene.items():
        for k, other in enumerate(m for m in manifest["methods"] if m != favourite):
            a, b = (ids[favourite], ids[other]) if k % 2 else (ids[other], ids[favourite])
            rows.append([observer, "s1", scene, a, b, 1 if k % 2 else 2])
    return rows


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(rows)
    return path


def test_export_layout_hides_methods(study):
    man = json.loads((study / "manifest.json").read_text())
    assert man["methods"] == ["composite", "reinhard", "unified", "routed"] and len(man["scenes"]) == 3
    assert len(man["conditions"]) == 12
    page = (study / "index.html").read_text()
    for hid in man["conditions"]:
        assert (study / "images" / f"{hid}.jpg").is_file()
    for m in man["methods"]:
        assert m not in page  # names hidden from observers
    trials = json.loads(page.split("const TRIALS = ")[1].split(";\n")[0])
    assert len(trials) == 3 * 6  # every pair of 4 methods per scene
    with pytest.raises(InputError, match="already holds a study"):
        export(study.parent, study, zoo=None)


def test_export_goes_on_past_a_bad_pair(real_composites, tiny_zoo, tmp_path):
    """The compose output's root is accepted (composites one level down); a bad pair is listed at
    the end, leaves no image behind, and the other scenes make a complete study."""
    src = tmp_path / "set"
    shutil.copytree(real_composites, src)
    (src / "composites" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    shutil.copy(next((src / "masks").glob("*.png")), src / "masks" / "broken.png")
    with pytest.raises(BatchError, match=r"1 of 4 composites failed") as e:
        export(src, tmp_path / "st", methods="composite,reinhard", seed=0, max_side=64)
    assert len(e.value.failures) == 1 and e.value.failures[0].startswith("broken.jpg: ")
    man = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert len(man["scenes"]) == 3 and "broken" not in man["scenes"]
    assert len(list((tmp_path / "st" / "images").iterdir())) == len(man["conditions"]) == 6


def test_analyze_votes(study, tmp_path):
    man = json.loads((study / "manifest.json").read_text())
    a = _write_csv(tmp_path / "a.csv", _votes_for(man, "routed", "ann"))
    b = _write_csv(tmp_path / "b.csv", _votes_for(man, "routed", "bob"))
    res = analyze(str(tmp_path / "*.csv"), study / "manifest.json", tmp_path / "rep", bootstrap=50)
    assert res["votes"] == 2 * 3 * 3 and res["observers"] == 2 and res["resampled"] == "observers"
    top = res["table"][0]
    assert top["method"] == "routed" and top["win_rate"] == 1.0 and top["ci95"][0] <= top["score"] <= top["ci95"][1]
    assert (tmp_path / "rep" / "bt.png").is_file() and "| routed |" in (tmp_path / "rep" / "bt.md").read_text()
    bad = _votes_for(man, "routed")
    bad[1][3] = "deadbeef"
    _write_csv(tmp_path / "bad.csv", bad)
    with pytest.raises(InputError, match=r"bad.csv:3: condition 'deadbeef' is not in the manifest"):
        analyze(str(tmp_path / "bad.csv"), study / "manifest.json", tmp_path / "rep2")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a pwcmp votes file"):
        analyze(str(tmp_path / "x.csv"), study / "manifest.json", tmp_path / "rep3")
    assert a.exists() and b.exists()


def _chrome(download_dir: Path, profile: Path):
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
              f"--user-data-dir={profile}"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(driver_bin), options=opts)
    drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return drv


def test_browser_roundtrip(study, tmp_path):
    """export → clicks in headless Chromium → downloaded CSV → Bradley–Terry table."""
    from selenium.webdriver.common.by import By
    man = json.loads((study / "manifest.json").read_text())
    method = {hid: c["method"] for hid, c in man["conditions"].items()}
    rank = {"unified": 0, "routed": 1, "reinhard": 2, "composite": 3}  # this observer's taste
    dl = tmp_path / "downloads"
    dl.mkdir()
    drv = _chrome(dl, tmp_path / "profile")
    try:
        drv.get((study / "index.html").as_uri())
        drv.find_element(By.ID, "observer").send_keys("tester")
        drv.find_element(By.ID, "begin").click()
        sides = []
        for _ in range(3 * 6):
            left, right = drv.find_element(By.ID, "left"), drv.find_element(By.ID, "right")
            lc, rc = left.get_attribute("data-cond"), right.get_attribute("data-cond")
            sides.append(lc)
            (left if rank[method[lc]] < rank[method[rc]] else right).click()
        assert drv.find_element(By.ID, "done").is_displayed()
        drv.find_element(By.ID, "download").click()
        for _ in range(100):
            files = [p for p in dl.glob("*.csv")]
            if files:
                break
            time.sleep(0.1)
    finally:
        drv.quit()
    assert len(files) == 1 and files[0].name.startswith("votes_tester_")
    rows = list(csv.reader(files[0].open()))
    assert rows[0] == CSV_HEADER and len(rows) == 1 + 18
    assert len({r[3] for r in rows[1:]} | {r[4] for r in rows[1:]}) == 12
    assert 0 < sum(r[3] == s for r, s in zip(rows[1:], sides)) == 18  # condition_1 is the left image
    res = analyze(str(files[0]), study / "manifest.json", tmp_path / "rep", bootstrap=20)
    assert [t["method"] for t in res["table"]] == ["unified", "routed", "reinhard", "composite"]
    assert res["table"][0]["wins"] == 9 and res["table"][-1]["wins"] == 0


def test_page_escapes_names_that_look_like_markup():
    from eval.userstudy import _page
    name = "</script><script>alert(1)</script>.png"
    page = _page([{"scene": name, "a": name, "b": "x.png"}])
    script = page[page.index("const TRIALS"):]
    assert "</script><script>" not in script.split("\n", 1)[0]      # cannot close the script element
    data = json.loads(script.split("=", 1)[1].split(";\n", 1)[0].replace("<\\/", "</"))
    assert data[0]["scene"] == name                                  # the name itself survives intact
