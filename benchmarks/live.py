"""Live capture benchmark: latency to the live processor, capture CPU, drops.

A device emulator in this process plays a split-belt force-plate treadmill on a pseudo-terminal
(2000 Hz × 12 int16 channels, the wire format of docs/wire.md §1) and a mocap system on loopback UDP
(200 Hz × 40 markers, ``TLMK`` datagrams). A separate process runs the real capture path
(``treadlab.acquisition.capture.session.capture_session`` with a lab configuration pointing at those
devices: reader threads, clock fit, SWMR recorder, live processor) and reports every step its live processor
detects.

Measured

1. ``latency_p50_ms`` / ``latency_p99_ms``: from the moment the emulator wrote a toe-off frame
   to the pty to the moment that contact appeared in the live processor (both on the machine's
   monotonic clock, which is shared between processes). Goal p99 ≤ 20 ms. Split into
   ``receipt_*`` (write → the serial reader's receipt stamp, ``/raw/force/host_time``) and
   ``pipeline_*`` (receipt → contact in the live processor).
   ``writer_gap_*``: the emulator's time between two pty writes. It writes the frames that
   are due about every millisecond (a real device writes continuously), so the reader, not the
   writer, decides how frames are batched; check this stays near 1 ms.
2. ``capture_cpu_pct``: CPU time of the capture process over its recording wall time, in % of
   one core (user + system, all its threads). Goal ≤ 20 %.
3. ``drops``: force and marker frames lost (sequence gaps + queue overflows, from the session
   log), ``live_drops`` (blocks the live processor skipped), ``frames_missing`` (frames the
   emulator wrote during the recording minus frames in the archive, an independent check).

``--source qualisys``: the same capture reads a Qualisys QTM instead — the QTM RT emulator
(:mod:`treadlab.acquisition.sim.qtm_emulator`, its own process) streams the synthetic runner's
2 plates at 2000 Hz and 40 markers at 200 Hz over TCP, and the capture reads it through the
``qualisys`` source (Qualisys' ``qtm-rt`` client). Latency is measured from the moment the
emulator sent the packet holding the toe-off force sample. Unless ``--no-baseline``, the
serial/UDP run above is measured first in the same invocation for the same time, and the
JSON line has both (``baseline_*``) and the ratios.

Usage::

    python benchmarks/live.py [--seconds 60] [--minutes 10] [--workdir DIR]
                              [--source serial|qualisys] [--no-baseline]

Figures depend on the machine's load: run it on a quiet machine.

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from treadlab.config.constants import G

HERE = Path(__file__).resolve().parent

FORCE_HZ = 2000.0
MARKER_HZ = 200.0
CHANNELS = 12
N_MARKERS = 40
BODY_MASS = 70.0
CADENCE = 170.0
CONTACT_S = 0.25
UNLOADED_S = 3.0          # belt unloaded at the start: the capture tares on it

CGM = ["LASI", "RASI", "LPSI", "RPSI", "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE",
       "RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE", "C7", "T10", "CLAV", "STRN"]
LABELS = CGM + [f"EXTRA{i:02d}" for i in range(N_MARKERS - len(CGM))]
# diagonal calibration: volts -> N / N*m
CAL_DIAG = [200.0, 200.0, 500.0, 100.0, 100.0, 50.0]
VOLTS_PER_COUNT = 10.0 / 32768

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[6])
import live as B
from treadlab.acquisition.capture.session import capture_session

port, udp, seconds, out_dir, report = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                       sys.argv[4], sys.argv[5])
steps = []
def on_step(s):
    steps.append((s.seq_off, s.detected_host, s.side))
cfg = B.lab_config(port, udp)
t_wall0 = time.monotonic()
c0 = os.times()
path = capture_session(cfg, subject="bench", body_mass_kg=B.BODY_MASS, duration_s=seconds,
                       out_dir=out_dir, status_stream=open(os.devnull, "w"), on_step=on_step)
c1 = os.times()
t_wall1 = time.monotonic()
json.dump({"path": str(path), "steps": steps,
           "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
           "wall_s": t_wall1 - t_wall0}, open(report, "w"))
"""


