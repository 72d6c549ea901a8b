"""``treadlab inspect`` lists ``/raw/belt`` (rate, samples, speed range per belt) and
``/raw/analog`` (rate, channels with units, samples, gaps from the device's sample numbers):
a real archive written by the recorder from blocks as a capture hands them over."""
from __future__ import annotations

import time

import numpy as np

from treadlab.acquisition.archive import format_inspection, inspect_session
from treadlab.acquisition.capture.recorder import Recorder
from treadlab.acquisition.sources.base import Block
from treadlab.pipeline.cli import main


def _archive(path, analog_gap: int = 0):
    rec = Recorder(path, {"subject_id": "S1", "lab": "test", "belt_speed_m_s": 3.0,
                          "body_mass_kg": 70.0},
                   plates=["left", "right"], origin=np.zeros((2, 3)),
                   corners=np.zeros((2, 4, 3)), force_rate_hz=1000.0, labels=["LASI", "RASI"],
                   marker_rate_hz=100.0, t0_host=0.0, belts=["left", "right"],
                   belt_rate_hz=100.0,
                   analog={"channels": ["EMG_1", "Trigger"], "units": ["mV", "V"],
                           "rate_hz": 1000.0, "device": "qtm://test analog device 1"}).start()
    t0 = time.monotonic()
    for k in range(100):                       # 2 s: 20 ms blocks
        seq = np.arange(20 * k, 20 * k + 20)
        host = t0 + seq / 1000.0
        w = np.zeros((20, 2, 6), np.float32)
        rec.put(Block("force", seq / 1000.0, host, w, seq=seq), seq / 1000.0)
        aseq = seq + (analog_gap if k >= 50 else 0)     # the device skipped samples
        rec.put(Block("analog", aseq / 1000.0, host,
                      np.stack([np.sin(aseq), aseq % 2], 1).astype(np.float32), seq=aseq),
                aseq / 1000.0)
        bseq = np.arange(2 * k, 2 * k + 2)
        speed = np.column_stack([np.full(2, 2.5 + 0.01 * k), np.full(2, 2.4 + 0.01 * k)])
        rec.put(Block("belt", t0 + bseq / 100.0, t0 + bseq / 100.0, speed.astype(np.float32),
                      seq=bseq), bseq / 100.0)
        mseq = np.arange(2 * k, 2 * k + 2)
        rec.put(Block("markers", mseq / 100.0, t0 + mseq / 100.0,
                      np.ones((2, 2, 3), np.float32), seq=mseq), mseq / 100.0)
    rec.close(status="complete")
    return path


def test_inspect_lists_belt_and_analog(tmp_path, capsys):
    path = _archive(tmp_path / "s.h5", analog_gap=7)
    info = inspect_session(path)
    belt, analog = info["streams"]["belt"], info["streams"]["analog"]
    assert belt["rate_hz"] == 100.0 and belt["samples"] == 200 and belt["belts"] == [
        "left", "right"]
    np.testing.assert_allclose(belt["speed_range_m_s"]["left"], [2.5, 3.49], atol=1e-5)
    np.testing.assert_allclose(belt["speed_range_m_s"]["right"], [2.4, 3.39], atol=1e-5)
    assert analog["channels"] == ["EMG_1", "Trigger"] and analog["units"] == ["mV", "V"]
    assert analog["samples"] == 2000 and analog["gaps"] == 1 and analog["missing_samples"] == 7
    text = format_inspection(info)
    lines = text.splitlines()
    assert any(ln.startswith("  belt       100 Hz  200 samples") for ln in lines), text
    assert "speed left 2.50-3.49 m/s, right 2.40-3.39 m/s" in text
    row = next(ln for ln in lines if ln.startswith("  analog "))
    assert "1000 Hz  2000 samples" in row and "gaps 1 (7 samples missing" in row, row
    assert "2 channels from qtm://test analog device 1:" in text
    assert "EMG_1 (mV), Trigger (V)" in text
    assert len(lines) < 30                          # one screen
    assert main(["inspect", str(path)]) == 0
    assert "EMG_1 (mV)" in capsys.readouterr().out


def test_inspect_without_belt_or_analog_says_nothing_about_them(tmp_path):
    rec = Recorder(tmp_path / "plain.h5", {"subject_id": "S1", "lab": "test",
                                           "belt_speed_m_s": 3.0, "body_mass_kg": 70.0},
                   plates=["left"], origin=np.zeros((1, 3)), corners=np.zeros((1, 4, 3)),
                   force_rate_hz=1000.0, labels=["LASI"], marker_rate_hz=100.0,
                   t0_host=0.0).start()
    rec.close(status="complete")
    info = inspect_session(tmp_path / "plain.h5")
    assert "belt" not in info["streams"] and "analog" not in info["streams"]
    text = format_inspection(info)
    assert "\n  belt " not in text and "\n  analog " not in text
