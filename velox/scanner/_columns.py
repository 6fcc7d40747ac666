"""The scanner's columns: the bar's own, ``<indicator>_<window>``, fixed indicators, ``prev_``.

Each name is parsed (and refused with a close-match suggestion) by :func:`_parse_column`;
:class:`_Columns` computes the ones an expression asks for, once, with :mod:`velox.indicators`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

#: The bar's own columns.
BASE_COLUMNS = ("open", "high", "low", "close", "volume")

_MINUTE_NS = 60 * 1_000_000_000
_DAY_NS = 24 * 60 * _MINUTE_NS
_OPEN_MINUTE = 9 * 60 + 15


def _close_only(name: str) -> Callable[[_Columns, int], np.ndarray]:
    def compute(cols: _Columns, window: int) -> np.ndarray:
        from velox import indicators

        return getattr(indicators, name)(cols["close"], window)

    return compute


def _hlc(name: str) -> Callable[[_Columns, int], np.ndarray]:
    def compute(cols: _Columns, window: int) -> np.ndarray:
        from velox import indicators

        return getattr(indicators, name)(cols["high"], cols["low"], cols["close"], window)

    return compute


def _mfi(cols: _Columns, window: int) -> np.ndarray:
    from velox.indicators import mfi

    return mfi(cols["high"], cols["low"], cols["close"], cols["volume"], window)


def _avg_volume(cols: _Columns, window: int) -> np.ndarray:
    from velox.indicators import sma

    return sma(cols["volume"], window)


def _channel(part: str) -> Callable[[_Columns, int], np.ndarray]:
    def compute(cols: _Columns, window: int) -> np.ndarray:
        from velox.indicators import donchian

        return getattr(donchian(cols["high"], cols["low"], window), part)

    return compute


def _bollinger(part: str) -> Callable[[_Columns, int], np.ndarray]:
    def compute(cols: _Columns, window: int) -> np.ndarray:
        from velox.indicators import bbands

        return getattr(bbands(cols["close"], window), part)

    return compute


def _supertrend_part(part: str) -> Callable[[_Columns, int], np.ndarray]:
    def compute(cols: _Columns, window: int) -> np.ndarray:
        from velox.indicators import supertrend

        lines = supertrend(cols["high"], cols["low"], cols["close"], window, 3.0)
        return getattr(lines, part)

    return compute


def _opening_range(part: str) -> Callable[[_Columns, int], np.ndarray]:
    def compute(cols: _Columns, minutes: int) -> np.ndarray:
        return opening_range(cols.ts_ns, cols["high"], cols["low"], minutes)[part]

    return compute


#: ``<indicator>_<window>`` columns: name → (what it is, how it is computed).
INDICATORS: dict[str, tuple[str, Callable[[_Columns, int], np.ndarray]]] = {
    "sma": ("simple moving average of close (TA-Lib SMA)", _close_only("sma")),
    "ema": ("exponential moving average of close (TA-Lib EMA)", _close_only("ema")),
    "wma": ("weighted moving average of close (TA-Lib WMA)", _close_only("wma")),
    "dema": ("double EMA of close (TA-Lib DEMA)", _close_only("dema")),
    "tema": ("triple EMA of close (TA-Lib TEMA)", _close_only("tema")),
    "rsi": ("Wilder's RSI of close, 0–100 (TA-Lib RSI)", _close_only("rsi")),
    "roc": ("rate of change of close in % (TA-Lib ROC)", _close_only("roc")),
    "atr": ("average true range (TA-Lib ATR)", _hlc("atr")),
    "natr": ("ATR as % of close (TA-Lib NATR)", _hlc("natr")),
    "adx": ("average directional index (TA-Lib ADX)", _hlc("adx")),
    "cci": ("commodity channel index (TA-Lib CCI)", _hlc("cci")),
    "willr": ("Williams %R, −100…0 (TA-Lib WILLR)", _hlc("willr")),
    "mfi": ("money flow index, 0–100 (TA-Lib MFI)", _mfi),
    "avg_volume": ("simple average of volume over the window, this bar included", _avg_volume),
    "highest": ("highest high over the window, this bar included", _channel("upper")),
    "lowest": ("lowest low over the window, this bar included", _channel("lower")),
    "bb_upper": ("upper Bollinger band (2σ)", _bollinger("upper")),
    "bb_middle": ("middle Bollinger band (the SMA)", _bollinger("middle")),
    "bb_lower": ("lower Bollinger band (2σ)", _bollinger("lower")),
    "supertrend": ("Supertrend line (multiplier 3)", _supertrend_part("supertrend")),
    "supertrend_dir": ("Supertrend direction, +1 up / −1 down", _supertrend_part("direction")),
    "orb_high": (
        "high of the session's first <window> minutes, on bars after them (intraday)",
        _opening_range("high"),
    ),
    "orb_low": (
        "low of the session's first <window> minutes, on bars after them (intraday)",
        _opening_range("low"),
    ),
}


def _macd_part(part: str) -> Callable[[_Columns], np.ndarray]:
    def compute(cols: _Columns) -> np.ndarray:
        from velox.indicators import macd

        return getattr(macd(cols["close"]), part)

    return compute


def _obv(cols: _Columns) -> np.ndarray:
    from velox.indicators import obv

    return obv(cols["close"], cols["volume"])


def _vwap(cols: _Columns) -> np.ndarray:
    from velox.indicators import vwap

    return vwap(cols["high"], cols["low"], cols["close"], cols["volume"], timestamps=cols.ts_ns)


#: Indicator columns without a window: name → (what it is, how it is computed).
FIXED: dict[str, tuple[str, Callable[[_Columns], np.ndarray]]] = {
    "macd": ("MACD line 12/26 (TA-Lib MACD)", _macd_part("macd")),
    "macd_signal": ("MACD signal line (9)", _macd_part("signal")),
    "macd_hist": ("MACD histogram", _macd_part("histogram")),
    "obv": ("on-balance volume", _obv),
    "vwap": ("session VWAP of the typical price", _vwap),
}

_WINDOWED = re.compile(r"(?P<indicator>[a-z][a-z_]*?)_(?P<window>\d+)")


@dataclass(frozen=True, slots=True)
class _Column:
    """A parsed column name: the bar's own, an indicator (with its window) or ``prev_`` of one."""

    kind: str  # "base", "fixed", "indicator", "prev", "extra"
    name: str  # the base/fixed/indicator name, or the inner column of "prev"
    window: int | None = None


