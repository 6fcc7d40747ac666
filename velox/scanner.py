"""The scanner: which instruments of a universe meet a condition on one bar, ranked.

:func:`scan` (``velox.scan``) evaluates a **preset** (:data:`PRESETS`: RSI oversold, 52-week
high, volume spike, gap, Supertrend flip, moving-average cross, opening-range breakout …) or a
**custom condition** on the bar at ``at`` of every instrument of a universe, and returns one row
per instrument that meets it, with the values the condition used, ranked.

Custom conditions are pandas-style expressions over columns: the bar's ``open``, ``high``,
``low``, ``close``, ``volume``; indicators named ``<indicator>_<window>`` (``rsi_14``,
``sma_200``, ``atr_14`` …, :data:`INDICATORS`), a few without a window (``macd``, ``vwap`` …);
and ``prev_<column>``, any column one bar earlier (``prev_close``, ``prev_sma_50``). Only the
columns an expression names are computed, with :mod:`velox.indicators` (TA-Lib-exact, over the
instrument's whole history up to the bar). The expression is parsed with :mod:`ast` into a small
allowed subset — names, numbers, comparisons (chained too), ``and``/``or``/``not`` (or
``&``/``|``/``~``), ``+ - * /``, unary minus, parentheses — and evaluated over numpy arrays by
walking that tree: nothing is ever passed to ``eval``, so a condition cannot call a function,
read an attribute or run any other code. A row where a column the condition names is undefined
(an indicator's warm-up, no previous bar) never matches.

See ``docs/scanner.md``.
"""

from __future__ import annotations

import ast
import difflib
import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import DataError, ValidationError

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from velox.store import Store

__all__ = [
    "scan",
    "evaluate",
    "Preset",
    "PRESETS",
    "INDICATORS",
    "BASE_COLUMNS",
    "DASK_THRESHOLD",
]

logger = logging.getLogger(__name__)

#: A universe with more instruments than this runs through
#: :func:`velox.backtest.distributed.run_tasks` (Dask) in chunks of :data:`CHUNK_SIZE`.
DASK_THRESHOLD = 500
#: Instruments per Dask task: one task per instrument would cost more in scheduling than in work.
CHUNK_SIZE = 25
#: Seconds a scan runs before its progress bar appears (short scans show none).
PROGRESS_DELAY = 1.0
#: Longest condition accepted, in characters (a parse of kilobytes of nesting is refused early).
MAX_CONDITION_LENGTH = 2_000

#: The bar's own columns.
BASE_COLUMNS = ("open", "high", "low", "close", "volume")

_ALLOWED = (
    "column names, numbers, comparisons (< <= > >= == !=, chained), and/or/not (or & | ~), "
    "+ - * /, unary minus and parentheses"
)

_MINUTE_NS = 60 * 1_000_000_000
_DAY_NS = 24 * 60 * _MINUTE_NS
_OPEN_MINUTE = 9 * 60 + 15


