"""Vendor systems emulated in the simulated lab: ``treadlab simulate lab --protocol P``.

Each emulator speaks a vendor's documented network protocol on loopback, playing the
synthetic runner or a C3D recording in real time, so ``capture`` reads it through the
vendor's own client library exactly as it would read the real system:

- ``qtm``: Qualisys Track Manager's real-time protocol (TCP), read by the ``qualisys``
  source through ``qtm-rt`` (:mod:`treadlab.acquisition.sim.qtm_emulator`).

:func:`emulated_lab_config` turns a lab config into the one that reads the emulator;
:func:`serve_emulated_lab` serves it until Ctrl-C or a duration.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time

from treadlab.config.errors import ConfigError, DeviceError

PROTOCOLS = ("qtm",)


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
    from treadlab.acquisition.sim.qtm_emulator import qualisys_table

    table = qualisys_table(cfg, ("auto", 22223))
    return dataclasses.replace(
        cfg, forceplate=dataclasses.replace(cfg.forceplate, driver="qualisys"),
        markers=dataclasses.replace(cfg.markers, driver="qualisys"), qualisys=table)


def start_emulated_lab(cfg, protocol: str, params=None, replay=None, port: int = 0, **kw):
    """Start the emulator of ``protocol`` for ``cfg`` (see ``start_qtm_lab``)."""
    _check(protocol)
    from treadlab.acquisition.sim.qtm_emulator import start_qtm_lab

    return start_qtm_lab(cfg, params=params, replay=replay, port=port, **kw)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve_emulated_lab(config_path=None, protocol: str = "qtm", replay=None, duration_s=None,
                       params=None, port: int = 0, on_ready=None) -> dict:
    """``treadlab simulate lab --protocol P``: serve the emulator until Ctrl-C, SIGTERM or
    ``duration_s`` (s); ``port`` 0 = a free one. With ``replay`` and the shipped default lab,
    the lab is derived from the recording (its plate, rates and labels). ``on_ready(lab, cfg)``
    is called once the emulator listens (``cfg`` is the lab config that reads it). Returns the
    emulator's statistics."""
    from treadlab.config import load_lab

    _check(protocol)
    cfg = load_lab(config_path)
    if replay is not None:
        from treadlab.acquisition.sim.replay import replay_lab_config

        cfg = replay_lab_config(cfg, replay)
    lab = start_emulated_lab(cfg, protocol, params=params, replay=replay, port=port)
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
    if failed:
        raise DeviceError(f"simulated lab: the {protocol} emulator stopped")
    return stats or {}
