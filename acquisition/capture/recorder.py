"""The crash-safe session recorder and ``recover`` (docs/archive.md §5).

:class:`Recorder` writes one live session straight into its final ``.h5`` file:

* the layout comes from :func:`treadlab.acquisition.archive.create_raw_layout` (appendable
  datasets, chunks of at most 0.5 s of data, gzip, dimension scales), plus four acquisition
  datasets the recorder adds beside it: ``/raw/force/host_time``, ``/raw/force/seq``,
  ``/raw/markers/host_time``, ``/raw/markers/frame`` (receipt time on the host's monotonic clock
  and the device's frame numbers), so the clock mapping can be redone from the raw times;
* root ``status="recording"`` is written, then the file switches to SWMR
  (``libver=("v110", "v110")``), so a reader can follow the capture;
* blocks are queued by the caller (:meth:`Recorder.put`, never blocking) and appended by the
  recorder's own writer thread, which flushes every ``flush_interval_s`` (0.5 s by default): a
  killed capture loses at most the last flush interval plus what was still in the queue;
* :meth:`Recorder.close` drains the queue, closes the SWMR file, reopens it normally, redoes the
  clock mapping over the whole recording (:func:`treadlab.acquisition.capture.clock.fit_clock` on the raw
  device/host times), rewrites ``/raw/*/time``, stores the fit and sets ``status="complete"``
  (or ``"interrupted"``) and the final attributes (estimated body mass, …).

:func:`recover` makes a killed recording valid: HDF5 marks a file open for (SWMR) writing in its
superblock and refuses ordinary opens afterwards; without ``h5clear`` at hand, ``recover`` clears
those status flags itself (superblock versions 2/3, Jenkins lookup3 checksum recomputed, exactly
what ``h5clear -s`` does), trims every stream to the length its datasets have in common, redoes
the clock mapping and sets ``status="interrupted"``.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition import archive
from treadlab.acquisition.archive import clear_status_flags
from treadlab.acquisition.archive.format import (attach_scales, chunk_rows, make_scale,
                                                 new_dataset, write_array)
from treadlab.acquisition.archive.lock import lock_path
from treadlab.acquisition.capture.clock import fit_clock
from treadlab.config import software_version
from treadlab.config.constants import G
from treadlab.config.errors import InputError
from treadlab.kernels.forces import estimate_body_weight

log = logging.getLogger(__name__)

__all__ = ["Recorder", "recover", "require_finished", "check_finished", "clear_status_flags",
           "lock_path"]

#: Disk kept in reserve beside a recording, bytes: released when a write fails so the file can
#: still be closed cleanly (see :class:`Recorder`).
RESERVE_BYTES = 256 << 10

_FORCE_STREAM = ("time", "wrench", "device_time", "host_time", "counts", "seq", "cop_device")
_MARKER_STREAM = ("time", "positions", "device_time", "host_time", "frame")
_LOG_STREAM = ("time", "source", "kind", "detail")
_ANALOG_STREAM = ("time", "data", "device_time", "host_time", "seq")
_BELT_STREAM = ("time", "speed", "host_time", "seq")
#: streams trimmed together at close and by recover; those with a device clock are refitted
#: from it (:func:`_refit_time`), the belt from its packet count (:func:`_refit_belt`)
_TIMED = (("force", _FORCE_STREAM), ("markers", _MARKER_STREAM), ("analog", _ANALOG_STREAM),
          ("belt", _BELT_STREAM))


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hold_lock(path) -> archive.SessionLock:
    """Take the session lock (docs/archive.md §14) for the capture; the kernel releases it if
    the process dies."""
    try:
        return archive.acquire(path, "capture")
    except archive.SessionLocked as exc:
        raise InputError(path, None, f"another writer holds this session: "
                                     f"{archive.describe_owner(exc.owner)}") from None


def require_finished(path) -> None:
    """InputError unless ``path`` is a finished recording: no capture holds its lock and its
    ``status`` is not ``"recording"`` (a capture still writing it, or one that was killed:
    ``treadlab recover`` first). Reads one attribute; a file that is not HDF5 passes (the
    command reading it reports that)."""
    path = Path(path)
    if _writer_alive(path):
        raise InputError(path, None, "a capture is still recording it; wait until it ends")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        msg = str(exc)
        if "h5clear" not in msg and "already open for write" not in msg:
            return        # not readable: the command reading it says so
        # flags left by a killed SWMR writer: readable in SWMR mode (never tried on other
        # damage, where SWMR-read retries for minutes)
        try:
            f = h5py.File(path, "r", swmr=True)
        except Exception:
            return
    with f:
        check_finished(f, path)


def check_finished(f, path) -> None:
    """The status half of :func:`require_finished`, on the session ``path`` open as ``f``
    (for a caller that has checked the lock itself and reads on)."""
    try:
        status = archive.from_attr(f.attrs.get("status", ""))
    except Exception:
        return
    check_status(status, path)


def check_status(status, path) -> None:
    """InputError when a session's root ``status`` (as read) says a capture never finished it."""
    if status == "recording":
        raise InputError(path, "/@status", "'recording': the capture did not finish; run "
                                           "`treadlab recover` on it first")


#: Session-lock owners that only write derived data: not a capture still recording.
_DERIVED_WRITERS = ("process", "reprocess", "migrate")


