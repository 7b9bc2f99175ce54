import csv
import json
import shutil

import numpy as np
import pytest

from common.io import BatchError, InputError
from eval.compose import compose
from eval.pairwise import bradley_terry
from eval.study_page import CSV_EXTRA, CSV_HEADER
from eval.userstudy import FILE_TIME, analyze, export, key_path, order_trials

from ..browser import chrome as _chrome
from ..browser import wait as _wait
from ..conftest import ASSETS


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
    return export(real_composites / "composites", out, zoo=tiny_zoo, seed=0, max_side=96, min_ms=150)


def _key(study) -> dict:
    return json.loads(key_path(study).read_text())


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


def _trials(study):
    page = (study / "index.html").read_text()
    return json.loads(page.split("const TRIALS = ")[1].split(";\n")[0])


def test_export_is_blind(study):
    man = _key(study)
    assert key_path(study).parent == study.parent  # the key lies beside the folder, not in it
    assert man["methods"] == ["composite", "reinhard", "unified", "soft"] and len(man["scenes"]) == 3
    assert len(man["conditions"]) == 12
    files = [p for p in study.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files if p.suffix != ".jpg") == ["index.html"]
    for hid in man["conditions"]:
        assert (study / "images" / f"{hid}.jpg").is_file()
    page = (study / "index.html").read_text()
    for m in man["methods"]:
        assert m not in page  # names hidden from observers
    assert {p.stat().st_mtime for p in files} == {FILE_TIME}  # file times say nothing
    trials = _trials(study)
    assert len(trials) == 3 * 6  # every pair of 4 methods per scene
    assert all(a["scene"] != b["scene"] for a, b in zip(trials, trials[1:]))  # no scene twice in a row
    with pytest.raises(InputError, match="already holds a study"):
        export(study.parent, study, zoo=None)


def test_trial_order_reveals_no_condition():
    """The attack that recovered every condition from an unshuffled page: the id shown first in all
    of a scene's pairs is the first method. After order_trials each id comes first in its three pairs
    as often as chance says, whatever its method, and no scene repeats back to back."""
    from itertools import combinations
    rng = np.random.default_rng(0)
    methods = ["m0", "m1", "m2", "m3"]
    trials = [{"scene": f"s{k}", "a": f"s{k}{a}", "b": f"s{k}{b}"} for k in range(300)
              for a, b in combinations(methods, 2)]
    out = order_trials(trials, rng)
    assert sorted(map(json.dumps, out)) != sorted(map(json.dumps, trials))  # sides swapped
    assert {tuple(sorted((t["a"], t["b"]))) for t in out} == {(t["a"], t["b"]) for t in trials}
    assert all(a["scene"] != b["scene"] for a, b in zip(out, out[1:]))
    first = {m: np.mean([sum(t["a"] == f"s{k}{m}" for t in out if t["scene"] == f"s{k}") for k in range(300)])
             for m in methods}
    assert all(abs(v - 1.5) < 0.2 for v in first.values()), first  # unshuffled: m0 3.0, m3 0.0


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
    man = _key(tmp_path / "st")
    assert len(man["scenes"]) == 3 and "broken" not in man["scenes"]
    assert len(list((tmp_path / "st" / "images").iterdir())) == len(man["conditions"]) == 6


def test_analyze_votes(study, tmp_path):
    man = _key(study)
    a = _write_csv(tmp_path / "a.csv", _votes_for(man, "soft", "ann"))
    b = _write_csv(tmp_path / "b.csv", _votes_for(man, "soft", "bob"))
    res = analyze(str(tmp_path / "*.csv"), key_path(study), tmp_path / "rep", bootstrap=50)
    assert res["votes"] == 2 * 3 * 3 and res["observers"] == 2 and res["resampled"] == "observers"
    assert res["duplicates_dropped"] == 0
    top = res["table"][0]
    assert top["method"] == "soft" and top["win_rate"] == 1.0 and top["ci95"][0] <= top["score"] <= top["ci95"][1]
    assert (tmp_path / "rep" / "bt.png").is_file() and "| soft |" in (tmp_path / "rep" / "bt.md").read_text()
    shutil.copy(a, tmp_path / "a_again.csv")  # the same file downloaded twice counts once
    again = analyze(str(tmp_path / "*.csv"), key_path(study), tmp_path / "rep_dup", bootstrap=10)
    assert again["votes"] == res["votes"] and again["duplicates_dropped"] == 9
    assert "9 duplicate vote(s) dropped" in (tmp_path / "rep_dup" / "bt.md").read_text()
    (tmp_path / "a_again.csv").unlink()
    bad = _votes_for(man, "soft")
    bad[1][3] = "deadbeef"
    _write_csv(tmp_path / "bad.csv", bad)
    with pytest.raises(InputError, match=r"bad.csv:3: condition 'deadbeef' is not in the study key"):
        analyze(str(tmp_path / "bad.csv"), key_path(study), tmp_path / "rep2")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a pwcmp votes file"):
        analyze(str(tmp_path / "x.csv"), key_path(study), tmp_path / "rep3")
    with pytest.raises(InputError, match="not a study key"):
        analyze(str(a), tmp_path / "a.csv", tmp_path / "rep4")
    assert a.exists() and b.exists()


