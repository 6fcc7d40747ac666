"""The strategy builder as a Panel page, over the same model as the ipywidgets form.

Two ways to show the builder in Panel, both thin over :class:`~velox.builder.StrategyModel`
and :mod:`velox.builder.actions`:

* the ipywidgets :class:`~velox.builder.StrategyForm` itself, wrapped by Panel's ipywidgets
  support (``pn.panel(form.widget)``); in a served page this needs the ``ipywidgets_bokeh``
  package, which bridges ipywidgets into a Bokeh server;
* :class:`PanelForm`, a Panel-native mirror of the same form (same sections, rule and group
  editors, buttons), which needs nothing beyond Panel.

:func:`app` picks the ipywidgets form when ``ipywidgets_bokeh`` is installed, else the mirror
(``widgets="ipywidgets"`` or ``"panel"`` chooses). Run it::

    panel serve velox/builder/panel_app.py          # or: python -m velox.builder.panel_app

or from Python: ``velox.builder.panel_app.serve(port=5007)``. Building the page starts nothing:
tests construct it without a server.
"""

from __future__ import annotations

import html
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import panel as pn

from velox.builder import actions
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

__all__ = ["PanelForm", "app", "serve"]

log = logging.getLogger(__name__)

_NUMBER = "number"
_KINDS = {
    **{f"{info.label} ({info.description})": name for name, info in INDICATORS.items()},
    **{f"price: {f}": f"price:{f}" for f in PRICE_FIELDS},
    "number": _NUMBER,
}
_TITLES = {
    "long_entry": "Long entry",
    "long_exit": "Long exit",
    "short_entry": "Short entry (MIS)",
    "short_exit": "Short exit (MIS)",
}


class _Operand:
    """A Panel editor of one operand (mirrors ``velox.builder.form.OperandEditor``)."""

    def __init__(self, operand: Operand) -> None:
        self.kind = pn.widgets.Select(options=_KINDS, width=220)
        self.source = pn.widgets.Select(options=list(PRICE_FIELDS), width=90)
        self.output = pn.widgets.Select(options=[""], width=100)
        self.value = pn.widgets.FloatInput(value=0.0, width=90)
        self.params: dict[str, pn.widgets.IntInput | pn.widgets.FloatInput] = {}
        self.view = pn.Row()
        self._loading = False
        self.kind.param.watch(lambda _: None if self._loading else self._layout(), "value")
        self.set(operand)

    def _layout(self, params: dict[str, float] | None = None, output: str | None = None) -> None:
        kind = self.kind.value
        objects: list[object] = [self.kind]
        if kind == _NUMBER:
            objects.append(self.value)
        elif not kind.startswith("price:"):
            info = INDICATORS[kind]
            given = params or {}
            self.params = {
                p.name: (pn.widgets.IntInput if p.kind is int else pn.widgets.FloatInput)(
                    label=p.label, value=given.get(p.name, p.default), width=90
                )
                for p in info.params
            }
            objects += list(self.params.values())
            if info.single_input:
                objects.append(self.source)
            if info.outputs:
                self.output.options = list(info.outputs)
                self.output.value = output if output in info.outputs else info.outputs[0]
                objects.append(self.output)
        self.view.objects = objects

    @property
    def operand(self) -> Operand:
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


class _Rule:
    """A Panel editor of one rule."""

    def __init__(self, rule: Rule, on_remove: Callable[[_Rule], None]) -> None:
        self.left = _Operand(rule.left)
        self.comparator = pn.widgets.Select(options=list(COMPARATORS), value=rule.comparator,
                                            width=120)  # fmt: skip
        self.right = _Operand(rule.right)
        self.remove = pn.widgets.Button(label="✕", width=40)
        self.remove.on_click(lambda _: on_remove(self))
        self.view = pn.Row(self.left.view, self.comparator, self.right.view, self.remove)

    @property
    def rule(self) -> Rule:
        return Rule(self.left.operand, self.comparator.value, self.right.operand)


