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
               counts_dtype=np.int16, flush_interval_s=0.5, force_cop=True, belts=["left", "right"],
               analog={"channels": ["Trigger", "EMG_1"], "units": ["V", "mV"], "rate_hz": 1000.0}).start()
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
                  seq=seq, cop=np.full((20, 2, 3), 5.0, np.float32)), host - t0)
    rec.put(Block("analog", dev, host, np.stack([seq % 7, seq % 11], 1).astype(np.float32),
                  seq=seq), host - t0)
    rec.put(Block("belt", host[:2], host[:2], np.full((2, 2), 3.0, np.float32),
                  seq=np.arange(sent // 10, sent // 10 + 2)), host[:2] - t0)
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
        for name in ("wrench", "counts", "device_time", "host_time", "seq", "cop_device"):
            assert f["raw/force"][name].shape[0] == n
        # the analog and belt streams are cut back with the others, each to its own
        # consistent length
        a = f["raw/analog"]
        na = a["time"].shape[0]
        assert na >= flushed and all(a[k].shape[0] == na for k in
                                     ("data", "device_time", "host_time", "seq"))
        np.testing.assert_array_equal(a["seq"][()], np.arange(na))
        np.testing.assert_array_equal(a["data"][:, 1], np.arange(na) % 11)
        b = f["raw/belt"]
        nb = b["time"].shape[0]
        assert nb > 0 and all(b[k].shape[0] == nb for k in ("speed", "host_time", "seq"))
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
        # the fit's offset stays host − device in host time (fitted on session time)
        assert f["raw/force"].attrs["clock_offset_s"] == pytest.approx(90.0 - 9e-4, abs=2e-3)
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


# --- recover never reduces a complete file, never fails silently, never alters a file it rejects

def _recorded(path, seconds=2.0):
    """A complete archive recorded in-process by the real Recorder (force 1 kHz, markers 100 Hz)."""
    rec = Recorder(path, {"subject_id": "S1", "lab": "test", "belt_speed_m_s": 3.0,
                          "body_mass_kg": 70.0},
                   plates=["left", "right"], origin=np.zeros((2, 3)),
                   corners=np.zeros((2, 4, 3)), force_rate_hz=FORCE_HZ,
                   labels=["LASI", "RASI"], marker_rate_hz=MARKER_HZ, n_channels=12,
                   counts_dtype=np.int16, flush_interval_s=0.1, t0_host=100.0).start()
    n = int(seconds * FORCE_HZ)
    for i in range(0, n, 100):
        seq = np.arange(i, i + 100)
        host = 100.0 + (seq + 1) / FORCE_HZ
        w = np.zeros((100, 2, 6), np.float32)
        w[:, :, 2] = 700.0
        rec.put(Block("force", 5.0 + seq / FORCE_HZ, host, w,
                      raw=np.zeros((100, 12), np.int16), seq=seq), host - 100.0)
        mseq = np.arange(i // 10, i // 10 + 10)
        mh = 100.0 + (mseq + 1) / MARKER_HZ
        rec.put(Block("markers", 9.0 + mseq / MARKER_HZ, mh, np.ones((10, 2, 3), np.float32),
                      seq=mseq), mh - 100.0)
    rec.close()
    assert _validate(path) == []
    return path


def _digest(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shrink(path, dataset, rows, status=None):
    with h5py.File(path, "r+") as f:
        f[dataset].resize(rows, axis=0)
        if status:
            f.attrs["status"] = status


def test_recover_never_cuts_a_complete_file_and_leaves_it_unchanged(tmp_path, capsys):
    from treadlab.pipeline.cli import main

    path = _recorded(tmp_path / "c.h5")
    _shrink(path, "raw/markers/time", 100)
    before = _digest(path)
    assert main(["recover", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "c.h5" in err and "/raw/markers/time" in err
    assert _digest(path) == before                       # the input is untouched
    with h5py.File(path, "r") as f:
        assert f["raw/force/wrench"].shape[0] == 2000    # nothing cut, force least of all
        assert f["raw/markers/positions"].shape[0] == 200
    assert not list(tmp_path.glob(".*tmp"))


def test_recover_on_an_interrupted_file_keeps_every_consistent_row_and_says_what_it_dropped(
        tmp_path):
    path = _recorded(tmp_path / "i.h5")
    _shrink(path, "raw/markers/time", 100, status="recording")
    msg = recover(path)
    assert "dropped 100 rows of /raw/markers (positions" in msg
    assert _validate(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
        assert f["raw/force/wrench"].shape[0] == 2000    # the other stream keeps every row
        assert f["raw/markers/positions"].shape[0] == 100


def test_recover_drops_rows_a_failed_write_left_as_zeros(tmp_path):
    path = _recorded(tmp_path / "z.h5")
    with h5py.File(path, "r+") as f:
        for name in ("time", "host_time"):
            ds = f[f"raw/markers/{name}"]
            ds[150:] = 0.0
        f.attrs["status"] = "recording"
    msg = recover(path)
    assert "50 rows of /raw/markers" in msg and "last consistent row" in msg
    assert _validate(path) == []
    with h5py.File(path, "r") as f:
        assert f["raw/markers/time"].shape[0] == 150
        assert np.all(np.diff(f["raw/markers/time"][()]) > 0)


def test_recover_refuses_a_zero_byte_file_without_rewriting_it(tmp_path, capsys):
    from treadlab.pipeline.cli import main

    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert main(["recover", str(empty)]) == 1
    assert "empty.h5" in capsys.readouterr().err
    assert empty.stat().st_size == 0 and not list(tmp_path.glob(".*tmp"))


def test_recover_fails_when_the_result_would_not_validate_and_leaves_the_file(tmp_path, capsys):
    from treadlab.pipeline.cli import main

    path = _recorded(tmp_path / "v.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["status"] = "recording"
        f.attrs["session_id"] = "not-a-uuid"
    before = _digest(path)
    assert main(["recover", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "session_id" in err
    assert _digest(path) == before
