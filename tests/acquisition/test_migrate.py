"""``treadlab migrate``: format-1 archives (``/derived`` inside, plate geometry as attributes)
converted to format 2, idempotently, crash-safely (kill -9 loop), raw bytes of every dataset
kept; reprocess migrates a format-1 session on its first write."""
from __future__ import annotations

import hashlib
import random
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
from treadlab.acquisition.archive import (derived_path, migrate_session, migration_needed,
                                          read_derived, read_session, validate_session,
                                          write_session)
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.cli import main
from treadlab.pipeline.graph import load_settings, process_session, run_session
from treadlab.pipeline.reprocess import migrate_archive

PY = sys.executable


def make_v1(processed: Path, out: Path) -> Path:
    """A format-1 file made from a processed format-2 session: ``/derived`` copied inside,
    ``origin``/``corners`` as attributes, ``format_version`` 1 (what treadlab wrote before)."""
    session = read_session(processed, derived=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_session(out, session, self_contained=True)
    with h5py.File(out, "r+") as f:
        fg = f["raw/force"]
        for name in ("origin", "corners"):
            value = fg[name][()]
            del fg[name]
            fg.attrs[name] = value
        del fg["xyz"], fg["corner"]
        f.attrs["format_version"] = np.int64(1)
    return out


def raw_digest(path: Path) -> dict:
    """sha256 of every dataset's values under /raw (and the plate geometry, wherever stored)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/")[-1] not in ("xyz", "corner"):
                data = obj[()]
                data = np.asarray(data.astype(str) if data.dtype.kind == "O" else data)
                out[name] = hashlib.sha256(data.tobytes()).hexdigest()
        f["raw"].visititems(lambda n, o: visit("raw/" + n, o))
        for name in ("origin", "corners"):
            fg = f["raw/force"]
            v = fg[name][()] if name in fg else fg.attrs[name]
            out[f"raw/force/{name}"] = hashlib.sha256(np.asarray(v).tobytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mig") / "sim.h5"
    write_session(path, simulate_session(RunnerParams(duration_s=6.0, seed=8)))
    process_session(path)
    return path


def test_migrate_moves_derived_out_keeps_raw_and_is_idempotent(processed, tmp_path, capsys):
    old = make_v1(processed, tmp_path / "a" / "old.h5")
    assert validate_session(old) == []
    assert "/derived inside the session file" in migration_needed(old)
    raw = raw_digest(old)
    before = read_derived(old)
    assert main(["migrate", str(tmp_path / "a"), "--dry-run"]) == 0
    assert "1 to migrate" in capsys.readouterr().out and not derived_path(old).exists()
    assert main(["migrate", str(tmp_path / "a")]) == 0
    assert "1 migrated" in capsys.readouterr().out
    with h5py.File(old, "r") as f:
        assert f.attrs["format_version"] == 2
        assert isinstance(f.get("derived", getlink=True), h5py.ExternalLink)
        assert "origin" not in f["raw/force"].attrs
    assert raw_digest(old) == raw
    assert validate_session(old) == [] and migration_needed(old) == []
    after = read_derived(old)
    for key, value in before["contacts"].items():
        np.testing.assert_array_equal(after["contacts"][key], value)
    np.testing.assert_array_equal(after["angles"]["values"], before["angles"]["values"])
    assert after["attrs"]["config_hash"] == before["attrs"]["config_hash"]
    # idempotent: nothing is rewritten the second time
    stamp = (old.stat().st_mtime_ns, derived_path(old).stat().st_mtime_ns)
    assert main(["migrate", str(tmp_path / "a")]) == 0
    assert "0 migrated, 1 already current" in capsys.readouterr().out
    assert (old.stat().st_mtime_ns, derived_path(old).stat().st_mtime_ns) == stamp


def test_reprocess_migrates_a_format_1_session_on_its_first_write(processed, tmp_path):
    old = make_v1(processed, tmp_path / "old.h5")
    raw = raw_digest(old)
    summary = run_session(old, load_settings(None), force=True)
    assert summary["derived_file"] == str(derived_path(old))
    assert raw_digest(old) == raw and migration_needed(old) == []
    first = old.read_bytes()
    run_session(old, load_settings(None), force=True)
    assert old.read_bytes() == first  # from now on only the derived file is written


_MIGRATOR = """
import sys
from treadlab.pipeline.reprocess import migrate_archive
print("ready", flush=True)
migrate_archive(sys.argv[1])
"""


@pytest.mark.timeout(120)
def test_kill_9_during_migrate_then_finish(processed, tmp_path):
    rng = random.Random(5)
    folder = tmp_path / "arch"
    olds = [make_v1(processed, folder / f"s{i}.h5") for i in range(3)]
    raw = {p: raw_digest(p) for p in olds}
    contacts = read_derived(olds[0])["contacts"]["t_strike"]
    t_end = time.monotonic() + 20
    kills = 0
    while kills < 8 and time.monotonic() < t_end and any(migration_needed(p) for p in olds):
        proc = subprocess.Popen([PY, "-c", _MIGRATOR, str(folder)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        for p in olds:  # every file is the old one or the migrated one, complete
            assert validate_session(p) == [], p
            assert raw_digest(p) == raw[p]
            np.testing.assert_array_equal(read_derived(p)["contacts"]["t_strike"], contacts)
    result = migrate_archive(folder)
    assert result.ok
    assert all(migration_needed(p) == [] for p in olds)
    assert all(raw_digest(p) == raw[p] for p in olds)


def test_renamed_session_is_relinked(processed, tmp_path):
    src = tmp_path / "x" / "a.h5"
    src.parent.mkdir()
    shutil.copy(processed, src)
    shutil.copy(derived_path(processed), derived_path(src))
    assert migration_needed(src) and "renamed or copied" in migration_needed(src)[0]
    migrate_session(src)
    with h5py.File(src, "r") as f:
        assert f.get("derived", getlink=True).filename == "a.derived.h5"
    assert read_derived(src)["contacts"]["t_strike"].size > 0


def test_real_recording_migrated(tmp_path):
    from treadlab.acquisition.io.c3d_import import import_c3d

    h5 = import_c3d(shared_file("running", "RBDS001runT35.c3d"), tmp_path / "real" / "r.h5")
    process_session(h5)
    old = make_v1(h5, tmp_path / "v1" / "r.h5")
    raw = raw_digest(old)
    assert migrate_session(old)
    assert raw_digest(old) == raw and validate_session(old) == []
    assert read_derived(old)["contacts"]["t_strike"].size > 50
