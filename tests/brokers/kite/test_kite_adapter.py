"""KiteBroker against the loopback Kite simulator, through the official SDK (no mocks).

The simulator (``velox.brokers.kite.simulator``) speaks Kite's REST protocol on 127.0.0.1 and
POSTs Kite-style postbacks, which a :class:`PostbackServer` verifies and hands to the broker
(the path the ticker's order messages take too). Request counts and HTTP statuses are read
from the simulator's own statistics, so what is asserted is what went over the wire.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from velox.brokers.kite import auth, simulator
from velox.brokers.kite.adapter import KiteBroker, kite_throttles
from velox.brokers.kite.postback import PostbackServer
from velox.brokers.throttle import RateLimit
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited
from velox.instruments import InstrumentMaster, load_bundled_master
from velox.testing import BROKER_CONTRACT, VenueHarness
from velox.types import Fill, Order, OrderStatus

API_KEY = "velox0test"
API_SECRET = "sim-secret-0123456789"
IID = "NSE:RELIANCE"
PRICE = 1400.0


@pytest.fixture(scope="module")
def master() -> InstrumentMaster:
    """The bundled master with a freeze quantity of 10 on RELIANCE (to test slicing)."""
    table = load_bundled_master().table.copy()
    table.loc[table["id"] == IID, "freeze_qty"] = 10
    return InstrumentMaster(table)


class Recorder:
    def __init__(self) -> None:
        self.orders: list[Order] = []
        self.fills: list[Fill] = []

    def on_order_update(self, order: Order) -> None:
        self.orders.append(order)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)


@dataclass
class Rig:
    """A simulator, its postback receiver and a broker logged in to it."""

    sim: Any
    receiver: PostbackServer
    broker: KiteBroker
    session: auth.KiteSession
    master: InstrumentMaster
    make: Callable[..., KiteBroker]
    brokers: list[KiteBroker] = field(default_factory=list)

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every postback the simulator sent has been handled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = len(self.sim.state()["postbacks"])
            if self.receiver.accepted + self.receiver.refused >= sent:
                return
            time.sleep(0.02)
        raise AssertionError("postbacks were not delivered")

    def stats(self, route: str) -> dict[str, Any]:
        return self.sim.stats().get(route, {"count": 0, "times": [], "statuses": []})


@pytest.fixture
def rig(master: InstrumentMaster) -> Iterator[Rig]:
    current: list[KiteBroker] = []
    receiver = PostbackServer(lambda payload: current[-1].on_kite_order_update(payload), API_SECRET)
    port = receiver.start()
    sim = simulator.KiteSimulator(
        master,
        api_key=API_KEY,
        api_secret=API_SECRET,
        postback_url=f"http://127.0.0.1:{port}/kite/postback",
    )
    sim.start()
    sim.trade(IID, PRICE)  # a last price: the simulator values MARKET orders with it
    session = auth.generate_session(auth.KiteCredentials(API_KEY, API_SECRET), "rt-1", root=sim.url)

    def make(**options: Any) -> KiteBroker:
        options = {
            "instruments": master, "root": sim.url, "expires_at": session.expires_at,
            "backoff": 0.01, "settle": 0.2, "timeout": 3.0, **options,
        }  # fmt: skip
        broker = KiteBroker(API_KEY, session.access_token, **options)
        current.append(broker)
        return broker

    rig = Rig(sim, receiver, make(), session, master, make)
    try:
        yield rig
    finally:
        sim.stop()
        receiver.stop()


def order(cid: str, qty: int = 1, **fields: Any) -> Order:
    return Order(client_id=cid, instrument_id=IID, side="BUY", qty=qty, product="MIS", **fields)


# ---- the broker contract ---------------------------------------------------------------------


@pytest.mark.parametrize("check", BROKER_CONTRACT, ids=lambda c: c.__name__)
def test_broker_contract(rig: Rig, check: Callable[[VenueHarness], None]) -> None:
    harness = VenueHarness(
        broker=rig.broker,
        instrument=rig.master.get(IID),
        price=PRICE,
        trade=lambda price: (rig.sim.trade(IID, price), rig.settle()),
        reconnect=lambda: rig.make(),
        settle=rig.settle,
    )
    check(harness)


# ---- placement that may or may not have landed ------------------------------------------------


def test_a_timed_out_place_is_looked_up_not_duplicated(rig: Rig) -> None:
    broker = rig.make(timeout=0.5, settle=1.0)
    rig.sim.fault("timeout_after_place", delay=2.0)
    oid = broker.place_order(order("R1-1"))
    book = [o for o in rig.sim.state()["orders"] if o["tag"] == "R1-1"]
    assert [o["order_id"] for o in book] == [oid]
    assert rig.stats("order.place")["count"] == 1
    assert rig.stats("orders")["count"] >= 1  # it looked in the order book
    again = broker.place_order(order("R1-1"))  # the engine retrying the same client id
    assert again == oid and rig.stats("order.place")["count"] == 1


def test_a_restarted_engine_resending_a_client_id_gets_the_same_order(rig: Rig) -> None:
    oid = rig.broker.place_order(order("R2-1", order_type="LIMIT", limit_price=1300.0))
    fresh = rig.make()
    assert fresh.place_order(order("R2-1", order_type="LIMIT", limit_price=1300.0)) == oid
    assert rig.stats("order.place")["count"] == 1


def test_503_on_place_is_looked_up_then_placed_once_more(rig: Rig) -> None:
    rig.sim.fault("http_status", route="order.place", status=503, count=1)
    oid = rig.broker.place_order(order("R3-1"))
    assert rig.stats("order.place")["statuses"] == [503, 200]
    assert [o["order_id"] for o in rig.sim.state()["orders"] if o["tag"] == "R3-1"] == [oid]
    assert rig.stats("orders")["count"] >= 2  # looked twice (before and after the settle)


def test_429_on_place_is_not_retried(rig: Rig) -> None:
    rig.sim.fault("http_status", route="order.place", status=429, count=1)
    with pytest.raises(RateLimited):
        rig.broker.place_order(order("R4-1"))
    assert rig.stats("order.place")["statuses"] == [429]
    assert not [o for o in rig.sim.state()["orders"] if o["tag"] == "R4-1"]


def test_input_errors_are_rejections_with_kites_message(rig: Rig) -> None:
    with pytest.raises(OrderRejected) as info:
        rig.broker.place_order(order("R5-1", order_type="LIMIT", limit_price=1400.03))
    assert info.value.reason and info.value.client_id == "R5-1"


# ---- reads: retries and translation ------------------------------------------------------------


def test_503_and_429_on_a_read_are_retried(rig: Rig) -> None:
    rig.sim.fault("http_status", route="orders", status=503, count=1)
    rig.sim.fault("http_status", route="orders", status=429, count=1)
    assert rig.broker.orders() == []
    assert rig.stats("orders")["statuses"] == [503, 429, 200]


def test_a_read_still_throttled_after_the_retries_is_rate_limited(rig: Rig) -> None:
    broker = rig.make(retries=2)
    rig.sim.fault("http_status", route="portfolio.positions", status=429, count=5)
    with pytest.raises(RateLimited):
        broker.positions()
    assert rig.stats("portfolio.positions")["statuses"] == [429, 429, 429]


def test_an_expired_token_is_auth_expired_and_stops_sending(rig: Rig) -> None:
    rig.broker.orders()
    rig.sim.fault("expire_token")
    with pytest.raises(AuthExpired, match="velox broker login kite"):
        rig.broker.orders()
    sent = rig.stats("orders")["count"]
    with pytest.raises(AuthExpired):
        rig.broker.place_order(order("R6-1"))
    with pytest.raises(AuthExpired):
        rig.broker.funds()
    assert rig.stats("orders")["count"] == sent and rig.stats("order.place")["count"] == 0


def test_a_token_past_its_expiry_is_refused_before_sending(rig: Rig) -> None:
    past = datetime.now(IST) - timedelta(minutes=1)
    broker = rig.make(expires_at=past)
    with pytest.raises(AuthExpired, match="expired at .* IST.*velox broker login kite"):
        broker.orders()
    assert rig.stats("orders")["count"] == 0


# ---- throttles, counted at the simulator --------------------------------------------------------


def _most_in_window(times: list[float], period: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + period) - i for i, t in enumerate(ordered))


def test_order_rate_never_exceeds_the_configured_rate(rig: Rig) -> None:
    limits = {
        "order": (RateLimit.per_second(4),),
        "quote": (RateLimit.per_second(1),),
        "historical": (RateLimit.per_second(3),),
        "other": (RateLimit.per_second(10),),
    }
    broker = rig.make(throttles=kite_throttles(limits))
    for i in range(10):
        broker.place_order(order(f"R7-{i}", order_type="LIMIT", limit_price=1300.0))
    stats = rig.stats("order.place")
    assert stats["count"] == 10 and 429 not in stats["statuses"]
    # the 5th order goes 1.05 s after the 1st: the margin absorbs loopback jitter
    assert _most_in_window(stats["times"], 1.0) <= 4


def test_quotes_are_kept_to_one_per_second(rig: Rig) -> None:
    rig.sim.trade(IID, PRICE)
    for _ in range(3):
        assert rig.broker.ltp([IID]) == {IID: PRICE}
    stats = rig.stats("market.quote.ltp")
    assert 429 not in stats["statuses"] and _most_in_window(stats["times"], 1.0) <= 1


# ---- slicing above the freeze quantity -------------------------------------------------------


def test_an_order_above_freeze_qty_is_sliced_and_aggregated(rig: Rig) -> None:
    recorder = Recorder()
    rig.broker.set_listener(recorder)
    oid = rig.broker.place_order(order("R8-1", qty=25))
    kite_orders = [o for o in rig.sim.state()["orders"] if o["tag"] == "R8-1"]
    assert sorted(o["quantity"] for o in kite_orders) == [5, 10, 10]
    assert kite_orders[0]["order_id"] == oid
    rig.sim.trade(IID, PRICE, quantity=100)
    rig.settle()
    (mine,) = [o for o in rig.broker.orders() if o.client_id == "R8-1"]
    assert (mine.qty, mine.filled_qty, mine.status, mine.broker_order_id) == (
        25,
        25,
        OrderStatus.FILLED,
        oid,
    )
    assert sum(f.qty for f in recorder.fills) == 25 and len(recorder.fills) == 3
    assert len({f.fill_id for f in recorder.fills}) == 3
    assert recorder.orders[-1].status is OrderStatus.FILLED and recorder.orders[-1].qty == 25
    # a restarted broker regroups the three Kite orders by tag
    again = [o for o in rig.make().orders() if o.client_id == "R8-1"]
    assert [(o.qty, o.filled_qty, o.broker_order_id) for o in again] == [(25, 25, oid)]


def test_fills_are_emitted_once_per_trade_and_carry_charges(rig: Rig) -> None:
    recorder = Recorder()
    rig.broker.set_listener(recorder)
    rig.broker.place_order(order("R9-1", qty=2))
    rig.sim.trade(IID, PRICE)
    rig.settle()
    kite_order = next(o for o in rig.sim.state()["orders"] if o["tag"] == "R9-1")
    rig.broker.on_kite_order_update(kite_order)  # the same update again (ticker + postback)
    (fill,) = recorder.fills
    assert fill.client_id == "R9-1" and fill.qty == 2 and fill.price == PRICE
    assert fill.charges > 0  # MIS equity: brokerage, STT, exchange and SEBI fees, GST, stamp
    trade_ids = {t["trade_id"] for t in rig.sim.state()["trades"]}
    assert fill.fill_id in trade_ids
    assert [f.fill_id for f in rig.broker.fills()] == [fill.fill_id]
    assert rig.broker.fills()[0].charges == fill.charges


def test_bad_updates_are_logged_not_raised(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.broker.on_kite_order_update({"order_id": "1"})
    assert "bad Kite order update" in caplog.text


# ---- account and market data ------------------------------------------------------------------


def test_funds_positions_holdings(rig: Rig) -> None:
    funds = rig.broker.funds()
    assert funds.available > 0 and funds.cash >= funds.available
    assert rig.broker.positions() == [] and rig.broker.holdings() == []


def test_quote_and_ltp(rig: Rig) -> None:
    rig.sim.trade(IID, 1402.5, quantity=7)
    rig.sim.trade("NSE:NIFTY", 22500.0)  # Kite calls it "NSE:NIFTY 50"
    quotes = rig.broker.quote([IID, "NSE:NIFTY"])
    tick = quotes[IID]
    assert tick.instrument_id == IID and tick.ltp == 1402.5 and tick.ts.tzinfo is not None
    assert quotes["NSE:NIFTY"].ltp == 22500.0
    assert rig.broker.ltp(["NSE:NIFTY", IID]) == {"NSE:NIFTY": 22500.0, IID: 1402.5}


class Bars:
    """A bar reader for the simulator's historical route (one bar per day at 09:15)."""

    def __init__(self) -> None:
        index = pd.date_range("2024-01-01 09:15", periods=150, freq="D", tz="Asia/Kolkata")
        self.frame = pd.DataFrame(
            {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 10.0},
            index=pd.DatetimeIndex(index, name="ts"),
        )
        self.frame["close"] = [100.0 + i / 10 for i in range(len(index))]
        self.frame["high"] = self.frame["close"] + 1

    def read_bars(self, instrument_id: str, timeframe: str, start: Any, end: Any) -> pd.DataFrame:
        return self.frame


