"""Wire formats: CRC, force frame encoder/decoder (resync, offsets, unwrap), marker packets."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.sources.wire import (
    MARKER_HEADER_SIZE, ForceFrameDecoder, crc16, crc16_rows, decode_marker_packet,
    encode_force_frames, encode_marker_packet, frame_size)
from treadlab.config.errors import InputError

C = 12
F = frame_size(C, "int16")


def frames(n, start=0, rng=None, channels=C, sample_type="int16", dt_us=500, t0=0):
    rng = rng or np.random.default_rng(0)
    lim = 30000 if sample_type == "int16" else 2_000_000_000
    values = rng.integers(-lim, lim, (n, channels))
    seq = np.arange(start, start + n)
    return values, encode_force_frames(seq, t0 + seq * dt_us, values, sample_type)


def decode_all(dec, data, chunks=None):
    outs = []
    if chunks is None:
        outs.append(dec.feed(data))
    else:
        pos = 0
        for c in chunks:
            outs.append(dec.feed(data[pos:pos + c]))
            pos += c
        outs.append(dec.feed(data[pos:]))
    seq = np.concatenate([o.seq for o in outs])
    t = np.concatenate([o.device_time_us for o in outs])
    vals = np.concatenate([o.values for o in outs])
    off = np.concatenate([o.offset for o in outs])
    events = [e for o in outs for e in o.events]
    return seq, t, vals, off, events


def test_crc_check_value_and_rows():
    assert crc16(b"123456789") == 0x29B1
    rng = np.random.default_rng(1)
    for width in (0, 1, 2, 7, 30, 31):
        rows = rng.integers(0, 256, (20, width), dtype=np.uint8)
        assert [int(c) for c in crc16_rows(rows)] == [crc16(r.tobytes()) for r in rows]


def test_frame_size_matches_notes():
    assert frame_size(12, "int16") == 34
    assert frame_size(12, "int32") == 58


@pytest.mark.parametrize("sample_type", ["int16", "int32"])
def test_round_trip(sample_type):
    values, data = frames(500, start=65400, sample_type=sample_type)   # seq wraps at 65536
    dec = ForceFrameDecoder(C, sample_type)
    out = dec.feed(data)
    assert np.array_equal(out.values, values)
    assert np.array_equal(out.seq, np.arange(65400, 65900))
    assert np.array_equal(out.offset, np.arange(500) * frame_size(C, sample_type))
    assert [e.kind for e in out.events] == ["sync"]
    assert dec.stats["drops"] == dec.stats["resyncs"] == dec.stats["crc_errors"] == 0


def test_device_clock_unwraps_past_u32():
    n = 100
    seq = np.arange(n)
    t = (2**32 - 50 * 1000) + seq * 1000          # wraps after 50 frames
    data = encode_force_frames(seq, t, np.zeros((n, C), int))
    out = ForceFrameDecoder(C).feed(data)
    assert np.all(np.diff(out.device_time_us) == 1000)
    assert out.device_time[-1] > 2**32 * 1e-6


def build_faulty_stream():
    """Good frames with garbage, a torn frame, a bad CRC and a gap; returns expectations."""
    rng = np.random.default_rng(7)
    values, good = frames(400, rng=rng)
    parts, expect_seq, offsets = [], [], {}
    pos = 0
    for i in range(400):
        fr = bytearray(good[i * F:(i + 1) * F])
        if i == 50:                       # garbage before frame 50 (no A5 in it)
            g = bytes([1, 2, 3, 0x5A, 7, 9, 0x11])
            offsets["resync1"] = (pos, len(g))
            parts.append(g)
            pos += len(g)
        if i == 120:                      # torn frame: only the first 13 bytes of frame 120
            offsets["resync2"] = (pos, 13)
            parts.append(bytes(fr[:13]))
            pos += 13
            continue
        if i == 200:                      # bad CRC in frame 200
            fr[10] ^= 0xFF
            offsets["crc"] = (pos, F)
            parts.append(bytes(fr))
            pos += F
            continue
        if 300 <= i < 305:                # frames 300..304 never sent
            continue
        parts.append(bytes(fr))
        expect_seq.append(i)
        pos += F
    return b"".join(parts), values, np.array(expect_seq), offsets


def test_faults_counted_with_byte_offsets():
    data, values, expect_seq, offs = build_faulty_stream()
    dec = ForceFrameDecoder(C)
    seq, t, vals, off, events = decode_all(dec, data)
    assert np.array_equal(seq, expect_seq)
    assert np.array_equal(vals, values[expect_seq])
    kinds = [e.kind for e in events]
    assert kinds == ["sync", "resync", "resync", "drop", "crc_error", "drop", "drop"]
    resyncs = [e for e in events if e.kind == "resync"]
    assert (resyncs[0].offset, resyncs[0].count) == offs["resync1"]
    assert (resyncs[1].offset, resyncs[1].count) == offs["resync2"]
    crc = [e for e in events if e.kind == "crc_error"][0]
    assert (crc.offset, crc.count) == offs["crc"]
    assert f"byte offset {offs['crc'][0]}" in crc.detail
    assert [e.count for e in events if e.kind == "drop"] == [1, 1, 5]
    st = dec.stats
    assert st["resyncs"] == 2 and st["crc_errors"] == 1 and st["drops"] == 7
    assert st["frames"] == len(expect_seq)
    # nothing silently lost: every byte is a decoded frame or counted as discarded
    assert st["frames"] * F + st["discarded_bytes"] == len(data)
    # each decoded frame's offset points at its sync bytes
    arr = np.frombuffer(data, np.uint8)
    assert np.all(arr[off] == 0xA5) and np.all(arr[off + 1] == 0x5A)


def test_block_by_block_equals_one_shot():
    data, *_ = build_faulty_stream()
    data = b"\x5a\x00\xa5" + data + data[:F // 2]       # start mid-frame, end torn
    one = decode_all(ForceFrameDecoder(C), data)
    rng = np.random.default_rng(3)
    for trial in range(5):
        chunks = rng.integers(1, 3 * F, 400) if trial else np.ones(len(data) - 1, int)
        many = decode_all(ForceFrameDecoder(C), data, chunks=list(chunks))
        for a, b in zip(one[:4], many[:4]):
            assert np.array_equal(a, b)
        assert one[4] == many[4]


def test_start_mid_frame_is_a_sync_not_a_resync():
    _, data = frames(20)
    dec = ForceFrameDecoder(C)
    out = dec.feed(data[5:])
    assert len(out) == 19
    assert out.events[0].kind == "sync" and out.events[0].count == F - 5
    assert dec.stats["resyncs"] == 0


def test_reset_and_flush_report_leftover_bytes():
    _, data = frames(10)
    dec = ForceFrameDecoder(C)
    dec.feed(data[:F + 7])
    ev = dec.reset()
    assert ev[0].kind == "truncated" and ev[0].offset == F and ev[0].count == 7
    out = dec.feed(data[3 * F:])                      # port back: frames 1-2 lost
    assert [e.kind for e in out.events] == ["sync", "drop"]
    assert out.events[1].count == 2
    assert out.seq[0] == 3
    assert dec.feed(b"\xa5\x5a\x01").events == []
    assert dec.flush()[0].count == 3


def test_duplicate_frames_are_ignored_and_counted():
    values, data = frames(10)
    dup = data[:5 * F] + data[4 * F:5 * F] + data[5 * F:]
    dec = ForceFrameDecoder(C)
    out = dec.feed(dup)
    assert np.array_equal(out.seq, np.arange(10))
    assert dec.stats["duplicates"] == 1
    assert [e.kind for e in out.events] == ["sync", "duplicate"]


def test_long_gap_counted_through_seq_wrap_with_rate():
    rate = 2000.0
    seq = np.array([0, 1, 2, 2 + 70000, 3 + 70000])      # 69999 frames lost (> 2**16)
    data = encode_force_frames(seq, seq * 500, np.zeros((5, C), int))
    dec = ForceFrameDecoder(C, rate_hz=rate)
    out = dec.feed(data)
    assert np.array_equal(out.seq, seq)
    assert dec.stats["drops"] == 69999


def test_marker_packet_round_trip():
    pos = np.array([[1.5, -2.0, 900.0], [np.nan, np.nan, np.nan]], np.float32)
    pkt = encode_marker_packet(2**32 + 5, 123456789012, pos, flags=3)
    assert len(pkt) == MARKER_HEADER_SIZE + 2 * 12 and pkt[:4] == b"TLMK"
    out = decode_marker_packet(pkt)
    assert out.frame == 5 and out.device_time_us == 123456789012 and out.flags == 3
    assert np.array_equal(out.positions, pos, equal_nan=True)
    assert out.positions.dtype == np.float32


@pytest.mark.parametrize("mutate, where", [
    (lambda p: p[:10], "byte 0"),
    (lambda p: b"XXXX" + p[4:], "byte 0"),
    (lambda p: p[:4] + b"\x09" + p[5:], "byte 4"),
    (lambda p: p[:-3], "byte 41"),
])
def test_marker_packet_errors_name_the_byte(mutate, where):
    pkt = encode_marker_packet(1, 2, np.zeros((2, 3)))
    with pytest.raises(InputError) as err:
        decode_marker_packet(mutate(pkt), origin="udp://127.0.0.1:5000")
    assert str(err.value).startswith(f"udp://127.0.0.1:5000: {where}")


@pytest.mark.parametrize("seed", range(4))
def test_random_corruption_nothing_unaccounted(seed):
    """Random garbage, cuts and bit flips: every byte is a frame or counted as discarded,
    every frame delivered is a frame that was sent, and chunking never changes the result."""
    rng = np.random.default_rng(seed)
    values, good = frames(600, rng=rng)
    data = bytearray()
    for i in range(600):
        fr = bytearray(good[i * F:(i + 1) * F])
        r = rng.random()
        if r < 0.03:
            data += rng.integers(0, 256, rng.integers(1, 40), dtype=np.uint8).tobytes()
        elif r < 0.05:
            fr = fr[:rng.integers(1, F)]
        elif r < 0.07:
            fr[rng.integers(2, F)] ^= 1 << rng.integers(0, 8)
        data += fr
    data = bytes(data)
    dec = ForceFrameDecoder(C)
    seq, t, vals, off, events = decode_all(dec, data)
    tail = dec.flush()
    assert np.all(np.diff(seq) > 0)
    assert np.array_equal(vals, values[seq])                     # only frames that were sent
    st = dec.stats
    assert st["frames"] * F + st["discarded_bytes"] == len(data)
    assert st["drops"] == seq[-1] - seq[0] + 1 - len(seq)
    chunks = list(rng.integers(1, 200, len(data) // 50))
    again = decode_all(ForceFrameDecoder(C), data, chunks=chunks)
    assert np.array_equal(again[0], seq) and again[4] == events
    assert tail == [] or tail[0].kind == "truncated"


@pytest.mark.parametrize("sample_type", ["int16", "int32"])
@pytest.mark.parametrize("channels", [1, 6, 12, 40])
def test_config_link_budget_uses_the_wire_frame_size(channels, sample_type):
    from treadlab.config.schema import frame_bytes

    assert frame_bytes(channels, sample_type) == frame_size(channels, sample_type)
    assert frame_size(12, "int32") == 58 and frame_size(12, "int16") == 34
