"""A small XDF writer (what LabRecorder writes), for tests and for turning recordings into XDF.

Written from the XDF 1.0 specification: the file is the magic ``XDF:`` followed by chunks;
each chunk is ``[NumLengthBytes: 1, 4 or 8][Length: that many bytes, little-endian, counting
the tag and the content][Tag: uint16][Content]``. Tags written here:

- 1 FileHeader: XML ``<info><version>1.0</version>…</info>``;
- 2 StreamHeader: uint32 StreamId + XML ``<info>`` (name, type, channel_count,
  nominal_srate, channel_format, source_id, created_at, uid, hostname, ``desc`` with
  ``channels/channel/{label, unit, type}`` and anything else given);
- 3 Samples: StreamId + varlen NumSamples (``[NumBytes: 1|4|8][value]``), then per sample
  ``[TimeStampBytes: 0 or 8][TimeStamp: float64 s]`` and the values, little-endian in the
  channel format (``float32``, ``double64``, ``int16``, ``int32``, ``int64``, ``int8``);
- 4 ClockOffset: StreamId + CollectionTime (float64 s, the recorder's clock) + OffsetValue
  (float64 s, recorder clock − stream clock), as LabRecorder measures every 5 s;
- 5 Boundary: the 16-byte boundary UUID of the specification, every 5 s of data;
- 6 StreamFooter: StreamId + XML with first/last timestamp, sample count and the clock
  offsets.

:func:`write_xdf` writes streams given as arrays; :func:`c3d_to_xdf` turns a C3D recording's
markers and force into a LabRecorder-like file (one ``Mocap`` and one ``Force`` stream on
device clocks that differ from the recorder's, with ClockOffset chunks and timestamp jitter),
which ``treadlab import FILE.xdf`` reads back through ``pyxdf``.
"""
from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from treadlab.acquisition.io.c3d_import import read_c3d

FORMATS = {"float32": "<f4", "double64": "<f8", "int16": "<i2", "int32": "<i4",
           "int64": "<i8", "int8": "i1"}
#: the boundary chunk's fixed UUID (XDF specification)
BOUNDARY = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46,
                  0x73, 0x83, 0xCB, 0xE4])


@dataclass
class XDFStream:
    """One stream to write.

    name, type : LSL stream name and content type (``"Mocap"``, ``"Force"`` …).
    channel_format : one of :data:`FORMATS`.
    nominal_srate : Hz (0 = irregular).
    time_stamps : (n,) float64 s on the stream's own clock.
    time_series : (n, c) values.
    labels, units, types : per channel (written to ``desc/channels``).
    clock_offsets : ``[(collection_time s, offset s)]`` (recorder clock − stream clock).
    desc_xml : extra XML inside ``<desc>`` (e.g. plate geometry).
    source_id : LSL source id.
    """

    name: str
    type: str
    channel_format: str
    nominal_srate: float
    time_stamps: np.ndarray
    time_series: np.ndarray
    labels: list = field(default_factory=list)
    units: list = field(default_factory=list)
    types: list = field(default_factory=list)
    clock_offsets: list = field(default_factory=list)
    desc_xml: str = ""
    source_id: str = ""


def _varlen(n: int) -> bytes:
    if n < 256:
        return bytes([1, n])
    if n < 2 ** 32:
        return bytes([4]) + struct.pack("<I", n)
    return bytes([8]) + struct.pack("<Q", n)


def _chunk(tag: int, content: bytes) -> bytes:
    length = 2 + len(content)
    if length < 256:
        head = bytes([1, length])
    elif length < 2 ** 32:
        head = bytes([4]) + struct.pack("<I", length)
    else:
        head = bytes([8]) + struct.pack("<Q", length)
    return head + struct.pack("<H", tag) + content