def _key_down(drv, key, repeat=False):
    drv.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: arguments[0], repeat: arguments[1]}));",
                       key, repeat)


def _votes(drv):
    return drv.execute_script("return st ? st.votes.length : -1;")


def _ready(drv):
    """Wait until both images of the trial have shown and the minimum time has passed."""
    _wait(lambda: drv.execute_script("return shownAt !== null && performance.now() - shownAt > MIN_MS + 20;"))


def _vote_by_taste(drv, man, method, rank):
    """Vote every trial for the method ``rank`` prefers (once a wrong choice, a second key at once,
    then undo); the left image's condition and the scene of every vote."""
    from selenium.webdriver.common.by import By
    sides, scenes = [], []
    undone = False
    while _votes(drv) < 3 * 6:
        _ready(drv)
        left, right = drv.find_element(By.ID, "left"), drv.find_element(By.ID, "right")
        lc, rc = left.get_attribute("data-cond"), right.get_attribute("data-cond")
        want_left = rank[method[lc]] < rank[method[rc]]
        if _votes(drv) == 4 and not undone:  # a wrong choice, a second key at once, then undo
            _key_down(drv, "ArrowRight" if want_left else "ArrowLeft")
            _key_down(drv, "ArrowLeft")       # too soon after: the next trial is not ready
            assert _votes(drv) == 5
            _key_down(drv, "Backspace")
            assert _votes(drv) == 4
            undone = True
            continue
        sides.append(lc)
        scenes.append(man["conditions"][lc]["scene"])
        (left if want_left else right).click()
    return sides, scenes


def _check_phone_layout(drv):
    """On a phone the pair is stacked and the hint speaks of tapping."""
    from selenium.webdriver.common.by import By
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True})
    drv.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    drv.refresh()
    _wait(lambda: drv.find_element(By.ID, "study").is_displayed())
    left, right = drv.find_element(By.ID, "left"), drv.find_element(By.ID, "right")
    _wait(lambda: left.size["width"] > 0 and right.size["width"] > 0)
    assert right.location["y"] > left.location["y"] + left.size["height"] - 1  # stacked
    assert left.size["width"] > 150                                               # not a thumbnail
    assert "tap" in drv.find_element(By.ID, "progress").text


