"""BreezeBroker against the loopback Breeze simulator, through the official SDK (no mocks).

The simulator (``velox.brokers.breeze.simulator``) speaks Breeze's REST protocol (checksum
headers, JSON bodies on GET and DELETE) and its socket.io order notifications on 127.0.0.1;
``BreezeConnect`` talks to it. Counts and statuses come from the simulator's statistics, so
what is asserted is what went over the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from velox.brokers.breeze import _sdk
from velox.brokers.breeze.adapter import BreezeBroker
from velox.brokers.breeze.simulator import BreezeSimulator
from velox.errors import AuthExpired, BrokerError, OrderRejected
from velox.instruments import InstrumentMaster, load_bundled_master
from velox.testing import BROKER_CONTRACT, VenueHarness
from velox.types import Order, OrderStatus

IID = "NSE:SBIN"
PRICE = 812.0
API_KEY = "velox-demo"


@pytest.fixture(scope="module")
def master() -> InstrumentMaster:
    return load_bundled_master()


@dataclass
class Rig:
    sim: BreezeSimulator
    make: Callable[..., BreezeBroker]
    brokers: list[BreezeBroker] = field(default_factory=list)

    @property
    def broker(self) -> BreezeBroker:
        return self.brokers[0]

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every order notification the simulator sent has been handled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(b.updates_received for b in self.brokers) >= self.sim.notifications_sent():
                return
            time.sleep(0.02)
        raise AssertionError("order notifications were not delivered")


def login(sim: BreezeSimulator) -> tuple[str, str]:
    """The SDK's own session step (``customerdetails``): (user id, session key)."""
    api = _sdk.sdk().connect.BreezeConnect(api_key=API_KEY)
    api.session_key, api.secret_key = sim.api_session(), sim.DEMO_SECRET
    with _sdk.pointed_at(_sdk.BreezeUrls(sim.url)):
        api.api_util()
    return api.user_id, api.session_key


@pytest.fixture
def rig(master: InstrumentMaster) -> Iterator[Rig]:
    sim = BreezeSimulator(master)
    sim.start()
    sim.trade(IID, PRICE)
    user, key = login(sim)
    rig = Rig(sim, lambda: None)  # type: ignore[arg-type]

    def make(**options: Any) -> BreezeBroker:
        broker = BreezeBroker(
            API_KEY, options.pop("secret", sim.DEMO_SECRET), user, key, instruments=master,
            urls=_sdk.BreezeUrls(sim.url), **{"timeout": 3.0, "settle": 0.2, **options},
        )  # fmt: skip
        rig.brokers.append(broker)
        return broker

    rig.make = make
    make()
    try:
        yield rig
    finally:
        for broker in rig.brokers:
            broker.close()
        sim.stop()


def order(cid: str, qty: int = 1, **fields: Any) -> Order:
    return Order(client_id=cid, instrument_id=IID, side="BUY", qty=qty, product="MIS", **fields)


@pytest.mark.parametrize("check", BROKER_CONTRACT, ids=lambda c: c.__name__)
def test_broker_contract(rig: Rig, master: InstrumentMaster, check: Callable) -> None:
    harness = VenueHarness(
        broker=rig.broker,
        instrument=master.get(IID),
        price=PRICE,
        trade=lambda p: rig.sim.trade(IID, p),
        reconnect=rig.make,
        settle=rig.settle,
    )
    check(harness)


def test_a_market_order_goes_as_a_limit_three_percent_through_the_quote(rig: Rig) -> None:
    rig.broker.place_order(order("MK-1"))
    (sent,) = rig.sim.state()["orders"]
    # 812 × 1.03 = 836.36 → up to the next 0.05 tick
    assert (sent["order_type"], sent["price"], sent["user_remark"]) == ("Limit", "836.4", "MK-1")
    assert rig.sim.stats()["quotes"]["count"] == 1


def test_a_timed_out_place_is_looked_up_not_duplicated(rig: Rig) -> None:
    rig.sim.fault("timeout_after_place", delay=2.0)
    broker = rig.make(timeout=0.5, settle=0.1)
    oid = broker.place_order(order("TO-1", order_type="LIMIT", limit_price=700.0))
    remarks = [o["user_remark"] for o in rig.sim.state()["orders"]]
    assert remarks.count("TO-1") == 1 and rig.sim.stats()["order.place"]["count"] == 1
    assert any(o.broker_order_id == oid and o.client_id == "TO-1" for o in broker.orders())


def test_a_restarted_engine_resending_a_client_id_gets_the_same_order(rig: Rig) -> None:
    first = rig.broker.place_order(order("RS-1", order_type="LIMIT", limit_price=700.0))
    again = rig.make().place_order(order("RS-1", order_type="LIMIT", limit_price=700.0))
    assert again == first and rig.sim.stats()["order.place"]["count"] == 1


def test_an_expired_session_is_auth_expired_and_stops_sending(rig: Rig) -> None:
    rig.sim.fault("expire_session")
    with pytest.raises(AuthExpired, match="velox broker login breeze"):
        rig.broker.orders()
    before = rig.sim.stats()["order.book"]["count"]
    with pytest.raises(AuthExpired):
        rig.broker.place_order(order("EX-1", order_type="LIMIT", limit_price=700.0))
    assert rig.sim.stats()["order.book"]["count"] == before
    assert "order.place" not in rig.sim.stats()


