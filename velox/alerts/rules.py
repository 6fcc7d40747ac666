"""Users' price and indicator alert rules: the grammar, the ``alert_rules`` table, the watcher.

A rule is one line a trader writes::

    NSE:RELIANCE close crosses above 2900
    NSE:RELIANCE close > 2900 on 5m
    NSE:SBIN RSI(14) < 30 on 15m
    NSE:INFY SMA(20) crosses below SMA(50) on 1h
    NSE:TCS MACD(12, 26, 9).histogram crosses above 0 on 15m

``INSTRUMENT LEFT OPERATOR RIGHT [on TIMEFRAME]``: each side is a number, a bar field (``open``,
``high``, ``low``, ``close``, ``volume``) or a streaming indicator of
:mod:`velox.indicators.streaming` with its parameters in the order of its constructor and, for
one with several outputs, ``.output``; the operator is ``>``, ``>=``, ``<``, ``<=``,
``crosses above`` or ``crosses below``; the timeframe defaults to ``1m``.

A rule fires once per crossing, never on every bar the condition holds: at the closed bar where
the condition becomes true after being false at the previous closed bar (``crosses above``:
left ≤ right at the previous bar and left > right at this one; ``>`` reads the same with a
threshold, ``>=`` lets equality count). A bar where either side is not defined yet (indicator
warm-up) fires nothing and is no "previous bar" for the next.

:class:`RuleWatcher` evaluates rules on the engine's closed candles (live, paper and replay
engines alike: ``Engine(watchers=[...])``) with the streaming indicators, after warming them up
from the stored bars before the first candle it sees, so ``RSI(14)`` is defined at the first
live bar. A firing is stored with :meth:`velox.store.Store.raise_alert` (kind ``user_alert``,
de-duplication key per rule and bar) and the rule's ``last_fired_bar`` is moved, so a restarted
engine that sees the same bar again does not fire it twice. See ``docs/alert-rules.md``.
"""

from __future__ import annotations

import getpass
import inspect
import logging
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from velox.calendar import IST, TIMEFRAMES
from velox.errors import ValidationError
from velox.types import check_instrument_id

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store
    from velox.types import Bar

__all__ = [
    "FIELDS",
    "OPERATORS",
    "Operand",
    "Rule",
    "RuleWatcher",
    "add_rule",
    "indicator_names",
    "list_rules",
    "parse_rule",
    "remove_rule",
]

log = logging.getLogger(__name__)

FIELDS = ("open", "high", "low", "close", "volume")
OPERATORS = (">", ">=", "<", "<=", "crosses above", "crosses below")
DEFAULT_TIMEFRAME = "1m"
#: Stored bars fed to a rule's indicators before its first live bar: the recursive ones
#: (EMA, Wilder's RSI/ATR) forget their seed geometrically, so after this many bars their values
#: equal those of the whole stored history to float precision.
WARMUP_BARS = 1000

_TOKEN = re.compile(
    r"\s*(?:(?P<instrument>[A-Za-z]+:[A-Za-z0-9&_.\-]+)"
    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<op>>=|<=|>|<)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[(),.]))"
)


def _streaming_classes() -> dict[str, type]:
    """Return the streaming indicators by lower-case name (``rsi`` → :class:`RSI`)."""
    from velox.indicators import streaming

    found = {}
    for name in getattr(streaming, "__all__", dir(streaming)):
        cls = getattr(streaming, name, None)
        if (
            isinstance(cls, type)
            and issubclass(cls, streaming.StreamingIndicator)
            and cls.__module__ == streaming.__name__
            and not name.startswith("_")
            and hasattr(cls, "_spec")
        ):
            found[name.lower()] = cls
    return found


def indicator_names() -> list[str]:
    """Return the indicator names a rule may use (the streaming indicators' class names)."""
    return sorted(cls.__name__ for cls in _streaming_classes().values())


