"""Wire formats of docs/wire.md: the serial force frame and the UDP marker packet.

Force frame (little-endian, one frame per sample)::

    A5 5A | seq u16 | device_time_us u32 | N × int16|int32 ADC counts | CRC-16/CCITT-FALSE

The CRC (poly 0x1021, init 0xFFFF, no reflection, no final xor; ``crc16(b"123456789") ==
0x29B1``) covers seq..values and is sent little-endian. It is table-driven and vectorised over
frames, so a stream of 2000 frames/s costs one NumPy pass per byte column per chunk.

:class:`ForceFrameDecoder` is incremental: bytes go in as they arrive, in chunks of any size,
and decoded frames come out; block-by-block decoding gives exactly the one-shot result (every
decision waits until the bytes it needs are there). It locks onto the stream, resynchronises
after garbage or a torn frame, rejects bad CRCs, unwraps the u16 sequence number and the u32
microsecond clock, and reports sequence gaps as drops — each incident a :class:`WireEvent`
naming the absolute byte offset in the stream.

Marker packet (one UDP datagram per mocap frame, little-endian)::

    b"TLMK" | version u8 | flags u8 | n_markers u16 | frame u32 | device_time_us u64 |
    n_markers × (x, y, z) float32 mm   (NaN = occluded)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from treadlab.config.errors import InputError

SYNC = b"\xa5\x5a"
HEADER_SIZE = 2 + 2 + 4      # sync, seq, device_time_us
CRC_SIZE = 2
SAMPLE_TYPES = {"int16": np.dtype("<i2"), "int32": np.dtype("<i4")}


# --- CRC-16/CCITT-FALSE ---------------------------------------------------------------------

def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
            c &= 0xFFFF
        table[i] = c
    return table


_CRC_TABLE = _crc_table()
_CRC_TABLE_LIST = [int(v) for v in _CRC_TABLE]


def _crc_table16() -> np.ndarray:
    """CRC register after shifting in 16 bits: ``crc' = T16[crc ^ (b0 << 8 | b1)]``."""
    x = np.arange(65536, dtype=np.uint32)
    hi = _CRC_TABLE[x >> 8]                       # after the first byte (second byte = 0)
    return ((hi << 8) & 0xFFFF) ^ _CRC_TABLE[((hi >> 8) ^ (x & 0xFF)) & 0xFF]


_CRC_TABLE16 = _crc_table16()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE of a byte string (``crc16(b"123456789") == 0x29B1``)."""
    crc = 0xFFFF
    table = _CRC_TABLE_LIST
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return crc


def crc16_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE of every row of a byte matrix.

    Parameters
    ----------
    rows : (n, L) uint8, one message per row.

    Returns
    -------
    (n,) uint16 CRCs.
    """
    rows = np.asarray(rows, dtype=np.uint8)
    n, width = rows.shape
    crc = np.full(n, 0xFFFF, dtype=np.uint32)
    if width >= 2:      # two bytes per step through the 64 k-entry table
        words = (rows[:, 0:width - 1:2].astype(np.uint32) << 8) | rows[:, 1:width:2]
        for j in range(words.shape[1]):
            crc = _CRC_TABLE16[crc ^ words[:, j]]
    if width % 2:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ rows[:, -1]) & 0xFF]
    return crc.astype(np.uint16)


# --- force frames ---------------------------------------------------------------------------

def frame_dtype(channels: int, sample_type: str = "int16") -> np.dtype:
    """Packed NumPy dtype of one force frame with ``channels`` values of ``sample_type``."""
    if sample_type not in SAMPLE_TYPES:
        raise ValueError(f"sample_type must be one of {sorted(SAMPLE_TYPES)}, not {sample_type!r}")
    return np.dtype([("sync", "u1", (2,)), ("seq", "<u2"), ("time_us", "<u4"),
                     ("values", SAMPLE_TYPES[sample_type], (int(channels),)), ("crc", "<u2")])


def frame_size(channels: int, sample_type: str = "int16") -> int:
    """Bytes per force frame: 2 + 2 + 4 + channels × (2|4) + 2 (34 for 12 int16 channels)."""
    return frame_dtype(channels, sample_type).itemsize


