"""The web console in a real browser (Debian's chromium) against a real paper run.

The trader logs in with a TOTP code, watches the watchlist and the chart move with the run,
places and cancels a dry-run order from the ticket and presses the kill switch; an admin adds
a user; an investor finds no control at all and is refused the trading page. What the screen
shows is checked against the store (the engine's record), not against the page's own code.
Screenshots are kept under ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
from webtools import PASSWORD, rfc6238, screenshot

from tests.engine.conftest import DAY, paper_processes, reliance_in_store  # noqa: F401

pytestmark = pytest.mark.postgres


HOLDS_TEN = """
    from velox.strategy import Strategy

    class HoldsTen(Strategy):
        \"\"\"Buys 10 NSE:RELIANCE (CNC, so no square-off) on its second bar, then holds.\"\"\"

        instruments = ("NSE:RELIANCE",)
        timeframe = "5m"

        def on_start(self, ctx):
            self.n = 0

        def on_bar(self, ctx, bar):
            self.n += 1
            if self.n == 2:
                ctx.buy(10, product="CNC")
"""


def wait_for(check, what: str, timeout: float = 45.0, every: float = 0.25, page=None):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (with a
    screenshot of ``page`` kept as an artifact)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            if page is not None:
                screenshot(page, "failed-" + re.sub(r"\W+", "-", what))
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


def browser_login(browser, server, username: str, secret: str | None):
    """A new browser page logged in through the form; returns it on the landing page."""
    page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    if secret is not None:
        page.fill("input[name=totp]", rfc6238(secret, time.time()))
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def source_length(page, figure: str) -> int:
    """Rows of the first data source of the Bokeh figure named ``figure`` on the page."""
    return page.evaluate(
        """(name) => {
            for (const doc of Bokeh.documents) {
                const fig = doc.get_model_by_name(name);
                if (fig) { return fig.renderers[0].data_source.get_length() || 0; }
            }
            return -1;
        }""",
        figure,
    )


@pytest.fixture
def paper_run(store, reliance_in_store, paper_processes):  # noqa: F811
    """``velox paper`` (its own process, as in production): run UI1 of account ACC1 trading
    the bundled RELIANCE day at 150× (two hours of market a minute)."""
    engine = paper_processes.engine(
        paper_processes.strategy(HOLDS_TEN), "--run", "UI1", "--account", "ACC1",
        "--speed", "150", "--start", DAY, "--end", DAY,
    )  # fmt: skip

    def quoted() -> bool:
        assert engine.poll() is None, engine.stdout.read()
        return "UI1" in set(store.runs()["run_id"]) and not store.run_quotes("UI1").empty

    wait_for(quoted, "the run's first quote")
    yield engine
    engine.send_signal(signal.SIGINT)
    try:
        engine.wait(30)
    except subprocess.TimeoutExpired:
        engine.kill()


@pytest.fixture
def people(users):
    secrets = {
        "asha": users.add("asha", "trader", PASSWORD).totp_secret,
        "root": users.add("root", "admin", PASSWORD).totp_secret,
    }
    users.link("asha", accounts=["ACC1"])
    users.add("iris", "investor", PASSWORD, totp=False)
    users.link("iris", accounts=["ACC1"])
    return secrets


@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_trader_watches_places_cancels_and_kills(
    chromium, web_server, store, people, paper_run
) -> None:
    page = browser_login(chromium, web_server, "asha", people["asha"])
    assert page.url.endswith("/trading"), page.url
    mode = page.locator("#velox-mode")
    mode.wait_for(timeout=30_000)
    assert mode.get_attribute("data-mode") == "dry-run"
    assert "ACC1" in mode.inner_text()

    # The watchlist follows the run's quotes: its LTP is the store's, and it moves.
    watchlist = page.locator("table.velox-grid", has_text="change_pct")
    row = watchlist.locator("tbody tr", has_text="NSE:RELIANCE").first
    row.wait_for(timeout=30_000)

    def shown_ltp() -> float | None:
        cells = row.locator("td").all_inner_texts()
        numbers = [c for c in cells if re.fullmatch(r"[\d,]+\.\d\d", c.strip())]
        return float(numbers[0].replace(",", "")) if numbers else None

    first = wait_for(shown_ltp, "an LTP in the watchlist", page=page)
    moved = wait_for(lambda: (v := shown_ltp()) is not None and v != first and v, "a new LTP",
                     page=page)  # fmt: skip
    stored = set(store.run_quotes("UI1")["ltp"].round(2)) | set(
        store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)[["open", "high", "low", "close"]]
        .round(2).to_numpy().ravel()
    )  # fmt: skip
    assert moved in stored  # a price of the day's real bars, not a made-up one

    # The chart streams candles: the candle source grows as minutes pass.
    candles = wait_for(lambda: source_length(page, "candles") > 0 and
                       source_length(page, "candles"), "candles on the chart")  # fmt: skip
    wait_for(lambda: source_length(page, "candles") > candles, "a new candle streamed")
    screenshot(page, "trader-console")

    # A LIMIT buy far under the market, on the tick grid: it rests, then is cancelled.
    wait_for(lambda: (store.run_positions("UI1")["qty"] != 0).any(), "the strategy's buy")
    ltp = float(store.run_quotes("UI1")["ltp"].iloc[0])
    price = round(round(ltp * 0.97 / 0.05) * 0.05, 2)
    page.get_by_label("limit price").fill(f"{price:.2f}")
    page.get_by_label("limit price").press("Enter")
    page.get_by_role("button", name="Place order").click()
    resting = wait_for(lambda: _orders(store, "OPEN"), "the ticket order resting OPEN", page=page)
    client_id = resting[0]
    assert store.run_orders("UI1").set_index("client_id").loc[client_id, "qty"] == 1
    blotter_row = page.locator(".tabulator-row", has_text=client_id).first
    blotter_row.wait_for(timeout=15_000)
    blotter_row.click()
    page.get_by_role("button", name="Cancel selected order").click()
    wait_for(lambda: client_id in _orders(store, "CANCELLED"), "the order cancelled")
    page.locator(".tabulator-row", has_text="CANCELLED").first.wait_for(timeout=15_000)
    screenshot(page, "trader-cancelled")

    # Another resting order and the strategy's position; the kill switch ends both.
    page.get_by_role("button", name="Place order").click()
    wait_for(lambda: len(_orders(store, "OPEN")) == 1, "a second resting order")
    page.get_by_role("button", name="KILL SWITCH").click()
    page.locator('#velox-kill-state[data-state="engaged"]').wait_for(timeout=30_000)
    wait_for(lambda: not _orders(store, "OPEN"), "every open order cancelled")
    wait_for(lambda: (store.run_positions("UI1")["qty"] == 0).all(), "the book flat")
    wait_for(lambda: page.locator("#velox-open-positions").inner_text() == "0",
             "the screen showing no open position")  # fmt: skip
    screenshot(page, "trader-killed")

    # The Performance tab: velox.analytics of the run, computed on the server's worker thread
    page.get_by_text("Performance", exact=True).first.click()
    total = page.locator("#velox-perf-total-return")
    total.wait_for(timeout=30_000)
    assert re.fullmatch(r"-?\d+\.\d\d %", total.inner_text().strip()), total.inner_text()
    assert re.fullmatch(r"\d+\.\d\d %", page.locator("#velox-perf-max-drawdown").inner_text())
    screenshot(page, "trader-performance")
    issued = store.commands()
    assert set(issued["issued_by"]) == {"asha"}
    assert {"order", "cancel-order", "kill"} <= set(issued["verb"])


def _orders(store, status: str) -> list[str]:
    frame = store.run_orders("UI1")
    return frame.loc[(frame["status"] == status) & (frame["strategy"] == ""), "client_id"].tolist()


@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_admin_adds_a_user_and_the_investor_finds_no_control(
    chromium, web_server, store, users, people
) -> None:
    import requests

    admin = browser_login(chromium, web_server, "root", people["root"])
    admin.goto(web_server.url + "/admin")
    admin.get_by_label("username").first.fill("newbie")
    admin.get_by_label("password").first.fill("a long enough passphrase")
    admin.get_by_role("button", name="Add user").click()
    admin.get_by_text("TOTP secret", exact=False).first.wait_for(timeout=15_000)
    screenshot(admin, "admin-added-user")
    added = {u.username: u for u in users.list()}
    assert added["newbie"].role == "trader" and added["newbie"].has_totp

    investor = browser_login(chromium, web_server, "iris", None)
    assert investor.url.endswith("/investor"), investor.url
    investor.get_by_text("Velox performance").wait_for(timeout=15_000)
    screenshot(investor, "investor")
    controls = investor.locator("button, input, select, textarea").count()
    assert controls == 0, f"the investor page has {controls} control(s)"
    reply = investor.goto(web_server.url + "/trading")
    assert reply is not None and reply.status == 403
    cookies = {c["name"]: c["value"] for c in investor.context.cookies()}
    answer = requests.post(web_server.url + "/api/commands", json={"verb": "kill"},
                           cookies=cookies,
                           headers={"X-CSRF-Token": cookies.get("velox_csrf", "")})  # fmt: skip
    assert answer.status_code == 403
