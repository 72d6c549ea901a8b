"""Bad lab configs and hostile subject ids.

A bad config is one line naming the key, before any device is opened and before anything is
recorded. A hostile subject id never escapes the output folder, never runs a command and
never reaches an anonymised export.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.faults.conftest import run_command
from treadlab.acquisition.archive import read_session, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session

REPO = Path(__file__).resolve().parents[2]
LAB = (REPO / "config" / "lab_simulated.toml").read_text()
SINGULAR = """calibration = [
  [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
  [0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
  [0.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
]"""


def _sub(pattern, repl, count=1):
    return lambda text: re.sub(pattern, repl, text, count=count, flags=re.S)


# mutation of the shipped lab config → a word the one-line error must contain
CONFIGS = {
    "missing_serial_device": (_sub(r'port = "auto"', 'port = "/dev/ttyUSB-treadlab-none"'),
                              "ttyUSB-treadlab-none"),
    "serial_port_left_out": (_sub(r'port = "auto"[^\n]*\n', ""), "forceplate.port"),
    "singular_calibration": (_sub(r"calibration = \[.*?\n\]", SINGULAR), "calibration"),
    "unassignable_marker_host": (_sub(r'host = "127.0.0.1"', 'host = "203.0.113.7"'),
                                 "markers.host"),
    "force_rate_zero": (_sub(r"rate_hz = 1000.0", "rate_hz = 0.0"), "rate_hz"),
    "baud_too_low": (_sub(r"baud = 2_000_000", "baud = 9600"), "baud"),
    "unknown_driver": (_sub(r'driver = "markers_udp"', 'driver = "telepathy"'), "driver"),
    "no_marker_labels": (_sub(r"labels = \[.*?\]", "labels = []"), "labels"),
    "syntax_error": (lambda t: t + "\n[broken\n", "lab.toml"),
    "nan_in_calibration": (_sub(r"\[500.0,   3.1", "[nan,   3.1"), "calibration"),
    "unknown_key": (_sub(r"\[forceplate\]\n", "[forceplate]\nprot = 3\n"), "prot"),
    "missing_reference": (_sub(r'reference = "default"', 'reference = "/nonexistent/ref.toml"'),
                          "ref"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_bad_lab_config_fails_before_anything_is_recorded(tmp_path, name):
    mutate, word = CONFIGS[name]
    text = mutate(LAB)
    assert text != LAB, "the mutation did not apply"
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    out = tmp_path / "out"
    run = run_command(["capture", "--config", lab, "--subject", "S1", "--duration", "1",
                       "--out", out], inputs=[lab])
    assert not run.problems, run.problems
    assert run.code == 1
    lines = [ln for ln in run.err.splitlines() if ln.startswith("treadlab:")]
    assert len(lines) == 1 and word in lines[0], run.err
    assert not out.exists() or not any(out.iterdir())


HOSTILE = ["../../escape", "/etc/passwd", "a\nb", "$(touch {tmp}/pwned)", "`id`", "; rm -rf x",
           "..", "-rf", "x" * 400, "😀 名前", "Jane Doe:LASI"]


@pytest.fixture(scope="module")
def plain_c3d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ids")
    s = simulate_session(RunnerParams(duration_s=3.0, seed=9))
    s.attrs["subject_id"] = "H0"
    write_session(tmp / "h.h5", s)
    run = run_command(["export", tmp / "h.h5", "--to", tmp, "--format", "c3d",
                       "--keep-identity"], expect="ok")
    assert run.code == 0, run.err
    return tmp / "h.c3d"


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_subject_ids_stay_data(plain_c3d, tmp_path, monkeypatch, i):
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", "hostile-ids-secret-0123456789abcdef")
    subject = HOSTILE[i].format(tmp=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "s.h5"
    run = run_command(["import", plain_c3d, "-o", out, f"--subject={subject}", "--body-mass",
                       "70"], expect="ok")
    assert run.code == 0 and not run.problems, run.err
    assert read_session(out).attrs["subject_id"] == subject    # stored as data, verbatim
    run = run_command(["process", out], expect="ok")
    assert run.code == 0 and not run.problems, run.err
    exp = work / "exp"
    for fmt in ("hdf5", "c3d", "csv"):
        run = run_command(["export", out, "--to", exp, "--format", fmt], expect="ok")
        assert run.code == 0 and not run.problems, run.err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(work) for p in files), files      # nothing escaped
    assert not (tmp_path / "pwned").exists()                    # nothing ran
    if len(subject) >= 4:
        for p in exp.iterdir():
            assert subject.encode() not in p.read_bytes(), p.name
            assert subject not in p.name
