"""Zero-phase low-pass filtering: compiled and reference implementations against
``scipy.signal.sosfiltfilt`` (edges and padding included), NaN gaps, short and empty input,
float32, validation, and real recordings."""
from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from tests.conftest import shared_file
from treadlab.kernels import _compiled, _filters_ref, filters

pytestmark = pytest.mark.timeout(120)

IMPLS = {"compiled": filters.sosfiltfilt, "reference": _filters_ref.sosfiltfilt}
#: Absolute tolerance against SciPy on signals of realistic magnitude (force 0-3000 N, marker
#: positions ±2000 mm). Both implementations use SciPy's arithmetic in SciPy's order, so the
#: observed difference is 0 or a few ulps; RTOL bounds it relative to the signal's range.
ATOL = 1e-9
RTOL = 1e-12


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def assert_close(got, want, scale=None):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    if not ok.any():
        return
    err = np.max(np.abs(got[ok] - want[ok]))
    scale = scale if scale is not None else max(np.max(np.abs(want[ok])), 1.0)
    assert err <= ATOL, f"max abs error {err:.3g} > {ATOL}"
    assert err <= RTOL * scale, f"max relative error {err / scale:.3g} > {RTOL}"


def force_like(n, k, rng):
    """(n, k) float64 N: half-sine stance bumps up to ~2500 N plus noise and an offset."""
    t = np.arange(n) / 1000.0
    bump = np.clip(np.sin(2 * np.pi * 1.4 * t[:, None] + rng.uniform(0, 6, k)), 0, None)
    return 2500.0 * bump ** 1.5 + rng.normal(0, 15, (n, k)) + rng.uniform(-20, 20, k)


def markers_like(n, k, rng):
    """(n, k) float64 mm: ±2000 mm trajectories with 1-3 Hz motion and noise."""
    t = np.arange(n) / 200.0
    motion = 300 * np.sin(2 * np.pi * rng.uniform(1, 3, k) * t[:, None])
    return rng.uniform(-1500, 1500, k) + motion + rng.normal(0, 0.5, (n, k))


def scipy_per_channel_nan_bridge(sos, x):
    """The pipeline's behaviour before the kernel (``derive.lowpass`` with SciPy), per column:
    missing samples bridged by ``np.interp``, ``sosfiltfilt`` when the column has more than
    3 (2 s + 1) finite samples, NaN put back."""
    x = np.array(x, dtype=np.float64)
    n = x.shape[0]
    cols = x.reshape(n, -1)
    limit = 3 * (2 * sos.shape[0] + 1)
    idx = np.arange(n)
    for j in range(cols.shape[1]):
        good = np.isfinite(cols[:, j])
        if good.sum() > limit:
            col = cols[:, j].copy()
            col[~good] = np.interp(idx[~good], idx[good], col[good])
            cols[:, j] = sosfiltfilt(sos, col)
        cols[~good, j] = np.nan
    return cols.reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# agreement with scipy.signal.sosfiltfilt

@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("wn", [0.02, 0.1, 0.45])
def test_matches_scipy_on_force_like_signals(impl, order, wn):
    rng = np.random.default_rng(order * 100 + int(wn * 100))
    sos = butter(order, wn, output="sos")
    x = force_like(3000 if impl is filters.sosfiltfilt else 800, 3, rng)
    assert_close(impl(sos, x), sosfiltfilt(sos, x, axis=0))


@pytest.mark.parametrize("order", [2, 4, 7])
def test_matches_scipy_on_marker_like_signals(impl, order):
    rng = np.random.default_rng(order)
    sos = butter(order, 6.0 / 100.0, output="sos")
    x = markers_like(1500, 12, rng)
    assert_close(impl(sos, x), sosfiltfilt(sos, x, axis=0))