def _writer_alive(path) -> bool:
    """True while a capture holds the session lock of ``path`` (a process, reprocess or
    migrate holding it is not recording)."""
    owner = archive.lock_owner(path)
    return owner is not None and owner.get("what", "capture") not in _DERIVED_WRITERS


def _append_stream(ds: dict, stream: str, data_name: str, seq_name: str, items) -> int:
    """Append ``(block, session_time)`` pairs of one stream; returns the rows appended.

    Writes ``<stream>/time`` (session clock), the data (float32), the raw device and host times,
    the frame numbers (-1 when the source has none) and, for force, the raw ADC counts.
    """
    blocks = [b for b, _ in items]
    data = np.concatenate([b.data for b in blocks]).astype(np.float32, copy=False)
    archive.append_rows(ds[f"{stream}/time"], np.concatenate([t for _, t in items]))
    archive.append_rows(ds[f"{stream}/{data_name}"], data)
    archive.append_rows(ds[f"{stream}/device_time"], np.concatenate([b.device_time for b in blocks]))
    archive.append_rows(ds[f"{stream}/host_time"], np.concatenate(
        [np.broadcast_to(b.host_time, (len(b),)) for b in blocks]))
    archive.append_rows(ds[f"{stream}/{seq_name}"], np.concatenate(
        [b.seq if b.seq is not None else np.full(len(b), -1) for b in blocks]))
    if f"{stream}/cop_device" in ds:
        archive.append_rows(ds[f"{stream}/cop_device"], np.concatenate(
            [b.cop if b.cop is not None else np.full(b.data.shape[:2] + (3,), np.nan)
             for b in blocks]).astype(np.float32, copy=False))
    if f"{stream}/counts" in ds:
        c = ds[f"{stream}/counts"]
        archive.append_rows(c, np.concatenate([b.raw for b in blocks]).astype(c.dtype, copy=False))
    return data.shape[0]


