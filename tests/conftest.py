"""Shared fixtures: the real recordings in ../shared/data and a machine-local LSL setup."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TREADLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """Path of a recording under ../shared/data; the calling test skips when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real recording not available: {path}")
    return path


def collect_blocks(src, n: int, timeout: float = 15.0) -> list:
    """Blocks read from an open source until ``n`` samples arrived or ``timeout`` s passed
    (a deadline on the monotonic clock, so a silent source cannot hang a test)."""
    blocks, got = [], 0
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        for b in src.read(0.1):
            blocks.append(b)
            got += len(b)
    return blocks


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder of real recordings (skip when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not available: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _lsl_machine_scope(tmp_path_factory):
    """Keep LSL discovery on this machine (docs/design.md §13.2): an lsl_api.cfg with machine scope."""
    cfg = tmp_path_factory.mktemp("lsl") / "lsl_api.cfg"
    cfg.write_text("[multicast]\nResolveScope = machine\n[ports]\nIPv6 = disable\n"
                   "[log]\nlevel = -2\n")
    os.environ["LSLAPICFG"] = str(cfg)
    yield
