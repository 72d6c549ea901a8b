"""Play a real recording back through the lab's own wire formats (DESIGN §3, "C3D replay").

:class:`ReplaySignal` turns an imported session (``read_c3d(path) -> Session``) into the same
time functions the synthetic runner offers, on the *configured* lab:

- ``force(t) -> (n, p, 6)``: the recorded wrench, linearly resampled to the requested times,
  assigned to the configured plates (by name, else by index, else everything onto plate 0 for a
  single-plate recording replayed into a split-belt lab) with the moments re-referenced to the
  configured plate origins. The virtual treadmill turns it into ADC counts with the lab's
  calibration, so the reader sees exactly what the real amplifier would send;
- ``markers(t) -> (m, k, 3)``: the recorded trajectories of the configured labels (matched
  directly or through the CGM aliases), linearly resampled; a label the recording lacks is NaN.

Replay time starts at 0 at the first stored frame; with ``loop=True`` it starts over at the
end (a capture can be longer than the recording), otherwise the belt is empty and markers NaN
after the end. :func:`start_replay_lab` serves a C3D file through the virtual devices.
"""
from __future__ import annotations

import logging

import numpy as np

from treadlab.acquisition.simulated import label_map, plate_transfer, transfer_wrench
from treadlab.config.errors import InputError

log = logging.getLogger(__name__)


def _interp_columns(t_src: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation of every column of ``values`` ((n, ...) on ``t_src``) at ``t``.

    NaN samples stay NaN in every output sample they touch.
    """
    n = t_src.shape[0]
    flat = values.reshape(n, -1).astype(np.float64)
    x = np.interp(t, t_src, np.arange(n, dtype=np.float64))
    i0 = np.clip(np.floor(x).astype(np.intp), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (x - i0)[:, None]
    out = flat[i0] * (1.0 - w) + flat[i1] * w
    exact = w[:, 0] == 0.0
    out[exact] = flat[i0[exact]]          # on the grid: no NaN leaking from the neighbour
    return out.reshape((t.shape[0],) + values.shape[1:])


class ReplaySignal:
    """A recorded session as time functions on the configured plates and labels.

    Parameters
    ----------
    session : ``treadlab.acquisition.archive.Session`` (e.g. from ``read_c3d``).
    plates : configured plates (``name``, ``origin`` mm) — ``PlateCalibration`` or tables.
    labels : configured marker labels in wire order.
    marker_names : the lab's ``[marker_names]`` table (extra aliases).
    loop : start over at the end of the recording.
    source : named in errors (the C3D path).
    """

    def __init__(self, session, plates, labels, marker_names=None, loop: bool = True,
                 source: str = "session"):
        f, m = session.force, session.markers
        self.source = str(source)
        if f is None or f.wrench is None or len(f.time) < 2:
            raise InputError(self.source, "/raw/force", "no force data to replay")
        if m is None or m.positions is None or len(m.time) < 2:
            raise InputError(self.source, "/raw/markers", "no marker data to replay")
        self.loop = bool(loop)
        self.subject = dict(getattr(session, "subject", {}) or {})
        self._f_t = np.asarray(f.time, np.float64) - float(f.time[0])
        self._m_t = np.asarray(m.time, np.float64) - float(m.time[0])
        self.duration_s = float(max(self._f_t[-1], self._m_t[-1]))
        self.n_plates = len(plates)
        dst_names = [p.name if hasattr(p, "name") else p["name"] for p in plates]
        dst_origin = np.array([np.asarray(getattr(p, "origin", None) if hasattr(p, "origin")
                                          else p.get("origin", (0, 0, 0)), float)
                               for p in plates])
        src_names = list(f.plates)
        src_origin = np.asarray(f.origin, np.float64).reshape(len(src_names), 3)
        pairs = plate_transfer(src_names, src_origin, dst_names, dst_origin)
        if len(src_names) != len(dst_names) and not all(n in src_names for n in dst_names):
            log.warning("%s: %d recorded plate(s) %s replayed onto configured plate %r",
                        self.source, len(src_names), src_names, dst_names[0])
        # the wrench on the configured plates, at the recorded samples
        wrench = np.nan_to_num(np.asarray(f.wrench, np.float64))
        self._wrench = transfer_wrench(wrench, pairs, src_origin, dst_origin, self.n_plates)
        self._index = label_map(list(labels), list(m.labels), marker_names)
        missing = [lab for lab, i in zip(labels, self._index) if i < 0]
        if missing:
            log.warning("%s: no recorded trajectory for %s; replayed as NaN", self.source,
                        ", ".join(missing))
        self.missing_labels = missing
        pos = np.asarray(m.positions, np.float32)
        k = len(labels)
        self._pos = np.full((pos.shape[0], k, 3), np.nan, np.float32)
        ok = self._index >= 0
        self._pos[:, ok] = pos[:, self._index[ok]]

    @classmethod
    def from_c3d(cls, path, plates, labels, marker_names=None, loop: bool = True):
        """Read ``path`` with ``read_c3d`` (InputError naming the file when it cannot)."""
        from treadlab.acquisition.c3d_import import read_c3d

        session = read_c3d(path, marker_names=marker_names or None)
        return cls(session, plates, labels, marker_names=marker_names, loop=loop,
                   source=str(path))

    def _time(self, t, t_src) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t, np.float64)
        if self.loop:
            period = self.duration_s
            return np.mod(t, period), np.ones(t.shape, bool)
        return t, (t >= 0) & (t <= t_src[-1])

    def force(self, t) -> np.ndarray:
        """(n, p, 6) float64 ``[Fx, Fy, Fz, Mx, My, Mz]`` N, N·m, about the configured plate
        origins, at replay times ``t`` ((n,) s); zero outside the recording."""
        tt, inside = self._time(t, self._f_t)
        out = np.zeros((tt.shape[0], self.n_plates, 6))
        if inside.any():
            out[inside] = _interp_columns(self._f_t, self._wrench, tt[inside])
        return out

    def markers(self, t) -> np.ndarray:
        """(m, k, 3) float32 mm in the configured label order at replay times ``t``."""
        tt, inside = self._time(t, self._m_t)
        out = np.full((tt.shape[0],) + self._pos.shape[1:], np.nan, np.float32)
        if inside.any():
            out[inside] = _interp_columns(self._m_t, self._pos, tt[inside])
        return out


def start_replay_lab(cfg, path, **kw):
    """Serve the C3D file ``path`` through the virtual devices of ``cfg`` (see ``start_lab``)."""
    from treadlab.acquisition.simulated import start_lab

    return start_lab(cfg, replay=path, **kw)
