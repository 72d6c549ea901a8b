"""The derivation with the compiled filter and re-zeroing kernels gives what it gave with
``scipy.signal.sosfiltfilt`` and the NumPy re-zeroing: every derived value within 1e-9, on a
synthetic split-belt session with drift, a single-belt session with marker gaps, and a real
recording."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from tests.conftest import shared_file
from treadlab.kernels import _contacts_ref
from treadlab.pipeline import derive
from treadlab.pipeline.derive import DeriveSettings, force_task, marker_task, step_task

pytestmark = pytest.mark.timeout(300)

ATOL = 1e-9


def scipy_lowpass(x, rate_hz, cutoff_hz, order, dtype=np.float64, out=None):
    """The pipeline's low-pass before the kernel: SciPy per column, gaps bridged by
    ``np.interp``, columns with at most 3 (2 s + 1) finite samples left unfiltered."""
    x = np.asarray(x)
    if not cutoff_hz or cutoff_hz >= 0.5 * rate_hz or x.shape[0] == 0:
        return np.array(x, dtype=dtype)
    sos = butter(int(order), cutoff_hz / (0.5 * rate_hz), output="sos")
    n = x.shape[0]
    rows = np.ascontiguousarray(x.reshape(n, -1).T, dtype=np.float64)
    finite = np.isfinite(rows)
    n_ok = finite.sum(axis=1)
    ok = n_ok > 3 * (2 * sos.shape[0] + 1)
    idx = np.arange(n)
    for j in np.flatnonzero(ok & (n_ok < n)):
        good = finite[j]
        rows[j, ~good] = np.interp(idx[~good], idx[good], rows[j, good])
    if ok.any():
        rows[ok] = sosfiltfilt(sos, rows[ok], axis=1)
    rows[~finite] = np.nan
    result = np.ascontiguousarray(rows.T).reshape(x.shape).astype(dtype)
    if out is not None:
        out[...] = result
        return out
    return result


def _derive(session, settings):
    fo = force_task(session.force, session.attrs.get("body_mass_kg"), settings)
    mo = marker_task(session.markers, session.subject, settings)
    return {"force": fo, "markers": mo, "steps": step_task(fo, mo, settings)}


def _derive_with_scipy(monkeypatch, session, settings):
    from treadlab.kernels import contacts

    with monkeypatch.context() as m:
        m.setattr(derive, "lowpass", scipy_lowpass)
        m.setattr(contacts, "rezero_flight", _contacts_ref.rezero_flight)
        return _derive(session, settings)


def assert_same(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) and a.dtype.kind == "f":
        assert a.shape == b.shape and a.dtype == b.dtype, path
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=path)
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL, err_msg=path)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    elif isinstance(a, float):
        assert abs(a - b) <= ATOL, path
    else:
        assert a == b, path


def _copy(session):
    """The session with its marker positions copied (marker_task may filter in place)."""
    session.markers.positions = np.array(session.markers.positions)
    return session


def test_synthetic_sessions_unchanged(monkeypatch):
    from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session

    split = simulate_session(RunnerParams(duration_s=40.0, seed=4, drift_n_per_s=1.0))
    assert_same(_derive(_copy(split), DeriveSettings()),
                _derive_with_scipy(monkeypatch, _copy(split), DeriveSettings()))

    single = simulate_session(RunnerParams(duration_s=30.0, seed=5, belt="single"))
    pos = single.markers.positions
    pos[100:160, 3, :] = np.nan          # a long gap (not filled: longer than max_gap_s)
    pos[::37, 5, 1] = np.nan             # scattered dropouts
    s = DeriveSettings(belt="single")
    got = _derive(_copy(single), s)
    assert_same(got, _derive_with_scipy(monkeypatch, _copy(single), s))
    assert got["steps"]["t_strike"].size > 50


def test_real_recording_unchanged(monkeypatch):
    c3d_import = pytest.importorskip("treadlab.acquisition.io.c3d_import")
    session = c3d_import.read_c3d(shared_file("running", "RBDS001runT35.c3d"))
    s = DeriveSettings(belt="single")
    got = _derive(_copy(session), s)
    assert_same(got, _derive_with_scipy(monkeypatch, _copy(session), s))
    assert 77 <= np.count_nonzero(got["steps"]["valid"]) <= 92
