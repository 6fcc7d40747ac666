"""The strategy API: a :class:`Strategy` base class and the :class:`Context` it trades through.

A strategy is written once and runs unchanged in replay, paper and live: the engine hands it a
:class:`Context` and calls its handlers; the context is the strategy's whole world (time,
history, positions, orders, logging). Strategies never import brokers, the store or the engine.

Two styles, mixable:

* **Vectorisable**: override :meth:`Strategy.signals` to map a bar history (a DataFrame) to a
  target weight per bar. The default :meth:`Strategy.on_bar` applies the latest weight with
  :meth:`Context.target_weight` whenever it changes. ``signals`` must be causal:
  :func:`lookahead_violations` checks ``signals(bars)[:t] == signals(bars[:t])``.
* **Event-driven**: override ``on_bar`` (closed candles), ``on_tick`` (the forming candle on every
  tick, for streaming indicators' ``preview``), ``on_fill``, ``on_order``, ``on_start`` and
  ``on_stop``; trade with ``ctx.buy``/``ctx.sell``/``ctx.target_qty``/``ctx.target_weight``.

Parameters are class attributes (``fast: int = 10``), optionally with a range declared by
:func:`param` (``fast: int = param(10, ge=1)``); :meth:`Strategy.__init__` takes overrides by
keyword, refuses unknown or reserved names with a close-match suggestion, coerces text (from the
CLI's ``--param k=v``) to the default's type and refuses values outside the declared range, so a
bad value stops the run before it starts instead of crashing the strategy at its first bar.

Timing convention: a bar is handed to ``on_bar`` once it has closed, i.e. on the first event at
or after its end; an order placed there reaches the simulator *before* that event's tick, so it
fills at the first price after the bar: the next bar's open in a bar replay (never the close the
strategy just saw). An order placed in ``on_tick`` fills on a later tick.

Examples
--------
>>> class Breakout(Strategy):
...     '''Buy when the close makes a 20-bar high.'''
...     window: int = 20
...     def on_bar(self, ctx, bar):
...         highs = ctx.history(self.window)["high"]
...         if len(highs) == self.window and bar.close >= highs.max() and not ctx.position():
...             ctx.buy(10)
>>> Breakout(window=50).window
50
>>> Breakout(windw=5)
Traceback (most recent call last):
...
velox.errors.ConfigError: Breakout has no parameter 'windw'; did you mean 'window'? ...
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from velox.calendar import check_timeframe, timeframe_minutes
from velox.errors import ConfigError, ValidationError
from velox.types import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderType,
    Product,
    Side,
    Validity,
    check_instrument_id,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Strategy",
    "BasketLeg",
    "Param",
    "param",
    "Context",
    "load_strategy",
    "parse_params",
    "lookahead_violations",
    "is_cross_sectional",
    "bar_panel",
    "panel_weights",
    "assert_no_lookahead",
    # re-exported so that a strategy imports only velox.strategy and velox.indicators
    "Bar",
    "ConfigError",
    "Fill",
    "Instrument",
    "Order",
    "OrderType",
    "Product",
    "Side",
    "Validity",
    "timeframe_minutes",
]

log = logging.getLogger(__name__)

_BUY, _SELL, _DAY = Side.BUY, Side.SELL, Validity.DAY

#: Class attributes of :class:`Strategy` that configure it but are not trading parameters.
FRAMEWORK_ATTRIBUTES = frozenset(
    {
        "instruments", "timeframe", "timeframes", "product", "lookback", "capital", "name",
        "cross_sectional",
    }
)  # fmt: skip

#: Framework attributes that cannot be overridden: the engine names a strategy after its class.
RESERVED_ATTRIBUTES = frozenset({"name"})


@dataclass(frozen=True)
class Param:
    """A strategy parameter's default and the range it must lie in (see :func:`param`).

    A class attribute holding a ``Param`` reads as its default on the class and on instances
    that did not override it, so ``self.fast`` is always the value, never this object.
    """

    default: object
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    kind: type | None = None  # the type values are coerced to; None: the default's type

    def __get__(self, instance: object, owner: type | None = None) -> object:
        return self.default

    @property
    def range_text(self) -> str:
        """Return the declared bounds as text (``>= 1``, ``> 0 and <= 1``), or ""."""
        parts = [
            f"{op} {bound:g}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts)

    def contains(self, value: object) -> bool:
        """Return True if ``value`` is within the bounds (always for non-numbers and None)."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return True
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


