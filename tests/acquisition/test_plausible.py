"""``plausible.value_problems``: the temporary-free fast path gives the exact search's answer."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.archive.plausible import value_problems


def _exact(data, limit):
    """The search without the fast path (the former implementation)."""
    with np.errstate(invalid="ignore"):
        bad = np.isinf(data) | (np.abs(data) > limit)
    return bool(bad.any())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["clean", "nan", "all_nan", "inf", "-inf", "over", "under",
                                  "at_limit", "empty"])
def test_fast_path_agrees_with_the_exact_search(dtype, case):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((500, 2, 6)) * 100).astype(dtype)
    limit = 1.0e3
    if case == "nan":
        x[7, 1, 2] = np.nan
    elif case == "all_nan":
        x[:] = np.nan
    elif case == "inf":
        x[9, 0, 0] = np.inf
    elif case == "-inf":
        x[9, 0, 0] = -np.inf
    elif case == "over":
        x[11, 1, 5] = limit * 1.001
    elif case == "under":
        x[11, 1, 5] = -limit * 1.001
    elif case == "at_limit":
        x[3, 0, 1], x[4, 0, 1] = limit, -limit
    elif case == "empty":
        x = x[:0]
    got = value_problems("/x", x, limit, "N")
    assert bool(got) == _exact(x, limit)
    if got:  # the message names the first bad value, as before
        assert got[0][0] == "/x" and "first" in got[0][1]


def test_integers_are_checked():
    assert value_problems("/x", np.array([1, 2, 3]), 2.5, "mm")
    assert not value_problems("/x", np.array([1, 2, 3]), 3, "mm")