def _header_xml(s: XDFStream, uid: str) -> str:
    chans = "".join(
        "<channel>" + f"<label>{escape(str(lab))}</label>"
        + (f"<unit>{escape(str(s.units[i]))}</unit>" if i < len(s.units) else "")
        + (f"<type>{escape(str(s.types[i]))}</type>" if i < len(s.types) else "")
        + "</channel>" for i, lab in enumerate(s.labels))
    return ("<?xml version=\"1.0\"?><info>"
            f"<name>{escape(s.name)}</name><type>{escape(s.type)}</type>"
            f"<channel_count>{s.time_series.shape[1]}</channel_count>"
            f"<nominal_srate>{s.nominal_srate:.10g}</nominal_srate>"
            f"<channel_format>{s.channel_format}</channel_format>"
            f"<source_id>{escape(s.source_id)}</source_id><version>1.1</version>"
            f"<created_at>0</created_at><uid>{uid}</uid><session_id>default</session_id>"
            f"<hostname>treadlab</hostname><v4address/><v4data_port>0</v4data_port>"
            f"<v4service_port>0</v4service_port><v6address/><v6data_port>0</v6data_port>"
            f"<v6service_port>0</v6service_port>"
            f"<desc><channels>{chans}</channels>{s.desc_xml}</desc></info>")


def _samples(sid: int, s: XDFStream, lo: int, hi: int) -> bytes:
    dt = np.dtype(FORMATS[s.channel_format])
    n = hi - lo
    rec = np.dtype([("flag", "u1"), ("ts", "<f8"), ("v", dt, (s.time_series.shape[1],))])
    arr = np.empty(n, rec)
    arr["flag"] = 8
    arr["ts"] = s.time_stamps[lo:hi]
    arr["v"] = np.asarray(s.time_series[lo:hi]).astype(dt)
    return _chunk(3, struct.pack("<I", sid) + _varlen(n) + arr.tobytes())


def write_xdf(path, streams: list[XDFStream], chunk_s: float = 0.5) -> Path:
    """Write ``streams`` to ``path`` as XDF 1.0, interleaved in chunks of ``chunk_s`` s of
    data (as a recorder would), with ClockOffset chunks at their collection times and a
    Boundary chunk every 5 s. Returns the path."""
    path = Path(path)
    out = bytearray(b"XDF:")
    out += _chunk(1, b"<?xml version=\"1.0\"?><info><version>1.0</version>"
                     b"<datetime>2026-01-01T00:00:00+0000</datetime></info>")
    for sid, s in enumerate(streams, start=1):
        out += _chunk(2, struct.pack("<I", sid)
                      + _header_xml(s, str(uuid.uuid4())).encode("utf-8"))
    # interleave: chunks of data and clock offsets in recorder-clock order
    events = []
    for sid, s in enumerate(streams, start=1):
        ts = np.asarray(s.time_stamps, np.float64)
        off0 = s.clock_offsets[0][1] if s.clock_offsets else 0.0
        edges = np.arange(ts[0], ts[-1] + chunk_s, chunk_s)
        idx = np.searchsorted(ts, edges)
        idx = np.unique(np.r_[idx, len(ts)])
        for lo, hi in zip(idx[:-1], idx[1:]):
            if hi > lo:
                events.append((ts[hi - 1] + off0, 1, sid, (lo, hi)))
        for t, v in s.clock_offsets:
            events.append((t, 0, sid, (t, v)))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    next_boundary = events[0][0] + 5.0 if events else 0.0
    for t, kind, sid, what in events:
        if t >= next_boundary:
            out += _chunk(5, BOUNDARY)
            next_boundary = t + 5.0
        if kind == 0:
            out += _chunk(4, struct.pack("<Idd", sid, what[0], what[1]))
        else:
            out += _samples(sid, streams[sid - 1], *what)
    for sid, s in enumerate(streams, start=1):
        offs = "".join(f"<offset><time>{t:.9f}</time><value>{v:.9f}</value></offset>"
                       for t, v in s.clock_offsets)
        footer = ("<?xml version=\"1.0\"?><info>"
                  f"<first_timestamp>{s.time_stamps[0]:.9f}</first_timestamp>"
                  f"<last_timestamp>{s.time_stamps[-1]:.9f}</last_timestamp>"
                  f"<sample_count>{len(s.time_stamps)}</sample_count>"
                  f"<clock_offsets>{offs}</clock_offsets></info>")
        out += _chunk(6, struct.pack("<I", sid) + footer.encode("utf-8"))
    path.write_bytes(bytes(out))
    return path