# ---- columns -----------------------------------------------------------------------------------


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
    >>> out = opening_range(ts.asi8, np.array([10.0, 12, 11, 13]), np.array([9.0, 8, 10, 12]), 10)
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
        self.ts_ns = frame.index.tz_convert("UTC").as_unit("ns").asi8
        self._values: dict[str, np.ndarray] = {
            col: np.ascontiguousarray(frame[col].to_numpy(dtype=np.float64)) for col in BASE_COLUMNS
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


# ---- expressions -------------------------------------------------------------------------------

_COMPARE = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_ARITHMETIC = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_REFUSED = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.NamedExpr: "assignments (:=)",
    ast.IfExp: "if/else expressions",
    ast.Starred: "starred expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}


@dataclass(frozen=True, slots=True)
class _Expression:
    """A checked expression: its tree, the columns it names (in order) and its kind."""

    text: str
    tree: ast.expr
    names: tuple[str, ...]
    kind: str  # "bool" (a condition) or "number"


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> _Expression:
    """Return ``text`` parsed and checked against the allowed subset (see the module doc)."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("the scan condition is empty; e.g. 'rsi_14 < 30 and close > sma_200'")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ValidationError(
            f"the scan condition is {len(text):,} characters long; the limit is "
            f"{MAX_CONDITION_LENGTH:,}"
        )
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ValidationError(
            f"cannot parse the condition {source!r}{where}: {exc.msg}; write e.g. "
            "'rsi_14 < 30 and close > sma_200'"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ValidationError(f"cannot parse the condition {source!r}: {exc}") from None
    names: list[str] = []
    kind = _check(tree.body, source, names)
    return _Expression(source, tree.body, tuple(dict.fromkeys(names)), kind)


def _refuse(node: ast.AST, source: str, what: str) -> ValidationError:
    segment = ast.get_source_segment(source, node) or type(node).__name__
    return ValidationError(
        f"{what} are not allowed in a scan condition ({segment!r} in {source!r}); allowed: "
        f"{_ALLOWED}"
    )


def _check(node: ast.AST, source: str, names: list[str]) -> str:
    """Return the kind ("bool" or "number") of ``node``, refusing anything outside the subset."""
    if isinstance(node, ast.Name):
        names.append(node.id)
        return "number"
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _refuse(node, source, "constants other than numbers")
        if not math.isfinite(node.value):
            raise _refuse(node, source, "infinite numbers")
        return "number"
    if isinstance(node, ast.Compare):
        for part in (node.left, *node.comparators):
            _expect(part, "number", source, names, "a comparison compares numbers")
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise _refuse(node, source, f"{type(op).__name__} comparisons")
        return "bool"
    if isinstance(node, ast.BoolOp):
        for part in node.values:
            _expect(part, "bool", source, names, "and/or join conditions")
        return "bool"
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not | ast.Invert):
            _expect(node.operand, "bool", source, names, "not/~ negates a condition")
            return "bool"
        if isinstance(node.op, ast.USub | ast.UAdd):
            _expect(node.operand, "number", source, names, "a sign applies to a number")
            return "number"
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitAnd | ast.BitOr):
            for part in (node.left, node.right):
                _expect(part, "bool", source, names, "& and | join conditions")
            return "bool"
        if type(node.op) in _ARITHMETIC:
            for part in (node.left, node.right):
                _expect(part, "number", source, names, "+ - * / work on numbers")
            return "number"
        raise _refuse(node, source, f"the operator {type(node.op).__name__}")
    raise _refuse(node, source, _REFUSED.get(type(node), f"{type(node).__name__} expressions"))


def _expect(node: ast.AST, kind: str, source: str, names: list[str], why: str) -> None:
    got = _check(node, source, names)
    if got != kind:
        segment = ast.get_source_segment(source, node) or "?"
        wanted = "a comparison such as 'rsi_14 < 30'" if kind == "bool" else "a number"
        raise ValidationError(
            f"{segment!r} in {source!r} is not {wanted}: {why}; allowed: {_ALLOWED}"
        )


def _evaluate(node: ast.expr, cols: _Columns) -> np.ndarray:
    """Return ``node`` evaluated over whole columns (numpy arrays, one value per bar)."""
    if isinstance(node, ast.Name):
        return cols[node.id]
    if isinstance(node, ast.Constant):
        return np.full(len(cols), float(node.value))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, cols)
        result = None
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, cols)
            part = _COMPARE[type(op)](left, right)
            result = part if result is None else result & part
            left = right
        return result
    if isinstance(node, ast.BoolOp):
        parts = [_evaluate(value, cols) for value in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return combine.reduce(parts)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, cols)
        if isinstance(node.op, ast.Not | ast.Invert):
            return ~operand
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, cols), _evaluate(node.right, cols)
        if isinstance(node.op, ast.BitAnd):
            return left & right
        if isinstance(node.op, ast.BitOr):
            return left | right
        return _ARITHMETIC[type(node.op)](left, right)
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _compile refused it


# ---- presets -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """What a scan evaluates: a condition, the values it reports, how it ranks."""

    label: str
    condition: str
    values: tuple[tuple[str, str], ...]  # (result column, expression)
    rank_by: str | None = None
    ascending: bool = True
    extra: tuple[str, tuple[tuple[str, object], ...]] | None = None  # (_EXTRA key, params)


@dataclass(frozen=True, slots=True)
class Preset:
    """A named scan: its parameters (with defaults), what it tests and how it ranks.

    ``rule(**params)`` builds the condition; :func:`scan` calls it with the defaults updated by
    the caller's keywords, each converted to its default's type.
    """

    name: str
    summary: str
    params: Mapping[str, object]
    rule: Callable[..., _Rule]
    ranking: str
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    intraday: bool = False

    def signature(self) -> str:
        """Return ``name(param=default, …)``."""
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({params})"

    def describe(self) -> str:
        """Return ``name(param=default, …): summary; ranked by …``."""
        return f"{self.signature()}: {self.summary}; ranked by {self.ranking}"


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _rsi_oversold(window: int, threshold: float) -> _Rule:
    rsi = f"rsi_{window}"
    return _Rule("rsi_oversold", f"{rsi} < {_num(threshold)}", (("close", "close"), (rsi, rsi)),
                 rsi, True)  # fmt: skip


def _rsi_overbought(window: int, threshold: float) -> _Rule:
    rsi = f"rsi_{window}"
    return _Rule("rsi_overbought", f"{rsi} > {_num(threshold)}",
                 (("close", "close"), (rsi, rsi)), rsi, False)  # fmt: skip


def _high_52w(window: int) -> _Rule:
    level = f"prev_highest_{window}"
    return _Rule(
        "52w_high",
        f"close >= {level}",
        (("close", "close"), (level, level), ("pct_above", f"(close / {level} - 1) * 100")),
        "pct_above",
        False,
    )


def _low_52w(window: int) -> _Rule:
    level = f"prev_lowest_{window}"
    return _Rule(
        "52w_low",
        f"close <= {level}",
        (("close", "close"), (level, level), ("pct_below", f"(1 - close / {level}) * 100")),
        "pct_below",
        False,
    )


def _volume_spike(window: int, k: float) -> _Rule:
    average = f"prev_avg_volume_{window}"
    return _Rule(
        "volume_spike",
        f"volume > {_num(k)} * {average}",
        (("close", "close"), ("volume", "volume"), (average, average),
         ("volume_ratio", f"volume / {average}")),
        "volume_ratio",
        False,
    )  # fmt: skip


def _gap(direction: str) -> Callable[[float], _Rule]:
    def rule(pct: float) -> _Rule:
        gap = "(open / prev_close - 1) * 100"
        test = f"{gap} > {_num(pct)}" if direction == "up" else f"{gap} < -{_num(pct)}"
        return _Rule(
            f"gap_{direction}",
            test,
            (("open", "open"), ("prev_close", "prev_close"), ("gap_pct", gap)),
            "gap_pct",
            direction == "down",
        )

    return rule


_FLIPS = {"up": "direction > prev_direction", "down": "direction < prev_direction",
          "any": "direction != prev_direction"}  # fmt: skip


def _supertrend_flip(window: int, multiplier: float, direction: str) -> _Rule:
    return _Rule(
        "supertrend_flip",
        _FLIPS[direction],
        (("close", "close"), ("supertrend", "supertrend"), ("direction", "direction"),
         ("distance_pct", "(close / supertrend - 1) * 100")),
        "distance_pct",
        False,
        ("supertrend", (("window", window), ("multiplier", multiplier))),
    )  # fmt: skip


def _ma_cross(fast: int, slow: int, direction: str, ma: str) -> _Rule:
    if not fast < slow:
        raise ValidationError(f"ma_cross needs fast < slow, got fast={fast}, slow={slow}")
    f, s = f"{ma}_{fast}", f"{ma}_{slow}"
    up = f"{f} > {s} and prev_{f} <= prev_{s}"
    down = f"{f} < {s} and prev_{f} >= prev_{s}"
    test = {"up": up, "down": down, "any": f"({up}) or ({down})"}[direction]
    return _Rule(
        "ma_cross",
        test,
        (("close", "close"), (f, f), (s, s), ("spread_pct", f"({f} / {s} - 1) * 100")),
        "spread_pct",
        direction == "down",
    )


def _orb(minutes: int, direction: str) -> _Rule:
    high, low = f"orb_high_{minutes}", f"orb_low_{minutes}"
    if direction == "up":
        test, pct = f"close > {high}", f"(close / {high} - 1) * 100"
    else:
        test, pct = f"close < {low}", f"(close / {low} - 1) * 100"
    return _Rule(
        "orb",
        test,
        (("close", "close"), (high, high), (low, low), ("breakout_pct", pct)),
        "breakout_pct",
        direction == "down",
    )


def _supertrend_columns(frame_cols: _Columns, window: int, multiplier: float) -> dict:
    from velox.indicators import supertrend

    lines = supertrend(frame_cols["high"], frame_cols["low"], frame_cols["close"], window,
                       multiplier)  # fmt: skip
    return {"supertrend": lines.supertrend, "direction": lines.direction}


#: Extra columns a preset computes itself (a Supertrend with its own multiplier).
_EXTRA: dict[str, tuple[tuple[str, ...], Callable[..., dict[str, np.ndarray]]]] = {
    "supertrend": (("supertrend", "direction"), _supertrend_columns),
}

#: Every preset by name (``velox.scan("rsi_oversold")``); see ``docs/scanner.md``.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("rsi_oversold", "RSI(window) below threshold",
               {"window": 14, "threshold": 30.0}, _rsi_oversold, "RSI, lowest first"),
        Preset("rsi_overbought", "RSI(window) above threshold",
               {"window": 14, "threshold": 70.0}, _rsi_overbought, "RSI, highest first"),
        Preset("52w_high", "close at or above the highest high of the previous window bars "
               "(252 sessions ≈ 52 weeks on 1d)", {"window": 252}, _high_52w,
               "% above that high, highest first"),
        Preset("52w_low", "close at or below the lowest low of the previous window bars",
               {"window": 252}, _low_52w, "% below that low, deepest first"),
        Preset("volume_spike", "volume above k × the average volume of the previous window "
               "bars", {"window": 20, "k": 2.0}, _volume_spike, "volume / average, highest "
               "first"),
        Preset("gap_up", "open above the previous close by more than pct %", {"pct": 2.0},
               _gap("up"), "gap %, largest first"),
        Preset("gap_down", "open below the previous close by more than pct %", {"pct": 2.0},
               _gap("down"), "gap %, largest fall first"),
        Preset("supertrend_flip", "Supertrend(window, multiplier) direction changed on this "
               "bar (direction: up, down or any)",
               {"window": 10, "multiplier": 3.0, "direction": "any"}, _supertrend_flip,
               "close vs the Supertrend line in %, highest first",
               {"direction": ("any", "up", "down")}),
        Preset("ma_cross", "the fast moving average crossed the slow one on this bar (ma: sma "
               "or ema; direction: up, down or any)",
               {"fast": 50, "slow": 200, "direction": "any", "ma": "sma"}, _ma_cross,
               "fast vs slow in %, highest first (lowest first for direction='down')",
               {"direction": ("any", "up", "down"), "ma": ("sma", "ema")}),
        Preset("orb", "opening-range breakout: close above the high (direction='down': below "
               "the low) of the session's first minutes (intraday timeframes only)",
               {"minutes": 15, "direction": "up"}, _orb,
               "breakout % beyond the range, largest first", {"direction": ("up", "down")},
               intraday=True),
    )
}  # fmt: skip


def _preset_params(preset: Preset, given: Mapping[str, object]) -> dict[str, object]:
    """Return the preset's parameters: defaults updated by ``given``, each of its default's type."""
    params = dict(preset.params)
    for key, value in given.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValidationError(
                f"preset {preset.name!r} has no parameter {key!r}: {hint}its parameters are "
                f"{', '.join(f'{k}={v!r}' for k, v in preset.params.items())}"
            )
        params[key] = _coerce(preset, key, value, params[key])
    return params


def _coerce(preset: Preset, key: str, value: object, default: object) -> object:
    what = f"{preset.name}: {key}={value!r}"
    if isinstance(default, str):
        choices = preset.choices.get(key, ())
        if not isinstance(value, str) or (choices and value not in choices):
            raise ValidationError(f"{what} must be one of {', '.join(map(repr, choices))}")
        return value
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValidationError(f"{what} must be a finite number")
    if isinstance(default, int):
        if not number.is_integer() or number < 1:
            raise ValidationError(f"{what} must be a whole number ≥ 1")
        return int(number)
    return number


def _rule(
    condition: str,
    timeframe: str,
    params: Mapping[str, object],
    rank_by: str | None,
    ascending: bool | None,
) -> _Rule:
    """Return the rule of a preset name or a custom condition, every column checked."""
    preset = PRESETS.get(condition.strip()) if isinstance(condition, str) else None
    if preset is not None:
        if preset.intraday and timeframe == "1d":
            raise ValidationError(
                f"preset {preset.name!r} needs an intraday timeframe (e.g. timeframe='5m'), "
                "not '1d'"
            )
        rule = preset.rule(**_preset_params(preset, params))
    else:
        if params:
            names = ", ".join(f"{k}=" for k in params)
            hint = _preset_hint(condition)
            raise ValidationError(
                f"{names} given with a custom condition {condition!r}: keywords are preset "
                f"parameters{hint}; put numbers in the condition itself"
            )
        expression = _compile(condition)
        if expression.kind != "bool" and _looks_like_name(condition):
            raise ValidationError(f"unknown preset {condition.strip()!r}:{_preset_hint(condition)}")
        values = tuple((name, name) for name in expression.names)
        rule = _Rule(expression.text, expression.text, values)
    if rank_by is not None:
        if not any(name == rank_by for name, _ in rule.values):
            rule = _replace(rule, values=(*rule.values, (rank_by, rank_by)))
        rule = _replace(rule, rank_by=rank_by, ascending=bool(ascending))
    elif ascending is not None and rule.rank_by is not None:
        rule = _replace(rule, ascending=bool(ascending))
    _check_rule(rule, timeframe)
    return rule


def _replace(rule: _Rule, **changes: object) -> _Rule:
    from dataclasses import replace

    return replace(rule, **changes)


def _looks_like_name(text: str) -> bool:
    return re.fullmatch(r"\s*[A-Za-z_][\w]*\s*", text) is not None


def _preset_hint(text: str) -> str:
    close = difflib.get_close_matches(text.strip(), list(PRESETS), n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    return f"{hint} presets are {', '.join(PRESETS)}; or write a condition such as 'rsi_14 < 30'"


def _check_rule(rule: _Rule, timeframe: str) -> None:
    extra = _EXTRA[rule.extra[0]][0] if rule.extra else ()
    condition = _compile(rule.condition)
    if condition.kind != "bool":
        raise ValidationError(
            f"the condition {rule.condition!r} is a number, not a test; compare it, e.g. "
            f"'{rule.condition} > 0'"
        )
    for name in condition.names:
        _parse_column(name, timeframe, extra, rule.condition)
    for column, text in rule.values:
        expression = _compile(text)
        if expression.kind != "number":
            raise ValidationError(f"rank_by={column!r} must be a column or a number, not a test")
        for name in expression.names:
            _parse_column(name, timeframe, extra, text)


# ---- evaluation --------------------------------------------------------------------------------


def evaluate(
    condition: str,
    bars: pd.DataFrame,
    timeframe: str = "1d",
    **preset_params: object,
) -> pd.DataFrame:
    """Return the condition's verdict on every bar of one instrument, beside the values it uses.

    The history behind :func:`scan`'s one-bar answer: a DataFrame on ``bars``' index with the
    columns the condition (or preset) reports and a boolean ``match`` column.

    Examples
    --------
    >>> import velox
    >>> out = velox.scanner.evaluate("rsi_14 < 30", df)           # doctest: +SKIP
    >>> out[out["match"]].index[-5:]                              # the last five oversold days
    """
    import pandas as pd

    from velox.calendar import check_timeframe

    check_timeframe(timeframe)
    rule = _rule(condition, timeframe, preset_params, None, None)
    _check_bars("bars", bars)
    columns = _frame_columns(rule, timeframe, bars)
    match, values = _apply(rule, columns)
    out = pd.DataFrame(values, index=bars.index)
    out["match"] = match
    return out


def _frame_columns(rule: _Rule, timeframe: str, frame: pd.DataFrame) -> _Columns:
    columns = _Columns(frame, timeframe)
    if rule.extra is not None:
        names, compute = _EXTRA[rule.extra[0]]
        extra = compute(columns, **dict(rule.extra[1]))
        columns = _Columns(frame, timeframe, {n: np.asarray(extra[n], dtype=np.float64)
                                              for n in names})  # fmt: skip
    return columns


def _apply(rule: _Rule, columns: _Columns) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the condition's verdict on every bar and the value columns."""
    condition = _compile(rule.condition)
    with np.errstate(all="ignore"):
        match = np.asarray(_evaluate(condition.tree, columns), dtype=bool)
        for name in condition.names:  # an undefined input (warm-up, no previous bar): no match
            match &= ~np.isnan(columns[name])
        values = {name: _evaluate(_compile(text).tree, columns) for name, text in rule.values}
    return match, values


def _last_bar(rule: _Rule, timeframe: str, frame: pd.DataFrame) -> dict[str, object] | None:
    """Return the scan row of one instrument's bars (ending at the bar scanned), or None."""
    if frame.empty:
        return None
    match, values = _apply(rule, _frame_columns(rule, timeframe, frame))
    if not match[-1]:
        return None
    row: dict[str, object] = {"ts": frame.index[-1]}
    row.update({name: float(column[-1]) for name, column in values.items()})
    return row


# ---- sources -----------------------------------------------------------------------------------


class _StoreSource:
    """Bars read from a store; pickled (for a Dask worker) as its URL, reopened there."""

    def __init__(self, store: Store) -> None:
        self.store: Store | None = store
        self.url = store.url

    def __getstate__(self) -> dict[str, object]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.url = str(state["url"])
        self.store = None

    def read(self, instrument_id: str, timeframe: str, at: object) -> pd.DataFrame:
        if self.store is None:
            from velox.store import open_store

            self.store = open_store(self.url)
        return self.store.read_bars(instrument_id, timeframe, end=at)


class _MappingSource:
    """Bars handed in as {instrument id: DataFrame}."""

    def __init__(self, bars: Mapping[str, pd.DataFrame]) -> None:
        self.bars = bars

    def read(self, instrument_id: str, timeframe: str, at: object) -> pd.DataFrame:
        import pandas as pd

        from velox import _cut

        frame = self.bars.get(instrument_id)
        if frame is None:
            return pd.DataFrame(columns=list(BASE_COLUMNS))
        return frame if at is None else _cut(frame, None, at)


def _scan_chunk(
    instrument_ids: Sequence[str],
    rule: _Rule,
    timeframe: str,
    at: object,
    source: _StoreSource | _MappingSource,
) -> list[tuple[str, dict[str, object] | None, bool]]:
    """Return (id, row or None, whether it had a bar) for each instrument of one chunk."""
    out = []
    for instrument_id in instrument_ids:
        frame = source.read(instrument_id, timeframe, at)
        out.append((instrument_id, _last_bar(rule, timeframe, frame), not frame.empty))
    return out


def _check_bars(key: object, frame: object) -> None:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"bars[{key!r}] must be a DataFrame, not {type(frame).__name__}")
    missing = [c for c in BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"bars[{key!r}] has no {', '.join(missing)} column(s); it needs OHLCV")


