"""Whole datasets read and written chunk by chunk outside HDF5's filter pipeline
(docs/archive.md §15).

A session's raw streams are gzip (deflate) chunks, optionally byte-shuffled (docs/archive.md
§3). Reading all of such a dataset through h5py decompresses every chunk with zlib inside
HDF5, holding h5py's global lock. :func:`read_all` reads the same chunks itself: HDF5 is asked
only where each chunk lies (``H5Dchunk_iter``), the compressed bytes are read with ``pread``
and inflated by libdeflate (``deflate``; it checks each chunk's Adler-32 like zlib, inflates
the raw streams here about 1.6× as fast as zlib and 1.25× as fast as ISA-L, and releases the
GIL), then un-shuffled and placed like HDF5 would; a chunk spanning whole rows (a stream
chunked along time) is one contiguous run of the result, copied in one step. So the
pipeline's two raw reads (force and markers) run side by side in threads, each faster than
HDF5's own.

:func:`write_chunks` is the other direction, for the numeric arrays the pipeline writes (the
joint angles and every small column of a derived file): each chunk is shuffled and deflated by
ISA-L (``isal``, level 2: smaller than zlib's level 1 and about 9× faster on the angles, 2.8×
libdeflate's fastest level) and handed to HDF5 as it is (``H5Dwrite_chunk``). On the 28
340-row contact columns of a 2-minute session that is 0.29 ms of compression instead of
zlib's 0.82 ms (libdeflate's level 1: 0.25 ms). Any deflate decoder reads it back. Each
direction uses the fastest of the two libraries measured for it (docs/performance.md,
"Deflate").

The result of :func:`read_all` is exactly ``ds[()]``, same dtype and values. Any dataset it
does not cover is read by h5py as before: no chunks, other filters (Fletcher-32, szip, LZF, plugins), a chunk
stored with a filter skipped, strings or compound types, a file not on the default POSIX
driver (in-memory images), a user block, a file opened in SWMR mode, or an h5py built against
an HDF5 older than 1.12.3 (no ``H5Dchunk_iter``).
"""
from __future__ import annotations

import math
import operator
import os
import sys

import deflate
import h5py
import numpy as np
from isal import isal_zlib

#: The filter pipelines :func:`read_all` decodes itself: deflate alone, or shuffle then deflate.
_DEFLATE = (h5py.h5z.FILTER_DEFLATE,)
_SHUFFLE_DEFLATE = (h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE)


#: HDF5's open flags of a file in SWMR mode (reading or writing).
_SWMR = h5py.h5f.ACC_SWMR_READ | h5py.h5f.ACC_SWMR_WRITE


def _filters(ds, plist=None) -> tuple:
    """The filter pipeline of ``ds`` (of its creation property list ``plist`` when given)."""
    if plist is None:
        plist = ds.id.get_create_plist()
    return tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))


def _decodable(ds) -> tuple | None:
    """``(filters, chunk shape, file descriptor)`` when :func:`read_all` decodes ``ds``
    itself, else None. Asked of HDF5's low-level calls, each once: h5py's ``Dataset`` and
    ``File`` properties make several calls each, and every HDF5 call costs 10-50 µs of CPU
    here (its metadata is out of the CPU caches after inflating the previous dataset)."""
    plist = ds.id.get_create_plist()
    if plist.get_layout() != h5py.h5d.CHUNKED or 0 in ds.shape or ds.dtype.kind not in "biuf":
        return None
    fid = h5py.h5i.get_file_id(ds.id)
    if fid.get_access_plist().get_driver() != h5py.h5fd.SEC2 \
            or fid.get_create_plist().get_userblock() or fid.get_intent() & _SWMR \
            or not hasattr(ds.id, "chunk_iter"):
        return None  # (no chunk_iter: h5py built against an HDF5 before 1.12.3)
    filters = _filters(ds, plist)
    if filters not in (_DEFLATE, _SHUFFLE_DEFLATE):
        return None
    return filters, plist.get_chunk(), fid.get_vfd_handle()


def fast_path(ds) -> bool:
    """Whether :func:`read_all` decodes ``ds`` itself (see the module docstring)."""
    return _decodable(ds) is not None


def _unshuffle(raw: bytes, itemsize: int) -> np.ndarray:
    """HDF5's shuffle filter undone: the bytes of ``n`` elements stored as all first bytes,
    then all second bytes, … back to element order (a uint8 array)."""
    b = np.frombuffer(raw, np.uint8)
    if itemsize == 1:
        return b
    return np.ascontiguousarray(b.reshape(itemsize, -1).T).reshape(-1)


