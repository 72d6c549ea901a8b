"""Helpers for the station tests: a real ``treadlab station`` process on 127.0.0.1 (random free
port, every wait bounded), plain HTTP calls (urllib) and the lab TOML the tests use."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from treadlab.config.loader import shipped_lab_path

#: s: the longest a test waits for the station to come up.
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_toml(folder: Path, min_steps_per_side: int = 5) -> Path:
    """The shipped simulated lab, scoring from ``min_steps_per_side`` steps per side (short
    test trials of ~8 s hold about 12 steps per side)."""
    text = shipped_lab_path("simulated").read_text(encoding="utf-8")
    assert "min_steps_per_side = 20" in text
    path = folder / "lab.toml"
    path.write_text(text.replace("min_steps_per_side = 20",
                                 f"min_steps_per_side = {min_steps_per_side}"), encoding="utf-8")
    return path


class StationProcess:
    """``treadlab station`` in a subprocess; ``url`` once ready."""

    def __init__(self, data: Path, config: Path | None = None, token: str | None = None,
                 port: int | None = None):
        self.data, self.config, self.token = data, config, token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = data.parent / f"station-{self.port}.log"

    def start(self) -> "StationProcess":
        cmd = [sys.executable, "-m", "treadlab.pipeline.cli", "station", "--port",
               str(self.port), "--data", str(self.data)]
        if self.config:
            cmd += ["--config", str(self.config)]
        if self.token:
            cmd += ["--token", self.token]
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        os.set_blocking(self.proc.stdout.fileno(), False)
        seen = b""
        while time.monotonic() < deadline:
            chunk = self.proc.stdout.read() or b""
            seen += chunk
            if b"station ready" in seen:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"station did not start: {seen!r}\n{self.log.read_text()[-3000:]}")

    def call(self, method: str, path: str, body=None, token: str | None = "default",
             timeout: float = 30.0):
        """(status, JSON) of one request."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait(self, predicate, timeout: float, what: str, every: float = 0.25):
        """Poll ``GET /api/state`` until ``predicate(state)`` is truthy; returns the state."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            status, state = self.call("GET", "/api/state")
            if status == 200 and predicate(state):
                return state
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last state: "
                             f"{json.dumps(state)[:3000]}")

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "_log"):
            self._log.close()


@pytest.fixture
def station_factory(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("data", tmp_path / "data")
        st = StationProcess(**kw)
        made.append(st)
        return st.start()

    yield make
    for st in made:
        st.kill()


def wait_healthy(st: StationProcess, timeout: float = 30.0) -> dict:
    return st.wait(lambda s: s["health"] and all(h["healthy"] for h in s["health"].values()),
                   timeout, "healthy devices")


def trial_done(st: StationProcess, tid: str, timeout: float = 120.0) -> dict:
    state = st.wait(lambda s: any(t["id"] == tid and t.get("processing") in ("done", "failed")
                                  for t in s["trials"]), timeout, f"{tid} processed")
    return next(t for t in state["trials"] if t["id"] == tid)
