"""Technical indicators: TA-Lib-exact batch functions and O(1) streaming objects.

Every indicator is defined once, as a numba step over a small state (``_kernels``); the batch
functions below loop that step over arrays, and :mod:`velox.indicators.streaming` applies it one
bar at a time (``update`` for a closed bar, ``preview`` for the forming candle), so the two paths
cannot disagree. Nothing is compiled at import: each kernel compiles (or loads from numba's
on-disk cache) on first use. The vectorbt bridge lives in :mod:`velox.indicators.vbt` and is the
only module here that imports vectorbt.

See ``docs/indicators.md`` for the conventions (TA-Lib seeding, warm-up NaN, the forming-candle
model).
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
    Ichimoku,
    MACDLines,
    Oscillator,
    Supertrend,
)

__all__ = [
    "MACDLines",
    "Bands",
    "CamarillaPivots",
    "Candles",
    "ClassicPivots",
    "Ichimoku",
    "Oscillator",
    "Supertrend",
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
