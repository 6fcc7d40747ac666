"""The indicators the strategy builder offers: parameters, inputs and outputs of each.

One :class:`IndicatorInfo` per indicator names the batch function of :mod:`velox.indicators`
and the streaming class of :mod:`velox.indicators.streaming` the generated code calls, so a
vectorisable strategy (batch) and an event-driven one (streaming) compute the same values.
Pure data: importing it imports neither pandas nor numba.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRICE_FIELDS", "IndicatorInfo", "ParamInfo", "INDICATORS"]

#: Bar fields an operand may read directly, and the source of single-input indicators.
PRICE_FIELDS = ("close", "open", "high", "low", "volume")


@dataclass(frozen=True)
class ParamInfo:
    """One indicator parameter: its keyword, default, type and lower bound."""

    name: str
    default: int | float
    kind: type = int
    minimum: float = 1  # inclusive for int, exclusive (``> minimum``) for float
    label: str = ""

    def check(self, value: object) -> str | None:
        """Return why ``value`` is not valid for this parameter, or None if it is."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {value!r}"
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                return f"must be a whole number, not {value!r}"
            if value < self.minimum:
                return f"must be >= {self.minimum:g}, not {value!r}"
        elif not value > self.minimum or value != value or value in (float("inf"),):
            return f"must be a finite number > {self.minimum:g}, not {value!r}"
        return None

    @property
    def bound_text(self) -> str:
        """Return the bound as :func:`velox.strategy.param` keywords (``ge=1``, ``gt=0``)."""
        return f"ge={self.minimum:g}" if self.kind is int else f"gt={self.minimum:g}"


@dataclass(frozen=True)
class IndicatorInfo:
    """An indicator the builder can use.

    ``inputs`` is ``("source",)`` for single-input indicators (SMA of the close, of the high …)
    or the bar fields read, in the batch function's positional order. ``outputs`` names the
    fields of a multi-output result (``MACDLines.signal``); empty for a single series.
    """

    name: str  # the batch function in velox.indicators
    label: str
    streaming: str  # the class in velox.indicators.streaming
    inputs: tuple[str, ...]
    params: tuple[ParamInfo, ...]
    outputs: tuple[str, ...] = ()
    description: str = ""

    @property
    def single_input(self) -> bool:
        """Return True if the indicator reads one series chosen by the operand's source."""
        return self.inputs == ("source",)

    def param(self, name: str) -> ParamInfo:
        """Return the parameter called ``name``."""
        for info in self.params:
            if info.name == name:
                return info
        raise KeyError(name)


def _window(default: int, name: str = "window", label: str = "") -> ParamInfo:
    return ParamInfo(name, default, int, 1, label or name.replace("_", " "))


def _positive(name: str, default: float) -> ParamInfo:
    return ParamInfo(name, default, float, 0, name.replace("_", " "))


_HLC = ("high", "low", "close")

#: Every indicator the builder offers, by name.
INDICATORS: dict[str, IndicatorInfo] = {
    info.name: info
    for info in (
        IndicatorInfo("sma", "SMA", "SMA", ("source",), (_window(20),), (), "simple MA"),
        IndicatorInfo("ema", "EMA", "EMA", ("source",), (_window(20),), (), "exponential MA"),
        IndicatorInfo("wma", "WMA", "WMA", ("source",), (_window(20),), (), "weighted MA"),
        IndicatorInfo("dema", "DEMA", "DEMA", ("source",), (_window(20),), (), "double EMA"),
        IndicatorInfo("tema", "TEMA", "TEMA", ("source",), (_window(20),), (), "triple EMA"),
        IndicatorInfo("rsi", "RSI", "RSI", ("source",), (_window(14),), (), "Wilder RSI, 0-100"),
        IndicatorInfo("roc", "ROC", "ROC", ("source",), (_window(10),), (), "rate of change, %"),
        IndicatorInfo(
            "macd", "MACD", "MACD", ("source",),
            (_window(12, "fast_window"), _window(26, "slow_window"), _window(9, "signal_window")),
            ("macd", "signal", "histogram"), "MACD line, signal line, histogram",
        ),
        IndicatorInfo(
            "bbands", "Bollinger Bands", "BBands", ("source",),
            (_window(20), _positive("upper_std", 2.0), _positive("lower_std", 2.0)),
            ("upper", "middle", "lower"), "SMA ± k standard deviations",
        ),
        IndicatorInfo(
            "stochrsi", "Stochastic RSI", "StochRSI", ("source",),
            (_window(14), _window(5, "k_window"), _window(3, "d_window")), ("k", "d"),
            "stochastic of the RSI, 0-100",
        ),
        IndicatorInfo("atr", "ATR", "ATR", _HLC, (_window(14),), (), "average true range"),
        IndicatorInfo("natr", "NATR", "NATR", _HLC, (_window(14),), (), "ATR as % of close"),
        IndicatorInfo("adx", "ADX", "ADX", _HLC, (_window(14),), (), "trend strength, 0-100"),
        IndicatorInfo("cci", "CCI", "CCI", _HLC, (_window(14),), (), "commodity channel index"),
        IndicatorInfo("willr", "Williams %R", "WillR", _HLC, (_window(14),), (), "-100 to 0"),
        IndicatorInfo(
            "stoch", "Stochastic", "Stoch", _HLC,
            (_window(5, "k_window"), _window(3, "k_smooth"), _window(3, "d_window")), ("k", "d"),
            "slow stochastic %K and %D, 0-100",
        ),
        IndicatorInfo(
            "mfi", "MFI", "MFI", (*_HLC, "volume"), (_window(14),), (), "money flow index, 0-100"
        ),
        IndicatorInfo("obv", "OBV", "OBV", ("close", "volume"), (), (), "on-balance volume"),
        IndicatorInfo(
            "psar", "Parabolic SAR", "PSAR", ("high", "low"),
            (_positive("acceleration", 0.02), _positive("maximum", 0.2)), (), "stop and reverse",
        ),
        IndicatorInfo(
            "supertrend", "Supertrend", "Supertrend", _HLC,
            (_window(10), _positive("multiplier", 3.0)), ("supertrend", "direction"),
            "trend line; direction +1 up, -1 down",
        ),
    )
}  # fmt: skip