def param(
    default: object,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Param:
    """Return a parameter declaration: a default and the range an override must lie in.

    Use it as a class attribute of a :class:`Strategy`; ``ge``/``gt``/``le``/``lt`` are the
    inclusive and exclusive bounds. An override outside them is refused by
    :meth:`Strategy.__init__` (so by ``--param`` and ``velox.replay(**params)``) before the run.

    Examples
    --------
    >>> class Cross(Strategy):
    ...     fast: int = param(10, ge=1)
    >>> Cross.fast, Cross(fast="5").fast
    (10, 5)
    >>> Cross(fast=0)
    Traceback (most recent call last):
    ...
    velox.errors.ConfigError: Cross.fast=0 is out of range: it must be >= 1 (default 10)
    """
    return Param(default, ge=ge, gt=gt, le=le, lt=lt)


#: How the framework attributes an override may set are coerced and bounded.
_FRAMEWORK_SPECS: dict[str, Param] = {
    "instruments": Param(()),
    "timeframe": Param("1d"),
    "timeframes": Param(()),
    "product": Param(Product.CNC),
    "lookback": Param(250, ge=1),
    "capital": Param(None, gt=0, kind=float),
}


class Strategy:
    """Return a strategy: parameters as class attributes, handlers called by the engine.

    Class attributes
    ----------------
    instruments
        Instrument ids traded and subscribed (``("NSE:RELIANCE",)``); the CLI's ``--symbol``
        overrides them.
    timeframe
        The timeframe whose closed bars reach :meth:`on_bar` and :meth:`signals`.
    timeframes
        Extra timeframes to subscribe to (their closed bars also reach ``on_bar``).
    product
        Default product of orders (``CNC`` delivery, ``MIS`` intraday, ``NRML`` F&O).
    lookback
        Bars of history kept per instrument/timeframe (``ctx.history`` and live ``signals``).
    capital
        Rupees allocated to this strategy (``target_weight`` sizes against it plus its P&L);
        ``None`` shares the account's cash equally between the engine's strategies.
    cross_sectional
        Whether :meth:`signals` ranks instruments against each other, so it is handed every
        instrument's bars at once (a panel: columns ``(field, instrument)``, so
        ``bars["close"]`` is a DataFrame with one column per instrument) and returns a
        DataFrame of weights, one column per instrument, all sharing the strategy's equity.
        ``velox.research`` and ``velox.replay`` run such strategies on the same panel
        (:func:`bar_panel`); paper and live engines, which see bars one instrument at a time,
        refuse them. ``None`` (default): inferred by :func:`is_cross_sectional` from what
        ``signals`` is declared to return (``-> pd.DataFrame``: cross-sectional; a Series or
        no annotation: one instrument at a time); ``True``/``False`` overrides the inference.

    Every other public, non-callable class attribute is a parameter, overridable by keyword.
    """

    instruments: ClassVar[tuple[str, ...]] = ()
    timeframe: ClassVar[str] = "1d"
    timeframes: ClassVar[tuple[str, ...]] = ()
    product: ClassVar[Product] = Product.CNC
    lookback: ClassVar[int] = 250
    capital: ClassVar[float | None] = None
    cross_sectional: ClassVar[bool | None] = None

    def __init__(self, **params: object) -> None:
        owner = type(self).__name__
        specs = self.parameter_specs()
        settable = {**_FRAMEWORK_SPECS, **specs}
        for key, raw in params.items():
            if key not in settable:
                raise ConfigError(_unknown_parameter(owner, key, specs, settable))
            spec = settable[key]
            if key in _FRAMEWORK_SPECS and key not in specs:
                # the subclass's own default (``product = Product.MIS``) is the one to show
                spec = Param(getattr(type(self), key), spec.ge, spec.gt, spec.le, spec.lt,
                             spec.kind)  # fmt: skip
            setattr(self, key, _validated(owner, key, raw, spec))
        if isinstance(self.instruments, str):
            self.instruments = (self.instruments,)  # type: ignore[misc]
        self.instruments = tuple(self.instruments)  # type: ignore[misc]
        for instrument_id in self.instruments:
            try:
                check_instrument_id(instrument_id)
            except ValidationError as exc:
                raise ValidationError(f"{type(self).__name__}.instruments: {exc}") from None
        check_timeframe(self.timeframe)
        for tf in self.timeframes:
            check_timeframe(tf)
        self.product = Product(self.product)  # type: ignore[misc]
        if not isinstance(self.lookback, int) or self.lookback < 1:
            raise ConfigError(f"{owner}.lookback={self.lookback!r} must be >= 1")
        self.name: str = owner

    @classmethod
    def parameters(cls) -> dict[str, object]:
        """Return the strategy's parameters and their defaults (class attributes).

        Examples
        --------
        >>> class S(Strategy):
        ...     fast: int = 10
        ...     slow: int = 30
        >>> S.parameters()
        {'fast': 10, 'slow': 30}
        """
        return {key: spec.default for key, spec in cls.parameter_specs().items()}

    @classmethod
    def parameter_specs(cls) -> dict[str, Param]:
        """Return each parameter's :class:`Param`: its default and declared range (a plain
        class attribute is a ``Param`` without bounds).

        Examples
        --------
        >>> class S(Strategy):
        ...     fast: int = param(10, ge=1)
        ...     weight: float = 0.5
        >>> S.parameter_specs()["fast"].range_text, S.parameter_specs()["weight"].range_text
        ('>= 1', '')
        """
        out: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is Strategy:
                continue
            for key, value in vars(klass).items():
                if key.startswith("_") or key in FRAMEWORK_ATTRIBUTES:
                    continue
                if isinstance(value, Param):
                    out[key] = value
                    continue
                if callable(value) or isinstance(value, (classmethod, staticmethod, property)):
                    continue
                out[key] = Param(value)
        return out

    def params(self) -> dict[str, object]:
        """Return this instance's parameter values."""
        return {key: getattr(self, key) for key in self.parameters()}

    @property
    def all_timeframes(self) -> tuple[str, ...]:
        """Return the main timeframe followed by the extra ones (no repeats)."""
        return tuple(dict.fromkeys((self.timeframe, *self.timeframes)))

    @property
    def vectorised(self) -> bool:
        """Return True if the strategy overrides :meth:`signals`."""
        return type(self).signals is not Strategy.signals

    # -- handlers (override what you need) -------------------------------------------------------

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        """Return the target weight per bar of ``bars`` (override for vectorisable strategies).

        ``bars`` is one instrument's OHLCV history at :attr:`timeframe` (IST index, bar start
        labels). The weight at row ``t`` is the fraction of the strategy's equity to hold from
        the first tick *after* bar ``t`` closes: 1 = all in, 0 = flat, −1 = all short (MIS/F&O
        only). NaN means "no opinion yet" (warm-up) and changes nothing.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define signals()")

    def on_start(self, ctx: Context) -> None:
        """Set up state (indicators, counters) before the first event."""

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        """Handle a closed bar; by default apply :meth:`signals` through target weights."""
        if self.vectorised:
            apply_signal(ctx, ctx.signal(bar.instrument_id, bar.timeframe), bar.instrument_id)

    def on_tick(self, ctx: Context, bar: Bar) -> None:
        """Handle a tick: ``bar`` is the forming (not yet closed) candle of :attr:`timeframe`."""

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        """Handle an execution of one of this strategy's orders."""

    def on_order(self, ctx: Context, order: Order) -> None:
        """Handle a status change of one of this strategy's orders."""

    def on_stop(self, ctx: Context) -> None:
        """Clean up after the last event (or when the engine stops the strategy)."""


def apply_signal(ctx: Context, weight: float, instrument_id: str) -> None:
    """Move to target ``weight`` of ``instrument_id`` when the signal changed (NaN: no signal).

    The default :meth:`Strategy.on_bar` of a vectorisable strategy; the engine calls it
    directly with a signal it precomputed over the whole replay (``signals`` are causal).
    """
    if weight == weight and weight != ctx.applied_weight(instrument_id):
        ctx.target_weight(weight, instrument_id)


def _unknown_parameter(
    owner: str, key: str, specs: Mapping[str, Param], settable: Mapping[str, Param]
) -> str:
    """Return the message refusing ``key``: reserved or unknown, with close matches."""
    close = difflib.get_close_matches(key, sorted(settable), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    known = ", ".join(sorted(specs)) or "(none)"
    if key in RESERVED_ATTRIBUTES:
        return (
            f"{owner}: {key!r} cannot be set (the engine names a strategy after its class); "
            f"{hint}its parameters are {known}"
        )
    return f"{owner} has no parameter {key!r}; {hint}its parameters are {known}"


def _validated(owner: str, key: str, raw: object, spec: Param) -> object:
    """Return ``raw`` coerced to ``spec``'s type and checked against its range, or raise."""
    if spec.kind is not None and spec.default is None:  # optional number (capital)
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            value: object = None
        elif isinstance(raw, bool) or not _is_number(raw):
            raise ConfigError(f"{owner}.{key}={raw!r}: {key} must be a number (or none)")
        else:
            value = float(raw)  # type: ignore[arg-type]
            if not math.isfinite(value):
                raise ConfigError(f"{owner}.{key}={raw!r}: {key} must be a finite number")
    else:
        value = _coerce(owner, key, raw, spec.default)
    if not spec.contains(value):
        raise ConfigError(
            f"{owner}.{key}={value!r} is out of range: it must be {spec.range_text} "
            f"(default {spec.default!r})"
        )
    return value


def _is_number(raw: object) -> bool:
    try:
        float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _coerce(owner: str, key: str, raw: object, default: object) -> object:
    """Return ``raw`` as the type of ``default`` (text from the CLI is parsed), or raise."""
    kind = type(default)
    if default is None or (type(raw) is kind and not isinstance(raw, float)):
        return raw

    def bad(reason: str = "") -> ConfigError:
        shown = default.value if isinstance(default, Enum) else default
        return ConfigError(
            f"{owner}.{key}={raw!r} is not a valid {kind.__name__} (default {shown!r}){reason}"
        )

    if isinstance(default, Product | Side | OrderType):
        try:
            return kind(raw.strip().upper() if isinstance(raw, str) else raw)
        except ValueError:
            raise bad(f"; valid: {', '.join(m.value for m in kind)}") from None
    if isinstance(default, bool):
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
            return False
        raise bad("; use true or false")
    if isinstance(default, int):
        if isinstance(raw, bool):
            raise bad()
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if isinstance(default, float):
        if isinstance(raw, bool):
            raise bad()
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise bad() from None
        if not math.isfinite(value):
            raise bad("; it must be finite")
        return value
    if isinstance(default, str):
        if isinstance(raw, str):
            return raw
        raise bad()
    if isinstance(default, tuple):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(raw, (list, tuple)):
            return tuple(raw)
        raise bad()
    raise bad()


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """Return ``["fast=10", "slow=30"]`` as ``{"fast": "10", "slow": "30"}`` (CLI ``--param``).

    Examples
    --------
    >>> parse_params(["fast=10", "name=a=b"])
    {'fast': '10', 'name': 'a=b'}
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r} must read NAME=VALUE, e.g. --param fast=10")
        out[key.strip()] = value.strip()
    return out


# -- loading ----------------------------------------------------------------------------------


def load_strategy(spec: str) -> type[Strategy]:
    """Return the :class:`Strategy` subclass named by ``spec``.

    ``spec`` is a file path (``strategies/sma_cross.py``, optionally ``…py:ClassName``) or a
    module path (``mypkg.strats:MyStrategy``, or just ``mypkg.strats`` when it defines exactly
    one strategy). A file that fails to import (syntax error, missing import) raises a
    :class:`ConfigError` naming the file and line.

    Examples
    --------
    >>> load_strategy("strategies/sma_cross.py").__name__  # doctest: +SKIP
    'SmaCross'
    """
    target, _, class_name = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if target.endswith(".py") or "/" in target or Path(target).suffix == ".py":
        module = _import_file(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"strategy {spec!r}: no module {exc.name!r}; pass a file path "
                "(strategies/sma_cross.py) or an importable module:Class"
            ) from None
    return _pick_class(module, spec, class_name or None)


def _import_file(path: Path) -> object:
    if not path.exists():
        raise ConfigError(f"strategy file {path} does not exist")
    if path.is_dir():
        raise ConfigError(
            f"strategy file {path} is a directory: name the .py file in it "
            f"(e.g. {path / 'my_strategy.py'})"
        )
    name = f"velox_user_strategy_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"strategy file {path} cannot be loaded as Python (use a .py file)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ConfigError(
            f"strategy file {path} line {exc.lineno}: syntax error: {exc.msg}; fix the file"
        ) from None
    except (Exception, SystemExit) as exc:  # any import-time failure of user code (sys.exit too)
        sys.modules.pop(name, None)
        tb = exc.__traceback__
        line = None
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
                line = tb.tb_lineno
            tb = tb.tb_next
        where = f" line {line}" if line else ""
        raise ConfigError(
            f"strategy file {path}{where} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _pick_class(module: object, spec: str, class_name: str | None) -> type[Strategy]:
    found = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, Strategy)
        and obj is not Strategy
        and obj.__module__ == getattr(module, "__name__", None)
    }
    if class_name is not None:
        if class_name in found:
            return found[class_name]
        close = difflib.get_close_matches(class_name, list(found), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"strategy {spec!r}: no Strategy subclass {class_name!r}{hint} "
            f"(found: {', '.join(sorted(found)) or 'none'})"
        )
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise ConfigError(
            f"strategy {spec!r} defines no subclass of velox.strategy.Strategy; "
            "define `class MyStrategy(Strategy): ...`"
        )
    raise ConfigError(
        f"strategy {spec!r} defines several strategies ({', '.join(sorted(found))}); "
        "pick one with FILE.py:ClassName"
    )


# -- look-ahead check ------------------------------------------------------------------------


def is_cross_sectional(strategy: Strategy | type[Strategy]) -> bool:
    """Return whether a strategy's ``signals`` takes a panel of all its instruments.

    The ``cross_sectional`` class attribute decides when set (``True``/``False``). Left at
    ``None`` it is inferred from the return annotation of ``signals``: a DataFrame (weights,
    one column per instrument: ``-> pd.DataFrame``) makes the strategy cross-sectional, a
    Series or no annotation per-instrument (``signals`` of each instrument's own bars). Read
    from the class, so the engine and ``velox.research`` decide alike before any bar.

    Examples
    --------
    >>> class Rank(Strategy):
    ...     def signals(self, bars: "pd.DataFrame") -> "pd.DataFrame": ...
    >>> class Cross(Strategy):
    ...     def signals(self, bars: "pd.DataFrame") -> "pd.Series": ...
    >>> is_cross_sectional(Rank), is_cross_sectional(Cross), is_cross_sectional(Strategy)
    (True, False, False)
    """
    cls = strategy if isinstance(strategy, type) else type(strategy)
    flag = getattr(cls, "cross_sectional", None)
    if flag is not None:
        return bool(flag)
    if cls.signals is Strategy.signals:
        return False
    returns = getattr(cls.signals, "__annotations__", {}).get("return")
    name = returns if isinstance(returns, str) else getattr(returns, "__name__", "")
    return name.strip().strip("'\"").rsplit(".", 1)[-1] == "DataFrame"


#: The bar fields a cross-sectional strategy's panel holds, in this order.
PANEL_FIELDS = ("open", "high", "low", "close", "volume")


def bar_panel(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return every instrument's bars side by side: what a cross-sectional ``signals`` gets.

    Columns ``(field, instrument)`` (so ``panel["close"]`` has one column per instrument, in
    the sorted order of the instrument ids), rows the union of the bar times, NaN where an
    instrument has no bar. ``velox.research`` and the engine's replay build it here, so both
    hand a strategy the same panel.
    """
    import pandas as pd

    ids = sorted(frames)
    index = pd.DatetimeIndex(frames[ids[0]].index)
    for iid in ids[1:]:
        index = index.union(frames[iid].index)
    parts = {}
    for iid in ids:
        frame = frames[iid]
        have = [f for f in PANEL_FIELDS if f in frame.columns]
        parts[iid] = frame[have].astype("float64").reindex(index)
    out = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1)
    out.columns.names = ["field", "instrument"]
    return out[[f for f in PANEL_FIELDS if f in out.columns.get_level_values(0)]]


def panel_weights(strategy: Strategy, panel: pd.DataFrame, values: object) -> pd.DataFrame:
    """Return a cross-sectional strategy's ``signals(panel)`` checked: a DataFrame on the
    panel's rows with a column per traded instrument (missing columns: no opinion, NaN).

    Raises
    ------
    ValidationError
        Not a DataFrame, weights for instruments the strategy does not trade, or other rows.
    """
    import pandas as pd

    if not isinstance(values, pd.DataFrame):
        raise ValidationError(
            f"{strategy.name} is cross-sectional: signals(panel) must return a DataFrame of "
            f"weights (one column per instrument), not {type(values).__name__}"
        )
    ids = sorted(panel.columns.get_level_values("instrument").unique())
    unknown = sorted(set(values.columns) - set(ids))
    if unknown:
        raise ValidationError(
            f"{strategy.name}.signals returned weights for {unknown[:5]}, which it does not "
            f"trade (its instruments: {', '.join(ids[:5])} …)"
        )
    if len(values) != len(panel) or not values.index.equals(panel.index):
        raise ValidationError(
            f"{strategy.name}.signals returned {len(values)} rows for {len(panel)} bar times; "
            "return one row per row of the panel (same index)"
        )
    return values.reindex(columns=ids).astype("float64")


def lookahead_violations(
    strategy: Strategy, bars: pd.DataFrame, *, checkpoints: Sequence[int] | None = None
) -> list[int]:
    """Return the cut points ``t`` where ``signals(bars)[:t] != signals(bars[:t])``.

    An empty list means the strategy's signals are causal on these bars: the value at a row
    never changes when later rows are added, so what a replay computes over the whole history
    equals what a live engine computes bar by bar. NaNs compare equal. ``checkpoints`` default
    to about 40 cuts spread over the history (every cut when it is short).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> class Peek(Strategy):
    ...     def signals(self, bars):
    ...         return (bars["close"].shift(-1) > bars["close"]).astype(float)  # uses tomorrow
    >>> idx = pd.date_range("2024-01-01", periods=50, freq="D", tz="Asia/Kolkata")
    >>> bars = pd.DataFrame({"close": np.sin(np.arange(50.0)) + 10}, index=idx)
    >>> len(lookahead_violations(Peek(), bars)) > 0
    True
    """
    import numpy as np

    full = np.asarray(strategy.signals(bars), dtype=np.float64)
    n = len(bars)
    if len(full) != n:
        raise ValidationError(
            f"{strategy.name}.signals returned {len(full)} values for {n} bars; return one per bar"
        )
    cuts = list(checkpoints) if checkpoints is not None else _default_cuts(n)
    bad = []
    for t in cuts:
        part = np.asarray(strategy.signals(bars.iloc[:t]), dtype=np.float64)
        head = full[:t]
        same = (part == head) | (np.isnan(part) & np.isnan(head))
        if len(part) != t or not bool(same.all()):
            bad.append(t)
    return bad


def _default_cuts(n: int) -> list[int]:
    if n <= 40:
        return list(range(1, n + 1))
    step = max(1, n // 40)
    return sorted(set(range(2, n + 1, step)) | {n - 1, n})


def assert_no_lookahead(strategy: Strategy, bars: pd.DataFrame) -> None:
    """Raise :class:`ValidationError` if :func:`lookahead_violations` finds any cut point."""
    bad = lookahead_violations(strategy, bars)
    if bad:
        raise ValidationError(
            f"{strategy.name}.signals looks ahead: signals(bars)[:t] != signals(bars[:t]) at "
            f"t={bad[:5]}; it must use only rows up to t (no shift(-k), no centred windows)"
        )


# -- the context -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BasketLeg:
    """One order of a basket (:meth:`Context.basket`): a signed intent on one instrument.

    ``qty`` is in units (a multiple of the lot size); the engine splits it at the exchange
    freeze quantity. ``product`` defaults to the strategy's product.
    """

    instrument_id: str
    side: Side | str
    qty: int
    order_type: OrderType | str = OrderType.MARKET
    limit_price: float | None = None
    product: Product | str | None = None


class EngineServices(Protocol):
    """What a :class:`Context` needs from the engine (the engine implements it)."""

    mode: str

    def now(self) -> datetime: ...

    def history(self, instrument_id: str, timeframe: str, n: int | None) -> pd.DataFrame: ...

    def signal(self, strategy: Strategy, instrument_id: str, timeframe: str) -> float: ...

    def position_qty(self, strategy: str, instrument_id: str) -> int: ...

    def strategy_equity(self, strategy: str) -> float: ...

    def last_price(self, instrument_id: str) -> float | None: ...

    def instrument(self, instrument_id: str) -> Instrument: ...

    def open_orders(self, strategy: str, instrument_id: str | None) -> list[Order]: ...

    def order(self, client_id: str) -> Order: ...

    def submit(
        self,
        strategy: str,
        instrument_id: str,
        side: Side,
        qty: int,
        order_type: OrderType | str,
        limit_price: float | None,
        trigger_price: float | None,
        product: Product | str,
        validity: Validity | str,
        tag: str,
    ) -> str: ...

    def submit_basket(
        self, strategy: str, legs: Sequence[BasketLeg], product: Product | str, tag: str
    ) -> list[str]: ...

    def cancel(self, strategy: str, client_id: str) -> None: ...


class Context:
    """Return the strategy's whole world: time, history, positions, orders and a log.

    One context per strategy; the engine builds it. Quantities are signed units (+long,
    −short); ``instrument_id`` defaults to the strategy's first instrument.
    """

    __slots__ = ("_engine", "_strategy", "_name", "_default", "_applied", "_targets", "_log")

    def __init__(self, engine: EngineServices, strategy: Strategy) -> None:
        self._engine = engine
        self._strategy = strategy
        self._name = strategy.name
        self._default = strategy.instruments[0] if strategy.instruments else None
        self._applied: dict[str, float] = {}
        self._targets: dict[str, str] = {}  # client id of a target_weight order → instrument
        self._log = logging.getLogger(f"velox.strategy.{strategy.name}")

    def _iid(self, instrument_id: str | None) -> str:
        iid = instrument_id or self._default
        if iid is None:
            raise ValidationError(
                f"{self._name} trades no instrument: set `instruments` or pass instrument_id"
            )
        return iid

    @property
    def now(self) -> datetime:
        """Return the engine's current time (IST): event time in replay, wall time live."""
        return self._engine.now()

    @property
    def mode(self) -> str:
        """Return ``"replay"``, ``"paper"`` or ``"live"`` (for logging; never branch on it)."""
        return self._engine.mode

    def history(
        self, n: int | None = None, instrument_id: str | None = None, timeframe: str | None = None
    ) -> pd.DataFrame:
        """Return the last ``n`` closed bars (all kept, up to ``lookback``, when ``n`` is None).

        A DataFrame with an IST ``ts`` index and ``open high low close volume`` columns, oldest
        first. Built on demand, so call it when needed rather than on every tick.
        """
        return self._engine.history(
            self._iid(instrument_id), timeframe or self._strategy.timeframe, n
        )

    def position(self, instrument_id: str | None = None) -> int:
        """Return this strategy's signed net quantity in the instrument (from its fills)."""
        return self._engine.position_qty(self._name, self._iid(instrument_id))

    @property
    def equity(self) -> float:
        """Return the strategy's capital plus its realised and unrealised P&L, less charges."""
        return self._engine.strategy_equity(self._name)

    def last_price(self, instrument_id: str | None = None) -> float | None:
        """Return the last traded price seen for the instrument, or None."""
        return self._engine.last_price(self._iid(instrument_id))

    def instrument(self, instrument_id: str | None = None) -> Instrument:
        """Return the instrument (tick size, lot size, …)."""
        return self._engine.instrument(self._iid(instrument_id))

    def option(
        self,
        underlying: str,
        kind: str,
        *,
        spot: float | None = None,
        offset: int = 0,
        expiry: str = "weekly",
        nth: int = 0,
    ) -> str:
        """Return the instrument id of an index option picked now, relative to the market.

        The strike is the listed step nearest ``spot`` (default the last price of
        ``NSE:<underlying>``), moved ``offset`` steps out of the money (negative: in the
        money), as :func:`velox.options.select_strike` counts; the expiry is the ``nth`` next
        ``"weekly"`` or ``"monthly"`` one of the expiry calendar (an expiry day's own contract
        until its close). The contract must be known to the run (the instrument master live;
        in a replay, ``velox.fno.option_feed``'s rows), else
        :class:`~velox.errors.UnknownInstrument`.
        """
        import pandas as pd

        from velox.fno.basket import option_instrument_id
        from velox.fno.legs import Leg, leg_expiry
        from velox.options import strike_interval

        if kind not in ("CE", "PE"):
            raise ValidationError(f"option kind={kind!r} must be 'CE' or 'PE'")
        price = spot if spot is not None else self._engine.last_price(f"NSE:{underlying}")
        if price is None or not price > 0:
            raise ValidationError(f"no price for NSE:{underlying} yet: pass spot= to ctx.option")
        moment = pd.Timestamp(self._engine.now())
        day = leg_expiry(Leg(kind, "sell", expiry=expiry, nth=nth), underlying, moment)
        step = strike_interval(underlying, moment.date())
        strike = (round(price / step) + (offset if kind == "CE" else -offset)) * step
        iid = option_instrument_id(underlying, kind, day, float(strike))
        self._engine.instrument(iid)  # known to this run, or UnknownInstrument names it
        return iid

    def open_orders(self, instrument_id: str | None = None) -> list[Order]:
        """Return this strategy's working orders (in every instrument when none is given)."""
        return self._engine.open_orders(self._name, instrument_id)

    def signal(self, instrument_id: str | None = None, timeframe: str | None = None) -> float:
        """Return the latest :meth:`Strategy.signals` weight for the instrument (NaN if none)."""
        return self._engine.signal(
            self._strategy, self._iid(instrument_id), timeframe or self._strategy.timeframe
        )

    def applied_weight(self, instrument_id: str | None = None) -> float:
        """Return the weight last passed to :meth:`target_weight` (NaN before the first)."""
        return self._applied.get(self._iid(instrument_id), math.nan)

    # -- orders ------------------------------------------------------------------------------

    def buy(
        self,
        qty: int,
        instrument_id: str | None = None,
        *,
        order_type: OrderType | str = OrderType.MARKET,
        limit_price: float | None = None,
        trigger_price: float | None = None,
        product: Product | str | None = None,
        validity: Validity | str = Validity.DAY,
        tag: str = "",
    ) -> str:
        """Send a buy order and return its Velox client id.

        Raises :class:`~velox.errors.ValidationError` for a malformed order (qty, prices, lot,
        tick grid) and :class:`~velox.errors.RiskBreach` when a risk limit refuses it.
        """
        return self._order(
            Side.BUY, qty, instrument_id, order_type, limit_price, trigger_price, product, validity,
            tag,
        )  # fmt: skip

    def sell(
        self,
        qty: int,
        instrument_id: str | None = None,
        *,
        order_type: OrderType | str = OrderType.MARKET,
        limit_price: float | None = None,
        trigger_price: float | None = None,
        product: Product | str | None = None,
        validity: Validity | str = Validity.DAY,
        tag: str = "",
    ) -> str:
        """Send a sell order and return its Velox client id (see :meth:`buy`)."""
        return self._order(
            Side.SELL, qty, instrument_id, order_type, limit_price, trigger_price, product,
            validity, tag,
        )  # fmt: skip

    def _order(
        self,
        side: Side,
        qty: int,
        instrument_id: str | None,
        order_type: OrderType | str,
        limit_price: float | None,
        trigger_price: float | None,
        product: Product | str | None,
        validity: Validity | str,
        tag: str,
    ) -> str:
        return self._engine.submit(
            self._name, self._iid(instrument_id), side, qty, order_type, limit_price,
            trigger_price, product if product is not None else self._strategy.product,
            validity, tag,
        )  # fmt: skip

    def basket(self, legs: Sequence[BasketLeg], *, tag: str = "") -> list[str]:
        """Send a multi-leg basket, all or nothing, and return its orders' client ids.

        The whole basket passes the risk engine as one check: if any leg breaches a limit,
        no leg is sent (every order is audited as refused) and :class:`~velox.errors.RiskBreach`
        is raised. Each leg is split at its freeze quantity, then the orders are sent one by
        one, bought legs first so a broker's margin sees the hedge. If the broker rejects one,
        the basket is rolled back: orders not yet sent are refused, working ones cancelled,
        filled ones squared off, and a critical alert raised. ``tag`` names the basket on its
        orders (default: its first client id).

        Examples
        --------
        >>> legs = [BasketLeg("NFO:NIFTY22JUN15900CE", "SELL", 50),
        ...         BasketLeg("NFO:NIFTY22JUN15900PE", "SELL", 50)]
        >>> legs[0].qty
        50
        """
        return self._engine.submit_basket(self._name, legs, self._strategy.product, tag)

    def target_qty(
        self,
        qty: int,
        instrument_id: str | None = None,
        *,
        order_type: OrderType | str = OrderType.MARKET,
        limit_price: float | None = None,
        product: Product | str | None = None,
    ) -> str | None:
        """Trade towards a signed target position; return the client id (None if on target).

        The order is the target minus the position minus what this strategy's working orders
        in the instrument would still add, rounded down to whole lots, so calling it on every
        bar never stacks orders.
        """
        iid = self._iid(instrument_id)
        engine = self._engine
        lot = engine.instrument(iid).lot_size
        target = int(qty) // lot * lot if qty >= 0 else -(-int(qty) // lot * lot)
        working = engine.open_orders(self._name, iid)
        pending = sum(o.side.sign * o.remaining_qty for o in working) if working else 0
        delta = target - engine.position_qty(self._name, iid) - pending
        if delta == 0:
            return None
        return self._order(
            _BUY if delta > 0 else _SELL, abs(delta), iid, order_type, limit_price, None,
            product, _DAY, "",
        )  # fmt: skip

    def target_weight(
        self,
        weight: float,
        instrument_id: str | None = None,
        *,
        order_type: OrderType | str = OrderType.MARKET,
        limit_price: float | None = None,
        product: Product | str | None = None,
    ) -> str | None:
        """Trade towards holding ``weight`` × equity in the instrument (−1 … 1 typical).

        Quantity = ``weight × equity / price`` rounded towards zero to whole lots, priced at
        ``limit_price`` or else the last traded price. Returns the client id, or None when the
        position is already on target.
        """
        iid = self._iid(instrument_id)
        if not math.isfinite(weight):
            raise ValidationError(f"target_weight({weight!r}) needs a finite weight")
        price = limit_price if limit_price is not None else self._engine.last_price(iid)
        if price is None or price <= 0:
            raise ValidationError(
                f"no price for {iid} yet: target_weight needs a last traded price or limit_price"
            )
        self._applied[iid] = weight
        raw = weight * self._engine.strategy_equity(self._name) / price
        cid = self.target_qty(
            int(raw), iid, order_type=order_type, limit_price=limit_price, product=product
        )
        if cid is not None:
            order = self._engine.order(cid)
            if order.is_terminal:  # refused at once (broker reject): try again next bar
                if order.filled_qty < order.qty:
                    self._applied.pop(iid, None)
            else:
                self._targets[cid] = iid
        return cid

    def order_finished(self, order: Order) -> None:
        """Forget a finished ``target_weight`` order; if it did not fill completely (rejected,
        expired, cancelled), forget the applied weight too so the next bar tries again."""
        iid = self._targets.pop(order.client_id, None)
        if iid is not None and order.filled_qty < order.qty:
            self._applied.pop(iid, None)

    def cancel(self, client_id: str) -> None:
        """Cancel one of this strategy's working orders by client id."""
        self._engine.cancel(self._name, client_id)

    def cancel_all(self, instrument_id: str | None = None) -> int:
        """Cancel this strategy's working orders (in one instrument, or all); return how many."""
        orders = self._engine.open_orders(self._name, instrument_id)
        for order in orders:
            self._engine.cancel(self._name, order.client_id)
        return len(orders)

    def log(self, message: str, *args: object, level: int = logging.INFO) -> None:
        """Log ``message % args`` under ``velox.strategy.<name>`` with the mode and time."""
        if self._log.isEnabledFor(level):
            self._log.log(level, "[%s %s] " + message, self._engine.mode, self._engine.now(), *args)
