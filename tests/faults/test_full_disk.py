"""A full disk (a small tmpfs, root only) during capture, process, reprocess, export, report:
exit 1 with one line, no crash, the input unchanged and recoverable."""
from __future__ import annotations

import shutil

import h5py
import pytest

from tests.faults.conftest import fill, run_command
from treadlab.acquisition.archive import validate_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.acquisition.archive import write_session

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fd") / "s.h5"
    s = simulate_session(RunnerParams(duration_s=6.0, seed=3))
    s.attrs["subject_id"] = "FD1"
    write_session(path, s)
    return path


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_capture_onto_a_full_disk_exits_1_and_leaves_a_recoverable_file(small_disk, tmp_path):
    disk = small_disk("1m")
    run = run_command(["capture", "--subject", "P1", "--body-mass", "70", "--duration", "60",
                       "--out", disk, "--no-process"], subprocess_=True)
    assert run.code == 1 and not run.problems, run.err
    lines = [ln for ln in run.err.splitlines() if ln.startswith("treadlab:")]
    assert len(lines) == 1 and "disk is full" in lines[0] and "recover" in lines[0]
    (path,) = [p for p in disk.glob("*.h5") if not p.name.endswith(".derived.h5")]
    assert not _no_leftovers(disk) or _no_leftovers(disk) == []
    # recover on the full disk: one line, the file unchanged
    run = run_command(["recover", path], inputs=[path], subprocess_=True)
    assert run.code == 1 and not run.problems
    # moved to a roomy disk, it recovers to a valid session holding what was flushed
    roomy = tmp_path / path.name
    shutil.copyfile(path, roomy)
    run = run_command(["recover", roomy], expect="ok")
    assert run.code == 0, run.err
    assert validate_session(roomy) == []
    with h5py.File(roomy, "r") as f:
        assert f.attrs["status"] == "interrupted"
        n = f["raw/force/time"].shape[0]
        assert n > 1000 and f["raw/markers/time"].shape[0] > 200
        t = f["raw/markers/time"][()]
        assert (t[-100:] != 0).all()          # no zeros from the failed write


def _on_full_disk(small_disk, session_file, leave):
    disk = small_disk("4m")
    path = disk / session_file.name
    shutil.copyfile(session_file, path)
    fill(disk, leave)
    return disk, path


@pytest.mark.parametrize("leave", [0, 20_000])
def test_process_on_a_full_disk(small_disk, session_file, leave):
    disk, path = _on_full_disk(small_disk, session_file, leave)
    run = run_command(["process", path], inputs=[path], subprocess_=True)
    assert not run.problems, run.problems
    assert run.code == 1
    assert validate_session(path) == []
    assert not _no_leftovers(disk)


def test_reprocess_on_a_full_disk(small_disk, session_file):
    disk, path = _on_full_disk(small_disk, session_file, 0)
    run = run_command(["reprocess", disk, "--workers", "1"], inputs=[path], subprocess_=True)
    assert not run.problems, run.problems
    assert run.code == 1
    assert not _no_leftovers(disk)


@pytest.mark.parametrize("fmt", ["hdf5", "c3d", "csv"])
def test_export_to_a_full_disk(small_disk, session_file, tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", "x" * 32)
    src = tmp_path / "s.h5"
    shutil.copyfile(session_file, src)
    run_command(["process", src], expect="ok")
    disk = small_disk("1m")
    fill(disk, 4096)
    run = run_command(["export", src, "--to", disk, "--format", fmt], inputs=[src], subprocess_=True)
    assert not run.problems, run.problems
    assert run.code == 1
    assert [p.name for p in disk.iterdir()] == ["filler.bin"]   # nothing truncated left behind


def test_report_to_a_full_disk(small_disk, session_file, tmp_path):
    src = tmp_path / "s.h5"
    shutil.copyfile(session_file, src)
    run_command(["process", src], expect="ok")
    disk = small_disk("1m")
    fill(disk, 4096)
    run = run_command(["report", src, "-o", disk / "rep"], inputs=[src], subprocess_=True)
    assert not run.problems, run.problems
    assert run.code == 1