class Recorder:
    """Append force, marker and log blocks to a session archive, crash-safely.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` file to create (must not exist).
    attrs : dict
        Root attributes (docs/archive.md §2): at least ``subject_id``, ``lab``; ``body_mass_kg`` (NaN
        while unknown), ``belt_speed_m_s`` (NaN when unknown). ``format``, ``format_version``,
        ``session_id``, ``created_utc``, ``software`` and ``status`` are filled in.
    plates : list of str
        p force-plate names.
    origin : (p, 3) float64, mm, lab frame
        Point each plate's moments are expressed about.
    corners : (p, 4, 3) float64, mm, lab frame
    force_rate_hz, marker_rate_hz : float, Hz
        Nominal rates.
    labels : list of str
        k marker labels in wire order.
    n_channels : int, optional
        Raw ADC channels per force frame (``/raw/force/counts`` is created when given).
    counts_dtype : numpy dtype, optional
        ``int16`` or ``int32``.
    calibration : dict, optional
        ``{"volts_per_count", "zero" (c,) counts — the tare, "channels" (p, 6), "matrix"
        (p, 6, 6)}`` used to make the wrench.
    t0_host : float, s, optional
        ``time.monotonic()`` that is session time 0 (default: when :meth:`start` runs).
    flush_interval_s : float, s
        Appends and flushes at least this often (≤ 1 s; default 0.5 s).
    subject : dict, optional
        ``/subject`` attributes (anthropometrics, mm).
    belts : list of str, optional
        Belt names of the ``/raw/belt`` stream (a treadmill controller is read).
    belt_rate_hz : float, Hz
        The controller's nominal feedback rate (the belt clock is fitted to it at close).
    force_cop : bool
        The force source reports its own centre of pressure (``Block.cop``): creates
        ``/raw/force/cop_device`` (n, p, 3) float32 mm.
    analog : dict, optional
        ``{"channels": [names], "units": [units], "rate_hz": Hz, "device": text}``: creates
        ``/raw/analog`` (docs/archive.md §3.6) for blocks of stream ``"analog"``.
    reserve_bytes : int
        Bytes of disk kept in reserve beside the archive (``.<name>.reserve``) while recording.
        When a write fails (a full disk), the reserve is released so HDF5 can complete its
        metadata, the streams are cut back to the last flush and the file is closed cleanly
        with ``status="recording"``: :meth:`close` then raises a one-line InputError and the
        file is recoverable (``recover``) on a disk with room. Without it, HDF5 left with
        unwritable metadata crashes the process at exit.
    """

    def __init__(self, path, attrs: dict, *, plates, origin, corners, force_rate_hz: float,
                 labels, marker_rate_hz: float, n_channels: int | None = None,
                 counts_dtype=None, calibration: dict | None = None,
                 t0_host: float | None = None, flush_interval_s: float = 0.5,
                 subject: dict | None = None, reserve_bytes: int = RESERVE_BYTES,
                 belts: list[str] | None = None, analog: dict | None = None,
                 force_cop: bool = False, belt_rate_hz: float = 100.0):
        if not 0 < flush_interval_s <= 1.0:
            raise ValueError(f"flush_interval_s must be in (0, 1] s, got {flush_interval_s}")
        self.path = Path(path)
        self._attrs = dict(attrs)
        self._layout_kw = dict(plates=list(plates), origin=origin, corners=corners,
                               force_rate_hz=float(force_rate_hz), labels=list(labels),
                               marker_rate_hz=float(marker_rate_hz), n_channels=n_channels,
                               counts_dtype=counts_dtype, calibration=calibration)
        self.flush_interval_s = float(flush_interval_s)
        self.t0_host = t0_host
        self._subject = dict(subject or {})
        #: belt names of the ``/raw/belt`` stream (None: no treadmill speed stream)
        self._belts = list(belts) if belts else None
        self._belt_rate_hz = float(belt_rate_hz)
        #: channels of the ``/raw/analog`` stream (None: no analog stream)
        self._analog = dict(analog) if analog else None
        self._force_cop = bool(force_cop)
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._file: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self.error: BaseException | None = None
        #: rows written and flushed so far per stream (``force``, ``markers``, ``log``)
        self.written = {"force": 0, "markers": 0, "log": 0, "belt": 0, "analog": 0}
        self.flushes = 0
        self.last_flush_host: float | None = None
        self._lock_fd: archive.SessionLock | None = None
        self.reserve_bytes = int(reserve_bytes)
        self._reserve = self.path.with_name(f".{self.path.name}.reserve")

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> "Recorder":
        """Create the file and its layout, switch to SWMR and start the writer thread."""
        if self.path.exists():
            raise InputError(self.path, None, "session file already exists; not overwriting")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.t0_host is None:
            self.t0_host = time.monotonic()
        self._lock_fd = _hold_lock(self.path)
        try:
            self._make_reserve()
        except OSError as exc:
            self._release_lock()
            raise InputError(self.path, None, f"no room to record on this disk "
                                              f"({exc.strerror or exc}); nothing recorded") from None
        self._attrs.setdefault("session_id", str(uuid.uuid4()))
        try:  # the empty derived file the session links to (docs/archive.md §11)
            archive.write_derived_file(self.path, None, {},
                                       session_id=str(self._attrs["session_id"]))
        except OSError as exc:
            self._release_lock()
            self._drop_reserve()
            raise InputError(self.path, None, f"cannot write the derived file "
                                              f"({exc.strerror or exc}); nothing recorded") from None
        f = h5py.File(self.path, "w", libver=archive.LIBVER)
        try:
            attrs = dict(self._attrs)
            attrs.update(format=archive.FORMAT, status="recording")
            attrs.setdefault("format_version", archive.FORMAT_VERSION)
            attrs.setdefault("session_id", str(uuid.uuid4()))
            attrs.setdefault("created_utc", _utc_now())
            attrs.setdefault("software", software_version())
            attrs.setdefault("body_mass_kg", float("nan"))
            attrs.setdefault("belt_speed_m_s", float("nan"))
            attrs.setdefault("lab", "")
            attrs.setdefault("subject_id", "")
            for key, value in attrs.items():
                f.attrs[key] = archive.to_attr(value)
            if self._subject:
                g = f.create_group("subject")
                for key, value in self._subject.items():
                    g.attrs[key] = archive.to_attr(value)
            ds = archive.create_raw_layout(f, device_time=True, log=True, **self._layout_kw)
            archive.link_derived(f, archive.derived_path(self.path).name)
            ds.update(_create_acquisition_datasets(f))
            if self._force_cop:
                ds.update(_create_cop_dataset(f))
            if self._belts:
                ds.update(_create_belt_datasets(f, self._belts, self._belt_rate_hz))
            if self._analog:
                ds.update(_create_analog_datasets(f, **self._analog))
            f["raw"].attrs["clock_t0_host_s"] = float(self.t0_host)
            f["raw"].attrs["clock"] = ("session clock = host time (time.monotonic) - "
                                       "clock_t0_host_s; each device clock mapped onto the host "
                                       "clock by a lower-envelope Theil-Sen fit")
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            self._release_lock()
            self._drop_reserve()
            raise
        self._file, self._ds = f, ds
        self._thread = threading.Thread(target=self._run, name="treadlab-recorder", daemon=True)
        self._thread.start()
        log.info("%s: recording", self.path)
        return self

    def put(self, block, time_s: np.ndarray) -> None:
        """Queue one block for writing (never blocks on the disk).

        Parameters
        ----------
        block : treadlab.acquisition.sources.base.Block
            ``stream`` "force" (data (n, p, 6) float32 N/N·m, already tared; raw (n, c) counts)
            or "markers" (data (n, k, 3) float32 mm).
        time_s : (n,) float64, s
            The block's samples on the session clock (provisional: redone at close).
        """
        with self._cond:
            self._queue.append(("block", block, np.asarray(time_s, dtype=np.float64)))
            self._cond.notify()

    def event(self, host_time: float, source: str, kind: str, detail: str) -> None:
        """Queue one acquisition event for ``/raw/log`` (host_time: ``time.monotonic()`` s)."""
        t = float(host_time) - float(self.t0_host or 0.0)
        with self._cond:
            self._queue.append(("event", (t, str(source), str(kind), str(detail)), None))
            self._cond.notify()

    def close(self, status: str = "complete", attrs: dict | None = None) -> Path:
        """Write what is queued, finish the file and set its status.

        Parameters
        ----------
        status : "complete" or "interrupted"
        attrs : dict, optional
            Root attributes to set at the end (e.g. ``body_mass_kg``).

        Returns
        -------
        pathlib.Path of the archive.
        """
        if status not in ("complete", "interrupted"):
            raise ValueError(f"status must be 'complete' or 'interrupted', got {status!r}")
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._thread.join()
            self._thread = None
        if self.error is not None:
            return self._close_failed()
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        self._drop_reserve()
        try:
            with h5py.File(self.path, "r+", libver=archive.LIBVER) as f:
                for key, value in (attrs or {}).items():
                    f.attrs[key] = archive.to_attr(value)
                _finish(f, status, note=f"recording {status}")
        finally:
            self._release_lock()
        log.info("%s: %s", self.path, status)
        return self.path

    def _close_failed(self):
        """After a failed write: close the (already cut back and flushed) file as it is, with
        ``status="recording"``, and raise the one-line InputError."""
        try:
            if self._file is not None:
                self._file.close()
        except Exception as exc:  # reported below; the data up to the last flush are on disk
            log.info("%s: closing after the failed write: %s", self.path, exc)
        finally:
            self._file = None
            self._drop_reserve()
            self._release_lock()
        exc = self.error
        errno_ = getattr(exc, "errno", None)
        text = str(exc)
        why = ("the disk is full" if errno_ == 28 or "errno = 28" in text
               or "No space left" in text else
               f"writing failed ({type(exc).__name__}: {text.strip().splitlines()[0][:120]})"
               if text.strip() else f"writing failed ({type(exc).__name__})")
        raise InputError(self.path, None, f"{why} after {self.written['force']} force and "
                                          f"{self.written['markers']} marker frames; the file "
                                          f"holds everything up to the last flush (status "
                                          f"'recording'): make room or move it, then run "
                                          f"`treadlab recover` on it")

    def _make_reserve(self) -> None:
        if self.reserve_bytes <= 0:
            return
        fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = b"\0" * min(self.reserve_bytes, 1 << 20)
            left = self.reserve_bytes
            while left > 0:
                left -= os.write(fd, chunk[:left])
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self._reserve.unlink(missing_ok=True)
            raise
        os.close(fd)

    def _drop_reserve(self) -> None:
        try:
            self._reserve.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("%s: cannot remove %s: %s", self.path, self._reserve, exc)

    def _rescue(self) -> None:
        """A write failed: release the reserve, cut every stream back to what the last good
        flush holds (the failed write may have left zeros) and flush, so HDF5's metadata are
        complete on disk."""
        self._drop_reserve()
        keep = {k: self.written[k] for k in ("force", "markers", "log", "analog", "belt")}
        try:
            for key, ds in self._ds.items():
                group = key.split("/", 1)[0]
                if group in keep and ds.shape[0] > keep[group]:
                    ds.resize(keep[group], axis=0)
            self._file.flush()
        except Exception as exc:
            log.warning("%s: could not cut back after the failed write: %s", self.path, exc)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            self._lock_fd.release()
            self._lock_fd = None

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            with self._cond:
                while not self._stopping:
                    remaining = next_flush - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                items = list(self._queue)
                self._queue.clear()
                stopping = self._stopping
            try:
                if self.error is None:
                    self._write(items)
            except Exception as exc:  # keep draining so producers never pile up
                self.error = exc
                log.info("%s: writing failed: %s", self.path,
                          (str(exc).strip().splitlines() or [type(exc).__name__])[0])
                self._rescue()
            next_flush = time.monotonic() + self.flush_interval_s
            if stopping:
                with self._cond:
                    if not self._queue:
                        return

    def _write(self, items) -> None:
        force, markers, events, belt, analog = [], [], [], [], []
        for kind, payload, t in items:
            if kind == "event":
                events.append(payload)
            elif payload.stream == "belt":
                belt.append((payload, t))
            elif payload.stream == "analog":
                analog.append((payload, t))
            elif payload.stream == "force":
                force.append((payload, t))
            elif payload.stream == "markers":
                markers.append((payload, t))
        ds = self._ds
        new = {}
        if force:
            new["force"] = _append_stream(ds, "force", "wrench", "seq", force)
        if markers:
            new["markers"] = _append_stream(ds, "markers", "positions", "frame", markers)
        if analog and "analog/data" in ds:
            new["analog"] = _append_stream(ds, "analog", "data", "seq", analog)
        if belt and "belt/speed" in ds:
            blocks = [b for b, _ in belt]
            archive.append_rows(ds["belt/time"], np.concatenate([t for _, t in belt]))
            archive.append_rows(ds["belt/speed"], np.concatenate([b.data for b in blocks])
                                .astype(np.float32, copy=False))
            archive.append_rows(ds["belt/host_time"],
                                np.concatenate([b.host_time for b in blocks]))
            archive.append_rows(ds["belt/seq"], np.concatenate(
                [b.seq if b.seq is not None else np.full(len(b), -1) for b in blocks]))
            new["belt"] = sum(len(b) for b in blocks)
        if events:
            archive.append_rows(ds["log/time"], np.array([e[0] for e in events], dtype=np.float64))
            for i, name in enumerate(("source", "kind", "detail"), start=1):
                archive.append_rows(ds[f"log/{name}"], np.array([e[i] for e in events], dtype=object))
            new["log"] = len(events)
        self._file.flush()
        for key, n in new.items():      # counted once durable on disk
            self.written[key] += n
        self.flushes += 1
        self.last_flush_host = time.monotonic()