# ---- universes ---------------------------------------------------------------------------------


def _universe(
    universe: str | Sequence[str] | None,
    timeframe: str,
    bars: Mapping[str, pd.DataFrame] | None,
    store: Store | None,
) -> tuple[list[str], bool]:
    """Return the instrument ids to scan and whether they were listed explicitly."""
    from velox.types import check_instrument_id
    from velox.universes import ALL
    from velox.universes import universe as named

    if universe is None:
        universe = ALL
    if isinstance(universe, str):
        text = universe.strip()
        if ":" in text:  # one id, or "NSE:A,NSE:B"
            ids = [part.strip() for part in text.split(",") if part.strip()]
        elif text.lower() == ALL:
            return _all_instruments(timeframe, bars, store), False
        else:
            return list(named(text)), False
    else:
        ids = list(universe)
    if not ids:
        raise ValidationError("the universe is empty; give instrument ids or a name ('nifty50')")
    for instrument_id in ids:
        check_instrument_id(instrument_id)
    return list(dict.fromkeys(ids)), True


def _check_universe_name(universe: object) -> None:
    """Refuse an unknown universe name before any store is opened."""
    from velox.universes import ALL
    from velox.universes import universe as named

    if isinstance(universe, str) and ":" not in universe and universe.strip().lower() != ALL:
        named(universe)


