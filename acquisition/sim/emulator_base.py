"""What the vendor emulators share: the runner's parameters from a lab config, config tables as
dicts, and starting an emulator in its own interpreter with its spec.

An emulator process is ``python -m <module> <fd>``: it receives its spec (a pickled dict) over
the socket ``fd``, answers ``{"endpoints": …}`` once it listens (or ``{"error": …}``), then
serves until it receives ``("stop",)``, answering ``("stats",)`` with its counters — the
protocol :class:`~treadlab.acquisition.sim.simulated.SimulatedLab` speaks.
"""
from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

from treadlab.acquisition.sim.synthetic import RunnerParams, parse_params
from treadlab.config.errors import DeviceError


def plain_table(obj) -> dict:
    """A config table (dataclass, namespace or dict) as a dict (``{}`` for None)."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def runner_params(cfg, params=None) -> RunnerParams:
    """Synthetic-runner parameters: the config's ``[simulator]`` table overridden by
    ``params``; the runner's belt layout follows ``[lab] belt``."""
    if isinstance(params, RunnerParams):
        return params
    values = {k: v for k, v in plain_table(getattr(cfg, "simulator", None)).items()
              if v is not None}
    values.update(params or {})
    belt = getattr(getattr(cfg, "lab", None), "belt", None)
    if "belt" not in values and belt in ("split", "single"):
        values["belt"] = belt
    return parse_params(values, source=getattr(cfg, "path", None))


def spawn(module: str, spec: dict, what: str, start_timeout: float = 60.0):
    """Start ``python -m module`` with ``spec``; (process, connection, endpoints).

    Raises DeviceError naming ``what`` when it reports an error or does not answer within
    ``start_timeout`` s.
    """
    parent_sock, child_sock = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", module, str(child_sock.fileno())],
                            pass_fds=[child_sock.fileno()], stdin=subprocess.DEVNULL,
                            start_new_session=True)
    child_sock.close()
    conn = Connection(parent_sock.detach())
    conn.send(spec)
    msg = None
    deadline = time.monotonic() + start_timeout
    while msg is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            if conn.poll(0.1):
                msg = conn.recv()
        except (EOFError, OSError):
            break
    if not msg or "endpoints" not in msg:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(5.0)
        conn.close()
        raise DeviceError(f"{what}: {(msg or {}).get('error') or 'the process did not start'}")
    return proc, conn, msg["endpoints"]