def _create_belt_datasets(f: h5py.File, belts: list[str], rate_hz: float = 100.0) -> dict:
    """``/raw/belt``: the treadmill's measured belt speeds over time (before SWMR).

    Along dimension ``time``: ``time`` (n,) s on the session clock (a dimension scale:
    receipt time while recording, the fitted packet clock after close, :func:`_refit_belt`),
    ``host_time`` (n,) s receipt time, ``seq`` (n,) packet count, ``speed`` (n, b) float32 m/s
    (dimensions ``time`` × ``belt``); ``belt`` (b,) names; attributes ``belts``, ``rate_hz``
    (nominal feedback rate).
    """
    g = f["raw"].create_group("belt")
    g.attrs["belts"] = archive.to_attr(list(belts))
    g.attrs["rate_hz"] = float(rate_hz)
    g.attrs["description"] = ("belt speeds measured by the treadmill controller; time = "
                              "receipt time while recording, then a constant-rate clock "
                              "fitted to the receipt times (host_time keeps them)")
    t = new_dataset(g, "time", (0,), np.float64, "s", rows_per_chunk=256, clock="session")
    t.make_scale("time")
    names = make_scale(g, "belt", np.array([str(b) for b in belts], dtype=object))
    speed = new_dataset(g, "speed", (0, len(belts)), np.float32, "m/s", rows_per_chunk=256)
    attach_scales(speed, t, names)
    out = {"belt/time": t, "belt/speed": speed}
    for name, dtype, units, what in (("host_time", np.float64, "s",
                                      "host time.monotonic() at receipt"),
                                     ("seq", np.int64, "1", "feedback packets counted from "
                                      "the first (the controller sends no counter)")):
        d = new_dataset(g, name, (0,), dtype, units, rows_per_chunk=256, description=what)
        d.dims[0].attach_scale(t)
        out[f"belt/{name}"] = d
    return out