@dataclass(frozen=True, slots=True)
class Operand:
    """One side of a rule: a number, a bar field, or an indicator with parameters."""

    kind: str  # "number" | "field" | "indicator"
    number: float = math.nan
    name: str = ""  # the field, or the indicator's class name
    args: tuple[float, ...] = ()
    output: str | None = None  # the chosen output of a multi-output indicator

    def __str__(self) -> str:
        if self.kind == "number":
            return f"{self.number:g}"
        if self.kind == "field":
            return self.name
        args = ", ".join(f"{a:g}" for a in self.args)
        return f"{self.name}({args})" + (f".{self.output}" if self.output else "")

    def stream(self) -> Callable[[Bar], float]:
        """Return a function of the next closed bar giving this side's value (NaN in warm-up).

        Each call of an indicator operand commits the bar to a fresh streaming indicator, so
        one function must see every closed bar once, in order.
        """
        if self.kind == "number":
            value = self.number
            return lambda bar: value
        if self.kind == "field":
            name = self.name
            return lambda bar: float(getattr(bar, name))
        cls = _streaming_classes()[self.name.lower()]
        indicator = cls(**_keywords(cls, self.args, self.name))
        pick = self.output
        single = getattr(cls._spec, "inputs", ("close",)) == ("close",)
        if single:

            def value_of(bar: Bar) -> float:
                out = indicator.update(bar.close)
                return float(getattr(out, pick) if pick else out)

        else:

            def value_of(bar: Bar) -> float:
                out = indicator.update(bar)
                return float(getattr(out, pick) if pick else out)

        return value_of


def _keywords(cls: type, args: tuple[float, ...], name: str) -> dict[str, object]:
    """Return ``args`` as the keyword parameters of ``cls`` (constructor order, ints kept)."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    if len(args) > len(params):
        raise ValidationError(
            f"{name} takes at most {len(params)} parameter(s) "
            f"({', '.join(p.name for p in params) or 'none'}), got {len(args)}"
        )
    out: dict[str, object] = {}
    for param, value in zip(params, args, strict=False):
        integer = isinstance(param.default, int) and not isinstance(param.default, bool)
        if integer:
            if value != int(value) or value < 1:
                raise ValidationError(f"{name}: {param.name}={value:g} must be a whole number ≥ 1")
            out[param.name] = int(value)
        else:
            out[param.name] = float(value)
    return out


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed alert rule (see the module docstring for the grammar)."""

    text: str
    instrument_id: str
    left: Operand
    operator: str
    right: Operand
    timeframe: str = DEFAULT_TIMEFRAME

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.left} {self.operator} {self.right} on {self.timeframe}"


@dataclass
class _Tokens:
    text: str
    items: list[tuple[str, str, int]]  # (kind, value, column)
    at: int = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def take(self) -> tuple[str, str, int]:
        item = self.peek()
        if item is None:
            raise self.error(None, "more")
        self.at += 1
        return item

    def error(self, item: tuple[str, str, int] | None, expected: str) -> ValidationError:
        if item is None:
            return ValidationError(f"alert rule {self.text!r} ends too early; expected {expected}")
        return ValidationError(
            f"alert rule {self.text!r}: unexpected {item[1]!r} at column {item[2] + 1}; "
            f"expected {expected}"
        )


def _tokenize(text: str) -> _Tokens:
    items, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            column = len(text) - len(text[pos:].lstrip())
            bad = text[column:].split()[0]
            raise ValidationError(
                f"alert rule {text!r}: cannot read {bad!r} at column {column + 1}"
            )
        kind = match.lastgroup or ""
        items.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return _Tokens(text, items)


