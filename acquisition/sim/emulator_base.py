"""What the vendor emulators share: the runner's parameters from a lab config, config tables as
dicts, and starting an emulator in its own interpreter with its spec.

An emulator process is ``python -m <module> <fd>``: it receives its spec (a pickled dict) over
the socket ``fd``, answers ``{"endpoints": …}`` once it listens (or ``{"error": …}``), then
serves until it receives ``("stop",)``, answering ``("stats",)`` with its counters — the
protocol :class:`~treadlab.acquisition.sim.simulated.SimulatedLab` speaks.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

from treadlab.acquisition.sim.synthetic import RunnerParams, parse_params
from treadlab.config.errors import DeviceError, TreadlabError


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
        why = (msg or {}).get("error") or (
            f"the device process exited with code {proc.returncode}" if proc.returncode
            else f"no answer within {start_timeout:.0f} s")
        raise DeviceError(f"{what}: {why}")
    return proc, conn, msg["endpoints"]


def serve_child(conn, name: str, make_server) -> None:
    """The body of an emulator process (``python -m <module> <fd>``): receive the spec over
    ``conn``, build the server with ``make_server(spec)``, answer ``{"endpoints": …}`` (or one
    ``{"error": …}`` line: a :class:`TreadlabError`'s text, else the exception's type and
    text, logged with its traceback), serve until stopped, close. Ctrl-C is the parent's to
    handle; the child's log lines are prefixed with ``name``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = conn.recv()
    logging.basicConfig(level=spec.get("log_level", logging.WARNING),
                        format=f"{name}: %(message)s")
    try:
        server = make_server(spec)
    except BaseException as exc:
        if not isinstance(exc, TreadlabError):
            logging.getLogger(__name__).exception("the %s cannot start", name)
        conn.send({"error": str(exc) if isinstance(exc, TreadlabError)
                   else f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"endpoints": server.endpoints()})
    try:
        server.run(conn)
    finally:
        server.close()
