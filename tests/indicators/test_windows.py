"""Rolling-window machinery the fast kernels rely on, against direct per-window references.

* Bollinger σ comes from running shifted sums re-based now and then; here it must equal the
  two-pass σ of every window (numpy's ``std`` over a sliding-window view) on 1-minute NIFTY,
  where prices are ~15,000 and a window's σ can be a few points or exactly 0 — the case where
  the textbook E[x²] − E[x]² loses about eight digits — and on a series that jumps and then
  stays flat.
* The windowed max/min (Williams %R, stochastic, Donchian, Ichimoku) works on blocks of the
  window length; windows around powers of two and of one or two bars must still give pandas'
  rolling max/min exactly, with forming-candle previews interleaved on the streaming side.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import velox.indicators as vi
from velox.indicators import streaming as st


def _two_pass_sigma(close: np.ndarray, window: int) -> np.ndarray:
    """Return the population σ of each window (NaN during warm-up), mean first then deviations."""
    sigma = np.full(close.shape, np.nan)
    sigma[window - 1 :] = sliding_window_view(close, window).std(axis=1)
    return sigma


def _assert_sigma(close: np.ndarray, window: int) -> None:
    bands = vi.bbands(close, window, 1.0, 1.0)
    sigma = bands.upper - bands.middle
    expected = _two_pass_sigma(close, window)
    np.testing.assert_array_equal(np.isnan(sigma), np.isnan(expected))
    # upper − middle carries the rounding of the band itself (an ulp of the price level)
    atol = 4 * np.spacing(np.nanmax(np.abs(close)))
    np.testing.assert_allclose(sigma, expected, rtol=1e-9, atol=atol, equal_nan=True)


@pytest.mark.parametrize("window", [2, 5, 20, 33])
def test_bollinger_sigma_is_the_two_pass_sigma_on_index_levels(
    window: int, intraday: dict[str, pd.DataFrame]
) -> None:
    _assert_sigma(intraday["NIFTY"].close.to_numpy()[:20_000], window)


def test_bollinger_sigma_after_a_jump_into_a_flat_stretch() -> None:
    # 40 bars around 10,000, a jump to 20,000.05 held flat for 50 bars, then noise again: the
    # running sums must not leave a residue where every window value is the same.
    rng = np.random.default_rng(5)
    close = np.concatenate(
        [
            10_000 + np.round(rng.normal(0, 3, 40) / 0.05) * 0.05,
            np.full(50, 20_000.05),
            20_000 + np.round(rng.normal(0, 0.5, 40) / 0.05) * 0.05,
        ]
    )
    _assert_sigma(close, 20)
    flat = vi.bbands(close, 20, 1.0, 1.0)
    np.testing.assert_array_equal(flat.upper[59:90], flat.middle[59:90])  # σ exactly 0


@pytest.mark.parametrize("window", [1, 2, 3, 15, 16, 17, 64])
def test_windowed_max_min_equal_pandas_rolling(
    window: int, intraday: dict[str, pd.DataFrame]
) -> None:
    frame = intraday["BANKNIFTY"].iloc[:4000]
    upper = frame.high.rolling(window).max().to_numpy()
    lower = frame.low.rolling(window).min().to_numpy()
    out = vi.donchian(frame.high.to_numpy(), frame.low.to_numpy(), window)
    np.testing.assert_array_equal(out.upper, upper)
    np.testing.assert_array_equal(out.lower, lower)
    willr = vi.willr(frame.high, frame.low, frame.close, window).to_numpy()
    span = upper - lower
    flat = span == 0  # a one-bar window of an index bar with high == low reads 0, as TA-Lib
    expected = (upper - frame.close.to_numpy()) / np.where(flat, 1.0, span) * -100.0
    expected[flat] = 0.0
    np.testing.assert_allclose(willr, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window", [1, 4, 7])
def test_streaming_windowed_max_min_with_previews(
    window: int, intraday: dict[str, pd.DataFrame]
) -> None:
    frame = intraday["NIFTY"].iloc[:600]
    rng = np.random.default_rng(window)
    channel = st.Donchian(window)
    got = []
    for bar in frame.itertuples():
        for _ in range(int(rng.integers(0, 3))):  # a forming candle: inside the final bar
            high = bar.high - (bar.high - bar.low) * rng.uniform()
            channel.preview(SimpleNamespace(open=bar.open, high=high, low=bar.low, close=high,
                                            volume=0.0))  # fmt: skip
        got.append(channel.update(bar).upper)
    np.testing.assert_array_equal(got, frame.high.rolling(window).max().to_numpy())
