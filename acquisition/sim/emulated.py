"""Vendor systems emulated in the simulated lab: ``treadlab simulate lab --protocol P``.

Each emulator speaks a vendor's documented network protocol on loopback, playing the
synthetic runner or a C3D recording in real time, so ``capture`` reads it through the
vendor's own client library exactly as it would read the real system:

- ``qtm``: Qualisys Track Manager's real-time protocol (TCP), read by the ``qualisys``
  source through ``qtm-rt`` (:mod:`treadlab.acquisition.sim.qtm_emulator`): markers and
  force plates;
- ``natnet``: OptiTrack Motive's NatNet (UDP, unicast), read by the ``natnet`` source
  through the ``natnet`` client (:mod:`treadlab.acquisition.sim.natnet_emulator`): markers;
  the force plates stay the lab's (the simulated serial treadmill by default).

:func:`emulated_lab_config` turns a lab config into the one that reads the emulator;
:func:`serve_emulated_lab` serves it until Ctrl-C or a duration.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time

from treadlab.acquisition.sim.natnet_emulator import natnet_table, start_natnet_lab
from treadlab.acquisition.sim.qtm_emulator import qualisys_table, start_qtm_lab
from treadlab.acquisition.sim.replay import replay_lab_config
from treadlab.acquisition.sim.simulated import start_lab
from treadlab.acquisition.sim.treadmill_emulator import SimulatedTreadmill
from treadlab.config import load_lab
from treadlab.config.errors import ConfigError, DeviceError

PROTOCOLS = ("qtm", "natnet")


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(None, "--protocol", f"unknown protocol {protocol!r} (known: "
                          f"{', '.join(PROTOCOLS)})")


def emulated_lab_config(cfg, protocol: str):
    """``cfg`` read through an emulated vendor system.

    ``"qtm"``: both streams from the QTM emulator through the ``qualisys`` driver
    (``qualisys.host = "auto"``) with the emulated plates' mapping
    (:func:`~treadlab.acquisition.sim.qtm_emulator.qualisys_table`); rates (Hz), plates and
    marker labels stay ``cfg``'s.

    Raises
    ------
    ConfigError naming ``--protocol`` for a protocol the simulated lab does not emulate.
    """
    _check(protocol)
    if protocol == "natnet":
        return dataclasses.replace(cfg, markers=dataclasses.replace(cfg.markers,
                                                                     driver="natnet"),
                                   natnet=natnet_table(("auto", 1510)))
    table = qualisys_table(cfg, ("auto", 22223))
    return dataclasses.replace(
        cfg, forceplate=dataclasses.replace(cfg.forceplate, driver="qualisys"),
        markers=dataclasses.replace(cfg.markers, driver="qualisys"), qualisys=table)


def start_emulated_lab(cfg, protocol: str, params=None, replay=None, port: int = 0,
                       natnet_version: str = "3.1", **kw):
    """Start the emulator of ``protocol`` for ``cfg`` (``start_qtm_lab`` /
    ``start_natnet_lab``, speaking NatNet ``natnet_version``)."""
    _check(protocol)
    if protocol == "natnet":
        return start_natnet_lab(cfg, params=params, replay=replay, port=port,
                                natnet_version=natnet_version, **kw)
    return start_qtm_lab(cfg, params=params, replay=replay, port=port, **kw)


class LabPair:
    """The simulated treadmill (force) and an emulated mocap system (markers), as one lab:
    the endpoints of both, ``stop()`` stops both, ``device_stats()`` merges theirs."""

    def __init__(self, force_lab, marker_lab=None):
        self.force_lab, self.marker_lab = force_lab, marker_lab
        self.force_port = force_lab.force_port
        self.force_stream = force_lab.force_stream
        self.natnet_address = getattr(marker_lab, "natnet_address", None)
        self.marker_address = self.marker_stream = None
        self.subject = force_lab.subject
        self.replay = force_lab.replay

    @property
    def running(self) -> bool:
        return self.force_lab.running and (self.marker_lab is None or self.marker_lab.running)

    def vanish(self, seconds: float) -> None:
        self.force_lab.vanish(seconds)

    def device_stats(self, timeout: float = 5.0) -> dict:
        out = dict(self.marker_lab.device_stats(timeout)) if self.marker_lab else {}
        out.update(self.force_lab.device_stats(timeout))
        return out

    def stop(self, timeout: float = 5.0) -> dict:
        out = dict(self.marker_lab.stop(timeout)) if self.marker_lab else {}
        out.update(self.force_lab.stop(timeout))
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_natnet_pair(cfg, params=None, replay=None, **kw) -> LabPair:
    """Force from the simulated serial treadmill, markers from the NatNet emulator (both
    playing the same runner or recording, each from the moment its reader connects); with
    ``natnet.server`` other than "auto" only the treadmill is simulated and the markers come
    from that Motive."""
    # the treadmill's own mocap stream goes to a free loopback port nobody reads
    serial_cfg = dataclasses.replace(cfg, markers=dataclasses.replace(
        cfg.markers, driver="markers_udp", host="127.0.0.1", port=0))
    force_lab = start_lab(serial_cfg, params=params, replay=replay, **kw)
    if not _auto(cfg, "natnet", "server"):
        return LabPair(force_lab)
    try:
        marker_lab = start_natnet_lab(cfg, params=params, replay=replay,
                                      loop=kw.get("loop", True))
    except BaseException:
        force_lab.stop()
        raise
    return LabPair(force_lab, marker_lab)


def lab_starter(cfg):
    """The function that starts the simulated lab ``cfg`` asks for: the QTM emulator
    (``qualisys`` with host "auto"), the serial treadmill + NatNet emulator (``natnet``
    markers with server "auto"), or the simulated lab of :mod:`~treadlab.acquisition.sim.
    simulated`."""
    drivers = (cfg.forceplate.driver, cfg.markers.driver)
    if "qualisys" in drivers:
        return start_qtm_lab
    if cfg.markers.driver == "natnet":
        return start_natnet_pair
    return start_lab


def _auto(cfg, table: str, key: str) -> bool:
    t = getattr(cfg, table, None) or {}
    return str(t.get(key, "auto")) == "auto"


def asks_for_emulator(cfg) -> bool | None:
    """True/False when ``cfg`` names a vendor driver (its host "auto" or not); None when it
    names none (the simulated lab's own rules apply)."""
    if "qualisys" in (cfg.forceplate.driver, cfg.markers.driver):
        return _auto(cfg, "qualisys", "host")
    return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve_emulated_lab(config_path=None, protocol: str = "qtm", replay=None, duration_s=None,
                       params=None, port: int = 0, on_ready=None,
                       natnet_version: str = "3.1") -> dict:
    """``treadlab simulate lab --protocol P``: serve the emulator until Ctrl-C, SIGTERM or
    ``duration_s`` (s); ``port`` 0 = a free one. With ``replay`` and the shipped default lab,
    the lab is derived from the recording (its plate, rates and labels). A simulated Bertec
    treadmill controller is served beside it (``lab.treadmill_address``). ``on_ready(lab,
    cfg)`` is called once the emulator listens (``cfg`` is the lab config that reads it).
    Returns the emulator's statistics."""
    _check(protocol)
    cfg = load_lab(config_path)
    if replay is not None:
        cfg = replay_lab_config(cfg, replay)
    lab = start_emulated_lab(cfg, protocol, params=params, replay=replay, port=port,
                             natnet_version=natnet_version)
    try:
        treadmill = SimulatedTreadmill()
    except BaseException:
        lab.stop()
        raise
    lab.treadmill_address = treadmill.address
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _interrupt)
    deadline = None if duration_s is None else time.monotonic() + float(duration_s)
    failed = False
    try:
        if on_ready is not None:
            on_ready(lab, emulated_lab_config(cfg, protocol))
        while lab.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1 if deadline is None else
                       max(0.0, min(0.1, deadline - time.monotonic())))
        failed = not lab.running and (deadline is None or time.monotonic() < deadline)
    except KeyboardInterrupt:
        pass
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        stats = lab.stop()
        treadmill.stop()
    if failed:
        raise DeviceError(f"simulated lab: the {protocol} emulator stopped")
    return stats or {}
