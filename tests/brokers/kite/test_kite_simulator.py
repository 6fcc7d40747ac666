"""The loopback Kite simulator's REST side, driven by the official ``KiteConnect`` client.

References are independent of the simulator: the recorded Kite responses (``kiteconnect-mocks``)
for shapes, the SDK's own exceptions for errors, and hand-computed prices for fills.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
from kite_sim_support import MOCKS, mock, shape_matches_any, shape_problems
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from velox.brokers.kite.simulator import KiteSimulator
from velox.errors import ConfigError
from velox.testing import market_file

RELIANCE = dict(exchange="NSE", tradingsymbol="RELIANCE")


class FrozenClock:
    """The rate limiter's clock, moved by hand: "11 orders in one second" whatever the CPU."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> Iterator[KiteSimulator]:
    simulator = KiteSimulator(rate_limits=False)
    simulator.start()
    yield simulator
    simulator.stop()


def login(sim: KiteSimulator, api_key: str = "demo", secret: str = "secret",
          request_token: str = "request-token", **kwargs: object) -> KiteConnect:  # fmt: skip
    kite = KiteConnect(api_key, root=sim.url, **kwargs)
    session = kite.generate_session(request_token, secret)
    kite.set_access_token(session["access_token"])
    return kite


@pytest.fixture
def kite(sim: KiteSimulator) -> KiteConnect:
    return login(sim)


def buy(kite: KiteConnect, qty: int = 1, order_type: str = "MARKET", **kwargs: object) -> str:
    return kite.place_order("regular", transaction_type="BUY", quantity=qty,
                            order_type=order_type, product=kwargs.pop("product", "MIS"),
                            **RELIANCE, **kwargs)  # fmt: skip


def status(kite: KiteConnect, order_id: str) -> str:
    return kite.order_history(order_id)[-1]["status"]


def mock_envelope(name: str) -> dict:
    return json.loads((MOCKS / f"{name}.json").read_text())


def raw(sim: KiteSimulator, kite: KiteConnect, path: str) -> dict:
    """Return a route's raw JSON envelope (the SDK parses timestamps; shapes want JSON)."""
    headers = {"X-Kite-Version": "3", "Authorization": f"token {kite.api_key}:{kite.access_token}"}
    return requests.get(sim.url + path, headers=headers, timeout=10).json()


# -- session ------------------------------------------------------------------------------


def test_generate_session_has_the_recorded_shape_and_the_token_works(sim: KiteSimulator) -> None:
    checksum = hashlib.sha256(b"demo" + b"rt-raw" + b"secret").hexdigest()
    envelope = requests.post(sim.url + "/session/token", timeout=10, data={
        "api_key": "demo", "request_token": "rt-raw", "checksum": checksum}).json()  # fmt: skip
    assert envelope["status"] == "success"
    assert shape_problems(envelope["data"], mock("generate_session")) == []
    kite = KiteConnect("demo", root=sim.url)
    session = kite.generate_session("request-token", "secret")
    kite.set_access_token(session["access_token"])
    assert shape_problems(raw(sim, kite, "/user/profile")["data"], mock("profile")) == []
    with pytest.raises(kex.TokenException):  # a request token is good for one session
        kite.generate_session("request-token", "secret")


def test_configured_credentials_check_the_checksum() -> None:
    with KiteSimulator(api_key="app", api_secret="s3cret", rate_limits=False) as sim:
        with pytest.raises(kex.TokenException):
            KiteConnect("app", root=sim.url).generate_session("rt", "wrong-secret")
        with pytest.raises(kex.TokenException):
            KiteConnect("other", root=sim.url).generate_session("rt2", "s3cret")
        kite = login(sim, "app", "s3cret", "rt3")
        assert kite.profile()["user_id"]