def test_padding_and_initial_conditions_are_scipys(impl):
    """The ends depend on the odd extension, its length and the scaled initial conditions: a
    signal just long enough to be filtered, with a steep ramp and a large offset at both
    ends, matches SciPy's defaults and differs from other paddings."""
    for order in (3, 4):  # odd order: a first-order section, so padlen < min_finite
        sos = butter(order, 0.2, output="sos")
        assert filters.padlen(sos) == _filters_ref.padlen(sos) == \
            3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
        n = filters.min_finite(sos) + 1
        x = 1000.0 + 50.0 * np.arange(n) ** 1.5 + np.random.default_rng(order).normal(0, 5, n)
        want = sosfiltfilt(sos, x)
        assert_close(impl(sos, x), want)
        other = sosfiltfilt(sos, x, padtype="even")
        assert np.max(np.abs(want - other)) > 1.0  # the test can tell paddings apart
    assert filters.padlen(butter(3, 0.2, output="sos")) == 12
    assert filters.min_finite(butter(3, 0.2, output="sos")) == 15


def test_initial_conditions_match_scipy():
    from scipy.signal import sosfilt_zi

    for order in (1, 2, 3, 4, 8):
        sos = butter(order, 0.1, output="sos")
        np.testing.assert_allclose(_filters_ref.sosfilt_zi(sos), sosfilt_zi(sos), rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_array_equal(filters.sosfilt_zi(sos), sosfilt_zi(sos))


def test_compiled_matches_reference_on_many_channels():
    rng = np.random.default_rng(7)
    sos = butter(4, 0.08, output="sos")
    x = markers_like(700, 19, rng)  # 19 channels: blocks of 8, 8 and 3 in the kernel
    x[rng.random(x.shape) < 0.02] = np.nan
    x[100:180, 4] = np.nan
    assert_close(filters.sosfiltfilt(sos, x), _filters_ref.sosfiltfilt(sos, x))


@pytest.mark.parametrize("block", [1, 3, 8])
def test_block_width_does_not_change_the_result(monkeypatch, block):
    """Channels filtered side by side share nothing: any block width gives the same bits."""
    rng = np.random.default_rng(3)
    sos = butter(4, 0.05, output="sos")
    x = force_like(2000, 11, rng)
    want = sosfiltfilt(sos, x, axis=0)
    monkeypatch.setattr(filters, "_MAX_BLOCK", block)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x), want)


def test_scratch_and_in_place_paths_agree(monkeypatch):
    """float64 into a new array filters inside it; float32 or in place goes through a float64
    scratch whose width the memory budget limits (down to one channel): same bits."""
    rng = np.random.default_rng(12)
    sos = butter(4, 0.07, output="sos")
    x = markers_like(3000, 10, rng)
    x[200:260, 3] = np.nan
    want = scipy_per_channel_nan_bridge(sos, x)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x), want)
    monkeypatch.setattr(filters, "_WORK_BYTES", 1)  # one channel at a time
    y = x.copy()
    assert filters.sosfiltfilt(sos, y, out=y) is y
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x, dtype=np.float32),
                                  want.astype(np.float32))


@pytest.mark.skipif("avx2" not in _compiled.cpu_flags() or
                    importlib.util.find_spec("treadlab.kernels._filters_cy_avx2") is None,
                    reason="no AVX2 CPU or no AVX2 build")
def test_avx2_build_gives_the_baseline_bits(monkeypatch):
    """The AVX2 build (no fused multiply-add) rounds as the baseline build: the same bits on
    every path (2 and many channels, blocks, gaps, float32 in place, strided, every order)."""
    rng = np.random.default_rng(31)
    x = markers_like(2500, 45, rng)
    x[rng.random(x.shape) < 0.003] = np.nan
    x[300:420, 7] = np.nan
    x[:, 9] = np.nan
    w = force_like(3000, 6, rng)
    cases = [(x, {}), (x, {"dtype": np.float32}), (x[:, 20:], {}), (w[:, [0, 2]], {}),
             (w, {}), (w.astype(np.float32), {"dtype": np.float32}), (np.zeros((0, 3)), {}),
             (np.asfortranarray(w[:, :2]), {}), (np.asfortranarray(w[:, :4]), {})]
    builds = {}
    for name in ("_filters_cy_avx2", "_filters_cy"):
        monkeypatch.setattr(filters, "compiled", lambda _, m=name, **__: importlib.import_module(
            f"treadlab.kernels.{m}"))
        got = []
        for order in (1, 2, 3, 4, 5, 8):
            sos = butter(order, 0.06, output="sos")
            got += [filters.sosfiltfilt(sos, a, **kw) for a, kw in cases]
            y = x.astype(np.float32)
            got.append(filters.sosfiltfilt(sos, y, dtype=np.float32, out=y))
        builds[name] = got
    for a, b in zip(*builds.values()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("c, avx2", [(1, True), (2, False), (3, True), (60, True)])
def test_two_channels_take_the_baseline_build(monkeypatch, c, avx2):
    """Two channels (a plate's Fx and Fz) run latency-bound with their states in registers,
    which the baseline build compiles better; wider rows may take the AVX2 build."""
    asked = []

    def spy(name, avx2=True):
        asked.append(avx2)
        return _compiled.compiled(name, avx2=avx2)

    monkeypatch.setattr(filters, "compiled", spy)
    x = force_like(500, c, np.random.default_rng(c))
    sos = butter(4, 0.1, output="sos")
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x), sosfiltfilt(sos, x, axis=0))
    assert asked == [avx2]