def _create_cop_dataset(f: h5py.File) -> dict:
    """``/raw/force/cop_device`` (n, p, 3) float32 mm, lab frame: the centre of pressure the
    force device reports itself (QTM), NaN while unloaded; dimensions time × plate × xyz."""
    g = f["raw"]["force"]
    p = g["plate"].shape[0]
    ds = new_dataset(g, "cop_device", (0, p, 3), np.float32, "mm",
                     rows_per_chunk=g["time"].chunks[0],
                     description="centre of pressure as the device reported it, mapped to the "
                                 "lab frame; NaN while the plate is unloaded; provenance only "
                                 "(the pipeline derives the COP from the wrench)")
    xyz = g["xyz"] if "xyz" in g else make_scale(g, "xyz", np.array(["X", "Y", "Z"], dtype=object))
    attach_scales(ds, g["time"], g["plate"], xyz)
    return {"force/cop_device": ds}


def _create_analog_datasets(f: h5py.File, channels, units, rate_hz: float,
                            device: str = "") -> dict:
    """``/raw/analog``: analog channels recorded through the mocap system (before SWMR).

    Datasets along dimension ``time``: ``time`` (n,) s on the session clock (a dimension
    scale), ``data`` (n, c) float32 in each channel's unit (dimensions ``time`` × ``channel``),
    ``device_time`` (n,) s (sample number / rate), ``host_time`` (n,) s, ``seq`` (n,) the
    device's sample numbers (gaps = missed samples); ``channel`` (c,) the channel names (a
    dimension scale) and ``unit`` (c,) their units. Attributes ``rate_hz``, ``channels``,
    ``units``, ``device``.
    """
    channels, units = [str(c) for c in channels], [str(u) for u in units]
    g = f["raw"].create_group("analog")
    g.attrs["rate_hz"] = float(rate_hz)
    g.attrs["channels"] = archive.to_attr(channels)
    g.attrs["units"] = archive.to_attr(units)
    g.attrs["device"] = str(device)
    g.attrs["description"] = ("analog channels as the device sent them (vendor units, not "
                              "rescaled); time = session clock from the device's sample clock")
    rows = chunk_rows(rate_hz, max(1, len(channels)) * 4)
    t = new_dataset(g, "time", (0,), np.float64, "s", rows_per_chunk=rows, clock="session")
    t.make_scale("time")
    ch = make_scale(g, "channel", np.array(channels, dtype=object))
    unit = write_array(g, "unit", np.array(units, dtype=object), "")
    unit.dims[0].attach_scale(ch)
    same = len(set(units)) == 1
    data = new_dataset(g, "data", (0, len(channels)), np.float32,
                       units[0] if same and units else "per channel: see unit",
                       rows_per_chunk=rows)
    attach_scales(data, t, ch)
    out = {"analog/time": t, "analog/data": data}
    for name, dtype, u, what in (("device_time", np.float64, "s", "device sample clock"),
                                 ("host_time", np.float64, "s",
                                  "host time.monotonic() at receipt"),
                                 ("seq", np.int64, "1", "device sample number, unwrapped "
                                  "(gaps = missed samples)")):
        d = new_dataset(g, name, (0,), dtype, u, rows_per_chunk=rows, description=what)
        d.dims[0].attach_scale(t)
        out[f"analog/{name}"] = d
    return out


