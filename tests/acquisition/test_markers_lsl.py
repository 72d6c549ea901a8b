"""MarkersLSL and ForceLSL against real LSL outlets on this machine (machine-scoped discovery)."""
from __future__ import annotations

import uuid

import numpy as np
import pylsl
import pytest

from treadlab.acquisition.sources.forceplate_serial import (
    ForceCalibration, ForcePlateSettings, PlateCalibration)
from treadlab.acquisition.sources.force_lsl import ForceLSL
from treadlab.acquisition.sources.lsl import mocap_stream_info
from treadlab.acquisition.sources.markers_lsl import MarkersLSL
from treadlab.acquisition.sources.markers_udp import MarkerSettings
from treadlab.config.errors import DeviceError
from tests.conftest import collect_blocks

RATE = 200.0


def mocap_outlet(name, labels):
    return pylsl.StreamOutlet(mocap_stream_info(name, labels, RATE, f"test-{name}"))


def test_markers_by_label_with_gap_counted():
    name = f"treadlab-test-{uuid.uuid4().hex[:8]}"
    outlet = mocap_outlet(name, ["RASI", "LASI", "SACR"])       # stream order differs
    src = MarkersLSL(MarkerSettings(driver="markers_lsl", rate_hz=RATE, stream_name=name,
                                    labels=["LASI", "RASI", "LTHI"]), open_timeout=10.0)
    with src:
        t0 = pylsl.local_clock()
        frames = [i for i in range(100) if not 40 <= i < 45]      # 5 samples never sent
        for i in frames:
            sample = [i * 10.0 + j for j in range(9)]
            outlet.push_sample(sample, t0 + i / RATE)
        blocks = collect_blocks(src, len(frames))
    del outlet
    data = np.concatenate([b.data for b in blocks])
    seq = np.concatenate([b.seq for b in blocks])
    t = np.concatenate([b.device_time for b in blocks])
    assert data.shape == (95, 3, 3)
    assert np.allclose(data[:, 0], np.array(frames)[:, None] * 10.0 + [3, 4, 5])   # LASI
    assert np.allclose(data[:, 1], np.array(frames)[:, None] * 10.0 + [0, 1, 2])   # RASI
    assert np.isnan(data[:, 2]).all()                                             # LTHI absent
    assert np.array_equal(seq, np.array(frames) - frames[0])
    assert np.allclose(np.diff(t), np.diff(frames) / RATE, atol=1e-6)
    assert abs(t[0] - t0) < 0.5                 # loopback: time_correction ≈ 0
    assert src.counters["drops"] == 5
    kinds = [e[2] for e in src.drain_events()]
    assert "labels" in kinds and "drop" in kinds


def test_force_counts_over_lsl_with_tare():
    name = f"treadlab-force-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(name, "Force", 12, 1000.0, pylsl.cf_int16, f"test-{name}")
    outlet = pylsl.StreamOutlet(info)
    plates = [PlateCalibration("treadmill", list(range(6)), np.diag([500.0] * 3 + [100.0] * 3))]
    settings = ForcePlateSettings(driver="forceplate_lsl", stream_name=name, rate_hz=1000.0,
                                  channels=12, tare_seconds=0.05)
    src = ForceLSL(settings, plates, open_timeout=10.0)
    with src:
        offset = np.arange(12) * 10
        t0 = pylsl.local_clock()
        unloaded = np.tile(offset, (50, 1)).astype(np.int16)
        loaded = (offset + np.arange(50)[:, None]).astype(np.int16)
        outlet.push_chunk(unloaded.tolist(), t0 + 49 / 1000.0)
        outlet.push_chunk(loaded.tolist(), t0 + 99 / 1000.0)
        assert src.wait_tare(15.0)
        blocks = collect_blocks(src, 100)
    del outlet
    raw = np.concatenate([b.raw for b in blocks])
    wrench = np.concatenate([b.data for b in blocks])
    assert np.array_equal(raw, np.r_[unloaded, loaded])
    assert np.allclose(src.zero, offset)
    cal = ForceCalibration(plates, 12, settings.volts_per_count, zero=offset)
    assert np.allclose(wrench, cal.wrench(raw), atol=1e-3)
    assert np.abs(wrench[:50]).max() == 0


def test_missing_stream_names_it():
    src = MarkersLSL(MarkerSettings(driver="markers_lsl", stream_name="treadlab-nope-xyz",
                                    labels=["LASI"]), open_timeout=0.5)
    with pytest.raises(DeviceError, match="treadlab-nope-xyz"):
        src.open()