def test_four_channels_give_the_bits_of_two_plates_filtered_apart():
    """Two plates' Fx and Fz filtered as four channels side by side (states in registers), as
    force_task does, give each channel the bits of its plate filtered alone, and SciPy's, with
    and without a gap, float32 columns (as ``wrench[:, [0, 2, 6, 8]]`` gives them) included."""
    rng = np.random.default_rng(44)
    sos = butter(4, 0.1, output="sos")
    x = force_like(4000, 4, rng)
    for gap in (False, True):
        if gap:
            x[1500:1530, 3] = np.nan
        for a in (x, np.asfortranarray(x.astype(np.float32))):
            got = filters.sosfiltfilt(sos, a)
            np.testing.assert_array_equal(got[:, :2], filters.sosfiltfilt(sos, a[:, :2]))
            np.testing.assert_array_equal(got[:, 2:], filters.sosfiltfilt(sos, a[:, 2:]))
            np.testing.assert_array_equal(got, scipy_per_channel_nan_bridge(sos, a))


# ---------------------------------------------------------------------------------------------
# missing samples, short and empty input

def test_nan_gaps_bridged_as_the_pipeline_did(impl):
    rng = np.random.default_rng(11)
    sos = butter(4, 0.06, output="sos")
    x = markers_like(1200, 8, rng)
    x[:40, 0] = np.nan                  # leading gap: held at the first finite value
    x[-25:, 1] = np.nan                 # trailing gap
    x[300:420, 2] = np.nan              # long interior gap
    x[rng.random(1200) < 0.1, 3] = np.nan  # scattered dropouts
    x[500, 4] = np.inf                  # ±inf counts as missing and comes out NaN
    x[501, 4] = -np.inf
    x[:, 5] = np.nan                    # all missing
    x[:1200 - 10, 6] = np.nan           # 10 finite samples: too few, unfiltered
    got = impl(sos, x)
    want = scipy_per_channel_nan_bridge(sos, x)
    assert_close(got, want)
    assert np.isnan(got[500:502, 4]).all() and np.isfinite(got[:500, 4]).all()
    np.testing.assert_array_equal(got[-10:, 6], x[-10:, 6])  # copied as is
    assert np.isnan(got[:, 5]).all()
    assert_close(got[:, 7], sosfiltfilt(sos, x[:, 7]))  # untouched column: plain sosfiltfilt


