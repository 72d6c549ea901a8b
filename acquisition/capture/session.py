"""A capture session: devices → clock alignment → crash-safe recorder + live feedback.

:func:`run_capture` is what ``treadlab capture`` (and ``treadlab demo``) runs:

1. the lab config is loaded and checked (:func:`treadlab.config.load_lab`): a bad config is a
   one-line :class:`ConfigError` before any device is touched;
2. the default simulated lab starts its virtual devices (a pty treadmill and loopback mocap,
   :func:`treadlab.acquisition.sim.simulated.start_lab`);
3. every device is opened and must deliver frames (and the force plate its tare) *before*
   anything is recorded: a missing port or silent stream is a one-line :class:`DeviceError`
   naming it, and no file is created;
4. each source reads its device in its own daemon thread (``Source`` base); this function's loop
   only moves blocks: it feeds the clock fit, maps device times onto the session clock and hands
   each block to the :class:`~treadlab.acquisition.capture.recorder.Recorder` (its own writer thread) and
   the :class:`~treadlab.acquisition.capture.live.LiveProcessor` (its own thread), so neither disk writes
   nor processing ever stall a read;
5. a status line (elapsed, cadence, contact time, the cause values, drops) is refreshed about
   twice a second on a terminal;
6. Ctrl-C, SIGTERM or the end of ``duration_s`` end the session cleanly: devices closed, the
   queue drained, clocks refitted, ``status="complete"``. An error mid-capture closes the file as
   ``"interrupted"`` and re-raises.

With ``replay=FILE.c3d`` the simulated lab plays a real recording once through the same wire
formats instead of the synthetic runner (docs/design.md §6, virtual lab); the lab config is derived
from the file when it is the shipped default (:func:`treadlab.acquisition.sim.replay.
replay_lab_config`), and the capture stops :data:`REPLAY_TAIL_S` after the last recorded
sample (or at ``duration_s``, whichever comes first).

The archive is ``<subject>_<UTC timestamp>.h5`` in ``out_dir``. Body mass is the given one or,
when not given, estimated from the mean vertical force over the recording (mass = mean Fz / g).
"""
from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition.capture.clock import SessionClock
from treadlab.acquisition.capture.live import LiveProcessor, format_status
from treadlab.acquisition.capture.recorder import Recorder
from treadlab.acquisition.sim.replay import replay_lab_config
from treadlab.acquisition.sim.emulated import (asks_for_emulator, emulated_lab_config,
                                               lab_starter)
from treadlab.acquisition.sim.treadmill_emulator import SimulatedTreadmill
from treadlab.acquisition.sources.treadmill_bertec import (SpeedProtocol, TreadmillBertec,
                                                           TreadmillSettings, parse_protocol)
from treadlab.acquisition.sim.synthetic import parse_params
from treadlab.acquisition.sources.base import Block, sources_from_config
from treadlab.config import load_lab
from treadlab.config.constants import G
from treadlab.config.errors import ConfigError, DeviceError, InputError
from treadlab.config.markers import to_cgm
from treadlab.kernels.contacts import ContactParams

log = logging.getLogger(__name__)

__all__ = ["run_capture", "capture_session", "session_filename", "is_simulated", "cgm_labels",
           "contact_params", "merge_blocks", "where"]

#: Seconds to wait for the first frames of every stream before giving up (DeviceError).
FIRST_FRAMES_TIMEOUT_S = 5.0

#: Seconds of empty belt recorded after the last sample of a replayed recording, so the last
#: toe off and the low-pass filter's tail are in the archive.
REPLAY_TAIL_S = 0.5