class _Group:
    """A Panel editor of an AND/OR group, nested groups included."""

    def __init__(self, group: Group, on_remove: Callable[[_Group], None] | None = None) -> None:
        self.op = pn.widgets.RadioButtonGroup(options={"AND": "and", "OR": "or"}, width=110)
        self.add_rule = pn.widgets.Button(label="+ rule", width=70)
        self.add_group = pn.widgets.Button(label="+ group", width=80)
        self.add_rule.on_click(lambda _: self.append(_DEFAULT_RULE))
        self.add_group.on_click(lambda _: self.append(Group("or", ())))
        header = [self.op, self.add_rule, self.add_group]
        if on_remove is not None:
            remove = pn.widgets.Button(label="✕ group", width=80)
            remove.on_click(lambda _: on_remove(self))
            header.append(remove)
        self.editors: list[_Rule | _Group] = []
        self.items = pn.Column(margin=(0, 0, 0, 30))
        self.view = pn.Column(pn.Row(*header), self.items, styles={"border": "1px solid #ddd"})
        self.set(group)

    def append(self, item: Rule | Group) -> None:
        editor = _Rule(item, self._remove) if isinstance(item, Rule) else _Group(item, self._remove)
        self.editors.append(editor)
        self.items.objects = [e.view for e in self.editors]

    def _remove(self, editor: _Rule | _Group) -> None:
        self.editors = [e for e in self.editors if e is not editor]
        self.items.objects = [e.view for e in self.editors]

    @property
    def group(self) -> Group:
        return Group(self.op.value, tuple(
            e.rule if isinstance(e, _Rule) else e.group for e in self.editors
        ))  # fmt: skip

    def set(self, group: Group) -> None:
        self.op.value = group.op
        self.editors = []
        self.items.objects = []
        for item in group.items:
            self.append(item)


_DEFAULT_RULE = Rule(Indicator("rsi", {"window": 14}), "<", Number(30.0))


class PanelForm(actions.FormFields, pn.viewable.Viewer):
    """Return the Panel-native builder form: the ipywidgets form's mirror over the same model.

    ``model`` / :meth:`load_model` and the methods :meth:`preview`, :meth:`save`,
    :meth:`load`, :meth:`backtest` behave as :class:`velox.builder.StrategyForm`'s.

    Examples
    --------
    >>> from velox.builder.panel_app import PanelForm
    >>> PanelForm().servable()        # doctest: +SKIP
    """

    _name_attr = "name_input"  # Panel keeps ``name`` for the viewer itself

    def __init__(
        self,
        model: StrategyModel | None = None,
        *,
        directory: str | Path = "strategies",
        bars: pd.DataFrame | dict[str, pd.DataFrame] | None = None,
        **params: object,
    ) -> None:
        super().__init__(**params)
        from velox.calendar import TIMEFRAMES

        self.directory = Path(directory)
        self.bars = bars
        self.name_input = pn.widgets.TextInput(label="Name", placeholder="RsiDip")
        self.description = pn.widgets.TextAreaInput(label="Description", height=60)
        self.instruments = pn.widgets.TextInput(label="Instruments",
                                                placeholder="NSE:RELIANCE, NSE:TCS")  # fmt: skip
        self.timeframe = pn.widgets.Select(label="Timeframe", options=list(TIMEFRAMES))
        self.product = pn.widgets.RadioButtonGroup(label="Product", options=["CNC", "MIS"])
        self.size_kind = pn.widgets.Select(
            label="Size", options={"fraction of equity": "weight", "lots": "lots"}
        )
        self.size_value = pn.widgets.FloatInput(label="value", value=0.95, width=100)
        self.use_stop = pn.widgets.Checkbox(label="Stop-loss %")
        self.stop = pn.widgets.FloatInput(value=2.0, width=90)
        self.use_target = pn.widgets.Checkbox(label="Target %")
        self.target = pn.widgets.FloatInput(value=4.0, width=90)
        self.groups = {name: _Group(Group()) for name in SECTIONS}
        self.path = pn.widgets.TextInput(label="File", placeholder="strategies/<name>.py")
        self.overwrite = pn.widgets.Checkbox(label="overwrite a hand-written file")
        self.choices = pn.widgets.Select(label="Builder files", options=[])
        self.buttons = {
            text: pn.widgets.Button(
                label=text, color="primary" if text == "Save" else "default"
            )  # fmt: skip
            for text in ("Preview code", "Save", "Load", "Backtest")
        }
        for text, action in zip(self.buttons, (self.preview, self.save, self.load,
                                               self.backtest), strict=True):  # fmt: skip
            self.buttons[text].on_click(lambda _, act=action: self._safely(act))
        self.status = pn.pane.HTML("")
        self.code = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.results = pn.pane.HTML("", sizing_mode="stretch_width")
        self._view = pn.Column(
            self.name_input, self.description, self.instruments,
            pn.Row(self.timeframe, self.product), pn.Row(self.size_kind, self.size_value),
            pn.Row(self.use_stop, self.stop, self.use_target, self.target),
            pn.Accordion(*((_TITLES[n], g.view) for n, g in self.groups.items()), active=[0]),
            pn.Row(self.path, self.overwrite), self.choices, pn.Row(*self.buttons.values()),
            self.status, self.code, self.results,
        )  # fmt: skip
        self.load_model(model or StrategyModel())
        self.refresh_choices()

    def __panel__(self) -> pn.Column:
        return self._view

    def _say(self, message: str, *, error: bool = False) -> None:
        color = "#b00020" if error else "#1b5e20"
        self.status.object = f"<span style='color:{color}'>{html.escape(message)}</span>"

    def preview(self) -> str:
        """Show and return the generated source."""
        source = to_source(self.model)
        self.code.object = f"```python\n{source}\n```"
        self._say(f"{self.model.name}: {len(source.splitlines())} lines generated")
        return source

    def save(self) -> Path:
        """Write the strategy file and return its path (see ``StrategyForm.save``)."""
        path = self.path.value.strip() or None
        target = save(self.model, path, directory=self.directory, overwrite=self.overwrite.value)
        self.path.value = str(target)
        self.refresh_choices()
        self._say(f"saved {target}")
        return target

    def refresh_choices(self) -> list[str]:
        """Return (and list in the Load menu) the builder files in ``directory``."""
        files = actions.builder_files(self.directory)
        self.choices.options = files
        return files

    def load(self, path: str | Path | None = None) -> StrategyModel:
        """Load a builder file (``path``, else the Load menu's, else the File box's)."""
        chosen = path or self.choices.value or self.path.value.strip()
        if not chosen:
            raise VeloxError("choose a builder file to load (none in the File box or the menu)")
        model = load(chosen)
        self.load_model(model)
        self.path.value = str(chosen)
        self._say(f"loaded {model.name} from {chosen}")
        return model

    def backtest(self) -> RunResult:
        """Replay the strategy on :attr:`bars`, the bundled data or the store; show its stats."""
        model = self.model
        result = actions.backtest(model, self.bars)
        self.results.object = result._repr_html_()
        self._say(actions.summary(model, result))
        return result


