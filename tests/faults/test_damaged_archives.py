"""Damaged archives through every command: truncation, byte flips in metadata and in data
chunks, ragged and missing datasets, impossible values.

Every command answers with exit 0 or one line naming the file (never a traceback or a crash),
``validate`` and the commands that need the damaged part fail (no silent success), and a
failing command leaves its input unchanged (see ``conftest.run_command``).
"""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from tests.faults.conftest import run_command
from treadlab.acquisition.archive import derived_path, validate_session, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.graph import process_session

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("dmg") / "base.h5"
    s = simulate_session(RunnerParams(duration_s=6.0, seed=11))
    s.attrs["subject_id"] = "D1"
    write_session(path, s)
    process_session(path)
    assert validate_session(path) == []
    return path


def _chunk_offset(path, name):
    with h5py.File(path, "r") as f:
        ds = f[name]
        info = ds.id.get_chunk_info(0)
        return int(info.byte_offset), int(info.size)


def _flip(path, offset, n=8):
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(frac):
    def damage(path):
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * frac)])
    return damage


def _flip_chunk(name):
    def damage(path):
        off, size = _chunk_offset(path, name)
        _flip(path, off + size // 2, 16)
    return damage


def _flip_meta(offset):
    def damage(path):
        _flip(path, offset, 4)
    return damage


def _edit(fn):
    def damage(path):
        with h5py.File(path, "r+") as f:
            fn(f)
    return damage


def _resize(name, rows):
    return _edit(lambda f: f[name].resize(rows, axis=0))


def _delete(name):
    def fn(f):
        del f[name]
    return _edit(fn)


def _attr(name, key, value):
    def fn(f):
        f[name].attrs[key] = value
    return _edit(fn)


def _put(name, index, value):
    def fn(f):
        ds = f[name]
        data = ds[()]
        data[index] = value
        ds[...] = data
    return _edit(fn)


def _replace(name, values):
    def fn(f):
        attrs = dict(f[name].attrs)
        del f[name]
        ds = f.create_dataset(name, data=values)
        for k, v in attrs.items():
            if k not in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME"):
                ds.attrs[k] = v
    return _edit(fn)


RAW = "raw"      # the raw data are damaged: every command that reads them must fail
DERIVED = "derived"  # only /derived is damaged: process may rebuild it
DAMAGES = {
    "empty": (lambda p: p.write_bytes(b""), RAW),
    "truncated_10_bytes": (_truncate(0.0001), RAW),
    "truncated_half": (_truncate(0.5), RAW),
    "truncated_90pct": (_truncate(0.9), RAW),
    "superblock_flip": (_flip_meta(20), RAW),
    "object_header_flip": (_flip_meta(900), RAW),
    "force_chunk_flip": (_flip_chunk("raw/force/wrench"), RAW),
    "marker_chunk_flip": (_flip_chunk("raw/markers/positions"), RAW),
    "time_chunk_flip": (_flip_chunk("raw/force/time"), RAW),
    "markers_time_short": (_resize("raw/markers/time", 100), RAW),
    "force_wrench_short": (_resize("raw/force/wrench", 10), RAW),
    "no_force_wrench": (_delete("raw/force/wrench"), RAW),
    "no_markers": (_delete("raw/markers"), RAW),
    "force_rate_huge": (_attr("raw/force", "rate_hz", 1e12), RAW),
    "force_rate_zero": (_attr("raw/force", "rate_hz", 0.0), RAW),
    "marker_rate_zero": (_attr("raw/markers", "rate_hz", 0.0), RAW),
    "marker_rate_nan": (_attr("raw/markers", "rate_hz", np.nan), RAW),
    "body_mass_huge": (_attr("/", "body_mass_kg", 1e9), RAW),
    "body_mass_negative": (_attr("/", "body_mass_kg", -70.0), RAW),
    "subject_id_integer": (_attr("/", "subject_id", 42), RAW),
    "labels_integers": (_attr("raw/markers", "labels", np.arange(20)), RAW),
    "inf_in_force": (_put("raw/force/wrench", (100, 0, 2), np.inf), RAW),
    "inf_in_markers": (_put("raw/markers/positions", (50, 3, 1), -np.inf), RAW),
    "time_backwards": (_put("raw/force/time", 500, 0.0), RAW),
    "contacts_ragged": (_resize("derived/contacts/t_off", 3), DERIVED),
    "scores_missing": (_delete("derived/scores/score"), DERIVED),
    "contacts_side_text": (_replace("derived/contacts/side",
                                    np.array([b"x"] * 5)), DERIVED),
}

# (argv after the file, which damages the command must fail on)
COMMANDS = {
    "validate": ([], {RAW, DERIVED}),
    "inspect": ([], set()),
    "inspect_json": (["--json"], set()),
    "process": ([], {RAW}),
    "export_hdf5": (["--to", "{out}", "--format", "hdf5"], {RAW, DERIVED}),
    "export_c3d": (["--to", "{out}", "--format", "c3d"], {RAW, DERIVED}),
    "export_csv": (["--to", "{out}", "--format", "csv"], {RAW, DERIVED}),
    "report": (["-o", "{out}"], {RAW, DERIVED}),
    "recover": ([], {RAW, DERIVED}),
}
_NAMES = {"inspect_json": "inspect", "export_hdf5": "export", "export_c3d": "export",
          "export_csv": "export"}


def _copy_session(src, folder):
    """``src`` and its derived file (docs/archive.md §11) copied into ``folder``, same names."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, folder / src.name)
    if derived_path(src).exists():
        shutil.copyfile(derived_path(src), derived_path(folder / src.name))
    return folder / src.name


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", "damaged-archives-secret-0123456789")


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_every_command_on_a_damaged_archive(base, tmp_path, secret, damage):
    fn, kind = DAMAGES[damage]
    path = _copy_session(base, tmp_path / damage)  # a session travels with its derived file
    fn(path)
    problems = []
    for cmd, (extra, must_fail) in COMMANDS.items():
        out = tmp_path / f"out-{cmd}"
        argv = [_NAMES.get(cmd, cmd), path] + [a.format(out=out) for a in extra]
        if cmd == "process":           # process writes: work on a copy, keep the damage
            work = _copy_session(path, tmp_path / f"work-{damage}")
            argv[1] = work
            run = run_command(argv, inputs=[work], expect="fail" if kind in must_fail
                              else "any")
        else:
            run = run_command(argv, inputs=[path], expect="fail" if kind in must_fail
                              else "any")
        if run.code == 1 and path.name not in run.err and "work-" not in run.err \
                and derived_path(path).name not in run.err:
            run.problems.append("the error does not name the file")
        if run.problems:
            problems.append(f"{cmd}: {run.problems}: {run.err.strip()[-200:]}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def real_base(tmp_path_factory):
    """A real treadmill recording (RBDS, ../shared/data), imported and processed."""
    from tests.conftest import shared_file
    from treadlab.acquisition.io.c3d_import import import_c3d

    src = shared_file("running", "RBDS001runT35.c3d")
    path = tmp_path_factory.mktemp("real") / "rbds.h5"
    import_c3d(src, path, subject_id="RBDS001")
    process_session(path)
    assert validate_session(path) == []
    return path


REAL_DAMAGES = ("force_chunk_flip", "marker_chunk_flip", "markers_time_short", "inf_in_force",
                "body_mass_huge", "truncated_half", "labels_integers")


@pytest.mark.parametrize("damage", REAL_DAMAGES)
def test_damaged_real_recording(real_base, tmp_path, secret, damage):
    fn, _ = DAMAGES[damage]
    path = tmp_path / f"real-{damage}.h5"
    shutil.copyfile(real_base, path)
    fn(path)
    for argv in (["validate", path], ["recover", path],
                 ["export", path, "--to", tmp_path / "out", "--format", "csv"]):
        run = run_command(argv, inputs=[path])
        assert run.code == 1 and not run.problems and path.name in run.err, (argv, run.err)
    work = tmp_path / "work.h5"
    shutil.copyfile(path, work)
    run = run_command(["process", work], inputs=[work])
    assert run.code == 1 and not run.problems and work.name in run.err, run.err
