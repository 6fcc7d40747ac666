"""The console's Performance tab: :mod:`velox.analytics` of the run shown, read-only.

``PerformancePanel(run_id="R3")`` works alone in a notebook cell like every component; in the
:class:`~velox.ui.console.TradingConsole` it is the "Performance" tab beside the chart. It shows
``Performance.of_run(store, run_id)``: the standard stats table, the last sessions' daily
returns, the deepest drawdowns, and the growth, drawdown and monthly-returns figures that
``Performance.plots()`` makes (the investor report's).

It is kept off the console's tick path: the console never calls it on a snapshot. Its own slow
timer (:data:`POLL_MS`) recomputes only while it is shown, when the run's rows changed since
the last computation (the live reader's frames are new objects only then, so a finished run is
computed once), and at most every :data:`REFRESH_S` seconds. On the web server the store reads,
the figures and their Bokeh rendering run on one worker thread shared by every session
(:data:`_WORKER`), and only the finished figures are handed to the session's event loop, so the
loop that carries every console's ticks never waits for them.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from velox.ui.base import LiveView, money, table

if TYPE_CHECKING:
    from velox.store import Store

log = logging.getLogger(__name__)

#: Seconds between two computations of a run whose rows keep changing (a paper or live run).
REFRESH_S = 5.0
#: Milliseconds between the panel's checks (store-free: the live reader's latest snapshot).
POLL_MS = 1000
#: Sessions shown in the daily-returns table (newest first).
DAILY_ROWS = 10
#: The figures of ``Performance.plots()`` the panel shows.
FIGURES = ("growth", "drawdown", "monthly")

#: The stats table: key of ``Performance.stats()``, label, format.
STATS_ROWS = (
    ("total_return", "total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("max_drawdown", "max drawdown", "pct"),
    ("sharpe", "Sharpe", "ratio"),
    ("sortino", "Sortino", "ratio"),
    ("calmar", "Calmar", "ratio"),
    ("trades", "closed trades", "int"),
    ("open_trades", "open trades", "int"),
    ("win_rate", "win rate", "pct"),
    ("profit_factor", "profit factor", "ratio"),
    ("avg_trade", "average trade", "money"),
    ("exposure", "exposure", "pct"),
    ("turnover", "turnover (× a year)", "ratio"),
    ("charges", "charges", "money"),
    ("initial_cash", "initial cash", "money"),
    ("final_equity", "final equity", "money"),
)

#: One worker for every session's computations: the figures' rendering is CPU-bound (holding
#: the GIL either way), and holoviews' renderer is not meant for concurrent use.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="velox-ui-performance")


def shown(value: float, kind: str) -> str:
    """``value`` as the panel shows it: ``pct`` "12.34 %", ``ratio`` "1.23", ``int``, ``money``
    (Indian grouping); "–" for NaN, "∞" for an infinite ratio."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if kind == "pct":
        return f"{100 * value:.2f} %".replace("-0.00", "0.00")
    if kind == "int":
        return f"{int(value):d}"
    if kind == "money":
        return money(float(value))
    return f"{value:.2f}"