def test_a_bad_or_expired_token_is_a_token_exception(sim: KiteSimulator, kite: KiteConnect) -> None:
    stranger = KiteConnect("demo", access_token="not-a-token", root=sim.url)
    with pytest.raises(kex.TokenException) as bad:
        stranger.orders()
    assert bad.value.code == 403
    assert kite.orders() == []
    assert sim.fault("expire_token", access_token=kite.access_token) == {"expired": 1}
    with pytest.raises(kex.TokenException):
        kite.orders()


def test_logout_invalidates_the_token(sim: KiteSimulator, kite: KiteConnect) -> None:
    logout = requests.delete(sim.url + "/session/token", timeout=10, params={
        "api_key": "demo", "access_token": kite.access_token}).json()  # fmt: skip
    assert logout == mock_envelope("session_logout")
    with pytest.raises(kex.TokenException):
        kite.positions()


def test_orders_outside_market_hours_are_refused_without_an_order() -> None:
    from datetime import datetime

    from velox.calendar import IST

    with KiteSimulator(rate_limits=False) as sim:
        sim.trade("NSE:RELIANCE", 1400.0)
        sim.advance_to(datetime(2025, 5, 20, 15, 45, tzinfo=IST))
        kite = login(sim)
        with pytest.raises(kex.InputException, match="Markets are closed"):
            buy(kite, 1, product="CNC")
        assert kite.orders() == []


def test_the_token_expires_at_six_ist_the_next_market_morning() -> None:
    # 20 h 45 min of market time from 09:15 to 06:00 next day; at 10^6 x that is 75 ms of wall.
    with KiteSimulator(speed=1_000_000, rate_limits=False) as sim:
        kite = login(sim)
        while sim.market_now().strftime("%Y-%m-%d %H:%M") < "2025-05-21 06:01":
            pass  # wait for the market clock (not a timed assertion)
        with pytest.raises(kex.TokenException, match="expired"):
            kite.margins()


# -- orders -------------------------------------------------------------------------------


def test_a_market_order_fills_on_the_next_trade_not_the_current_price(
    sim: KiteSimulator, kite: KiteConnect
) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    order_id = buy(kite, 3, tag="velox-c1")
    assert order_id.isdigit() and len(order_id) == 15
    assert status(kite, order_id) == "OPEN"
    sim.trade("NSE:RELIANCE", 1401.5)
    (order,) = kite.orders()
    assert (order["status"], order["average_price"], order["filled_quantity"]) == (
        "COMPLETE", 1401.5, 3)  # fmt: skip
    assert order["tag"] == "velox-c1" and order["pending_quantity"] == 0
    history = [h["status"] for h in kite.order_history(order_id)]
    assert history == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "OPEN",
                       "COMPLETE"]  # fmt: skip
    (trade,) = kite.order_trades(order_id)
    assert (trade["quantity"], trade["average_price"], trade["order_id"]) == (3, 1401.5, order_id)


def test_a_limit_order_rests_until_the_price_reaches_it(
    sim: KiteSimulator, kite: KiteConnect
) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    order_id = buy(kite, 2, "LIMIT", price=1398.0)
    sim.trade("NSE:RELIANCE", 1399.0)
    assert status(kite, order_id) == "OPEN"
    sim.trade("NSE:RELIANCE", 1397.6)
    order = kite.order_history(order_id)[-1]
    assert (order["status"], order["average_price"]) == ("COMPLETE", 1397.6)  # the tick's price


def test_a_stop_loss_triggers_then_fills(sim: KiteSimulator, kite: KiteConnect) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    order_id = buy(kite, 1, "SL", price=1405.0, trigger_price=1403.0)
    assert status(kite, order_id) == "TRIGGER PENDING"
    sim.trade("NSE:RELIANCE", 1402.0)
    assert status(kite, order_id) == "TRIGGER PENDING"
    sim.trade("NSE:RELIANCE", 1404.0)
    order = kite.order_history(order_id)[-1]
    assert (order["status"], order["average_price"]) == ("COMPLETE", 1404.0)
    sl_m = buy(kite, 1, "SL-M", trigger_price=1410.0)
    sim.trade("NSE:RELIANCE", 1411.0)
    assert kite.order_history(sl_m)[-1]["average_price"] == 1411.0


