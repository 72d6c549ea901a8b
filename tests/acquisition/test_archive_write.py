"""The archive writer's direct HDF5 calls (``format.set_attr``, ``write_array``, ``new_dataset``)
against h5py's own ``attrs`` and ``create_dataset``, the slow and independent reference: the
same HDF5 type, dataspace, creation properties (chunks, filters, no time stamps), values and
attributes. ``bitround`` against its definition; ``atomic_h5(small=True)``'s in-memory image."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.acquisition.test_archive import make_derived, make_session
from treadlab.acquisition.archive import (LIBVER, derived_path, read_derived, validate_session,
                                          write_derived, write_session)
from treadlab.acquisition.archive.atomic import atomic_h5
from treadlab.acquisition.archive.format import (GZIP_LEVEL, bitround, fixed_chunks, new_dataset,
                                                 set_attr, str_dtype, to_attr, write_array)


@pytest.fixture
def two_files():
    """An h5py-written file and one written by the functions under test, in memory."""
    files = [h5py.File(f"{name}-{id(object())}", "w", driver="core", backing_store=False,
                       libver=LIBVER) for name in ("ref", "fast")]
    yield files
    for f in files:
        f.close()


def _attr_record(obj, name):
    """An attribute as HDF5 holds it: type, dataspace (class and shape) and value."""
    a = h5py.h5a.open(obj.id, name.encode())
    value = obj.attrs[name]
    return (a.get_type(), a.get_space().get_simple_extent_type(), a.shape,
            repr(value.tolist() if isinstance(value, np.ndarray) else value))


ATTR_VALUES = {
    "text": "abc", "utf8": "hé 😀", "empty": "", "float": 1.5, "nan": float("nan"), "int": 5,
    "negative": -3, "int_beyond_64_bits": 2 ** 64, "np_float64": np.float64(2), "np_float32":
    np.float32(1.25), "np_uint8": np.uint8(1), "np_int16": np.int16(-2), "np_bool": np.bool_(True),
    "bytes": b"xy", "floats": np.array([1.0, 2.0]), "ints": np.arange(3),
    "strided": np.arange(10.0)[::2], "matrix": np.ones((2, 2)), "texts": to_attr(["a", "b"]),
    "no_texts": to_attr([]), "unicode_array": np.array(["x", "y"]), "list": [1, 2],
    "np_str": np.str_("z"),
}


@pytest.mark.parametrize("key", sorted(ATTR_VALUES))
def test_set_attr_writes_what_h5py_attrs_writes(two_files, key):
    ref, fast = two_files
    value = ATTR_VALUES[key]
    try:
        ref.attrs[key] = value
    except Exception as exc:  # the same refusal, same type
        with pytest.raises(type(exc)):
            set_attr(fast, key, value)
        return
    set_attr(fast, key, value)
    got, want = _attr_record(fast, key), _attr_record(ref, key)
    assert got[0] == want[0] and got[1:] == want[1:]
    set_attr(fast, key, 7.0)  # replaces, like attrs[key] = ...
    ref.attrs[key] = 7.0
    assert _attr_record(fast, key)[1:] == _attr_record(ref, key)[1:]


def test_set_attr_on_a_low_level_id(two_files):
    ref, fast = two_files
    ds = fast.create_dataset("d", data=np.arange(3))
    for key, value in (("units", "s"), ("list", [1, 2])):  # the direct path and h5py's
        set_attr(ds.id, key, value)
        ref.attrs[key] = value
        assert _attr_record(ds, key)[1:] == _attr_record(ref, key)[1:]


DATASETS = {
    "floats": (np.linspace(0, 1, 340), {}),
    "float32_2d": (np.ones((50, 12), np.float32), {"level": 1}),
    "int8": (np.arange(-5, 5, dtype=np.int8), {}),
    "int64": (np.arange(4), {}),
    "booleans": (np.array([True, False, True]), {}),
    "texts": (np.array(["pelvic_drop", "overstride", "é"], dtype=object), {}),
    "unicode": (np.array(["a", "bc"]), {}),
    "bytes": (np.array([b"a", b"bc"], dtype=object), {}),
    "scalar": (np.float64(3.5), {}),
    "scalar_text": (np.array("x", dtype=object), {}),
    "level_0": (np.arange(1000.0), {"level": 0}),
    "not_shuffled": (np.arange(100.0), {"shuffle": False}),
    "large": (np.random.default_rng(0).normal(size=(40_000, 3)), {}),  # write_chunks_id
    "large_edge_chunk": (np.random.default_rng(1).normal(size=(100_001, 3)), {}),  # 2 chunks
    "empty": (np.zeros((0, 3)), {}),
}


def _reference_array(group, name, data, units, level=None, shuffle=True, **attrs):
    """What ``write_array`` wrote before it called HDF5 directly, in h5py's terms."""
    arr = np.asarray(data)
    if arr.dtype.kind in "USO":
        arr = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel()],
                       dtype=object).reshape(arr.shape)
        dtype, shuffle = str_dtype(), False
    else:
        if arr.dtype.kind == "b":
            attrs.setdefault("boolean", 1)
            arr = arr.astype(np.uint8)
        dtype = arr.dtype
    kwargs = {}
    if arr.ndim and arr.size:
        kwargs = dict(chunks=fixed_chunks(arr.shape, np.dtype(dtype)), compression="gzip",
                      compression_opts=GZIP_LEVEL if level is None else level,
                      shuffle=bool(shuffle and dtype.itemsize > 1))
    elif arr.ndim:
        kwargs = dict(maxshape=tuple(None if s == 0 else s for s in arr.shape),
                      chunks=tuple(max(1, s) for s in arr.shape), compression="gzip",
                      compression_opts=GZIP_LEVEL if level is None else level,
                      shuffle=bool(shuffle and dtype.itemsize > 1))
    ds = group.create_dataset(name, shape=arr.shape, dtype=dtype, **kwargs)
    if arr.size:
        ds[...] = arr
    ds.attrs["units"] = units
    for key, value in attrs.items():
        ds.attrs[key] = to_attr(value)
    return ds