def read_all(ds: h5py.Dataset) -> np.ndarray:
    """All of dataset ``ds``, as ``ds[()]`` returns it (same shape, dtype and values).

    Parameters
    ----------
    ds : h5py.Dataset
        Any dataset; those :func:`fast_path` does not cover are read by h5py.

    Returns
    -------
    ndarray
        The data; chunks never written hold the dataset's fill value.

    Raises
    ------
    OSError
        A chunk lies beyond the end of the file (truncated file).
    ValueError
        A chunk does not inflate to its size (damaged data).
    deflate.DeflateError
        A chunk is not a deflate stream, or fails its checksum (damaged data). Callers that name the file catch
        ``Exception`` (:mod:`treadlab.acquisition.archive.read`).
    """
    decodable = _decodable(ds)
    if decodable is None:
        return ds[()]
    filters, chunks, fd = decodable
    shape, dtype = ds.shape, ds.dtype
    shuffle = filters == _SHUFFLE_DEFLATE
    infos: list = []
    ds.id.chunk_iter(infos.append)
    if any(info.filter_mask for info in infos):  # a chunk stored with a filter skipped
        return ds[()]
    n_grid = math.prod(-(-s // c) for s, c in zip(shape, chunks))
    if len(infos) < n_grid:  # chunks never written read as the fill value
        out = np.full(shape, ds.fillvalue, dtype=dtype)
    else:
        out = np.empty(shape, dtype=dtype)
    itemsize = dtype.itemsize
    nbytes = math.prod(chunks) * itemsize
    # chunks spanning whole rows (a stream chunked along time only): each one is a single
    # contiguous run of ``out``, copied there in one step (the few Python operations per
    # chunk are counted: a 2-minute session has 960 chunks)
    rows = tuple(chunks[1:]) == tuple(shape[1:])
    row_bytes = math.prod(shape[1:]) * itemsize
    whole = memoryview(out.reshape(-1).view(np.uint8))
    last = whole.nbytes - nbytes  # a row chunk starting beyond this byte is an edge chunk
    plain = not (shuffle and itemsize > 1)  # (shuffling single bytes changes nothing)
    for base, buf, run in _runs(fd, infos):
        for info in run:
            at = info.byte_offset - base
            raw = deflate.zlib_decompress(buf[at:at + info.size], nbytes)
            if len(raw) != nbytes:  # (the Adler-32 is checked by libdeflate)
                raise ValueError(f"chunk at {tuple(info.chunk_offset)} inflates to {len(raw)} "
                                 f"bytes, not {nbytes} (damaged file?)")
            if rows:
                start = info.chunk_offset[0] * row_bytes
                if plain and start <= last:
                    whole[start:start + nbytes] = raw
                    continue
                n = min(nbytes, whole.nbytes - start)
                if plain:
                    whole[start:] = memoryview(raw)[:n]
                else:  # byte plane k holds byte k of every element
                    planes = np.frombuffer(raw, np.uint8).reshape(itemsize, -1)
                    np.copyto(np.frombuffer(whole[start:start + n], np.uint8).reshape(-1, itemsize),
                              planes[:, :n // itemsize].T)
                continue
            block = (_unshuffle(raw, itemsize) if shuffle else np.frombuffer(raw, np.uint8)) \
                .view(dtype).reshape(chunks)
            dst = tuple(slice(o, min(o + c, s))
                        for o, c, s in zip(info.chunk_offset, chunks, shape))
            out[dst] = block[tuple(slice(0, d.stop - d.start) for d in dst)]
    return out


_BYTE_OFFSET = operator.attrgetter("byte_offset")

#: Most bytes one ``pread`` of :func:`_runs` reads (chunks adjacent in the file are read together).
RUN_BYTES = 4 << 20


def _runs(fd: int, infos: list):
    """``(file offset, bytes, chunks)`` for runs of chunks lying one after the other in the
    file, each run read with one ``pread`` of at most :data:`RUN_BYTES` (or one chunk): a
    stream written in order is a few reads instead of one per chunk.

    Raises OSError naming the first chunk that lies beyond the end of the file."""
    infos = sorted(infos, key=_BYTE_OFFSET)
    k = 0
    while k < len(infos):
        base = end = infos[k].byte_offset
        j = k
        while j < len(infos) and infos[j].byte_offset == end \
                and (j == k or end + infos[j].size - base <= RUN_BYTES):
            end += infos[j].size
            j += 1
        buf = memoryview(os.pread(fd, end - base, base))
        if len(buf) != end - base:
            short = next(i for i in infos[k:j] if i.byte_offset + i.size > base + len(buf))
            got = max(0, base + len(buf) - short.byte_offset)
            raise OSError(f"chunk at {tuple(short.chunk_offset)}: {got} of {short.size} bytes "
                          f"at byte offset {short.byte_offset} (truncated file?)")
        yield base, buf, infos[k:j]
        k = j


#: ISA-L's compression level for :func:`write_chunks` (0-3; 2: about zlib's level-1 size or
#: smaller, at several times its speed).
ISAL_LEVEL = 2

#: Blocks smaller than this (bytes) are shuffled by one transposing copy (:func:`_shuffle`).
SMALL_SHUFFLE_BYTES = 1 << 15


def write_chunks(ds: h5py.Dataset, data: np.ndarray) -> bool:
    """Write all of ``data`` into the new, empty dataset ``ds`` by compressing its chunks
    here (see the module docstring). Returns False, writing nothing, when ``ds`` is not a
    chunked deflate (optionally shuffled) numeric dataset of ``data``'s shape: the caller then
    writes through h5py."""
    data = np.asarray(data)
    filters = _filters(ds)
    if (ds.chunks is None or filters not in (_DEFLATE, _SHUFFLE_DEFLATE) or data.shape != ds.shape
            or ds.dtype.kind not in "biuf" or data.dtype.kind not in "biuf"):
        return False
    write_chunks_id(ds.id, np.ascontiguousarray(data, dtype=ds.dtype), tuple(ds.chunks),
                    filters == _SHUFFLE_DEFLATE, ds.fillvalue)
    return True


def write_chunks_id(dsid, data: np.ndarray, chunks: tuple, shuffle: bool, fillvalue=0) -> None:
    """:func:`write_chunks` for a caller that made the dataset and knows its layout, without
    asking HDF5 for it (h5py's ``Dataset`` properties cost about 55 us a call): ``dsid`` the
    new, empty dataset's low-level id, ``data`` a C-contiguous array of its dtype and shape,
    ``chunks`` its chunk shape, ``shuffle`` whether the shuffle filter precedes deflate,
    ``fillvalue`` its fill value (the padding of an edge chunk)."""
    shuffle = shuffle and data.dtype.itemsize > 1
    if data.shape == chunks:  # one chunk (every small column): no chunk grid to walk
        _write_chunk(dsid, (0,) * data.ndim, data, shuffle)
        return
    for index in np.ndindex(*(-(-s // c) for s, c in zip(data.shape, chunks))):
        start = tuple(i * c for i, c in zip(index, chunks))
        block = data[tuple(slice(o, o + c) for o, c in zip(start, chunks))]
        if block.shape != chunks:  # an edge chunk is stored whole, padded with the fill value
            full = np.full(chunks, fillvalue, dtype=data.dtype)
            full[tuple(slice(0, b) for b in block.shape)] = block
            block = full
        _write_chunk(dsid, start, np.ascontiguousarray(block), shuffle)


def _write_chunk(dsid, start: tuple, block: np.ndarray, shuffle: bool) -> None:
    """The C-contiguous ``block`` as the chunk at ``start``: shuffled (when ``shuffle``),
    deflated by ISA-L, handed to HDF5 as it is."""
    raw = _shuffle(block) if shuffle else block.view(np.uint8).reshape(-1)
    dsid.write_direct_chunk(start, isal_zlib.compress(raw, ISAL_LEVEL))


def _shuffle(block: np.ndarray) -> np.ndarray:
    """HDF5's shuffle filter applied to the C-contiguous ``block``: the first byte in memory of
    every element, then every second byte, … (an ``(itemsize, n)`` uint8 array). For 2, 4 and
    8-byte elements each row is one shift of the elements seen as unsigned integers, cast to
    uint8: about twice as fast as a transposing byte copy (the 1.15 MB of float32 joint angles
    of a 2-minute session: 0.14 ms instead of 0.26 ms). Below :data:`SMALL_SHUFFLE_BYTES` the
    transposing copy is faster (a 340-row float64 column: 2 us instead of 15 us)."""
    itemsize = block.dtype.itemsize
    if itemsize not in (2, 4, 8) or block.nbytes < SMALL_SHUFFLE_BYTES:
        return np.ascontiguousarray(block.view(np.uint8).reshape(-1, itemsize).T)
    u = block.reshape(-1).view(f"u{itemsize}")
    shifts = range(0, 8 * itemsize, 8) if sys.byteorder == "little" else \
        range(8 * itemsize - 8, -8, -8)
    out = np.empty((itemsize, u.size), np.uint8)
    for row, shift in zip(out, shifts):
        np.copyto(row, u >> shift, casting="unsafe")
    return out
