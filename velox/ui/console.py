"""The trader console: every component on one run, driven by one timer.

``TradingConsole(desk)`` is what ``/trading`` serves (with :meth:`velox.ui.desk.Desk.web`) and
what a notebook shows with ``velox.ui.console()``; ``dashboards/trading.py`` serves it alone.
The chart shares its place with the run's Performance tab (:mod:`velox.ui.performance`), which
is not one of the parts redrawn on each snapshot: it checks on its own slow timer, and only
while its tab is shown.
"""

from __future__ import annotations

import threading
from typing import Any

import panel as pn
import param

from velox.ui.base import PERIOD_MS, LiveView, when_on_screen
from velox.ui.chart import CandleChart
from velox.ui.controls import ModeSwitch, OrderTicket, RiskPanel
from velox.ui.desk import Desk
from velox.ui.performance import POLL_MS, PerformancePanel
from velox.ui.tables import Blotter, PositionsTable
from velox.ui.watchlist import Watchlist

#: Milliseconds between re-reads of the run list (a run started or ended shows within it).
RUNS_MS = 2000


class TradingConsole(pn.viewable.Viewer):
    """Watchlist, chart (or the Performance tab), positions, blotter, risk, order ticket and
    mode switch of one run."""

    run_id = param.String(default=None, allow_None=True)

    def __init__(self, desk: Desk | None = None, *, header: Any = None, **params: Any) -> None:
        self.desk = desk if desk is not None else Desk.notebook()
        super().__init__(**params)
        self.header = header
        self.runs = pn.widgets.Select(name="run", options=[], width=200)
        self.notice = pn.pane.Markdown("", margin=(0, 10))
        make = {"desk": self.desk, "autostart": False}
        self.mode = ModeSwitch(**make)
        self.watchlist = Watchlist(**make)
        self.chart = CandleChart(**make)
        self.positions = PositionsTable(**make)
        self.blotter = Blotter(**make)
        self.risk = RiskPanel(**make)
        self.ticket = OrderTicket(**make)
        self.parts: list[LiveView] = [self.mode, self.watchlist, self.chart, self.positions,
                                      self.blotter, self.risk, self.ticket]  # fmt: skip
        # not a part: never redrawn on a snapshot (the tick path), computed while its tab shows
        self.performance = PerformancePanel(shown=False, **make)
        # dynamic: the Performance tab is sent to the browser when first shown
        self.views = pn.Tabs(("Chart", self.chart), ("Performance", self.performance),
                             dynamic=True, sizing_mode="stretch_width")  # fmt: skip
        self.views.param.watch(self._view_changed, "active")
        self.watchlist.param.watch(self._chart_instrument, "selected")
        self.runs.param.watch(lambda e: setattr(self, "run_id", e.new), "value")
        self._callbacks: list[Any] = []
        self.refresh_runs()

    def _chart_instrument(self, event: Any) -> None:
        if event.new:
            self.chart.instrument_id = event.new
            self.ticket.instrument.value = (
                event.new if event.new in self.ticket.instrument.options
                else self.ticket.instrument.value
            )  # fmt: skip

    def _view_changed(self, event: Any) -> None:
        self.performance.shown = event.new == 1

    @param.depends("run_id", watch=True)
    def _run_changed(self) -> None:
        self.chart.instrument_id = None
        self.watchlist.selected = None
        for part in self.parts:
            part.run_id = self.run_id
        self.performance.run_id = self.run_id

    def refresh_runs(self) -> None:
        """Re-read the runs the user may see (the session is checked here on the web)."""
        from velox.auth import PermissionDenied

        try:
            running = self.desk.running()
        except PermissionDenied:
            self.notice.object = "**Your session ended.** [Log in again](/login)"
            for callback in self._callbacks:
                callback.stop()
            return
        ids = [str(r["run_id"]) for r in running]
        if self.runs.options != ids:
            self.runs.options = ids
        if ids and self.runs.value not in ids:
            self.runs.value = ids[0]
        if not ids:
            self.runs.value = None
            self.notice.object = ("No paper or live run is running. Start one, e.g. "
                                  "`velox paper strategies/sma_cross.py --speed 60`.")  # fmt: skip
        elif self.notice.object.startswith("No paper"):
            self.notice.object = ""

    def update(self) -> None:
        """Redraw what changed (each part compares the run's snapshot version)."""
        for part in self.parts:
            part.update()

    def _listen(self) -> None:
        """On the web server, redraw as soon as the live reader has a new snapshot of the
        run shown: the reader's thread schedules :meth:`update` on this session's event
        loop (``add_next_tick_callback``, the one thread-safe Bokeh document call), at most
        one pending at a time. The timer stays as a floor."""
        doc = pn.state.curdoc
        context = getattr(doc, "session_context", None)
        if doc is None or context is None:
            return  # a notebook: the timer alone
        pending = threading.Event()
        redraw = when_on_screen(self.update)

        def run() -> None:
            pending.clear()
            redraw()

        def on_snapshot(run_id: str) -> bool:
            if context.destroyed:
                return False
            if run_id == self.run_id and not pending.is_set():
                pending.set()
                doc.add_next_tick_callback(run)
            return True

        self.desk.live.subscribe(on_snapshot)

    def __panel__(self) -> Any:
        if not self._callbacks:
            self.update()
            self._callbacks = [
                pn.state.add_periodic_callback(when_on_screen(self.update), period=PERIOD_MS),
                pn.state.add_periodic_callback(when_on_screen(self.refresh_runs), period=RUNS_MS),
                pn.state.add_periodic_callback(
                    when_on_screen(self.performance.update), period=POLL_MS
                ),
            ]
            self._listen()
        top = pn.Row(self.runs, self.mode, sizing_mode="stretch_width")
        body = pn.Row(
            pn.Column(self.views, self.positions, self.blotter, sizing_mode="stretch_width"),
            pn.Column(self.watchlist, self.risk, width=560),
            sizing_mode="stretch_width",
        )
        return pn.Column(
            *([self.header] if self.header is not None else []),
            top, self.notice, self.ticket, body, sizing_mode="stretch_width",
        )  # fmt: skip


def console(run_id: str | None = None, *, store: Any = None) -> TradingConsole:
    """The trader console in a notebook cell, on ``store`` (the default store if None)."""
    view = TradingConsole(Desk.notebook(store))
    if run_id is not None:
        view.runs.value = run_id
    return view