def test_modify_and_cancel(sim: KiteSimulator, kite: KiteConnect) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    order_id = buy(kite, 1, "LIMIT", price=1390.0)
    assert kite.modify_order("regular", order_id, quantity=4, price=1395.0) == order_id
    order = kite.orders()[0]
    assert (order["quantity"], order["price"], order["modified"]) == (4, 1395.0, True)
    assert kite.cancel_order("regular", order_id) == order_id
    order = kite.orders()[0]
    assert (order["status"], order["cancelled_quantity"]) == ("CANCELLED", 4)
    with pytest.raises(kex.OrderException):
        kite.cancel_order("regular", order_id)
    with pytest.raises(kex.OrderException):
        kite.modify_order("regular", order_id, quantity=2)


def test_rejections_raise_the_sdks_exceptions(sim: KiteSimulator, kite: KiteConnect) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    with pytest.raises(kex.InputException, match="[Tt]ick size"):
        buy(kite, 1, "LIMIT", price=1400.03)
    with pytest.raises(kex.InputException, match="variety"):
        kite.place_order("co", transaction_type="BUY", quantity=1, order_type="MARKET",
                         product="MIS", **RELIANCE)  # fmt: skip
    with pytest.raises(kex.InputException, match="product"):
        buy(kite, 1, product="BO")
    with pytest.raises(kex.InputException, match="tradingsymbol"):
        kite.place_order("regular", exchange="NSE", tradingsymbol="NOSUCHSTOCK",
                         transaction_type="BUY", quantity=1, order_type="MARKET",
                         product="CNC")  # fmt: skip
    with pytest.raises(kex.InputException, match="order_id"):
        kite.order_history("999")
    # the RMS refuses an order it cannot fund: Kite places it and reports it REJECTED
    order_id = buy(kite, 10_000, product="CNC")
    rejected = kite.order_history(order_id)[-1]
    assert rejected["status"] == "REJECTED" and "Insufficient funds" in rejected["status_message"]
    assert status(kite, order_id) == "REJECTED"


def test_every_response_has_the_recorded_shape(sim: KiteSimulator, kite: KiteConnect) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    filled = buy(kite, 2, tag="shape")
    sim.trade("NSE:RELIANCE", 1401.0)
    resting = buy(kite, 1, "LIMIT", price=1300.0)
    assert shape_problems({"order_id": resting}, mock("order_response")) == []
    orders = raw(sim, kite, "/orders")["data"]
    assert len(orders) == 2
    for order in orders:
        assert shape_matches_any(order, mock("orders")) == []
    for entry in raw(sim, kite, f"/orders/{filled}")["data"]:
        assert shape_problems(entry, mock("order_info")[0]) == []
    assert shape_problems(raw(sim, kite, "/trades")["data"], mock("trades")) == []
    assert shape_problems(raw(sim, kite, f"/orders/{filled}/trades")["data"],
                          mock("order_trades")) == []  # fmt: skip
    positions = raw(sim, kite, "/portfolio/positions")["data"]
    assert positions["net"] and positions["day"]
    assert shape_problems(positions, mock("positions")) == []
    assert shape_problems(raw(sim, kite, "/user/margins")["data"], mock("margins")) == []
    assert shape_problems(raw(sim, kite, "/user/margins/equity")["data"],
                          mock("margins_equity")) == []  # fmt: skip
    assert shape_problems(raw(sim, kite, "/user/margins/commodity")["data"],
                          mock("margin_commodity")) == []  # fmt: skip
    for route, name in (("/quote", "quote"), ("/quote/ltp", "ltp"), ("/quote/ohlc", "ohlc")):
        data = raw(sim, kite, f"{route}?i=NSE:RELIANCE")["data"]
        assert shape_problems(data["NSE:RELIANCE"], next(iter(mock(name).values()))) == []
    modified = {"order_id": kite.modify_order("regular", resting, price=1301.0)}
    assert shape_problems(modified, mock("order_modify")) == []
    cancelled = {"order_id": kite.cancel_order("regular", resting)}
    assert shape_problems(cancelled, mock("order_cancel")) == []
    assert raw(sim, kite, "/portfolio/holdings")["data"] == []  # nothing carried yet