def test_a_wrong_api_secret_fails_the_checksum_and_says_so(rig: Rig) -> None:
    broker = rig.make(secret="not-the-secret", notifications=False)
    with pytest.raises(BrokerError, match="api_secret"):
        broker.funds()
    assert rig.sim.stats()["funds"]["statuses"] == [401]


def test_a_dropped_notification_stream_reconnects_and_replays_the_gap(rig: Rig) -> None:
    seen: list[Order] = []

    class Listener:
        def on_order_update(self, o: Order) -> None:
            seen.append(o)

        def on_fill(self, fill: object) -> None:
            pass

    rig.broker.set_listener(Listener())
    oid = rig.broker.place_order(order("DR-1", order_type="LIMIT", limit_price=800.0))
    rig.settle()
    rig.sim.fault("drop_ws")
    rig.sim.trade(IID, 799.0)  # fills while nobody listens
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(o.broker_order_id == oid and o.status is OrderStatus.FILLED for o in seen):
            break
        time.sleep(0.05)
    assert any(o.client_id == "DR-1" and o.status is OrderStatus.FILLED for o in seen)


def test_rate_limit_is_breezes_one_budget_for_every_call(master: InstrumentMaster) -> None:
    clock = [0.0]
    sim = BreezeSimulator(master, rate_clock=lambda: clock[0])
    sim.start()
    try:
        sim.trade(IID, PRICE)
        user, key = login(sim)
        broker = BreezeBroker(API_KEY, sim.DEMO_SECRET, user, key, instruments=master,
                              urls=_sdk.BreezeUrls(sim.url), notifications=False,
                              throttles=_unthrottled())  # fmt: skip
        for _ in range(100):
            broker.funds()
        with pytest.raises(BrokerError, match="limit"):
            broker._call("reading funds", broker._api.get_funds)  # noqa: SLF001
        clock[0] += 61.0
        assert broker.funds().cash > 0
    finally:
        sim.stop()


def _unthrottled() -> Any:
    from velox.brokers.throttle import RateLimit, ThrottleSet

    return ThrottleSet({"api": (RateLimit(1000, 1.0),)}, default="api")


def test_rejects_name_the_problem(rig: Rig) -> None:
    with pytest.raises(OrderRejected, match="NRML"):
        rig.broker.place_order(
            Order(
                client_id="NR-1",
                instrument_id=IID,
                side="BUY",
                qty=1,
                product="NRML",
                order_type="LIMIT",
                limit_price=700.0,
            )
        )
    with pytest.raises(OrderRejected, match="20 characters"):
        rig.broker.place_order(order("X" * 21, order_type="LIMIT", limit_price=700.0))
    assert "order.place" not in rig.sim.stats()


@pytest.mark.parametrize("version", [1, 2])
def test_history_pages_within_1000_candles_and_matches_the_file(
    master: InstrumentMaster, version: int
) -> None:
    import pandas as pd

    from tests.engine.conftest import BARS

    raw = pd.read_csv(BARS / "SBIN_1d_2017_2022.csv.gz", parse_dates=["timestamp"])
    frame = raw.set_index(pd.DatetimeIndex(raw.pop("timestamp"), name="ts")).astype("float64")
    sim = BreezeSimulator(master, bars={("NSE:SBIN", "1d"): frame})
    sim.start()
    try:
        user, key = login(sim)
        broker = BreezeBroker(API_KEY, sim.DEMO_SECRET, user, key, instruments=master,
                              urls=_sdk.BreezeUrls(sim.url), notifications=False)  # fmt: skip
        got = broker.history("NSE:SBIN", "1d", "2017-01-01", "2022-12-31", version=version)
        # six calendar years in spans of 999 days: three requests, none refused
        route = "historicalcharts" if version == 2 else "historicalcharts.v1"
        stats = sim.stats()[route]
        assert stats["count"] == 3 and set(stats["statuses"]) == {200}
        pd.testing.assert_frame_equal(got, frame.tz_convert("Asia/Kolkata"), check_freq=False,
                                      check_index_type=False)  # fmt: skip
        with _sdk.pointed_at(_sdk.BreezeUrls(sim.url)):
            too_long = broker._api.get_historical_data_v2(  # noqa: SLF001
                interval="1day", from_date="2017-01-01T00:00:00.000Z",
                to_date="2022-12-31T00:00:00.000Z", stock_code="STABAN",
                exchange_code="NSE")  # fmt: skip
        assert too_long["Status"] != 200 and "1000 candles" in too_long["Error"]
    finally:
        sim.stop()


def test_quotes_are_the_simulators_market(rig: Rig) -> None:
    rig.sim.trade(IID, 812.35, quantity=7)
    (tick,) = rig.broker.quote([IID]).values()
    assert tick.instrument_id == IID and tick.ltp == 812.35 and tick.volume == 8
    # the simulator's ladder: best bid one tick (0.05) below the last price, best ask above
    assert (tick.bid, tick.ask) == (812.30, 812.40)
    assert tick.ts.date() == rig.sim.market_now().date()
