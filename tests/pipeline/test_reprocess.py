"""Overnight reprocessing on real dask clusters: LocalCluster, an external scheduler started by
the test, a corrupt archive in the batch, idempotence, kill -9 in the middle."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from treadlab.acquisition.archive import read_derived, validate_session, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.reprocess import find_sessions, reprocess

PY = sys.executable
DASK = str(Path(sys.executable).with_name("dask"))


def _write(path: Path, seed: int, seconds: float = 12.0) -> Path:
    session = simulate_session(RunnerParams(duration_s=seconds, seed=seed))
    write_session(path, session)
    return path


@pytest.fixture(scope="module")
def archive_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive_template")
    for i in range(4):
        sub = root / ("subject_a" if i < 2 else "subject_b")
        sub.mkdir(exist_ok=True)
        _write(sub / f"run{i}.h5", seed=10 + i)
    return root


@pytest.fixture
def archive(archive_template, tmp_path) -> Path:
    dest = tmp_path / "archive"
    shutil.copytree(archive_template, dest)
    return dest


def _processed(path: Path) -> bool:
    with h5py.File(path, "r") as f:
        return "derived/contacts" in f and "pipeline_version" in f["derived"].attrs


@pytest.mark.timeout(240)
def test_forced_run_reports_bad_sessions_as_a_scanned_run_does(archive, scheduler):
    """``--force`` sends every session unscanned; the worker's checks under the lock report a
    corrupt file, a file missing its raw data and an unfinished capture in the same one line
    as the scan of a run without ``--force`` (treadlab's own error crosses the process
    boundary intact: no ``Exception:`` prefix), and the good sessions are processed."""
    corrupt = archive / "subject_b" / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    broken = archive / "subject_a" / "no_force.h5"
    with h5py.File(broken, "w") as f:
        f.attrs["format"] = "treadlab.session"
        f.create_group("raw/markers")
    unfinished = archive / "subject_a" / "unfinished.h5"
    shutil.copy(archive / "subject_a" / "run0.h5", unfinished)
    with h5py.File(unfinished, "r+") as f:
        f.attrs["status"] = "recording"  # a capture killed and never recovered
    lines = {}
    for force in (False, True):
        result = reprocess(archive, scheduler=scheduler, force=force, progress=False)
        lines[force] = result.failure_lines()
        assert [Path(p).name for p, _ in result.failed] == \
            ["no_force.h5", "unfinished.h5", "corrupt.h5"]
        assert sorted(Path(p).name for p, _ in result.processed) == \
            ["run0.h5", "run1.h5", "run2.h5", "run3.h5"]
        assert not result.skipped
        if force:
            assert sorted(p.name for p, why in result.due) == \
                ["corrupt.h5", "no_force.h5", "run0.h5", "run1.h5", "run2.h5", "run3.h5",
                 "unfinished.h5"]
    assert not any(ln.split(": ", 1)[-1].startswith("Exception") for ln in lines[True])
    assert "unfinished.h5: /@status: 'recording'" in "\n".join(lines[True])
    assert "no_force.h5: /raw/" in "\n".join(lines[True])
    assert lines[True] == lines[False]  # the same text from the worker as from the scan
    assert not unfinished.with_suffix(".derived.h5").exists()


@pytest.mark.timeout(240)
def test_local_cluster_reports_a_corrupt_file_and_processes_the_rest(archive, capsys):
    corrupt = archive / "subject_b" / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    broken = archive / "subject_a" / "no_force.h5"  # HDF5, but fails inside the worker
    with h5py.File(broken, "w") as f:
        f.attrs["format"] = "treadlab.session"
        f.create_group("raw/markers")
    (archive / ".hidden.h5.abc.tmp").write_bytes(b"leftover")  # never a session
    result = reprocess(archive, workers=2, progress=True)
    assert not result.ok
    err = "\n".join(result.failure_lines())
    out = result.table()
    assert "corrupt.h5" in err and "no_force.h5: /raw/" in err and ": missing" in err
    assert len(result.failure_lines()) == 2
    good = [p for p in find_sessions(archive) if p not in (corrupt, broken)]
    assert len(good) == 4
    assert all(_processed(p) for p in good)
    assert all(validate_session(p) == [] for p in good)
    assert "processed" in out and "failed" in out
    # the second run skips every processed session and starts no cluster
    corrupt.unlink()
    broken.unlink()
    result = reprocess(archive, progress=False)
    assert result.ok
    out = result.table()
    assert "skipped (up to date)  4" in out and "processed             0" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def scheduler():
    """A real ``dask scheduler`` and one ``dask worker`` on 127.0.0.1, started and stopped here."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--no-dashboard", "--host",
                                       "127.0.0.1"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="60s") as c:
            c.wait_for_workers(1, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.mark.timeout(240)
def test_existing_scheduler_and_worker_via_cli(archive, scheduler, monkeypatch, capsys):
    out = subprocess.run([PY, "-m", "treadlab.pipeline.cli", "reprocess", str(archive),
                          "--scheduler", scheduler], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert all(_processed(p) for p in find_sessions(archive))
    assert "processed             4" in out.stdout
    # DASK_SCHEDULER_ADDRESS is honoured the same way (and force redoes everything)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler)
    result = reprocess(archive, force=True, progress=False)
    assert result.ok
    assert "processed             4" in result.table()


@pytest.mark.timeout(240)
def test_a_client_this_process_has_for_the_scheduler_is_used_and_left_open(archive, scheduler,
                                                                            capsys):
    """A notebook with a client of the lab's scheduler: reprocess works through that client
    (no second connection) and leaves it connected; progress reports every session."""
    from distributed import Client

    def connected():  # clients the scheduler has logged as connecting, so far
        return sum(1 for _, ev in client.get_events("all")
                   if isinstance(ev, dict) and ev.get("action") == "add-client")

    with Client(scheduler, timeout="60s") as client:
        before = connected()
        result = reprocess(archive, scheduler=scheduler, force=True, progress=True)
        assert result.ok and len(result.processed) == 4
        assert connected() == before  # no second client
        assert client.status == "running"
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    progress = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in progress] == [f"[{k}/4" for k in range(1, 5)]


@pytest.mark.timeout(300)
def test_kill_9_leaves_every_archive_valid(archive, scheduler):
    before = {p: p.read_bytes() for p in find_sessions(archive)}
    proc = subprocess.Popen([PY, "-m", "treadlab.pipeline.cli", "reprocess", str(archive),
                             "--workers", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # kill as soon as the first derived file has been written (mid-batch), or after 60 s
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(read_derived(p) is not None for p in before):
                break
            time.sleep(0.05)
        time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its cluster: one process group
        proc.wait(timeout=30)
    for p, raw in before.items():
        assert validate_session(p) == [], p
        assert p.read_bytes() == raw, p  # a reprocess never rewrites the session file
    # resumable: the next run (here on the running test cluster) finishes the job
    assert reprocess(archive, scheduler=scheduler, progress=False).ok
    assert all(_processed(p) for p in find_sessions(archive))