def _create_acquisition_datasets(f: h5py.File) -> dict:
    """Host receipt times and frame numbers beside the archive layout (before SWMR)."""
    out = {}
    for group, seq_name in (("force", "seq"), ("markers", "frame")):
        g = f["raw"][group]
        rows = g["time"].chunks[0]
        ht = g.create_dataset("host_time", (0,), maxshape=(None,), chunks=(rows,),
                              dtype=np.float64, compression="gzip",
                              compression_opts=archive.GZIP_LEVEL)
        ht.attrs["units"] = "s"
        ht.attrs["clock"] = "host time.monotonic() at receipt"
        ht.dims[0].attach_scale(g["time"])
        sq = g.create_dataset(seq_name, (0,), maxshape=(None,), chunks=(rows,), dtype=np.int64,
                              compression="gzip", compression_opts=archive.GZIP_LEVEL)
        sq.attrs["units"] = "1"
        sq.attrs["description"] = "device frame number, unwrapped (gaps = dropped frames)"
        sq.dims[0].attach_scale(g["time"])
        out[f"{group}/host_time"], out[f"{group}/{seq_name}"] = ht, sq
    return out


# --- finishing and recovery --------------------------------------------------------------------

def _trim(group: h5py.Group, names) -> int:
    """Resize the present datasets of ``names`` to their common length; return it."""
    present = [group[n] for n in names if n in group and isinstance(group[n], h5py.Dataset)]
    if not present:
        return 0
    n = min(ds.shape[0] for ds in present)
    for ds in present:
        if ds.shape[0] != n:
            ds.resize(n, axis=0)
    return n


def _refit_time(group: h5py.Group, t0_host: float) -> dict | None:
    """Redo ``group/time`` from ``device_time`` and ``host_time``; return the fit."""
    if not all(k in group for k in ("time", "device_time", "host_time")):
        return None
    dev = group["device_time"][()]
    host = group["host_time"][()]
    ok = np.isfinite(dev) & np.isfinite(host)
    if ok.sum() == 0:
        return None
    # fitted on session time (host − t0): the line is then evaluated on small numbers, so
    # its steps keep full precision however long the host has been up
    origin, a, b = fit_clock(dev[ok], host[ok] - t0_host)
    t = dev + a + b * (dev - origin)
    if np.any(np.diff(t) <= 0):
        # device clock restarted (reconnect) or duplicated: keep the recorded provisional times
        log.warning("%s: device clock not monotonic; keeping provisional times", group.name)
        return None
    group["time"][...] = t
    group.attrs["clock_origin_s"] = origin
    group.attrs["clock_offset_s"] = a + t0_host
    group.attrs["clock_drift"] = b
    return {"origin": origin, "offset": a + t0_host, "drift_ppm": b * 1e6}


def _refit_belt(group: h5py.Group, t0_host: float) -> dict | None:
    """Redo ``/raw/belt/time`` as a constant-rate clock fitted to the receipt times.

    The controller's feedback has no counter or clock and several packets often arrive in
    one read (one receipt time): receipt times jitter by milliseconds. Per connection (a new
    segment where the receipt times jump by more than 0.5 s beyond what the packet count
    says: a reconnection), ``host_time ≈ a + (seq/rate)·(1 + b)`` is fitted with the capture's
    robust lower-envelope Theil–Sen clock fit (:func:`fit_clock`; a receipt is never earlier
    than the packet was sent), and ``time`` = that line − t0. Segments shorter than 1 s, and
    a result that would not increase, keep the receipt times. Returns the fit (None: kept).
    """
    if not all(k in group for k in ("time", "host_time", "seq")):
        return None
    # session time (host − t0): the fitted line keeps full precision in its steps however
    # long the host has been up (absolute monotonic times near 1e5 s lose ~1e-11 s per step)
    host = group["host_time"][()].astype(np.float64) - t0_host
    seq = group["seq"][()].astype(np.float64)
    n = host.shape[0]
    rate = float(group.attrs.get("rate_hz", 100.0) or 100.0)
    if n < 2 or not (np.all(np.isfinite(host)) and np.all(seq >= 0)):
        return None
    jump = np.diff(host) - np.diff(seq) / rate > 0.5
    cuts = np.concatenate(([0], np.flatnonzero(jump) + 1, [n]))
    t = host.copy()
    rates, fitted = [], 0
    for i0, i1 in zip(cuts[:-1], cuts[1:]):
        dev = (seq[i0:i1] - seq[i0]) / rate
        if i1 - i0 < 2 or dev[-1] < 1.0:
            continue
        origin, a, b = fit_clock(dev, host[i0:i1])
        t[i0:i1] = dev + a + b * (dev - origin)
        rates.append(rate / (1.0 + b))
        fitted += i1 - i0
    if not fitted or np.any(np.diff(t) <= 0):
        log.warning("%s: belt packet clock not fitted; keeping receipt times", group.name)
        return None
    group["time"][...] = t
    group.attrs["clock"] = ("constant-rate packet clock fitted to the receipt times per "
                            "connection (lower-envelope Theil-Sen); host_time = receipt")
    group.attrs["clock_rate_hz"] = float(np.mean(rates))
    group.attrs["clock_segments"] = len(cuts) - 1
    return {"rate_hz": float(np.mean(rates)), "segments": len(cuts) - 1,
            "median_delay_ms": float(np.median(host - t)) * 1e3}


