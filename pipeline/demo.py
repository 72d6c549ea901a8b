"""``treadlab demo``: the main job on the embedded default lab.

Simulated lab (virtual treadmill on a pty, virtual mocap on loopback UDP) → capture
(:func:`treadlab.acquisition.capture.session.run_capture`, the same path a technician's session takes) →
processing (:func:`treadlab.pipeline.graph.process_session`) → the score table and the archive
path on stdout. The archive ends up holding the raw data, the contacts and the four scores.
"""
from __future__ import annotations

import logging
from pathlib import Path

from treadlab.acquisition.archive import read_derived
from treadlab.acquisition.capture.session import run_capture
from treadlab.pipeline.graph import process_session
from treadlab.pipeline.scoring import format_scores

log = logging.getLogger(__name__)

__all__ = ["run_demo", "format_demo"]


def run_demo(out_dir="treadlab-demo", seconds: float = 30.0, *, params: dict | None = None,
             status_stream=None) -> dict:
    """Capture ``seconds`` from the simulated lab and process the session.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder for the session archive (created if needed).
    seconds : float, s
        Capture length (at least 20 s are needed for 20 steps per side; shorter runs still
        work, with causes reported as not scored).
    params : dict, optional
        Synthetic-runner parameters (``{"pelvic_drop_deg": "8"}``).
    status_stream : file-like, optional
        Where the live capture status goes (default: nowhere; the CLI passes ``sys.stderr``).

    Returns
    -------
    dict
        ``{"path": archive, "summary": process_session's summary, "scores": /derived/scores
        columns or None}``; :func:`format_demo` turns it into the table the CLI prints.
        Errors raise ``TreadlabError``.
    """
    path = run_capture(None, subject="demo", body_mass_kg=None, duration_s=float(seconds),
                       out_dir=Path(out_dir), params=params, status_stream=status_stream)
    summary = process_session(path)
    derived = read_derived(path) or {}
    return {"path": path, "summary": summary, "scores": derived.get("scores")}


def format_demo(result: dict) -> str:
    """Contacts, the score table and the archive path of a :func:`run_demo` result."""
    summary = result.get("summary")
    n_contacts = summary.get("contacts", "?") if isinstance(summary, dict) else "?"
    valid = summary.get("valid_contacts", "?") if isinstance(summary, dict) else "?"
    scores = result.get("scores")
    lines = [f"contacts: {n_contacts} ({valid} valid)",
             format_scores(scores) if scores else "no scores were written",
             f"archive: {result['path']}"]
    return "\n".join(lines)