@dataclass
class PerformanceFigures:
    """What the panel shows of one run, computed from the store (one :meth:`compute`)."""

    run_id: str
    stats: dict[str, float | int]
    #: figure, value (text) per :data:`STATS_ROWS` row.
    table: pd.DataFrame
    #: date, equity, return of the last :data:`DAILY_ROWS` sessions, newest first (text).
    daily: pd.DataFrame
    #: peak, trough, recovery, depth, days of the deepest three drawdowns (text).
    drawdowns: pd.DataFrame
    #: ``Performance.plots()`` entries named in :data:`FIGURES` (holoviews elements).
    plots: dict[str, Any] = field(repr=False)

    @classmethod
    def compute(cls, store: Store, run_id: str) -> PerformanceFigures | None:
        """``Performance.of_run(store, run_id)`` as the panel shows it (None: no equity yet)."""
        from velox.analytics import Performance

        perf = Performance.of_run(store, run_id)
        if perf.returns.empty:
            return None
        stats = perf.stats()
        rows = [(label, shown(stats.get(key, math.nan), kind)) for key, label, kind in STATS_ROWS]
        recent = perf.returns.iloc[::-1].iloc[:DAILY_ROWS]
        daily = pd.DataFrame({
            "date": recent.index.strftime("%Y-%m-%d"),
            "equity": [money(v) for v in perf.equity.reindex(recent.index)],
            "return": [f"{100 * r:+.2f} %".replace("-0.00", "+0.00") for r in recent],
        })  # fmt: skip
        periods = perf.drawdown_periods(top=3)

        def day(ts: Any) -> str:
            return "not yet" if pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")

        drawdowns = pd.DataFrame({
            "peak": [day(t) for t in periods["peak"]],
            "trough": [day(t) for t in periods["trough"]],
            "recovery": [day(t) for t in periods["recovery"]],
            "depth": [f"{100 * d:.2f} %" for d in periods["depth"]],
            "days": [int(d) for d in periods["days"]],
        })  # fmt: skip
        plots = perf.plots()
        return cls(run_id, stats, pd.DataFrame(rows, columns=["figure", "value"]), daily,
                   drawdowns, {name: plots[name] for name in FIGURES})  # fmt: skip

    def render(self) -> dict[str, Any]:
        """The figures as Bokeh figures (new ones each call: a figure belongs to one page)."""
        import holoviews as hv

        return {name: hv.render(plot, backend="bokeh") for name, plot in self.plots.items()}


def _compute(store: Store, run_id: str) -> tuple[PerformanceFigures | None, dict[str, Any]]:
    figures = PerformanceFigures.compute(store, run_id)
    return figures, ({} if figures is None else figures.render())


