"""Technical indicators: TA-Lib-exact batch functions and O(1) streaming objects.

Every indicator is defined once, as a numba step over a small state (``_kernels``); the batch
functions below loop that step over arrays, and :mod:`velox.indicators.streaming` applies it one
bar at a time (``update`` for a closed bar, ``preview`` for the forming candle), so the two paths
cannot disagree. Nothing is compiled at import: each kernel compiles (or loads from numba's
on-disk cache) on first use. The vectorbt bridge (these indicators as vectorbt IndicatorFactory
classes) is :mod:`velox.backtest.vbt`: ``velox.backtest`` is the only package importing vectorbt.

See ``docs/indicators.md`` for the conventions (TA-Lib seeding, warm-up NaN, the forming-candle
model). Multi-output results are NamedTuples named for what they hold (``MACDLines``, ``Bands``,
``SupertrendLines``, …), never after an indicator class, so ``Supertrend`` always means the
streaming indicator in :mod:`velox.indicators.streaming`.
"""

from velox.indicators._batch import (
    adx,
    atr,
    bbands,
    cci,
    dema,
    donchian,
    ema,
    heikin_ashi,
    ichimoku,
    keltner,
    macd,
    memo,
    mfi,
    natr,
    obv,
    pivots,
    psar,
    roc,
    rsi,
    sma,
    stoch,
    stochrsi,
    supertrend,
    tema,
    vwap,
    willr,
    wma,
)
from velox.indicators._spec import (
    Bands,
    CamarillaPivots,
    Candles,
    ClassicPivots,
    IchimokuLines,
    MACDLines,
    Oscillator,
    SupertrendLines,
)

__all__ = [
    "memo",
    "MACDLines",
    "Bands",
    "CamarillaPivots",
    "Candles",
    "ClassicPivots",
    "IchimokuLines",
    "Oscillator",
    "SupertrendLines",
    "adx",
    "atr",
    "bbands",
    "cci",
    "dema",
    "donchian",
    "ema",
    "heikin_ashi",
    "ichimoku",
    "keltner",
    "macd",
    "mfi",
    "natr",
    "obv",
    "pivots",
    "psar",
    "roc",
    "rsi",
    "sma",
    "stoch",
    "stochrsi",
    "supertrend",
    "tema",
    "vwap",
    "willr",
    "wma",
]

#: Result types renamed so that no result shares a name with a streaming class (old → new).
_RENAMED = {"Supertrend": "SupertrendLines", "Ichimoku": "IchimokuLines"}


def __getattr__(name: str) -> object:
    if name in _RENAMED:
        raise AttributeError(
            f"velox.indicators.{name} was the result type of {name.lower()}() and is now "
            f"velox.indicators.{_RENAMED[name]}; the streaming indicator is "
            f"velox.indicators.streaming.{name}"
        )
    raise AttributeError(f"module 'velox.indicators' has no attribute {name!r}")
