"""End to end: a 2.5 → 3.5 → 4.5 m/s speed protocol captured through the simulated lab (the
synthetic runner follows the simulated Bertec belt), processed by the CLI: per-step belt
speeds on the stages, ramp steps not steady, one score block per stage, all low for the
healthy runner."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from treadlab.acquisition.archive import read_belt, read_derived, validate_session
from treadlab.pipeline.cli import main

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
STAGES = (2.5, 3.5, 4.5)
STAGE_S = 22.0


@pytest.fixture(scope="module")
def protocol_session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protocol")
    lab = folder / "lab.toml"
    lab.write_text((REPO / "config" / "lab_simulated.toml").read_text()
                   + '\n[treadmill]\ndriver = "bertec"\nhost = "auto"\naccel_m_s2 = 0.5\n')
    t0 = time.monotonic()
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["capture", "--config", str(lab), "--subject", "protocol", "--body-mass",
                     "70", "--out", str(folder), "--speed-protocol",
                     ",".join(f"{v}:{STAGE_S:g}" for v in STAGES)])
    assert code == 0
    text = out.getvalue()
    path = Path(text.splitlines()[0])
    summary = json.loads(text[text.index("{"):])
    return path, summary, time.monotonic() - t0


def test_per_step_speeds_follow_the_stages_and_ramps_are_not_steady(protocol_session):
    path, summary, elapsed = protocol_session
    assert validate_session(path) == []
    c = read_derived(path)["contacts"]
    with h5py.File(path) as f:
        belt = read_belt(f)
    steady = c["belt_steady"] & c["valid"]
    v = c["belt_speed"]
    nearest = np.asarray(STAGES)[np.argmin(np.abs(v[steady, None] - np.asarray(STAGES)), 1)]
    assert np.abs(v[steady] - nearest).max() < 0.05
    for stage in STAGES:
        assert (np.abs(v[steady] - stage) < 0.05).sum() >= 40, stage
    # ramp: the belt between two stage speeds; every contact whose stance overlaps it
    t, s = belt["time"], belt["speed"].mean(axis=1)
    moving = ~np.any(np.abs(s[:, None] - np.asarray(STAGES)) < 0.005, axis=1)
    ramps = t[moving]
    on_ramp = np.array([np.any((ramps >= a) & (ramps <= b))
                        for a, b in zip(c["t_strike"], c["t_off"])])
    assert on_ramp.sum() >= 10 and not c["belt_steady"][on_ramp].any()
    # the runner itself changed speed: shorter contacts and a longer heel lead each stage
    ct = [np.median(c["contact_time"][steady & (np.abs(v - st) < 0.05)]) for st in STAGES]
    heel = [np.median(c["overstride"][steady & (np.abs(v - st) < 0.05)]) for st in STAGES]
    assert ct[0] > ct[1] + 0.03 > ct[2] + 0.06 and heel[0] + 20 < heel[1] < heel[2] - 20
    assert elapsed < 3 * STAGE_S + 30
    ncdump = shutil.which("ncdump")
    if ncdump is not None:        # the live /raw/belt has named dimensions for netCDF readers
        out = subprocess.run([ncdump, "-h", str(path)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr
        belt = out.stdout[out.stdout.index("group: belt"):]
        belt = belt[:belt.index("} // group belt")]
        assert "speed(time, belt)" in belt and "phony_dim" not in belt


def test_scores_by_speed_three_plateaus_all_low(protocol_session):
    path, summary, _ = protocol_session
    by = read_derived(path)["scores_by_speed"]
    assert sorted(set(by["speed_m_s"].tolist())) == list(STAGES)
    assert np.isfinite(by["score"]).all() and by["score"].max() < 50, by["score"]
    assert set(summary["scores_by_speed"]) == {"2.5", "3.5", "4.5"}
    status = dict(zip(summary["status"], summary["status"].values()))
    assert "mu at 2.50-4.50 m/s" in status["limited_hip_extension"]
    assert "steps excluded: belt speed changing (not steady)" in status["overstride"]
    assert max(s for s in summary["scores"].values() if s is not None) < 50