def _finish(f: h5py.File, status: str, note: str) -> dict:
    """Trim, refit clocks, log and set ``status`` on a file open normally for writing."""
    raw = f.require_group("raw")
    counts = {}
    for group, names in _TIMED:
        if group in raw:
            counts[group] = _trim(raw[group], names)
    t0 = float(raw.attrs.get("clock_t0_host_s", 0.0))
    details = []
    for group, _ in _TIMED:
        if group in raw:
            fit = _refit_time(raw[group], t0)
            if fit is not None:
                details.append(f"{group}: offset {fit['offset']:.6f} s, "
                               f"drift {fit['drift_ppm']:.1f} ppm")
    if "belt" in raw:
        fit = _refit_belt(raw["belt"], t0)
        if fit is not None:
            details.append(f"belt: {fit['rate_hz']:.4f} Hz packet clock over "
                           f"{fit['segments']} connection(s), receipt jitter removed "
                           f"(median {fit['median_delay_ms']:.2f} ms after the fit)")
    if "log" in raw:
        lg = raw["log"]
        _trim(lg, _LOG_STREAM)
        end = float(raw["force"]["time"][-1]) if counts.get("force") else 0.0
        rows = [(end, "recorder", "clock", "; ".join(details) or "no clock fit"),
                (end, "recorder", "status", note)]
        archive.append_rows(lg["time"], np.array([r[0] for r in rows]))
        for i, name in enumerate(("source", "kind", "detail"), start=1):
            archive.append_rows(lg[name], np.array([r[i] for r in rows], dtype=object))
    if "body_mass_kg" in f.attrs and not np.isfinite(float(f.attrs["body_mass_kg"])) \
            and counts.get("force"):
        fz = raw["force"]["wrench"][:, :, 2].astype(np.float64).sum(axis=1)
        weight, how = estimate_body_weight(fz, float(raw["force"].attrs["rate_hz"]),
                                           while_loaded=True)
        if np.isfinite(weight):
            f.attrs["body_mass_kg"] = weight / G
            f.attrs["body_mass_source"] = f"estimated from force: {how['method']} / g"
    f.attrs["status"] = status
    f.flush()
    return counts


