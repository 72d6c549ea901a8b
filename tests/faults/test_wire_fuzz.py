"""Fuzzed serial force streams through both decoders (the general one and the reader's fast
path), and a babbling device: never a crash, the same frames from both, every good frame kept.

The throughput on sync spam is a benchmark (``benchmarks/wire_faults.py``: ≥ 10× the line
rate); here only completion and correctness are checked.
"""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.sources.forceplate_serial import _FastDecoder
from treadlab.acquisition.sources.wire import ForceFrameDecoder, encode_force_frames

CH = 12


def _frames(n, start=0):
    rng = np.random.default_rng(start)
    seq = np.arange(start, start + n)
    return encode_force_frames(seq % 65536, seq * 1000,
                               rng.integers(-3000, 3000, (n, CH)).astype(np.int16))


def _decode(cls, data, chunk):
    dec = cls(CH, "int16", rate_hz=1000.0)
    seq, vals, kinds = [], [], []
    for i in range(0, len(data), chunk):
        out = dec.feed(data[i:i + chunk])
        seq.append(out.seq)
        vals.append(out.values)
        kinds += [e.kind for e in out.events]
    return np.concatenate(seq), np.concatenate(vals), kinds, dict(dec.stats)


def _mutate(data: bytes, rng) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 12))):
        op = int(rng.integers(0, 5))
        i = int(rng.integers(0, max(1, len(b))))
        if op == 0:
            b[i:i] = rng.integers(0, 256, int(rng.integers(1, 80)), dtype=np.uint8).tobytes()
        elif op == 1:
            del b[i:i + int(rng.integers(1, 60))]
        elif op == 2 and b:
            b[i % len(b)] ^= 1 << int(rng.integers(0, 8))
        elif op == 3:
            b[i:i] = bytes([0xA5, 0x5A]) * int(rng.integers(1, 300))
        else:
            b[i:i] = b[i:i + int(rng.integers(1, 100))]
    return bytes(b)


@pytest.mark.parametrize("seed", range(40))
def test_fuzzed_streams_decode_the_same_through_both_decoders(seed):
    rng = np.random.default_rng(seed)
    data = _mutate(_frames(400, seed * 1000), rng)
    chunk = int(rng.integers(1, 600))
    a = _decode(ForceFrameDecoder, data, chunk)
    b = _decode(_FastDecoder, data, chunk)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] and a[3] == b[3]
    assert np.all(np.diff(a[0]) > 0)                    # frames in order, none twice


@pytest.mark.parametrize("cls", [ForceFrameDecoder, _FastDecoder])
def test_sync_spam_then_frames_decodes_every_frame(cls):
    spam = bytes([0xA5, 0x5A]) * 200_000             # 400 kB of a babbling device
    good = _frames(500, 100)
    data = _frames(100, 0)[:-5] + spam + good + spam[:1001] + _frames(50, 600)
    seq, vals, kinds, stats = _decode(cls, data, 4096)
    assert set(range(100, 600)) <= set(seq.tolist())    # every frame after the spam is kept
    assert set(range(600, 650)) <= set(seq.tolist())
    assert stats["discarded_bytes"] >= len(spam)        # the spam is counted, not decoded
    assert "resync" in kinds
