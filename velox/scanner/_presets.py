"""The scanner's presets and how a preset or custom condition becomes a checked rule."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from velox.errors import ValidationError
from velox.scanner._columns import _Columns, _parse_column
from velox.scanner._language import _compile


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