def test_holdings_have_the_recorded_shape_after_the_session_rolls() -> None:
    from datetime import datetime

    from velox.calendar import IST

    with KiteSimulator(rate_limits=False) as sim:
        kite = login(sim)
        sim.trade("NSE:RELIANCE", 1400.0)
        buy(kite, 5, product="CNC")
        sim.trade("NSE:RELIANCE", 1400.5)
        # the next session: the CNC buy is carried into holdings
        sim.advance_to(datetime(2025, 5, 21, 9, 15, tzinfo=IST))
        with pytest.raises(kex.TokenException):  # yesterday's token expired at 06:00
            kite.holdings()
        kite = login(sim, request_token="next-day")
        holdings = raw(sim, kite, "/portfolio/holdings")["data"]
        assert [(h["tradingsymbol"], h["quantity"]) for h in holdings] == [("RELIANCE", 5)]
        assert shape_problems(holdings, mock("holdings")) == []


def test_quotes_report_the_trades(sim: KiteSimulator, kite: KiteConnect) -> None:
    for price in (1400.0, 1410.0, 1395.0, 1402.0):
        sim.trade(738561, price, quantity=10)
    quote = kite.quote("NSE:RELIANCE")["NSE:RELIANCE"]
    assert quote["instrument_token"] == 738561
    assert quote["ohlc"] == {"open": 1400, "high": 1410, "low": 1395, "close": 0}
    assert (quote["last_price"], quote["volume"], quote["last_quantity"]) == (1402, 40, 10)
    assert quote["average_price"] == pytest.approx((1400 + 1410 + 1395 + 1402) / 4)
    assert quote["depth"]["buy"][0]["price"] == 1401.95
    assert kite.ltp(["NSE:RELIANCE", "NSE:NOSUCH"]) == {
        "NSE:RELIANCE": {"instrument_token": 738561, "last_price": 1402}
    }


def test_instruments_are_kites_csv_of_the_bundled_master(kite: KiteConnect) -> None:
    from velox.instruments import load_bundled_master

    rows = kite.instruments("NSE")
    reliance = next(r for r in rows if r["tradingsymbol"] == "RELIANCE")
    assert (reliance["instrument_token"], reliance["lot_size"], reliance["tick_size"]) == (
        738561, 1, 0.05)  # fmt: skip
    table = load_bundled_master().table
    assert len(kite.instruments()) == int(table["kite_token"].notna().sum())
    csv = market_file("instruments_zerodha_kite", "raw", "kiteconnect-mocks", "instruments_all.csv")
    recorded = csv.read_text().splitlines()[0].split(",")
    assert list(reliance) == recorded


# -- historical ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "limit"),
    [("minute", 60), ("3minute", 100), ("5minute", 100), ("10minute", 100), ("15minute", 200),
     ("30minute", 200), ("60minute", 400), ("day", 2000)],
)  # fmt: skip
def test_historical_requests_longer_than_kites_limit_are_refused(
    kite: KiteConnect, interval: str, limit: int
) -> None:
    from datetime import datetime, timedelta

    start = datetime(2020, 1, 1)
    assert kite.historical_data(738561, start, start + timedelta(days=limit), interval) == []
    with pytest.raises(kex.InputException, match=f"max limit: {limit} days") as refused:
        kite.historical_data(738561, start, start + timedelta(days=limit, seconds=1), interval)
    assert refused.value.code == 400


# -- rate limits, faults, stats -----------------------------------------------------------


