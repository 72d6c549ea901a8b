"""Feedback benchmark: toe-off frame written on the serial side → value changed in the runner
page's DOM, in a real headless Chromium, through ``treadlab station``.

A device emulator in this process plays a split-belt force-plate treadmill on a pseudo-terminal
(2000 Hz × 12 int16 channels) and a mocap system on loopback UDP (200 Hz × 40 markers), the
same devices as ``benchmarks/live.py``. ``treadlab station`` runs as its own process with a lab
TOML pointing at them (real serial reader, UDP reader, recorder, live processor, uvicorn,
WebSocket); headless Chromium shows its runner display (``/runner``) and keeps, for every step it
draws, the step's toe-off frame number and the time the DOM changed
(``performance.timeOrigin + performance.now()``, ms since the epoch).

The belt stays unloaded until the station has tared; then the runner steps on and one running
trial of ``--seconds`` s is recorded (feedback on every step, cue: cadence and pelvic drop).

Measured

1. ``feedback_p50_ms`` / ``feedback_p99_ms``: from the emulator's write of the toe-off frame to
   the pty (``time.monotonic()``) to the DOM change in Chromium (wall clock, mapped onto the
   monotonic clock with this machine's offset between the two). Goal p99 ≤ 30 ms.
   ``station_p50_ms`` / ``station_p99_ms``: the station's own figure stored in the trial's
   archive (``/station``: receipt of the toe-off frame → DOM change reported by the page).
2. ``station_cpu_pct``: CPU time (user + system, all threads) of the station process over the
   trial's wall time, in % of one core, from ``/proc/<pid>/stat``. Goal ≤ 25 %.
3. ``drops``: force and marker frames lost (sequence gaps + reader overflows), blocks the live
   processor dropped, frames the emulator wrote during the trial but missing from the archive,
   and steps sent by the station but never drawn by the page. Goal 0 over 10 minutes.

Usage::

    ./run bench feedback [--seconds 60] [--minutes 10] [--workdir DIR]

Figures depend on the machine's load: run it on a quiet machine. The last line printed is one
JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import live as L  # noqa: E402  (the live benchmark's devices: rates, calibration, markers)

FORCE_HZ, MARKER_HZ, CHANNELS, N_MARKERS = L.FORCE_HZ, L.MARKER_HZ, L.CHANNELS, L.N_MARKERS


def lab_toml(port_path: str, udp_port: int) -> str:
    """The benchmark lab as a TOML file's text (what ``treadlab station --config`` reads)."""
    def plate(name, k, y):
        cal = np.diag(L.CAL_DIAG).tolist()
        corners = [[875.0, y + 125, 0.0], [-875.0, y + 125, 0.0], [-875.0, y - 125, 0.0],
                   [875.0, y - 125, 0.0]]
        return (f'[[plates]]\nname = "{name}"\norigin = [0.0, {y}, 0.0]\ncorners = {corners}\n'
                f"channels = {list(range(6 * k, 6 * k + 6))}\ncalibration = {cal}\n")
    labels = ", ".join(f'"{lb}"' for lb in L.LABELS)
    return ('[lab]\nname = "feedback benchmark"\nbelt = "split"\nbelt_speed_m_s = 3.5\n\n'
            + plate("left", 0, 250.0) + "\n" + plate("right", 1, -250.0)
            + f'\n[forceplate]\ndriver = "forceplate_serial"\nport = "{port_path}"\n'
              f"baud = 2000000\nrate_hz = {FORCE_HZ}\nchannels = {CHANNELS}\n"
              f'sample_type = "int16"\nvolts_per_count = {L.VOLTS_PER_COUNT}\n'
              f"tare_seconds = 1.0\n\n"
              f'[markers]\ndriver = "markers_udp"\nhost = "127.0.0.1"\nport = {udp_port}\n'
              f"rate_hz = {MARKER_HZ}\nlabels = [{labels}]\n\n"
              "[contacts]\nstrike_n = 50.0\noff_n = 20.0\nmin_contact_s = 0.1\n"
              "min_peak_bw = 1.0\nmin_flight_s = 0.02\n")


