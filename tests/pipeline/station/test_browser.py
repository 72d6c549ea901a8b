"""A whole visit driven from the technician console in a real headless Chromium against the
simulated lab: runner → static trial (the synthetic runner standing: calibrated, not scored) →
two running trials at 3.5 and 3.2 m/s (runner display open; scored with the static values) →
results.

Skips cleanly where Chromium, its driver or selenium is missing (``.ci/run`` installs them).
Set ``TREADLAB_STATION_SCREENSHOTS=DIR`` to keep the two pages' screenshots. The running trials
last 9 s and score from 5 steps per side; ``TREADLAB_STATION_TRIAL_S=22`` makes every trial 22 s
long on the shipped simulated lab exactly as ``./run station`` serves it (scoring from 20 steps
per side).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import h5py
import pytest

from treadlab.acquisition.archive import is_derived_file, read_derived
from treadlab.acquisition.sim.synthetic import SyntheticRunner

from .conftest import lab_toml, trial_done
from .test_treadmill import treadmill_lab

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException, StaleElementReferenceException, TimeoutException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

TRIAL_S = float(os.environ.get("TREADLAB_STATION_TRIAL_S", "9"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver"
                                          if os.path.exists("/usr/bin/chromedriver") else None)
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Chromium and chromedriver not installed "
                                       "(apt-get install chromium chromium-driver)")


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    # the driver path is given: selenium never tries to download one
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


ROWS_JS = """return [...document.querySelectorAll('#trials tbody tr')].map(r => ({
  id: r.dataset.id, status: r.dataset.status, processing: r.dataset.processing,
  scores: [...r.querySelectorAll('td.score')].map(c => c.textContent),
  calibration: (r.querySelector('td.calibration') || {}).textContent || null,
  report: (r.querySelector('a.report') || {}).href || null}))"""


def _wait(drv, predicate, timeout, what):
    # the console re-renders twice a second: an element found may be replaced before it is read
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.2,
                             ignored_exceptions=[StaleElementReferenceException,
                                                 NoSuchElementException]
                             ).until(lambda d: predicate(d))
    except TimeoutException:
        what = what() if callable(what) else what
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def _fill(drv, element_id, value):
    box = drv.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(str(value))


def _begin(drv, kind, duration, speed=None, note=""):
    """Fill the trial form and start; returns once the console shows it recording."""
    Select(drv.find_element(By.ID, "trial-kind")).select_by_value(kind)
    if speed is not None:
        _fill(drv, "trial-speed", speed)
    _fill(drv, "trial-duration", duration)
    _fill(drv, "trial-note", note)
    _wait(drv, lambda d: d.find_element(By.ID, "trial-start").is_enabled(), 30,
          "the start button (healthy devices, no trial recording): "
          + drv.find_element(By.ID, "gate").text)
    drv.find_element(By.ID, "trial-start").click()
    _wait(drv, lambda d: "RECORDING" in d.find_element(By.ID, "trial-now").text, 15,
          f"the {kind} trial recording; console says: {drv.find_element(By.ID, 'error').text}"
          f" {drv.find_element(By.ID, 'gate').text}")


def _end(drv, duration):
    _wait(drv, lambda d: "RECORDING" not in d.find_element(By.ID, "trial-now").text,
          duration + 30, "the trial to end")


def test_visit_from_the_console(tmp_path, station_factory, browser):
    # short trials score from 5 steps per side; 20 s or more: the shipped lab as it is
    st = station_factory(config=None if TRIAL_S >= 20 else lab_toml(tmp_path))
    drv = browser
    drv.get(st.url + "/")
    console = drv.current_window_handle
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, ".device[data-healthy=true]")
          and len(d.find_elements(By.CSS_SELECTOR, ".device[data-healthy=true]")) == 2, 40,
          "both devices OK in the console")
    # a bad value is refused with a one-line error naming the field
    _fill(drv, "runner-id", "V 01")
    _fill(drv, "runner-mass", 68.5)
    _fill(drv, "runner-leg", 910)
    drv.find_element(By.ID, "runner-save").click()
    _wait(drv, lambda d: "runner.id:" in d.find_element(By.ID, "error").text, 10,
          "the error naming runner.id")
    _fill(drv, "runner-id", "V001")
    drv.find_element(By.ID, "runner-save").click()
    _wait(drv, lambda d: "Runner V001" in d.find_element(By.ID, "runner-now").text, 10,
          "the runner registered")

    static_s = 6 if TRIAL_S < 20 else TRIAL_S
    _begin(drv, "static", static_s, note="standing")
    _end(drv, static_s)

    # the runner display in a second window; the cues: pelvic drop and cadence, with metronome
    drv.find_element(By.ID, "cue-cadence").click()
    drv.find_element(By.ID, "fb-metronome").click()
    drv.find_element(By.ID, "feedback-save").click()
    drv.switch_to.new_window("window")
    drv.get(st.url + "/runner")
    runner = drv.current_window_handle
    _wait(drv, lambda d: d.find_elements(By.ID, "value-cadence"), 15, "two cue panels")
    drv.switch_to.window(console)
    _begin(drv, "running", TRIAL_S, speed=3.5, note="first")
    drv.switch_to.window(runner)
    _wait(drv, lambda d: int(d.find_element(By.ID, "value-pelvic_drop")
                             .get_attribute("data-step")) >= 8, 30,
          "the runner display updated at 8 toe offs")
    state = drv.find_element(By.ID, "cue-pelvic_drop").get_attribute("data-state")
    word = drv.find_element(By.ID, "word-pelvic_drop").text
    assert state in ("in", "high", "low")
    assert word.split(" ", 1)[1] in ("ON TARGET", "TOO HIGH", "TOO LOW")   # never colour alone
    assert float(drv.find_element(By.ID, "cadence").text) > 120
    shots = Path(os.environ.get("TREADLAB_STATION_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(shots / "station-runner.png"))
    drv.switch_to.window(console)
    _end(drv, TRIAL_S)

    # second running trial with feedback on every other step
    Select(drv.find_element(By.ID, "fb-fading")).select_by_value("every_other")
    drv.find_element(By.ID, "feedback-save").click()
    time.sleep(0.5)
    paused = []
    _begin(drv, "running", TRIAL_S, speed=3.2, note="every other step")
    drv.switch_to.window(runner)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and not paused:
        if drv.find_element(By.ID, "cue-pelvic_drop").get_attribute("data-state") == "paused":
            paused.append(drv.find_element(By.ID, "word-pelvic_drop").text)
        time.sleep(0.05)
    assert paused == ["FEEDBACK PAUSED"]
    drv.switch_to.window(console)

    # results: every trial processed, the causes listed with a link to the report
    rows = _wait(drv, lambda d: (lambda r: r if len(r) == 3 and all(
        x["processing"] == "done" for x in r) else False)(d.execute_script(ROWS_JS)), 120,
        lambda: "three processed trials (the station's own list: "
        + str([(t["id"], t["processing"]) for t in st.call("GET", "/api/trials")[1]])
        + "; console: " + str(drv.execute_script(
            "return [document.getElementById('link').textContent, "
            "Date.now() - (window.__lastMessage || 0)]")) + ")")
    for row in rows:
        assert row["status"] == "complete"
    # the static trial is a calibration, listed with its standing values and no scores
    assert rows[0]["scores"] == [] and rows[0]["calibration"].startswith("calibrated: "), rows[0]
    # the running trials: all four causes scored with numbers, each with its report
    for row in rows[1:]:
        assert len(row["scores"]) == 4 and all(s.isdigit() for s in row["scores"]), row
        assert row["report"], row
    height = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(1280, min(int(height) + 140, 4000))      # the whole page in one image
    time.sleep(0.5)
    drv.save_screenshot(str(shots / "station-console.png"))
    drv.get(rows[1]["report"])
    assert "report" in drv.page_source.lower()

    # the runner folder: the static and two running trials, each processed and scored
    folder = tmp_path / "data" / "V001"
    archives = sorted(p for p in folder.glob("*.h5") if not is_derived_file(p))
    assert [p.name.split("_")[1] for p in archives] == ["static", "running", "running"]
    truth = SyntheticRunner().standing_truth()
    static = trial_done(st, f"V001/{archives[0].stem}", timeout=5)
    cal = static["calibration"]
    assert static["processing"] == "done" and not static.get("scores")
    for side in ("left", "right"):     # ASIS to the (lateral) malleolus marker, standing
        assert abs(cal[f"leg_length_{side}_mm"] / truth["asis_to_lateral_malleolus_mm"] - 1) < 0.01
        assert abs(cal[f"leg_length_{side}_mm"] / truth["leg_length_mm"] - 1) < 0.05
    assert abs(cal["pelvic_obliquity_deg"] - truth["pelvic_obliquity_deg"]) < 0.5
    assert abs(cal["pelvic_tilt_deg"] - truth["pelvic_tilt_deg"]) < 1.0
    assert abs(cal["inter_asis_mm"] - truth["inter_asis_mm"]) < 3.0
    with h5py.File(archives[0], "r") as f:  # a calibration: never processed nor scored
        assert f.attrs["status"] == "complete"
        assert f.attrs["static_calibration"] == static["id"]
    assert "scores" not in (read_derived(archives[0]) or {})
    for p, speed in zip(archives[1:], (3.5, 3.2)):
        done = trial_done(st, f"V001/{p.stem}", timeout=5)
        assert done["processing"] == "done" and done["static_source"] == static["id"]
        # the default synthetic runner is a healthy runner: every cause in the low zone
        assert all(v is not None and v < 50 for v in done["scores"].values()), done["scores"]
        with h5py.File(p, "r") as f:
            assert f.attrs["status"] == "complete" and "derived" in f
            assert f.attrs["belt_speed_m_s"] == speed
            assert f.attrs["simulated_runner_speed_m_s"] == speed    # the runner ran at it
            assert f.attrs["static_calibration"] == static["id"]
            assert f.attrs["static_pelvic_obliquity_deg"] == cal["pelvic_obliquity_deg"]
            assert f["subject"].attrs["leg_length_left_mm"] == cal["leg_length_left_mm"]
    with h5py.File(archives[1], "r") as f:
        assert f["station/feedback"].shape[0] >= 8        # DOM latency of the shown steps
        assert f["station"].attrs["feedback_dom_p99_ms"] > 0


def test_speed_protocol_from_the_console(tmp_path, station_factory, browser):
    """A lab with a treadmill controller (the simulated Bertec): the console's protocol field
    (a bad one refused naming trial.protocol), the runner display's stage speed and time left,
    stage 1 then stage 2; once processed, the trial list's scores per stage."""
    st = station_factory(config=treadmill_lab(tmp_path))
    assert st.call("POST", "/api/runner", {"id": "B01", "body_mass_kg": 70,
                                           "leg_length_mm": 900})[0] == 200
    drv = browser
    drv.get(st.url + "/")
    console = drv.current_window_handle
    _wait(drv, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".device[data-healthy=true]")) == 3,
          40, "force, markers and belt OK in the console")
    assert "belt speed L/R" in drv.find_element(By.ID, "device-belt").text
    drv.switch_to.new_window("window")
    drv.get(st.url + "/runner")
    runner = drv.current_window_handle
    assert not drv.find_element(By.ID, "stage").is_displayed()
    drv.switch_to.window(console)
    Select(drv.find_element(By.ID, "trial-kind")).select_by_value("running")
    _fill(drv, "trial-protocol", "2.5:10,9:10")
    drv.find_element(By.ID, "trial-duration").clear()        # the protocol's length
    _wait(drv, lambda d: d.find_element(By.ID, "trial-start").is_enabled(), 30, "start enabled")
    drv.find_element(By.ID, "trial-start").click()
    _wait(drv, lambda d: "trial.protocol: stage 2: 9 m/s exceeds" in
          d.find_element(By.ID, "error").text, 10, "the error naming trial.protocol")
    _fill(drv, "trial-protocol", "2.5:10,3.5:10")
    drv.find_element(By.ID, "trial-start").click()
    _wait(drv, lambda d: "stage 1/2" in d.find_element(By.ID, "trial-now").text, 15,
          "the console showing stage 1")
    drv.switch_to.window(runner)
    _wait(drv, lambda d: d.find_element(By.ID, "stage").is_displayed()
          and d.find_element(By.ID, "stage-speed").text == "2.5", 10, "stage 1 at 2.5 m/s")
    left = drv.find_element(By.ID, "stage-left").text
    assert left.endswith(" left") and 0 <= int(left.split()[0].split(":")[1]) <= 10, left
    assert "next 3.5 m/s" in drv.find_element(By.ID, "stage-next").text
    _wait(drv, lambda d: d.find_element(By.ID, "stage-speed").get_attribute("data-stage") == "2"
          and d.find_element(By.ID, "stage-speed").text == "3.5", 15, "stage 2 at 3.5 m/s")
    assert "last stage" in drv.find_element(By.ID, "stage-next").text
    _wait(drv, lambda d: not d.find_element(By.ID, "stage").is_displayed(), 15,
          "the stage box gone after the trial")
    t = st.call("GET", "/api/trials")[1][-1]
    assert t["protocol"] == "2.5:10,3.5:10" and t["status"] == "complete"
    drv.switch_to.window(console)
    cells = _wait(drv, lambda d: (lambda r: r if len(r) == 2 else False)(d.execute_script(
        "return [...document.querySelectorAll('#trials td.by-speed .plateau')]"
        ".map(p => p.textContent)")), 90, lambda: "two plateaus in the trial list: "
        + str(trial_done(st, t["id"], timeout=1).get("scores_by_speed")))
    assert [c.split(":")[0] for c in cells] == ["2.5 m/s", "3.5 m/s"], cells
    assert all(len(c.split(": ")[1].split(" / ")) == 4 for c in cells), cells