def test_historical_candles_have_the_recorded_shape() -> None:
    from kite_sim_support import reliance_day

    with KiteSimulator(bars={("NSE:RELIANCE", "5m"): reliance_day()}, rate_limits=False) as sim:
        kite = login(sim)
        envelope = raw(sim, kite, "/instruments/historical/738561/5minute?from=2025-05-20+09:15:00"
                       "&to=2025-05-20+10:00:00")  # fmt: skip
        candles = envelope["data"]["candles"]
        assert len(candles) == 10 and candles[0][0] == "2025-05-20T09:15:00+0530"
        assert shape_problems(envelope["data"], mock("historical_minute")) == []


def test_ioc_cancels_what_the_next_print_does_not_fill(
    sim: KiteSimulator, kite: KiteConnect
) -> None:
    sim.trade("NSE:RELIANCE", 1400.0)
    order_id = buy(kite, 1, "LIMIT", price=1390.0, validity="IOC")
    sim.trade("NSE:RELIANCE", 1399.0)
    order = kite.order_history(order_id)[-1]
    assert (order["status"], order["validity"], order["cancelled_quantity"]) == (
        "CANCELLED", "IOC", 1)  # fmt: skip


def test_order_placement_is_limited_per_minute_too() -> None:
    clock = FrozenClock()
    with KiteSimulator(rate_clock=clock) as sim:
        kite = login(sim)
        sim.trade("NSE:RELIANCE", 1400.0)
        for k in range(400):  # 10 a second for 40 s: within the per-second limit
            if k and k % 10 == 0:
                clock.now += 1.0
            buy(kite, 1, "LIMIT", price=1300.0)
        clock.now += 1.0
        with pytest.raises(kex.NetworkException, match="Too many requests"):
            buy(kite, 1, "LIMIT", price=1300.0)
        clock.now += 60.0
        buy(kite, 1, "LIMIT", price=1300.0)


def test_the_eleventh_order_in_a_second_gets_429() -> None:
    clock = FrozenClock()
    with KiteSimulator(rate_clock=clock) as sim:
        kite = login(sim)
        sim.trade("NSE:RELIANCE", 1400.0)
        for _ in range(10):
            buy(kite, 1, "LIMIT", price=1300.0)
        with pytest.raises(kex.NetworkException, match="Too many requests") as limited:
            buy(kite, 1, "LIMIT", price=1300.0)
        assert limited.value.code == 429
        clock.now += 1.0
        buy(kite, 1, "LIMIT", price=1300.0)
        placed = sim.stats()["order.place"]
        assert placed["count"] == 12 and placed["statuses"] == [200] * 10 + [429, 200]
        times = placed["times"]
        assert times == sorted(times)
        # quotes: 1 per second
        kite.ltp("NSE:RELIANCE")
        with pytest.raises(kex.NetworkException):
            kite.ltp("NSE:RELIANCE")
        assert len(kite.orders()) == 11  # the refused order was never placed


def test_http_status_fault_answers_the_next_requests_with_kites_errors(
    sim: KiteSimulator, kite: KiteConnect
) -> None:
    sim.fault("http_status", route="orders", status=503, count=2)
    for _ in range(2):
        with pytest.raises(kex.NetworkException) as failed:
            kite.orders()
        assert failed.value.code == 503
    assert kite.orders() == []
    sim.fault("http_status", route="*", status=500)
    with pytest.raises(kex.GeneralException):
        kite.positions()
    assert sim.stats()["orders"]["statuses"] == [503, 503, 200]


def test_timeout_after_place_accepts_the_order_exactly_once(sim: KiteSimulator) -> None:
    kite = login(sim, timeout=1)
    sim.trade("NSE:RELIANCE", 1400.0)
    sim.fault("timeout_after_place", delay=3.0)
    with pytest.raises(requests.exceptions.Timeout):
        buy(kite, 1, "LIMIT", price=1390.0, tag="cid-42")
    (order,) = kite.orders()  # the adapter finds it by tag instead of placing it again
    assert (order["tag"], order["status"]) == ("cid-42", "OPEN")
    assert sim.stats()["order.place"]["count"] == 1


