"""vectorbt bridge: Velox's batch indicators as ``vectorbt.IndicatorFactory`` classes.

Importing this module imports vectorbt (slow, heavy); it lives in ``velox.backtest``, the only
package that imports vectorbt, and nothing else in Velox imports it eagerly. Each class wraps the
batch function of the same name, so sweeps get TA-Lib-exact values and Velox's warm-up NaNs, and
take vectorbt's usual broadcasting of parameter lists:

>>> from velox.backtest import vbt as vxv              # doctest: +SKIP
>>> out = vxv.RSI.run(close, window=[7, 14, 21])       # doctest: +SKIP
>>> out.rsi                                             # one column per window  # doctest: +SKIP

Parameter names are those of the batch functions (``window``, ``fast_window``…); multi-output
indicators expose each output by its field name (``MACD.run(...).signal``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import vectorbt as _vbt

import velox.indicators as vi

__all__ = [
    "ADX",
    "ATR",
    "BBANDS",
    "CCI",
    "DEMA",
    "DONCHIAN",
    "EMA",
    "ICHIMOKU",
    "KELTNER",
    "MACD",
    "MFI",
    "NATR",
    "OBV",
    "PSAR",
    "ROC",
    "RSI",
    "SMA",
    "STOCH",
    "STOCHRSI",
    "SUPERTREND",
    "TEMA",
    "WILLR",
    "WMA",
]


def _build(
    name: str,
    func: Callable[..., object],
    inputs: list[str],
    params: dict[str, object],
    outputs: list[str],
) -> type:
    """Return an IndicatorFactory class calling ``func`` on 2-D float arrays per parameter set."""

    def apply(*args: object) -> object:
        arrays = [np.asarray(a, dtype=np.float64) for a in args[: len(inputs)]]
        values = dict(zip(params, args[len(inputs) :], strict=True))
        result = func(*arrays, **values)
        return tuple(result) if isinstance(result, tuple) else result

    factory = _vbt.IndicatorFactory(
        class_name=name,
        module_name=__name__,
        input_names=inputs,
        param_names=list(params),
        output_names=outputs,
    )
    return factory.from_apply_func(apply, **params)


SMA = _build("SMA", vi.sma, ["close"], {"window": 30}, ["sma"])
EMA = _build("EMA", vi.ema, ["close"], {"window": 30}, ["ema"])
WMA = _build("WMA", vi.wma, ["close"], {"window": 30}, ["wma"])
DEMA = _build("DEMA", vi.dema, ["close"], {"window": 30}, ["dema"])
TEMA = _build("TEMA", vi.tema, ["close"], {"window": 30}, ["tema"])
RSI = _build("RSI", vi.rsi, ["close"], {"window": 14}, ["rsi"])
ROC = _build("ROC", vi.roc, ["close"], {"window": 10}, ["roc"])
MACD = _build(
    "MACD",
    vi.macd,
    ["close"],
    {"fast_window": 12, "slow_window": 26, "signal_window": 9},
    ["macd", "signal", "histogram"],
)
BBANDS = _build(
    "BBANDS",
    vi.bbands,
    ["close"],
    {"window": 20, "upper_std": 2.0, "lower_std": 2.0},
    ["upper", "middle", "lower"],
)
STOCHRSI = _build(
    "STOCHRSI", vi.stochrsi, ["close"], {"window": 14, "k_window": 5, "d_window": 3}, ["k", "d"]
)
ATR = _build("ATR", vi.atr, ["high", "low", "close"], {"window": 14}, ["atr"])
NATR = _build("NATR", vi.natr, ["high", "low", "close"], {"window": 14}, ["natr"])
ADX = _build("ADX", vi.adx, ["high", "low", "close"], {"window": 14}, ["adx"])
CCI = _build("CCI", vi.cci, ["high", "low", "close"], {"window": 14}, ["cci"])
WILLR = _build("WILLR", vi.willr, ["high", "low", "close"], {"window": 14}, ["willr"])
STOCH = _build(
    "STOCH",
    vi.stoch,
    ["high", "low", "close"],
    {"k_window": 5, "k_smooth": 3, "d_window": 3},
    ["k", "d"],
)
MFI = _build("MFI", vi.mfi, ["high", "low", "close", "volume"], {"window": 14}, ["mfi"])
OBV = _build("OBV", vi.obv, ["close", "volume"], {}, ["obv"])
PSAR = _build("PSAR", vi.psar, ["high", "low"], {"acceleration": 0.02, "maximum": 0.2}, ["psar"])
SUPERTREND = _build(
    "SUPERTREND",
    vi.supertrend,
    ["high", "low", "close"],
    {"window": 10, "multiplier": 3.0},
    ["supertrend", "direction"],
)
DONCHIAN = _build(
    "DONCHIAN", vi.donchian, ["high", "low"], {"window": 20}, ["upper", "middle", "lower"]
)
KELTNER = _build(
    "KELTNER",
    vi.keltner,
    ["high", "low", "close"],
    {"window": 20, "atr_window": 10, "multiplier": 2.0},
    ["upper", "middle", "lower"],
)
ICHIMOKU = _build(
    "ICHIMOKU",
    vi.ichimoku,
    ["high", "low"],
    {"tenkan_window": 9, "kijun_window": 26, "senkou_window": 52, "displacement": 26},
    ["tenkan", "kijun", "senkou_a", "senkou_b"],
)
