"""SmartApiBroker against the loopback SmartAPI simulator, through the official SDK (no mocks).

The simulator (``velox.brokers.smartapi.simulator``) speaks SmartAPI's REST protocol and its
order-update websocket on 127.0.0.1; ``SmartConnect`` and ``SmartWebSocketOrderUpdate`` talk
to it. Request counts and statuses are read from the simulator's own statistics, so what is
asserted is what went over the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from velox.brokers.smartapi._sdk import SmartConnect
from velox.brokers.smartapi.adapter import SmartApiBroker
from velox.brokers.smartapi.simulator import SmartApiSimulator
from velox.errors import AuthExpired, OrderRejected
from velox.instruments import InstrumentMaster, load_bundled_master
from velox.testing import BROKER_CONTRACT, VenueHarness
from velox.types import Fill, Order, OrderStatus

IID = "NSE:SBIN"
PRICE = 812.0
API_KEY = "velox-demo"


@pytest.fixture(scope="module")
def master() -> InstrumentMaster:
    return load_bundled_master()


@dataclass
class Rig:
    sim: SmartApiSimulator
    make: Callable[..., SmartApiBroker]
    brokers: list[SmartApiBroker] = field(default_factory=list)

    @property
    def broker(self) -> SmartApiBroker:
        return self.brokers[0]

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every order update the simulator sent has been handled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(b.updates_received for b in self.brokers) >= self.sim.updates_sent():
                return
            time.sleep(0.02)
        raise AssertionError("order updates were not delivered")


@pytest.fixture
def rig(master: InstrumentMaster) -> Iterator[Rig]:
    sim = SmartApiSimulator(master)
    sim.start()
    sim.trade(IID, PRICE)
    login = SmartConnect(api_key=API_KEY, root=sim.url).generateSession("C0001", "1234", "123456")
    tokens = login["data"]
    rig = Rig(sim, lambda: None)  # type: ignore[arg-type]

    def make(**options: Any) -> SmartApiBroker:
        broker = SmartApiBroker(
            API_KEY, "C0001", tokens["jwtToken"].removeprefix("Bearer "),
            feed_token=tokens["feedToken"], refresh_token=tokens["refreshToken"],
            instruments=master, root=sim.url, order_ws_url=sim.order_ws_url,
            **{"timeout": 3.0, "settle": 0.2, **options},
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


def test_a_timed_out_place_is_looked_up_not_duplicated(rig: Rig) -> None:
    rig.sim.fault("timeout_after_place", delay=2.0)
    broker = rig.make(timeout=0.5, settle=0.1)
    oid = broker.place_order(order("TO-1", order_type="LIMIT", limit_price=700.0))
    tags = [o["ordertag"] for o in rig.sim.state()["orders"]]
    assert tags.count("TO-1") == 1 and rig.sim.stats()["api.order.place"]["count"] == 1
    assert any(o.broker_order_id == oid and o.client_id == "TO-1" for o in broker.orders())


def test_a_restarted_engine_resending_a_client_id_gets_the_same_order(rig: Rig) -> None:
    first = rig.broker.place_order(order("RS-1", order_type="LIMIT", limit_price=700.0))
    again = rig.make().place_order(order("RS-1", order_type="LIMIT", limit_price=700.0))
    assert again == first and rig.sim.stats()["api.order.place"]["count"] == 1


def test_an_expired_session_is_auth_expired_and_stops_sending(rig: Rig) -> None:
    rig.sim.fault("expire_token")
    with pytest.raises(AuthExpired, match="velox broker login smartapi"):
        rig.broker.orders()
    sent = rig.sim.stats()["api.order.book"]["count"]
    with pytest.raises(AuthExpired):
        rig.broker.place_order(order("EX-1"))
    assert rig.sim.stats()["api.order.book"]["count"] == sent  # nothing more went out
    assert "api.order.place" not in rig.sim.stats()


def test_reads_stay_within_angels_published_limits(rig: Rig) -> None:
    for _ in range(4):
        rig.broker.orders()  # getOrderBook: 1 a second at Angel
    stats = rig.sim.stats()["api.order.book"]
    assert set(stats["statuses"]) == {200}  # the simulator counted, and refused none
    times = stats["times"]
    assert all(b - a >= 0.95 for a, b in zip(times, times[1:], strict=False)), times


def test_the_simulator_refuses_a_burst_above_the_limit(rig: Rig) -> None:
    raw = SmartConnect(api_key="burst", root=rig.sim.url, access_token=rig.broker._jwt)  # noqa: SLF001
    answers = [raw.orderBook() for _ in range(3)]
    assert answers[0]["status"] is True
    assert any("exceeding access rate" in a["message"] for a in answers[1:])
    assert 403 in rig.sim.stats()["api.order.book"]["statuses"]


def test_rejections_carry_angels_message(rig: Rig) -> None:
    with pytest.raises(OrderRejected, match="ordertag|20-character"):
        rig.broker.place_order(order("X" * 21))
    oid = rig.broker.place_order(order("OFF-1", order_type="LIMIT", limit_price=700.03))
    rig.settle()
    (rejected,) = [o for o in rig.broker.orders() if o.broker_order_id == oid]
    assert rejected.status is OrderStatus.REJECTED and "Tick size" in rejected.status_message


def test_order_updates_survive_a_dropped_websocket(rig: Rig) -> None:
    got: list[Fill] = []

    class Listener:
        def on_order_update(self, order: Order) -> None:
            pass

        def on_fill(self, fill: Fill) -> None:
            got.append(fill)

    rig.broker.set_listener(Listener())
    rig.broker.place_order(order("DR-1", order_type="LIMIT", limit_price=800.0))
    rig.settle()
    rig.sim.fault("drop_ws")
    rig.sim.trade(IID, 799.0)  # fills while the update socket is down: missed, then resynced
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [f.client_id for f in got] == ["DR-1"]
    assert [f.fill_id for f in got] == [t["fillid"] for t in rig.sim.state()["trades"]]


def test_history_pages_within_angels_span_and_matches_the_file(master: InstrumentMaster) -> None:
    import pandas as pd

    from tests.engine.conftest import BARS

    raw = pd.read_csv(BARS / "SBIN_1d_2017_2022.csv.gz", parse_dates=["timestamp"])
    frame = raw.set_index(pd.DatetimeIndex(raw.pop("timestamp"), name="ts")).astype("float64")
    sim = SmartApiSimulator(master, bars={("NSE:SBIN", "1d"): frame})
    sim.start()
    try:
        login = SmartConnect(api_key=API_KEY, root=sim.url).generateSession("C1", "1", "1")
        broker = SmartApiBroker(API_KEY, "C1", login["data"]["jwtToken"], instruments=master,
                                root=sim.url)  # fmt: skip
        got = broker.history("NSE:SBIN", "1d", "2017-01-01", "2022-12-31")
        # six years of days: two requests of at most 2,000 days, neither refused
        stats = sim.stats()["api.candle.data"]
        assert stats["count"] == 2 and set(stats["statuses"]) == {200}
        pd.testing.assert_frame_equal(got, frame.tz_convert("Asia/Kolkata"), check_freq=False,
                                      check_index_type=False)  # fmt: skip
        raw_sdk = SmartConnect(api_key=API_KEY, root=sim.url, access_token=broker._jwt)  # noqa: SLF001
        too_long = raw_sdk.getCandleData({"exchange": "NSE", "symboltoken": "3045",
                                          "interval": "ONE_DAY", "fromdate": "2017-01-01 09:15",
                                          "todate": "2022-12-31 15:30"})  # fmt: skip
        assert too_long["status"] is False and "2000 days" in too_long["message"]
    finally:
        sim.stop()


def test_quotes_are_the_simulators_market(rig: Rig) -> None:
    rig.sim.trade(IID, 812.35, quantity=7)
    (tick,) = rig.broker.quote([IID]).values()
    assert tick.instrument_id == IID and tick.ltp == 812.35
    # the simulator's ladder: best bid one tick (0.05) below the last price, best ask above
    assert (tick.bid, tick.ask) == (812.30, 812.40)
    assert tick.ts.date() == rig.sim.market_now().date()


def test_instrument_master_download_reads_paise_and_keeps_kite_tokens(
    rig: Rig,
    store,  # noqa: ANN001
) -> None:
    from velox.instruments import load_bundled_master

    bundled = load_bundled_master()
    store.write_instruments(bundled.table)  # the store knows Kite's tokens too
    master = rig.broker.download_instruments(store, url=rig.sim.master_url)
    assert rig.sim.stats()["scrip.master"]["count"] == 1
    # facts of Angel's own file (data/instruments/angel_scrip_master_sample_2025-04.json.gz):
    # NIFTY25JUN2623000CE is token 37799, strike 2300000 and tick 5 in paise, lot 75
    option = master.table.set_index("angel_symbol").loc["NIFTY25JUN2623000CE"]
    assert (str(option["angel_token"]), float(option["strike"]), float(option["tick_size"]),
            int(option["lot_size"])) == ("37799", 23000.0, 0.05, 75)  # fmt: skip
    sbin = master.get("NSE:SBIN")
    assert (sbin.tick_size, sbin.lot_size) == (0.05, 1)
    stored = store.read_instruments().set_index("id")
    assert str(stored.loc["NSE:SBIN", "angel_token"]) == "3045"
    assert str(stored.loc["NSE:SBIN", "kite_token"]) == "779521"  # not lost by the upsert
    assert len(stored) >= len(bundled.table)