def encode_force_frames(seq, device_time_us, values, sample_type: str = "int16") -> bytes:
    """Force frames as bytes on the wire.

    Parameters
    ----------
    seq : (n,) integer frame numbers (sent modulo 2**16).
    device_time_us : (n,) integer device clock, µs (sent modulo 2**32).
    values : (n, c) integer ADC counts (must fit ``sample_type``).
    sample_type : ``"int16"`` or ``"int32"``.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be (n, channels), got shape {values.shape}")
    n, c = values.shape
    info = np.iinfo(SAMPLE_TYPES[sample_type])
    if n and (values.min() < info.min or values.max() > info.max):
        raise ValueError(f"values out of {sample_type} range")
    frames = np.zeros(n, dtype=frame_dtype(c, sample_type))
    frames["sync"] = (0xA5, 0x5A)
    frames["seq"] = np.asarray(seq, dtype=np.int64) & 0xFFFF
    frames["time_us"] = np.asarray(device_time_us, dtype=np.int64) & 0xFFFFFFFF
    frames["values"] = values
    raw = frames.view(np.uint8).reshape(n, -1)
    frames["crc"] = crc16_rows(raw[:, 2:-CRC_SIZE])
    return frames.tobytes()


class WireEvent(NamedTuple):
    """One incident in a byte stream.

    kind : ``"sync"`` (first lock, or lock after :meth:`ForceFrameDecoder.reset`),
        ``"resync"`` (lock regained after garbage or a torn frame), ``"crc_error"``, ``"drop"``
        (a sequence gap), ``"duplicate"``, ``"clock_reset"`` (the device clock went backwards),
        ``"truncated"`` (bytes left at the end of the stream).
    offset : absolute byte offset in the stream where the incident starts.
    count : bytes discarded (sync, resync, crc_error, truncated) or frames missing (drop) or
        frames rejected (duplicate); 0 for clock_reset.
    detail : one line for the session log.
    """

    kind: str
    offset: int
    count: int
    detail: str


@dataclass
class ForceFrames:
    """Frames decoded from one chunk of bytes.

    seq : (n,) int64 unwrapped frame numbers.
    device_time_us : (n,) int64 unwrapped device clock, µs.
    values : (n, c) int16/int32 ADC counts.
    offset : (n,) int64 absolute byte offset of each frame in the stream.
    events : incidents found while decoding this chunk, in stream order.
    """

    seq: np.ndarray
    device_time_us: np.ndarray
    values: np.ndarray
    offset: np.ndarray
    events: list[WireEvent]

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @property
    def device_time(self) -> np.ndarray:
        """(n,) float64 s, the unwrapped device clock."""
        return self.device_time_us.astype(np.float64) * 1e-6


class ForceFrameDecoder:
    """Incremental decoder of the force frame (docs/wire.md §1).

    Parameters
    ----------
    channels : ADC values per frame.
    sample_type : ``"int16"`` or ``"int32"``.
    rate_hz : nominal frame rate; when given, a gap longer than 2**16 frames is still counted
        right by checking the sequence number against the device clock.

    Attributes
    ----------
    stats : cumulative ``frames, drops, resyncs, crc_errors, discarded_bytes, duplicates``.
    """

    def __init__(self, channels: int, sample_type: str = "int16", rate_hz: float | None = None):
        self.channels = int(channels)
        self.sample_type = sample_type
        self.dtype = frame_dtype(channels, sample_type)
        self.size = self.dtype.itemsize
        self.rate_hz = float(rate_hz) if rate_hz else None
        self._buf = bytearray()
        self._base = 0                      # absolute stream offset of _buf[0]
        self._locked = False                # ever locked since start/reset
        self._hunting = True                # searching for sync
        self._hunt_start = 0
        self._hunt_discard = 0
        self._last_seq16: int | None = None
        self._last_t32 = 0
        self._seq = 0                       # unwrapped seq of the last frame
        self._t_us = 0                      # unwrapped time of the last frame
        self.stats = {k: 0 for k in ("frames", "drops", "resyncs", "crc_errors",
                                     "discarded_bytes", "duplicates")}

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte not yet consumed."""
        return self._base

    @property
    def pending(self) -> int:
        """Bytes buffered while waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> list[WireEvent]:
        """Forget buffered bytes (e.g. after the port was reopened); keep the sequence state.

        The buffered bytes are reported as a ``truncated`` event; the next lock is a ``sync``.
        Frames lost meanwhile show up as a ``drop`` when the stream resumes.
        """
        events = self._truncate()
        self._locked = False
        self._hunting = True
        self._hunt_discard = 0
        self._hunt_start = self._base
        return events

    def flush(self) -> list[WireEvent]:
        """End of stream: report bytes that never made a whole frame as ``truncated``."""
        return self._truncate()

    def _truncate(self) -> list[WireEvent]:
        n = len(self._buf) + (self._hunt_discard if self._hunting else 0)
        start = self._hunt_start if self._hunting and self._hunt_discard else self._base
        self._base += len(self._buf)
        self._buf.clear()
        self._hunt_discard = 0
        self._hunt_start = self._base
        if not n:
            return []
        self.stats["discarded_bytes"] += n
        return [WireEvent("truncated", start, n,
                          f"{n} bytes at byte offset {start} never made a whole frame")]

    def feed(self, data: bytes | bytearray | memoryview) -> ForceFrames:
        """Decode what ``data`` completes; keep the remainder for the next call."""
        self._buf += data
        buf = np.frombuffer(bytes(self._buf), dtype=np.uint8)
        L, F = buf.shape[0], self.size
        events: list[WireEvent] = []
        good: list[np.ndarray] = []     # accepted frame rows
        offs: list[np.ndarray] = []
        p = 0
        while True:
            avail = L - p
            if avail < 2:
                break
            if not (buf[p] == 0xA5 and buf[p + 1] == 0x5A):
                # garbage: skip to the next sync pattern (keep a trailing A5)
                self._start_hunt(p)
                hits = np.flatnonzero((buf[p + 1:L - 1] == 0xA5) & (buf[p + 2:L] == 0x5A))
                if hits.size:
                    q = p + 1 + int(hits[0])
                else:
                    q = L - 1 if buf[L - 1] == 0xA5 else L
                self._hunt_discard += q - p
                p = q
                continue
            if avail < F:
                break
            n = avail // F
            rows = buf[p:p + n * F].reshape(n, F)
            sync_ok = (rows[:, 0] == 0xA5) & (rows[:, 1] == 0x5A)
            m = n if sync_ok.all() else int(np.argmin(sync_ok))
            crc = crc16_rows(rows[:m, 2:F - CRC_SIZE])
            sent = rows[:m, F - 2].astype(np.uint16) | (rows[:m, F - 1].astype(np.uint16) << 8)
            ok = crc == sent
            k = m if ok.all() else int(np.argmin(ok))
            if k:
                self._end_hunt(events, p)
                good.append(rows[:k])
                offs.append(self._base + p + F * np.arange(k, dtype=np.int64))
                p += k * F
                continue
            # a sync with a bad CRC: a damaged frame if a good one follows, else a false sync
            if avail < 2 * F:
                break
            nxt = buf[p + F:p + 2 * F]
            if (nxt[0] == 0xA5 and nxt[1] == 0x5A
                    and int(crc16_rows(nxt[None, 2:F - CRC_SIZE])[0])
                    == int(nxt[F - 2]) | (int(nxt[F - 1]) << 8)):
                self._end_hunt(events, p)
                seq16 = int(buf[p + 2]) | (int(buf[p + 3]) << 8)
                self.stats["crc_errors"] += 1
                self.stats["discarded_bytes"] += F
                events.append(WireEvent("crc_error", self._base + p, F,
                                        f"bad CRC in the frame at byte offset {self._base + p} "
                                        f"(seq field {seq16}); {F} bytes discarded"))
                p += F
            else:
                self._start_hunt(p)
                self._hunt_discard += 1
                p += 1
        del self._buf[:p]
        self._base += p
        if good:
            rows = np.concatenate(good)
            frames = np.ascontiguousarray(rows).view(self.dtype).reshape(-1)
            out = self._sequence(frames, np.concatenate(offs), events)
        else:
            out = ForceFrames(np.zeros(0, np.int64), np.zeros(0, np.int64),
                              np.zeros((0, self.channels), self.dtype["values"].base),
                              np.zeros(0, np.int64), events)
        return out

    def _start_hunt(self, p: int) -> None:
        if not self._hunting:
            self._hunting = True
            self._hunt_start = self._base + p
            self._hunt_discard = 0
        elif self._hunt_discard == 0:
            self._hunt_start = self._base + p

    def _end_hunt(self, events: list[WireEvent], p: int) -> None:
        if not self._hunting:
            return
        n, start = self._hunt_discard, self._hunt_start
        self._hunting = False
        self._hunt_discard = 0
        self.stats["discarded_bytes"] += n
        if not self._locked:
            self._locked = True
            events.append(WireEvent("sync", start, n, f"locked on the frame at byte offset "
                                    f"{self._base + p} after {n} bytes"))
        else:
            self.stats["resyncs"] += 1
            events.append(WireEvent("resync", start, n, f"{n} bytes of garbage or a torn frame "
                                    f"at byte offset {start}; resynchronised at byte offset "
                                    f"{self._base + p}"))

    def _sequence(self, frames: np.ndarray, offset: np.ndarray,
                  events: list[WireEvent]) -> ForceFrames:
        seq16 = frames["seq"].astype(np.int64)
        t32 = frames["time_us"].astype(np.int64)
        values = frames["values"].copy()
        first = self._last_seq16 is None
        prev_s = np.empty_like(seq16)
        prev_t = np.empty_like(t32)
        prev_s[1:], prev_t[1:] = seq16[:-1], t32[:-1]
        prev_s[0] = seq16[0] - 1 if first else self._last_seq16
        prev_t[0] = t32[0] if first else self._last_t32
        ds = (seq16 - prev_s) & 0xFFFF
        dt = (t32 - prev_t) & 0xFFFFFFFF
        back = dt >= (1 << 31)
        if back.any():
            for i in np.flatnonzero(back):
                events.append(WireEvent("clock_reset", int(offset[i]), 0,
                                        f"device clock went backwards at byte offset "
                                        f"{int(offset[i])}"))
            dt = np.where(back, 0, dt)
        if self.rate_hz:
            # a gap longer than 2**16 frames: the u16 seq wrapped, the clock tells how often
            expected = dt * (self.rate_hz * 1e-6)
            wraps = np.maximum(np.round((expected - ds) / 65536.0), 0).astype(np.int64)
            ds = ds + 65536 * wraps
        dup = ds == 0
        if first:
            ds[0] = 1
            dup[0] = False
        if dup.any():
            for i in np.flatnonzero(dup):
                events.append(WireEvent("duplicate", int(offset[i]), 1,
                                        f"frame at byte offset {int(offset[i])} repeats "
                                        f"seq field {int(seq16[i])}; ignored"))
            self.stats["duplicates"] += int(dup.sum())
        seq = (int(seq16[0]) - 1 if first else self._seq) + np.cumsum(ds)
        t_us = (int(t32[0]) if first else self._t_us) + np.cumsum(dt)
        gaps = np.flatnonzero(ds > 1)
        for i in gaps:
            n = int(ds[i] - 1)
            self.stats["drops"] += n
            events.append(WireEvent("drop", int(offset[i]), n,
                                    f"{n} frames missing before seq {int(seq[i])} (seq field "
                                    f"{int(seq16[i])}, byte offset {int(offset[i])})"))
        events.sort(key=lambda e: e.offset)
        self._last_seq16, self._last_t32 = int(seq16[-1]), int(t32[-1])
        self._seq, self._t_us = int(seq[-1]), int(t_us[-1])
        keep = ~dup
        self.stats["frames"] += int(keep.sum())
        return ForceFrames(seq[keep], t_us[keep], values[keep], offset[keep], events)


# --- UDP marker packets ---------------------------------------------------------------------

MARKER_MAGIC = b"TLMK"
MARKER_VERSION = 1
_MARKER_HEADER = struct.Struct("<4sBBHIQ")
MARKER_HEADER_SIZE = _MARKER_HEADER.size     # 20 bytes


class MarkerPacket(NamedTuple):
    """One decoded mocap frame.

    frame : u32 frame number. device_time_us : u64 device clock, µs. flags : u8.
    positions : (k, 3) float32 mm, lab frame, NaN = occluded.
    """

    frame: int
    device_time_us: int
    positions: np.ndarray
    flags: int = 0


def encode_marker_packet(frame: int, device_time_us: int, positions, flags: int = 0,
                         version: int = MARKER_VERSION) -> bytes:
    """One datagram: header + positions.

    Parameters
    ----------
    frame : frame number (sent modulo 2**32).
    device_time_us : device clock, µs (u64).
    positions : (k, 3) float, mm; NaN for an occluded marker.
    """
    pos = np.asarray(positions, dtype="<f4")
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must be (k, 3), got shape {pos.shape}")
    head = _MARKER_HEADER.pack(MARKER_MAGIC, version, flags, pos.shape[0],
                               int(frame) & 0xFFFFFFFF, int(device_time_us) & (2**64 - 1))
    return head + pos.tobytes()


def decode_marker_packet(data: bytes | bytearray | memoryview,
                         origin: str = "datagram") -> MarkerPacket:
    """Decode one datagram.

    Raises
    ------
    InputError naming ``origin`` and the byte offset of what is wrong (bad magic, unknown
    version, length not matching ``n_markers``).
    """
    data = bytes(data)
    if len(data) < MARKER_HEADER_SIZE:
        raise InputError(origin, "byte 0", f"{len(data)}-byte datagram is shorter than the "
                         f"{MARKER_HEADER_SIZE}-byte TLMK header")
    magic, version, flags, n, frame, t_us = _MARKER_HEADER.unpack_from(data)
    if magic != MARKER_MAGIC:
        raise InputError(origin, "byte 0", f"bad magic {magic!r} (expected {MARKER_MAGIC!r})")
    if version != MARKER_VERSION:
        raise InputError(origin, "byte 4", f"unsupported version {version} "
                         f"(expected {MARKER_VERSION})")
    need = MARKER_HEADER_SIZE + 12 * n
    if len(data) != need:
        raise InputError(origin, f"byte {min(len(data), need)}",
                         f"n_markers={n} needs {need} bytes, datagram has {len(data)}")
    pos = np.frombuffer(data, dtype="<f4", count=3 * n,
                        offset=MARKER_HEADER_SIZE).reshape(n, 3).astype(np.float32)
    return MarkerPacket(frame, t_us, pos, flags)