def lab_config(port_path: str, udp_port: int):
    """The benchmark lab: a split-belt treadmill on ``port_path``, 40 markers on ``udp_port``.

    Built from the drivers' settings dataclasses (what a lab TOML's tables load into).
    """
    import types

    from treadlab.acquisition.sources.forceplate_serial import ForcePlateSettings, PlateCalibration
    from treadlab.acquisition.sources.markers_udp import MarkerSettings

    plates = [PlateCalibration(name, list(range(6 * k, 6 * k + 6)), np.diag(CAL_DIAG),
                               origin=[0.0, y, 0.0])
              for k, (name, y) in enumerate((("left", 250.0), ("right", -250.0)))]
    return types.SimpleNamespace(
        path=None, lab=types.SimpleNamespace(name="benchmark", belt="split",
                                             belt_speed_m_s=3.5),
        forceplate=ForcePlateSettings(driver="forceplate_serial", port=port_path,
                                      baud=2_000_000, rate_hz=FORCE_HZ, channels=CHANNELS,
                                      sample_type="int16", volts_per_count=VOLTS_PER_COUNT,
                                      tare_seconds=1.0),
        plates=plates,
        markers=MarkerSettings(driver="markers_udp", host="127.0.0.1", port=udp_port,
                               rate_hz=MARKER_HZ, labels=list(LABELS)),
        simulator=None, marker_names={},
        contacts=types.SimpleNamespace(strike_n=50.0, off_n=20.0, min_contact_s=0.1,
                                       min_peak_bw=1.0, min_flight_s=0.02))


def _force_counts(n0: int, n: int) -> np.ndarray:
    """(n, 12) int16 counts for frames n0..n0+n: unloaded, then alternating stances."""
    t = (n0 + np.arange(n)) / FORCE_HZ - UNLOADED_S
    step = 60.0 / CADENCE
    k = np.floor(t / step)
    phase = t - k * step
    fz = np.where((t >= 0) & (phase < CONTACT_S),
                  2.5 * BODY_MASS * G * np.sin(np.pi * np.clip(phase, 0, CONTACT_S) / CONTACT_S),
                  0.0)
    fx = np.where(fz > 0, -0.3 * fz * np.cos(np.pi * phase / CONTACT_S), 0.0)
    left = (k % 2 == 0)
    w = np.zeros((n, 2, 6))
    for plate, on in ((0, left), (1, ~left)):
        w[:, plate, 2] = np.where(on, fz, 0.0)
        w[:, plate, 0] = np.where(on, fx, 0.0)
        w[:, plate, 3] = w[:, plate, 2] * (0.25 if plate == 0 else -0.25)
    rng = np.random.default_rng(n0)
    w += rng.normal(0, 2.0, w.shape)
    volts = w / np.array(CAL_DIAG)
    counts = np.rint(volts / VOLTS_PER_COUNT).reshape(n, 12) + 40  # amplifier offset
    return np.clip(counts, -32768, 32767).astype(np.int16)


def _markers(frame: int) -> np.ndarray:
    """(40, 3) float32 mm: a plausible standing-running marker cloud with a little motion."""
    t = frame / MARKER_HZ
    base = {"LASI": (120, 120, 1000), "RASI": (120, -120, 1000), "LPSI": (-60, 50, 1020),
            "RPSI": (-60, -50, 1020), "LTHI": (60, 150, 750), "LKNE": (40, 140, 500),
            "LTIB": (20, 130, 300), "LANK": (0, 120, 80), "LHEE": (-40, 110, 40),
            "LTOE": (140, 110, 30), "RTHI": (60, -150, 750), "RKNE": (40, -140, 500),
            "RTIB": (20, -130, 300), "RANK": (0, -120, 80), "RHEE": (-40, -110, 40),
            "RTOE": (140, -110, 30), "C7": (-20, 0, 1500), "T10": (-60, 0, 1300),
            "CLAV": (80, 0, 1450), "STRN": (100, 0, 1300)}
    pos = np.zeros((N_MARKERS, 3), np.float32)
    for i, lb in enumerate(LABELS):
        p = np.array(base.get(lb, (0, 0, 1200 + i)), dtype=np.float64)
        p[0] += 80 * np.sin(2 * np.pi * CADENCE / 120 * t + (0 if lb.startswith("L") else np.pi))
        p[2] += 30 * np.sin(2 * np.pi * CADENCE / 60 * t)
        pos[i] = p
    return pos


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log_losses(f) -> tuple[dict, int]:
    """From ``/raw/log`` of an open archive: ``({"force": n, "markers": n}`` samples the
    sources dropped or overflowed``, blocks the live processor dropped)``."""
    def text(name):
        return [v.decode() if isinstance(v, bytes) else v for v in f[f"raw/log/{name}"][()]]

    drops = {"force": 0, "markers": 0}
    live_drops = 0
    for kind, src, det in zip(text("kind"), text("source"), text("detail")):
        if kind == "counters" and src in drops:
            fields = dict(part.rsplit(" ", 1) for part in det.split(", ") if " " in part)
            drops[src] = int(fields.get("drops", 0)) + int(fields.get("overflow", 0))
        if kind == "summary" and src == "live":
            live_drops = int(det.split(" blocks dropped")[0].split(", ")[-1])
    return drops, live_drops