@pytest.mark.parametrize("key", sorted(DATASETS))
def test_write_array_writes_what_h5py_create_dataset_writes(two_files, key):
    ref, fast = two_files
    data, kw = DATASETS[key]
    want = _reference_array(ref, key, data, "s", **kw, description="d")
    got = write_array(fast, key, data, "s", **kw, description="d")
    assert got.id.get_type() == want.id.get_type()
    assert got.shape == want.shape and got.maxshape == want.maxshape
    assert got.id.get_create_plist() == want.id.get_create_plist()  # chunks, filters, times
    assert got.chunks == want.chunks and got.compression == want.compression
    np.testing.assert_array_equal(got[()], want[()])
    assert sorted(got.attrs) == sorted(want.attrs)
    for name in want.attrs:
        a, b = _attr_record(got, name), _attr_record(want, name)
        assert a[0] == b[0] and a[1:] == b[1:]


def test_new_dataset_resizable_and_fixed(two_files):
    _, fast = two_files
    live = new_dataset(fast, "live", (0, 3), np.float32, "mm", rows_per_chunk=100)
    assert live.maxshape == (None, 3) and live.chunks == (100, 3)
    fixed = new_dataset(fast, "fixed", (4,), np.float64, "s", data=np.arange(4.0), clock="x")
    assert fixed.chunks == (4,) and fixed.attrs["clock"] == "x" and fixed.attrs["units"] == "s"
    np.testing.assert_array_equal(fixed[()], np.arange(4.0))
    shaped = new_dataset(fast, "broadcast", (3, 2), np.float64, "1", data=np.arange(2.0))
    np.testing.assert_array_equal(shaped[()], np.tile(np.arange(2.0), (3, 1)))
    wide = np.random.default_rng(2).normal(size=(30_000, 3))  # float64 into float32 chunks
    converted = new_dataset(fast, "converted", wide.shape, np.float32, "mm", data=wide)
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted[()], wide.astype(np.float32))


