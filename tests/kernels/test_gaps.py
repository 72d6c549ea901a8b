"""fill_gaps: compiled kernel and NumPy reference against the same rules."""
import numpy as np
import pytest

from treadlab.kernels import _gaps_ref, gaps

IMPLS = [pytest.param(gaps.fill_gaps, id="cython"), pytest.param(_gaps_ref.fill_gaps, id="numpy")]
pytestmark = pytest.mark.timeout(30)


def _smooth(m=400, k=5, rate=200.0):
    t = np.arange(m) / rate
    phase = np.arange(k)[:, None]
    amp = np.array([120.0, 40.0, 25.0])
    x = amp * np.sin(2 * np.pi * 1.4 * t[:, None, None] + phase[None, :, :])
    return (x + np.array([0.0, 100.0, 900.0])).astype(np.float32)


@pytest.mark.parametrize("fill", IMPLS)
def test_linear_motion_is_filled_exactly(fill):
    t = np.arange(50, dtype=np.float64)
    pos = np.stack([10 * t, -3 * t + 5, 0.5 * t + 900], axis=1)[:, None, :].astype(np.float32)
    holed = pos.copy()
    holed[10:14, 0] = np.nan         # 4 frames
    holed[30, 0, 1] = np.nan         # one coordinate missing: the frame counts as unseen
    filled, longest = fill(holed, 4)
    assert longest == 4
    np.testing.assert_allclose(filled, pos, atol=1e-3)
    assert filled.dtype == np.float32
    assert np.isnan(holed[10:14]).all(), "the input must not be modified"


@pytest.mark.parametrize("fill", IMPLS)
def test_long_gaps_and_edges_stay_nan(fill):
    pos = _smooth(m=100, k=2)
    pos[:3, 0] = np.nan              # leading edge
    pos[20:31, 0] = np.nan           # 11 frames: too long
    pos[50:52, 0] = np.nan           # 2 frames: filled
    pos[95:, 1] = np.nan             # trailing edge
    pos[60, 1, 2] = np.nan           # partial frame, 1 frame gap: filled
    filled, longest = fill(pos, 10)
    assert longest == 2
    assert np.isnan(filled[:3, 0]).all() and np.isnan(filled[20:31, 0]).all()
    assert np.isnan(filled[95:, 1]).all()
    assert np.isfinite(filled[50:52, 0]).all() and np.isfinite(filled[60, 1]).all()
    assert np.isfinite(filled[3:20, 0]).all() and np.isfinite(filled[31:, 0]).all()


@pytest.mark.parametrize("fill", IMPLS)
def test_cubic_fill_is_accurate_on_smooth_motion(fill):
    truth = _smooth(m=400, k=3)
    holed = truth.copy()
    for start in (40, 120, 250):
        holed[start:start + 10, :] = np.nan
    filled, longest = fill(holed, 10)
    assert longest == 10
    err = np.abs(filled - truth).max()
    # 10 frames at 200 Hz of a 1.4 Hz, 120 mm sinusoid: cubic Hermite error well under 1 mm
    assert err < 1.0, err


@pytest.mark.parametrize("fill", IMPLS)
def test_empty_and_zero_max_gap(fill):
    empty, longest = fill(np.zeros((0, 4, 3), np.float32), 5)
    assert empty.shape == (0, 4, 3) and longest == 0
    none, longest = fill(np.zeros((10, 0, 3), np.float32), 5)
    assert none.shape == (10, 0, 3) and longest == 0
    pos = _smooth(m=20, k=1)
    pos[5] = np.nan
    same, longest = fill(pos, 0)
    assert longest == 0 and np.isnan(same[5]).all()


@pytest.mark.parametrize("fill", IMPLS)
def test_bad_arguments(fill):
    with pytest.raises(ValueError):
        fill(np.zeros((5, 3)), 2)
    with pytest.raises(ValueError):
        fill(np.zeros((5, 1, 3)), -1)
    with pytest.raises(TypeError):
        fill(np.zeros((5, 1, 3), dtype=np.int32), 2)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_matches_reference_on_random_dropouts(seed):
    rng = np.random.default_rng(seed)
    pos = _smooth(m=300, k=8) + rng.normal(scale=1.0, size=(300, 8, 3)).astype(np.float32)
    drop = rng.random((300, 8)) < 0.25
    pos[drop] = np.nan
    pos[rng.random((300, 8, 3)) < 0.01] = np.nan
    a, la = gaps.fill_gaps(pos, 5)
    b, lb = _gaps_ref.fill_gaps(pos, 5)
    assert la == lb
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    a64, _ = gaps.fill_gaps(pos.astype(np.float64), 5)
    assert a64.dtype == np.float64


def test_float32_is_the_float64_fill_rounded_once():
    """The kernel fills float32 in place but computes in float64: the same bits as filling a
    float64 copy and rounding the result (the former path)."""
    rng = np.random.default_rng(5)
    pos = _smooth(m=500, k=6) + rng.normal(scale=2.0, size=(500, 6, 3)).astype(np.float32)
    pos[rng.random((500, 6)) < 0.2] = np.nan
    pos[rng.random((500, 6, 3)) < 0.01] = np.inf
    a, la = gaps.fill_gaps(pos, 8)
    b, lb = gaps.fill_gaps(pos.astype(np.float64), 8)
    assert la == lb and a.dtype == np.float32
    np.testing.assert_array_equal(a, b.astype(np.float32))


@pytest.mark.parametrize("fill", IMPLS)
def test_out_in_place_and_into_another_array(fill):
    rng = np.random.default_rng(9)
    pos = _smooth(m=300, k=4)
    pos[rng.random((300, 4)) < 0.15] = np.nan
    want, n = fill(pos, 6)
    other = np.empty_like(pos)
    got, m = fill(pos, 6, out=other)
    assert got is other and m == n
    np.testing.assert_array_equal(got, want)
    assert np.isnan(pos).any(), "positions must not be modified when out is another array"
    same = pos.copy()
    got, m = fill(same, 6, out=same)
    assert got is same and m == n
    np.testing.assert_array_equal(same, want)
    for bad in (np.empty(pos.shape, np.float64), np.empty((300, 3, 3), np.float32),
                np.empty((3, 4, 300), np.float32).T):
        with pytest.raises(ValueError):
            fill(pos, 6, out=bad)


@pytest.mark.parametrize("seed", range(3))
def test_compiled_matches_reference_on_sparse_gaps(seed):
    """Mostly complete frames (the kernel skips a frame when every marker is seen in it and in
    the frame before) with short gaps, gaps at the edges, and gaps back to back."""
    rng = np.random.default_rng(100 + seed)
    pos = (_smooth(m=2000, k=7) + rng.normal(scale=1.0, size=(2000, 7, 3))).astype(np.float64)
    for _ in range(40):
        a, j = int(rng.integers(0, 1990)), int(rng.integers(0, 7))
        pos[a:a + int(rng.integers(1, 9)), j, int(rng.integers(0, 3))] = np.nan
    pos[:3, 1] = np.nan
    pos[-2:, 2] = np.inf
    pos[700:703, 3] = np.nan
    pos[704:706, 3] = np.nan                      # one seen frame between two gaps
    for max_gap in (0, 1, 4, 8):
        a, la = gaps.fill_gaps(pos, max_gap)
        b, lb = _gaps_ref.fill_gaps(pos, max_gap)
        assert la == lb
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
