"""The watchlist's grid in Chromium: changed cells are rewritten, the others are left alone
(the reason it exists: Tabulator rebuilt every row on each patch), a new row set replaces the
table, and a click on a row reaches Python as the row's key."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import panel as pn
import pytest

from velox.ui.base import on_screen
from velox.ui.grid import Grid
from velox.web.server import free_port

ROWS = [["NSE:A", "100.00", "+1.00%"], ["NSE:B", "200.00", "-2.00%"], ["NSE:C", "300.00", "+0.00%"]]


def text(rows: list[list[str]]) -> np.ndarray:
    return np.array(rows, dtype=object)


def test_show_sends_the_table_on_new_rows_and_changed_cells_otherwise() -> None:
    grid = Grid(columns=["instrument", "ltp", "chg"])
    assert grid.show(text(ROWS))
    assert grid.rows == ROWS
    changed = [row[:] for row in ROWS]
    changed[1][1], changed[2][2] = "201.50", "-0.10%"
    assert not grid.show(text(changed))
    sent = json.loads(grid.patch)
    assert sent["cells"] == [[1, 1, "201.50"], [2, 2, "-0.10%"]]
    assert not grid.show(text(changed))  # nothing changed: nothing sent
    assert json.loads(grid.patch) == sent
    assert grid.show(text(changed[::-1]))  # another order of keys: the whole table
    assert grid.rows == changed[::-1]


@pytest.fixture
def served_grid():
    """A Grid alone on a Panel server in a thread; yields (url, grid, call-on-the-loop)."""
    holder: dict[str, Grid] = {}

    def app():
        grid = Grid(columns=["instrument", "ltp", "chg"], align=["left", "right", "right"],
                    sign_column=2, tick_column=1, height=200)  # fmt: skip
        grid.show(text(ROWS))
        holder["grid"] = grid
        holder["ticks"] = 0

        def tick() -> None:  # what the console's timer does: work only with a browser on it
            if on_screen():
                holder["ticks"] += 1

        pn.state.add_periodic_callback(tick, period=50)
        return pn.Column(grid)

    port = free_port()
    started = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:  # a loop of its own: Playwright's runs on the test's thread
        import asyncio

        asyncio.set_event_loop(asyncio.new_event_loop())
        server = box["server"] = pn.serve({"grid": app}, port=port, show=False, start=False)
        server.start()
        started.set()
        server.io_loop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)
    server = box["server"]

    def on_loop(fn):
        done = threading.Event()
        server.io_loop.add_callback(lambda: (fn(), done.set()))
        assert done.wait(10)

    yield f"http://localhost:{port}/grid", holder, on_loop
    server.io_loop.add_callback(server.io_loop.stop)
    thread.join(10)
    server.stop()


def test_the_browser_rewrites_only_changed_cells_and_reports_clicks(chromium, served_grid) -> None:
    url, holder, on_loop = served_grid
    page = chromium.new_page()
    page.goto(url)
    table = page.locator("table.velox-grid")
    table.locator("tbody tr", has_text="NSE:C").wait_for(timeout=30_000)
    assert table.locator("thead th").all_inner_texts() == ["instrument", "ltp", "chg"]
    # mark every cell element; a rewritten cell keeps its element, a rebuilt table would not
    page.evaluate("""() => {
        const cells = (root) => [...root.querySelectorAll('*')].flatMap(e => [
            ...(e.matches('table.velox-grid td') ? [e] : []),
            ...(e.shadowRoot ? cells(e.shadowRoot) : [])]);
        window.__cells = cells(document);
        window.__texts = [];
        for (const td of window.__cells) {
          new MutationObserver(() => window.__texts.push(td.textContent))
            .observe(td, {childList: true, characterData: true, subtree: true});
        } }""")
    assert page.evaluate("window.__cells.length") == 9
    changed = [row[:] for row in ROWS]
    changed[1][1], changed[0][2] = "199.00", "-1.50%"
    on_loop(lambda: holder["grid"].show(text(changed)))

    def cells() -> list[list[str]]:
        return [r.locator("td").all_inner_texts() for r in table.locator("tbody tr").all()]

    deadline = time.monotonic() + 15
    while cells() != changed:
        assert time.monotonic() < deadline, cells()
        time.sleep(0.1)
    assert sorted(page.evaluate("window.__texts")) == ["-1.50%", "199.00"]  # just those two
    assert page.evaluate("window.__cells.every(td => td.isConnected)")  # no row rebuilt
    assert table.locator("td.down").all_inner_texts() == ["199.00"]  # the LTP fell
    assert table.locator("td.neg").all_inner_texts() == ["-1.50%", "-2.00%"]

    table.locator("tbody tr", has_text="NSE:B").click()
    deadline = time.monotonic() + 10
    while holder["grid"].selected != "NSE:B":
        assert time.monotonic() < deadline, holder["grid"].selected
        time.sleep(0.1)
    assert table.locator("tr.selected td").first.inner_text() == "NSE:B"


def test_a_session_whose_browser_left_stops_working(chromium, served_grid) -> None:
    """Bokeh keeps a closed session for its unused lifetime; its timers must not keep
    building updates for nobody (with consoles opened and closed, most of a server's CPU)."""
    url, holder, _ = served_grid
    page = chromium.new_page()
    page.goto(url)
    page.locator("table.velox-grid tbody tr").first.wait_for(timeout=30_000)
    time.sleep(0.5)
    assert holder["ticks"] > 3  # connected: the timer works
    page.close()
    time.sleep(0.5)  # the websocket's close reaches the server
    before = holder["ticks"]
    time.sleep(1.0)
    assert holder["ticks"] == before