def parse_rule(text: str, instrument: str | None = None) -> Rule:
    """Return the :class:`Rule` a line of text states, or raise naming the bad token.

    A rule names its instrument first; ``instrument`` (``velox alerts add --instrument``)
    gives it to a rule that does not, such as ``RSI(14) < 30 on 15m``, and the rule's
    ``text`` then starts with it.

    Raises
    ------
    ValidationError
        An empty rule, a missing instrument, an unknown indicator (did you mean …?), field,
        operator or timeframe, wrong parameters or a multi-output indicator without its output.

    Examples
    --------
    >>> rule = parse_rule("NSE:SBIN RSI(14) < 30 on 15m")
    >>> rule.instrument_id, str(rule.left), rule.operator, rule.right.number, rule.timeframe
    ('NSE:SBIN', 'RSI(14)', '<', 30.0, '15m')
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("alert rule is empty; write e.g. 'NSE:RELIANCE close > 2900 on 5m'")
    tokens = _tokenize(text.strip())  # tokens.text: the rule as stored
    first = tokens.peek()
    if instrument is not None:
        check_instrument_id(instrument)
        if first is not None and first[0] == "instrument":
            if first[1].upper() != instrument.upper():
                raise ValidationError(
                    f"alert rule {text.strip()!r} names {first[1]} but the instrument given "
                    f"is {instrument}; give one of them"
                )
        else:
            tokens = _tokenize(f"{instrument} {text.strip()}")
            first = tokens.peek()
    if first is None or first[0] != "instrument":
        raise tokens.error(
            first,
            "an instrument first, e.g. 'NSE:SBIN RSI(14) < 30 on 15m' (or give the instrument: "
            "velox alerts add --instrument NSE:SBIN 'RSI(14) < 30 on 15m')",
        )
    instrument = tokens.take()[1]
    exchange, symbol = instrument.split(":", 1)
    instrument = f"{exchange.upper()}:{symbol.upper()}"
    left = _operand(tokens)
    operator = _operator(tokens)
    right = _operand(tokens)
    timeframe = DEFAULT_TIMEFRAME
    item = tokens.peek()
    if item is not None:
        if item[0] != "name" or item[1].lower() != "on":
            raise tokens.error(item, "'on TIMEFRAME' or the end of the rule")
        tokens.take()
        tf = tokens.peek()
        # "5m" reads as the number 5 followed by the name "m": join them back
        if tf is not None and tf[0] == "number" and tokens.at + 1 < len(tokens.items):
            tokens.take()
            unit = tokens.take()
            timeframe = f"{tf[1]}{unit[1]}"
            where = tf
        elif tf is not None:
            timeframe = tokens.take()[1]
            where = tf
        else:
            raise tokens.error(None, f"a timeframe after 'on' ({', '.join(TIMEFRAMES)})")
        if timeframe not in TIMEFRAMES:
            raise ValidationError(
                f"alert rule {text!r}: unknown timeframe {timeframe!r} at column {where[2] + 1}; "
                f"use one of {', '.join(TIMEFRAMES)}"
            )
        rest = tokens.peek()
        if rest is not None:
            raise tokens.error(rest, "the end of the rule after the timeframe")
    if left.kind == "number" and right.kind == "number":
        raise ValidationError(f"alert rule {text!r}: compares two numbers; one side must be "
                              "a bar field or an indicator")  # fmt: skip
    return Rule(tokens.text, instrument, left, operator, right, timeframe)


def _operator(tokens: _Tokens) -> str:
    item = tokens.peek()
    if item is None:
        raise tokens.error(None, f"an operator ({', '.join(OPERATORS)}) after the left side")
    if item[0] == "op":
        tokens.take()
        return item[1]
    if item[0] == "name" and item[1].lower() == "crosses":
        tokens.take()
        way = tokens.peek()
        if way is None or way[0] != "name" or way[1].lower() not in ("above", "below"):
            raise tokens.error(way, "'above' or 'below' after 'crosses'")
        tokens.take()
        return f"crosses {way[1].lower()}"
    raise tokens.error(item, f"an operator ({', '.join(OPERATORS)})")


def _operand(tokens: _Tokens) -> Operand:
    import difflib

    item = tokens.peek()
    if item is None:
        raise tokens.error(None, "a number, a bar field or an indicator")
    kind, value, _ = item
    if kind == "number":
        tokens.take()
        return Operand("number", number=float(value))
    if kind != "name":
        raise tokens.error(item, "a number, a bar field or an indicator")
    tokens.take()
    lowered = value.lower()
    nxt = tokens.peek()
    classes = _streaming_classes()
    if nxt is None or nxt[1] != "(":
        if lowered in FIELDS:
            return Operand("field", name=lowered)
        if lowered in classes:  # an indicator with its default parameters: RSI
            return _output(tokens, classes[lowered], ())
        hint = difflib.get_close_matches(lowered, [*FIELDS, *classes], n=1)
        raise ValidationError(
            f"alert rule {tokens.text!r}: unknown field or indicator {value!r} at column "
            f"{item[2] + 1}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (fields: {', '.join(FIELDS)})"
        )  # fmt: skip
    if lowered not in classes:
        hint = difflib.get_close_matches(lowered, list(classes), n=1)
        named = classes[hint[0]].__name__ if hint else None
        raise ValidationError(
            f"alert rule {tokens.text!r}: unknown indicator {value!r} at column {item[2] + 1}"
            + (f"; did you mean {named!r}?" if named else "")
            + f" (indicators: {', '.join(indicator_names())})"
        )
    tokens.take()  # "("
    args: list[float] = []
    while True:
        arg = tokens.take()
        if arg[1] == ")" and not args:
            break
        if arg[0] != "number":
            raise tokens.error(arg, f"a number as a parameter of {classes[lowered].__name__}")
        args.append(float(arg[1]))
        sep = tokens.take()
        if sep[1] == ")":
            break
        if sep[1] != ",":
            raise tokens.error(sep, "',' or ')'")
    return _output(tokens, classes[lowered], tuple(args))


def _output(tokens: _Tokens, cls: type, args: tuple[float, ...]) -> Operand:
    """Read an optional ``.output`` after an indicator; a multi-output one needs it."""
    name = cls.__name__
    try:  # wrong parameters are an error at parse time
        _keywords(cls, args, name)
    except ValidationError as exc:
        raise ValidationError(f"alert rule {tokens.text!r}: {exc}") from None
    outputs: tuple[str, ...] = tuple(getattr(cls._spec.result, "_fields", ()) or ())
    output = None
    item = tokens.peek()
    if item is not None and item[1] == ".":
        tokens.take()
        chosen = tokens.take()
        if chosen[0] != "name" or chosen[1].lower() not in outputs:
            expected = f"one of {', '.join(outputs)}" if outputs else "nothing: it has one output"
            raise tokens.error(chosen, f"the output of {name}: {expected}")
        output = chosen[1].lower()
    elif outputs:
        raise ValidationError(
            f"alert rule {tokens.text!r}: {name} has several outputs; name one, e.g. "
            f"{name}(...).{outputs[0]} (outputs: {', '.join(outputs)})"
        )
    return Operand("indicator", name=name, args=args, output=output)


# -- the alert_rules table ------------------------------------------------------------------

RULE_COLUMNS = (
    "id", "owner", "rule", "instrument_id", "timeframe", "severity", "enabled", "created_at",
    "last_fired_at", "last_fired_bar", "fired_count",
)  # fmt: skip


def add_rule(
    store: Store,
    text: str,
    *,
    severity: str = "info",
    owner: str | None = None,
    instrument: str | None = None,
) -> int:
    """Parse ``text`` (with ``instrument`` if it names none, see :func:`parse_rule`) and
    store it as an enabled rule of ``owner``; return its id.

    ``owner`` defaults to the operating-system login. The instrument must be in the bundled
    instrument master (a typo would otherwise watch nothing, silently).
    """
    from velox.modes import default_instruments
    from velox.store._values import choice
    from velox.store._values import text as checked_text
    from velox.store.alerts import ALERT_SEVERITIES

    rule = parse_rule(text, instrument)
    default_instruments()(rule.instrument_id)  # UnknownInstrument (did you mean …?)
    values = {
        "owner": checked_text("owner", owner if owner is not None else getpass.getuser()),
        "rule": rule.text,
        "instrument_id": rule.instrument_id,
        "timeframe": rule.timeframe,
        "severity": choice("severity", severity, ALERT_SEVERITIES),
    }
    with store._atomic() as conn:
        (rule_id,) = conn.execute(
            "INSERT INTO alert_rules (owner, rule, instrument_id, timeframe, severity) "
            "VALUES (%(owner)s, %(rule)s, %(instrument_id)s, %(timeframe)s, %(severity)s) "
            "RETURNING id",
            values,
        ).fetchone()
    log.info("alert rule %d of %s: %s", rule_id, values["owner"], rule)
    return int(rule_id)


def list_rules(
    store: Store, *, owner: str | None = None, enabled: bool | None = None
) -> pd.DataFrame:
    """Return the stored rules (columns :data:`RULE_COLUMNS`, IST times), oldest first."""
    import pandas as pd

    from velox.store._values import ist_column

    conditions, values = [], []
    if owner is not None:
        conditions.append("owner = %s")
        values.append(owner)
    if enabled is not None:
        conditions.append("enabled = %s")
        values.append(bool(enabled))
    query = f"SELECT {', '.join(RULE_COLUMNS)} FROM alert_rules"
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    with store._shared() as conn:
        rows = conn.execute(query + " ORDER BY id", values).fetchall()
    frame = pd.DataFrame(rows, columns=list(RULE_COLUMNS))
    for col in ("id", "fired_count"):
        frame[col] = frame[col].astype("int64")
    for col in ("created_at", "last_fired_at", "last_fired_bar"):
        ist_column(frame, col)
    return frame


def remove_rule(store: Store, rule_id: int) -> None:
    """Delete rule ``rule_id``; an unknown id is a :class:`ValidationError`."""
    with store._atomic() as conn:
        gone = conn.execute("DELETE FROM alert_rules WHERE id = %s", (int(rule_id),)).rowcount
    if not gone:
        raise ValidationError(f"no alert rule {rule_id}; `velox alerts list` shows their ids")


# -- evaluating rules on closed candles -----------------------------------------------------


def _condition(operator: str, left: float, right: float) -> bool:
    if operator in (">", "crosses above"):
        return left > right
    if operator == ">=":
        return left >= right
    if operator in ("<", "crosses below"):
        return left < right
    return left <= right  # "<="


@dataclass
class _Watch:
    """One stored rule being evaluated: its operands' streams and the previous bar's state."""

    rule_id: int
    rule: Rule
    owner: str
    severity: str
    last_fired_bar: datetime | None
    left: Callable[[Bar], float] = field(init=False)
    right: Callable[[Bar], float] = field(init=False)
    previous: bool | None = None  # the condition at the previous defined bar

    def __post_init__(self) -> None:
        self.left = self.rule.left.stream()
        self.right = self.rule.right.stream()

    def step(self, bar: Bar) -> tuple[bool, float, float]:
        """Commit a closed bar; return whether the rule fires at it and the two sides."""
        left, right = self.left(bar), self.right(bar)
        if not (math.isfinite(left) and math.isfinite(right)):
            self.previous = None
            return False, left, right
        now = _condition(self.rule.operator, left, right)
        fires = now and self.previous is False
        self.previous = now
        return fires, left, right


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fired: which, at which bar (start, IST), with which values."""

    rule_id: int
    bar_ts: datetime
    left: float
    right: float
    alert_id: int | None