def test_browser_roundtrip(study, tmp_path):
    """export → Enter, clicks, key repeats, undo in headless Chromium → CSV → Bradley–Terry; then the
    next participant on the same browser."""
    from selenium.webdriver.common.by import By
    man = _key(study)
    method = {hid: c["method"] for hid, c in man["conditions"].items()}
    rank = {"unified": 0, "soft": 1, "reinhard": 2, "composite": 3}  # this observer's taste
    dl = tmp_path / "downloads"
    dl.mkdir()
    drv = _chrome(dl, tmp_path / "profile")
    try:
        drv.get((study / "index.html").as_uri())
        assert drv.execute_script("return document.querySelector('meta[name=viewport]') !== null;")
        drv.find_element(By.ID, "observer").send_keys("tester")
        _key_down(drv, "Enter")  # Enter starts
        _wait(lambda: drv.find_element(By.ID, "study").is_displayed())
        # a vote before the minimum time, and a held key, are ignored
        _wait(lambda: drv.execute_script("return shownAt !== null;"))
        # a click at once after the images show (in one script, so a slow machine cannot delay it
        # past the minimum time between the two)
        assert drv.execute_script("shownAt = performance.now(); document.getElementById('left').click(); "
                                  "return st.votes.length;") == 0
        _ready(drv)
        _key_down(drv, "ArrowLeft", repeat=True)
        assert _votes(drv) == 0
        sides, scenes = _vote_by_taste(drv, man, method, rank)
        assert all(a != b for a, b in zip(scenes, scenes[1:]))  # no scene twice in a row
        assert drv.find_element(By.ID, "done").is_displayed()
        drv.find_element(By.ID, "download").click()
        files = _wait(lambda: list(dl.glob("*.csv")))
        first = files[0].read_bytes()
        files[0].rename(tmp_path / files[0].name)  # (headless Chromium overwrites a file of the same name)
        files = [tmp_path / files[0].name]
        # next participant: saves this session once more and starts a clean one
        drv.find_element(By.ID, "next").click()
        again = _wait(lambda: list(dl.glob("*.csv")))
        _wait(lambda: again[0].read_bytes() == first)
        assert drv.find_element(By.ID, "start").is_displayed() and _votes(drv) == -1
        drv.find_element(By.ID, "observer").send_keys("second")
        drv.find_element(By.ID, "begin").click()
        _ready(drv)
        drv.find_element(By.ID, "left").click()
        assert drv.execute_script("return st.observer;") == "second" and _votes(drv) == 1
        _check_phone_layout(drv)
    finally:
        drv.quit()
    assert len(files) == 1 and files[0].name.startswith("votes_tester_")
    rows = list(csv.reader(files[0].open()))
    assert rows[0] == CSV_HEADER + CSV_EXTRA and len(rows) == 1 + 18
    assert [int(r[6]) for r in rows[1:]] == list(range(18))                # trial index
    assert all(float(r[8]) >= 150 for r in rows[1:])                      # response time ≥ the minimum
    assert all("x" in r[9] and r[7].endswith("Z") for r in rows[1:])      # screen size, timestamp
    assert len({r[3] for r in rows[1:]} | {r[4] for r in rows[1:]}) == 12
    assert sum(r[3] == s for r, s in zip(rows[1:], sides)) == 18          # condition_1 is the left image
    res = analyze(f"{dl}/*.csv,{files[0]}", key_path(study), tmp_path / "rep", bootstrap=20)
    assert res["duplicates_dropped"] == 18                                # the session saved twice
    assert [t["method"] for t in res["table"]] == ["unified", "soft", "reinhard", "composite"]
    assert res["table"][0]["wins"] == 9 and res["table"][-1]["wins"] == 0


def test_page_escapes_names_that_look_like_markup():
    from eval.study_page import render_page as _page
    name = "</script><script>alert(1)</script>.png"
    page = _page([{"scene": name, "a": name, "b": "x.png"}])
    script = page[page.index("const TRIALS"):]
    assert "</script><script>" not in script.split("\n", 1)[0]      # cannot close the script element
    data = json.loads(script.split("=", 1)[1].split(";\n", 1)[0].replace("<\\/", "</"))
    assert data[0]["scene"] == name                                  # the name itself survives intact


def test_bt_plot_has_title_axis_and_values():
    from eval.userstudy import _bar_plot
    table = [{"method": "a", "score": 0.5, "ci95": [0.2, 0.8]}, {"method": "b", "score": -0.5, "ci95": [-0.9, -0.1]}]
    im = np.asarray(_bar_plot(table, "T"))
    assert im.shape[1] == 720 and im.shape[0] > 44 + 2 * 44 + 40                # room for title and axis
    assert (im[:40] < 128).any() and (im[-40:] < 128).any()                     # title on top, axis label below


def test_export_records_the_detector_score_and_runs_the_gated_default(real_composites, detector_zoo, tmp_path):
    out = export(real_composites / "composites", tmp_path / "s", methods="composite,default,ungated", zoo=detector_zoo,
                 seed=1, max_side=64)
    key = _key(out)
    scores = key["detector_scores"]
    assert set(scores) == set(key["scenes"]) and all(0 <= v <= 1 for v in scores.values())
    assert {c["method"] for c in key["conditions"].values()} == {"composite", "default", "ungated"}
    assert not (out / "index.html").read_text().count("detector_scores")      # the key stays outside the study
