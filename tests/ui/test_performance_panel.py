"""The console's Performance tab shows velox.analytics of a recorded run, and stays off the
console's tick path.

The expected side is pandas on the store's raw ``run_equity`` rows of a real recorded replay
(no velox.analytics function), compared with what the panel displays: the summary's text, the
stats and daily-returns tables, and the rendered drawdown figure's data.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import panel as pn
import pytest

from velox.calendar import IST_NAME
from velox.ui import Desk, PerformancePanel, TradingConsole
from velox.ui import performance as perf_module

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("pg_server", ["embedded"],
                                                            indirect=True)]  # fmt: skip


@pytest.fixture(autouse=True)
def _reader_closed(store):
    """The process's live reader of this test's store stops with the test (its database goes)."""
    from velox.ui.live import LiveRuns

    yield
    LiveRuns.shared(store).close()


def recorded_replay(store) -> str:
    """A real replay of the bundled RELIANCE 5-minute bars (12 sessions), recorded."""
    from velox.data import read_bar_file, validate_bars
    from velox.modes import default_instruments, replay
    from velox.strategy import load_strategy

    bars, _ = validate_bars(read_bar_file("data/bars/RELIANCE_5m_2025.csv"), timeframe="5m")
    days = sorted(set(bars.index.tz_convert(IST_NAME).date))[:12]
    bars = bars[bars.index.tz_convert(IST_NAME).date <= days[-1]]
    strategy = load_strategy("strategies/sma_cross.py")(fast=3, slow=8)
    strategy.timeframe = "5m"
    result = replay(strategy, bars={("NSE:RELIANCE", "5m"): bars}, store=store, record=True,
                    instruments=default_instruments())  # fmt: skip
    return result.run_id


def percent(text: str) -> float:
    """ "-12.34 %" → -12.34 (what the panel displays, as a number)."""
    match = re.fullmatch(r"([+-]?\d+\.\d\d) %", text.strip())
    assert match, text
    return float(match.group(1))


def span(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, (element_id, html)
    return match.group(1)


def test_panel_shows_the_analytics_of_a_recorded_run(store) -> None:
    from bokeh.document import Document
    from bokeh.models import GlyphRenderer, Patch

    run_id = recorded_replay(store)
    panel = PerformancePanel(Desk.notebook(store), run_id=run_id, autostart=False)
    panel.update()  # not on a server: computed in this thread
    assert panel.computations == 1 and panel.message.object == ""

    # pandas on the raw rows: each IST day's last sample, the first day against the cash
    raw = store.run_equity(run_id)["equity"]
    initial = float(store.run(run_id)["initial_cash"])
    daily = raw.groupby(raw.index.tz_convert(IST_NAME).date).last()
    previous = daily.shift(1)
    previous.iloc[0] = initial
    rets = daily / previous - 1
    total = daily.iloc[-1] / initial - 1
    path = pd.concat([pd.Series([initial]), daily.reset_index(drop=True)])
    max_dd = float((1 - path / path.cummax()).max())
    assert total != 0 and max_dd > 0

    summary = panel.summary.object
    shown_total = percent(span(summary, "velox-perf-total-return"))
    assert shown_total == pytest.approx(100 * total, abs=0.005)
    assert percent(span(summary, "velox-perf-max-drawdown")) == pytest.approx(
        100 * max_dd, abs=0.005
    )
    shown = dict(zip(panel.stats_table.value["figure"], panel.stats_table.value["value"],
                     strict=True))  # fmt: skip
    assert percent(shown["total return"]) == pytest.approx(100 * total, abs=0.005)
    assert percent(shown["max drawdown"]) == pytest.approx(100 * max_dd, abs=0.005)
    final = shown["final equity"].replace("₹", "").replace(",", "")
    assert float(final) == pytest.approx(daily.iloc[-1], abs=0.005)

    # the daily returns table: the last sessions, newest first
    table = panel.daily_table.value
    newest = rets.iloc[::-1].iloc[: len(table)]
    assert len(table) == min(perf_module.DAILY_ROWS, len(rets))
    assert table["date"].tolist() == [d.isoformat() for d in newest.index]
    assert [percent(t) for t in table["return"]] == pytest.approx(list(100 * newest), abs=0.005)

    # the drawdown figure drawn (velox.analytics' own plot): the growth of 1 rupee under its
    # running peak, in percent, one point per session
    grown = daily / initial
    dd = 100 * (grown / grown.cummax() - 1)
    figure = panel.figures["drawdown"].object
    (patch,) = [r for r in figure.select(GlyphRenderer) if isinstance(r.glyph, Patch)]
    y = list(patch.data_source.data["y"])  # an area: its baseline, then the curve backwards
    assert y[len(dd) :][::-1] == pytest.approx(list(dd)) and set(y[: len(dd)]) == {0.0}
    assert min(y) == pytest.approx(dd.min())
    assert panel.drawdown_table.value["depth"].map(percent).iloc[0] == pytest.approx(
        dd.min(), abs=0.005
    )
    assert set(panel.figures) == {"growth", "drawdown", "monthly"}
    assert all(pane.object is not None for pane in panel.figures.values())

    # it renders on a page, and nothing on it acts
    doc = Document()
    doc.add_root(pn.panel(panel).get_root(doc))
    sources = [m.source.data for m in doc.models
               if type(m).__name__ == "DataTabulator" and "figure" in m.source.data]  # fmt: skip
    assert len(sources) == 1 and "max drawdown" in list(sources[0]["figure"])
    layout = panel.layout()
    assert layout.select(pn.widgets.Button) == [] and layout.select(pn.widgets.Select) == []
    assert all(t.disabled for t in layout.select(pn.widgets.Tabulator))

    panel.update()  # a finished run does not change: computed once
    assert panel.computations == 1


def test_console_computes_performance_only_on_its_tab_and_when_the_run_changed(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.store import RunRecorder
    from velox.types import Tick

    run_id = store.create_run(mode="paper", account="PF", initial_cash=1_000.0, run_id="PF1")
    recorder = RunRecorder(store, run_id, flush_interval=3600)  # flushed by hand below
    t0 = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)

    def session(day: int, equity: float) -> None:
        ts = t0 + timedelta(days=day)
        recorder.quote(Tick("NSE:RELIANCE", ts, 1400.0 + day, 100 + day), int(ts.timestamp() * 1e9))
        recorder.equity(int(ts.timestamp() * 1e9), equity)
        recorder.flush()

    try:
        for day, equity in enumerate([1_000.0, 1_050.0, 1_020.0]):
            session(day, equity)
        console = TradingConsole(Desk.notebook(store))
        assert console.run_id == run_id  # the running paper run is chosen
        perf = console.performance
        assert perf not in console.parts  # not redrawn on a snapshot
        live = console.desk.live
        for _ in range(20):  # the tick path while the Chart tab shows: nothing computed
            live.refresh(run_id, wait=True)
            console.update()
            perf.update()
        assert perf.computations == 0 and perf.shown_figures is None

        console.views.active = 1  # the trader opens the Performance tab
        assert perf.computations == 1
        assert percent(span(perf.summary.object, "velox-perf-total-return")) == 2.0

        session(3, 1_100.0)  # a new session's equity and quote
        live.refresh(run_id, wait=True)
        perf.update()
        assert perf.computations == 1  # changed, but computed less than REFRESH_S ago
        monkeypatch.setattr(perf_module, "REFRESH_S", 0.0)
        perf.update()
        assert perf.computations == 2
        assert percent(span(perf.summary.object, "velox-perf-total-return")) == 10.0
        perf.update()
        assert perf.computations == 2  # nothing changed since

        console.views.active = 0  # back on the chart: hidden, no more work
        session(4, 900.0)
        live.refresh(run_id, wait=True)
        console.update()
        perf.update()
        assert perf.computations == 2
    finally:
        recorder.close()