class PerformancePanel(LiveView):
    """The run's performance from :mod:`velox.analytics`: stats, daily returns, drawdowns and
    the growth, drawdown and monthly-returns figures. No control: nothing here acts."""

    period_ms = POLL_MS

    shown = param.Boolean(default=True, doc="Whether the panel is on screen (the console "
                          "sets it from its tabs); hidden, it computes nothing.")  # fmt: skip

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.summary = pn.pane.HTML("", name="performance-summary", margin=(0, 10))
        self.stats_table = table(pd.DataFrame(columns=["figure", "value"]), width=260,
                                 sizing_mode="fixed", name="performance-stats")  # fmt: skip
        self.daily_table = table(pd.DataFrame(columns=["date", "equity", "return"]),
                                 name="daily-returns")  # fmt: skip
        self.drawdown_table = table(
            pd.DataFrame(columns=["peak", "trough", "recovery", "depth", "days"]),
            name="drawdowns",
        )
        self.figures = {name: pn.pane.Bokeh(None, sizing_mode="stretch_width", name=name)
                        for name in FIGURES}  # fmt: skip
        self.shown_figures: PerformanceFigures | None = None
        self.computations = 0  # computations started (tests and benchmarks count them)
        self._basis: tuple[Any, ...] | None = None  # the snapshot rows last computed from
        self._computed_at = -math.inf
        self._busy = False
        super().__init__(desk, **params)

    @param.depends("shown", watch=True)
    def _shown_changed(self) -> None:
        if self.shown:
            self.update()

    # -- when to compute --------------------------------------------------------------------

    def update(self) -> None:
        """Compute again if shown, the run's rows changed and :data:`REFRESH_S` passed (cheap
        otherwise: one look at the live reader's latest snapshot, no store read)."""
        if self.run_id is None:
            if self._basis is not None or self._seen[1] == -1:
                self._seen = (None, 0)
                self.clear()
            return
        if self._seen[0] != self.run_id:  # another run chosen: its figures are not the last's
            self._seen = (self.run_id, 0)
            self._basis = None
            self._computed_at = -math.inf
            self.shown_figures = None
            self._empty(f"Performance of run {self.run_id}: computing…")
        if not self.shown or self._busy:
            return
        snap = self.snapshot()
        if snap is None:
            return
        # the live reader hands over the same frame objects while a table is unchanged
        basis = (snap.run_id, snap.run.get("status"), snap.quotes, snap.positions, snap.fills)
        last = self._basis
        if (
            last is not None
            and basis[:2] == last[:2]
            and all(a is b for a, b in zip(basis[2:], last[2:], strict=True))
        ):
            return  # nothing of the run changed since the figures shown were computed
        same_run = last is not None and last[0] == snap.run_id
        if same_run and time.monotonic() - self._computed_at < REFRESH_S:
            return
        self._basis = basis
        self.refresh()

    def refresh(self, *, wait: bool = False) -> None:
        """Compute the run's figures now: on the worker thread when served (the result is
        applied on the session's event loop), in the caller's thread in a notebook or with
        ``wait=True``."""
        run_id = self.run_id
        if run_id is None:
            return
        self._computed_at = time.monotonic()
        self.computations += 1
        doc = pn.state.curdoc
        context = getattr(doc, "session_context", None) if doc is not None else None
        if wait or context is None:
            try:
                result = _compute(self.desk.store, run_id)
            except Exception as exc:  # noqa: BLE001 - shown, not raised into the page
                self._fail(run_id, exc)
            else:
                self._show(run_id, *result)
            return
        self._busy = True  # set and cleared on the session's event loop

        def done(future: Any) -> None:
            def apply() -> None:
                self._busy = False
                exc = future.exception()
                if exc is not None:
                    self._fail(run_id, exc)
                else:
                    self._show(run_id, *future.result())

            if not context.destroyed:
                doc.add_next_tick_callback(apply)

        _WORKER.submit(_compute, self.desk.store, run_id).add_done_callback(done)

    # -- what is shown ----------------------------------------------------------------------

    def _fail(self, run_id: str, exc: BaseException) -> None:
        log.warning("performance of run %s: %s", run_id, exc)
        self._basis = None  # try again on a later check
        if run_id == self.run_id:
            self.message.object = f"**Error:** performance of run {run_id}: {exc}"

    def _show(self, run_id: str, figures: PerformanceFigures | None, bokeh: dict[str, Any]) -> None:
        if run_id != self.run_id:
            return  # the run changed meanwhile; its own computation follows
        self.message.object = ""
        self.shown_figures = figures
        if figures is None:
            self._empty(f"No equity recorded for run {run_id} yet.")
            return
        stats = figures.stats
        colour = "#16a34a" if stats["total_return"] >= 0 else "#dc2626"
        self.summary.object = (
            f"<b>{run_id}</b> · total return "
            f'<span id="velox-perf-total-return" style="color:{colour}">'
            f"{shown(stats['total_return'], 'pct')}</span> · max drawdown "
            f'<span id="velox-perf-max-drawdown">{shown(stats["max_drawdown"], "pct")}</span>'
            f' · Sharpe <span id="velox-perf-sharpe">{shown(stats["sharpe"], "ratio")}</span>'
            f" · {shown(stats['trades'], 'int')} closed trades"
        )
        self.stats_table.value = figures.table
        self.daily_table.value = figures.daily
        self.drawdown_table.value = figures.drawdowns
        for name, pane in self.figures.items():
            pane.object = bokeh.get(name)

    def _empty(self, text: str) -> None:
        self.summary.object = text
        self.stats_table.value = pd.DataFrame(columns=["figure", "value"])
        self.daily_table.value = pd.DataFrame(columns=["date", "equity", "return"])
        self.drawdown_table.value = pd.DataFrame(columns=["peak", "trough", "recovery",
                                                          "depth", "days"])  # fmt: skip
        for pane in self.figures.values():
            pane.object = None

    def clear(self) -> None:
        self._basis = None
        self._computed_at = -math.inf
        self.shown_figures = None
        self._empty("No run chosen.")

    def layout(self) -> Any:
        return pn.Column(
            "### Performance", self.message, self.summary,
            pn.Row(self.stats_table,
                   pn.Column("**Daily returns**", self.daily_table,
                             "**Deepest drawdowns**", self.drawdown_table,
                             sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            *self.figures.values(),
            sizing_mode="stretch_width",
        )  # fmt: skip