def test_fixed_chunks_are_equal_and_one_to_two_mib():
    f4 = np.dtype(np.float32)
    assert fixed_chunks((24_000, 12), f4) == (24_000, 12)  # 1.15 MB: one chunk, no padding
    assert fixed_chunks((360_000, 12), f4) == (22_500, 12)  # 16 equal chunks
    assert fixed_chunks((340,), np.dtype(np.float64)) == (340,)
    n = 10_000_000
    rows = fixed_chunks((n,), np.dtype(np.float64))[0]
    n_chunks = -(-n // rows)
    assert (1 << 20) <= rows * 8 < (2 << 20) and n_chunks * rows - n < n_chunks  # < a row each


def _bitround_reference(values, bits):
    """BitRound by its definition: add half of the last kept bit, clear the dropped bits;
    NaN and inf untouched."""
    x = np.array(values, dtype=np.float32, copy=True)
    drop = 23 - bits
    if drop <= 0:
        return x
    u = x.view(np.uint32)
    finite = np.isfinite(x)
    u[finite] = (u[finite] + np.uint32(1 << (drop - 1))) & np.uint32(
        (0xFFFFFFFF << drop) & 0xFFFFFFFF)
    return x


@pytest.mark.parametrize("bits", [0, 1, 10, 22, 23, 30])
def test_bitround_matches_its_definition(bits):
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal((3000, 7)) * 10.0 ** rng.uniform(-40, 38, (3000, 7))).astype(
        np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[0, :6] = [np.inf, -np.inf, np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e-45,
                -0.0]
    before = x.copy()
    got = bitround(x, bits)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got.view(np.uint32), _bitround_reference(x, bits).view(np.uint32))
    np.testing.assert_array_equal(x.view(np.uint32), before.view(np.uint32))  # input kept
    assert got is not x
    np.testing.assert_array_equal(bitround(x.tolist(), bits).view(np.uint32),
                                  got.view(np.uint32))


def test_small_atomic_h5_writes_a_closed_file(tmp_path):
    target = tmp_path / "d.h5"
    with atomic_h5(target, libver=LIBVER, small=True) as f:
        write_array(f, "x", np.arange(5.0), "s")
        f.attrs["a"] = "b"
    image = target.read_bytes()
    # superblock version 3 (libver v110), its status flags clear: not "open for writing"
    assert image[:8] == b"\x89HDF\r\n\x1a\n" and image[8] == 3 and image[11] == 0
    with h5py.File(target, "r") as f:
        np.testing.assert_array_equal(f["x"][()], np.arange(5.0))
        assert f.attrs["a"] == "b"
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_h5(target, libver=LIBVER, small=True) as f:
            write_array(f, "y", np.arange(5.0), "s")
            raise RuntimeError("stop")
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["d.h5"]


def test_derived_file_rewritten_many_times(tmp_path):
    """Derived files built one after another in one process (the shared creation property
    lists and types are reused) each read back whole."""
    path = tmp_path / "s.h5"
    write_session(path, make_session())
    for i in range(3):
        d = make_derived()
        d["contacts"]["t_strike"] = d["contacts"]["t_strike"] + i
        write_derived(path, d, {"pipeline_version": str(i), "config_hash": "x"})
        r = read_derived(path)
        assert r["attrs"]["pipeline_version"] == str(i)
        np.testing.assert_array_equal(r["contacts"]["t_strike"], d["contacts"]["t_strike"])
    assert validate_session(path) == []
    with h5py.File(derived_path(path), "r") as f:
        assert [s.name for s in f["derived/contacts/t_strike"].dims[0].values()] == [
            "/derived/contacts/contact"]


def test_derived_file_bytes_do_not_depend_on_what_was_written_before(tmp_path, monkeypatch):
    """The property lists, dataspaces, types and creation property lists made once and reused
    change nothing in the file: written first in a process (empty caches), after others, or in
    a file h5py creates itself, the same derived data gives the same bytes."""
    import contextlib
    import uuid

    from treadlab.acquisition.archive import atomic, format as fmt, write as wr

    path = tmp_path / "s.h5"
    write_session(path, make_session())
    attrs = {"pipeline_version": "1", "config_hash": "x", "processed_utc": "2026-01-01T00:00:00"}

    def derived_bytes(name, shift=0.0):
        d = make_derived(20_000)  # angles large enough for write_chunks_id
        d["contacts"]["t_strike"] = d["contacts"]["t_strike"] + shift
        return wr.write_derived_file(path, d, attrs, session_id="id",
                                     target=tmp_path / name).read_bytes()

    for cache in ((atomic, "_IN_MEMORY_PLISTS"), (fmt, "_SPACES"), (fmt, "_TYPES"),
                  (fmt, "_DCPLS")):
        monkeypatch.setattr(*cache, {})
    first = derived_bytes("first.h5")
    for i in range(2):
        derived_bytes("other.h5", shift=i + 1.0)
    assert derived_bytes("again.h5") == first

    @contextlib.contextmanager
    def h5py_made(target, *, libver=None, small=False):
        with h5py.File(f"ref.{uuid.uuid4().hex}", "w", driver="core", backing_store=False,
                       libver=libver) as f:
            yield f
            f.flush()
            target.write_bytes(f.id.get_file_image())

    monkeypatch.setattr(wr, "atomic_h5", h5py_made)
    assert derived_bytes("h5py.h5") == first