def run(seconds: float, workdir: Path) -> dict:
    from treadlab.acquisition.sim.simulated import PtyPort
    from treadlab.acquisition.sources.wire import encode_force_frames, encode_marker_packet

    workdir.mkdir(parents=True, exist_ok=True)
    pty = PtyPort(name="treadmill")
    udp_port = _free_udp_port()
    report = workdir / "report.json"
    out_dir = workdir / "sessions"

    total = int((seconds + 60.0) * FORCE_HZ)          # generous: setup + tare + recording
    write_time = np.full(total, np.nan)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, pty.path, str(udp_port), str(seconds),
                             str(out_dir), str(report), str(HERE)], stderr=subprocess.PIPE,
                            text=True)
    dev0_us = 123_456
    t0 = time.monotonic()
    sent = 0
    mframe = 0
    writes = []
    try:
        while proc.poll() is None and sent < total:
            now = time.monotonic()
            due = min(total, int((now - t0) * FORCE_HZ))
            if due > sent:
                n = due - sent
                seq = np.arange(sent, due)
                data = encode_force_frames(seq, dev0_us + seq * 500, _force_counts(sent, n))
                pty.write(data)
                write_time[sent:due] = time.monotonic()
                writes.append(write_time[sent])
                sent = due
            mdue = int((now - t0) * MARKER_HZ)
            while mframe < mdue:
                pkt = encode_marker_packet(mframe, 9_000_000 + mframe * 5000, _markers(mframe))
                sock.sendto(pkt, ("127.0.0.1", udp_port))
                mframe += 1
            time.sleep(0.001)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pty.close()
        sock.close()
    if proc.returncode != 0:
        raise SystemExit(f"capture process failed ({proc.returncode}):\n{err[-3000:]}")
    rep = json.loads(report.read_text())

    # latency: toe-off frame written → contact in the live processor
    lat = []
    for seq_off, detected, _side in rep["steps"]:
        if 0 <= seq_off < total and np.isfinite(write_time[seq_off]):
            lat.append(detected - write_time[seq_off])
    lat = np.array(lat) * 1000.0

    import h5py

    with h5py.File(rep["path"], "r") as f:
        n_force = f["raw/force/time"].shape[0]
        seqs = f["raw/force/seq"][()]
        host = f["raw/force/host_time"][()]
        drops, live_drops = log_losses(f)
    missing = int(seqs[-1] - seqs[0] + 1 - n_force) if n_force else 0
    # split: serial write → host receipt (the reader) and receipt → live contact (the rest)
    receipt, pipeline = [], []
    pos = {int(q): i for i, q in enumerate(seqs)} if n_force else {}
    for seq_off, detected, _side in rep["steps"]:
        i = pos.get(int(seq_off))
        if i is not None and 0 <= seq_off < total and np.isfinite(write_time[seq_off]):
            receipt.append(host[i] - write_time[seq_off])
            pipeline.append(detected - host[i])
    receipt = np.array(receipt) * 1000.0
    pipeline = np.array(pipeline) * 1000.0

    gaps = np.diff(np.array(writes)) * 1000.0

    def pct(a, q):
        return round(float(np.percentile(a, q)), 2) if a.size else None
    return {
        "seconds": seconds,
        "force_hz": FORCE_HZ, "channels": CHANNELS, "marker_hz": MARKER_HZ,
        "markers": N_MARKERS,
        "steps": int(lat.size),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "latency_max_ms": round(float(lat.max()), 2) if lat.size else None,
        "receipt_p50_ms": pct(receipt, 50), "receipt_p99_ms": pct(receipt, 99),
        "pipeline_p50_ms": pct(pipeline, 50), "pipeline_p99_ms": pct(pipeline, 99),
        "writer_gap_p50_ms": pct(gaps, 50), "writer_gap_p99_ms": pct(gaps, 99),
        "capture_cpu_pct": round(100.0 * rep["cpu_s"] / rep["wall_s"], 1),
        "drops_force": drops["force"], "drops_markers": drops["markers"],
        "live_drops": live_drops, "frames_recorded": int(n_force),
        "frames_missing": missing,
    }