class _NoStatus:
    """The status stream when the caller wants none: a library does not print on its own."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

def session_filename(subject: str, when: datetime | None = None) -> str:
    """``<subject>_<YYYYmmddTHHMMSSZ>.h5`` with the subject made file-name safe."""
    when = when or datetime.now(timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(subject)).strip("-.") or "subject"
    return f"{safe}_{when.strftime('%Y%m%dT%H%M%SZ')}.h5"


def _is_simulated(cfg) -> bool:
    """True only when the lab config asks for the simulated lab (or a vendor's emulator)
    explicitly.

    That is ``[forceplate] driver = "simulated"`` or ``port = "auto"``, or a vendor table that
    names the emulator (:func:`asks_for_emulator`). A marker port left at its default (0) never
    turns a lab with a real force-plate port into a simulation: the simulated runner must not
    be recorded as the real subject.
    """
    fp = cfg.forceplate
    vendor = asks_for_emulator(cfg)          # a vendor system: its emulator or the real one
    if vendor is not None:
        return vendor
    return (getattr(fp, "driver", "") == "simulated"
            or str(getattr(fp, "port", "")).strip() == "auto")


def _check_devices(cfg) -> None:
    """ConfigError, before any device is opened, for a lab that mixes real and simulated ends.

    A real force plate (a device path or URL) with ``[markers] port = 0`` (the simulated lab's
    choice) names no mocap port to listen on.
    """
    mk = cfg.markers
    if (not _is_simulated(cfg) and getattr(mk, "driver", "") == "markers_udp"
            and int(getattr(mk, "port", 0) or 0) == 0):
        raise ConfigError(getattr(cfg, "path", None), "markers.port",
                          f"0 is the simulated lab's choice, but forceplate.port = "
                          f"{str(cfg.forceplate.port)!r} is a real device: give the UDP port "
                          f"the mocap system sends to (or ask for the simulated lab with "
                          f"forceplate.port = \"auto\")")


def _cgm_labels(labels, cfg) -> list[str]:
    extra = getattr(cfg, "marker_names", None) or None
    return list(to_cgm(list(labels), extra))


def _belt_speed(cfg, simulated: bool, params) -> tuple[float, str]:
    """Belt speed (m/s) and where it came from: the lab table, else the simulated runner."""
    lab = getattr(cfg, "lab", None)
    value = lab.get("belt_speed_m_s") if isinstance(lab, dict) else \
        getattr(lab, "belt_speed_m_s", None)
    if value is not None:
        return float(value), "lab config"
    if simulated:
        sim = getattr(cfg, "simulator", None) or {}
        values = dict(sim) if isinstance(sim, dict) else dict(vars(sim))
        values = {k: v for k, v in values.items() if v is not None}
        values.update(params or {})
        return float(parse_params(values).speed_m_s), "simulated runner"
    return float("nan"), "unknown (not in the lab config)"


def _runner_speed(cfg, params) -> float:
    """The simulated runner's own speed (m/s): ``[simulator]`` overridden by ``params``."""
    sim = getattr(cfg, "simulator", None) or {}
    values = dict(sim) if isinstance(sim, dict) else dict(vars(sim))
    values = {k: v for k, v in values.items() if v is not None}
    values.update(params or {})
    if "belt" not in values and getattr(getattr(cfg, "lab", None), "belt", None) in ("split",
                                                                                   "single"):
        values["belt"] = cfg.lab.belt
    return float(parse_params(values).speed_m_s)


def _contact_params(cfg, body_mass_kg):
    c = getattr(cfg, "contacts", None)
    get = (lambda k, d: getattr(c, k, d)) if c is not None else (lambda k, d: d)
    min_peak = 0.0
    if body_mass_kg:
        min_peak = float(get("min_peak_bw", 1.0)) * float(body_mass_kg) * G
    return ContactParams(strike_n=float(get("strike_n", 50.0)), off_n=float(get("off_n", 20.0)),
                         min_contact_s=float(get("min_contact_s", 0.1)), min_peak_n=min_peak,
                         min_flight_s=float(get("min_flight_s", 0.02)))


def _wait_first_frames(sources, timeout: float) -> None:
    """Every source must deliver frames within ``timeout`` s; DeviceError names the silent one."""
    deadline = time.monotonic() + timeout
    for src in sources:
        while src.counters.get("frames", 0) == 0:
            if time.monotonic() > deadline:
                where = _where(src)
                raise DeviceError(f"{where}: no frames from the {src.name} stream within "
                                  f"{timeout:.0f} s (device off or wrong port/stream?)")
            time.sleep(0.02)


def _where(src) -> str:
    """The port, address or stream a source reads, for error messages."""
    port = getattr(src, "port", None)
    if port:
        return str(port)
    addr = getattr(src, "address", None)
    if isinstance(addr, tuple) and len(addr) == 2:
        return f"udp://{addr[0]}:{addr[1]}"
    stream = getattr(src, "stream_name", None)
    if stream:
        return f"LSL stream {stream!r}"
    return str(src.name)


class _Stopper:
    """Ctrl-C / SIGTERM / duration / an external event → one flag; handlers restored on exit."""

    def __init__(self, stop_event: threading.Event | None):
        self.event = stop_event or threading.Event()
        self.reason = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.reason = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def run_capture(config_path=None, subject: str = "subject", body_mass_kg: float | None = None,
                duration_s: float | None = None, out_dir=".", *, params: dict | None = None,
                status_stream=None, stop_event: threading.Event | None = None,
                on_step=None, replay=None, protocol: str | None = None,
                speed_protocol: str | None = None) -> Path:
    """Record one capture session into ``out_dir/<subject>_<UTC>.h5``.

    Parameters
    ----------
    config_path : str or os.PathLike, optional
        Lab TOML; None = the shipped simulated lab.
    subject : str
        Subject identifier (root attribute ``subject_id``; also names the file).
    body_mass_kg : float, optional
        kg; when None it is estimated from the mean vertical force of the recording.
    duration_s : float, optional
        Stop after this many seconds of recording (None: Ctrl-C / SIGTERM / ``stop_event``).
    out_dir : str or os.PathLike
        Folder for the archive (created if needed).
    params : dict, optional
        Synthetic-runner parameters for the simulated lab (``{"cadence_spm": "170"}``).
    status_stream : file-like, optional
        Where the live status line goes (default: nowhere; the CLI passes ``sys.stderr``); on a
        terminal it is redrawn about twice a second, otherwise a line is written every 5 s.
    stop_event : threading.Event, optional
        Set it to end the capture from another thread.
    on_step : callable(LiveStep), optional
        Called by the live processor at each toe off.
    replay : str or os.PathLike, optional
        A C3D recording the simulated lab plays once instead of the synthetic runner. With the
        shipped default lab the lab is derived from the file (one plate under the whole belt,
        the file's rates and marker labels; :func:`~treadlab.acquisition.sim.replay.
        replay_lab_config`); a lab TOML of your own is used as given (it must ask for the
        simulated devices: ``port = "auto"``). The capture ends :data:`REPLAY_TAIL_S` s after
        the last recorded sample, or at ``duration_s`` if that comes first.
    protocol : str, optional
        ``"qtm"``: the simulated lab is the QTM emulator and the capture reads it through the
        ``qualisys`` source (qtm-rt), with the plates and labels of the lab (or of the replayed
        file); None: the lab config's own drivers.
    speed_protocol : str, optional
        ``"2.5:60,3.5:60,4.5:60"``: belt speed stages (m/s:s) run on the lab's ``[treadmill]``
        controller; the capture lasts the protocol unless ``duration_s`` is given. The
        measured belt speeds are recorded in ``/raw/belt`` whenever a ``[treadmill]`` table
        exists.

    Returns
    -------
    pathlib.Path of the session archive (``status="complete"``).

    Raises
    ------
    ConfigError before anything is opened; InputError naming an unreadable replay file;
    DeviceError naming the port/stream before anything is recorded.
    """
    cfg = load_lab(config_path)
    return capture_session(cfg, subject=subject, body_mass_kg=body_mass_kg,
                           duration_s=duration_s, out_dir=out_dir, params=params,
                           status_stream=status_stream, stop_event=stop_event, on_step=on_step,
                           replay=replay, protocol=protocol, speed_protocol=speed_protocol)


def capture_session(cfg, subject: str = "subject", body_mass_kg: float | None = None,
                    duration_s: float | None = None, out_dir=".", *, params: dict | None = None,
                    status_stream=None, stop_event: threading.Event | None = None,
                    on_step=None, replay=None, protocol: str | None = None,
                    speed_protocol: str | None = None) -> Path:
    """:func:`run_capture` for a lab configuration already loaded (``LabConfig``).

    ``cfg`` needs the tables ``lab``, ``forceplate``, ``plates``, ``markers`` and optionally
    ``contacts``, ``simulator``, ``marker_names`` (docs/architecture.md, Config). ``replay``: a
    C3D file played once by the simulated lab (see :func:`run_capture`); ``cfg`` is replaced by
    the lab derived from the file when it is the shipped default.
    """
    if body_mass_kg is not None and not (math.isfinite(body_mass_kg) and body_mass_kg > 0):
        raise ConfigError(None, "--body-mass", f"must be a positive number of kg, got "
                                                f"{body_mass_kg}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(None, "--duration", f"must be a positive number of s, got {duration_s}")
    if replay is not None:
        cfg = replay_lab_config(cfg, replay)   # InputError naming the file before any device
        if not _is_simulated(cfg):
            raise ConfigError(getattr(cfg, "path", None), "forceplate.port",
                              "--replay plays the recording through the simulated lab: the lab "
                              "config must ask for it (port = \"auto\" or driver \"simulated\")")
    if protocol is not None:
        cfg = emulated_lab_config(cfg, protocol)   # ConfigError for an unknown protocol
    _check_devices(cfg)
    out_dir = Path(out_dir)
    status_stream = _NoStatus() if status_stream is None else status_stream

    stages = None
    if speed_protocol is not None:
        stages = parse_protocol(speed_protocol)
        if getattr(cfg, "treadmill", None) is None:
            raise ConfigError(getattr(cfg, "path", None), "treadmill",
                              "--speed-protocol needs the lab's [treadmill] table")
    lab = None
    force = markers = treadmill = belt_sim = None
    extra: list = []
    early = _Stopper(None)   # Ctrl-C / SIGTERM while the devices start and the plate tares
    try:
        early.__enter__()
        if _is_simulated(cfg):
            starter = lab_starter(cfg)       # the simulated lab, or a vendor's emulator
            # a replay is played once: the capture ends with the recording
            lab = (starter(cfg, params=params) if replay is None
                   else starter(cfg, replay=replay, loop=False))
        force, markers = sources_from_config(cfg, lab=lab)
        force.open()
        markers.open()
        # more streams on the same connections (QTM's analog channels): opened after them
        extra = [x for src in (force, markers) for x in src.extra]
        for x in extra:
            x.open()
        # the force source tares itself over tare_seconds after open (belt unloaded)
        tare_s = float(getattr(cfg.forceplate, "tare_seconds", 0.0) or 0.0)
        if hasattr(force, "tare"):
            force.tare(timeout=2 * tare_s + FIRST_FRAMES_TIMEOUT_S)
        treadmill, belt_sim = _open_treadmill(cfg, lab, params)
        _wait_first_frames([force, markers] + extra, FIRST_FRAMES_TIMEOUT_S)
        early.__exit__(None, None, None)
        if early.reason is not None:
            raise DeviceError(f"stopped by {early.reason} while the devices started and the "
                              f"force plate tared; nothing recorded")
        return _record(cfg, lab, force, markers, subject, body_mass_kg, duration_s, out_dir,
                       status_stream, stop_event, on_step, params, treadmill=treadmill,
                       stages=stages, extra=extra)
    finally:
        early.__exit__(None, None, None)
        if belt_sim is not None:
            belt_sim.stop()
        for src in [treadmill] + extra + [markers, force]:
            if src is not None:
                try:
                    src.close()
                except Exception:  # closing must not hide the real error
                    log.exception("closing %s failed", src)
        if lab is not None:
            lab.stop()


def _open_treadmill(cfg, lab=None, params=None):
    """The ``[treadmill]`` controller as an open source, and the simulated treadmill serving
    it when its host is ``"auto"`` (None, None without the table).

    With the simulated lab's synthetic runner (``lab.follow_belt``, not a replay) the simulated
    belt starts at the runner's speed and the runner follows every commanded ramp, which the
    belt starts ``lab.follow_lead_s`` (about 1 s) after the command (docs/devices.md)."""
    if getattr(cfg, "treadmill", None) is None:
        return None, None
    settings = TreadmillSettings.from_config(cfg)
    sim = None
    if settings.host == "auto":
        follow = getattr(lab, "follow_belt", None)
        if follow is not None and not getattr(lab, "replay", None):
            sim = SimulatedTreadmill(rate_hz=settings.rate_hz,
                                     initial_m_s=_runner_speed(cfg, params),
                                     command_delay_s=float(lab.follow_lead_s),
                                     on_command=follow)
        else:
            sim = SimulatedTreadmill(rate_hz=settings.rate_hz)
        settings.host, settings.port = sim.address
    src = TreadmillBertec(settings)
    try:
        src.open()
    except BaseException:
        if sim is not None:
            sim.stop()
        raise
    return src, sim


def _move_belt(blocks, rec: Recorder, t0: float, speeds: list) -> None:
    """Belt blocks → ``/raw/belt`` on the session clock (receipt time − t0, provisional: the
    recorder fits a constant-rate packet clock to the receipt times at close)."""
    for b in blocks:
        rec.put(b, b.host_time - t0)
        speeds.append(np.asarray(b.data, np.float64))


def _record(cfg, lab, force, markers, subject, body_mass_kg, duration_s, out_dir, status_stream,
            stop_event, on_step, params=None, treadmill=None, stages=None,
            extra=()) -> Path:
    finfo, minfo = force.info, markers.info
    plates = list(finfo.plates or finfo.labels)
    labels = _cgm_labels(minfo.labels, cfg)
    cal = getattr(force, "calibration", None)
    origin = np.array([np.asarray(getattr(p, "origin", np.zeros(3)), float) for p in cfg.plates])
    corners = np.array([np.asarray(getattr(p, "corners", np.zeros((4, 3))), float)
                        for p in cfg.plates])
    lab_name = str(getattr(getattr(cfg, "lab", None), "name", "") or "")
    belt = str(getattr(getattr(cfg, "lab", None), "belt", "split") or "split")
    replaying = lab is not None and bool(getattr(lab, "replay", None))
    speed, speed_source = _belt_speed(cfg, lab is not None and not replaying, params)
    if replaying and not math.isfinite(speed) and lab.replay.get("belt_speed_m_s"):
        speed = float(lab.replay["belt_speed_m_s"])
        speed_source = "C3D recording (replayed)"

    attrs = {"subject_id": str(subject), "lab": lab_name, "belt": belt,
             "belt_speed_m_s": speed, "belt_speed_source": speed_source,
             "body_mass_kg": float(body_mass_kg) if body_mass_kg else float("nan"),
             "config_path": str(getattr(cfg, "path", "") or "(default simulated lab)")}
    if body_mass_kg:
        attrs["body_mass_source"] = "given"
    end_frame = None
    if replaying:
        attrs["replay_source"] = str(lab.replay["source"])
        if getattr(cfg, "path", None) is None:
            attrs["config_path"] = f"(derived from {Path(lab.replay['source']).name})"
        end_frame, replay_note, on_frames = _replay_end(lab, finfo.rate_hz, minfo.rate_hz)
        # recorded time 0 of the file is force frame / marker frame (/raw/*/seq, frame) …
        attrs["replay_force_frame0"], attrs["replay_marker_frame0"] = on_frames
    if hasattr(cfg, "hash"):
        try:
            attrs["config_hash"] = cfg.hash()
        except Exception:  # the hash is informative only
            pass
    subject_attrs = {}
    if lab is not None and getattr(lab, "subject", None):
        subject_attrs = dict(lab.subject)

    analog = next((x for x in extra if x.kind == "analog"), None)
    analog_layout = None
    if analog is not None:
        analog_layout = {"channels": list(analog.info.labels), "units": list(analog.units),
                         "rate_hz": analog.info.rate_hz,
                         "device": getattr(analog, "description", "") or str(analog.port)}
    # forget what arrived before recording (tare period), keep the events
    force.read(0)
    markers.read(0)
    for x in extra:
        x.read(0)
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / session_filename(subject)
    rec = Recorder(path, attrs, plates=plates, origin=origin, corners=corners,
                   force_rate_hz=finfo.rate_hz, labels=labels, marker_rate_hz=minfo.rate_hz,
                   n_channels=finfo.channels or None,
                   counts_dtype=np.dtype(finfo.sample_type) if finfo.channels else None,
                   calibration=cal, t0_host=t0, subject=subject_attrs,
                   belts=treadmill.info.labels if treadmill is not None else None,
                   belt_rate_hz=treadmill.info.rate_hz if treadmill is not None else 100.0,
                   analog=analog_layout,
                   force_cop=bool(getattr(force, "sends_cop", False))).start()
    devices = (force, markers) + tuple(extra) + ((treadmill,) if treadmill is not None else ())
    belt_speeds: list = []
    speed_protocol = None
    if treadmill is not None:
        treadmill.read(0)
        if stages:
            speed_protocol = SpeedProtocol(treadmill, stages).start()
            if duration_s is None:
                duration_s = speed_protocol.duration_s
    clock = SessionClock(t0)
    live = LiveProcessor(plates, finfo.rate_hz, labels, minfo.rate_hz,
                         params=_contact_params(cfg, body_mass_kg), belt=belt,
                         subject=subject_attrs or None, on_step=on_step).start()
    rec.event(t0, "capture", "start",
              f"subject {subject}; force {finfo.rate_hz:g} Hz × {finfo.channels} ch "
              f"({', '.join(plates)}), markers {minfo.rate_hz:g} Hz × {len(labels)}")
    if cal is not None and "zero" in cal:
        rec.event(t0, "force", "tare_zero",
                  "counts " + " ".join(f"{z:.1f}" for z in np.ravel(cal["zero"])))
    if replaying:
        rec.event(t0, "capture", "replay", replay_note)

    tty = bool(getattr(status_stream, "isatty", lambda: False)())
    every = 0.5 if tty else 5.0
    next_status = t0 + every
    status = "interrupted"
    reason = "error"
    try:
        with _Stopper(stop_event) as stopper:
            end = None if duration_s is None else t0 + float(duration_s)
            while not stopper.event.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    stopper.reason = "duration"
                    break
                last = _move(force.read(0.02), clock, rec, live)
                _move(markers.read(0.0), clock, rec, live)
                for x in extra:
                    _move(x.read(0.0), clock, rec, live)
                if treadmill is not None:
                    _move_belt(treadmill.read(0.0), rec, t0, belt_speeds)
                if end_frame is not None and last is not None and last >= end_frame:
                    stopper.reason = "end of the replayed recording"
                    break
                for src in devices:
                    for ev in src.drain_events():
                        rec.event(*ev)
                if now >= next_status:
                    _show(status_stream, tty, now - t0, live, force, markers)
                    next_status = now + every
                if rec.error is not None:  # close() below raises the one-line error
                    stopper.reason = "the recorder failed"
                    break
            reason = stopper.reason or "stop requested"
        # stop the devices, then move what they still hold
        if speed_protocol is not None:
            speed_protocol.stop()
        for src in devices:
            src.close()
            if src is treadmill:
                _move_belt(src.read(0), rec, t0, belt_speeds)
            else:
                _move(src.read(0), clock, rec, live)
            for ev in src.drain_events():
                rec.event(*ev)
        status = "complete"
    finally:
        live.stop()
        end_t = time.monotonic()
        if speed_protocol is not None:
            speed_protocol.stop()
        counters = {src.name: src.counters for src in devices}
        for name, c in counters.items():
            rec.event(end_t, name, "counters",
                      ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if v))
        st = live.status()
        rec.event(end_t, "live", "summary",
                  f"{st['n_steps']} steps, {st['live_drops']} blocks dropped by the live "
                  f"processor, {st['errors']} errors")
        rec.event(end_t, "capture", "stop", f"{reason} after {end_t - t0:.1f} s")
        if tty:
            status_stream.write("\n")
        # without --body-mass, close() estimates it from the mean vertical force over whole steps
        end_attrs = None
        if belt_speeds:
            v = np.concatenate(belt_speeds).mean(axis=1)
            moving = v[v > 0.1]
            end_attrs = {"belt_speed_m_s": float(np.median(moving)) if moving.size else 0.0,
                         "belt_speed_source": "treadmill controller: median of /raw/belt "
                                              "while moving"}
        rec.close(status=status, attrs=end_attrs)
    _show(status_stream, False, time.monotonic() - t0, live, force, markers)
    _require_body_mass(path)
    log.info("%s: %s (%s)", path, status, reason)
    return path


def _require_body_mass(path: Path) -> None:
    """InputError when the finished recording has no body mass (none given and the plates were
    not loaded long enough to estimate it): the file is kept, and recover sets it."""
    with h5py.File(path, "r") as f:
        mass = f.attrs.get("body_mass_kg", float("nan"))
        how = str(f.attrs.get("body_mass_source", ""))
    if not (isinstance(mass, (int, float, np.floating)) and float(mass) > 0):
        raise InputError(path, "/@body_mass_kg", f"unknown ({how or 'not estimated'}); the "
                                                 f"recording is kept: give the mass with "
                                                 f"`treadlab recover {path} --body-mass KG`")


def _replay_end(lab, force_rate_hz: float, marker_rate_hz: float,
                timeout: float = FIRST_FRAMES_TIMEOUT_S) -> tuple[int, str, tuple[int, int]]:
    """Force frame number at which a replay capture stops, a ``/raw/log`` line, and the force
    and marker frame numbers of the recording's first sample.

    The device process decides when the recording starts playing (``tare_seconds + 1`` s after
    the reader opened the port, on frames ``on_frame`` / ``on_marker_frame``); recorded sample
    ``k`` (at ``k / force_rate_hz`` s, Hz) is force frame ``on_frame + k``. The capture stops at
    the frame :data:`REPLAY_TAIL_S` s after the last recorded sample; ``timeout`` s bounds the
    wait for the device process to report ``on_frame``.
    """
    deadline = time.monotonic() + timeout
    stats = lab.device_stats()
    while "on_frame" not in stats and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = lab.device_stats()
    if "on_frame" not in stats:
        raise DeviceError("simulated lab: the replay did not start (no reader on the treadmill "
                          "port?)")
    info = lab.replay
    on, mon = int(stats["on_frame"]), int(stats["on_marker_frame"])
    dur = float(info["duration_s"])
    end = on + int(round((dur + REPLAY_TAIL_S) * force_rate_hz))
    note = (f"{info['source']}: recorded time 0 s = force frame {on} ({force_rate_hz:g} Hz), "
            f"marker frame {mon} ({marker_rate_hz:g} Hz); {dur:.3f} s played once; capture "
            f"stops at force frame {end}")
    return end, note, (on, mon)


def _merge(blocks):
    """Consecutive blocks of one source as one block (less per-block work downstream)."""
    if len(blocks) <= 1:
        return blocks

    first = blocks[0]

    def cat(name):
        parts = [getattr(b, name) for b in blocks]
        if any(p is None for p in parts):
            return None
        return np.concatenate([np.broadcast_to(p, (len(b),) + np.shape(p)[1:])
                               for p, b in zip(parts, blocks)])

    return [Block(stream=first.stream, device_time=cat("device_time"),
                  host_time=cat("host_time"), data=cat("data"), raw=cat("raw"), seq=cat("seq"),
                  cop=cat("cop"))]


def _move(blocks, clock: SessionClock, rec: Recorder, live: LiveProcessor) -> int | None:
    """Blocks → clock fit, recorder, live processor; returns the last force frame number moved
    (None when no force block had frame numbers)."""
    last = None
    for b in _merge(blocks):
        clock.add(b.stream, b.device_time, b.host_time)
        t = clock.to_session(b.stream, b.device_time)
        rec.put(b, t)
        if b.stream == "force":
            live.put_force(t, b.data, b.seq)
        elif b.stream == "markers":
            live.put_markers(t, b.data)
        if b.stream == "force" and b.seq is not None and len(b.seq):
            last = int(b.seq[-1])
    return last


def _drops(*sources) -> int:
    total = 0
    for src in sources:
        c = src.counters
        total += int(c.get("drops", 0)) + int(c.get("overflow", 0))
    return total


def _show(stream, tty: bool, elapsed: float, live: LiveProcessor, *sources) -> None:
    line = format_status(elapsed, live.status(), _drops(*sources))
    try:
        if tty:
            stream.write("\r\033[K" + line)
        else:
            stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed terminal must not stop the capture
        pass


# The pieces a long-running recorder (treadlab.pipeline.station) shares with capture_session.
is_simulated = _is_simulated
cgm_labels = _cgm_labels
contact_params = _contact_params
merge_blocks = _merge
where = _where
