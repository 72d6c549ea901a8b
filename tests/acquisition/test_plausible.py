"""``plausible.value_problems`` and ``time_problems``: the fast paths give the exact searches'
answers."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.archive.plausible import BLOCK, time_problems, value_problems


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


@pytest.mark.parametrize("case", ["clean", "bad_in_last_block", "all_nan_block",
                                  "not_contiguous", "not_contiguous_bad"])
def test_blocks_agree_with_the_exact_search(case):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(2 * BLOCK + 7) * 100).astype(np.float32)
    limit = 1.0e3
    if case == "bad_in_last_block":
        x[-3] = np.inf
    elif case == "all_nan_block":  # all NaN is allowed: the exact search says so
        x[BLOCK:2 * BLOCK] = np.nan
    elif case.startswith("not_contiguous"):
        x = x.reshape(-1, 1)[::2]
        if case.endswith("bad"):
            x[5, 0] = -limit * 2
    got = value_problems("/x", x, limit, "N")
    assert bool(got) == _exact(x, limit)


def _time_exact(t):
    """Finite and strictly increasing, as the former implementation checked it."""
    return bool(np.isfinite(t).all() and (np.diff(t) > 0).all())


@pytest.mark.parametrize("case", ["clean", "one", "empty", "nan_first", "nan_middle",
                                  "inf_last", "inf_middle", "repeat", "backwards", "integers",
                                  "integers_backwards"])
def test_time_fast_path_agrees_with_the_exact_search(case):
    t = np.arange(1000) / 1000.0
    if case == "one":
        t = t[:1]
    elif case == "empty":
        t = t[:0]
    elif case == "nan_first":
        t[0] = np.nan
    elif case == "nan_middle":
        t[500] = np.nan
    elif case == "inf_last":
        t[-1] = np.inf
    elif case == "inf_middle":
        t[500] = np.inf
    elif case == "repeat":
        t[501] = t[500]
    elif case == "backwards":
        t[700] = 0.0
    elif case == "integers":
        t = np.arange(1000)
    elif case == "integers_backwards":
        t = np.arange(1000)[::-1].copy()
    got = time_problems("/t", t)
    assert (got == []) == _time_exact(t)
    if got:
        assert got[0][0] == "/t" and ("non-finite" in got[0][1] or "not increasing" in got[0][1])
