"""Virtual devices: a treadmill on a pseudo-terminal and a mocap system on loopback UDP / LSL.

Building blocks (usable in-process by tests):

- :class:`PtyPort` — a pseudo-terminal in raw mode behind a stable symlink (like a udev
  ``/dev/serial/by-id`` name), which can vanish and return on a new pty.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import tempfile
import time
import tty

log = logging.getLogger(__name__)


class PtyPort:
    """A raw-mode pseudo-terminal reachable through a stable symlink.

    The device side writes to the pty master; a reader opens :attr:`path` (e.g. with
    ``serial.serial_for_url``). :meth:`vanish` closes the pty and removes the link (the reader
    gets a ``SerialException``); :meth:`restore` creates a new pty behind the same link.

    Parameters
    ----------
    directory : where the link lives (default: a new temporary directory, removed by close()).
    name : file name of the link.
    """

    def __init__(self, directory: str | None = None, name: str = "treadmill"):
        self._own_dir = directory is None
        self.directory = tempfile.mkdtemp(prefix="treadlab-lab-") if directory is None \
            else directory
        self.path = os.path.join(self.directory, name)
        self.master: int | None = None
        self.device: str | None = None
        self._pending = bytearray()
        self.restore()

    def restore(self) -> None:
        """(Re)create the pty and point the link at it."""
        if self.master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)           # binary data: no echo, no CR/LF mangling, no signals
        self.device = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        tmp = self.path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.device, tmp)
        os.replace(tmp, self.path)
        self._pending.clear()

    def vanish(self) -> None:
        """Close the pty and remove the link, as when a USB adapter is unplugged."""
        if self.master is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.master)
        self.master = None
        self._pending.clear()

    @property
    def present(self) -> bool:
        return self.master is not None

    def has_reader(self) -> bool:
        """True while some process has the port open (the master sees no hang-up)."""
        if self.master is None:
            return False
        p = select.poll()
        p.register(self.master, select.POLLHUP)
        return not any(ev & select.POLLHUP for _, ev in p.poll(0))

    @property
    def pending(self) -> int:
        """Bytes accepted by :meth:`write` but not yet taken by the pty."""
        return len(self._pending)

    def write(self, data: bytes = b"") -> int:
        """Queue ``data`` and push what the pty takes now (never blocks); bytes pushed."""
        if self.master is None:
            return 0
        self._pending += data
        done = 0
        while self._pending:
            try:
                n = os.write(self.master, self._pending)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EAGAIN):
                    break
                raise
            if n <= 0:
                break
            del self._pending[:n]
            done += n
        return done

    def drain(self, timeout: float) -> bool:
        """Keep pushing queued bytes until none are left or ``timeout`` s (monotonic) pass."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            if not self.write():
                time.sleep(0.002)
        return not self._pending

    def close(self) -> None:
        self.vanish()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
