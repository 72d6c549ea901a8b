"""The station: devices kept open, their health, trials recorded and processed.

:class:`Station` is the state behind ``treadlab station`` (the web app in
:mod:`treadlab.pipeline.station.app` only calls it):

* **devices** — the lab's force and marker sources are opened once and stay open; one pump
  thread reads them all the time (so the console can plot and judge them between trials) and,
  while a trial runs, hands each block to the trial's crash-safe
  :class:`~treadlab.acquisition.capture.recorder.Recorder` and
  :class:`~treadlab.acquisition.capture.live.LiveProcessor`, exactly as ``treadlab capture`` does.
  A source that cannot be opened is retried with back-off (0.5 s doubling to 8 s); the serial
  reader itself reopens a vanished port. The simulated lab is started only when the lab config
  asks for it (``port = "auto"``), never as a stand-in for a missing device.
* **health** (:meth:`Station.health`) — per source: connected, frame rate over the last 2 s
  (Hz) against the nominal rate, drops (sequence gaps + queue overflows, and those in the last
  5 s), clock offset (s, host − device) and drift (ppm) from a fit over everything received
  since the station started; for the force plate the zero (ADC counts, from the last tare) and
  the vertical load now (N per plate). A source is unhealthy when it is not connected, silent
  for 0.5 s, below 90 % or above 150 % of its nominal rate over the last 2 s, dropping frames in the last 5 s, or (force)
  not tared. A trial does not start while a source is unhealthy; the refusal names it and why.
* **trials** — one runner at a time (pseudonymous id, body mass kg, leg length mm); a static
  trial and running trials (speed m/s, duration s, note). Each trial is written to the runner's
  folder (:mod:`treadlab.pipeline.station.store`), then processed (``treadlab process``:
  :func:`treadlab.pipeline.graph.process_session`) and given an HTML report (``treadlab
  report``), one trial after the other, each in a child process at lower priority (nice 10): the
  next trial's live feedback never waits for the previous one's processing, and a processing
  failure cannot take the station down. A static trial is not processed but calibrated when it
  ends (:meth:`Station._calibrate`: the standing values of
  :func:`~treadlab.acquisition.io.static_calibration.static_values`, stored with their source in
  its archive and ``runner.json``); every later running trial carries them and the belt speed
  (:func:`_carry_static`). In the simulated lab the synthetic runner stands still for a static
  trial and runs at the typed speed for a running one. At start-up every trial a killed station
  left ``recording`` is recovered (:func:`~treadlab.acquisition.capture.recorder.recover`),
  listed as ``interrupted`` and processed (or calibrated).
* **feedback** — at each toe off the live processor calls back; the station builds the step
  message (:func:`treadlab.pipeline.station.feedback.step_message`) and publishes it at once.
  The runner page reports when it changed its DOM; the latency from the receipt of the toe-off
  frame to that DOM change (ms) is stored per trial in the archive (``/station``).

Everything that reaches the pages goes through :meth:`Station.subscribe`: callbacks receive
``(kind, message)`` from any thread; the web app forwards them to its WebSockets.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition import archive
from treadlab.acquisition.capture.clock import SessionClock
from treadlab.acquisition.capture.live import LiveProcessor
from treadlab.acquisition.capture.recorder import Recorder, recover
from treadlab.acquisition.capture.session import (cgm_labels, contact_params, is_simulated,
                                                  merge_blocks, where)
from treadlab.acquisition.io.static_calibration import static_values
from treadlab.acquisition.sim.emulated import lab_starter
from treadlab.acquisition.sim.treadmill_emulator import SimulatedTreadmill
from treadlab.acquisition.sources.base import sources_from_config
from treadlab.acquisition.sources.treadmill_bertec import (SpeedProtocol, TreadmillBertec,
                                                           TreadmillSettings, parse_protocol)
from treadlab.config import load_lab
from treadlab.config.errors import ConfigError, DeviceError, TreadlabError
from treadlab.pipeline.station.feedback import FeedbackSettings, shown, step_message
from treadlab.pipeline.station.store import RequestError, RunnerStore, safe_id, utc_now, write_json

log = logging.getLogger(__name__)

__all__ = ["Station"]

#: s: a source with no frames for this long is "silent".
SILENT_S = 0.5
#: fractions of the nominal rate the rate over the last :data:`RATE_WINDOW_S` must stay within
#: (above: generous, as frames held up by a busy host or a tare arrive in a burst afterwards;
#: a device at twice the configured rate is still caught).
RATE_BOUNDS = (0.90, 1.5)
#: s: window of the measured frame rate.
RATE_WINDOW_S = 2.0
#: s: drops within this window make a source unhealthy.
RECENT_DROPS_S = 5.0
#: s: back-off between attempts to open a source (doubling up to the maximum).
OPEN_BACKOFF_S = (0.5, 8.0)
#: Hz: rate of the force and visibility samples sent to the console plots.
PLOT_HZ = 100.0
#: s: how often the state (health, trial, trials) is published.
STATE_EVERY_S = 0.5
#: s: the longest processing (or report) of one trial may take.
PROCESS_TIMEOUT_S = 1800.0
#: niceness of the processing processes (below the station's live path).
PROCESS_NICE = 10
#: The values a static trial gives (deg, deg, mm, mm, mm), stored with their source.
STATIC_KEYS = ("pelvic_obliquity_deg", "pelvic_tilt_deg", "leg_length_left_mm",
               "leg_length_right_mm", "inter_asis_mm")
#: Simulated lab: wait after switching the synthetic runner's posture or speed (s), so the
#: trial's first frame already has it (the switch reaches the frames ~0.25 s after the command).
POSTURE_SETTLE_S = 0.35
#: m/s: a belt measured above this is "moving" (a static trial needs it stopped).
BELT_MOVING_M_S = 0.1


class _SourceHealth:
    """Frame counts over time of one source (the pump thread adds, any thread reads: every
    method holds the lock)."""

    def __init__(self, source, nominal_hz: float):
        self.lock = threading.Lock()
        self.source = source
        self.nominal_hz = float(nominal_hz)
        self.arrivals: deque = deque()          # (host time s, frames)
        self.last_frame_host = None
        self.first_frame_host = None
        self.drop_marks: deque = deque()        # (host time s, cumulative drops)
        self.error: str | None = None            # last open error
        self.next_open = 0.0
        self.backoff = OPEN_BACKOFF_S[0]

    def add(self, now: float, n: int) -> None:
        with self.lock:
            self.arrivals.append((now, n))
            self.last_frame_host = now
            if self.first_frame_host is None:
                self.first_frame_host = now
            while self.arrivals and self.arrivals[0][0] < now - RATE_WINDOW_S:
                self.arrivals.popleft()

    def rate(self, now: float) -> float:
        """Frames per second over the last :data:`RATE_WINDOW_S` s (Hz)."""
        with self.lock:
            n = sum(k for t, k in self.arrivals if t > now - RATE_WINDOW_S)
        return float(n) / RATE_WINDOW_S

    def drops(self) -> int:
        c = self.source.counters
        return int(c.get("drops", 0)) + int(c.get("overflow", 0))

    def mark_drops(self, now: float) -> int:
        """Drops in the last :data:`RECENT_DROPS_S` s."""
        total = self.drops()
        with self.lock:
            self.drop_marks.append((now, total))
            while len(self.drop_marks) > 1 and self.drop_marks[1][0] < now - RECENT_DROPS_S:
                self.drop_marks.popleft()
            return total - self.drop_marks[0][1]


class _Trial:
    """A trial being recorded (pump thread and API threads share it under the station lock)."""

    def __init__(self, meta: dict, rec, live, clock, t0: float):
        self.meta = meta
        self.rec = rec
        self.live = live
        self.clock = clock
        self.t0 = t0
        self.n_steps = 0
        self.rx = deque(maxlen=4000)       # (seq array, host time array) of force blocks
        self.rx_lock = threading.Lock()    # pump thread appends, live thread looks up
        self.sent: dict[int, float] = {}   # step n → toe-off receipt host time (s)
        self.latency_ms: list[tuple[int, float, float]] = []   # (n, receipt→sent, receipt→DOM)
        self.sent_ms: dict[int, float] = {}
        self.belt_speeds: list = []        # (n, 2) m/s blocks recorded in /raw/belt
        self.protocol: SpeedProtocol | None = None
        self.stages: list[tuple[float, float]] = []   # (m/s, s) of the speed protocol
        self.protocol_t0 = t0              # monotonic s when the protocol started


class Station:
    """The lab's devices, kept open, and the trials recorded from them.

    Parameters
    ----------
    config_path : str or os.PathLike, optional
        Lab TOML; None = the shipped simulated lab.
    data_dir : str or os.PathLike
        The runner folders (:class:`~treadlab.pipeline.station.store.RunnerStore`).
    params : dict, optional
        Synthetic-runner parameters for a simulated lab.
    process : bool
        Process and report each trial after it ends (default True).
    """

    def __init__(self, config_path=None, data_dir="treadlab-station", *, params=None,
                 process: bool = True):
        self.config_path = None if config_path is None else str(config_path)
        self.cfg = load_lab(config_path)            # ConfigError before anything is opened
        self.store = RunnerStore(data_dir)
        self.params = dict(params or {})
        self.process = bool(process)
        self.lab = None
        self.force = self.markers = None
        self.treadmill: TreadmillBertec | None = None
        self.extra: list = []                        # QTM's analog stream (``[qualisys] analog``)
        self._belt_sim: SimulatedTreadmill | None = None
        self._parent: dict = {}                      # extra stream name → its source
        self._health: dict[str, _SourceHealth] = {}
        self._lock = threading.RLock()
        self._trial: _Trial | None = None
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._child: subprocess.Popen | None = None
        self._subscribers: list = []
        self._events: deque = deque(maxlen=100)
        self._plot_new: list = []
        self._plot_step_f = 1
        self._plot_step_m = 1
        self._fz_recent: deque = deque(maxlen=2000)    # (host time, (p,) Fz N)
        self._recent_lock = threading.Lock()           # guards _fz_recent and _events
        self._clock = None
        self._clock_desc: dict = {}
        self._tare_busy = False
        self.started_utc = utc_now()
        self.t_start = time.monotonic()
        settings = self.store.root / "station.json"
        saved = {}
        if settings.exists():
            try:
                saved = json.loads(settings.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("%s: unreadable, starting without a runner", settings)
        self.runner: dict | None = None
        if saved.get("runner"):
            self.runner = self.store.load_runner(saved["runner"])
        self.feedback = FeedbackSettings()
        if saved.get("feedback"):
            try:
                self.feedback = FeedbackSettings().updated(saved["feedback"])
            except RequestError as exc:
                log.warning("%s: %s (feedback settings reset)", settings, exc)
        self.trials: list[dict] = self.store.trials()

    # --- life cycle ------------------------------------------------------------------------

    @property
    def simulated(self) -> bool:
        return is_simulated(self.cfg)

    def start(self) -> "Station":
        """Recover interrupted trials, start the devices (the simulated lab when the config asks
        for it), the pump and the processing worker."""
        self._recover_interrupted()
        self._worker = threading.Thread(target=self._work, name="treadlab-station-worker",
                                        daemon=True)
        self._worker.start()
        if self.simulated:
            # the simulated lab, or a vendor's emulator (QTM) when the lab file names it
            self.lab = lab_starter(self.cfg)(self.cfg, params=self.params or None)
        self.force, self.markers = sources_from_config(self.cfg, lab=self.lab)
        # more streams on the same connections (QTM's analog channels), opened after them
        self.extra = [x for src in (self.force, self.markers) for x in src.extra]
        self._parent = {x.name: src for src in (self.force, self.markers) for x in src.extra}
        self._health = {"force": _SourceHealth(self.force, self.force.info.rate_hz),
                        "markers": _SourceHealth(self.markers, self.markers.info.rate_hz)}
        for x in self.extra:
            self._health[x.name] = _SourceHealth(x, x.info.rate_hz)   # rate known once open
        if getattr(self.cfg, "treadmill", None) is not None:
            self.treadmill, self._belt_sim = _treadmill(self.cfg, self.lab)
            self._health["belt"] = _SourceHealth(self.treadmill, self.treadmill.info.rate_hz)
        self._plot_step_f = max(1, int(round(self.force.info.rate_hz / PLOT_HZ)))
        self._plot_step_m = max(1, int(round(self.markers.info.rate_hz / PLOT_HZ)))
        self._clock = SessionClock(self.t_start)
        self._pump = threading.Thread(target=self._run_pump, name="treadlab-station-pump",
                                      daemon=True)
        self._pump.start()
        log.info("station started: data in %s", self.store.root)
        return self

    def stop(self, wait_processing_s: float = 60.0) -> None:
        """End a running trial (``complete``, reason "station stopped"), close the devices, let
        queued processing finish (at most ``wait_processing_s`` s)."""
        try:
            self.stop_trial("station stopped")
        except RequestError:
            pass
        self._stop.set()
        if self._pump is not None:
            self._pump.join(10.0)
        if self.treadmill is not None and self.treadmill.is_open and self._belt_moving():
            self._stop_belt("station stopped")      # no trial, yet the belt moves
        for src in [self.treadmill] + self.extra + [self.markers, self.force]:
            if src is not None:
                try:
                    src.close()
                except Exception:  # closing must not hide the shutdown
                    log.exception("closing %s failed", src)
        if self._belt_sim is not None:
            self._belt_sim.stop()
        if self.lab is not None:
            self.lab.stop()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(wait_processing_s)
        child = self._child
        if child is not None and child.poll() is None:
            log.warning("processing still running after %.0f s: stopped", wait_processing_s)
            child.terminate()
        log.info("station stopped")

    # --- subscribers -----------------------------------------------------------------------

    def subscribe(self, callback) -> None:
        """``callback(kind, message)`` for every ``state``, ``plot`` and ``step`` message;
        called from the station's threads, so it must return at once."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback) -> None:
        try:
            self._subscribers.remove(callback)
        except ValueError:
            pass

    def _publish(self, kind: str, message: dict) -> None:
        for cb in list(self._subscribers):
            try:
                cb(kind, message)
            except Exception:  # a broken subscriber must not stop the station
                log.exception("station subscriber failed")

    # --- the pump --------------------------------------------------------------------------

    def _ensure_open(self, name: str, now: float) -> bool:
        h = self._health[name]
        src = h.source
        if src.is_open:
            return True
        if now < h.next_open:
            return False
        parent = self._parent.get(name)
        if parent is not None and not parent.is_open:
            return False
        try:
            src.open()
            if float(src.info.rate_hz or 0) > 0:
                h.nominal_hz = float(src.info.rate_hz)   # QTM's analog rate is known once open
            h.error = None
            h.backoff = OPEN_BACKOFF_S[0]
            self._log_event(now, name, "connect", "opened")
            return True
        except (DeviceError, ConfigError, OSError) as exc:
            h.error = str(exc)
            h.next_open = now + h.backoff
            h.backoff = min(h.backoff * 2, OPEN_BACKOFF_S[1])
            self._log_event(now, name, "error", f"{exc}; retrying in {h.backoff:.1f} s")
            return False

    def _log_event(self, t: float, source: str, kind: str, detail: str) -> None:
        with self._recent_lock:
            self._events.append((round(t - self.t_start, 3), source, kind, detail))

    def _run_pump(self) -> None:
        next_state = time.monotonic()
        next_plot = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            f_open = self._ensure_open("force", now)
            m_open = self._ensure_open("markers", now)
            blocks = []
            if f_open:
                blocks += merge_blocks(self.force.read(0.01))
            else:
                self._stop.wait(0.01)
            if m_open:
                blocks += merge_blocks(self.markers.read(0.0))
            more = [(x, self._ensure_open(x.name, now)) for x in self.extra]
            if self.treadmill is not None:
                more.append((self.treadmill, self._ensure_open("belt", now)))
            for src, ok in more:
                if ok:
                    blocks += merge_blocks(src.read(0.0))
            now = time.monotonic()
            for b in blocks:
                self._take(b, now)
            events = []
            for src, ok in [(self.force, f_open), (self.markers, m_open)] + more:
                if ok:
                    events += src.drain_events()
            for ev in events:
                self._log_event(ev[0], ev[1], ev[2], ev[3])
            with self._trial_locked() as trial:
                if trial is not None:
                    for ev in events:
                        trial.rec.event(*ev)
            if trial is not None:
                if trial.rec.error is not None:
                    log.error("recorder failed: %s", trial.rec.error)
                    self._finish(trial, "interrupted", f"recorder failed: {trial.rec.error}")
                else:
                    dur = trial.meta.get("duration_s")
                    if dur and now - trial.t0 >= dur:
                        self._finish(trial, "complete", "duration")
            if now >= next_plot:
                self._publish_plot()
                next_plot = now + 0.1
            if now >= next_state:
                # the clock fits are only touched by this thread; others read this copy
                self._clock_desc = self._clock.describe()
                self._publish("state", self.state())
                next_state = now + STATE_EVERY_S

    def _take(self, b, now: float) -> None:
        """One block: health, clock fit, plots; the trial's recorder and live processor."""
        h = self._health[b.stream]
        h.add(now, len(b))
        if b.stream == "belt":
            self._take_belt(b)
            return
        self._clock.add(b.stream, b.device_time, b.host_time)
        if b.stream == "force":
            fz = b.data[:, :, 2]
            with self._recent_lock:
                self._fz_recent.append((now, fz.max(axis=0)))
            for row in fz[::self._plot_step_f]:
                self._plot_new.append(("force", row.tolist()))
        elif b.stream == "markers":
            vis = np.isfinite(b.data[:, :, 0]).mean(axis=1)
            for v in vis[::self._plot_step_m]:
                self._plot_new.append(("visibility", float(v)))
        with self._trial_locked() as trial:
            if trial is None:
                return
            trial.clock.add(b.stream, b.device_time, b.host_time)
            t = trial.clock.to_session(b.stream, b.device_time)
            trial.rec.put(b, t)
            if trial.live is not None:
                if b.stream == "force":
                    if b.seq is not None:
                        with trial.rx_lock:
                            trial.rx.append((b.seq, np.broadcast_to(b.host_time, (len(b),))))
                    trial.live.put_force(t, b.data, b.seq)
                elif b.stream == "markers":
                    trial.live.put_markers(t, b.data)

    @contextlib.contextmanager
    def _trial_locked(self):
        """The recording trial, held under the station lock for the ``with`` block, or None
        when no trial records or a stop from the API closed it meanwhile (the lock is not
        taken at all between trials)."""
        trial = self._trial
        if trial is None:
            yield None
            return
        with self._lock:
            yield trial if self._trial is trial else None

    def _take_belt(self, b) -> None:
        """Belt speeds (m/s) → the trial's ``/raw/belt`` on its clock (receipt time − t0,
        provisional: the recorder fits a constant-rate packet clock at close), as capture."""
        with self._trial_locked() as trial:
            if trial is None:
                return
            trial.rec.put(b, b.host_time - trial.t0)
            trial.belt_speeds.append(np.asarray(b.data, np.float64))

    def _publish_plot(self) -> None:
        new, self._plot_new = self._plot_new, []
        if not new:
            return
        msg = {"type": "plot", "hz": PLOT_HZ,
               "plates": list(self.force.info.plates or self.force.info.labels),
               "force": [v for k, v in new if k == "force"],
               "visibility": [v for k, v in new if k == "visibility"]}
        self._publish("plot", msg)

    # --- health ----------------------------------------------------------------------------

    def health(self) -> dict:
        """Per source: ``connected``, ``healthy``, ``why`` (reasons it is not), ``rate_hz`` (last
        2 s), ``nominal_hz``, ``drops`` (total), ``drops_recent`` (last 5 s), ``reconnects``,
        ``clock_offset_s`` (host − device, s), ``clock_drift_ppm``; force also ``zero_counts``
        (ADC counts), ``tared`` and ``load_n`` (max vertical force per plate over the last 0.2 s,
        N)."""
        now = time.monotonic()
        out = {}
        clock = self._clock_desc
        for name, h in self._health.items():
            src = h.source
            rate = h.rate(now)
            recent = h.mark_drops(now)
            silent = h.last_frame_host is None or now - h.last_frame_host > SILENT_S
            why = []
            if not src.is_open:
                why.append(f"not connected ({h.error or 'opening'})")
            elif silent:
                since = ("no frames yet" if h.last_frame_host is None
                         else f"no frames for {now - h.last_frame_host:.1f} s")
                why.append(f"{since} from {where(src)}")
            elif now - h.first_frame_host < RATE_WINDOW_S + 0.5:
                why.append("starting: measuring the frame rate")
            elif not RATE_BOUNDS[0] * h.nominal_hz <= rate <= RATE_BOUNDS[1] * h.nominal_hz:
                why.append(f"rate {rate:.0f} Hz, expected {h.nominal_hz:g} Hz")
            if recent:
                why.append(f"{recent} frames dropped in the last {RECENT_DROPS_S:g} s")
            c = clock.get(name, {})
            item = {"name": name, "where": where(src), "connected": bool(src.is_open),
                    "rate_hz": round(rate, 1), "nominal_hz": h.nominal_hz,
                    "drops": h.drops(), "drops_recent": int(recent),
                    "reconnects": int(src.counters.get("reconnects", 0)),
                    "frames": int(src.counters.get("frames", 0)),
                    "clock_offset_s": round(c["offset"], 6) if "offset" in c else None,
                    "clock_drift_ppm": round(c["drift_ppm"], 2) if "drift_ppm" in c else None}
            if name == "force":
                # a source without a tare (QTM: the plates are zeroed in QTM) needs none here
                can_tare = hasattr(src, "tare")
                tared = bool(getattr(src, "_tared", False)) if can_tare else True
                item["tared"] = tared
                item["tare_running"] = bool(self._tare_busy)
                item["zero_counts"] = [round(float(z), 1) for z in
                                       np.ravel(getattr(src, "zero", []))]
                item["load_n"] = [round(float(v), 1) for v in self._load(now, 0.2)]
                if src.is_open and not tared and not why:
                    why.append("not tared (the belt must be unloaded: press Tare)")
            elif name == "belt":
                last = np.asarray(src.last, float)
                item["speed_m_s"] = [None if not math.isfinite(v) else round(float(v), 3)
                                     for v in last[:2]]
                item["max_speed_m_s"] = float(src.settings.max_speed_m_s)
                item["accel_m_s2"] = float(src.settings.accel_m_s2)
            elif getattr(src, "kind", "") == "analog":
                item["channels"] = list(src.info.labels)
                item["units"] = list(getattr(src, "units", []))
            item["healthy"] = not why
            item["why"] = "; ".join(why)
            out[name] = item
        return out

    def _load(self, now: float, seconds: float) -> np.ndarray:
        with self._recent_lock:
            rows = [v for t, v in self._fz_recent if t > now - seconds]
        if not rows:
            return np.zeros(0)
        return np.max(np.array(rows), axis=0)

    def unhealthy(self) -> list[str]:
        """``"<source>: <why>"`` for every unhealthy source."""
        return [f"{n}: {h['why']}" for n, h in self.health().items() if not h["healthy"]]

    def tare(self, seconds: float | None = None) -> dict:
        """Re-measure the force plate's zero over ``seconds`` (s; default the lab's
        ``tare_seconds``) with the belt unloaded.

        In a simulated lab the virtual runner steps off the belt for the tare and back on after.

        Raises
        ------
        RequestError (409) during a trial, while the belt is loaded (> 50 N on a plate) or when
        the force plate is not connected.
        """
        if self._trial is not None:
            raise RequestError("tare", "a trial is recording; stop it first", 409)
        if self.force is None or not self.force.is_open:
            raise RequestError("tare", "the force plate is not connected", 409)
        if not hasattr(self.force, "tare"):
            raise RequestError("tare", f"the {where(self.force)} force plates are zeroed by "
                                       "their own system (zero them there)", 409)
        if self._tare_busy:
            raise RequestError("tare", "a tare is already running", 409)
        seconds = float(seconds or getattr(self.cfg.forceplate, "tare_seconds", 0) or 1.0)
        if not 0.1 <= seconds <= 10:
            raise RequestError("tare.seconds", f"must be 0.1-10 s, got {seconds}")
        self._tare_busy = True
        try:
            if self.lab is not None:
                self.lab.runner_on_belt(False)
                time.sleep(0.5)
            load = self._load(time.monotonic(), 0.2)
            if load.size and float(load.max()) > 50.0:
                raise RequestError("tare", f"the belt is loaded ({float(load.max()):.0f} N on a "
                                           "plate): ask the runner to step off", 409)
            try:
                zero = self.force.tare(seconds=seconds)
            except DeviceError as exc:
                raise RequestError("tare", str(exc), 409) from None
        finally:
            if self.lab is not None:
                self.lab.runner_on_belt(True)
            self._tare_busy = False
        self._log_event(time.monotonic(), "force", "tare", f"zero measured over {seconds:g} s")
        return {"zero_counts": [round(float(z), 1) for z in np.ravel(zero)],
                "seconds": seconds}

    # --- runner and feedback ------------------------------------------------------------------

    def set_runner(self, values: dict) -> dict:
        """Register (or select) the runner: ``id`` (pseudonymous), ``body_mass_kg`` (kg, 20–250),
        ``leg_length_mm`` (mm, 500–1300, ASIS to medial malleolus).

        Raises
        ------
        RequestError naming ``runner.<field>``; 409 while a trial is recording.
        """
        if not isinstance(values, dict):
            raise RequestError("runner", "expected a JSON object")
        if self._trial is not None:
            raise RequestError("runner", "a trial is recording; stop it first", 409)
        unknown = set(values) - {"id", "body_mass_kg", "leg_length_mm"}
        if unknown:
            raise RequestError(f"runner.{sorted(unknown)[0]}",
                               "unknown field; known: id, body_mass_kg, leg_length_mm")
        rid = safe_id(values.get("id"))
        mass = _number(values.get("body_mass_kg"), "runner.body_mass_kg", 20.0, 250.0, "kg")
        leg = _number(values.get("leg_length_mm"), "runner.leg_length_mm", 500.0, 1300.0, "mm")
        runner = {"id": rid, "body_mass_kg": mass, "leg_length_mm": leg}
        self.store.save_runner(runner)
        self.runner = self.store.load_runner(rid)
        self._save_settings()
        self._publish("state", self.state())
        return self.runner

    def set_feedback(self, values: dict) -> dict:
        """Change the runner display's settings (:meth:`FeedbackSettings.updated`); applies to
        the running trial from its next step."""
        self.feedback = self.feedback.updated(values)
        self._save_settings()
        self._publish("state", self.state())
        return self.feedback.as_dict()

    def _save_settings(self) -> None:
        write_json(self.store.root / "station.json",
                   {"runner": self.runner["id"] if self.runner else None,
                    "feedback": self.feedback.as_dict()})

    # --- trials ------------------------------------------------------------------------------

    def start_trial(self, values: dict) -> dict:
        """Start recording a trial: ``kind`` ("static" or "running"), ``speed_m_s`` (m/s, 0.5–10,
        running only), ``duration_s`` (s, 1–3600; omitted: until stopped; static default 10 s),
        ``note`` (text).

        Raises
        ------
        RequestError naming the field; 409 without a runner, during another trial or while a
        device is unhealthy (the message names it and why).
        """
        if not isinstance(values, dict):
            raise RequestError("trial", "expected a JSON object")
        unknown = set(values) - {"kind", "speed_m_s", "duration_s", "note", "protocol"}
        if unknown:
            raise RequestError(f"trial.{sorted(unknown)[0]}",
                               "unknown field; known: kind, speed_m_s, duration_s, note, "
                               "protocol")
        kind = values.get("kind")
        if kind not in ("static", "running"):
            raise RequestError("trial.kind", f"must be 'static' or 'running', got {kind!r}")
        stages, protocol = self._protocol_stages(kind, values.get("protocol"))
        if kind == "running" and stages and values.get("speed_m_s") in (None, ""):
            speed = stages[0][0]
        elif kind == "running":
            speed = _number(values.get("speed_m_s"), "trial.speed_m_s", 0.5, 10.0, "m/s")
            if stages and abs(speed - stages[0][0]) > 1e-9:
                raise RequestError("trial.speed_m_s", f"{speed:g} m/s, but the protocol starts "
                                                      f"at {stages[0][0]:g} m/s: omit it or "
                                                      "give the first stage's speed")
            limit = self._max_speed()
            if speed > limit:
                raise RequestError("trial.speed_m_s", f"{speed:g} m/s exceeds the treadmill's "
                                                      f"max_speed_m_s = {limit:g} m/s")
        else:
            if values.get("speed_m_s") not in (None, 0, 0.0):
                raise RequestError("trial.speed_m_s", "a static trial has no belt speed")
            speed = 0.0
        duration = values.get("duration_s")
        if duration in (None, ""):
            duration = (10.0 if kind == "static"
                        else sum(d for _, d in stages) if stages else None)
        else:
            duration = _number(duration, "trial.duration_s", 1.0, 3600.0, "s")
        note = values.get("note") or ""
        if not isinstance(note, str) or len(note) > 500:
            raise RequestError("trial.note", "must be text of at most 500 characters")
        if self.runner is None:
            raise RequestError("runner", "register a runner first", 409)
        with self._lock:
            if self._trial is not None:
                raise RequestError("trial", f"trial {self._trial.meta['id']} is recording; "
                                            "stop it first", 409)
            if self.force is None:
                raise RequestError("devices", "the station is not started", 409)
            bad = self.unhealthy()
            if bad:
                raise RequestError("devices", "cannot start: " + "; ".join(bad), 409)
            moving = self._belt_moving()
            if kind == "static" and moving:
                raise RequestError("treadmill", f"the belt is moving ({moving:.2f} m/s): a "
                                                "static trial needs it stopped; wait for it "
                                                "to stop", 409)
            sim_speed = self._simulated_posture(kind, speed)
            runner = dict(self.runner)
            stem = self.store.next_trial_stem(runner["id"], kind)
            folder = self.store.runner_dir(runner["id"])
            path = folder / f"{stem}.h5"
            meta = {"id": f"{runner['id']}/{stem}", "runner": runner["id"], "kind": kind,
                    "speed_m_s": speed, "duration_s": duration, "note": note,
                    "status": "recording", "processing": "pending",
                    "started_utc": utc_now(), "archive": str(path),
                    "sidecar": str(folder / f"{stem}.json"),
                    "feedback": self.feedback.as_dict() if kind == "running" else None}
            if protocol:
                meta.update(protocol=protocol, stages=[list(st) for st in stages])
            if kind == "running":
                meta["static_source"] = (runner.get("static") or {}).get("source")
            self.store.save_trial(meta)      # before the archive: a crash leaves a trace
            finfo, minfo = self.force.info, self.markers.info
            plates = list(finfo.plates or finfo.labels)
            labels = cgm_labels(minfo.labels, self.cfg)
            origin = np.array([np.asarray(getattr(p, "origin", np.zeros(3)), float)
                               for p in self.cfg.plates])
            corners = np.array([np.asarray(getattr(p, "corners", np.zeros((4, 3))), float)
                                for p in self.cfg.plates])
            lab_cfg = getattr(self.cfg, "lab", None)
            belt = str(getattr(lab_cfg, "belt", "split") or "split")
            attrs = {"subject_id": runner["id"], "lab": str(getattr(lab_cfg, "name", "") or ""),
                     "belt": belt, "belt_speed_m_s": speed if kind == "running" else 0.0,
                     "belt_speed_source": ("technician (treadlab station)"
                                           if self.treadmill is None or kind != "running" else
                                           "commanded by treadlab station (typed by the "
                                           "technician)"),
                     "body_mass_kg": float(runner["body_mass_kg"]),
                     "body_mass_source": "given",
                     "config_path": self.config_path or "(default simulated lab)",
                     "trial_kind": kind, "trial_note": note, "trial_id": meta["id"]}
            try:
                attrs["config_hash"] = self.cfg.hash()
            except Exception:  # the hash is informative only
                pass
            if sim_speed is not None:
                attrs["simulated_runner_speed_m_s"] = sim_speed
            if protocol:
                attrs["speed_protocol"] = protocol
            subject = dict(self.lab.subject) if self.lab is not None else {}
            subject.update({"leg_length_left_mm": float(runner["leg_length_mm"]),
                            "leg_length_right_mm": float(runner["leg_length_mm"]),
                            "body_mass_kg": float(runner["body_mass_kg"])})
            if kind == "running":
                _carry_static(runner, attrs, subject)
            t0 = time.monotonic()
            try:
                rec = Recorder(path, attrs, plates=plates, origin=origin, corners=corners,
                               force_rate_hz=finfo.rate_hz, labels=labels,
                               marker_rate_hz=minfo.rate_hz,
                               n_channels=finfo.channels or None,
                               counts_dtype=(np.dtype(finfo.sample_type) if finfo.channels
                                             else None),
                               calibration=getattr(self.force, "calibration", None),
                               t0_host=t0, subject=subject,
                               belts=(self.treadmill.info.labels if self.treadmill is not None
                                      else None),
                               belt_rate_hz=(self.treadmill.info.rate_hz
                                             if self.treadmill is not None else 100.0),
                               analog=self._analog_layout(),
                               force_cop=bool(getattr(self.force, "sends_cop", False))).start()
            except BaseException as exc:
                meta.update(status="failed", processing="skipped", error=str(exc))
                self.store.save_trial(meta)
                raise
            live = None
            if kind == "running":
                live = LiveProcessor(plates, finfo.rate_hz, labels, minfo.rate_hz,
                                     params=contact_params(self.cfg, runner["body_mass_kg"]),
                                     belt=belt, window=self.feedback.window,
                                     subject=subject, on_step=None)
            trial = _Trial(meta, rec, live, SessionClock(t0), t0)
            if live is not None:
                live.on_step = lambda step, tr=trial: self._on_step(tr, step)
                live.start()
            rec.event(t0, "capture", "start",
                      f"treadlab station: {kind} trial of {runner['id']}"
                      + (f" at {speed:g} m/s" if kind == "running" else "")
                      + (f", note: {note}" if note else ""))
            cal = getattr(self.force, "calibration", None)
            if cal is not None and "zero" in cal:
                rec.event(t0, "force", "tare_zero",
                          "counts " + " ".join(f"{z:.1f}" for z in np.ravel(cal["zero"])))
            if self.treadmill is not None:
                self.treadmill.read(0)          # belt speeds before t0 are not this trial's
            for x in self.extra:
                x.read(0)
            self._trial = trial
            self.trials.append(meta)
            if self.treadmill is not None and kind == "running":
                try:
                    self._drive_belt(trial, speed, stages)
                except (DeviceError, ValueError) as exc:
                    failed = exc
                else:
                    failed = None
        if self.treadmill is not None and kind == "running" and failed is not None:
            self._finish(trial, "interrupted", f"treadmill: {failed}")
            raise RequestError("treadmill", str(failed), 409)
        self._log_event(t0, "station", "trial", f"started {meta['id']}")
        self._publish("state", self.state())
        return dict(meta)

    # --- the treadmill ------------------------------------------------------------------------

    def _max_speed(self) -> float:
        """m/s: the treadmill's ``max_speed_m_s`` (10 m/s, the typed limit, without one)."""
        if self.treadmill is None:
            return 10.0
        return float(self.treadmill.settings.max_speed_m_s)

    def _protocol_stages(self, kind: str, text) -> tuple[list, str | None]:
        """``trial.protocol`` (``"2.5:60,3.5:60"``, m/s:s, :func:`parse_protocol`) as stages
        and its text; ([], None) when not given. RequestError naming ``trial.protocol``."""
        if text in (None, ""):
            return [], None
        if not isinstance(text, str) or len(text) > 500:
            raise RequestError("trial.protocol", "must be text 'SPEED:SECONDS,…' (m/s:s) of "
                                                 "at most 500 characters")
        if kind != "running":
            raise RequestError("trial.protocol", "only a running trial has a speed protocol")
        if self.treadmill is None:
            raise RequestError("trial.protocol", "needs the lab's [treadmill] table: this lab "
                                                 "has no treadmill controller to drive")
        try:
            stages = parse_protocol(text)
        except ConfigError as exc:
            raise RequestError("trial.protocol", exc.message) from None
        limit = self._max_speed()
        for i, (v, _) in enumerate(stages):
            if v > limit:
                raise RequestError("trial.protocol", f"stage {i + 1}: {v:g} m/s exceeds the "
                                                     f"treadmill's max_speed_m_s = {limit:g} "
                                                     "m/s")
        total = sum(d for _, d in stages)
        if total > 3600:
            raise RequestError("trial.protocol", f"lasts {total:g} s, at most 3600 s")
        return stages, ",".join(f"{v:g}:{d:g}" for v, d in stages)

    def _belt_moving(self) -> float:
        """The faster belt's measured speed (m/s) when above :data:`BELT_MOVING_M_S`, else 0."""
        if self.treadmill is None:
            return 0.0
        v = np.abs(np.asarray(self.treadmill.last[:2], float))
        v = float(np.nanmax(v)) if np.isfinite(v).any() else 0.0
        return v if v > BELT_MOVING_M_S else 0.0

    def _drive_belt(self, trial: _Trial, speed: float, stages: list) -> None:
        """A running trial's belt: its speed protocol (each stage a ``protocol`` event), or
        both belts commanded to ``speed`` (m/s) at the controller's acceleration."""
        if stages:
            trial.stages = list(stages)
            trial.protocol_t0 = time.monotonic()
            trial.protocol = SpeedProtocol(self.treadmill, stages).start()
        else:
            self.treadmill.set_speed(speed)

    def _stop_belt(self, why: str) -> str | None:
        """Command both belts to 0 m/s at the controller's acceleration (the belt ramps down,
        the runner slows with it: never an abrupt stop). A ``/raw/log`` line, or None when the
        belt is already stopped and nothing was sent."""
        v = self._belt_moving()
        acc = float(self.treadmill.settings.accel_m_s2)
        try:
            self.treadmill.set_speed(0.0)
        except (DeviceError, ValueError) as exc:
            line = (f"{why}: the stop command was NOT sent ({exc}); stop the belt at the "
                    "treadmill's panel")
            log.error("%s", line)
            self._log_event(time.monotonic(), "belt", "error", line)
            return line
        line = (f"{why}: belts ramped to 0 m/s at {acc:g} m/s² from {v:.2f} m/s (about "
                f"{v / acc:.0f} s)")
        self._log_event(time.monotonic(), "belt", "stop", line)
        return line

    def _analog_layout(self) -> dict | None:
        """``/raw/analog``'s layout (channels, units, rate Hz, device) of the open analog
        stream, as capture records it; None without one."""
        x = next((x for x in self.extra if x.kind == "analog" and x.is_open), None)
        if x is None:
            return None
        return {"channels": list(x.info.labels), "units": list(x.units),
                "rate_hz": x.info.rate_hz,
                "device": getattr(x, "description", "") or str(x.port)}

    def _simulated_posture(self, kind: str, speed: float) -> float | None:
        """In the simulated lab only: the synthetic runner stands still for a static trial or
        runs at the technician's belt speed (m/s, clipped to what it can run at). Returns the
        simulated running speed (m/s; None for a real lab or a static trial)."""
        if self.lab is None or not self.simulated:
            return None
        ans = self.lab.posture(kind == "static", speed if kind == "running" else None)
        if "error" in ans:
            log.warning("simulated lab: %s", ans["error"])
            return None
        time.sleep(POSTURE_SETTLE_S)     # the switch reaches the frames about 0.25 s from now
        return float(ans["speed_m_s"]) if kind == "running" else None

    def stop_trial(self, reason: str = "stopped by the technician") -> dict:
        """Stop the recording trial (``complete``) and queue its processing.

        Raises
        ------
        RequestError (409) when no trial is recording.
        """
        trial = self._trial
        if trial is None:
            raise RequestError("trial", "no trial is recording", 409)
        return self._finish(trial, "complete", reason)

    def _finish(self, trial: _Trial, status: str, reason: str) -> dict:
        with self._lock:
            if self._trial is not trial:
                return dict(trial.meta)
            self._trial = None
        end = time.monotonic()
        rec, live = trial.rec, trial.live
        if trial.protocol is not None:
            trial.protocol.stop()
        belt_line = None
        if self.treadmill is not None and trial.meta["kind"] == "running":
            belt_line = self._stop_belt(f"end of trial ({reason})")
        end_attrs = None
        if trial.belt_speeds and trial.meta["kind"] == "running":
            v = np.concatenate(trial.belt_speeds).mean(axis=1)
            moving = v[v > BELT_MOVING_M_S]
            end_attrs = {"belt_speed_m_s": float(np.median(moving)) if moving.size else 0.0,
                         "belt_speed_source": "treadmill controller: median of /raw/belt "
                                              "while moving",
                         "belt_speed_commanded_m_s": float(trial.meta["speed_m_s"])}
        try:
            if belt_line:
                rec.event(end, "belt", "stop", belt_line)
            if live is not None:
                live.stop()
                st = live.status()
                rec.event(end, "live", "summary",
                          f"{st['n_steps']} steps, {st['live_drops']} blocks dropped by the live "
                          f"processor, {st['errors']} errors")
            for src in [self.force, self.markers] + self.extra + (
                    [self.treadmill] if self.treadmill is not None else []):
                rec.event(end, src.name, "counters",
                          ", ".join(f"{k} {v}" for k, v in sorted(src.counters.items()) if v))
            lat = self._latency_summary(trial)
            if lat:
                rec.event(end, "station", "feedback_latency",
                          f"receipt of the toe-off frame → runner page DOM: p50 "
                          f"{lat['dom_p50_ms']} ms, p99 {lat['dom_p99_ms']} ms over "
                          f"{lat['n_dom']} shown steps")
            rec.event(end, "capture", "stop", f"{reason} after {end - trial.t0:.1f} s")
            rec.close(status=status, attrs=end_attrs)
        except Exception as exc:
            log.exception("closing trial %s failed", trial.meta["id"])
            trial.meta.update(status="failed", processing="skipped", error=str(exc))
            self.store.save_trial(trial.meta)
            self._publish("state", self.state())
            return dict(trial.meta)
        lat = self._latency_summary(trial)
        if lat:
            try:
                _store_latency(trial.meta["archive"], trial.latency_ms, lat)
            except Exception as exc:  # the archive itself is fine; say what was not stored
                log.exception("storing the feedback latency failed")
                lat["error"] = f"not stored in the archive: {exc}"
        trial.meta.update(status=status, stopped_utc=utc_now(), stop_reason=reason,
                          recorded_s=round(end - trial.t0, 2), feedback_latency=lat or None,
                          processing="queued" if self.process else "skipped")
        self.store.save_trial(trial.meta)
        self._log_event(end, "station", "trial", f"{trial.meta['id']}: {status} ({reason})")
        if self.process and trial.meta["kind"] == "static":
            self._process(trial.meta)        # a calibration: quick, and the next trial needs it
        elif self.process:
            self._jobs.put(trial.meta)
        self._publish("state", self.state())
        return dict(trial.meta)

    # --- feedback ----------------------------------------------------------------------------

    def _on_step(self, trial: _Trial, step) -> None:
        """Live-processor thread, at each toe off: publish the step message at once."""
        trial.n_steps += 1
        n = trial.n_steps
        with trial.rx_lock:
            recent = list(trial.rx)
        rx = _receipt(recent, step.seq_off)
        steps = list(trial.live.steps)     # this is the live thread: nothing appends meanwhile
        fb = self.feedback
        show = shown(fb.fading, n, time.monotonic() - trial.t0, trial.meta.get("duration_s"))
        msg = step_message(steps, fb, n, show)
        msg["trial"] = trial.meta["id"]
        if rx is not None:
            trial.sent[n] = rx
        self._publish("step", msg)
        if rx is not None:
            trial.sent_ms[n] = (time.monotonic() - rx) * 1000.0

    def shown_on_page(self, n: int, wall_ms: float, trial_id: str | None = None) -> None:
        """The runner page changed its DOM for step ``n`` at ``wall_ms`` (ms since the Unix
        epoch, the browser's ``performance.timeOrigin + performance.now()``)."""
        trial = self._trial
        if trial is None or (trial_id and trial_id != trial.meta["id"]):
            return
        rx = trial.sent.pop(int(n), None)
        if rx is None:
            return
        mono = float(wall_ms) / 1000.0 - (time.time() - time.monotonic())
        dom_ms = (mono - rx) * 1000.0
        trial.latency_ms.append((int(n), float(trial.sent_ms.get(int(n), math.nan)), dom_ms))

    @staticmethod
    def _latency_summary(trial: _Trial) -> dict:
        sent = np.array(list(trial.sent_ms.values()), float)
        dom = np.array([d for _, _, d in trial.latency_ms], float)
        if not sent.size and not dom.size:
            return {}

        def pct(a, q):
            return round(float(np.percentile(a, q)), 2) if a.size else None
        return {"n_sent": int(sent.size), "sent_p50_ms": pct(sent, 50),
                "sent_p99_ms": pct(sent, 99), "n_dom": int(dom.size),
                "dom_p50_ms": pct(dom, 50), "dom_p99_ms": pct(dom, 99)}

    # --- processing --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            meta = self._jobs.get()
            if meta is None:
                return
            self._process(meta)

    def _cli(self, *args) -> str:
        """``treadlab ARGS`` in a child process at lower priority; its stdout.

        Raises
        ------
        TreadlabError with the command's last line on stderr when it fails or times out.
        """
        cmd = [sys.executable, "-m", "treadlab.pipeline.cli", *map(str, args)]
        self._child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, text=True)
        try:
            os.setpriority(os.PRIO_PROCESS, self._child.pid, PROCESS_NICE)
        except OSError:  # priority is a courtesy: process anyway
            pass
        try:
            out, err = self._child.communicate(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.communicate()
            raise TreadlabError(f"treadlab {args[0]}: no result within "
                                f"{PROCESS_TIMEOUT_S:.0f} s") from None
        finally:
            code, self._child = self._child.returncode, None
        if code != 0:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {code}"
            raise TreadlabError(why.removeprefix("treadlab: "))
        return out

    def _calibrate(self, meta: dict) -> None:
        """A static trial: the runner's standing values (``static_values``, the code of
        ``treadlab import --static``) into the archive (root attributes ``static_*``) and the
        runner's folder (``runner.json`` ``static``); a one-line reason when they cannot be
        measured."""
        path = Path(meta["archive"])
        try:
            values = static_values(archive.read_session(path))
            cal = {"source": meta["id"], "measured_utc": utc_now(),
                   **{k: round(float(values[k]), 3) for k in STATIC_KEYS},
                   "sway_mm": round(float(values["sway_mm"]), 2), "frames": values["frames"],
                   "definitions": values["definitions"]}
            with h5py.File(path, "r+", libver=archive.LIBVER) as f:
                for k in STATIC_KEYS:
                    f.attrs[f"static_{k}"] = cal[k]
                f.attrs["static_calibration"] = meta["id"]
                f.attrs["subject_value_sources"] = _sources(cal)
        except (TreadlabError, OSError, ValueError, KeyError) as exc:
            why = getattr(exc, "message", None) or str(exc)
            where = getattr(exc, "where", None)
            meta.update(processing="failed", calibration=None,
                        error=f"not calibrated: {where + ': ' if where else ''}{why}")
            return
        runner = self.store.load_runner(meta["runner"]) or {"id": meta["runner"]}
        runner["static"] = cal
        self.store.save_runner(runner)
        if self.runner is not None and self.runner.get("id") == meta["runner"]:
            self.runner = self.store.load_runner(meta["runner"])
        meta.update(processing="done", calibration={k: cal[k] for k in STATIC_KEYS},
                    processed_utc=utc_now())
        meta.pop("error", None)

    def _process(self, meta: dict) -> None:
        meta["processing"] = "running"
        self.store.save_trial(meta)
        self._publish("state", self.state())
        path = Path(meta["archive"])
        if meta.get("kind") == "static":
            self._calibrate(meta)
            self.store.save_trial(meta)
            self._log_event(time.monotonic(), "station", "calibration",
                            f"{meta['id']}: {meta.get('error') or 'calibrated'}")
            self._publish("state", self.state())
            return
        try:
            args = ["process", path] + (["--config", self.config_path]
                                        if self.config_path else [])
            summary = json.loads(self._cli(*args))
            meta.update(scores=summary.get("scores"), score_status=summary.get("status"),
                        contacts=summary.get("contacts"),
                        valid_contacts=summary.get("valid_contacts"),
                        scores_by_speed=summary.get("scores_by_speed"))
            report_dir = path.with_name(path.stem + "_report")
            self._cli("report", path, "-o", report_dir)
            rel = report_dir.relative_to(self.store.root).as_posix()
            meta.update(processing="done", report=f"/data/{rel}/index.html",
                        processed_utc=utc_now())
        except (TreadlabError, OSError, ValueError) as exc:
            log.error("processing %s failed: %s", path, exc)
            meta.update(processing="failed", error=str(exc))
        self.store.save_trial(meta)
        self._log_event(time.monotonic(), "station", "processing",
                        f"{meta['id']}: {meta['processing']}")
        self._publish("state", self.state())

    def _recover_interrupted(self) -> None:
        for meta in self.trials:
            if meta.get("status") != "recording":
                if meta.get("processing") in ("queued", "running") and self.process:
                    self._jobs.put(meta)            # the station stopped before processing
                continue
            path = Path(meta["archive"])
            if not path.exists():
                meta.update(status="failed", processing="skipped",
                            error="the station stopped before the archive was created")
            else:
                try:
                    line = recover(path)
                    meta.update(status="interrupted", recovered=line, recovered_utc=utc_now(),
                                processing="queued" if self.process else "skipped")
                    if self.process:
                        self._jobs.put(meta)
                except TreadlabError as exc:
                    meta.update(status="failed", processing="skipped", error=str(exc))
            self.store.save_trial(meta)
            log.warning("trial %s was interrupted by a station stop: %s", meta["id"],
                        meta.get("recovered") or meta.get("error"))

    # --- state -------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything the pages show: ``station`` (started, simulated, uptime s, data folder),
        ``health``, ``runner``, ``feedback``, ``trial`` (the recording one, with ``elapsed_s``),
        ``trials`` (all, newest last) and ``events`` (the last 20 device/station events)."""
        trial = self._trial
        cur = None
        if trial is not None:
            now = time.monotonic()
            cur = dict(trial.meta, elapsed_s=round(now - trial.t0, 1), steps=trial.n_steps,
                       stage=_stage(trial, now))
            if self.treadmill is not None:
                v = np.asarray(self.treadmill.last[:2], float)
                cur["belt_m_s"] = round(float(np.mean(v)), 2) if np.isfinite(v).all() else None
        return {"type": "state",
                "station": {"started_utc": self.started_utc, "simulated": self.simulated,
                            "uptime_s": round(time.monotonic() - self.t_start, 1),
                            "data": str(self.store.root),
                            "lab": str(getattr(getattr(self.cfg, "lab", None), "name", "") or "")},
                "health": self.health() if self._health else {},
                "runner": self.runner, "feedback": self.feedback.as_dict(), "trial": cur,
                "trials": [_public(t) for t in self.trials],
                "events": self._recent_events(20)}

    def _recent_events(self, n: int) -> list:
        with self._recent_lock:
            return [list(e) for e in list(self._events)[-n:]]


def _public(meta: dict) -> dict:
    keep = ("id", "runner", "kind", "speed_m_s", "duration_s", "note", "status", "processing",
            "started_utc", "stopped_utc", "recorded_s", "scores", "score_status", "report",
            "error", "recovered", "contacts", "valid_contacts", "feedback_latency",
            "stop_reason", "calibration", "static_source", "protocol", "stages",
            "scores_by_speed")
    return {k: meta.get(k) for k in keep if k in meta}


def _stage(trial: _Trial, now: float) -> dict | None:
    """The speed-protocol stage at ``now`` (monotonic s): ``n``, ``of``, ``speed_m_s``,
    ``left_s`` (s to its end), ``next_m_s`` (None after the last); None without a protocol or
    once it is over (the belt then keeps the last stage's speed until the trial ends)."""
    if not trial.stages:
        return None
    t = now - trial.protocol_t0
    end = 0.0
    for i, (v, d) in enumerate(trial.stages):
        end += d
        if t < end:
            nxt = trial.stages[i + 1][0] if i + 1 < len(trial.stages) else None
            return {"n": i + 1, "of": len(trial.stages), "speed_m_s": v,
                    "left_s": round(end - t, 1), "next_m_s": nxt}
    return None


def _treadmill(cfg, lab) -> tuple[TreadmillBertec, SimulatedTreadmill | None]:
    """The ``[treadmill]`` controller as a source (not opened: the pump opens it and retries),
    and the simulated controller serving it when its host is ``"auto"``.

    The station's simulated belt starts stopped (a lab at rest); with the simulated lab's
    synthetic runner it passes every command to ``lab.follow_belt``, ramps starting
    ``lab.follow_lead_s`` after the command, so runner and belt ramp together (as capture)."""
    settings = TreadmillSettings.from_config(cfg)
    sim = None
    if settings.host == "auto":
        follow = getattr(lab, "follow_belt", None)
        if follow is not None and not getattr(lab, "replay", None):
            sim = SimulatedTreadmill(rate_hz=settings.rate_hz, initial_m_s=0.0,
                                     command_delay_s=float(lab.follow_lead_s),
                                     on_command=follow)
        else:
            sim = SimulatedTreadmill(rate_hz=settings.rate_hz)
        settings.host, settings.port = sim.address
    return TreadmillBertec(settings), sim


def _sources(cal: dict) -> list:
    """``subject_value_sources`` lines (``"key = value unit: source"``) for static values."""
    defs = cal.get("definitions", {})
    return [f"{k} = {cal[k]:.2f} {'deg' if k.endswith('_deg') else 'mm'}: static trial "
            f"{cal['source']} ({defs.get(k, 'static trial')})" for k in STATIC_KEYS]


def _carry_static(runner: dict, attrs: dict, subject: dict) -> None:
    """A running trial's root attributes and ``/subject`` from the runner's static trial, as
    ``treadlab import --static`` writes them (pelvic obliquity zero deg, standing tilt deg,
    leg lengths and inter-ASIS distance mm, each with its source); without one, the leg length
    typed at registration, its source saying so."""
    cal = runner.get("static")
    if not cal:
        leg = float(runner["leg_length_mm"])
        attrs["subject_value_sources"] = [
            f"leg_length_{s}_mm = {leg:.1f} mm: typed at registration (no static trial)"
            for s in ("left", "right")]
        return
    for k in STATIC_KEYS:
        if k.endswith("_deg"):
            attrs[f"static_{k}"] = float(cal[k])
        else:
            subject[k] = float(cal[k])
    attrs["static_calibration"] = str(cal["source"])
    attrs["subject_value_sources"] = _sources(cal)


def _number(value, field: str, lo: float, hi: float, unit: str) -> float:
    if isinstance(value, bool):
        raise RequestError(field, f"must be a number of {unit}, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RequestError(field, f"must be a number of {unit}, got {value!r}") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise RequestError(field, f"must be {lo:g}-{hi:g} {unit}, got {value!r}")
    return v


def _receipt(rx: list, seq: int) -> float | None:
    """Host receipt time (s) of force frame ``seq`` from the recent blocks, newest first."""
    if seq < 0:
        return None
    for seqs, hosts in reversed(rx):
        if len(seqs) and seqs[0] <= seq <= seqs[-1]:
            k = int(np.searchsorted(seqs, seq))
            if k < len(seqs) and seqs[k] == seq:
                return float(hosts[k])
            return None
    return None


def _store_latency(path, rows, summary: dict) -> None:
    """``/station/feedback``: one row per step shown on the runner page: step number, receipt →
    published (ms), receipt → DOM changed (ms); the percentiles as attributes."""
    with h5py.File(path, "r+", libver=archive.LIBVER) as f:
        g = f.require_group("station")
        if "feedback" in g:
            del g["feedback"]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        ds = g.create_dataset("feedback", data=arr)
        ds.attrs["columns"] = "step, receipt_to_sent_ms, receipt_to_dom_ms"
        ds.attrs["units"] = "step number, ms, ms"
        ds.attrs["definition"] = ("latency from the station's receipt of the toe-off force frame "
                                  "to the runner page's DOM change (browser clock, same host)")
        for k, v in summary.items():
            if v is not None:
                g.attrs[f"feedback_{k}"] = v