def force_counts(n0: int, n: int, on_frame: float) -> np.ndarray:
    """(n, 12) int16 counts for frames n0..n0+n: unloaded before ``on_frame``, then
    alternating stances (the live benchmark's force model)."""
    t = (n0 + np.arange(n) - on_frame) / FORCE_HZ
    step = 60.0 / L.CADENCE
    k = np.floor(np.where(np.isfinite(t), t, 0) / step)
    phase = np.where(np.isfinite(t), t, 0) - k * step
    fz = np.where((t >= 0) & (phase < L.CONTACT_S),
                  2.5 * L.BODY_MASS * 9.81 * np.sin(np.pi * np.clip(phase, 0, L.CONTACT_S)
                                                    / L.CONTACT_S), 0.0)
    fx = np.where(fz > 0, -0.3 * fz * np.cos(np.pi * phase / L.CONTACT_S), 0.0)
    left = (k % 2 == 0)
    w = np.zeros((n, 2, 6))
    for plate, on in ((0, left), (1, ~left)):
        w[:, plate, 2] = np.where(on, fz, 0.0)
        w[:, plate, 0] = np.where(on, fx, 0.0)
        w[:, plate, 3] = w[:, plate, 2] * (0.25 if plate == 0 else -0.25)
    rng = np.random.default_rng(n0)
    w += rng.normal(0, 2.0, w.shape)
    counts = np.rint(w / np.array(L.CAL_DIAG) / L.VOLTS_PER_COUNT).reshape(n, 12) + 40
    return np.clip(counts, -32768, 32767).astype(np.int16)


class Emulator(threading.Thread):
    """Writes the due force frames to the pty about every millisecond and the due marker
    datagrams to UDP; keeps each force frame's write time (``time.monotonic()``, s)."""

    def __init__(self, pty, udp_port: int, max_s: float):
        super().__init__(name="emulator", daemon=True)
        self.pty, self.udp_port = pty, udp_port
        self.total = int(max_s * FORCE_HZ)
        self.write_time = np.full(self.total, np.nan)
        self.on_frame = np.inf
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from treadlab.acquisition.sources.wire import encode_force_frames, encode_marker_packet

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t0 = time.monotonic()
        mframe = 0
        try:
            while not self.stop.is_set() and self.sent < self.total:
                now = time.monotonic()
                due = min(self.total, int((now - t0) * FORCE_HZ))
                if due > self.sent:
                    seq = np.arange(self.sent, due)
                    data = encode_force_frames(seq, 123_456 + seq * 500,
                                               force_counts(self.sent, due - self.sent,
                                                            self.on_frame))
                    self.pty.write(data)
                    self.write_time[self.sent:due] = time.monotonic()
                    self.sent = due
                elif self.pty.pending:
                    self.pty.write()
                mdue = int((now - t0) * MARKER_HZ)
                while mframe < mdue:
                    sock.sendto(encode_marker_packet(mframe, 9_000_000 + mframe * 5000,
                                                     L._markers(mframe)),
                                ("127.0.0.1", self.udp_port))
                    mframe += 1
                time.sleep(0.001)
        finally:
            sock.close()