def _all_instruments(
    timeframe: str, bars: Mapping[str, pd.DataFrame] | None, store: Store | None
) -> list[str]:
    from velox.calendar import TIMEFRAMES

    if bars is not None:
        return sorted(bars)
    summary = store.bar_summary()  # type: ignore[union-attr]
    target = TIMEFRAMES[timeframe]

    def serves(tf: str) -> bool:  # stored at the timeframe, or finer bars it resamples from
        minutes = TIMEFRAMES.get(tf)
        if tf == timeframe:
            return True
        if minutes is None:
            return False
        return target is None or (target > minutes and target % minutes == 0)

    return sorted(set(summary.loc[summary["timeframe"].map(serves), "instrument_id"]))


def _check_at(at: object) -> None:
    import pandas as pd

    if at is None:
        return
    if not isinstance(at, str | date | datetime | pd.Timestamp):
        raise ValidationError(f"at={at!r} must be a date or time (e.g. '2022-06-30'), or None")
    try:
        stamp = pd.Timestamp(at)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ValidationError(f"at={at!r} is not a date or time; write e.g. '2022-06-30'")


# ---- the scan ----------------------------------------------------------------------------------


def scan(
    condition: str,
    universe: str | Sequence[str] | None = None,
    timeframe: str = "1d",
    at: date | datetime | str | None = None,
    store: Store | None = None,
    bars: Mapping[str, pd.DataFrame] | None = None,
    *,
    rank_by: str | None = None,
    ascending: bool | None = None,
    progress: bool | None = None,
    scheduler: str | Client | None = None,
    **preset_params: object,
) -> pd.DataFrame:
    """Return the instruments of a universe that meet a condition on one bar, ranked.

    One row per instrument whose bar at ``at`` meets the condition, indexed by instrument id:
    ``ts`` (that bar's start, IST) and the values the condition used as columns, in rank order.
    Indicators are computed over each instrument's whole history up to that bar, so the values
    equal TA-Lib's on the same bars.

    Parameters
    ----------
    condition
        A preset name (:data:`PRESETS`: ``"rsi_oversold"``, ``"52w_high"``, ``"volume_spike"``,
        ``"gap_up"``, ``"supertrend_flip"``, ``"ma_cross"``, ``"orb"`` …) or a custom condition
        over columns, e.g. ``"rsi_14 < 30 and close > sma_200"``, ``"ema_20 > ema_50"``,
        ``"close > 1.02 * prev_close"`` (the module documentation lists the language).
    universe
        Instrument ids (``["NSE:RELIANCE", "NSE:TCS"]``, or one string ``"NSE:A,NSE:B"``), a
        named universe (``"nifty50"``, :mod:`velox.universes`) or ``"all"``: every instrument
        with bars at ``timeframe`` (stored, or finer bars to resample from; with ``bars``, every
        key). Default ``"all"``.
    timeframe
        Any stored or resampled timeframe (``"1d"``, ``"15m"``, ``"1h"`` …).
    at
        The bar to test: None, each instrument's last bar; a date or time, the last bar starting
        at or before it (a date alone covers that whole day, so ``at="2025-06-10"`` on 5m bars
        is that session's last bar; naive values are IST). Bars are labelled by their start.
    store
        The store to read from (default: :func:`velox.store.open_store`), unless ``bars``.
    bars
        {instrument id: DataFrame of OHLCV bars at ``timeframe``, tz-aware index} to scan
        instead of the store (notebooks, tests).
    rank_by, ascending
        Rank by this column or numeric expression (added to the result when new), lowest first
        if ``ascending``; presets have their own ranking (:attr:`Preset.ranking`), custom
        conditions without ``rank_by`` are sorted by instrument id.
    progress
        Show a tqdm progress bar: None (default) shows one only once a scan has run for
        :data:`PROGRESS_DELAY` seconds; False never.
    scheduler
        Where a Dask run goes (see :func:`velox.backtest.distributed.run_tasks`). A universe of
        more than :data:`DASK_THRESHOLD` instruments, or any universe with ``scheduler`` given,
        is scanned through ``run_tasks`` in chunks of :data:`CHUNK_SIZE` instruments.
    **preset_params
        The preset's parameters (``window=14, threshold=25``); see :data:`PRESETS`.

    Returns
    -------
    pandas.DataFrame
        ``attrs`` holds the ``condition``, ``timeframe``, ``at``, how many instruments were
        ``scanned`` (had a bar) and the ids with no bar (``missing``).

    Raises
    ------
    velox.errors.ValidationError
        For an unknown preset, parameter or column (named, with a close match), a construct the
        condition language does not allow, an unknown universe or timeframe, or a bad ``at``.
    velox.errors.DataError
        If an instrument listed by id has no bar at or before ``at``, or none of a named
        universe has.

    Examples
    --------
    >>> import velox
    >>> velox.scan("rsi_oversold", universe="nifty50", at="2022-06-17")       # doctest: +SKIP
                                    ts   close  rsi_14
    instrument_id
    NSE:HINDALCO     2022-06-17 00:00:00+05:30  329.55   22.31
    >>> velox.scan("rsi_14 < 35 and close > sma_200", universe="nifty50",
    ...            rank_by="rsi_14", ascending=True)                          # doctest: +SKIP
    >>> velox.scan("orb", universe="NSE:RELIANCE", timeframe="5m", minutes=30)  # doctest: +SKIP
    """
    from velox.calendar import check_timeframe

    check_timeframe(timeframe)
    _check_at(at)
    if not isinstance(condition, str):
        raise ValidationError(
            f"condition must be a preset name or a condition string, not {type(condition).__name__}"
        )
    rule = _rule(condition, timeframe, preset_params, rank_by, ascending)
    _check_universe_name(universe)
    if bars is not None:
        if not isinstance(bars, Mapping):
            raise ValidationError(
                f"bars= must be a mapping {{instrument_id: DataFrame}}, not {type(bars).__name__}"
            )
        from velox import _check_grid

        for key, frame in bars.items():
            _check_bars(key, frame)
            _check_grid(key, timeframe, frame)
        source: _StoreSource | _MappingSource = _MappingSource(bars)
    else:
        if store is None:
            from velox.store import open_store

            store = open_store(create=False)
        source = _StoreSource(store)
    ids, listed = _universe(universe, timeframe, bars, store)
    results = _run(rule, ids, timeframe, at, source, progress, scheduler)
    rows = {iid: row for iid, row, _ in results if row is not None}
    missing = tuple(iid for iid, _, had in results if not had)
    if missing and (listed or len(missing) == len(ids)):
        where = "in bars=" if bars is not None else "stored (or resampled)"
        when = f" at or before {at}" if at is not None else ""
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise DataError(
            f"no {timeframe} bars{when} {where} for {shown}; import them (velox data import) or "
            "drop them from the universe"
        )
    if missing:
        logger.warning("scan: no %s bars for %d of %d instruments: %s", timeframe, len(missing),
                       len(ids), ", ".join(missing[:10]))  # fmt: skip
    return _result(rule, rows, timeframe, at, len(ids) - len(missing), missing)


