"""The station's runner folders: one folder per runner, one archive and one sidecar per trial.

Layout under the station's data folder (``--data``)::

    <data>/<runner id>/runner.json                     pseudonymous id, body mass (kg), leg
                                                       length (mm), created (UTC)
    <data>/<runner id>/<NN>_<kind>_<UTC>.h5            the trial's session archive
    <data>/<runner id>/<NN>_<kind>_<UTC>.json          its sidecar: settings, status, results
    <data>/<runner id>/<NN>_<kind>_<UTC>_report/       the HTML report once processed

``NN`` numbers the runner's trials from 01; ``kind`` is ``static`` or ``running``. Every JSON
file is written to a temporary name and renamed over the old one, so a killed station leaves
either the old or the new sidecar, never half of one. A sidecar whose ``status`` is still
``recording`` when the station starts belongs to a trial the station did not finish: it is
recovered (:func:`treadlab.acquisition.capture.recorder.recover`) and listed as ``interrupted``.

Trial statuses: ``recording`` → ``processing`` → ``done``; ``interrupted`` (the station died
mid-trial, recovered, then processed), ``failed`` (recording or processing raised; ``error``
says why).
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from treadlab.config.errors import InputError, TreadlabError

__all__ = ["RequestError", "RunnerStore", "safe_id", "utc_now", "write_json"]


class RequestError(TreadlabError):
    """A request the station refuses: ``"<field>: <why>"`` with an HTTP status.

    ``status`` is 400 for a bad value, 404 for something that does not exist, 409 for a request
    the station's state forbids now (a trial running, a device unhealthy).
    """

    def __init__(self, field: str, message: str, status: int = 400):
        self.field, self.message, self.status = field, message, int(status)
        super().__init__(f"{field}: {message}")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def safe_id(value, field: str = "runner.id") -> str:
    """A pseudonymous id usable as a folder name (letters, digits, ``.``, ``_``, ``-``; ≤ 64).

    Raises
    ------
    RequestError naming ``field`` for anything else (no silent rewriting of ids).
    """
    text = str(value if value is not None else "").strip()
    if not _ID.match(text) or text in (".", ".."):
        raise RequestError(field, f"must be 1-64 letters, digits, '.', '_' or '-' starting "
                                      f"with a letter or digit, got {text!r}")
    return text


def write_json(path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=_plain)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class RunnerStore:
    """Runner folders and trial sidecars under ``root``.

    Parameters
    ----------
    root : str or os.PathLike
        The station's data folder (created when missing).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def runner_dir(self, runner_id: str) -> Path:
        return self.root / safe_id(runner_id)

    def save_runner(self, runner: dict) -> Path:
        """Create or update ``<root>/<id>/runner.json``; returns the folder."""
        d = self.runner_dir(runner["id"])
        d.mkdir(parents=True, exist_ok=True)
        path = d / "runner.json"
        old = {}
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
        data = {**old, "created_utc": old.get("created_utc", utc_now()), **runner,
                "updated_utc": utc_now()}      # kept: the static values of an earlier visit
        write_json(path, data)
        return d

    def load_runner(self, runner_id: str) -> dict | None:
        path = self.runner_dir(runner_id) / "runner.json"
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def next_trial_stem(self, runner_id: str, kind: str, when: datetime | None = None) -> str:
        """``<NN>_<kind>_<YYYYmmddTHHMMSSZ>``, NN one more than the runner's last trial."""
        d = self.runner_dir(runner_id)
        numbers = [int(p.name[:2]) for p in d.glob("[0-9][0-9]_*.json")]
        when = when or datetime.now(timezone.utc)
        return f"{max(numbers, default=0) + 1:02d}_{kind}_{when.strftime('%Y%m%dT%H%M%SZ')}"

    def save_trial(self, trial: dict) -> None:
        """Write the trial's sidecar (``trial["sidecar"]`` is its path)."""
        write_json(trial["sidecar"], trial)

    def trials(self) -> list[dict]:
        """Every trial sidecar under the root, oldest first (by file name within a runner)."""
        out = []
        for runner in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for side in sorted(runner.glob("[0-9][0-9]_*.json")):
                try:
                    out.append(json.loads(side.read_text(encoding="utf-8")))
                except (OSError, ValueError) as exc:
                    raise InputError(side, None, f"unreadable trial sidecar ({exc})") from None
        out.sort(key=lambda t: (t.get("started_utc", ""), t.get("id", "")))
        return out