def _call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        raise SystemExit("the feedback benchmark needs Chromium and chromedriver "
                         "(apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,800"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def run(seconds: float, workdir: Path) -> dict:
    from treadlab.acquisition.sim.simulated import PtyPort

    workdir.mkdir(parents=True, exist_ok=True)
    pty = PtyPort(name="treadmill")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp_port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]
    cfg = workdir / "bench_lab.toml"
    cfg.write_text(lab_toml(pty.path, udp_port))
    emu = Emulator(pty, udp_port, seconds + 180.0)
    emu.start()
    url = f"http://127.0.0.1:{http_port}"
    log = open(workdir / "station.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "treadlab.pipeline.cli", "station",
                             "--config", str(cfg), "--port", str(http_port),
                             "--data", str(workdir / "data")],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    drv = None
    try:
        def healthy():
            try:
                h = _call(url + "/api/health")
            except OSError:
                return False
            return h if h and all(x["healthy"] for x in h.values()) else False

        _wait(healthy, 90, "the station with healthy, tared devices")
        _call(url + "/api/runner", "POST", {"id": "BENCH", "body_mass_kg": L.BODY_MASS,
                                            "leg_length_mm": 920})
        _call(url + "/api/feedback", "PUT", {"cues": ["cadence", "pelvic_drop"],
                                             "fading": "every", "window": 7})
        emu.on_frame = emu.sent + FORCE_HZ * 0.5          # the runner steps on
        time.sleep(2.0)
        drv = _browser()
        drv.get(url + "/runner")
        _wait(lambda: drv.execute_script("return document.getElementById('value-cadence')"),
              30, "the runner display")
        time.sleep(3.0)                                   # let the rate settle after the load
        _wait(healthy, 30, "healthy devices before the trial")
        c0, w0 = _cpu_s(proc.pid), time.monotonic()
        trial = _call(url + "/api/trials", "POST", {"kind": "running", "speed_m_s": 3.5,
                                                    "duration_s": seconds, "note": "benchmark"})
        _wait(lambda: not _call(url + "/api/state")["trial"], seconds + 60, "the trial's end")
        c1, w1 = _cpu_s(proc.pid), time.monotonic()
        shown = drv.execute_script("return window.__shown")
        offset = time.time() - time.monotonic()           # wall − monotonic, this machine
        done = _wait(lambda: next((t for t in _call(url + "/api/trials")
                                   if t["id"] == trial["id"]
                                   and t.get("processing") in ("done", "failed")), None),
                     300, "the trial processed")
    finally:
        if drv is not None:
            drv.quit()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        emu.stop.set()
        emu.join(5)
        pty.close()
        log.close()

    lat = []
    for s in shown:
        seq = int(s["seq_off"])
        if 0 <= seq < emu.total and np.isfinite(emu.write_time[seq]):
            lat.append((float(s["t_ms"]) / 1000.0 - offset) - emu.write_time[seq])
    lat = np.array(lat) * 1000.0

    import h5py

    with h5py.File(trial["archive"], "r") as f:
        seqs = f["raw/force/seq"][()]
        n_force = int(seqs.shape[0])
        st = dict(f["station"].attrs) if "station" in f else {}
        drops, live_drops = L.log_losses(f)
    missing = int(seqs[-1] - seqs[0] + 1 - n_force) if n_force else 0
    n_sent = int(st.get("feedback_n_sent", 0))
    unshown = max(0, n_sent - len(shown))

    def pct(a, q):
        return round(float(np.percentile(a, q)), 2) if a.size else None
    return {
        "seconds": seconds, "force_hz": FORCE_HZ, "channels": CHANNELS, "marker_hz": MARKER_HZ,
        "markers": N_MARKERS, "steps_shown": int(lat.size), "steps_sent": n_sent,
        "feedback_p50_ms": pct(lat, 50), "feedback_p99_ms": pct(lat, 99),
        "feedback_max_ms": round(float(lat.max()), 2) if lat.size else None,
        "station_p50_ms": st.get("feedback_dom_p50_ms"),
        "station_p99_ms": st.get("feedback_dom_p99_ms"),
        "station_cpu_pct": round(100.0 * (c1 - c0) / (w1 - w0), 1),
        "drops": drops["force"] + drops["markers"] + live_drops + missing + unshown,
        "drops_force": drops["force"], "drops_markers": drops["markers"],
        "live_drops": live_drops, "frames_missing": missing, "steps_not_drawn": unshown,
        "processing": done.get("processing"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="trial length (s)")
    ap.add_argument("--minutes", type=float, help="trial length (min), e.g. 10 for the goal")
    ap.add_argument("--workdir", help="keep the lab TOML, the station log and the runner "
                                      "folder here")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60.0 if args.minutes else args.seconds
    if args.workdir:
        res = run(seconds, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="treadlab-bench-feedback-") as tmp:
            res = run(seconds, Path(tmp))
    print(f"feedback through treadlab station, {seconds:.0f} s at {FORCE_HZ:.0f} Hz x "
          f"{CHANNELS} ch + {MARKER_HZ:.0f} Hz x {N_MARKERS} markers, headless Chromium")
    print(f"  steps drawn / sent        {res['steps_shown']} / {res['steps_sent']}")
    print(f"  toe-off write → DOM       p50 {res['feedback_p50_ms']} ms, p99 "
          f"{res['feedback_p99_ms']} ms (goal p99 ≤ 30 ms), max {res['feedback_max_ms']} ms")
    print(f"  station's own (receipt → DOM, in the archive) p50 {res['station_p50_ms']} ms, "
          f"p99 {res['station_p99_ms']} ms")
    print(f"  station CPU               {res['station_cpu_pct']} % of a core (goal ≤ 25 %)")
    print(f"  drops                     {res['drops']} (force {res['drops_force']}, markers "
          f"{res['drops_markers']}, live {res['live_drops']}, frames missing "
          f"{res['frames_missing']}, steps not drawn {res['steps_not_drawn']}; goal 0)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
