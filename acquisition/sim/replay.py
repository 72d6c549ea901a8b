"""Play a real recording back through the lab's own wire formats (docs/design.md §6, virtual lab).

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
after the end. :func:`start_replay_lab` serves a C3D file through the virtual devices;
:func:`replay_lab_config` derives the lab of the recording (one plate under the whole belt, the
file's rates and marker labels) for ``treadlab capture --replay FILE.c3d`` with the default
config.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from treadlab.acquisition.io.c3d_import import read_c3d
from treadlab.config.errors import InputError
from treadlab.config.loader import shipped_lab_path
from treadlab.config.markers import to_cgm
from treadlab.config.schema import LabTable, PlateConfig

log = logging.getLogger(__name__)


def label_map(wanted: list[str], have: list[str], extra: dict | None = None) -> np.ndarray:
    """Index into ``have`` of every ``wanted`` label (−1 = absent), via CGM aliases if needed."""
    pos = {h: i for i, h in enumerate(have)}
    cgm_w = list(to_cgm(list(wanted), extra or None))
    cgm_h = list(to_cgm(list(have), extra or None))
    pos_cgm = {h: i for i, h in enumerate(cgm_h)}
    return np.array([pos.get(w, pos_cgm.get(c, -1)) for w, c in zip(wanted, cgm_w)],
                    dtype=np.intp)


def plate_transfer(src_names, src_origin, dst_names, dst_origin):
    """How source plates feed configured plates: ``(dst, src)`` index pairs.

    By name; else by index when the counts match; else everything onto configured plate 0
    (a single-plate recording replayed into a split-belt lab). Moments are re-referenced to
    the configured plate origins by :func:`transfer_wrench`.
    """
    pairs = []
    by_name = {n: i for i, n in enumerate(src_names)}
    if all(n in by_name for n in dst_names):
        pairs = [(j, by_name[n]) for j, n in enumerate(dst_names)]
    elif len(src_names) == len(dst_names):
        pairs = [(j, j) for j in range(len(dst_names))]
    else:
        pairs = [(0, i) for i in range(len(src_names))]
    return pairs


def transfer_wrench(wrench, pairs, src_origin, dst_origin, n_dst) -> np.ndarray:
    """Wrench of the configured plates from the source plates.

    Parameters
    ----------
    wrench : (n, ps, 6) float, N and N·m about ``src_origin``.
    pairs : ``(dst, src)`` from :func:`plate_transfer`.
    src_origin : (ps, 3) mm. dst_origin : (pd, 3) mm. n_dst : pd.

    Returns
    -------
    (n, pd, 6) float64, moments about ``dst_origin`` (``M_B = M_A + (A − B) × F``, in m).
    """
    wrench = np.asarray(wrench, dtype=np.float64)
    out = np.zeros((wrench.shape[0], n_dst, 6))
    for j, i in pairs:
        f = wrench[:, i, :3]
        d = (np.asarray(src_origin[i], float) - np.asarray(dst_origin[j], float)) * 1e-3
        out[:, j, :3] += f
        out[:, j, 3:] += wrench[:, i, 3:] + np.cross(d, f)
    return out


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
    loop : start over at the end of the recording (else: played once, then an empty belt).
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
        speed = (getattr(session, "attrs", None) or {}).get("belt_speed_m_s")
        #: belt speed of the recording (m/s, as imported), None when unknown
        self.belt_speed_m_s = (float(speed) if speed is not None and np.isfinite(float(speed))
                               else None)
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


#: Calibration of the virtual amplifier behind a lab derived from a C3D file: volts of the six
#: channels → ``[Fx, Fy, Fz, Mx, My, Mz]`` (N/V shear, N/V vertical, N·m/V). With a 24-bit
#: ±10 V converter (int32 counts, 10 V / 2**23 per count) that is ±5 kN shear, ±10 kN vertical,
#: ±2.5 kN·m full scale and a resolution of 0.6 mN / 1.2 mN / 0.3 mN·m per count.
REPLAY_CALIBRATION = np.diag([500.0, 500.0, 1000.0, 250.0, 250.0, 250.0])
REPLAY_VOLTS_PER_COUNT = 10.0 / 2 ** 23


def is_default_lab(cfg) -> bool:
    """True when ``cfg`` was read from the shipped simulated lab (``load_lab(None)``)."""
    src = getattr(cfg, "source_path", None)
    if src is None:
        return False
    try:
        return Path(src).resolve() == shipped_lab_path("simulated").resolve()
    except OSError:
        return False


def replay_lab_config(cfg, path):
    """The lab a C3D recording was made in, for replaying it through the capture path.

    When ``cfg`` is the shipped simulated lab (the default of ``treadlab capture``), its
    two-plate split belt and 20 synthetic-runner markers do not match a real recording, so
    the lab is derived from the file: one plate under the whole belt (the file's plate name,
    moment origin and corners, mm), a single belt (sides from the centre of pressure), the
    file's force and marker rates (Hz, so every recorded sample is sent once, unresampled),
    the belt speed the importer measured (m/s) and, in wire order, the marker labels
    ``read_c3d`` gives (CGM names where the file's map to one, plus its virtual SACR / LTOE /
    RTOE), so the captured archive has the marker set ``treadlab import`` gives. The virtual
    amplifier is a 24-bit ±10 V converter sending int32 counts through
    :data:`REPLAY_CALIBRATION`. ``[contacts]``, ``[filters]``, ``[scoring]``,
    ``[marker_names]`` and the tare time are kept from ``cfg``. Any other ``cfg`` (a lab's
    own TOML) is returned unchanged: the recording is then replayed onto that lab's plates and
    labels by :class:`ReplaySignal`.

    Parameters
    ----------
    cfg : ``LabConfig`` (``treadlab.config.load_lab``).
    path : str or os.PathLike, the C3D file.

    Returns
    -------
    ``LabConfig`` (a new one, or ``cfg`` itself).

    Raises
    ------
    InputError naming the file when it cannot be read or has no force plate / markers.
    """


    if not is_default_lab(cfg):
        return cfg
    names = dict(getattr(cfg, "marker_names", None) or {}) or None
    session = read_c3d(path, marker_names=names)
    f, m = session.force, session.markers
    if f is None or f.wrench is None or len(f.plates) == 0:
        raise InputError(path, "/raw/force", "no force plate to replay")
    if m is None or not len(m.labels):
        raise InputError(path, "/raw/markers", "no markers to replay")
    if len(f.plates) > 1:
        log.warning("%s: %d plates; the derived replay lab puts them all on %r", path,
                    len(f.plates), f.plates[0])
    attrs = dict(getattr(session, "attrs", {}) or {})
    speed = attrs.get("belt_speed_m_s")
    speed = float(speed) if speed is not None and np.isfinite(float(speed)) else None
    origin = np.asarray(f.origin, float).reshape(-1, 3)[0]
    corners = (np.asarray(f.corners, float).reshape(-1, 4, 3)[0]
               if getattr(f, "corners", None) is not None else np.zeros((4, 3)))
    plate = PlateConfig(name=str(f.plates[0]), origin=[float(v) for v in origin],
                        corners=[[float(v) for v in c] for c in corners],
                        channels=list(range(6)),
                        calibration=REPLAY_CALIBRATION.tolist())
    lab = LabTable(name=f"C3D replay of {Path(path).name}", belt="single", belt_speed_m_s=speed)
    forceplate = dataclasses.replace(cfg.forceplate, driver="forceplate_serial", port="auto",
                                     rate_hz=float(f.rate_hz), channels=6, sample_type="int32",
                                     volts_per_count=REPLAY_VOLTS_PER_COUNT)
    markers = dataclasses.replace(cfg.markers, driver="markers_udp", host="127.0.0.1", port=0,
                                  rate_hz=float(m.rate_hz),
                                  labels=[str(x) for x in m.labels])
    return dataclasses.replace(cfg, lab=lab, plates=[plate], forceplate=forceplate,
                               markers=markers, simulator={}, source_path=None)