def _parse_column(
    name: str, timeframe: str, extra: Iterable[str] = (), condition: str = ""
) -> _Column:
    """Return what column ``name`` is, or raise ValidationError naming it with a suggestion."""
    if name in extra:
        return _Column("extra", name)
    if name in BASE_COLUMNS:
        return _Column("base", name)
    if name in FIXED:
        return _Column("fixed", name)
    if name.startswith("prev_") and len(name) > 5:
        try:
            _parse_column(name[5:], timeframe, extra)
        except ValidationError as exc:
            if not str(exc).startswith("unknown column"):
                raise
        else:
            return _Column("prev", name[5:])
    match = _WINDOWED.fullmatch(name)
    if match and match["indicator"] in INDICATORS:
        indicator, window = match["indicator"], int(match["window"])
        if window < 1:
            raise ValidationError(f"column {name!r}: the window must be at least 1 bar")
        if indicator in ("orb_high", "orb_low"):
            _check_opening_range(name, window, timeframe)
        return _Column("indicator", indicator, window)
    where = f" in {condition!r}" if condition else ""
    raise ValidationError(f"unknown column {name!r}{where}: {_suggest(name, extra)}")


def _suggest(name: str, extra: Iterable[str] = ()) -> str:
    digits = re.findall(r"\d+", name)
    window = digits[-1] if digits else "14"
    candidates = [*BASE_COLUMNS, *FIXED, *extra]
    candidates += [f"prev_{c}" for c in (*BASE_COLUMNS, *extra)]
    candidates += [f"{ind}_{window}" for ind in INDICATORS]
    candidates += [f"prev_{ind}_{window}" for ind in INDICATORS]
    close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{hint}columns are {', '.join((*BASE_COLUMNS, *extra))}, <indicator>_<window> for "
        f"{', '.join(INDICATORS)} (e.g. rsi_14, sma_200), {', '.join(FIXED)}, and prev_<column> "
        "for the previous bar's value (prev_close)"
    )


