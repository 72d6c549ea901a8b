"""Archive scale (docs/reprocess.md): raw data written once, only derived files rewritten;
kill -9 of a writer at random points; two concurrent reprocess runs; the session lock; dry run;
on a real recording too."""
from __future__ import annotations

import hashlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.acquisition.archive import (SessionLocked, acquire, derived_path, lock_owner,
                                          lock_path, read_derived, read_session, session_lock,
                                          validate_session, write_session)
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.graph import (derived_stamp, load_settings, process_session,
                                     run_session)
from treadlab.pipeline.reprocess import find_sessions, reprocess

PY = sys.executable


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _processed_at(path: Path):
    d = read_derived(path)
    return None if d is None else float(d["attrs"]["processed_unix_s"])


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale_template")
    for i in range(4):
        write_session(root / f"run{i}.h5",
                      simulate_session(RunnerParams(duration_s=8.0, seed=40 + i)))
    return root


@pytest.fixture
def archive(template, tmp_path) -> Path:
    dest = tmp_path / "archive"
    shutil.copytree(template, dest)
    return dest


def test_session_links_its_derived_file_and_process_writes_only_that(archive):
    path = archive / "run0.h5"
    with h5py.File(path, "r") as f:
        link = f.get("derived", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert (link.filename, link.path) == ("run0.derived.h5", "/derived")
        assert f.attrs["format_version"] == 2
    assert read_derived(path) is None and validate_session(path) == []
    before = _sha(path)
    summary = process_session(path)
    assert _sha(path) == before  # the session file is only read
    assert summary["derived_file"] == str(derived_path(path))
    assert summary["bytes_written"] == derived_path(path).stat().st_size
    # one file per session for h5py: raw and derived together, derived through the link
    with h5py.File(path, "r") as f:
        assert f["raw/force/wrench"].shape[1:] == (2, 6)
        assert f["derived/contacts/t_strike"].shape[0] == summary["contacts"]
        assert f["derived"].attrs["pipeline_version"]
    # the derived file is readable on its own, names its session, and validates
    with h5py.File(derived_path(path), "r") as d:
        assert d.attrs["format"] == "treadlab.derived"
        assert d.attrs["session_file"] == "run0.h5"
        assert "contacts" in d["derived"]
    assert validate_session(path) == []
    s = read_session(path, derived=True)
    assert s.derived["contacts"]["t_strike"].shape[0] == summary["contacts"]
    # a derived file copied beside another session is refused by name
    other = archive / "run1.h5"
    shutil.copy(derived_path(path), derived_path(other))
    problems = validate_session(other)
    assert len(problems) == 1 and "run1.derived.h5" in problems[0] and "session_id" in problems[0]


def test_export_is_self_contained(archive, tmp_path):
    from treadlab.pipeline.export import export_sessions

    path = archive / "run0.h5"
    process_session(path)
    export_sessions([path], tmp_path / "out", fmt="hdf5", keep_identity=True)
    (out,) = [p for p in (tmp_path / "out").glob("*.h5")]
    with h5py.File(out, "r") as f:
        assert isinstance(f.get("derived", getlink=True), h5py.HardLink)
        assert "contacts" in f["derived"]
    assert not list((tmp_path / "out").glob("*.derived.h5"))


def test_dry_run_lists_what_is_due_and_why(archive, tmp_path):
    process_session(archive / "run0.h5")
    result = reprocess(archive, dry_run=True)
    due = {p.name: why for p, why in result.due}
    assert set(due) == {"run1.h5", "run2.h5", "run3.h5"}
    assert due["run1.h5"] == "never processed"
    assert not any(read_derived(p) for p in find_sessions(archive) if p.name != "run0.h5")
    # a different config is named as the reason
    cfg = tmp_path / "lab.toml"
    src = Path(__file__).resolve().parents[2] / "config" / "lab_simulated.toml"
    cfg.write_text(src.read_text().replace("marker_lowpass_hz = 12.0", "marker_lowpass_hz = 10.0"))
    assert load_settings(cfg).config_hash != load_settings(None).config_hash
    result = reprocess(archive, dry_run=True, config_path=cfg)
    due = dict((p.name, why) for p, why in result.due)
    assert due["run0.h5"].startswith("config ")
    out = subprocess.run([PY, "-m", "treadlab.pipeline.cli", "reprocess", str(archive),
                          "--dry-run"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "never processed" in out.stdout and "dry run: nothing written" in out.stdout


# --- the lock ------------------------------------------------------------------------------

_HOLDER = """
import sys, time
from treadlab.acquisition.archive import acquire
lock = acquire(sys.argv[1], "capture")
print("held", flush=True)
time.sleep(120)
"""


def test_lock_live_owner_named_then_stale_owner_taken_over(archive, caplog):
    path = archive / "run2.h5"
    proc = subprocess.Popen([PY, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        owner = lock_owner(path)
        assert owner["pid"] == proc.pid and owner["what"] == "capture"
        with pytest.raises(SessionLocked, match=rf"capture \(pid {proc.pid} on host "):
            acquire(path, "reprocess")
        t0 = time.monotonic()
        with pytest.raises(SessionLocked):
            acquire(path, "reprocess", wait_s=0.3)
        assert time.monotonic() - t0 >= 0.3
        # reprocess skips the session with a message naming the owner; the others are done
        result = reprocess(archive, workers=1, progress=False)
        assert result.ok
        assert [p.name for p in result.skip_reasons] == ["run2.h5"]
        assert f"pid {proc.pid}" in result.skip_lines()[0]
        assert read_derived(path) is None
        with pytest.raises(Exception, match="capture is still recording"):
            process_session(path, lock_wait_s=0.2)
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding the lock: the lock file stays
        proc.wait(timeout=30)
    assert lock_path(path).exists() and lock_owner(path) is None  # stale: nobody holds it
    lock = acquire(path, "reprocess")
    try:
        assert lock.stale and lock.stale["pid"] == proc.pid
    finally:
        lock.release()
    assert not lock_path(path).exists()
    with session_lock(path, "test") as again:
        assert again.stale is None


# --- kill -9 at random points --------------------------------------------------------------

_WRITER = """
import sys
from treadlab.pipeline.graph import load_settings, run_session
settings = load_settings(None)
print("ready", flush=True)
while True:
    for path in sys.argv[1:]:
        run_session(path, settings, force=True)
"""


@pytest.mark.timeout(120)
def test_kill_9_at_random_points_raw_unchanged_derived_old_or_new(archive):
    sessions = find_sessions(archive)
    raw = {p: _sha(p) for p in sessions}
    rng = random.Random(13)
    settings = load_settings(None)
    for p in sessions[:2]:  # some sessions start with derived data, some without
        run_session(p, settings)
    kills = 0
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline or kills < 4:
        seen = {p: read_derived(p) is not None for p in sessions}
        proc = subprocess.Popen([PY, "-c", _WRITER, *map(str, sessions)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        kills += 1
        for p in sessions:
            assert _sha(p) == raw[p], f"{p.name}: raw bytes changed"
            assert derived_path(p).exists(), f"{p.name}: derived file lost"
            assert validate_session(p) == [], p
            d = read_derived(p)  # old or new: complete either way
            if d is None:
                assert not seen[p], f"{p.name}: processed derived data lost"
                continue  # still the placeholder: not processed yet
            assert d["contacts"]["t_strike"].size > 0
        # leftovers are hidden temporary files only, never sessions
        assert find_sessions(archive) == sessions
        if kills >= 12:
            break
    # the next ordinary run finishes the job (and takes over any stale lock)
    for p in sessions:
        run_session(p, settings, force=True)
        assert read_derived(p)["attrs"]["pipeline_version"]


# --- two concurrent reprocess runs -----------------------------------------------------------

@pytest.mark.timeout(240)
def test_two_concurrent_reprocess_runs_process_each_session_once(archive):
    for i in range(4, 8):
        shutil.copy(archive / f"run{i - 4}.h5", archive / f"run{i}.h5")
    sessions = find_sessions(archive)
    cmd = [PY, "-m", "treadlab.pipeline.cli", "reprocess", str(archive), "--workers", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=200) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = []
    for out, _err in outs:
        n = int(re.search(r"^processed\s+(\d+)$", out, re.M).group(1))
        names = re.findall(r"^(run\d+\.h5)\s+\d", out, re.M)  # the per-session timing table
        assert len(names) == n
        done += names
    assert sorted(done) == sorted(p.name for p in sessions)  # every session exactly once
    assert all(read_derived(p) is not None for p in sessions)
    assert "ETA" in outs[0][1] + outs[1][1]


def test_a_derived_file_replaced_after_the_scan_is_read_again_under_the_lock(archive):
    """reprocess hands each task the fingerprint its scan read with the derived file's stamp;
    the task trusts it only while the stamp is unchanged. A derived file another run replaced
    in between (a rename: a new inode) is read again, so the session is not done twice."""
    path = archive / "run0.h5"
    settings = load_settings()
    assert derived_stamp(archive / "nothing.h5") is None  # no derived file: no stamp
    run_session(path, settings, force=True)
    seen = derived_stamp(path)
    assert seen is not None and derived_stamp(path) == seen  # stable while untouched
    run_session(path, settings, force=True)  # "another run" replaces the derived file
    assert derived_stamp(path) != seen
    # the scan saw it unprocessed under the old stamp: read again, found up to date, skipped
    out = run_session(path, settings, scanned=(None, seen))
    assert out.get("skipped") == "up to date (processed by another run)"
    # under the current stamp the scan's fingerprint is taken as it is (here: "never
    # processed", so the session is processed although the file says up to date)
    before = _processed_at(path)
    out = run_session(path, settings, scanned=(None, derived_stamp(path)))
    assert "skipped" not in out and _processed_at(path) > before


# --- a real recording ----------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_real_recording_reprocess_writes_only_derived(tmp_path):
    from treadlab.acquisition.io.c3d_import import import_c3d

    c3d = shared_file("running", "RBDS001runT35.c3d")
    h5 = import_c3d(c3d, tmp_path / "arch" / "RBDS001runT35.h5")
    with h5py.File(h5, "r") as f:
        assert isinstance(f.get("derived", getlink=True), h5py.ExternalLink)
        assert f["raw/force/origin"].dims[0][0].name == "/raw/force/plate"
    raw = _sha(h5)
    first = process_session(h5)
    again = run_session(h5, load_settings(None), force=True)
    assert _sha(h5) == raw
    # an imported C3D holds no ADC counts, so derived data are a larger share here (about 13 %)
    # than for a live session (benchmarks/pipeline.py: write_ratio)
    assert again["bytes_written"] == derived_path(h5).stat().st_size < 0.2 * h5.stat().st_size
    assert again["contacts"] == first["contacts"]
    assert validate_session(h5) == []
    np.testing.assert_array_equal(read_derived(h5)["scores"]["cause"],
                                  np.array(list(first["scores"]), dtype=object))
