"""kernels.stats.median returns numpy.median's bits."""
import numpy as np
import pytest

from treadlab.kernels.stats import median


def _same(a, b):
    return np.float64(a).tobytes() == np.float64(b).tobytes()


def test_median_is_numpys_bit_for_bit():
    rng = np.random.default_rng(5)
    for n in list(range(1, 40)) + [255, 256, 340, 341]:
        for _ in range(30):
            x = rng.normal(size=n) * 10.0 ** rng.integers(-6, 6)
            if rng.random() < 0.3:
                x = np.round(x, 1)  # ties
            if rng.random() < 0.2:
                x[rng.random(n) < 0.3] = rng.choice([0.0, -0.0])
            assert _same(median(x), np.median(x)), (n, x)


@pytest.mark.parametrize("x", [[np.nan], [1.0, np.nan, 2.0], [np.inf, -np.inf],
                               [np.inf, np.inf], [-0.0, -0.0], [-0.0, 0.0, -0.0], [1e308, 1e308],
                               [5.0], [3, 1, 2], np.float32([1.5, 2.5])])
def test_median_edge_cases(x):
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, 1e308 + 1e308: as NumPy
        got = median(x)
        assert _same(got, np.median(x))
    assert isinstance(got, float)


def test_median_of_a_strided_view():
    x = np.arange(20.0)[::-3]
    assert _same(median(x), np.median(x))