def test_slow_fault_delays_but_answers(sim: KiteSimulator, kite: KiteConnect) -> None:
    sim.fault("slow", route="user.profile", delay=0.3)
    assert kite.profile()["user_id"]
    with pytest.raises(ConfigError, match="Unknown fault"):
        sim.fault("no-such-fault")


def test_sim_routes_over_http(sim: KiteSimulator, kite: KiteConnect) -> None:
    traded = requests.post(sim.url + "/_sim/trade", json={"token": 738561, "price": 1400.0},
                           timeout=10).json()  # fmt: skip
    assert traded["data"]["instrument_id"] == "NSE:RELIANCE"
    order_id = buy(kite, 1)
    requests.post(sim.url + "/_sim/trade", json={"instrument_id": "NSE:RELIANCE",
                                                 "price": 1401.0}, timeout=10)  # fmt: skip
    state = requests.get(sim.url + "/_sim/state", timeout=10).json()["data"]
    assert [o["status"] for o in state["orders"]] == ["COMPLETE"]
    assert state["orders"][0]["order_id"] == order_id
    stats = requests.get(sim.url + "/_sim/stats", timeout=10).json()["data"]
    assert stats["order.place"]["count"] == 1
    fault = requests.post(sim.url + "/_sim/fault", json={"kind": "http_status",
                                                         "route": "trades", "status": 429},
                          timeout=10).json()  # fmt: skip
    assert fault["data"]["armed"] == "http_status"
    with pytest.raises(kex.NetworkException):
        kite.trades()
    bad = requests.post(sim.url + "/_sim/fault", json={"kind": "nope"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error_type"] == "InputException"


def test_postbacks_carry_kites_checksum() -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/postback"
    try:
        with KiteSimulator(api_key="app", api_secret="s3cret", postback_url=url,
                           rate_limits=False) as sim:  # fmt: skip
            kite = login(sim, "app", "s3cret")
            sim.trade("NSE:RELIANCE", 1400.0)
            order_id = buy(kite, 1, tag="pb")
            sim.trade("NSE:RELIANCE", 1400.5)
            while len(sim.state()["postbacks"]) < 2 or len(received) < 2:
                pass  # the simulator posts asynchronously
    finally:
        hook.shutdown()
    complete = next(p for p in received if p["status"] == "COMPLETE")
    assert complete["order_id"] == order_id and complete["tag"] == "pb"
    expected = hashlib.sha256(
        (order_id + complete["order_timestamp"] + "s3cret").encode()
    ).hexdigest()
    assert complete["checksum"] == expected
    assert shape_problems(complete, mock("postback")) == []


def test_the_cli_registers_sim_kite() -> None:
    from click.testing import CliRunner

    from velox.cli import main

    result = CliRunner().invoke(main, ["sim", "kite", "--help"], standalone_mode=False)
    assert result.exit_code == 0, result.output
    for option in ("--port", "--bars", "--speed", "--api-key", "--postback-url"):
        assert option in result.output


def test_velox_sim_kite_serves_until_terminated(tmp_path) -> None:  # noqa: ANN001
    import os
    import re
    import signal
    import subprocess
    import sys

    from kite_sim_support import ROOT

    env = dict(os.environ, VELOX_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "sim", "kite", "--port", "0", "--api-key", "app",
         "--api-secret", "s3cret", "--start", "2025-05-21"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"REST (http://127\.0\.0\.1:\d+)", line)
        assert url, (line, process.stderr.read() if process.poll() is not None else "")
        root = url.group(1)
        requests.post(root + "/_sim/trade", json={"instrument_id": "NSE:SBIN", "price": 800.0},
                      timeout=10)  # fmt: skip
        kite = KiteConnect("app", root=root)
        kite.set_access_token(kite.generate_session("rt", "s3cret")["access_token"])
        assert kite.ltp("NSE:SBIN")["NSE:SBIN"]["last_price"] == 800
        assert kite.profile()["user_id"]
        state = requests.get(root + "/_sim/state", timeout=10).json()["data"]
        assert state["market_time"].startswith("2025-05-21 09:1")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
