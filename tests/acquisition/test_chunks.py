"""The chunk reader (acquisition/archive/chunks.py): exactly h5py's values, h5py where it cannot
decode a dataset itself, one-line errors on damaged chunks (docs/archive.md §15)."""
import io
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.acquisition.archive import reading, read_force, read_markers
from treadlab.acquisition.archive.chunks import (SMALL_SHUFFLE_BYTES, _shuffle, fast_path,
                                                 read_all, write_chunks)
from treadlab.acquisition.io.c3d_import import import_c3d
from treadlab.acquisition.sim.synthetic import simulate_session_file
from treadlab.config.errors import InputError
from treadlab.pipeline.graph import process_session


def _same(ds) -> np.ndarray:
    got, want = read_all(ds), ds[()]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    return got


@pytest.mark.parametrize("dtype", ["<f4", "<f8", ">f4", "<i2", "<u1", "<i8", ">i4"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_deflate_chunks_read_as_h5py_reads_them(tmp_path, dtype, shuffle):
    rng = np.random.default_rng(1)
    data = (rng.normal(0, 300, (1003, 3, 5)) if dtype[1] == "f" else
            rng.integers(0, 120, (1003, 3, 5))).astype(dtype)
    if dtype[1] == "f":
        data[17:40, 1] = np.nan
    with h5py.File(tmp_path / "a.h5", "w") as f:
        # edge chunks along two axes; chunks of whole rows (a stream chunked along time),
        # the last one partial; a 1-D dataset with a partial last chunk
        f.create_dataset("d", data=data, chunks=(100, 2, 5), compression="gzip",
                         compression_opts=1, shuffle=shuffle)
        f.create_dataset("r", data=data, chunks=(100, 3, 5), compression="gzip",
                         compression_opts=1, shuffle=shuffle)
        f.create_dataset("t", data=data[:, 0, 0].copy(), chunks=(64,), compression="gzip",
                         shuffle=shuffle)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert fast_path(f["d"]) and fast_path(f["r"]) and fast_path(f["t"])
        _same(f["d"])
        _same(f["r"])
        _same(f["t"])


@pytest.mark.parametrize("kw", [dict(), dict(compression="lzf"),
                                dict(compression="gzip", fletcher32=True),
                                dict(compression="gzip", scaleoffset=2)])
def test_other_layouts_are_left_to_h5py(tmp_path, kw):
    data = np.linspace(0, 100, 3000).reshape(1000, 3)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("d", data=data, chunks=(128, 3), **kw)
        f.create_dataset("c", data=data)  # contiguous
        f.create_dataset("s", data=np.array(["a", "bc"], dtype=object), dtype=h5py.string_dtype(),
                         chunks=(1,), compression="gzip")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        for name in ("d", "c"):
            assert not fast_path(f[name])
            _same(f[name])
        assert not fast_path(f["s"])
        assert list(read_all(f["s"])) == [b"a", b"bc"]


def test_unwritten_chunks_hold_the_fill_value_and_empty_datasets_read(tmp_path):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        d = f.create_dataset("d", shape=(1000, 2), maxshape=(None, 2), chunks=(100, 2),
                             dtype="f4", compression="gzip", fillvalue=np.nan)
        d[250:420] = 7.0  # chunks 0, 1 and 5-9 are never written
        f.create_dataset("e", shape=(0, 3), maxshape=(None, 3), chunks=(10, 3), dtype="f4",
                         compression="gzip")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        got = _same(f["d"])
        assert np.isnan(got[:200]).all() and (got[250:420] == 7.0).all()
        assert read_all(f["e"]).shape == (0, 3)


def test_in_memory_and_swmr_files_are_read_by_h5py(tmp_path):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("d", data=np.arange(500.0), chunks=(64,), compression="gzip")
        assert not fast_path(f["d"])
        _same(f["d"])
    with h5py.File(tmp_path / "w.h5", "w", libver="latest") as f:
        f.create_dataset("d", data=np.arange(500.0), chunks=(64,), compression="gzip")
    with h5py.File(tmp_path / "w.h5", "r", swmr=True) as f:
        assert not fast_path(f["d"])
        _same(f["d"])


def test_a_session_reads_as_before_and_a_damaged_chunk_is_one_line_naming_the_dataset(tmp_path):
    path = tmp_path / "s.h5"
    simulate_session_file(str(path), params={"duration_s": 6, "seed": 2})
    with h5py.File(path, "r") as f:
        for name in ("raw/force/time", "raw/force/wrench", "raw/markers/time",
                     "raw/markers/positions"):
            assert fast_path(f[name])
            _same(f[name])
        info = f["raw/markers/positions"].id.get_chunk_info(3)
    damaged = tmp_path / "damaged.h5"
    shutil.copyfile(path, damaged)
    with open(damaged, "r+b") as fh:  # garbage in the middle of one compressed chunk
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff" * 64)
    before = damaged.read_bytes()
    with pytest.raises(InputError) as err, reading(damaged) as f:
        read_markers(f, damaged)
    assert "/raw/markers/positions" in str(err.value) and "\n" not in str(err.value)
    assert damaged.read_bytes() == before  # nothing written to the input


def test_a_real_recording_imported_from_c3d_reads_as_h5py_reads_it(tmp_path):
    out = tmp_path / "r.h5"
    import_c3d(shared_file("running", "RBDS001runT35.c3d"), out, body_mass_kg=67.9)
    with reading(out) as f:
        force, markers = read_force(f, out), read_markers(f, out)
        for name in ("raw/force/time", "raw/force/wrench", "raw/markers/time",
                     "raw/markers/positions"):
            assert fast_path(f[name])
            _same(f[name])
        np.testing.assert_array_equal(force.wrench, f["raw/force/wrench"][()])
    assert markers.positions.shape[0] == markers.time.shape[0] > 1000


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<i2", ">f4", "<u1"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_chunks_deflated_here_are_read_back_by_hdf5s_own_zlib(tmp_path, dtype, shuffle):
    rng = np.random.default_rng(3)
    data = (rng.normal(0, 50, (30011, 12)) if dtype[1] == "f" else
            rng.integers(0, 100, (30011, 12))).astype(dtype)
    if dtype[1] == "f":
        data[100:300, 4] = np.nan
    with h5py.File(tmp_path / "w.h5", "w") as f:
        ds = f.create_dataset("d", shape=data.shape, dtype=data.dtype, chunks=(4096, 12),
                              compression="gzip", compression_opts=1, shuffle=shuffle)
        assert write_chunks(ds, data)  # 8 chunks, the last one an edge chunk
        g = f.create_dataset("g", shape=(10,), dtype="f4", compression="lzf", chunks=(5,))
        assert not write_chunks(g, np.zeros(10, "f4"))  # not deflate: left to h5py
    with h5py.File(tmp_path / "w.h5", "r") as f:
        np.testing.assert_array_equal(f["d"][()], data)  # HDF5's zlib decodes ISA-L's deflate
        np.testing.assert_array_equal(read_all(f["d"]), data)


def test_a_long_sessions_derived_angles_are_read_by_netcdf_c(tmp_path):
    ncdump = shutil.which("ncdump")
    if ncdump is None:
        pytest.skip("ncdump (netcdf-bin) not installed")
    path = tmp_path / "long.h5"
    simulate_session_file(str(path), params={"duration_s": 40, "seed": 4})
    process_session(path)
    derived = path.with_name("long.derived.h5")
    with h5py.File(derived, "r") as f:
        values = f["derived/angles/values"][()]
    out = subprocess.run([ncdump, "-v", "values", str(derived)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip()
    text = out.stdout.split("values =", 1)[1].split(";", 1)[0]
    got = np.array([float(v.rstrip("f")) for v in text.replace("\n", " ").split(",")])
    np.testing.assert_allclose(got.reshape(values.shape), values, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("rows", [97, SMALL_SHUFFLE_BYTES // 3])  # a copy; shifts (itemsize > 1)
@pytest.mark.parametrize("dtype", ["<u1", "<i2", ">f4", "<f4", "<f8", ">i8", "<f2"])
def test_shuffle_is_hdf5s_byte_transpose(dtype, rows):
    block = np.random.default_rng(5).normal(0, 1e3, (rows, 3)).astype(dtype)
    want = np.ascontiguousarray(block.view(np.uint8).reshape(-1, block.dtype.itemsize).T)
    np.testing.assert_array_equal(_shuffle(block), want)