CHILD_QTM = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[6])
import live as B
from treadlab.acquisition.capture.session import capture_session

host, port, seconds, out_dir, report = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                        sys.argv[4], sys.argv[5])
steps = []
def on_step(s):
    steps.append((s.seq_off, s.detected_host, s.side))
cfg = B.qtm_lab_config(host, port)
t_wall0 = time.monotonic()
c0 = os.times()
path = capture_session(cfg, subject="bench", body_mass_kg=B.BODY_MASS, duration_s=seconds,
                       out_dir=out_dir, status_stream=open(os.devnull, "w"), on_step=on_step)
c1 = os.times()
t_wall1 = time.monotonic()
json.dump({"path": str(path), "steps": steps,
           "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
           "wall_s": t_wall1 - t_wall0}, open(report, "w"))
"""


def qtm_lab_config(host: str, port: int):
    """The benchmark lab read through QTM: the same plates (2000 Hz) and 40 markers (200 Hz),
    both streams from one QTM connection at ``host:port``."""
    import dataclasses

    from treadlab.acquisition.sim.qtm_emulator import qualisys_table

    cfg = lab_config("unused", 0)
    cfg.forceplate = dataclasses.replace(cfg.forceplate, driver="qualisys")
    cfg.markers = dataclasses.replace(cfg.markers, driver="qualisys")
    cfg.simulator = {"cadence_spm": str(CADENCE)}
    cfg.qualisys = qualisys_table(cfg, (host, port), analog=[])  # as measured: no analog stream
    return cfg


def run_qualisys(seconds: float, workdir: Path) -> dict:
    """The capture of the QTM emulator through the ``qualisys`` source (see the docstring)."""
    import h5py

    from treadlab.acquisition.sim.qtm_emulator import start_qtm_lab

    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report_qtm.json"
    out_dir = workdir / "sessions_qtm"
    cfg = qtm_lab_config("127.0.0.1", 1)
    lab = start_qtm_lab(cfg, send_log=True)
    try:
        host, port = lab.qtm_address
        proc = subprocess.run([sys.executable, "-c", CHILD_QTM, host, str(port), str(seconds),
                               str(out_dir), str(report), str(HERE)], stderr=subprocess.PIPE,
                              text=True, timeout=seconds + 300)
    finally:
        stats = lab.stop(timeout=30.0)
    if proc.returncode != 0:
        raise SystemExit(f"capture process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rep = json.loads(report.read_text())
    log = np.asarray(stats["send_log"], np.float64).reshape(-1, 3)    # first, n, t_send
    first, count, t_send = log[:, 0], log[:, 1], log[:, 2]

    def sent_at(seq_off: int) -> float:
        i = int(np.searchsorted(first, seq_off, side="right")) - 1
        if i < 0 or seq_off >= first[i] + count[i]:
            return float("nan")
        return float(t_send[i])

    with h5py.File(rep["path"], "r") as f:
        seqs = f["raw/force/seq"][()]
        host_t = f["raw/force/host_time"][()]
        drops, live_drops = log_losses(f)
        n_force = seqs.shape[0]
    pos = {int(q): i for i, q in enumerate(seqs)}
    lat, receipt, pipeline = [], [], []
    for seq_off, detected, _side in rep["steps"]:
        t = sent_at(int(seq_off))
        i = pos.get(int(seq_off))
        if np.isfinite(t) and i is not None:
            lat.append(detected - t)
            receipt.append(host_t[i] - t)
            pipeline.append(detected - host_t[i])
    lat, receipt, pipeline = (np.array(a) * 1000.0 for a in (lat, receipt, pipeline))

    def pct(a, q):
        return round(float(np.percentile(a, q)), 2) if a.size else None
    return {
        "source": "qualisys", "seconds": seconds, "force_hz": FORCE_HZ, "plates": 2,
        "marker_hz": MARKER_HZ, "markers": N_MARKERS, "steps": int(lat.size),
        "latency_p50_ms": pct(lat, 50), "latency_p99_ms": pct(lat, 99),
        "latency_max_ms": round(float(lat.max()), 2) if lat.size else None,
        "receipt_p50_ms": pct(receipt, 50), "receipt_p99_ms": pct(receipt, 99),
        "pipeline_p50_ms": pct(pipeline, 50), "pipeline_p99_ms": pct(pipeline, 99),
        "capture_cpu_pct": round(100.0 * rep["cpu_s"] / rep["wall_s"], 1),
        "drops_force": drops["force"], "drops_markers": drops["markers"],
        "live_drops": live_drops, "frames_recorded": int(n_force),
        "frames_missing": int(seqs[-1] - seqs[0] + 1 - n_force) if n_force else 0,
        "emulator_packets_skipped": int(stats.get("frames_skipped", 0)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="recording length (s)")
    ap.add_argument("--minutes", type=float, help="recording length (min), e.g. 10 for the goal")
    ap.add_argument("--workdir", help="keep the lab TOML and the archive here")
    ap.add_argument("--source", choices=["serial", "qualisys"], default="serial",
                    help="serial: the pty treadmill + UDP mocap (default); qualisys: the QTM "
                         "RT emulator read through the qualisys source")
    ap.add_argument("--no-baseline", action="store_true",
                    help="with --source qualisys: skip the serial/UDP run of the same length")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60.0 if args.minutes else args.seconds
    if args.source == "qualisys":
        return _main_qualisys(seconds, args)
    if args.workdir:
        res = run(seconds, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="treadlab-bench-live-") as tmp:
            res = run(seconds, Path(tmp))
    print(f"live capture, {seconds:.0f} s at {FORCE_HZ:.0f} Hz x {CHANNELS} ch + "
          f"{MARKER_HZ:.0f} Hz x {N_MARKERS} markers")
    print(f"  steps detected live      {res['steps']}")
    print(f"  latency toe-off → live   p50 {res['latency_p50_ms']} ms, p99 "
          f"{res['latency_p99_ms']} ms (goal p99 ≤ 20 ms), max {res['latency_max_ms']} ms")
    print(f"    of which write → receipt by the reader p50 {res['receipt_p50_ms']} ms, p99 "
          f"{res['receipt_p99_ms']} ms; receipt → live contact p50 {res['pipeline_p50_ms']} "
          f"ms, p99 {res['pipeline_p99_ms']} ms")
    print(f"    emulator writes every  p50 {res['writer_gap_p50_ms']} ms, p99 "
          f"{res['writer_gap_p99_ms']} ms (the writer does not batch)")
    print(f"  capture CPU              {res['capture_cpu_pct']} % of a core (goal ≤ 20 %)")
    print(f"  drops                    force {res['drops_force']}, markers "
          f"{res['drops_markers']}, live {res['live_drops']}, frames missing "
          f"{res['frames_missing']} of {res['frames_recorded']}")
    print(json.dumps(res))
    return 0


def _main_qualisys(seconds: float, args) -> int:
    with tempfile.TemporaryDirectory(prefix="treadlab-bench-live-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        base = None if args.no_baseline else run(seconds, work)
        res = run_qualisys(seconds, work)
    print(f"live capture through QTM (qualisys source, qtm-rt), {seconds:.0f} s: 2 plates at "
          f"{FORCE_HZ:.0f} Hz + {MARKER_HZ:.0f} Hz x {N_MARKERS} markers on one TCP connection")
    print(f"  steps detected live      {res['steps']}")
    print(f"  latency toe-off → live   p50 {res['latency_p50_ms']} ms, p99 "
          f"{res['latency_p99_ms']} ms (goal p99 ≤ 20 ms), max {res['latency_max_ms']} ms")
    print(f"    of which send → receipt p99 {res['receipt_p99_ms']} ms; receipt → live contact "
          f"p99 {res['pipeline_p99_ms']} ms")
    print(f"  capture CPU              {res['capture_cpu_pct']} % of a core (goal ≤ 20 %)")
    print(f"  drops                    force {res['drops_force']}, markers "
          f"{res['drops_markers']}, live {res['live_drops']}, frames missing "
          f"{res['frames_missing']} of {res['frames_recorded']}")
    if base is not None:
        print(f"  baseline (serial + UDP, same run): p99 {base['latency_p99_ms']} ms, CPU "
              f"{base['capture_cpu_pct']} %, drops {base['drops_force']}/"
              f"{base['drops_markers']}")
        for key in ("latency_p50_ms", "latency_p99_ms", "capture_cpu_pct", "drops_force",
                    "drops_markers", "live_drops"):
            res[f"baseline_{key}"] = base[key]
        for key in ("latency_p99_ms", "capture_cpu_pct"):
            if base[key]:
                res[f"ratio_{key}"] = round(res[key] / base[key], 3)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
