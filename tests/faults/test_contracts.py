"""Small contracts of issue 9: a capture stopped at once, files still being recorded, stale
temporary copies, a bad reference set found before recording."""
from __future__ import annotations

import io
import os
import shutil
import threading
import time
from pathlib import Path

import h5py
import pytest

from tests.acquisition.test_capture import lab_cfg
from tests.faults.conftest import run_command
from treadlab.acquisition.archive import validate_session, write_session
from treadlab.acquisition.capture.session import capture_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.config.errors import InputError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "s.h5"
    s = simulate_session(RunnerParams(duration_s=6.0, seed=4))
    s.attrs["subject_id"] = "C1"
    write_session(path, s)
    return path


@pytest.mark.timeout(90)
def test_capture_stopped_before_the_body_mass_can_be_estimated(tmp_path):
    """Stopped at once (as by SIGTERM right after the tare): not a silent exit 0 with an invalid
    file, but one line naming /@body_mass_kg; the recording is kept and recover completes it."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(InputError, match="body_mass_kg") as exc:
        capture_session(lab_cfg(), subject="T", out_dir=tmp_path, stop_event=stop,
                        status_stream=io.StringIO())
    assert "\n" not in str(exc.value) and "--body-mass" in str(exc.value)
    (path,) = [p for p in tmp_path.glob("*.h5") if not p.name.endswith(".derived.h5")]
    run = run_command(["recover", path, "--body-mass", "68"], expect="ok")
    assert run.code == 0, run.err
    assert validate_session(path) == []


@pytest.mark.parametrize("argv", [["process", "{f}"], ["export", "{f}", "--to", "{out}"],
                                  ["report", "{f}", "-o", "{out}"]])
def test_commands_refuse_a_file_still_being_recorded(session_file, tmp_path, monkeypatch, argv):
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", "s" * 32)
    path = tmp_path / "rec.h5"
    shutil.copyfile(session_file, path)
    with h5py.File(path, "r+") as f:
        f.attrs["status"] = "recording"
    run = run_command([a.format(f=path, out=tmp_path / "out") for a in argv], inputs=[path])
    assert run.code == 1 and not run.problems, run.problems
    assert "recording" in run.err and "rec.h5" in run.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.timeout(180)
def test_reprocess_removes_temporary_copies_left_by_a_killed_run(session_file, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copyfile(session_file, folder / "s.h5")
    dead = folder / ".s.h5.999999999.abcd1234.tmp"       # no such process
    legacy = folder / ".s.h5.k3j4h5g6.tmp"               # an older version's name, an hour old
    live = folder / f".s.h5.{os.getpid()}.zzzz9999.tmp"  # a writer that is still running
    for p in (dead, legacy, live):
        p.write_bytes(b"\0" * 4096)
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    run = run_command(["reprocess", folder, "--workers", "1"], expect="ok")
    assert run.code == 0, run.err
    assert not dead.exists() and not legacy.exists() and live.exists()


def test_a_bad_scoring_reference_fails_before_anything_is_recorded(tmp_path):
    text = (REPO / "config" / "lab_simulated.toml").read_text()
    text = text.replace('reference = "default"', f'reference = "{tmp_path / "missing.toml"}"')
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    run = run_command(["capture", "--config", lab, "--subject", "S", "--duration", "2",
                       "--out", tmp_path / "out"])
    assert run.code == 1 and not run.problems, run.problems
    assert "missing.toml" in run.err or "reference" in run.err
    assert not (tmp_path / "out").exists()


def test_reprocess_failure_lines_carry_no_worker_traceback():
    from treadlab.pipeline.reprocess import _one_line

    exc = RuntimeError("worker died\nTraceback (most recent call last):\n  File \"x.py\"")
    assert _one_line(exc) == "RuntimeError: worker died"
    exc = RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1")
    assert _one_line(exc) == "RuntimeError"
    assert _one_line(InputError("s.h5", "/raw", "missing")) == "s.h5: /raw: missing"


@pytest.mark.timeout(90)
def test_sigterm_during_the_tare_is_one_line_and_nothing_recorded(tmp_path, monkeypatch):
    """SIGTERM while the plate tares: not exit 0 with a file recover cannot fix, but one line
    and no file."""
    import signal

    from treadlab.acquisition.sources.forceplate_serial import ForcePlateSerial
    from treadlab.config.errors import DeviceError

    tare = ForcePlateSerial.tare

    def tare_then_sigterm(self, *a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)      # the capture's handler only sets a flag
        return tare(self, *a, **kw)

    monkeypatch.setattr(ForcePlateSerial, "tare", tare_then_sigterm)
    with pytest.raises(DeviceError, match="SIGTERM.*nothing recorded"):
        capture_session(lab_cfg(), subject="T", out_dir=tmp_path / "out", duration_s=5.0,
                        status_stream=io.StringIO())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL    # handlers restored