@pytest.mark.parametrize("c", [1, 2, 3, 5, 7, 16, 17, 40])
def test_a_single_missing_sample_is_found_anywhere(c):
    """The kernel tells complete columns from the others in one pass (few contiguous columns:
    x taken as one flat run in steps of whole rows, then the rows left over): one NaN in the
    first row, in the last row (after the last whole step for most widths) or in the middle of
    any column is found, bridged and NaN in the result, float32 and float64, in place too."""
    rng = np.random.default_rng(c)
    sos = butter(4, 0.1, output="sos")
    n = 1001
    for row in (0, n // 2, n - 1):
        for j in sorted({0, c // 2, c - 1}):
            x = markers_like(n, c, rng)
            x[row, j] = np.nan
            want = scipy_per_channel_nan_bridge(sos, x)
            assert_close(filters.sosfiltfilt(sos, x), want)
            y = x.astype(np.float32)
            want32 = scipy_per_channel_nan_bridge(sos, y).astype(np.float32)
            np.testing.assert_array_equal(filters.sosfiltfilt(sos, y, dtype=np.float32, out=y),
                                          want32)


def test_channels_with_too_few_samples_are_returned_unfiltered(impl):
    sos = butter(4, 0.2, output="sos")
    limit = filters.min_finite(sos)
    x = np.random.default_rng(2).normal(100, 10, (limit, 2))
    x[3, 1] = np.nan
    got = impl(sos, x)
    np.testing.assert_array_equal(got[:, 0], x[:, 0])
    assert np.isnan(got[3, 1]) and np.array_equal(np.delete(got[:, 1], 3), np.delete(x[:, 1], 3))
    x1 = np.random.default_rng(2).normal(100, 10, limit + 1)  # one more: filtered
    assert_close(impl(sos, x1), sosfiltfilt(sos, x1))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (0, 4, 3), (50, 0)])
def test_empty_input(impl, shape):
    sos = butter(2, 0.1, output="sos")
    got = impl(sos, np.zeros(shape))
    assert got.shape == shape and got.dtype == np.float64


def test_float32_input_is_filtered_in_float64(impl):
    rng = np.random.default_rng(5)
    sos = butter(4, 6.0 / 75.0, output="sos")
    x32 = markers_like(900, 6, rng).astype(np.float32)
    x32[200:230, 1] = np.nan
    want = scipy_per_channel_nan_bridge(sos, x32.astype(np.float64))
    got = impl(sos, x32)
    assert got.dtype == np.float64
    assert_close(got, want)
    got32 = impl(sos, x32, dtype=np.float32)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32, want.astype(np.float32))  # one rounding, at the end


def test_in_place_and_any_shape():
    rng = np.random.default_rng(9)
    sos = butter(4, 0.05, output="sos")
    pos = markers_like(600, 12, rng).astype(np.float32).reshape(600, 4, 3)
    pos[50:70, 2, :] = np.nan
    want = scipy_per_channel_nan_bridge(sos, pos.astype(np.float64)).astype(np.float32)
    out = filters.sosfiltfilt(sos, pos, dtype=np.float32, out=pos)
    assert out is pos
    np.testing.assert_array_equal(pos, want)
    # strided input (a column selection) and an output view are fine
    w = force_like(1000, 6, rng)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, w[:, [0, 2]]),
                                  sosfiltfilt(sos, w[:, [0, 2]], axis=0))
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, w[:, 2]), sosfiltfilt(sos, w[:, 2]))


@pytest.mark.parametrize("order", [3, 4])
def test_complete_channels_are_filtered_straight_from_x(order):
    """Two sections over complete channels read the signal straight from ``x`` (no copy first):
    float32 in place, float64 into a new array, strided and reversed input, and a block with a
    gap next to complete ones, all as SciPy."""
    rng = np.random.default_rng(order)
    sos = butter(order, 0.06, output="sos")
    x = markers_like(1500, 80, rng)
    want = scipy_per_channel_nan_bridge(sos, x)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x), want)
    y = x.astype(np.float32)
    want32 = scipy_per_channel_nan_bridge(sos, y).astype(np.float32)
    assert filters.sosfiltfilt(sos, y, dtype=np.float32, out=y) is y
    np.testing.assert_array_equal(y, want32)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x[:, ::2]), want[:, ::2])
    np.testing.assert_array_equal(filters.sosfiltfilt(sos, x[::-1]),
                                  scipy_per_channel_nan_bridge(sos, x[::-1]))
    x[100:130, 5] = np.nan  # the first block has a gap, the others are complete
    assert_close(filters.sosfiltfilt(sos, x), scipy_per_channel_nan_bridge(sos, x))


