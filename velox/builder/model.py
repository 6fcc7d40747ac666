"""The strategy builder's model: rules, groups and settings as plain dataclasses.

A :class:`StrategyModel` is what the form edits and what :func:`velox.builder.to_source` turns
into a Python file. It is pure data (no pandas, no widgets), compares by value, and converts to
and from a JSON-like dict (:meth:`StrategyModel.to_dict`, :meth:`StrategyModel.from_dict`), the
form the generated file embeds as ``BUILDER_SPEC``.

Vocabulary
----------
operand
    :class:`Price` (a bar field: ``close``, ``open``, ``high``, ``low``, ``volume``),
    :class:`Number` (a threshold) or :class:`Indicator` (``Indicator("sma", {"window": 20})``,
    SMA(20) of the close; ``output`` picks a line of a multi-output one: MACD's ``signal``).
rule
    ``left comparator right``: ``>``, ``<``, ``>=``, ``<=``, ``crosses above``, ``crosses below``.
    A cross is true on the bar where ``left`` moves from at or below (above) ``right`` to above
    (below) it; a number on either side is fine.
group
    :class:`Group` of rules and groups joined by ``and`` or ``or`` (nesting to any depth).
entry and exit
    ``long_entry`` opens a long position when flat, ``long_exit`` closes it; ``short_entry`` and
    ``short_exit`` likewise for shorts (MIS only). One change per bar: an exit bar never
    enters again on the same bar.

Examples
--------
>>> model = StrategyModel(
...     name="SmaCrossBuilt",
...     long_entry=Group("and", (Rule(Indicator("sma", {"window": 10}), ">",
...                                   Indicator("sma", {"window": 30})),)),
...     long_exit=Group("and", (Rule(Indicator("sma", {"window": 10}), "<=",
...                                  Indicator("sma", {"window": 30})),)),
... )
>>> model.validate()
>>> StrategyModel.from_dict(model.to_dict()) == model
True
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from velox.builder.catalogue import INDICATORS, PRICE_FIELDS, IndicatorInfo
from velox.errors import ValidationError

__all__ = [
    "COMPARATORS",
    "SECTIONS",
    "SPEC_VERSION",
    "Group",
    "Indicator",
    "Number",
    "Operand",
    "Price",
    "Rule",
    "Size",
    "StrategyModel",
]

#: The comparators a rule may use.
COMPARATORS = (">", "<", ">=", "<=", "crosses above", "crosses below")

#: The four rule sections of a model, in the order the generated code evaluates them.
SECTIONS = ("long_entry", "long_exit", "short_entry", "short_exit")

#: The version of the dict layout embedded in generated files.
SPEC_VERSION = 1


@dataclass(frozen=True)
class Price:
    """A bar field as an operand: ``close``, ``open``, ``high``, ``low`` or ``volume``."""

    field: str = "close"

    def label(self) -> str:
        """Return the operand in words (``close``)."""
        return self.field


@dataclass(frozen=True)
class Number:
    """A constant as an operand (a threshold such as RSI's 30)."""

    value: float = 0.0

    def label(self) -> str:
        """Return the number as text (``30``)."""
        return f"{self.value:g}"


@dataclass(frozen=True)
class Indicator:
    """An indicator as an operand: ``name`` from the catalogue, its parameters, the bar field
    it reads (single-input indicators only) and the output line of multi-output ones."""

    name: str
    params: Mapping[str, float] = field(default_factory=dict)
    source: str = "close"
    output: str | None = None

    def __post_init__(self) -> None:
        # a known indicator is stored complete (defaults filled in, the first output named,
        # no source for bar-input ones), so two spellings of one computation compare equal;
        # an unknown name is kept as given for validate() to report
        info = INDICATORS.get(self.name)
        if info is None:
            return
        params = {p.name: self.params.get(p.name, p.default) for p in info.params}
        params.update({k: v for k, v in self.params.items() if k not in params})
        object.__setattr__(self, "params", params)
        if info.outputs and self.output is None:
            object.__setattr__(self, "output", info.outputs[0])
        if not info.single_input:
            object.__setattr__(self, "source", "close")

    @property
    def info(self) -> IndicatorInfo:
        """Return the catalogue entry (raises ValidationError for an unknown name)."""
        return _indicator_info(self.name)

    def resolved_params(self) -> dict[str, float]:
        """Return every parameter of the indicator: the given ones, defaults for the rest."""
        info = self.info
        return {p.name: self.params.get(p.name, p.default) for p in info.params}

    def resolved_output(self) -> str | None:
        """Return the output line used (the first one when none is given), None if single."""
        outputs = self.info.outputs
        return (self.output or outputs[0]) if outputs else None

    def identity(self) -> tuple[object, ...]:
        """Return what makes two operands the same computation (the output excluded)."""
        source = self.source if self.info.single_input else ""
        return (self.name, source, tuple(sorted(self.resolved_params().items())))

    def label(self) -> str:
        """Return the operand in words: ``SMA(20) of close``, ``MACD(12, 26, 9) signal``."""
        info = self.info
        args = ", ".join(f"{v:g}" for v in self.resolved_params().values())
        text = f"{info.label}({args})" if args else info.label
        if info.single_input and self.source != "close":
            text += f" of {self.source}"
        output = self.resolved_output()
        if output is not None and output != info.name:
            text += f" {output}"
        return text


Operand = Price | Number | Indicator


@dataclass(frozen=True)
class Rule:
    """``left comparator right``, e.g. ``Rule(Indicator("rsi"), "<", Number(30))``."""

    left: Operand
    comparator: str
    right: Operand

    def label(self) -> str:
        """Return the rule in words."""
        return f"{self.left.label()} {self.comparator} {self.right.label()}"


@dataclass(frozen=True)
class Group:
    """Rules and groups joined by ``op``: ``"and"`` (all must hold) or ``"or"`` (any)."""

    op: Literal["and", "or"] = "and"
    items: tuple[Rule | Group, ...] = ()

    def label(self, top: bool = True) -> str:
        """Return the group in words (nested groups in parentheses)."""
        text = f" {self.op.upper()} ".join(
            i.label() if isinstance(i, Rule) else i.label(top=False) for i in self.items
        )
        return text if top or len(self.items) < 2 else f"({text})"

    def rules(self) -> Iterator[Rule]:
        """Yield every rule, depth first."""
        for item in self.items:
            if isinstance(item, Rule):
                yield item
            else:
                yield from item.rules()


@dataclass(frozen=True)
class Size:
    """Position size: ``"weight"`` (fraction of the strategy's equity, via
    ``Context.target_weight``) or ``"lots"`` (a quantity in lots: shares for equity)."""

    kind: Literal["weight", "lots"] = "weight"
    value: float = 0.95


@dataclass(frozen=True)
class StrategyModel:
    """A strategy as the builder composes it (see the module docstring).

    ``stop_loss_pct`` and ``target_pct`` are percentages from the average entry price, checked
    on every closed bar's close; either makes the generated strategy event-driven.
    """

    name: str = "BuiltStrategy"
    instruments: tuple[str, ...] = ("NSE:RELIANCE",)
    timeframe: str = "1d"
    product: Literal["CNC", "MIS"] = "CNC"
    long_entry: Group = field(default_factory=Group)
    long_exit: Group = field(default_factory=Group)
    short_entry: Group = field(default_factory=Group)
    short_exit: Group = field(default_factory=Group)
    stop_loss_pct: float | None = None
    target_pct: float | None = None
    size: Size = field(default_factory=Size)
    description: str = ""

    # -- derived -------------------------------------------------------------------------

    @property
    def vectorisable(self) -> bool:
        """Return True if the generated strategy uses ``signals()`` (no stop-loss, no target,
        sized by weight): ``velox.research`` runs only those; replay and paper run both."""
        return self.stop_loss_pct is None and self.target_pct is None and self.size.kind == "weight"

    @property
    def module_name(self) -> str:
        """Return the file name stem for :attr:`name` (``SmaCrossBuilt`` → ``sma_cross_built``)."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", self.name).lower()

    def sections(self) -> dict[str, Group]:
        """Return the four rule groups by section name (:data:`SECTIONS`)."""
        return {name: getattr(self, name) for name in SECTIONS}

    def indicators(self) -> list[Indicator]:
        """Return the distinct indicator computations the rules use, in order of appearance."""
        seen: dict[tuple[object, ...], Indicator] = {}
        for group in self.sections().values():
            for rule in group.rules():
                for operand in (rule.left, rule.right):
                    if isinstance(operand, Indicator):
                        seen.setdefault(operand.identity(), replace(operand, output=None))
        return list(seen.values())

    # -- validation ----------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`~velox.errors.ValidationError` naming the first problem and its fix."""
        from velox.calendar import check_timeframe
        from velox.types import check_instrument_id

        if (
            not self.name.isidentifier()
            or keyword.iskeyword(self.name)
            or not self.name[0].isupper()
        ):
            raise ValidationError(
                f"strategy name {self.name!r} must be a Python class name starting with a "
                "capital letter, e.g. 'RsiDip'"
            )
        if len(self.name) > 60:
            raise ValidationError(f"strategy name {self.name[:20]!r}… is {len(self.name)} "
                                  "characters long; keep it to 60")  # fmt: skip
        if not self.instruments:
            raise ValidationError("the strategy trades no instrument: add one, e.g. NSE:RELIANCE")
        for iid in self.instruments:
            check_instrument_id(iid)
        check_timeframe(self.timeframe)
        if self.product not in ("CNC", "MIS"):
            raise ValidationError(f"product {self.product!r} must be 'CNC' (delivery) or 'MIS'")
        if self.product == "MIS" and self.timeframe == "1d":
            raise ValidationError(
                "MIS positions are squared off the day they open: use an intraday timeframe "
                "(5m, 15m …) for MIS, or CNC for daily bars"
            )
        has_long, has_short = bool(self.long_entry.items), bool(self.short_entry.items)
        if not has_long and not has_short:
            raise ValidationError(
                "no entry rules: add at least one long entry rule (or a short entry for MIS)"
            )
        if has_short and self.product != "MIS":
            raise ValidationError(
                "short entry rules need product MIS: a CNC (delivery) account cannot sell short"
            )
        for side, entry, leave in (
            ("long", has_long, self.long_exit),
            ("short", has_short, self.short_exit),
        ):
            if leave.items and not entry:
                raise ValidationError(f"{side} exit rules without {side} entry rules: add an "
                                      f"entry or remove the exits")  # fmt: skip
            if entry and not leave.items and self.stop_loss_pct is None and self.target_pct is None:
                raise ValidationError(
                    f"{side} positions would never close: add {side} exit rules, a stop-loss or "
                    "a target"
                )
        for name, group in self.sections().items():
            _check_group(group, name.replace("_", " "))
        for what, pct in (("stop-loss", self.stop_loss_pct), ("target", self.target_pct)):
            if pct is not None and (not _finite(pct) or not 0 < pct < 100):
                raise ValidationError(
                    f"{what} {pct!r}% must be a percentage from the entry price, > 0 and < 100"
                )
        self._check_size()

    def _check_size(self) -> None:
        size = self.size
        if size.kind == "weight":
            limit = 5.0 if self.product == "MIS" else 1.0
            if not _finite(size.value) or not 0 < size.value <= limit:
                raise ValidationError(
                    f"position size weight {size.value!r} must be > 0 and <= {limit:g} "
                    f"({'MIS leverage' if limit > 1 else 'all of the equity'}); 0.95 leaves room "
                    "for charges"
                )
        elif size.kind == "lots":
            value = size.value
            if isinstance(value, bool) or not _finite(value) or value < 1 or value != int(value):
                raise ValidationError(f"position size {value!r} lots must be a whole number >= 1")
        else:
            raise ValidationError(f"position size kind {size.kind!r} must be 'weight' or 'lots'")

    # -- dict form -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """Return the model as JSON-like data (what generated files embed)."""
        return {
            "version": SPEC_VERSION,
            "name": self.name,
            "description": self.description,
            "instruments": list(self.instruments),
            "timeframe": self.timeframe,
            "product": self.product,
            **{name: _group_dict(group) for name, group in self.sections().items()},
            "stop_loss_pct": self.stop_loss_pct,
            "target_pct": self.target_pct,
            "size": {"kind": self.size.kind, "value": self.size.value},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> StrategyModel:
        """Return the model that :meth:`to_dict` produced (raises ValidationError if malformed)."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"a builder spec must be a dict, not {type(data).__name__}")
        version = data.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValidationError(
                f"builder spec version {version!r} is not supported (this Velox reads version "
                f"{SPEC_VERSION}); open it with the Velox that wrote it"
            )
        known = {"version", "name", "description", "instruments", "timeframe", "product",
                 *SECTIONS, "stop_loss_pct", "target_pct", "size"}  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"builder spec has unknown key(s) {unknown}; known: "
                                  f"{', '.join(sorted(known))}")  # fmt: skip
        instruments = data.get("instruments", ()) or ()
        if isinstance(instruments, str):
            instruments = (instruments,)
        size = data.get("size") or {}
        if not isinstance(size, Mapping):
            raise ValidationError(f"builder spec 'size' must be a dict, not {size!r}")
        return cls(
            name=str(data.get("name", cls.name)),
            description=str(data.get("description", "")),
            instruments=tuple(str(i) for i in instruments),  # type: ignore[union-attr]
            timeframe=str(data.get("timeframe", "1d")),
            product=str(data.get("product", "CNC")),  # type: ignore[arg-type]
            **{
                name: _group_from(data.get(name) or {"op": "and", "items": []}) for name in SECTIONS
            },
            stop_loss_pct=_optional_float(data.get("stop_loss_pct"), "stop_loss_pct"),
            target_pct=_optional_float(data.get("target_pct"), "target_pct"),
            size=Size(str(size.get("kind", "weight")), size.get("value", 0.95)),  # type: ignore[arg-type]
        )


# -- helpers ---------------------------------------------------------------------------------


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _indicator_info(name: str) -> IndicatorInfo:
    try:
        return INDICATORS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name).lower(), list(INDICATORS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValidationError(
            f"unknown indicator {name!r}; {hint}the builder offers {', '.join(INDICATORS)}"
        ) from None


def _check_operand(operand: object, where: str) -> None:
    if isinstance(operand, Price):
        if operand.field not in PRICE_FIELDS:
            raise ValidationError(
                f"{where}: unknown price field {operand.field!r}; use one of "
                f"{', '.join(PRICE_FIELDS)}"
            )
    elif isinstance(operand, Number):
        if not _finite(operand.value):
            raise ValidationError(f"{where}: the number {operand.value!r} must be finite")
    elif isinstance(operand, Indicator):
        info = _indicator_info(operand.name)
        known = {p.name for p in info.params}
        for key, value in operand.params.items():
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValidationError(
                    f"{where}: {info.label} has no parameter {key!r}; {hint}its parameters are "
                    f"{', '.join(sorted(known)) or '(none)'}"
                )
            problem = info.param(key).check(value)
            if problem:
                raise ValidationError(f"{where}: {info.label} {key} {problem}")
        if info.single_input and operand.source not in PRICE_FIELDS:
            raise ValidationError(
                f"{where}: {info.label} of {operand.source!r}: the source must be one of "
                f"{', '.join(PRICE_FIELDS)}"
            )
        if operand.output is not None and operand.output not in info.outputs:
            lines = ", ".join(info.outputs) if info.outputs else "none: it has one line"
            raise ValidationError(
                f"{where}: {info.label} has no output {operand.output!r} (outputs: {lines})"
            )
    else:
        raise ValidationError(
            f"{where}: an operand must be a Price, Number or Indicator, not "
            f"{type(operand).__name__}"
        )


def _check_group(group: object, where: str) -> None:
    if not isinstance(group, Group):
        raise ValidationError(f"{where}: expected a Group, not {type(group).__name__}")
    if group.op not in ("and", "or"):
        raise ValidationError(f"{where}: group operator {group.op!r} must be 'and' or 'or'")
    for n, item in enumerate(group.items, 1):
        at = f"{where} item {n}"
        if isinstance(item, Group):
            if not item.items:
                raise ValidationError(f"{at}: the group is empty; add a rule or remove it")
            _check_group(item, at)
        elif isinstance(item, Rule):
            if item.comparator not in COMPARATORS:
                close = difflib.get_close_matches(item.comparator, COMPARATORS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValidationError(
                    f"{at}: unknown comparator {item.comparator!r}; {hint}use one of "
                    f"{', '.join(COMPARATORS)}"
                )
            _check_operand(item.left, f"{at} (left)")
            _check_operand(item.right, f"{at} (right)")
            if isinstance(item.left, Number) and isinstance(item.right, Number):
                raise ValidationError(
                    f"{at}: {item.label()} compares two numbers; make one side a price or an "
                    "indicator"
                )
        else:
            raise ValidationError(f"{at}: expected a Rule or Group, not {type(item).__name__}")


def _operand_dict(operand: Operand) -> dict[str, object]:
    if isinstance(operand, Price):
        return {"price": operand.field}
    if isinstance(operand, Number):
        return {"number": operand.value}
    out: dict[str, object] = {"indicator": operand.name, "params": dict(operand.params)}
    if operand.source != "close":
        out["source"] = operand.source
    if operand.output is not None:
        out["output"] = operand.output
    return out


def _operand_from(data: object) -> Operand:
    if not isinstance(data, Mapping):
        raise ValidationError(f"builder spec operand must be a dict, not {data!r}")
    if "price" in data:
        return Price(str(data["price"]))
    if "number" in data:
        value = data["number"]
        if not _finite(value):
            raise ValidationError(f"builder spec number {value!r} must be a finite number")
        return Number(value)  # type: ignore[arg-type]
    if "indicator" in data:
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValidationError(f"builder spec indicator params must be a dict: {params!r}")
        output = data.get("output")
        return Indicator(str(data["indicator"]), dict(params), str(data.get("source", "close")),
                         None if output is None else str(output))  # fmt: skip
    raise ValidationError(f"builder spec operand {dict(data)!r} needs 'price', 'number' or "
                          "'indicator'")  # fmt: skip


def _group_dict(group: Group) -> dict[str, object]:
    items: list[object] = []
    for item in group.items:
        if isinstance(item, Rule):
            items.append({"left": _operand_dict(item.left), "comparator": item.comparator,
                          "right": _operand_dict(item.right)})  # fmt: skip
        else:
            items.append(_group_dict(item))
    return {"op": group.op, "items": items}


def _group_from(data: object) -> Group:
    if not isinstance(data, Mapping) or "items" not in data:
        raise ValidationError(f"builder spec group must be a dict with 'op' and 'items': {data!r}")
    items: list[Rule | Group] = []
    for item in data["items"]:  # type: ignore[union-attr]
        if isinstance(item, Mapping) and "comparator" in item:
            items.append(Rule(_operand_from(item.get("left")), str(item["comparator"]),
                              _operand_from(item.get("right"))))  # fmt: skip
        else:
            items.append(_group_from(item))
    return Group(str(data.get("op", "and")), tuple(items))  # type: ignore[arg-type]


def _optional_float(value: object, name: str) -> float | None:
    if value is None:
        return None
    if not _finite(value):
        raise ValidationError(f"builder spec {name} {value!r} must be a number or null")
    return float(value)  # type: ignore[arg-type]
