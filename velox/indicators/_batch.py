"""Batch indicator functions: whole arrays, Series or DataFrames in, the same shape out.

Conventions shared by every function here (see ``docs/indicators.md``):

* Inputs are numpy arrays (1-D, or 2-D with one column per symbol), pandas Series, or DataFrames
  with one column per symbol. Multi-input indicators take ``high``, ``low``, ``close``… as
  separate arguments of the same shape, like TA-Lib. Outputs have the input's shape and type;
  multi-output indicators return a NamedTuple of such objects.
* Warm-up rows are NaN exactly where TA-Lib's lookback puts them; indicators TA-Lib has agree
  with it to ~1e-12 relative (the same operations in the same order).
* Leading NaN rows (a symbol listed later) are skipped: its warm-up starts at its first complete
  row. A NaN after that raises ``ValueError``; fill or drop it first.
* A pandas DatetimeIndex must be strictly increasing (``ValueError`` names the first bad row).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import numpy as np

from velox.indicators._spec import (
    SPECS,
    Bands,
    CamarillaPivots,
    Candles,
    ClassicPivots,
    IchimokuLines,
    MACDLines,
    Oscillator,
    SupertrendLines,
    compute,
)

#: A numpy array, pandas Series or DataFrame (one column per symbol).
Data = TypeVar("Data")


#: The results of the innermost :func:`memo` block: key → (inputs kept alive, result).
_MEMO: ContextVar[dict[tuple, tuple[tuple, object]] | None] = ContextVar("velox_memo", default=None)


@contextmanager
def memo(cache: dict[tuple, tuple[tuple, object]] | None = None) -> Iterator[None]:
    """Compute each distinct indicator call once inside the ``with`` block.

    A parameter sweep calls ``signals(bars)`` once per combination with the same bars, so the
    SMA(10) that 29 (fast, slow) pairs share would be computed 29 times; inside ``memo()`` a
    call with the same indicator, parameters and input arrays (the same memory: ``bars["close"]
    .to_numpy()`` of one DataFrame each time) returns a copy of the first result. The block
    keeps its inputs alive (an address is never reused for other data while it runs) and
    assumes they are not modified in place meanwhile: the sweep hands every combination the
    same read-only bars. Calls whose inputs are not numpy arrays or pandas objects, or whose
    parameters are unhashable, are computed as usual. Blocks nest (the inner one is fresh) and
    are per thread and per asyncio task (a context variable).

    ``cache`` is a dict to keep the results in beyond the block: pass the same (initially
    empty) dict to several blocks and an indicator computed in one is reused by the next, as a
    sweep does across its chunks of combinations. The dict holds the inputs alive as long as it
    lives; drop it with the bars.

    Examples
    --------
    >>> import numpy as np
    >>> close = np.arange(1.0, 6.0)
    >>> with memo():
    ...     a, b = sma(close, 2), sma(close, 2)   # the second is a copy of the first
    >>> bool((a[1:] == b[1:]).all()) and a is not b
    True
    >>> kept: dict = {}
    >>> with memo(kept):
    ...     a = sma(close, 3)
    >>> with memo(kept):                          # a later block reuses the first's result
    ...     b = sma(close, 3)
    >>> len(kept), bool((a[2:] == b[2:]).all())
    (1, True)
    """
    token = _MEMO.set({} if cache is None else cache)
    try:
        yield
    finally:
        _MEMO.reset(token)


def _identity(value: object) -> tuple[tuple, object] | None:
    """Return what identifies an input's data (memory, layout, index) and the array to keep
    alive with it, or None when there is nothing stable to key on (a copy on every access)."""
    if isinstance(value, np.ndarray):
        arr, index = value, None
    else:
        to_numpy, index = getattr(value, "to_numpy", None), getattr(value, "index", None)
        if to_numpy is None or index is None:
            return None
        arr = to_numpy()
        if not np.may_share_memory(arr, to_numpy()):  # copied each time (mixed dtypes)
            return None
        index = _index_identity(index)
    ptr = arr.__array_interface__["data"][0]
    return (type(value).__name__, ptr, arr.shape, arr.strides, arr.dtype.str, index), arr


def _index_identity(index: object) -> object:
    """Identify a pandas index by its data: each ``df[column]`` gets a new Index object."""
    stamps = getattr(index, "asi8", None)  # DatetimeIndex (tz-aware too), TimedeltaIndex
    if isinstance(stamps, np.ndarray):
        return ("i8", stamps.__array_interface__["data"][0], len(stamps), str(index.dtype))  # type: ignore[attr-defined]
    if type(index).__name__ == "RangeIndex":
        return ("range", index.start, index.stop, index.step)  # type: ignore[attr-defined]
    return ("id", id(index))  # kept alive with the input: never reused meanwhile


def _copy(result: object) -> object:
    if isinstance(result, tuple):  # the NamedTuple of a multi-output indicator
        return type(result)(*(part.copy() for part in result))
    return result.copy()  # type: ignore[attr-defined]


def _run(name: str, timestamps: object = None, result: type | None = None, **kwargs: object):  # noqa: ANN202
    spec = SPECS[name]
    arrays = {k: kwargs.pop(k) for k in spec.inputs}
    cache = _MEMO.get()
    if cache is None:
        return compute(spec, arrays, kwargs, timestamps, result)
    ids = [_identity(arrays[k]) for k in spec.inputs]
    key: tuple | None = None
    if None not in ids and timestamps is None:
        key = (name, tuple(i[0] for i in ids), tuple(sorted(kwargs.items())), result)  # type: ignore[index]
        try:
            hash(key)
        except TypeError:
            key = None
    if key is not None and key in cache:
        return _copy(cache[key][1])
    out = compute(spec, arrays, kwargs, timestamps, result)
    if key is not None:
        # the inputs and their arrays stay alive: their addresses cannot be reused meanwhile
        cache[key] = ((*arrays.values(), *(i[1] for i in ids)), _copy(out))  # type: ignore[index]
    return out


def sma(close: Data, window: int = 30) -> Data:
    """Return the simple moving average of ``close`` over ``window`` bars (TA-Lib ``SMA``).

    The first ``window - 1`` rows are NaN. The running sum is updated as TA-Lib does it, so the
    result matches TA-Lib to the last bits.

    Examples
    --------
    >>> import numpy as np
    >>> sma(np.array([1.0, 2.0, 3.0, 4.0]), window=2)
    array([nan, 1.5, 2.5, 3.5])
    """
    return _run("sma", close=close, window=window)


def ema(close: Data, window: int = 30) -> Data:
    """Return the exponential moving average of ``close`` (TA-Lib ``EMA``).

    Smoothing ``k = 2 / (window + 1)``; the first value (row ``window - 1``) is the SMA of the
    first ``window`` inputs, TA-Lib's default seeding (not the first price, as pandas ``ewm``).

    Examples
    --------
    >>> import numpy as np
    >>> ema(np.array([1.0, 2.0, 3.0, 4.0]), window=2)
    array([nan, 1.5, 2.5, 3.5])
    """
    return _run("ema", close=close, window=window)


def wma(close: Data, window: int = 30) -> Data:
    """Return the linearly weighted moving average (weights 1…window, newest heaviest; ``WMA``).

    Examples
    --------
    >>> import numpy as np
    >>> wma(np.array([1.0, 2.0, 4.0]), window=2)
    array([       nan, 1.66666667, 3.33333333])
    """
    return _run("wma", close=close, window=window)


def dema(close: Data, window: int = 30) -> Data:
    """Return the double EMA ``2·EMA − EMA(EMA)`` (TA-Lib ``DEMA``; warm-up ``2·(window−1)``).

    Examples
    --------
    >>> import numpy as np
    >>> dema(np.arange(1.0, 6.0), window=2)[-1]
    np.float64(5.0)
    """
    return _run("dema", close=close, window=window)


def tema(close: Data, window: int = 30) -> Data:
    """Return the triple EMA ``3·E1 − 3·E2 + E3`` (TA-Lib ``TEMA``; warm-up ``3·(window−1)``).

    Examples
    --------
    >>> import numpy as np
    >>> tema(np.arange(1.0, 8.0), window=2)[-1]
    np.float64(7.0)
    """
    return _run("tema", close=close, window=window)


def rsi(close: Data, window: int = 14) -> Data:
    """Return Wilder's relative strength index, 0–100 (TA-Lib ``RSI``).

    TA-Lib's seeding: the first average gain/loss (row ``window``) is the plain mean of the first
    ``window`` changes, then Wilder smoothing ``avg = (avg·(window−1) + x) / window``. A flat
    window gives 0 (TA-Lib's choice), not 50.

    Examples
    --------
    >>> import numpy as np
    >>> rsi(np.array([1.0, 2.0, 1.0, 2.0]), window=2)
    array([nan, nan, 50., 75.])
    """
    return _run("rsi", close=close, window=window)


def macd(
    close: Data, fast_window: int = 12, slow_window: int = 26, signal_window: int = 9
) -> MACDLines:
    """Return the MACD line, its signal line and the histogram (TA-Lib ``MACD``).

    TA-Lib's seeding, which differs from ``pandas.ewm``: both EMAs start at row
    ``slow_window − 1``, the fast one seeded with the mean of the ``fast_window`` closes ending
    there; the signal is an EMA of the line seeded by its first ``signal_window`` values. All three
    outputs are NaN for the first ``slow_window + signal_window − 2`` rows.

    Examples
    --------
    >>> import numpy as np
    >>> result = macd(np.linspace(100.0, 140.0, 60))
    >>> round(float(result.macd[-1]), 6), round(float(result.signal[-1]), 6)
    (4.745763, 4.745763)
    """
    return _run(
        "macd",
        close=close,
        fast_window=fast_window,
        slow_window=slow_window,
        signal_window=signal_window,
    )


def bbands(close: Data, window: int = 20, upper_std: float = 2.0, lower_std: float = 2.0) -> Bands:
    """Return Bollinger Bands: SMA ± k·σ, σ the population standard deviation (TA-Lib ``BBANDS``).

    Like TA-Lib, σ is computed from running sums of x and x² and is set to 0 when the variance is
    below 1e-8.

    Examples
    --------
    >>> import numpy as np
    >>> bands = bbands(np.array([1.0, 3.0]), window=2, upper_std=1.0, lower_std=1.0)
    >>> bands.upper[-1], bands.middle[-1], bands.lower[-1]
    (np.float64(3.0), np.float64(2.0), np.float64(1.0))
    """
    return _run("bbands", close=close, window=window, upper_std=upper_std, lower_std=lower_std)


def roc(close: Data, window: int = 10) -> Data:
    """Return the rate of change in percent, ``(close / close[−window] − 1)·100`` (TA-Lib ``ROC``).

    Examples
    --------
    >>> import numpy as np
    >>> roc(np.array([100.0, 110.0]), window=1)
    array([nan, 10.])
    """
    return _run("roc", close=close, window=window)


def stochrsi(close: Data, window: int = 14, k_window: int = 5, d_window: int = 3) -> Oscillator:
    """Return the stochastic RSI: fast %K of RSI(window) over ``k_window`` and its SMA %D.

    TA-Lib ``STOCHRSI`` with an SMA %D; both outputs start at row
    ``window + k_window + d_window − 2``.

    Examples
    --------
    >>> import numpy as np
    >>> out = stochrsi(np.cos(np.arange(40.0)))
    >>> float(out.k[-1]) >= 0.0
    True
    """
    return _run("stochrsi", close=close, window=window, k_window=k_window, d_window=d_window)


def atr(high: Data, low: Data, close: Data, window: int = 14) -> Data:
    """Return Wilder's average true range (TA-Lib ``ATR``).

    TA-Lib's seeding: true range starts at row 1 (it needs the previous close); the first ATR
    (row ``window``) is the mean of the first ``window`` true ranges, then Wilder smoothing.

    Examples
    --------
    >>> import numpy as np
    >>> h, l, c = np.array([11.0, 12, 13]), np.array([9.0, 10, 11]), np.array([10.0, 11, 12])
    >>> atr(h, l, c, window=2)
    array([nan, nan,  2.])
    """
    return _run("atr", high=high, low=low, close=close, window=window)


def natr(high: Data, low: Data, close: Data, window: int = 14) -> Data:
    """Return the ATR as a percentage of the close (TA-Lib ``NATR``).

    Examples
    --------
    >>> import numpy as np
    >>> h, l, c = np.array([11.0, 12, 13]), np.array([9.0, 10, 11]), np.array([10.0, 11, 10])
    >>> natr(h, l, c, window=2)  # ATR (2+2)/2 = 2 over close 10
    array([nan, nan, 20.])
    """
    return _run("natr", high=high, low=low, close=close, window=window)


def adx(high: Data, low: Data, close: Data, window: int = 14) -> Data:
    """Return Wilder's average directional index (TA-Lib ``ADX``; first value at ``2·window−1``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(1.0, 31.0)
    >>> float(adx(x + 1, x - 1, x, window=5)[-1])
    100.0
    """
    return _run("adx", high=high, low=low, close=close, window=window)


def cci(high: Data, low: Data, close: Data, window: int = 14) -> Data:
    """Return Lambert's commodity channel index on the typical price (TA-Lib ``CCI``).

    ``(tp − mean) / (0.015 · mean absolute deviation)``; 0 when either term is 0.

    Examples
    --------
    >>> import numpy as np
    >>> c = np.array([1.0, 2.0, 3.0])
    >>> round(float(cci(c, c, c, window=3)[-1]), 9)
    100.0
    """
    return _run("cci", high=high, low=low, close=close, window=window)


def willr(high: Data, low: Data, close: Data, window: int = 14) -> Data:
    """Return Williams %R, −100…0 (TA-Lib ``WILLR``).

    Examples
    --------
    >>> import numpy as np
    >>> float(willr(np.array([10.0, 12]), np.array([8.0, 9]), np.array([9.0, 11]), window=2)[-1])
    -25.0
    """
    return _run("willr", high=high, low=low, close=close, window=window)


def stoch(
    high: Data, low: Data, close: Data, k_window: int = 5, k_smooth: int = 3, d_window: int = 3
) -> Oscillator:
    """Return the slow stochastic: %K = SMA(fast %K, k_smooth), %D = SMA(%K, d_window).

    TA-Lib ``STOCH`` with SMA smoothing; both outputs start at row
    ``k_window + k_smooth + d_window − 3``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(1.0, 11.0)
    >>> out = stoch(x + 1, x - 1, x)
    >>> round(float(out.k[-1]), 9), round(float(out.d[-1]), 9)
    (83.333333333, 83.333333333)
    """
    return _run(
        "stoch",
        high=high,
        low=low,
        close=close,
        k_window=k_window,
        k_smooth=k_smooth,
        d_window=d_window,
    )


def mfi(high: Data, low: Data, close: Data, volume: Data, window: int = 14) -> Data:
    """Return the money flow index, 0–100 (TA-Lib ``MFI``; 0 while total flow < 1).

    As in TA-Lib 0.8, a typical-price change that is only a rounding residue
    (``|Δ| ≤ 1e-14 · (|tp| + |tp_prev|)``, e.g. ``(h + l + c) / 3`` of two bars with equal sums)
    counts as no change and adds to neither the positive nor the negative flow.

    Examples
    --------
    >>> import numpy as np
    >>> c = np.array([10.0, 11.0, 10.0])
    >>> round(float(mfi(c, c, c, np.array([5.0, 10.0, 10.0]), window=2)[-1]), 6)  # 100·110/210
    52.380952
    """
    return _run("mfi", high=high, low=low, close=close, volume=volume, window=window)


def obv(close: Data, volume: Data) -> Data:
    """Return on-balance volume, starting at the first bar's volume (TA-Lib ``OBV``).

    Examples
    --------
    >>> import numpy as np
    >>> obv(np.array([10.0, 11.0, 10.5, 10.5]), np.array([100.0, 50.0, 30.0, 20.0]))
    array([100., 150., 120., 120.])
    """
    return _run("obv", close=close, volume=volume)


def psar(high: Data, low: Data, acceleration: float = 0.02, maximum: float = 0.2) -> Data:
    """Return Wilder's parabolic SAR (TA-Lib ``SAR``).

    Row t holds the stop in force during bar t (computed from bars before it, or the reversal
    level if bar t reversed the trend). TA-Lib's start: the first trend is short if bar 1 has a
    positive −DM versus bar 0, else long.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(10.0, 16.0)
    >>> psar(x + 1, x - 1)[:3]  # long from bar 1: SAR 9, then 9 + 0.02·(12 − 9)
    array([ nan, 9.  , 9.06])
    """
    return _run("psar", high=high, low=low, acceleration=acceleration, maximum=maximum)


def supertrend(
    high: Data, low: Data, close: Data, window: int = 10, multiplier: float = 3.0
) -> SupertrendLines:
    """Return the Supertrend line and direction (+1 up-trend, −1 down-trend).

    Definition (Olivier Seban's Supertrend as published in TradingView's ``ta.supertrend``):
    basic bands ``(h + l)/2 ± multiplier · ATR(window)``; the final upper band only moves down
    (unless the previous close broke above it), the final lower band only moves up (unless the
    previous close broke below it); the trend flips up when the close crosses above the final
    upper band and down when it crosses below the final lower band; the line is the lower band in
    an up-trend, the upper band in a down-trend. The ATR is TA-Lib's (see :func:`atr`), so the
    first value is at row ``window``, where the trend starts as down.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(10.0, 20.0)
    >>> st = supertrend(x + 1, x - 1, x, window=2, multiplier=1.0)
    >>> float(st.direction[-1]), float(st.supertrend[-1])  # up-trend: lower band 19 − 2
    (1.0, 17.0)
    """
    return _run("supertrend", high=high, low=low, close=close, window=window, multiplier=multiplier)


def vwap(high: Data, low: Data, close: Data, volume: Data, timestamps: object = None) -> Data:
    """Return the session-anchored volume-weighted average price of the typical price.

    ``Σ tp·v / Σ v`` with ``tp = (h + l + c)/3``, cumulated from the first bar of each IST
    session date and reset at the next session's first bar (the 09:15 open), the standard
    intraday VWAP benchmark (e.g. Berkowitz, Logue & Noser, "The Total Cost of Transactions on the
    NYSE", J. Finance 1988). Sessions come from the pandas DatetimeIndex or ``timestamps``
    (tz-aware, or int64 UTC epoch ns), which must be strictly increasing. NaN while the session's
    cumulative volume is 0 (index data carries no volume).

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.to_datetime(["2024-04-01 09:15", "2024-04-01 09:16", "2024-04-02 09:15"])
    >>> ts = ts.tz_localize("Asia/Kolkata")
    >>> p = pd.Series([100.0, 103.0, 200.0], index=ts)
    >>> vwap(p, p, p, pd.Series([1.0, 2.0, 5.0], index=ts)).tolist()
    [100.0, 102.0, 200.0]
    """
    return _run("vwap", timestamps, high=high, low=low, close=close, volume=volume)


def donchian(high: Data, low: Data, window: int = 20) -> Bands:
    """Return the Donchian channel: highest high, midpoint, lowest low of the last ``window`` bars.

    Richard Donchian's price channel (StockCharts "Donchian Channels"); the window includes the
    current bar (as TradingView's ``ta.highest``), so use ``.shift(1)`` for a breakout test
    against the previous ``window`` bars. First value at row ``window − 1``.

    Examples
    --------
    >>> import numpy as np
    >>> out = donchian(np.array([5.0, 7.0, 6.0]), np.array([4.0, 3.0, 5.0]), window=2)
    >>> out.upper, out.lower
    (array([nan,  7.,  7.]), array([nan,  3.,  3.]))
    """
    return _run("donchian", high=high, low=low, window=window)


def keltner(
    high: Data,
    low: Data,
    close: Data,
    window: int = 20,
    atr_window: int = 10,
    multiplier: float = 2.0,
) -> Bands:
    """Return Keltner channels: EMA(close, window) ± multiplier · ATR(atr_window).

    The modern (Linda Raschke) form documented by StockCharts "Keltner Channels"; the EMA and ATR
    are TA-Lib's (SMA- and mean-seeded), and all three lines start once both are warm.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.full(30, 10.0)
    >>> out = keltner(x + 1, x - 1, x)
    >>> float(out.upper[-1]), float(out.middle[-1]), float(out.lower[-1])
    (14.0, 10.0, 6.0)
    """
    return _run(
        "keltner",
        high=high,
        low=low,
        close=close,
        window=window,
        atr_window=atr_window,
        multiplier=multiplier,
    )


def heikin_ashi(open: Data, high: Data, low: Data, close: Data) -> Candles:  # noqa: A002
    """Return Heikin-Ashi candles.

    Dan Valcu, "Using the Heikin-Ashi Technique", Technical Analysis of Stocks & Commodities,
    February 2004: ``close = (o+h+l+c)/4``; ``open = (prev open + prev close)/2``, the first one
    ``(o+c)/2``; ``high = max(h, open, close)``; ``low = min(l, open, close)``. No warm-up.

    Examples
    --------
    >>> import numpy as np
    >>> ha = heikin_ashi(np.array([10.0, 12]), np.array([13.0, 14]), np.array([9.0, 11]),
    ...                  np.array([12.0, 13]))
    >>> ha.open, ha.close
    (array([11., 11.]), array([11. , 12.5]))
    """
    return _run("heikin_ashi", open=open, high=high, low=low, close=close)


def ichimoku(
    high: Data,
    low: Data,
    tenkan_window: int = 9,
    kijun_window: int = 26,
    senkou_window: int = 52,
    displacement: int = 26,
) -> IchimokuLines:
    """Return the Ichimoku Kinkō Hyō lines, causally aligned.

    Goichi Hosoda's definition (StockCharts "Ichimoku Cloud"): tenkan/kijun are the
    (highest high + lowest low)/2 midpoints over 9 and 26 bars; senkou A = (tenkan + kijun)/2 and
    senkou B = the 52-bar midpoint, both plotted ``displacement`` bars ahead. Here row t of
    ``senkou_a``/``senkou_b`` is the cloud *in force at t* (computed at t − displacement), so
    nothing looks ahead. The chikou span is just ``close`` plotted back, i.e. it uses the future,
    and is deliberately not returned.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(1.0, 81.0)
    >>> out = ichimoku(x + 1, x - 1)
    >>> float(out.tenkan[-1]), float(out.kijun[-1]), float(out.senkou_a[-1])
    (76.0, 67.5, 45.75)
    """
    return _run(
        "ichimoku",
        high=high,
        low=low,
        tenkan_window=tenkan_window,
        kijun_window=kijun_window,
        senkou_window=senkou_window,
        displacement=displacement,
    )


def pivots(
    high: Data, low: Data, close: Data, method: str = "classic", timestamps: object = None
) -> ClassicPivots | CamarillaPivots:
    """Return floor-trader pivot levels from the previous session's high, low and close.

    ``classic``: P = (H+L+C)/3, R1 = 2P−L, S1 = 2P−H, R2 = P+(H−L), S2 = P−(H−L),
    R3 = H+2(P−L), S3 = L−2(H−P). ``camarilla`` (Nick Scott, 1989): Rk/Sk = C ± (H−L)·1.1/d with
    d = 12, 6, 4, 2 for k = 1…4. With a DatetimeIndex (or ``timestamps``) sessions are IST dates,
    so intraday bars get the previous day's levels; without timestamps every row is a session
    (daily bars: levels from the previous row). The first session is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> out = pivots(np.array([110.0, 120.0]), np.array([90.0, 100]), np.array([100.0, 115]))
    >>> float(out.pivot[1]), float(out.r1[1]), float(out.s1[1])
    (100.0, 110.0, 90.0)
    """
    result = CamarillaPivots if method == "camarilla" else ClassicPivots
    return _run("pivots", timestamps, result, high=high, low=low, close=close, method=method)
