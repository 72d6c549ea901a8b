"""Clearing HDF5's "open for write" superblock flags, what ``h5clear -s`` does (docs/archive.md
§5): a capture killed in SWMR mode leaves them set, and ordinary tools refuse such a file until
they are cleared. Pure Python: no HDF5 tools need to be installed.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from treadlab.config.errors import InputError


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata (H5_checksum_lookup3)."""
    m = 0xFFFFFFFF
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & m
    i = 0
    while length > 12:
        a = (a + struct.unpack_from("<I", data, i)[0]) & m
        b = (b + struct.unpack_from("<I", data, i + 4)[0]) & m
        c = (c + struct.unpack_from("<I", data, i + 8)[0]) & m
        a = (a - c) & m; a ^= _rot(c, 4); c = (c + b) & m    # noqa: E702
        b = (b - a) & m; b ^= _rot(a, 6); a = (a + c) & m    # noqa: E702
        c = (c - b) & m; c ^= _rot(b, 8); b = (b + a) & m    # noqa: E702
        a = (a - c) & m; a ^= _rot(c, 16); c = (c + b) & m   # noqa: E702
        b = (b - a) & m; b ^= _rot(a, 19); a = (a + c) & m   # noqa: E702
        c = (c - b) & m; c ^= _rot(b, 4); b = (b + a) & m    # noqa: E702
        length -= 12
        i += 12
    if length == 0:
        return c
    tail = data[i:] + b"\0" * (12 - length)
    a = (a + struct.unpack_from("<I", tail, 0)[0]) & m
    b = (b + struct.unpack_from("<I", tail, 4)[0]) & m
    c = (c + struct.unpack_from("<I", tail, 8)[0]) & m
    c ^= b; c = (c - _rot(b, 14)) & m   # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & m   # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & m   # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & m   # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & m    # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & m   # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & m   # noqa: E702
    return c


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def clear_status_flags(path) -> bool:
    """Clear the file-consistency flags a killed writer leaves in an HDF5 superblock.

    Equivalent of ``h5clear -s``: superblock versions 2 and 3 only (what ``libver="v110"``
    writes). The superblock is searched at 0, 512, 1024, … as HDF5 does.

    Returns
    -------
    bool : True if flags were set and have been cleared.
    """
    path = Path(path)
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        base = 0
        while base + 48 <= size:
            fh.seek(base)
            head = fh.read(12)
            if head[:8] == _SIGNATURE:
                break
            base = 512 if base == 0 else base * 2
        else:
            raise InputError(path, "superblock", "no HDF5 signature found")
        version, size_offsets = head[8], head[9]
        if version not in (2, 3):
            raise InputError(path, "superblock", f"version {version}: cannot clear its flags")
        end = 12 + 4 * size_offsets
        fh.seek(base)
        sb = bytearray(fh.read(end + 4))
        stored = struct.unpack_from("<I", sb, end)[0]
        if stored != _lookup3(bytes(sb[:end])):
            raise InputError(path, "superblock", "checksum mismatch; not touching the file")
        if sb[11] == 0:
            return False
        sb[11] = 0
        struct.pack_into("<I", sb, end, _lookup3(bytes(sb[:end])))
        fh.seek(base)
        fh.write(sb)
        fh.flush()
        os.fsync(fh.fileno())
    return True