def _check_opening_range(name: str, minutes: int, timeframe: str) -> None:
    from velox.calendar import TIMEFRAMES

    bar = TIMEFRAMES[timeframe]
    if bar is None:
        raise ValidationError(
            f"column {name!r} (an opening range) needs an intraday timeframe such as '5m', not "
            f"{timeframe!r}"
        )
    if minutes % bar:
        raise ValidationError(
            f"column {name!r}: the opening range of {minutes} minutes is not a whole number of "
            f"{timeframe} bars; use a multiple of {bar} minutes"
        )


def opening_range(
    ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, minutes: int
) -> dict[str, np.ndarray]:
    """Return the opening range (``"high"``, ``"low"``) of each bar's session, on the bars after it.

    The range is the highest high and lowest low of the bars starting in the session's first
    ``minutes`` (09:15 IST up to 09:15 + ``minutes``); bars inside the range, and sessions with
    no bar in it, get NaN. ``ts_ns`` are the bars' start times, UTC epoch nanoseconds, sorted.

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.date_range("2025-06-02 09:15", periods=4, freq="5min", tz="Asia/Kolkata")
    >>> high, low = np.array([10.0, 12, 11, 13]), np.array([9.0, 8, 10, 12])
    >>> out = opening_range(ts.as_unit("ns").asi8, high, low, 10)
    >>> out["high"], out["low"]
    (array([nan, nan, 12., 12.]), array([nan, nan,  8.,  8.]))
    """
    from velox.calendar import IST_OFFSET_NS

    ist = np.asarray(ts_ns, dtype=np.int64) + IST_OFFSET_NS
    day = ist // _DAY_NS
    minute = (ist - day * _DAY_NS) // _MINUTE_NS
    inside = (minute >= _OPEN_MINUTE) & (minute < _OPEN_MINUTE + minutes)
    after = minute >= _OPEN_MINUTE + minutes
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    out = {}
    for part, values, reduce, empty in (
        ("high", high, np.maximum, -np.inf),
        ("low", low, np.minimum, np.inf),
    ):
        masked = np.where(inside, values, empty)
        per_session = reduce.reduceat(masked, starts) if len(masked) else masked
        per_session = np.where(np.isfinite(per_session), per_session, np.nan)
        lengths = np.diff(np.r_[starts, len(masked)])
        spread = np.repeat(per_session, lengths)
        out[part] = np.where(after, spread, np.nan)
    return out


class _Columns:
    """The columns of one instrument's bars, each computed on first use and kept."""

    def __init__(
        self,
        frame: pd.DataFrame,
        timeframe: str,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.timeframe = timeframe
        self.ts_ns = frame.index.as_unit("ns").asi8  # UTC epoch ns whatever the zone
        if tuple(frame.columns) == BASE_COLUMNS:  # the store's and velox.bars' layout
            # one block copy, one contiguous row per field: five ``frame[col]`` cost more
            block = frame.to_numpy(dtype=np.float64).T.copy()
            self._values: dict[str, np.ndarray] = dict(zip(BASE_COLUMNS, block, strict=True))
        else:
            self._values = {
                col: np.ascontiguousarray(frame[col].to_numpy(dtype=np.float64))
                for col in BASE_COLUMNS
            }
        self._extra = set(extra or ())
        self._values.update(extra or {})

    def __len__(self) -> int:
        return len(self.ts_ns)

    def __getitem__(self, name: str) -> np.ndarray:
        values = self._values.get(name)
        if values is None:
            values = self._compute(name)
            self._values[name] = values
        return values

    def _compute(self, name: str) -> np.ndarray:
        column = _parse_column(name, self.timeframe, self._extra)
        if column.kind == "prev":
            inner = self[column.name]
            out = np.empty_like(inner)
            out[:1] = np.nan
            out[1:] = inner[:-1]
            return out
        if column.kind == "fixed":
            return np.asarray(FIXED[column.name][1](self), dtype=np.float64)
        try:
            return np.asarray(INDICATORS[column.name][1](self, column.window), dtype=np.float64)
        except ValueError as exc:  # a window the indicator refuses
            raise ValidationError(f"column {name!r}: {exc}") from None
