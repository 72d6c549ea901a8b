"""Decoder throughput on hostile serial input, as a ratio to the serial line rate.

A babbling device (a stream of repeated sync bytes ``A5 5A A5 5A …``), random garbage and
torn frames must decode faster than the line delivers them, or the reader falls behind and
the recorder stalls. The line rate is the config's: ``baud / 10`` bytes per second (8N1
framing) for the shipped lab (2 Mbaud); the goal is ≥ 10× the line rate for each input.

Each figure is ``bytes decoded per second / line bytes per second``, both measured in this run
(the decode on this machine, the line rate from the baud rate), so a slow machine shows as a
lower ratio, not as a failed absolute time.

Usage::

    python benchmarks/wire_faults.py [--mbytes 2] [--baud 2000000]

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from treadlab.acquisition.sources.wire import ForceFrameDecoder, encode_force_frames

CHANNELS = 12


def _inputs(n_bytes: int, rng) -> dict[str, bytes]:
    frames = encode_force_frames(np.arange(2000) % 65536, np.arange(2000) * 1000,
                                 rng.integers(-2000, 2000, (2000, CHANNELS)).astype(np.int16))
    torn = bytearray()
    while len(torn) < n_bytes:
        cut = int(rng.integers(0, len(frames)))
        torn += frames[:cut] + frames[cut + 7:]
    return {
        "sync_spam": bytes([0xA5, 0x5A]) * (n_bytes // 2),
        "random": rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes(),
        "torn_frames": bytes(torn[:n_bytes]),
        "clean": (frames * (n_bytes // len(frames) + 1))[:n_bytes],
    }


def _rate(data: bytes, chunk: int = 4096) -> float:
    """Bytes per second through a decoder fed in ``chunk``-byte reads (as the reader does)."""
    dec = ForceFrameDecoder(CHANNELS, "int16", rate_hz=1000.0)
    t0 = time.perf_counter()
    for i in range(0, len(data), chunk):
        dec.feed(data[i:i + chunk])
    dt = time.perf_counter() - t0
    return len(data) / dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mbytes", type=float, default=2.0, help="MB of each input")
    ap.add_argument("--baud", type=int, default=2_000_000, help="serial line rate (baud)")
    args = ap.parse_args(argv)
    line = args.baud / 10.0
    rng = np.random.default_rng(0)
    res = {"line_bytes_per_s": line}
    print(f"serial line: {args.baud} baud = {line / 1e3:.0f} kB/s; goal ≥ 10× for each input")
    for name, data in _inputs(int(args.mbytes * 1e6), rng).items():
        ratio = _rate(data) / line
        res[f"{name}_x_line_rate"] = round(ratio, 1)
        print(f"  {name:12s} {ratio:8.1f} × the line rate")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