def app(
    model: StrategyModel | None = None,
    *,
    directory: str | Path = "strategies",
    widgets: Literal["auto", "ipywidgets", "panel"] = "auto",
) -> pn.Column:
    """Return the builder page: a title, a short guide and the form.

    ``widgets="ipywidgets"`` embeds :class:`velox.builder.StrategyForm` (needs
    ``ipywidgets_bokeh`` when served), ``"panel"`` the native :class:`PanelForm`; ``"auto"``
    the former when ``ipywidgets_bokeh`` is installed. ``page.form`` is the form.

    Examples
    --------
    >>> from velox.builder.panel_app import app
    >>> app().servable()                    # doctest: +SKIP
    """
    if widgets == "auto":
        widgets = "ipywidgets" if importlib.util.find_spec("ipywidgets_bokeh") else "panel"
    if widgets == "ipywidgets":
        from velox.builder.form import StrategyForm

        form: StrategyForm | PanelForm = StrategyForm(model, directory=directory)
        body = pn.panel(form.widget)
    elif widgets == "panel":
        form = PanelForm(model, directory=directory)
        body = form
    else:
        raise ValueError(f"widgets={widgets!r}: use 'auto', 'ipywidgets' or 'panel'")
    guide = pn.pane.Markdown(
        "Compose entry and exit rules, then **Preview code**, **Save** to "
        f"`{Path(directory)}/`, **Load** a builder file back, or **Backtest** it with "
        "`velox.replay` on the bundled data. See `docs/builder.md`.",
        sizing_mode="stretch_width",
    )
    page = pn.Column(pn.pane.Markdown("# Velox strategy builder"), guide, body,
                     sizing_mode="stretch_width")  # fmt: skip
    page.form = form  # the form behind the page, for callers and tests
    return page


def serve(port: int = 5007, *, show: bool = False, **kwargs: object) -> object:
    """Serve :func:`app` on ``port`` (a fresh form per browser session) and return the server;
    ``kwargs`` go to :func:`panel.serve` (``threaded=True`` returns at once)."""
    return pn.serve({"builder": lambda: app()}, port=port, show=show, **kwargs)


if __name__.startswith("bokeh"):  # `panel serve velox/builder/panel_app.py`
    app().servable(title="Velox strategy builder")
elif __name__ == "__main__":
    serve(show=True)