def recover(path, body_mass_kg: float | None = None) -> str:
    """Make an interrupted or killed capture a valid session archive.

    Works on a copy beside the file (``.<name>.<pid>.recover.tmp``) and replaces the file with it only
    when the result passes :func:`treadlab.acquisition.archive.validate_session`: a recover that
    fails (damaged file, full disk, killed) leaves the file byte for byte as it was.

    On the copy: clears HDF5's "open for write" flags when a killed writer left them; for a file
    still ``recording`` (or ``interrupted``) keeps every stream up to its last consistent row
    (the rows all its datasets hold, with a finite, non-decreasing time and a recorded host
    time)
    and says what it dropped; redoes the clock mapping from the raw device/host times, estimates
    a missing body mass from the mean vertical force, logs the recovery in ``/raw/log`` and sets
    ``status="interrupted"``. A ``complete`` file never loses a row: when its streams disagree
    in length, recover refuses (the file is damaged, not interrupted).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` session archive.
    body_mass_kg : float, optional
        kg: sets ``body_mass_kg`` (``body_mass_source = "given to recover"``), for a recording
        too short (or never loaded) to estimate it from the force.

    Returns
    -------
    str : one line saying what was recovered and what was dropped.

    Raises
    ------
    InputError naming the file (and the dataset or attribute) when it is missing, empty, not
    HDF5, not a treadlab session, damaged beyond what recover repairs, or when there is no room
    for the working copy. The file is then unchanged.
    """
    path = Path(path)
    if body_mass_kg is not None and not (math.isfinite(body_mass_kg) and 0 < body_mass_kg < 500):
        raise InputError(None, "--body-mass", f"{body_mass_kg} is not a body mass in kg "
                                              f"(0-500)")
    if not path.is_file():
        raise InputError(path, None, "no such file")
    if path.stat().st_size == 0:
        raise InputError(path, "byte 0", "empty file (0 bytes): nothing to recover")
    if _writer_alive(path):
        raise InputError(path, None, "a capture is still recording it (lock held); stop it first")
    # the disk reserve a killed capture left (see Recorder): room for the working copy
    path.with_name(f".{path.name}.reserve").unlink(missing_ok=True)
    # the pid in the name: a stale-temp sweep never takes a live recover's copy
    tmp = path.with_name(f".{path.name}.{os.getpid()}.recover.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            shutil.copyfile(path, tmp)
        except OSError as exc:
            raise InputError(path, None, f"cannot make the working copy beside it "
                                         f"({exc.strerror or exc}); free some space or move the "
                                         f"file to a roomier disk; the file is unchanged") from None
        try:
            message, changed = _recover_copy(path, tmp, body_mass_kg)
        except InputError:
            raise
        except OSError as exc:
            raise InputError(path, None, f"recover failed writing its copy "
                                         f"({_short(exc)}); the file is unchanged") from None
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise InputError(path, None, f"damaged beyond repair ({type(exc).__name__}: "
                                         f"{_short(exc)}); the file is unchanged") from None
        problems = archive.validate_session(tmp)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InputError(path, None, f"not a valid session even after recovery: "
                                         f"{problems[0]}{more}; the file is unchanged")
        if changed:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        tmp.unlink(missing_ok=True)
    lock_path(path).unlink(missing_ok=True)   # stale lock of the killed capture
    return message


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _recover_copy(path: Path, tmp: Path, body_mass_kg: float | None = None) -> tuple[str, bool]:
    """Recover the working copy ``tmp`` of ``path``; ``(message, changed)``."""
    cleared = False
    try:
        f = h5py.File(tmp, "r+", libver=archive.LIBVER)
    except OSError as exc:
        if "open for write" not in str(exc) and "consistency flags" not in str(exc):
            raise InputError(path, None, f"not readable as HDF5 ({_short(exc)})") from None
        cleared = clear_status_flags(tmp)
        try:
            f = h5py.File(tmp, "r+", libver=archive.LIBVER)
        except OSError as exc2:
            raise InputError(path, None, f"not readable after clearing flags "
                                         f"({_short(exc2)})") from None
    with f:
        if archive.from_attr(f.attrs.get("format", "")) != archive.FORMAT:
            raise InputError(path, "/@format", "not a treadlab.session archive")
        old = str(archive.from_attr(f.attrs.get("status", "")))
        raw = f.get("raw")
        mass_note = ""
        if body_mass_kg is not None:
            f.attrs["body_mass_kg"] = float(body_mass_kg)
            f.attrs["body_mass_source"] = "given to recover"
            mass_note = f"; body mass set to {body_mass_kg:g} kg"
        if old == "complete":
            for group, names in _TIMED:
                if raw is not None and group in raw:
                    lengths = _stream_lengths(raw[group], names)
                    if len(set(lengths.values())) > 1:
                        a, na = max(lengths.items(), key=lambda kv: kv[1])
                        short = min(lengths, key=lengths.get)
                        raise InputError(path, f"/raw/{group}/{short}",
                                         f"{lengths[short]} rows but /raw/{group}/{a} has {na}: "
                                         f"the file says it is complete, and recover never "
                                         f"cuts rows of a complete recording (damaged file; "
                                         f"restore it from a backup); the file is unchanged")
            notes = [n for n in ("flags cleared" if cleared else "", mass_note[2:]) if n]
            return (f"{path}: status complete; {'; '.join(notes) or 'nothing to recover'}",
                    bool(notes))
        dropped = []
        if raw is not None:
            for group, names in _TIMED:
                if group in raw:
                    dropped += _trim_consistent(raw[group], group, names)
        counts = _finish(f, "interrupted", note=f"recovered by treadlab recover (was {old!r}"
                                                f"{', flags cleared' if cleared else ''}"
                                                f"{'; dropped ' + '; '.join(dropped) if dropped else ''})")
        rate = float(f["raw/force"].attrs.get("rate_hz", 0) or 0) if "raw/force" in f else 0.0
    secs = counts.get("force", 0) / rate if rate else math.nan
    what = "; dropped " + "; ".join(dropped) if dropped else "; nothing dropped"
    return (f"{path}: status interrupted (was {old}); force {counts.get('force', 0)} frames "
            f"({secs:.1f} s), markers {counts.get('markers', 0)} frames{what}{mass_note}"), True


def _stream_lengths(group: h5py.Group, names) -> dict[str, int]:
    return {n: int(group[n].shape[0]) for n in names
            if n in group and isinstance(group[n], h5py.Dataset) and group[n].ndim >= 1}


def _trim_consistent(group: h5py.Group, name: str, names) -> list[str]:
    """Cut the stream ``group`` after its last consistent row; what was dropped, per dataset.

    A row is consistent when every dataset of the stream holds it, its ``time`` is finite and its
    ``host_time`` is finite and non-zero (rows a failed write left as zeros are not); a stream
    without host times needs a non-decreasing ``time`` instead.
    """
    lengths = _stream_lengths(group, names)
    if not lengths:
        return []
    n = min(lengths.values())
    reason = "rows not held by every dataset"
    if "time" in group and n:
        t = np.asarray(group["time"][:n], dtype=np.float64)
        bad = ~np.isfinite(t)
        if "host_time" in group:
            # provisional session times may step back when the live clock fit moves; the host
            # receipt time is what a failed write leaves as zeros
            h = np.asarray(group["host_time"][:n], dtype=np.float64)
            bad |= ~np.isfinite(h) | (h == 0)
        else:
            bad[1:] |= ~(np.diff(t) >= 0)
        if bad.any():
            n = int(np.argmax(bad))
            reason = "rows after the last consistent row"
    cut = {ds_name: rows - n for ds_name, rows in lengths.items() if rows > n}
    for ds_name in cut:
        group[ds_name].resize(n, axis=0)
    if not cut:
        return []
    if len(set(cut.values())) == 1:
        k = next(iter(cut.values()))
        return [f"{k} rows of /raw/{name} ({', '.join(cut)}: {reason}; {n} kept)"]
    return [f"/raw/{name} beyond row {n} ({reason}): "
            + ", ".join(f"{k} rows of /raw/{name}/{d}" for d, k in cut.items())]
