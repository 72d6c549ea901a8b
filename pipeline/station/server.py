"""``treadlab station``: the station under uvicorn, until SIGTERM or Ctrl-C.

:func:`run_station` checks the address and token, builds the
:class:`~treadlab.pipeline.station.core.Station` (a bad lab config is a one-line error before
anything is opened) and serves :func:`~treadlab.pipeline.station.app.create_app` with uvicorn.
uvicorn turns SIGTERM and SIGINT into a graceful shutdown; the app's lifespan then stops the
station: a recording trial is closed ``complete``, the devices are closed, queued processing is
finished.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
import threading

import uvicorn
from uvicorn.config import WS_PROTOCOLS

from treadlab.config.errors import ConfigError
from treadlab.pipeline.station.app import create_app
from treadlab.pipeline.station.core import Station

log = logging.getLogger(__name__)

__all__ = ["run_station", "is_loopback", "TOKEN_ENV"]

#: Environment variable holding the access token (instead of ``--token`` on the command line).
TOKEN_ENV = "TREADLAB_STATION_TOKEN"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_free(host: str, port: int) -> None:
    """ConfigError naming ``--port`` when ``host:port`` cannot be listened on (before any
    device is opened: uvicorn would only find out after the station started)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(None, "--port", f"cannot listen on {host}:{port} "
                                              f"({exc.strerror or exc})") from None


def run_station(config_path=None, host: str = "127.0.0.1", port: int = 8750,
                data_dir="treadlab-station", token: str | None = None, *,
                params: dict | None = None, ready_stream=None) -> int:
    """Serve the station until SIGTERM / Ctrl-C; returns the exit code (0).

    Parameters
    ----------
    config_path : lab TOML (None: the shipped simulated lab).
    host, port : address to bind; any non-loopback address needs a token.
    data_dir : the runner folders.
    token : access token; default the ``TREADLAB_STATION_TOKEN`` environment variable.
    params : synthetic-runner parameters for a simulated lab.
    ready_stream : where the ``station ready: URL`` line goes (default stdout).

    Raises
    ------
    ConfigError naming ``--token`` or ``--port`` (or the lab file) before anything is opened.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise ConfigError(None, "--token", f"binding to {host} (not loopback) needs a token: "
                                           f"--token or ${TOKEN_ENV}")
    if token is not None and len(token) < 8:
        raise ConfigError(None, "--token", "must be at least 8 characters")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(None, "--port", f"must be 0-65535, got {port}")
    _check_free(host, int(port))
    station = Station(config_path, data_dir, params=params)
    app = create_app(station, token)
    out = sys.stdout if ready_stream is None else ready_stream

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                bound = port
                for server in getattr(self, "servers", []):
                    for sock in server.sockets:
                        bound = sock.getsockname()[1]
                shown = f"[{host}]" if ":" in host else host
                print(f"station ready: http://{shown}:{bound}/  (runner display: "
                      f"http://{shown}:{bound}/runner; data in {station.store.root})",
                      file=out, flush=True)

    ws = "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
    config = uvicorn.Config(app, host=host, port=int(port), log_level="warning",
                            lifespan="on", ws=ws, timeout_graceful_shutdown=5)
    server = _Server(config)
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown, lifespan stops the station) and
    # re-raises the signal it caught once it is done; these handlers receive that re-raise, so
    # a requested stop ends with exit code 0 instead of death by signal.
    stopped_by = []
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
    try:
        server.run()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if not server.started:
        return 1
    if stopped_by:
        log.info("station stopped by %s", signal.Signals(stopped_by[0]).name)
    return 0