class RuleWatcher:
    """Evaluate stored alert rules on an engine's closed candles and raise ``user_alert``s.

    Hand it to the engine (``Engine(..., watchers=[watcher])``): the engine subscribes the
    watcher's :attr:`keys` like a strategy's and calls :meth:`on_bar` with every closed bar
    of them. ``instruments`` keeps only the rules on those (what the engine's feed carries);
    ``rule_ids`` only those rules. The first bar of each (instrument, timeframe) first warms
    the rules' indicators from the last :data:`WARMUP_BARS` stored bars before it.
    """

    def __init__(
        self,
        store: Store,
        *,
        run_id: str | None = None,
        account: str | None = None,
        rule_ids: Sequence[int] | None = None,
        instruments: Collection[str] | None = None,
        warmup_bars: int = WARMUP_BARS,
    ) -> None:
        self.store = store
        self.run_id, self.account = run_id, account
        self.warmup_bars = warmup_bars
        self.fired: list[Firing] = []
        self._watches: dict[tuple[str, str], list[_Watch]] = {}
        self._warm: set[tuple[str, str]] = set()
        for row in list_rules(store, enabled=True).itertuples():
            if rule_ids is not None and row.id not in rule_ids:
                continue
            if instruments is not None and row.instrument_id not in instruments:
                continue  # the engine's feed does not carry that instrument
            try:
                rule = parse_rule(row.rule)
            except ValidationError as exc:  # the grammar changed under a stored rule
                log.error("alert rule %d is not evaluated: %s", row.id, exc)
                continue
            last = None if _missing(row.last_fired_bar) else row.last_fired_bar.to_pydatetime()
            watch = _Watch(int(row.id), rule, row.owner, row.severity, last)
            self._watches.setdefault((rule.instrument_id, rule.timeframe), []).append(watch)

    def __len__(self) -> int:
        return sum(len(w) for w in self._watches.values())

    @property
    def keys(self) -> list[tuple[str, str]]:
        """The (instrument, timeframe) pairs whose closed bars the watcher needs."""
        return sorted(self._watches)

    def on_bar(self, bar: Bar) -> None:
        """Evaluate the rules of ``bar``'s instrument and timeframe on this closed bar."""
        key = (bar.instrument_id, bar.timeframe)
        watches = self._watches.get(key)
        if not watches:
            return
        if key not in self._warm:
            self._warm.add(key)
            try:
                self._warm_up(key, bar.ts, watches)
            except Exception:  # noqa: BLE001 - the rules then warm up on live bars
                log.exception("alert rules on %s %s: warm-up from the store failed", *key)
        for watch in list(watches):
            try:
                fires, left, right = watch.step(bar)
            except Exception as exc:  # noqa: BLE001 - a rule must never stop the engine
                log.error("alert rule %d dropped from this run: %s", watch.rule_id, exc)
                watches.remove(watch)
                continue
            if fires and (watch.last_fired_bar is None or bar.ts > watch.last_fired_bar):
                self._fire(watch, bar, left, right)

    def _warm_up(self, key: tuple[str, str], before: datetime, watches: list[_Watch]) -> None:
        """Feed the stored bars before the first live bar through the rules (no firing)."""
        from velox.types import Bar

        frame = self.store.read_bars(*key, end=before)
        frame = frame[frame.index < before].tail(self.warmup_bars)
        frame = frame.assign(volume=frame["volume"].fillna(0.0))  # indices refuse NaN input
        for ts, row in zip(frame.index, frame.itertuples(index=False), strict=True):
            bar = Bar(key[0], key[1], ts.to_pydatetime(), float(row.open), float(row.high),
                      float(row.low), float(row.close), float(row.volume))  # fmt: skip
            for watch in watches:
                watch.step(bar)
        log.info("alert rules on %s %s warmed up on %d stored bars", *key, len(frame))

    def _fire(self, watch: _Watch, bar: Bar, left: float, right: float) -> None:
        rule = watch.rule
        shown = bar.ts.astimezone(IST).strftime("%Y-%m-%d %H:%M")
        message = f"{rule.text}: {rule.left} = {left:g}, {rule.right} = {right:g} at the " \
                  f"{rule.timeframe} bar of {shown} IST"  # fmt: skip
        alert_id = None
        try:
            alert_id = self.store.raise_alert(
                kind="user_alert", severity=watch.severity, message=message,
                dedup_key=f"rule:{watch.rule_id}:{bar.ts.isoformat()}", run_id=self.run_id,
                account=self.account, ts=bar.ts + _duration(rule.timeframe),
                payload={"rule_id": watch.rule_id, "owner": watch.owner, "rule": rule.text,
                         "bar": bar.ts.isoformat(), "left": left, "right": right},
            )  # fmt: skip
            with self.store._atomic() as conn:
                conn.execute(
                    "UPDATE alert_rules SET last_fired_at = now(), last_fired_bar = %s, "
                    "fired_count = fired_count + 1 WHERE id = %s",
                    (bar.ts, watch.rule_id),
                )
        except Exception:  # noqa: BLE001 - a store hiccup must not stop the engine's loop
            log.exception("alert rule %d fired at %s but could not be stored", watch.rule_id,
                          bar.ts)  # fmt: skip
        watch.last_fired_bar = bar.ts
        self.fired.append(Firing(watch.rule_id, bar.ts, left, right, alert_id))


def _duration(timeframe: str) -> timedelta:
    minutes = TIMEFRAMES[timeframe]
    return timedelta(minutes=minutes) if minutes is not None else timedelta(0)


def _missing(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))
