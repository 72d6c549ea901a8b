"""Capture end to end: the simulated lab (real pty + real UDP) → clock → recorder + live.

Every capture runs for a few seconds only; nothing here asserts on timing.
"""
from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from treadlab.acquisition.archive import validate_session
from treadlab.acquisition.capture.session import capture_session, session_filename
from treadlab.acquisition.capture.recorder import lock_path, recover
from treadlab.acquisition.sim.synthetic import LABELS
from treadlab.config.errors import DeviceError

from tests.support.labs import make_lab



def lab_cfg(port="auto", marker_port=0, rate=1000.0):
    """A split-belt lab on the simulator (``port="auto"``) or on the given devices."""
    return make_lab(name="capture-test",
                    force_driver="simulated" if port == "auto" else "forceplate_serial",
                    port=port, baud=1_000_000, rate_hz=rate, tare_seconds=0.5,
                    marker_port=marker_port, labels=list(LABELS),
                    simulator={"seed": "5", "cadence_spm": "172"},
                    contacts={"strike_n": 50.0, "off_n": 20.0, "min_contact_s": 0.1,
                              "min_peak_bw": 1.0, "min_flight_s": 0.02})


# a capture in its own process, ended by a signal (the lab config of this module)
CHILD = r"""
import sys
sys.path[:0] = [sys.argv[2], sys.argv[4]]
from test_capture import lab_cfg
from treadlab.acquisition.capture.session import capture_session
print(capture_session(lab_cfg(), subject=sys.argv[3], out_dir=sys.argv[1]), flush=True)
"""


