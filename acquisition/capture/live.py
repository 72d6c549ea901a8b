"""The live processor: per-step feedback while capturing (docs/metrics.md §5).

Force and marker blocks (already on the session clock, force already tared) are handed over with
:meth:`LiveProcessor.put_force` / :meth:`LiveProcessor.put_markers`, which only append to a
bounded queue and return at once: the processor never blocks a device read. Its own daemon
thread runs the streaming contact kernel (:func:`treadlab.kernels.contacts.detect_contacts`) on
each plate's vertical force; at each toe off it computes the step's values and a moving median
over the last ``window`` steps (5–10, docs/metrics.md §5):

* contact time (s) and cadence (steps/min, from successive strikes on either side);
* the four cause values from the markers at hand, through the joint-angle kernel
  (:func:`treadlab.kernels.angles.joint_angles`) on the last stride of markers:
  ``pelvic_drop`` (deg, contralateral pelvic drop: the largest drop of the swing side during
  stance relative to the stride-mean obliquity), ``trunk_lean`` (deg, + forward, stance mean),
  ``heel_lead`` (mm, heel ahead of the pelvis centre at strike: over-stride) and
  ``hip_extension`` (deg, peak hip extension from midstance to toe off).

Sides: on a split belt each plate is one foot (plate names starting with ``l``/``r``); on a
single belt the side comes from the medio-lateral centre of pressure against its running median
(Y = left), good enough for live display; the pipeline assigns sides properly afterwards.

If the queue overflows (the processor fell behind), the oldest blocks are dropped and counted in
``drops``; the recorder is unaffected (it has its own queue).
"""
from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from treadlab.kernels.angles import joint_angles
from treadlab.kernels.contacts import ContactParams, detect_contacts

log = logging.getLogger(__name__)

__all__ = ["LiveProcessor", "LiveStep", "format_status"]

#: Values kept per step and summarised as moving medians.
STEP_VALUES = ("contact_time", "cadence", "pelvic_drop", "trunk_lean", "heel_lead",
               "hip_extension")


@dataclass
class LiveStep:
    """One step as seen live (session clock, s).

    side : 0 left, 1 right, -1 unknown. plate : index of the plate.
    t_strike, t_off : s. contact_time : s. cadence : steps/min (NaN for the first step).
    pelvic_drop, trunk_lean, hip_extension : deg. heel_lead : mm.
    i_off : global index of the toe-off sample on its plate's stream.
    seq_off : device frame number of that sample (-1 when unknown).
    detected_host : ``time.monotonic()`` when the step was detected.
    valid : the contact kernel raised no flag.
    """

    side: int
    plate: int
    t_strike: float
    t_off: float
    contact_time: float
    cadence: float
    pelvic_drop: float
    trunk_lean: float
    heel_lead: float
    hip_extension: float
    i_off: int
    seq_off: int
    detected_host: float
    valid: bool


class _Ring:
    """The last ``capacity`` rows of a stream, with the global index of the first kept row."""

    def __init__(self, capacity: int, row_shape: tuple, dtype):
        self.capacity = int(capacity)
        self.buf = np.empty((2 * self.capacity,) + tuple(row_shape), dtype=dtype)
        self.start = 0      # global index of buf[0]
        self.n = 0          # rows in buf

    def append(self, rows: np.ndarray) -> None:
        if len(rows) > self.capacity:       # more than fits: keep the newest, count the rest
            self.start += self.n + len(rows) - self.capacity
            self.n = 0
            rows = rows[-self.capacity:]
        k = len(rows)
        if self.n + k > self.buf.shape[0]:
            keep = self.capacity - k
            drop = self.n - keep
            self.buf[:keep] = self.buf[drop:self.n]
            self.start += drop
            self.n = keep
        self.buf[self.n:self.n + k] = rows
        self.n += k

    @property
    def end(self) -> int:
        return self.start + self.n

    def view(self) -> np.ndarray:
        return self.buf[:self.n]