def _run(
    rule: _Rule,
    ids: list[str],
    timeframe: str,
    at: object,
    source: _StoreSource | _MappingSource,
    progress: bool | None,
    scheduler: str | Client | None,
) -> list[tuple[str, dict[str, object] | None, bool]]:
    if scheduler is not None or len(ids) > DASK_THRESHOLD:
        from velox.backtest.distributed import run_tasks

        chunks = [tuple(ids[i : i + CHUNK_SIZE]) for i in range(0, len(ids), CHUNK_SIZE)]
        task = functools.partial(_scan_chunk, rule=rule, timeframe=timeframe, at=at,
                                 source=source)  # fmt: skip
        names = [f"{c[0]}…{c[-1]}" if len(c) > 1 else c[0] for c in chunks]
        done = run_tasks(task, chunks, progress=progress is not False, scheduler=scheduler,
                         names=names)  # fmt: skip
        return [item for chunk in done for item in chunk]
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(ids), desc=f"scan {rule.label}"[:40], unit="instrument",
              disable=progress is False, delay=0 if progress else PROGRESS_DELAY,
              leave=False) as bar:  # fmt: skip
        for instrument_id in ids:
            out.extend(_scan_chunk((instrument_id,), rule, timeframe, at, source))
            bar.update()
    return out


def _result(
    rule: _Rule,
    rows: Mapping[str, Mapping[str, object]],
    timeframe: str,
    at: object,
    scanned: int,
    missing: tuple[str, ...],
) -> pd.DataFrame:
    import pandas as pd

    from velox.calendar import IST_NAME

    columns = ["ts", *dict.fromkeys(name for name, _ in rule.values)]
    frame = pd.DataFrame.from_dict(dict(rows), orient="index")
    frame = frame.reindex(columns=columns)
    frame.index.name = "instrument_id"
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(IST_NAME).dt.as_unit("ns")
    for column in columns[1:]:
        frame[column] = frame[column].astype("float64")
    if rule.rank_by is not None:
        frame = frame.sort_values(
            [rule.rank_by, "instrument_id"], ascending=[rule.ascending, True],
            na_position="last", kind="mergesort",
        )  # fmt: skip
    else:
        frame = frame.sort_index()
    frame.attrs.update(
        {"condition": rule.condition, "preset": rule.label if rule.label in PRESETS else None,
         "timeframe": timeframe, "at": None if at is None else str(at), "scanned": scanned,
         "missing": missing}
    )  # fmt: skip
    return frame
