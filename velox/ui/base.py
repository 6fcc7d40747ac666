"""What every live component shares: a desk, the run it shows, and a redraw on new data.

A component redraws only when the run's snapshot version changed (:mod:`velox.ui.live`), on its
own timer (:data:`PERIOD_MS`; 10 Hz), so the store is read once per batch per process however
many components and screens show the run. Inside a :class:`~velox.ui.console.TradingConsole`
the console drives every component from one timer; alone in a notebook cell a component
starts its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from velox.ui.desk import Desk

if TYPE_CHECKING:
    from velox.ui.live import RunSnapshot

#: Milliseconds between checks for a new snapshot (the screen's update rate at most: 10 Hz).
PERIOD_MS = 100

#: Where each component shows the outcome of an action or why it could not run.
MESSAGE_STYLE = {"font-size": "0.9em"}


def on_screen() -> bool:
    """False while the Bokeh server session being served has no browser connected: before
    its websocket opens and after it closes (the server keeps a closed session for its unused
    lifetime, 30 s, and its timers would otherwise keep building updates nobody receives —
    with consoles opened and closed, most of the server's CPU). True outside a server."""
    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None) if doc is not None else None
    session = getattr(context, "session", None)
    return session is None or session.connection_count > 0


def when_on_screen(work: Callable[[], object]) -> Callable[[], None]:
    """A timer callback that does ``work`` only while a browser is connected (:func:`on_screen`)."""

    def tick() -> None:
        if on_screen():
            work()

    return tick


class LiveView(pn.viewable.Viewer):
    """Base of the components: ``desk``, ``run_id`` and :meth:`apply` on each new snapshot."""

    run_id = param.String(default=None, allow_None=True, doc="The run shown (None: none).")

    #: Milliseconds between the component's timer calls of :meth:`update` once shown.
    period_ms = PERIOD_MS

    def __init__(self, desk: Desk | None = None, *, autostart: bool = True, **params: Any):
        self.desk = desk if desk is not None else Desk.notebook()
        super().__init__(**params)
        self._seen: tuple[str | None, int] = (None, -1)
        self._autostart = autostart
        self._callback: Any = None
        self.message = pn.pane.Markdown("", styles=MESSAGE_STYLE, margin=(0, 10))
        if self.run_id is None and autostart:
            running = self.desk.running()
            self.run_id = str(running[0]["run_id"]) if running else None

    @param.depends("run_id", watch=True)
    def _run_changed(self) -> None:
        self._seen = (None, -1)
        self.update()

    def snapshot(self) -> RunSnapshot | None:
        """The run's latest snapshot, or None when no run is chosen."""
        return None if self.run_id is None else self.desk.live.snapshot(self.run_id)

    def update(self) -> None:
        """Apply the run's snapshot if it changed since the last one applied."""
        snap = self.snapshot()
        if snap is None:
            if self._seen[0] is not None or self._seen[1] == -1:
                self._seen = (None, 0)
                self.clear()
            return
        if self._seen == (snap.run_id, snap.version):
            return
        self._seen = (snap.run_id, snap.version)
        self.apply(snap)

    def apply(self, snap: RunSnapshot) -> None:  # pragma: no cover - every component has one
        raise NotImplementedError

    def clear(self) -> None:
        """Show that no run is chosen."""

    def act(self, action: Any) -> Any:
        """Wrap a button's action: show the command sent, or the error, in :attr:`message`."""
        from velox.auth import PermissionDenied
        from velox.errors import VeloxError

        def run(*_: object) -> None:
            try:
                if self.run_id is None:
                    raise VeloxError("no running paper or live run is chosen")
                result = action()
            except (PermissionDenied, VeloxError) as exc:
                self.message.object = f"**Error:** {exc}"
                return
            if result is None:
                return
            targets = ", ".join(result.targets) or "no running engine"
            self.message.object = f"Command {result.id} **{result.verb}** sent to {targets}"
            self.update()

        return run

    def layout(self) -> Any:  # pragma: no cover - every component has one
        raise NotImplementedError

    def __panel__(self) -> Any:
        if self._autostart and self._callback is None:
            self.update()
            self._callback = pn.state.add_periodic_callback(when_on_screen(self.update),
                                                           period=self.period_ms)  # fmt: skip
        return self.layout()


def table(frame: Any, **options: Any) -> Any:
    """A read-only Tabulator as every component shows one (columns fitted to the width)."""
    import pandas as pd

    defaults = {"disabled": True, "show_index": False, "layout": "fit_columns",
                "sizing_mode": "stretch_width"}  # fmt: skip
    return pn.widgets.Tabulator(pd.DataFrame(frame), **{**defaults, **options})


def show(widget: Any, frame: Any, keys: tuple[str, ...]) -> bool:
    """Show ``frame`` in the Tabulator ``widget``: when the rows are the same (same ``keys``
    columns, in order) patch each changed column from its first changed row to its last, else
    replace the value. Returns True when the value was replaced.

    A patch sends only changed columns where a new value makes Panel rebuild, and Bokeh
    serialise, the whole table: with 100 symbols ticking, the difference is most of the
    server's work per session.
    """
    import numpy as np
    import pandas as pd

    current = widget.value
    same_rows = len(current) == len(frame) and list(current.columns) == list(frame.columns)
    same_rows = same_rows and all(
        np.array_equal(current[k].to_numpy(), frame[k].to_numpy()) for k in keys
    )
    if not same_rows:
        widget.value = frame.copy()  # a patch changes the value in place; frame may be shared
        return True
    patch: dict[str, list[tuple[slice, list[Any]]]] = {}
    for col in frame.columns:
        if col in keys:
            continue
        new, old = frame[col].to_numpy(), current[col].to_numpy()
        changed = np.flatnonzero(~((new == old) | (pd.isna(new) & pd.isna(old))))
        if len(changed):
            # one slice from the first changed row to the last: Panel writes each patch entry
            # into the widget's DataFrame with its own ``iloc`` assignment (≈ 0.3 ms each), so
            # a cell per entry cost 60 ms per update at 100 symbols; a slice costs one
            lo, hi = int(changed[0]), int(changed[-1]) + 1
            patch[col] = [(slice(lo, hi), [v.item() if hasattr(v, "item") else v
                                           for v in new[lo:hi]])]  # fmt: skip
    if patch:
        widget.patch(patch, as_index=False)
    return False


def grouped(value: float, decimals: int = 2) -> str:
    """``value`` with Indian digit grouping (12,34,567.89), as Indian terminals show prices
    and volumes; "–" for NaN."""
    if value != value:  # NaN
        return "–"
    sign = "-" if value < 0 else ""
    whole, _, frac = f"{abs(value):.{decimals}f}".partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        groups = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        whole = ",".join(groups) + "," + tail
    return f"{sign}{whole}" + (f".{frac}" if frac else "")


def money(value: float) -> str:
    """Rupees with Indian digit grouping (12,34,567.89) and a sign."""
    text = grouped(value)
    if text == "–":
        return text
    return f"-₹{text[1:]}" if text.startswith("-") else f"₹{text}"
