"""The no-code strategy builder: compose rules in a form, get a readable strategy file.

A :class:`StrategyModel` (rules of indicators, comparators and thresholds in AND/OR groups,
entry and exit for long and short, stop-loss, target, size, product) is pure data;
:func:`to_source` turns it into a ``strategies/*.py`` file that ``velox.replay``, paper trading
and (for vectorisable ones) ``velox.research`` run unchanged, and :func:`load` reads the model
back from that file. :class:`StrategyForm` is the ipywidgets form over the model (JupyterLab),
:mod:`velox.builder.panel_app` the same form as a Panel page. See ``docs/builder.md``.

Importing this package imports neither ipywidgets nor Panel: the form loads on first use.

Examples
--------
>>> from velox.builder import Group, Indicator, Number, Rule, StrategyModel, to_source
>>> rsi = Indicator("rsi", {"window": 14})
>>> model = StrategyModel(
...     "RsiDip",
...     long_entry=Group("and", (Rule(rsi, "<", Number(30)),)),
...     long_exit=Group("and", (Rule(rsi, ">", Number(55)),)),
... )
>>> print(to_source(model).splitlines()[0])
\"\"\"RsiDip: a strategy made with the Velox strategy builder.
>>> form = StrategyForm()        # doctest: +SKIP
>>> form.load_model(model)       # doctest: +SKIP
>>> form                         # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from velox.builder.catalogue import INDICATORS, PRICE_FIELDS, IndicatorInfo, ParamInfo
from velox.builder.codegen import MARKER, build, from_source, is_generated, load, save, to_source
from velox.builder.model import (
    COMPARATORS,
    SECTIONS,
    Group,
    Indicator,
    Number,
    Operand,
    Price,
    Rule,
    Size,
    StrategyModel,
)

if TYPE_CHECKING:
    from velox.builder.form import StrategyForm

__all__ = [
    "COMPARATORS",
    "INDICATORS",
    "MARKER",
    "PRICE_FIELDS",
    "SECTIONS",
    "Group",
    "Indicator",
    "IndicatorInfo",
    "Number",
    "Operand",
    "ParamInfo",
    "Price",
    "Rule",
    "Size",
    "StrategyForm",
    "StrategyModel",
    "build",
    "from_source",
    "is_generated",
    "load",
    "save",
    "to_source",
]


def __getattr__(name: str) -> object:
    if name == "StrategyForm":
        from velox.builder.form import StrategyForm

        return StrategyForm
    raise AttributeError(f"module 'velox.builder' has no attribute {name!r}")