@pytest.mark.parametrize("c", [1, 2, 4, 5])
def test_fortran_order_input(c):
    """Columns contiguous, as ``w[:, j, [0, 2]]`` gives them: counted and copied column by
    column; a missing sample at either end or after the last whole step of the count is found."""
    rng = np.random.default_rng(20 + c)
    sos = butter(4, 0.08, output="sos")
    n = 1003  # not a multiple of the count's step
    for row in (None, 0, n // 2, n - 1):
        x = np.asfortranarray(force_like(n, c, rng))
        if row is not None:
            x[row, c - 1] = np.nan
        assert x.flags.f_contiguous
        want = scipy_per_channel_nan_bridge(sos, x)
        np.testing.assert_array_equal(filters.sosfiltfilt(sos, x), want)
        np.testing.assert_array_equal(filters.sosfiltfilt(sos, x.astype(np.float32, order="F")),
                                      scipy_per_channel_nan_bridge(sos, x.astype(np.float32)))


def test_lowpass_designs_a_butterworth():
    rate = 200.0
    t = np.arange(2000) / rate
    slow = np.sin(2 * np.pi * 2.0 * t)
    noisy = slow + 0.3 * np.sin(2 * np.pi * 60.0 * t)
    y = filters.lowpass(noisy, rate, 12.0, 4)
    assert_close(y, sosfiltfilt(butter(4, 12.0 / 100.0, output="sos"), noisy))
    assert np.max(np.abs(y[100:-100] - slow[100:-100])) < 0.01  # zero lag, noise gone
    assert_close(_filters_ref.lowpass(noisy, rate, 12.0, 4), y)


def test_validation():
    sos = butter(2, 0.1, output="sos")
    with pytest.raises(ValueError, match="Nyquist"):
        filters.butter_sos(100.0, 50.0, 4)
    with pytest.raises(ValueError, match="cutoff_hz"):
        filters.butter_sos(100.0, 0.0, 4)
    with pytest.raises(ValueError, match="order"):
        filters.butter_sos(100.0, 10.0, 0)
    with pytest.raises(ValueError, match="n_sections, 6"):
        filters.sosfiltfilt(np.ones((2, 5)), np.zeros(100))
    bad = sos.copy()
    bad[0, 3] = 2.0
    with pytest.raises(ValueError, match="all ones"):
        filters.sosfiltfilt(bad, np.zeros(100))
    with pytest.raises(ValueError, match="dtype"):
        filters.sosfiltfilt(sos, np.zeros(100), dtype=np.int32)
    with pytest.raises(ValueError, match="C-contiguous"):
        filters.sosfiltfilt(sos, np.zeros(100), out=np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="dimension"):
        filters.sosfiltfilt(sos, np.float64(1.0))


# ---------------------------------------------------------------------------------------------
# real recordings

def _read(name):
    c3d_import = pytest.importorskip("treadlab.acquisition.io.c3d_import")
    return c3d_import.read_c3d(shared_file("running", name))


def test_real_force_and_markers_match_scipy():
    """RBDS001runT35 (Fukuchi 2017, 300 Hz force, 150 Hz markers): every force channel and
    every marker coordinate, filtered as the pipeline does, against SciPy."""
    session = _read("RBDS001runT35.c3d")
    force = session.force
    sos_f = filters.butter_sos(force.rate_hz, 50.0, 4)
    w = force.wrench[:, 0, :]                         # (n, 6) float32 N, N·m
    assert_close(filters.sosfiltfilt(sos_f, w),
                 sosfiltfilt(sos_f, w.astype(np.float64), axis=0))
    fz = w[:, 2].astype(np.float64)
    assert_close(_filters_ref.sosfiltfilt(sos_f, fz), sosfiltfilt(sos_f, fz))

    pos = session.markers.positions                   # (m, k, 3) float32 mm, NaN = missing
    sos_m = filters.butter_sos(session.markers.rate_hz, 6.0, 4)
    want = scipy_per_channel_nan_bridge(sos_m, pos)
    got = filters.sosfiltfilt(sos_m, pos)
    assert np.isnan(got).sum() == np.isnan(pos).sum()
    assert_close(got, want)
    np.testing.assert_array_equal(filters.sosfiltfilt(sos_m, pos, dtype=np.float32),
                                  want.astype(np.float32))
    part = pos[:, :6, :]                              # the reference is slow: six markers
    assert_close(_filters_ref.sosfiltfilt(sos_m, part), want[:, :6, :])