def c3d_to_xdf(c3d_path, xdf_path, *, mocap_offset_s: float = 1234.5,
               force_offset_s: float = -321.25, jitter_s: float = 0.0005,
               start_s: float = 10000.0, seed: int = 0) -> Path:
    """A LabRecorder-like XDF of a C3D recording's markers and force.

    Streams: ``Mocap`` (type ``Mocap``, channels ``LABEL_X/_Y/_Z`` in millimetres, float32,
    lab frame — what Qualisys' LSL app publishes) and ``ForcePlates`` (type ``Force``,
    channels ``<plate>_Fx … <plate>_Mz`` in N and N·m, float32: the ground reaction on the
    body in the lab frame about each plate's origin, with ``desc/plates/plate/{name,
    origin, corners}`` in mm). Each stream's timestamps are on its own clock: recorder time
    (``start_s`` at the first sample) minus its offset, plus uniform jitter of ±``jitter_s``
    s; ClockOffset chunks carry the offsets every 5 s, so ``pyxdf`` puts both streams back
    on the recorder's clock (synchronisation) and evens the jitter out (dejittering).
    """
    session = read_c3d(c3d_path)
    f, m = session.force, session.markers
    rng = np.random.default_rng(seed)
    n_m, k = m.positions.shape[:2]
    mt = start_s + np.asarray(m.time, float) - float(m.time[0])
    ft = start_s + np.asarray(f.time, float) - float(m.time[0])
    end = max(mt[-1], ft[-1])

    def offsets(value):
        return [(float(t), float(value)) for t in np.arange(start_s - 1.0, end + 5.0, 5.0)]

    mocap = XDFStream(
        name="Qualisys", type="Mocap", channel_format="float32", nominal_srate=m.rate_hz,
        time_stamps=mt - mocap_offset_s + rng.uniform(-jitter_s, jitter_s, n_m),
        time_series=np.asarray(m.positions, np.float32).reshape(n_m, 3 * k),
        labels=[f"{lab}_{ax}" for lab in m.labels for ax in "XYZ"],
        units=["millimeters"] * (3 * k), types=[f"Position{ax}" for _ in m.labels
                                                 for ax in "XYZ"],
        clock_offsets=offsets(mocap_offset_s), source_id="qualisys-3d")
    p = len(f.plates)
    plates_xml = "".join(
        f"<plate><name>{escape(str(name))}</name>"
        f"<origin>{' '.join(f'{v:g}' for v in np.asarray(f.origin)[i])}</origin>"
        f"<corners>{' '.join(f'{v:g}' for v in np.asarray(f.corners)[i].ravel())}</corners>"
        "</plate>" for i, name in enumerate(f.plates))
    comps = ("Fx", "Fy", "Fz", "Mx", "My", "Mz")
    force = XDFStream(
        name="ForcePlates", type="Force", channel_format="float32", nominal_srate=f.rate_hz,
        time_stamps=ft - force_offset_s + rng.uniform(-jitter_s, jitter_s, len(ft)),
        time_series=np.nan_to_num(np.asarray(f.wrench, np.float32)).reshape(len(ft), 6 * p),
        labels=[f"{name}_{c}" for name in f.plates for c in comps],
        units=[u for _ in f.plates for u in ["newtons"] * 3 + ["newton_meters"] * 3],
        clock_offsets=offsets(force_offset_s), source_id="treadmill-force",
        desc_xml=f"<plates>{plates_xml}</plates><frame>lab: X forward, Y left, Z up; ground "
                 "reaction on the body; moments about each plate origin</frame>")
    return write_xdf(xdf_path, [mocap, force])
