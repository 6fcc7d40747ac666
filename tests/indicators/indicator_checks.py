"""The comparison every indicator test shares.

A module of its own, not ``conftest``: ``from conftest import …`` resolves to whichever
``conftest`` module pytest imported first, which differs with the set of test folders run.
"""

from __future__ import annotations

import numpy as np


def assert_matches(actual: object, expected: object, rtol: float = 1e-9) -> None:
    """Assert identical NaN (warm-up) positions and ``|a − e| ≤ rtol · max(|e|, mean |e|)``.

    The floor ``mean |e|`` keeps the check relative for oscillators that cross zero (MACD, ROC,
    CCI), where a pure relative error is undefined; elsewhere it is plain relative error.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg="warm-up NaNs differ")
    valid = ~np.isnan(e)
    if not valid.any():
        return
    scale = np.maximum(np.abs(e[valid]), np.mean(np.abs(e[valid])))
    worst = np.max(np.abs(a[valid] - e[valid]) / np.where(scale == 0, 1.0, scale))
    assert worst <= rtol, f"max relative error {worst:.3e} > {rtol}"
