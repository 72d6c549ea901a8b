"""``treadlab demo``: the main job on the embedded default lab.

Simulated lab (virtual treadmill on a pty, virtual mocap on loopback UDP) → capture
(:func:`treadlab.acquisition.capture.session.run_capture`, the same path a technician's session takes) →
processing (:func:`treadlab.pipeline.graph.process_session`) → the score table and the archive
path on stdout. The archive ends up holding the raw data, the contacts and the four scores.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["run_demo"]


def run_demo(out_dir="treadlab-demo", seconds: float = 30.0, *, params: dict | None = None,
             stdout=None, status_stream=None) -> int:
    """Capture ``seconds`` from the simulated lab, process the session and print its scores.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder for the session archive (created if needed).
    seconds : float, s
        Capture length (at least 20 s are needed for 20 steps per side; shorter runs still
        work, with causes reported as not scored).
    params : dict, optional
        Synthetic-runner parameters (``{"pelvic_drop_deg": "8"}``).
    stdout : file-like, optional
        Where the table and path go (default ``sys.stdout``).
    status_stream : file-like, optional
        Where the live capture status goes (default ``sys.stderr``).

    Returns
    -------
    int : exit code, 0 on success (errors raise ``TreadlabError`` for the CLI to report).
    """
    from treadlab.acquisition.archive import read_derived
    from treadlab.acquisition.capture.session import run_capture
    from treadlab.pipeline.graph import process_session
    from treadlab.pipeline.scoring import format_scores

    out = sys.stdout if stdout is None else stdout
    path = run_capture(None, subject="demo", body_mass_kg=None, duration_s=float(seconds),
                       out_dir=Path(out_dir), params=params, status_stream=status_stream)
    summary = process_session(path)
    derived = read_derived(path) or {}
    scores = derived.get("scores")
    n_contacts = summary.get("contacts", "?") if isinstance(summary, dict) else "?"
    valid = summary.get("valid_contacts", "?") if isinstance(summary, dict) else "?"
    print(f"contacts: {n_contacts} ({valid} valid)", file=out)
    if scores:
        print(format_scores(scores), file=out)
    else:
        print("no scores were written", file=out)
    print(f"archive: {path}", file=out)
    return 0
