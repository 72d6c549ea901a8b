"""The crash-safe recorder: a real writer subprocess killed with SIGKILL, then ``recover``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from treadlab.acquisition.sources.base import Block
from treadlab.acquisition.capture.recorder import Recorder, clear_status_flags, lock_path, recover
from treadlab.config.constants import G
from treadlab.config.errors import InputError

FORCE_HZ = 1000.0
MARKER_HZ = 100.0

# A writer that records synthetic blocks in real time and reports what it flushed.
WRITER = r"""
import sys, time
import numpy as np
from treadlab.acquisition.sources.base import Block
from treadlab.acquisition.capture.recorder import Recorder

path = sys.argv[1]
rec = Recorder(path, {"subject_id": "S1", "lab": "test", "belt_speed_m_s": 3.0}, plates=["left", "right"],
               origin=np.zeros((2, 3)), corners=np.zeros((2, 4, 3)), force_rate_hz=1000.0,
               labels=["LASI", "RASI"], marker_rate_hz=100.0, n_channels=12,
               counts_dtype=np.int16, flush_interval_s=0.5).start()
t0 = time.monotonic()
sent = 0
k = 0
while True:
    # 20 ms of force, 2 marker frames, as a capture would hand them over
    seq = np.arange(sent, sent + 20)
    dev = 50.0 + seq / 1000.0
    host = np.full(20, t0 + (sent + 20) / 1000.0)
    w = np.zeros((20, 2, 6), np.float32); w[:, :, 2] = seq[:, None] % 1000
    rec.put(Block("force", dev, host, w, raw=(seq[:, None] % 100 + np.zeros((1, 12))).astype(np.int16),
                  seq=seq), host - t0)
    mseq = np.arange(sent // 10, sent // 10 + 2)
    rec.put(Block("markers", 7.0 + mseq / 100.0, np.full(2, host[0]),
                  np.full((2, 2, 3), 1.0, np.float32), seq=mseq), host[:2] - t0)
    sent += 20
    k += 1
    if k % 25 == 0:
        rec.event(time.monotonic(), "force", "drop", "test event")
    print(f"sent {sent} flushed {rec.written['force']}", flush=True)
    delay = t0 + sent / 1000.0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def _validate(path):
    from treadlab.acquisition.archive import validate_session

    return validate_session(path)


@pytest.mark.timeout(60)
def test_sigkill_mid_capture_then_recover(tmp_path):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sent = flushed = 0
    try:
        deadline = time.monotonic() + 40
        while flushed < 3 * FORCE_HZ and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, s, _, fl = line.split()
            sent, flushed = int(s), int(fl)
        # while the writer lives, recover refuses to touch the file
        with pytest.raises(InputError, match="still recording"):
            recover(path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert flushed >= 3 * FORCE_HZ, proc.stderr.read()

    # a killed SWMR writer leaves the file refused by ordinary opens
    with pytest.raises(OSError):
        h5py.File(path, "r")
    assert lock_path(path).exists()          # left behind by the killed writer
    msg = recover(path)
    assert "interrupted" in msg
    assert not lock_path(path).exists()
    assert _validate(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
        n = f["raw/force/time"].shape[0]
        # everything flushed survived; at most about the last second is missing
        assert n >= flushed
        assert sent - n <= 2 * FORCE_HZ
        for name in ("wrench", "counts", "device_time", "host_time", "seq"):
            assert f["raw/force"][name].shape[0] == n
        seq = f["raw/force/seq"][()]
        np.testing.assert_array_equal(seq, np.arange(n))
        np.testing.assert_array_equal(f["raw/force/wrench"][:, 0, 2], seq % 1000)
        np.testing.assert_array_equal(f["raw/force/counts"][:, 3], seq % 100)
        t = f["raw/force/time"][()]
        assert np.all(np.diff(t) > 0)
        assert f["raw/markers/time"].shape[0] == f["raw/markers/positions"].shape[0] > 0
        kinds = [k.decode() if isinstance(k, bytes) else k for k in f["raw/log/kind"][()]]
        assert "drop" in kinds and "status" in kinds
    # recovering twice is harmless
    assert "interrupted" in recover(path)


@pytest.mark.timeout(30)
def test_clean_close_refits_clock_and_sets_status(tmp_path):
    path = tmp_path / "clean.h5"
    zero = np.arange(12, dtype=np.int16)
    rec = Recorder(path, {"subject_id": "S2", "lab": "test", "belt_speed_m_s": 3.0}, plates=["treadmill"],
                   origin=np.zeros((1, 3)), corners=np.zeros((1, 4, 3)), force_rate_hz=FORCE_HZ,
                   labels=["LASI"], marker_rate_hz=MARKER_HZ, n_channels=12,
                   counts_dtype=np.int16,
                   calibration={"volts_per_count": 1e-3, "zero": zero,
                                "channels": np.arange(6)[None], "matrix": np.eye(6)[None]},
                   t0_host=100.0).start()
    rng = np.random.default_rng(3)
    # device clock 100 ppm fast with offset; receipts delayed by jitter
    for k in range(100):
        seq = np.arange(k * 50, (k + 1) * 50)
        true = 100.0 + seq / FORCE_HZ
        dev = (true - 90.0) * (1 + 1e-4)
        host = np.full(50, true[-1] + 1e-4 + rng.exponential(1e-3))
        w = np.zeros((50, 1, 6), np.float32)
        w[:, 0, 2] = 700.0
        rec.put(Block("force", dev, host, w, raw=np.zeros((50, 12), np.int16), seq=seq),
                host - 100.0 + 0.05)  # deliberately poor provisional times
    rec.event(150.0, "markers", "reconnect", "test")
    out = rec.close()
    assert out == path
    assert not lock_path(path).exists()
    assert _validate(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["body_mass_kg"] == pytest.approx(700.0 / G)
        t = f["raw/force/time"][()]
        np.testing.assert_allclose(t, np.arange(5000) / FORCE_HZ + 1e-4, atol=0.5e-3)
        np.testing.assert_array_equal(f["raw/force/calibration/zero"][()], zero)
        assert f["raw/log/time"][0] == pytest.approx(50.0)
        assert f["raw/force/time"].chunks[0] <= FORCE_HZ


def test_clear_status_flags_on_a_clean_file_is_a_no_op(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f["a"] = np.arange(3)
    assert clear_status_flags(path) is False
    with h5py.File(path, "r") as f:
        assert list(f["a"][()]) == [0, 1, 2]
    assert os.path.getsize(path) > 0


def test_recover_reports_bad_input_in_one_line(tmp_path, capsys):
    from treadlab.pipeline.cli import main

    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(InputError, match="junk.h5"):
        recover(junk)
    with pytest.raises(InputError, match="no such file"):
        recover(tmp_path / "missing.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    assert main(["recover", str(plain)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plain.h5" in err and "treadlab.session" in err
