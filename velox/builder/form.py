"""The strategy builder form: ipywidgets over :class:`~velox.builder.model.StrategyModel`.

:class:`StrategyForm` is an ``ipywidgets.VBox``: display it in JupyterLab (or wrap it in a
Panel page, :mod:`velox.builder.panel_app`). Everything the buttons do is a method too
(:meth:`StrategyForm.preview`, :meth:`~StrategyForm.save`, :meth:`~StrategyForm.load`,
:meth:`~StrategyForm.backtest`), and :attr:`StrategyForm.model` / :meth:`~StrategyForm.load_model`
convert between the widgets and the model, so the form is tested without a browser.

The form holds no logic of its own: rules become code in :mod:`velox.builder.codegen`, and a
backtest is ``velox.replay`` of the generated class.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as w

from velox.builder import actions
from velox.builder.actions import builder_files
from velox.builder.catalogue import INDICATORS, PRICE_FIELDS
from velox.builder.codegen import load, save, to_source
from velox.builder.model import (
    COMPARATORS,
    SECTIONS,
    Group,
    Indicator,
    Number,
    Operand,
    Price,
    Rule,
    StrategyModel,
)
from velox.errors import VeloxError

if TYPE_CHECKING:
    import pandas as pd

    from velox.engine import RunResult

__all__ = ["StrategyForm", "GroupEditor", "RuleEditor", "OperandEditor"]

log = logging.getLogger(__name__)

_NUMBER = "number"
_KINDS = [
    *((f"{info.label} ({info.description})", name) for name, info in INDICATORS.items()),
    *((f"price: {f}", f"price:{f}") for f in PRICE_FIELDS),
    ("number", _NUMBER),
]
_SECTION_TITLES = {
    "long_entry": "Long entry",
    "long_exit": "Long exit",
    "short_entry": "Short entry (MIS)",
    "short_exit": "Short exit (MIS)",
}
_SMALL = w.Layout(width="7em")


class OperandEditor(w.HBox):
    """Edit one operand: an indicator with its parameters, source and output, a price field,
    or a number."""

    def __init__(self, operand: Operand | None = None) -> None:
        self.kind = w.Dropdown(options=_KINDS, value="sma", layout=w.Layout(width="16em"))
        self.source = w.Dropdown(options=PRICE_FIELDS, value="close", layout=_SMALL)
        self.output = w.Dropdown(options=[""], value="", layout=_SMALL)
        self.value = w.FloatText(value=0.0, layout=_SMALL)
        self.params: dict[str, w.IntText | w.FloatText] = {}
        self.params_box = w.HBox()
        self._loading = False
        super().__init__()
        self.kind.observe(lambda _: None if self._loading else self._layout(), names="value")
        self.set(operand if operand is not None else Indicator("sma", {"window": 20}))

    def _layout(self, params: dict[str, float] | None = None, output: str | None = None) -> None:
        kind = self.kind.value
        children: list[w.Widget] = [self.kind]
        if kind == _NUMBER:
            children.append(self.value)
        elif not kind.startswith("price:"):
            info = INDICATORS[kind]
            given = params or {}
            self.params = {}
            for p in info.params:
                widget_cls = w.IntText if p.kind is int else w.FloatText
                self.params[p.name] = widget_cls(
                    value=given.get(p.name, p.default), description=p.label,
                    style={"description_width": "initial"}, layout=w.Layout(width="11em"),
                )  # fmt: skip
            self.params_box.children = tuple(self.params.values())
            children.append(self.params_box)
            if info.single_input:
                children += [w.Label("of"), self.source]
            if info.outputs:
                self.output.options = info.outputs
                self.output.value = output if output in info.outputs else info.outputs[0]
                children.append(self.output)
        self.children = tuple(children)

    @property
    def operand(self) -> Operand:
        """Return the operand the widgets show."""
        kind = self.kind.value
        if kind == _NUMBER:
            return Number(float(self.value.value))
        if kind.startswith("price:"):
            return Price(kind.split(":", 1)[1])
        info = INDICATORS[kind]
        return Indicator(
            kind,
            {name: widget.value for name, widget in self.params.items()},
            self.source.value if info.single_input else "close",
            self.output.value if info.outputs else None,
        )

    def set(self, operand: Operand) -> None:
        """Show ``operand``."""
        self._loading = True
        try:
            if isinstance(operand, Number):
                self.kind.value = _NUMBER
                self.value.value = float(operand.value)
            elif isinstance(operand, Price):
                self.kind.value = f"price:{operand.field}"
            else:
                self.kind.value = operand.name
                self.source.value = operand.source if operand.info.single_input else "close"
        finally:
            self._loading = False
        if isinstance(operand, Indicator):
            self._layout(operand.resolved_params(), operand.resolved_output())
        else:
            self._layout()


class RuleEditor(w.HBox):
    """Edit one rule: operand, comparator, operand, and a remove button."""

    def __init__(self, rule: Rule | None, on_remove: Callable[[RuleEditor], None]) -> None:
        rule = rule or Rule(Indicator("rsi", {"window": 14}), "<", Number(30.0))
        self.left = OperandEditor(rule.left)
        self.comparator = w.Dropdown(options=COMPARATORS, value=rule.comparator,
                                     layout=w.Layout(width="9em"))  # fmt: skip
        self.right = OperandEditor(rule.right)
        self.remove = w.Button(description="✕", tooltip="remove this rule", layout=_SMALL)
        self.remove.on_click(lambda _: on_remove(self))
        super().__init__([self.left, self.comparator, self.right, self.remove])

    @property
    def rule(self) -> Rule:
        """Return the rule the widgets show."""
        return Rule(self.left.operand, self.comparator.value, self.right.operand)


class GroupEditor(w.VBox):
    """Edit an AND/OR group: its rules and nested groups, with add and remove buttons."""

    def __init__(
        self, group: Group | None = None, on_remove: Callable[[GroupEditor], None] | None = None
    ) -> None:
        self.op = w.ToggleButtons(options=[("AND", "and"), ("OR", "or")], value="and",
                                  tooltips=["all must hold", "any may hold"])  # fmt: skip
        self.op.style.button_width = "4em"
        self.add_rule = w.Button(description="+ rule", layout=_SMALL)
        self.add_group = w.Button(description="+ group", layout=_SMALL)
        self.add_rule.on_click(lambda _: self.append(Rule(Indicator("rsi", {"window": 14}), "<",
                                                          Number(30.0))))  # fmt: skip
        self.add_group.on_click(lambda _: self.append(Group("or", ())))
        header = [self.op, self.add_rule, self.add_group]
        if on_remove is not None:
            remove = w.Button(description="✕ group", layout=w.Layout(width="7em"))
            remove.on_click(lambda _: on_remove(self))
            header.append(remove)
        self.items = w.VBox(layout=w.Layout(margin="0 0 0 2em"))
        super().__init__([w.HBox(header), self.items],
                         layout=w.Layout(border="1px solid #ddd", padding="2px"))  # fmt: skip
        self.set(group or Group())

    def append(self, item: Rule | Group) -> None:
        """Add a rule or a nested group at the end."""
        editor: w.Widget = (
            RuleEditor(item, self._remove)
            if isinstance(item, Rule)
            else GroupEditor(item, self._remove)
        )
        self.items.children = (*self.items.children, editor)

    def _remove(self, editor: w.Widget) -> None:
        self.items.children = tuple(c for c in self.items.children if c is not editor)

    @property
    def group(self) -> Group:
        """Return the group the widgets show."""
        items = tuple(c.rule if isinstance(c, RuleEditor) else c.group for c in self.items.children)
        return Group(self.op.value, items)

    def set(self, group: Group) -> None:
        """Show ``group``."""
        self.op.value = group.op
        self.items.children = ()
        for item in group.items:
            self.append(item)


class StrategyForm(actions.FormFields, w.VBox):
    """Return the no-code strategy builder form (an ``ipywidgets.VBox``).

    Parameters
    ----------
    model
        The model to start from (default: an empty long-only strategy).
    directory
        Where Save writes and Load lists builder files (``strategies``).
    bars
        Bars for Backtest: a DataFrame (one instrument) or {instrument id: DataFrame}; None
        reads the bundled ``data/bars`` file of each instrument and timeframe, else the store.

    Examples
    --------
    >>> from velox.builder import StrategyForm
    >>> form = StrategyForm()
    >>> form.load_model(model)                # doctest: +SKIP
    >>> form.model == model                   # doctest: +SKIP
    True
    >>> form                                  # doctest: +SKIP
    """

    def __init__(
        self,
        model: StrategyModel | None = None,
        *,
        directory: str | Path = "strategies",
        bars: pd.DataFrame | dict[str, pd.DataFrame] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.bars = bars
        label = {"style": {"description_width": "8em"}}
        self.name = w.Text(description="Name", placeholder="RsiDip", **label)
        self.description = w.Textarea(description="Description", rows=2,
                                      layout=w.Layout(width="40em"), **label)  # fmt: skip
        self.instruments = w.Text(description="Instruments", placeholder="NSE:RELIANCE, NSE:TCS",
                                  layout=w.Layout(width="40em"), **label)  # fmt: skip
        from velox.calendar import TIMEFRAMES

        self.timeframe = w.Dropdown(description="Timeframe", options=list(TIMEFRAMES), **label)
        self.product = w.ToggleButtons(description="Product", options=["CNC", "MIS"], **label)
        self.size_kind = w.Dropdown(
            description="Size", options=[("fraction of equity", "weight"), ("lots", "lots")],
            **label,
        )  # fmt: skip
        self.size_value = w.FloatText(value=0.95, layout=_SMALL)
        self.use_stop = w.Checkbox(description="Stop-loss %", indent=False,
                                   layout=w.Layout(width="8em"))  # fmt: skip
        self.stop = w.FloatText(value=2.0, layout=_SMALL)
        self.use_target = w.Checkbox(description="Target %", indent=False,
                                     layout=w.Layout(width="8em"))  # fmt: skip
        self.target = w.FloatText(value=4.0, layout=_SMALL)
        self.groups = {name: GroupEditor() for name in SECTIONS}
        self.sections = w.Accordion(children=list(self.groups.values()))
        for n, name in enumerate(SECTIONS):
            self.sections.set_title(n, _SECTION_TITLES[name])
        self.sections.selected_index = 0

        self.path = w.Text(description="File", placeholder="strategies/<name>.py", **label)
        self.overwrite = w.Checkbox(description="overwrite a hand-written file", value=False)
        self.choices = w.Dropdown(description="Builder files", options=[], **label)
        buttons = {
            "Preview code": self.preview,
            "Save": self.save,
            "Load": self.load,
            "Backtest": self.backtest,
        }
        self.buttons = {}
        for text, action in buttons.items():
            button = w.Button(description=text, button_style="primary" if text == "Save" else "")
            button.on_click(lambda _, act=action: self._safely(act))
            self.buttons[text] = button
        self.status = w.HTML()
        self.code = w.Textarea(layout=w.Layout(width="100%", height="24em", display="none"),
                               disabled=True)  # fmt: skip
        self.results = w.HTML()
        super().__init__(
            [
                w.HTML("<h3>Strategy builder</h3>"),
                self.name,
                self.description,
                self.instruments,
                w.HBox([self.timeframe, self.product]),
                w.HBox([self.size_kind, self.size_value]),
                w.HBox([self.use_stop, self.stop, self.use_target, self.target]),
                self.sections,
                w.HBox([self.path, self.overwrite]),
                w.HBox([self.choices]),
                w.HBox(list(self.buttons.values())),
                self.status,
                self.code,
                self.results,
            ]
        )
        self.load_model(model or StrategyModel())
        self.refresh_choices()

    @property
    def widget(self) -> StrategyForm:
        """Return the form itself (the widget to display or wrap in Panel)."""
        return self

    # -- model <-> widgets -------------------------------------------------------------------

    # -- actions -----------------------------------------------------------------------------

    def _say(self, message: str, *, error: bool = False) -> None:
        color = "#b00020" if error else "#1b5e20"
        self.status.value = f"<span style='color:{color}'>{html.escape(message)}</span>"

    def preview(self) -> str:
        """Show and return the generated source (raises ValidationError for a bad model)."""
        source = to_source(self.model)
        self.code.value = source
        self.code.layout.display = None
        self._say(f"{self.model.name}: {len(source.splitlines())} lines generated")
        return source

    def save(self) -> Path:
        """Write the strategy file (the File box, else ``directory/<name>.py``) and return it."""
        model = self.model
        path = self.path.value.strip() or None
        target = save(model, path, directory=self.directory, overwrite=self.overwrite.value)
        self.path.value = str(target)
        self.refresh_choices()
        self._say(f"saved {target}")
        return target

    def refresh_choices(self) -> list[str]:
        """Return (and list in the Load menu) the builder-generated files in ``directory``."""
        files = builder_files(self.directory)
        self.choices.options = files
        return files

    def load(self, path: str | Path | None = None) -> StrategyModel:
        """Load a builder-generated file (``path``, else the Load menu's, else the File box's)."""
        chosen = path or self.choices.value or self.path.value.strip()
        if not chosen:
            raise VeloxError("choose a builder file to load (none in the File box or the menu)")
        model = load(chosen)
        self.load_model(model)
        self.path.value = str(chosen)
        self._say(f"loaded {model.name} from {chosen}")
        return model

    def backtest(self) -> RunResult:
        """Replay the strategy (``velox.replay``) on :attr:`bars`, the bundled data or the store,
        show its statistics, and return the result."""
        model = self.model
        result = actions.backtest(model, self.bars)
        self.results.value = result._repr_html_()
        self._say(actions.summary(model, result))
        return result