def _child(out_dir, subject):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out_dir),
                             str(Path(__file__).parent), subject,
                             str(Path(__file__).parents[2])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _text(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@pytest.mark.timeout(90)
def test_capture_end_to_end_over_pty_and_udp(tmp_path):
    status = io.StringIO()
    steps = []
    path = capture_session(lab_cfg(), subject="S 01/x", duration_s=4.0, out_dir=tmp_path,
                           status_stream=status, on_step=steps.append)
    assert path.parent == tmp_path and path.name.startswith("S-01-x_") and path.suffix == ".h5"
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["subject_id"] == "S 01/x"
        rate = f["raw/force"].attrs["rate_hz"]
        n = f["raw/force/time"].shape[0]
        # about 4 s of force, nothing lost on the way
        assert 3.0 * rate < n < 5.5 * rate
        seq = f["raw/force/seq"][()]
        assert np.all(np.diff(seq) == 1)
        t = f["raw/force/time"][()]
        assert np.all(np.diff(t) > 0)
        assert np.median(np.diff(t)) == pytest.approx(1.0 / rate, rel=1e-3)
        tm = f["raw/markers/time"][()]
        assert tm.size > 2.5 * f["raw/markers"].attrs["rate_hz"]
        # both streams on one session clock: they overlap within a marker frame or so
        assert abs(tm[0] - t[0]) < 0.1 and abs(tm[-1] - t[-1]) < 0.1
        # raw counts, device times and the tare are kept
        assert f["raw/force/counts"].shape[0] == n
        assert f["raw/force/device_time"].shape[0] == n
        assert "zero" in f["raw/force/calibration"]
        # body mass estimated from the mean vertical force (simulated runner: 70 kg default)
        assert f.attrs["body_mass_kg"] == pytest.approx(70.0, rel=0.08)
        assert f.attrs["belt_speed_m_s"] == pytest.approx(3.5)
        assert "estimated" in str(f.attrs["body_mass_source"])
        kinds = _text(f["raw/log/kind"][()])
        for kind in ("start", "tare_zero", "counters", "stop", "status", "clock"):
            assert kind in kinds, kind
        # stance on the plates: Fz well above body weight somewhere, near zero in flight
        fz = f["raw/force/wrench"][:, :, 2]
        assert fz.max() > 1000.0 and np.percentile(fz, 5) < 30.0
    # the live processor saw steps and the status line was printed
    assert len(steps) >= 6
    text = status.getvalue()
    assert "cadence" in text and "drops" in text


@pytest.mark.timeout(60)
def test_missing_port_is_one_line_error_and_nothing_recorded(tmp_path):
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    udp_port = sock.getsockname()[1]
    sock.close()
    out = tmp_path / "out"
    with pytest.raises(DeviceError) as exc:
        capture_session(lab_cfg(port=str(tmp_path / "no-such-tty"), marker_port=udp_port),
                        subject="S", duration_s=2.0, out_dir=out, status_stream=io.StringIO())
    msg = str(exc.value)
    assert "no-such-tty" in msg and "\n" not in msg
    assert not out.exists() or not any(out.iterdir())


def _wait_for_rows(out_dir: Path, proc, min_rows: int, timeout: float = 60.0) -> Path:
    """Poll the capture's archive (SWMR reader) until it holds ``min_rows`` force frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        files = list(out_dir.glob("*.h5"))
        if files:
            try:
                with h5py.File(files[0], "r", swmr=True) as f:
                    if f["raw/force/time"].shape[0] >= min_rows:
                        return files[0]
            except (OSError, KeyError):
                pass  # not switched to SWMR yet
        time.sleep(0.2)
    raise AssertionError("capture did not record in time")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_stops_cleanly(tmp_path, sig):
    proc = _child(tmp_path, "T")
    try:
        path = _wait_for_rows(tmp_path, proc, 1500)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip().endswith(path.name)
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        details = _text(f["raw/log/detail"][()])
        assert any(d.startswith(sig.name) for d in details)


@pytest.mark.timeout(90)
def test_kill_9_mid_capture_then_recover(tmp_path):
    proc = _child(tmp_path, "K")
    try:
        path = _wait_for_rows(tmp_path, proc, 2500)
        with h5py.File(path, "r", swmr=True) as f:
            seen = f["raw/force/time"].shape[0]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert "recording" in str(validate_session(path))
    msg = recover(path)
    assert "interrupted" in msg
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
        assert f["raw/force/time"].shape[0] >= seen
        assert f.attrs["body_mass_kg"] > 0
    assert not lock_path(path).exists()


def test_session_filename():
    from datetime import datetime, timezone

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert session_filename("P007", when) == "P007_20260102T030405Z.h5"
    assert session_filename("../x y", when) == "x-y_20260102T030405Z.h5"


@pytest.mark.timeout(90)
def test_cli_capture_on_the_shipped_default_lab(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "treadlab.pipeline.cli", "capture",
                           "--subject", "P1", "--body-mass", "72.5", "--duration", "3",
                           "--out", str(tmp_path), "--no-process"],
                          capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path and path.name.startswith("P1_")
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["body_mass_kg"] == pytest.approx(72.5)
        assert f.attrs["body_mass_source"] == "given"
        assert f.attrs["lab"] == "treadlab simulated lab"
        assert f["raw/markers/positions"].shape[1] == 20
    assert "cadence" in proc.stderr   # the final status line


@pytest.mark.timeout(60)
def test_silent_marker_stream_is_named_before_recording(tmp_path):
    import socket
    import threading

    from treadlab.acquisition.sim.simulated import PtyPort
    from treadlab.acquisition.sources.wire import encode_force_frames

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    udp_port = sock.getsockname()[1]
    sock.close()
    stop = threading.Event()
    with PtyPort() as pty:
        def treadmill():          # a live force plate, unloaded; nobody sends markers
            k = 0
            while not stop.is_set():
                seq = np.arange(k, k + 10)
                pty.write(encode_force_frames(seq, seq * 1000, np.zeros((10, 12), np.int16)))
                k += 10
                stop.wait(0.01)

        th = threading.Thread(target=treadmill, daemon=True)
        th.start()
        try:
            with pytest.raises(DeviceError) as exc:
                capture_session(lab_cfg(port=pty.path, marker_port=udp_port), subject="S",
                                duration_s=1.0, out_dir=tmp_path / "out",
                                status_stream=io.StringIO())
        finally:
            stop.set()
            th.join(5)
    msg = str(exc.value)
    assert f"udp://127.0.0.1:{udp_port}" in msg and "markers" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()