class LiveProcessor:
    """Contacts, per-step values and moving medians, computed in a daemon thread.

    Parameters
    ----------
    plates : list of str
        p plate names (``left``/``right`` on a split belt).
    rate_hz : float, Hz
        Force sample rate.
    labels : list of str
        k marker labels (CGM names; lab names mapped by the caller).
    marker_rate_hz : float, Hz
    params : ContactParams
        Contact thresholds (``ContactParams.from_bw`` once the body weight is known).
    belt : "split" or "single"
    window : int
        Steps in the moving median (5–10).
    subject : dict, optional
        Anthropometrics for the joint-angle kernel.
    max_pending : int
        Queue bound in blocks; beyond it the oldest are dropped and counted.
    on_step : callable(LiveStep), optional
        Called in the processor thread for each step (benchmarks, displays).
    """

    def __init__(self, plates, rate_hz: float, labels, marker_rate_hz: float,
                 params: ContactParams | None = None, belt: str = "split", window: int = 7,
                 subject: dict | None = None, max_pending: int = 2000, on_step=None):
        if not 1 <= int(window) <= 50:
            raise ValueError(f"window must be 1..50 steps, got {window}")
        self.plates = list(plates)
        self.rate_hz = float(rate_hz)
        self.labels = list(labels)
        self.marker_rate_hz = float(marker_rate_hz)
        self.params = params or ContactParams()
        self.belt = belt
        self.window = int(window)
        self.subject = dict(subject or {})
        self.on_step = on_step
        p, k = len(self.plates), len(self.labels)
        self._side_of_plate = [_plate_side(name) if belt == "split" else -1
                               for name in self.plates]
        keep_f = int(self.rate_hz * 6)
        keep_m = int(self.marker_rate_hz * 6) + 1
        self._ft = _Ring(keep_f, (), np.float64)          # force session time
        self._fw = _Ring(keep_f, (p, 6), np.float32)      # tared wrench
        self._fseq = _Ring(keep_f, (), np.int64)
        self._mt = _Ring(keep_m, (), np.float64)
        self._mp = _Ring(keep_m, (k, 3), np.float32)
        self._states = [None] * p
        self._t0 = None
        self._pending: deque = deque()
        self._max_pending = int(max_pending)
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()     # guards the published status
        self.steps: deque[LiveStep] = deque(maxlen=max(self.window, 50))
        self._strikes: deque[float] = deque(maxlen=self.window + 1)
        self._cop_y: deque[float] = deque(maxlen=21)
        self.drops = 0
        self.n_steps = 0
        self.errors = 0
        self.last_error: str | None = None
        self._angles = None

    # --- producer side (any thread) -------------------------------------------------------

    def put_force(self, time_s: np.ndarray, wrench: np.ndarray, seq: np.ndarray | None = None
                  ) -> None:
        """Queue a force block; returns at once.

        Parameters
        ----------
        time_s : (n,) float64, s, session clock.
        wrench : (n, p, 6) float32, N and N·m, tared.
        seq : (n,) int64 device frame numbers, optional.
        """
        self._enqueue(("force", time_s, wrench, seq))

    def put_markers(self, time_s: np.ndarray, positions: np.ndarray) -> None:
        """Queue a marker block: time (m,) float64 s; positions (m, k, 3) float32 mm."""
        self._enqueue(("markers", time_s, positions, None), wake=False)

    def _enqueue(self, item, wake: bool = True) -> None:
        # markers only matter at a toe off, which force finds: they wait for the next force
        # block (or the thread's 0.5 s poll) instead of waking the thread 200 times a second
        with self._cond:
            self._pending.append(item)
            while len(self._pending) > self._max_pending:
                self._pending.popleft()
                self.drops += 1
            if wake:
                self._cond.notify()

    # --- the thread ------------------------------------------------------------------------

    def start(self) -> "LiveProcessor":
        """Start the processor thread (daemon)."""
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="treadlab-live", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Process what is queued, then stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait(0.5)
                if self._stop and not self._pending:
                    return
            self.process_pending()

    def process_pending(self) -> int:
        """Process every queued block in the calling thread; return the number of new steps."""
        with self._cond:
            items = list(self._pending)
            self._pending.clear()
        if not items:
            return 0
        # one batch per stream (fewer kernel calls when the thread fell behind); markers first,
        # so a toe off found in this batch sees the markers that came with it
        marks = [it for it in items if it[0] == "markers"]
        if len(marks) == 1:
            self._add_markers(marks[0][1], marks[0][2])
        elif marks:
            self._add_markers(np.concatenate([it[1] for it in marks]),
                              np.concatenate([it[2] for it in marks]))
        forces = [it for it in items if it[0] == "force"]
        if not forces:
            return 0
        try:
            if len(forces) == 1:
                return self._add_force(forces[0][1], forces[0][2], forces[0][3])
            seqs = None
            if all(it[3] is not None for it in forces):
                seqs = np.concatenate([it[3] for it in forces])
            return self._add_force(np.concatenate([it[1] for it in forces]),
                                   np.concatenate([it[2] for it in forces]), seqs)
        except Exception as exc:  # never let a bad block kill live feedback
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("live: processing a force block failed")
            return 0

    # --- processing ------------------------------------------------------------------------

    def _add_markers(self, t, positions) -> None:
        t = np.asarray(t, np.float64)
        pos = np.asarray(positions, np.float32)
        self._mt.append(t)
        self._mp.append(pos)

    def _add_force(self, t, wrench, seq) -> int:
        t = np.asarray(t, np.float64)
        w = np.asarray(wrench, np.float32)
        n = len(t)
        if n == 0:
            return 0
        step = max(1, int(self.rate_hz))       # the rings hold 6 s: feed at most 1 s at a time
        if n > step:
            return sum(self._add_force(t[i:i + step], w[i:i + step],
                                       None if seq is None else seq[i:i + step])
                       for i in range(0, n, step))
        if self._t0 is None:
            self._t0 = float(t[0])
        self._ft.append(t)
        self._fw.append(w)
        self._fseq.append(np.full(n, -1, np.int64) if seq is None else np.asarray(seq, np.int64))
        found = []
        for p in range(len(self.plates)):
            fz = np.ascontiguousarray(w[:, p, 2], dtype=np.float64)
            contacts, self._states[p] = detect_contacts(fz, self.rate_hz, self.params,
                                                        t0=0.0, state=self._states[p])
            for j in range(len(contacts)):
                found.append((p, contacts, j))
        found.sort(key=lambda item: item[1].t_strike[item[2]])
        for p, contacts, j in found:
            self._step(p, contacts, j)
        return len(found)

    def _index_time(self, frac_index: float) -> float:
        """Session time at a fractional global force-sample index (from the ring)."""
        tt = self._ft.view()
        i = frac_index - self._ft.start
        if len(tt) == 0:
            return math.nan
        if i < 0 or i > len(tt) - 1:
            # outside the ring: extrapolate at the nominal rate
            ref = 0 if i < 0 else len(tt) - 1
            return float(tt[ref] + (i - ref) / self.rate_hz)
        return float(np.interp(i, np.arange(len(tt)), tt))

    def _step(self, p: int, contacts, j: int) -> None:
        # kernel times are t0 + i / rate with t0 = 0, i.e. fractional global sample indices
        t_strike = self._index_time(contacts.t_strike[j] * self.rate_hz)
        t_off = self._index_time(contacts.t_off[j] * self.rate_hz)
        i_off = int(contacts.i_off[j])
        k = i_off - self._fseq.start
        seqs = self._fseq.view()
        seq_off = int(seqs[k]) if 0 <= k < len(seqs) else -1
        side = self._side_of_plate[p]
        if side < 0:
            side = self._side_from_cop(p, int(contacts.i_strike[j]), i_off)
        cadence = math.nan
        if self._strikes:
            dt = t_strike - self._strikes[-1]
            if dt > 0.15:  # two strikes closer than 150 ms are not two steps
                cadence = 60.0 / dt
        self._strikes.append(t_strike)
        values = self._cause_values(side, t_strike, t_off)
        step = LiveStep(side=side, plate=p, t_strike=t_strike, t_off=t_off,
                        contact_time=t_off - t_strike, cadence=cadence, i_off=i_off,
                        seq_off=seq_off, detected_host=time.monotonic(),
                        valid=bool(contacts.flags[j] == 0), **values)
        with self._lock:
            self.steps.append(step)
            self.n_steps += 1
        if self.on_step is not None:
            self.on_step(step)

    def _side_from_cop(self, p: int, i0: int, i1: int) -> int:
        w = self._fw.view()
        a, b = max(0, i0 - self._fw.start), max(0, i1 - self._fw.start)
        seg = w[a:b, p]
        fz = seg[:, 2].astype(np.float64)
        if len(seg) == 0 or fz.sum() <= 0:
            return -1
        y = 1000.0 * float(seg[:, 3].astype(np.float64).sum() / fz.sum())  # mm: Mx / Fz
        med = float(np.median(self._cop_y)) if self._cop_y else y
        self._cop_y.append(y)
        if not self._cop_y or len(self._cop_y) < 2:
            return -1
        return 0 if y > med else 1

    def _cause_values(self, side: int, t_strike: float, t_off: float) -> dict:
        nan = {name: math.nan for name in ("pelvic_drop", "trunk_lean", "heel_lead",
                                           "hip_extension")}
        mt = self._mt.view()
        if len(mt) < 3 or not self.labels:
            return nan
        stride = 0.7
        if len(self._strikes) >= 3:
            stride = float(np.clip(self._strikes[-1] - self._strikes[-3], 0.4, 1.5))
        lo = min(t_strike, t_off - stride)
        sel = (mt >= lo - 0.5 / self.marker_rate_hz) & (mt <= t_off + 0.5 / self.marker_rate_hz)
        if sel.sum() < 3:
            return nan
        ang = self._joint_angles(self._mp.view()[sel])
        if ang is None:
            return nan
        tt = mt[sel]
        stance = (tt >= t_strike) & (tt <= t_off)
        if not stance.any():
            return nan
        out = dict(nan)
        with np.errstate(invalid="ignore"), _quiet():
            obl = ang["pelvis_obliquity"]
            base = np.nanmean(obl)
            if side == 0:      # left stance: right side drops, obliquity (left up +) rises
                out["pelvic_drop"] = float(np.nanmax(obl[stance]) - base)
            elif side == 1:
                out["pelvic_drop"] = float(base - np.nanmin(obl[stance]))
            out["trunk_lean"] = float(np.nanmean(ang["trunk_lean"][stance]))
            if side in (0, 1):
                name = "left" if side == 0 else "right"
                heel = ang[f"heel_lead_{name}"]
                ok = np.isfinite(heel)
                if ok.sum() >= 2:
                    out["heel_lead"] = float(np.interp(t_strike, tt[ok], heel[ok]))
                mid = 0.5 * (t_strike + t_off)
                late = (tt >= mid) & (tt <= t_off)
                if late.any():
                    # 3-D hip angle; the 2-D thigh angle when no hip centre (as step_metrics)
                    for col in (f"hip_flexion_{name}", f"thigh_angle_{name}"):
                        v = float(np.nanmax(-ang[col][late])) if col in ang.names else math.nan
                        if np.isfinite(v):
                            out["hip_extension"] = v
                            break
        return {k: (v if np.isfinite(v) else math.nan) for k, v in out.items()}

    def _joint_angles(self, positions):
        if self._angles is None:
            self._angles = joint_angles
        try:
            return self._angles(positions, self.labels, self.subject or None)
        except ValueError as exc:
            self.last_error = str(exc)
            return None

    # --- what a display reads ---------------------------------------------------------------

    def status(self) -> dict:
        """Moving medians over the last ``window`` steps.

        Returns
        -------
        dict with ``n_steps``, ``cadence_spm`` (steps/min), ``contact_time_s`` (s),
        ``pelvic_drop_deg``, ``trunk_lean_deg``, ``heel_lead_mm``, ``hip_extension_deg``,
        ``live_drops`` (blocks the processor dropped) and ``errors``; NaN before enough steps.
        """
        with self._lock:
            recent = list(self.steps)[-self.window:]
            n = self.n_steps
        out = {"n_steps": n, "live_drops": self.drops, "errors": self.errors}
        units = {"cadence": "cadence_spm", "contact_time": "contact_time_s",
                 "pelvic_drop": "pelvic_drop_deg", "trunk_lean": "trunk_lean_deg",
                 "heel_lead": "heel_lead_mm", "hip_extension": "hip_extension_deg"}
        for name, key in units.items():
            vals = np.array([getattr(s, name) for s in recent if s.valid], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            out[key] = float(np.median(vals)) if vals.size else math.nan
        return out

    def step_dicts(self) -> list[dict]:
        """The kept steps as dicts (for tests and logs)."""
        with self._lock:
            return [asdict(s) for s in self.steps]


def _plate_side(name: str) -> int:
    low = str(name).lower()
    if low.startswith("l"):
        return 0
    if low.startswith("r"):
        return 1
    return -1


class _quiet:
    """Silence NumPy's all-NaN warnings inside a block."""

    def __enter__(self):
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def format_status(elapsed_s: float, status: dict, drops: int = 0) -> str:
    """One terminal status line.

    Parameters
    ----------
    elapsed_s : float, s, since recording started.
    status : dict from :meth:`LiveProcessor.status`.
    drops : int, frames dropped by the devices (sequence gaps, overflows) so far.
    """
    def f(key, fmt):
        v = status.get(key, math.nan)
        return format(v, fmt) if v is not None and np.isfinite(v) else "--"

    m, s = divmod(int(elapsed_s), 60)
    return (f"{m:02d}:{s:02d}  steps {status.get('n_steps', 0):4d}  "
            f"cadence {f('cadence_spm', '5.1f')} spm  contact {f('contact_time_s', '.3f')} s  "
            f"pelvic drop {f('pelvic_drop_deg', '4.1f')}°  trunk {f('trunk_lean_deg', '4.1f')}°  "
            f"heel lead {f('heel_lead_mm', '4.0f')} mm  hip ext {f('hip_extension_deg', '4.1f')}°  "
            f"drops {drops + int(status.get('live_drops', 0))}")
