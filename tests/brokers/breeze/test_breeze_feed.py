"""BreezeMarketData against the simulator's socket.io rate stream, through the SDK's client.

What is asserted is what the simulator printed (``trade``) arriving as Velox ticks with the
exchange's epoch time exact (the SDK's ``parse_data`` would have rendered it in local time to
the second), a dropped line coming back joined, and the raw quote list read the way the SDK's
own parser reads it (its field order is the independent reference).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.brokers.breeze.test_breeze_adapter import login
from velox.brokers.base import ConnectionEvent, ConnectionState
from velox.brokers.breeze import _sdk
from velox.brokers.breeze.adapter import BreezeBroker
from velox.brokers.breeze.feed import BreezeMarketData
from velox.brokers.breeze.mapping import tick_from_stock
from velox.brokers.breeze.simulator import BreezeSimulator
from velox.calendar import IST
from velox.errors import DataError
from velox.instruments import load_bundled_master
from velox.types import Tick


@pytest.fixture
def sim() -> Iterator[BreezeSimulator]:
    sim = BreezeSimulator(session_start=datetime(2025, 5, 20, 9, 15, 0, tzinfo=IST))
    sim.start()
    sim.trade("NSE:SBIN", 812.0)
    yield sim
    sim.stop()


class Running:
    """A feed's ``run`` on its own thread, its events in a queue."""

    def __init__(self, feed: BreezeMarketData) -> None:
        self.feed, self.events = feed, queue.Queue()
        self.thread = threading.Thread(target=feed.run, args=(self.events.put,), daemon=True)
        self.thread.start()

    def next(self, kind: type, timeout: float = 15.0, **match: object) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
                return event
        raise AssertionError(f"no {kind.__name__} {match} within {timeout} s")

    def stop(self) -> None:
        self.feed.stop()
        self.thread.join(10)


def feed_of(sim: BreezeSimulator) -> BreezeMarketData:
    user, key = login(sim)
    urls = _sdk.BreezeUrls(sim.url)
    broker = BreezeBroker(
        "velox-demo",
        sim.DEMO_SECRET,
        user,
        key,
        instruments=load_bundled_master(),
        urls=urls,
        notifications=False,
    )
    tokens = broker.stream_tokens()
    return BreezeMarketData("velox-demo", sim.DEMO_SECRET, user, key, tokens, urls=urls,
                            backoff=0.1)  # fmt: skip


def test_ticks_arrive_with_the_exchange_time_and_survive_a_dropped_line(
    sim: BreezeSimulator,
) -> None:
    feed = feed_of(sim)
    feed.subscribe(["NSE:SBIN", "NSE:RELIANCE"])
    running = Running(feed)
    try:
        running.next(ConnectionEvent, state=ConnectionState.CONNECTED)
        first = running.next(Tick, instrument_id="NSE:SBIN")  # the last print on joining
        assert first.ltp == 812.0
        when = sim.trade("NSE:RELIANCE", 1402.55, quantity=7)
        tick = running.next(Tick, instrument_id="NSE:RELIANCE")
        assert (tick.ltp, tick.volume, tick.last_qty) == (1402.55, 7, 7)
        assert tick.ts == when.replace(microsecond=0)  # Breeze's ltt is whole epoch seconds
        assert (tick.bid, tick.ask) == (1402.5, 1402.6)  # one tick either side
        sim.fault("drop_ws")
        running.next(ConnectionEvent, state=ConnectionState.DISCONNECTED)
        again = running.next(ConnectionEvent, state=ConnectionState.CONNECTED)
        assert again.detail.startswith("reconnected after")
        sim.trade("NSE:SBIN", 813.0)
        assert running.next(Tick, instrument_id="NSE:SBIN", ltp=813.0)
        feed.unsubscribe(["NSE:SBIN"])
        time.sleep(0.3)  # the leave reaches the server before the next print
        sim.trade("NSE:SBIN", 814.0)
        sim.trade("NSE:RELIANCE", 1403.0)
        running.next(Tick, instrument_id="NSE:RELIANCE", ltp=1403.0)
        leftover = [e for e in list(running.events.queue) if isinstance(e, Tick)]
        assert all(t.instrument_id != "NSE:SBIN" or t.ltp != 814.0 for t in leftover)
    finally:
        running.stop()
    assert not running.thread.is_alive()


def test_an_unknown_instrument_is_refused_by_name(sim: BreezeSimulator) -> None:
    with pytest.raises(DataError, match="NSE:NOSUCH"):
        feed_of(sim).subscribe(["NSE:NOSUCH"])


def test_the_raw_quote_list_reads_as_the_sdks_parser_reads_it(sim: BreezeSimulator) -> None:
    raw = sim.call(lambda: sim.quote_list("NSE:SBIN"))
    parsed = _sdk.sdk().connect.BreezeConnect(api_key="k").parse_data(list(raw))
    tick = tick_from_stock(list(raw), "NSE:SBIN")
    assert parsed["exchange"] == "NSE Equity" and parsed["symbol"] == "4.1!3045"
    assert (tick.ltp, tick.volume, tick.last_qty) == (parsed["last"], parsed["ttq"], parsed["ltq"])
    assert (tick.bid, tick.ask) == (parsed["bPrice"], parsed["sPrice"])
    # the SDK renders the same instant in the machine's zone, without one: Velox keeps it aware
    local = datetime.fromtimestamp(tick.ts.timestamp()).strftime("%c")
    assert tick.ts.tzinfo is not None and parsed["ltt"] == local
