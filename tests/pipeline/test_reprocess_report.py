"""What ``reprocess`` reports: the reason each session is due, ``--dry-run``, progress lines with
an ETA, and the per-session timing table."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import h5py
import pytest

from treadlab.acquisition.archive import write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.cli import main
from treadlab.pipeline.graph import derived_fingerprint, load_settings, run_session
from treadlab.pipeline.reprocess import (BatchResult, due_reason, format_progress,
                                         largest_first, reprocess)

WANT = {"pipeline_version": "treadlab 0.2.0 pipeline 3", "config_hash": "abcdef0123456789",
        "reference_id": "healthy-2026", "reference_sha256": "0123456789abcdef"}


def test_due_reason_names_every_difference():
    assert due_reason(None, WANT) == "never processed"
    assert due_reason(dict(WANT), WANT) is None
    assert due_reason(dict(WANT), WANT, force=True) == "forced"
    old = dict(WANT, pipeline_version="treadlab 0.1.0 pipeline 1")
    assert due_reason(old, WANT) == \
        "pipeline treadlab 0.1.0 pipeline 1 -> treadlab 0.2.0 pipeline 3"
    assert due_reason(dict(WANT, config_hash="ffff0000aaaa"), WANT) == \
        "config ffff0000 -> abcdef01"
    assert due_reason(dict(WANT, reference_id="pilot"), WANT) == \
        "reference pilot -> healthy-2026"
    assert due_reason(dict(WANT, reference_sha256="99998888"), WANT) == \
        "reference healthy-2026 changed (sha256 99998888 -> 01234567)"
    both = dict(WANT, config_hash=None, pipeline_version="")
    assert due_reason(both, WANT, force=True) == \
        "pipeline ? -> treadlab 0.2.0 pipeline 3; config ? -> abcdef01"


def test_progress_line_and_eta():
    assert format_progress(3, 20, "subject_a/run1.h5", 0.414, 2.2) == \
        "[ 3/20] subject_a/run1.h5  0.41 s  elapsed 0:02  ETA 0:12"
    assert format_progress(20, 20, "x.h5", 1.0, 65.0).endswith("elapsed 1:05  ETA 0:00")
    assert format_progress(1, 4, "bad.h5", None, 3700.0) == \
        "[1/4] bad.h5  FAILED  elapsed 1:01:40  ETA 3:05:00"


def test_sessions_are_scanned_and_sent_largest_first(tmp_path):
    """A batch of mixed lengths starts its longest sessions first (equal sizes keep their
    order), so it does not end with one long session running alone."""
    sizes = {"a.h5": 10, "b.h5": 300, "c.h5": 20, "d.h5": 300, "e.h5": 5}
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"x" * n)
    order = [p.name for p in largest_first(sorted(tmp_path.glob("*.h5")))]
    assert order == ["b.h5", "d.h5", "c.h5", "a.h5", "e.h5"]


def test_timing_table(tmp_path):
    a = tmp_path / "s" / "a.h5"
    result = BatchResult(
        processed=[(a, {"timing": {"total_s": 0.5, "read_s": 0.1, "compute_s": 0.3,
                                   "write_s": 0.1}, "contacts": 12, "bytes_written": 2_000_000}),
                   (tmp_path / "b.h5", {"timing": {"total_s": 1.5, "read_s": 0.2,
                                                   "compute_s": 1.1, "write_s": 0.2},
                                        "contacts": 30, "bytes_written": 10_000})],
        skipped=[], failed=[], elapsed_s=2.0, root=tmp_path)
    lines = result.timing_table().splitlines()
    assert lines[0].split() == ["session", "seconds", "read", "compute", "write", "contacts",
                                "written", "MB"]
    assert lines[1].split() == ["s/a.h5", "0.50", "0.10", "0.30", "0.10", "12", "2.000"]
    assert lines[2].split()[:3] == ["b.h5", "1.50", "0.20"]
    assert lines[3].startswith("total") and "2.00" in lines[3] and "mean 1.00 s" in lines[3] \
        and "slowest 1.50 s" in lines[3]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Three short sessions: one processed with the current settings, one processed with
    another config (its stored config_hash changed), one never processed."""
    root = tmp_path_factory.mktemp("report_template")
    settings = load_settings()
    for i, name in enumerate(("current.h5", "old_config.h5", "raw.h5")):
        path = root / "subject" / name
        path.parent.mkdir(exist_ok=True)
        write_session(path, simulate_session(RunnerParams(duration_s=8.0, seed=30 + i)))
        if name != "raw.h5":
            run_session(str(path), settings)
    with h5py.File(root / "subject" / "old_config.derived.h5", "r+") as f:
        f["derived"].attrs["config_hash"] = "0ld0c0nf1g"
    return root


@pytest.fixture
def archive(template, tmp_path) -> Path:
    dest = tmp_path / "archive"
    shutil.copytree(template, dest)
    return dest


def test_dry_run_lists_due_sessions_and_touches_nothing(archive):
    before = {p: p.stat().st_mtime_ns for p in archive.rglob("*.h5")}
    (archive / "subject" / "broken.h5").write_bytes(b"not hdf5")
    result = reprocess(archive, dry_run=True)
    assert not result.ok  # the unreadable file
    text = result.due_table()
    want = load_settings().fingerprint()
    assert f"would write: {want['pipeline_version']}, config {want['config_hash'][:8]}" in text
    assert "due: 2 sessions, up to date: 1, unreadable: 1" in text
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ")}
    assert "never processed" in lines["subject/raw.h5"]
    assert f"config 0ld0c0nf -> {want['config_hash'][:8]}" in lines["subject/old_config.h5"]
    assert "unreadable" in lines["subject/broken.h5"]
    assert "subject/current.h5" not in lines
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert derived_fingerprint(archive / "subject" / "raw.h5") is None
    # --force makes the up-to-date one due as well
    (archive / "subject" / "broken.h5").unlink()
    result = reprocess(archive, dry_run=True, force=True)
    assert result.ok
    assert "due: 3 sessions, up to date: 0" in result.due_table()
    forced = [ln.split() for ln in result.due_table().splitlines() if "current.h5" in ln]
    assert forced == [["subject/current.h5", "forced"]]


def test_dry_run_from_the_cli(archive, capsys):
    assert main(["reprocess", str(archive), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "due: 2 sessions, up to date: 1, unreadable: 0" in out
    assert derived_fingerprint(archive / "subject" / "raw.h5") is None


@pytest.mark.timeout(240)
def test_progress_and_timing_table(archive, capsys):
    out = io.StringIO()
    result = reprocess(archive, workers=1, progress=True, out=out)
    assert result.ok
    progress = [ln for ln in out.getvalue().splitlines() if ln.startswith("[")]
    assert len(progress) == 2
    assert progress[0].startswith("[1/2] subject/") and progress[1].startswith("[2/2] subject/")
    assert all(" s  elapsed " in ln and "  ETA " in ln for ln in progress)
    assert progress[1].endswith("ETA 0:00")
    text = result.timing_table() + "\n" + result.table()
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines()}
    assert float(rows["subject/old_config.h5"][1]) > 0 and int(rows["subject/raw.h5"][5]) > 0
    assert "subject/current.h5" not in rows
    assert "total" in rows and "processed             2" in text
    assert derived_fingerprint(archive / "subject" / "raw.h5") == load_settings().fingerprint()