def test_history_is_paginated_within_kites_limits(master: InstrumentMaster) -> None:
    bars = Bars()
    sim = simulator.KiteSimulator(master, store=bars)
    sim.start()
    try:
        session = auth.generate_session(auth.KiteCredentials("k", "s"), "rt", root=sim.url)
        broker = KiteBroker("k", session.access_token, instruments=master, root=sim.url)
        frame = broker.history(IID, "1m", "2024-01-01", "2024-05-29")
        stats = sim.stats()["market.historical"]
    finally:
        sim.stop()
    assert stats["count"] == 3 and set(stats["statuses"]) == {200}  # 150 days / 60 per request
    pd.testing.assert_frame_equal(frame, bars.frame, check_freq=False)
    assert str(frame.index.tz) == "Asia/Kolkata" and frame.index.name == "ts"


def test_download_instruments_into_the_store(rig: Rig, store: Any) -> None:
    master = rig.broker.download_instruments(store)
    stored = store.read_instruments().set_index("id")
    assert int(stored.loc[IID, "kite_token"]) == 738561
    assert master.get(IID).lot_size == 1 and len(stored) == len(master)


# ---- credentials end to end: CLI → encrypted store → from_store ---------------------------------


def test_cli_login_then_from_store_and_no_secret_in_logs(
    rig: Rig, store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from click.testing import CliRunner

    from velox.cli import main
    from velox.config import reset_settings
    from velox.secrets import SecretStore, generate_key

    key = generate_key()
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    monkeypatch.setenv("VELOX_SECRET_KEY", key)
    monkeypatch.setenv("VELOX_KITE_ROOT", rig.sim.url)
    reset_settings()
    caplog.set_level(logging.DEBUG)
    try:
        runner = CliRunner()
        done = runner.invoke(
            main,
            ["broker", "set", "kite", "--api-key", API_KEY, "--api-secret-stdin"],
            input=API_SECRET + "\n",
            standalone_mode=False,
        )
        assert done.exit_code == 0, done.output
        redirect = "https://app.example/cb?type=login&status=success&request_token=rt-cli\n"
        login = runner.invoke(main, ["broker", "login", "kite"], input=redirect,
                              standalone_mode=False)  # fmt: skip
        assert login.exit_code == 0, login.output
        assert f"api_key={API_KEY}" in login.output and "valid until" in login.output
        status = runner.invoke(main, ["broker", "status", "kite"], standalone_mode=False)
        assert "access_token: stored" in status.output and "valid until" in status.output
        broker = KiteBroker.from_store(store, instruments=rig.master, root=rig.sim.url)
        assert broker.orders() == []
        token = SecretStore(store, key=key).get(auth.SECRET_NAMES["access_token"])
        assert token and token not in repr(broker)
        with store.connect() as conn:
            rows = conn.execute("SELECT ciphertext FROM secrets").fetchall()
        assert all(API_SECRET.encode() not in bytes(r[0]) for r in rows)
        everything = caplog.text + done.output + login.output + status.output
        assert API_SECRET not in everything and token not in everything
        # an expired stored session is refused before anything is sent
        with pytest.raises(AuthExpired, match="velox broker login kite"):
            KiteBroker.from_store(store, now=datetime.now(IST) + timedelta(days=2))
    finally:
        reset_settings()


def test_concurrent_updates_do_not_duplicate_fills(rig: Rig) -> None:
    recorder = Recorder()
    rig.broker.set_listener(recorder)
    rig.broker.place_order(order("R10-1", qty=3))
    rig.sim.trade(IID, PRICE)
    rig.settle()
    data = next(o for o in rig.sim.state()["orders"] if o["tag"] == "R10-1")
    fresh = rig.make()
    fresh.set_listener(recorder := Recorder())
    threads = [threading.Thread(target=fresh.on_kite_order_update, args=(data,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recorder.fills) == 1 and not isinstance(recorder.fills[0], BrokerError)


def test_a_sliced_order_is_modified_and_cancelled_as_one(rig: Rig) -> None:
    oid = rig.broker.place_order(order("R11-1", qty=25, order_type="LIMIT", limit_price=1300.0))
    rig.broker.modify_order(oid, limit_price=1310.0)
    mine = [o for o in rig.sim.state()["orders"] if o["tag"] == "R11-1"]
    assert [o["price"] for o in mine] == [1310.0] * 3
    with pytest.raises(OrderRejected, match="sliced"):
        rig.broker.modify_order(oid, qty=30)
    rig.broker.cancel_order(oid)
    mine = [o for o in rig.sim.state()["orders"] if o["tag"] == "R11-1"]
    assert [o["status"] for o in mine] == ["CANCELLED"] * 3
    (whole,) = [o for o in rig.broker.orders() if o.client_id == "R11-1"]
    assert (whole.status, whole.qty, whole.broker_order_id) == (OrderStatus.CANCELLED, 25, oid)
    with pytest.raises(OrderRejected, match="CANCELLED"):
        rig.broker.cancel_order(oid)


def test_an_out_of_order_update_does_not_regress_an_order(rig: Rig) -> None:
    recorder = Recorder()
    rig.broker.set_listener(recorder)
    rig.broker.place_order(order("R12-1", qty=2))
    rig.sim.trade(IID, PRICE)
    rig.settle()
    done = next(o for o in rig.sim.state()["orders"] if o["tag"] == "R12-1")
    assert done["status"] == "COMPLETE"
    seen = len(recorder.orders)
    rig.broker.on_kite_order_update({**done, "status": "OPEN", "filled_quantity": 0})  # late
    assert len(recorder.orders) == seen
    (mine,) = [o for o in rig.broker.orders() if o.client_id == "R12-1"]
    assert mine.status is OrderStatus.FILLED
