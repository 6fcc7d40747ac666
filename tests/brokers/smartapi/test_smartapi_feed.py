"""SmartApiMarketData against the simulator's ``/smart-stream``, through ``SmartWebSocketV2``.

What is asserted is what the simulator printed (its ``/_sim/trade``) arriving as Velox ticks,
a dropped socket coming back subscribed, and the SDK's class-level subscription list not
leaking from one feed into another.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from velox.brokers.base import ConnectionEvent, ConnectionState, TickMode
from velox.brokers.smartapi._sdk import SmartConnect
from velox.brokers.smartapi.adapter import SmartApiBroker
from velox.brokers.smartapi.feed import SmartApiMarketData
from velox.brokers.smartapi.simulator import SmartApiSimulator
from velox.errors import DataError
from velox.instruments import load_bundled_master
from velox.types import Tick


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[str, str, str]]:
    broker = SmartApiBroker("k", "C1", "jwt", instruments=load_bundled_master(), root="http://x")
    return broker.keys()


@pytest.fixture
def sim() -> Iterator[SmartApiSimulator]:
    sim = SmartApiSimulator()
    sim.start()
    sim.trade("NSE:SBIN", 812.0)
    yield sim
    sim.stop()


class Running:
    """A feed's ``run`` on its own thread, its events in a queue."""

    def __init__(self, feed: SmartApiMarketData) -> None:
        self.feed, self.events = feed, queue.Queue()
        self.thread = threading.Thread(target=feed.run, args=(self.events.put,), daemon=True)
        self.thread.start()

    def next(self, kind: type, timeout: float = 10.0, **match: object) -> object:
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
        self.thread.join(timeout=10)


def _feed(sim: SmartApiSimulator, keys: dict[str, tuple[str, str, str]]) -> SmartApiMarketData:
    time.sleep(1.05)  # one login a second at Angel (and the simulator)
    data = SmartConnect(api_key="k", root=sim.url).generateSession("C1", "1111", "000000")["data"]
    return SmartApiMarketData(data["jwtToken"], "k", "C1", data["feedToken"], keys,
                              url=sim.ws_url, backoff=0.1)  # fmt: skip


def test_ticks_arrive_and_survive_a_dropped_socket(sim: SmartApiSimulator, keys: dict) -> None:
    feed = _feed(sim, keys)
    feed.subscribe(["NSE:SBIN"], TickMode.FULL)
    run = Running(feed)
    try:
        run.next(ConnectionEvent, state=ConnectionState.CONNECTED)
        snapshot = run.next(Tick, instrument_id="NSE:SBIN")
        assert snapshot.ltp == 812.0  # Angel sends the last print on subscribe
        sim.trade("NSE:SBIN", 812.35)
        tick = run.next(Tick, ltp=812.35)
        assert tick.instrument_id == "NSE:SBIN" and tick.bid is not None and tick.ask is not None
        sim.fault("drop_ws")
        run.next(ConnectionEvent, state=ConnectionState.DISCONNECTED)
        back = run.next(ConnectionEvent, state=ConnectionState.CONNECTED)
        assert back.detail.startswith("reconnected after")
        sim.trade("NSE:SBIN", 813.0)
        assert run.next(Tick, ltp=813.0).instrument_id == "NSE:SBIN"  # resubscribed
        assert feed.connects == 2
    finally:
        run.stop()
    assert not run.thread.is_alive()


def test_two_feeds_keep_their_own_subscriptions(sim: SmartApiSimulator, keys: dict) -> None:
    sim.trade("NSE:RELIANCE", 1402.5)
    first, second = _feed(sim, keys), _feed(sim, keys)
    first.subscribe(["NSE:SBIN"], TickMode.LTP)
    second.subscribe(["NSE:RELIANCE"], TickMode.QUOTE)
    a, b = Running(first), Running(second)
    try:
        a.next(Tick, instrument_id="NSE:SBIN")
        b.next(Tick, instrument_id="NSE:RELIANCE")
        sim.trade("NSE:SBIN", 811.0)
        sim.trade("NSE:RELIANCE", 1403.0)
        a.next(Tick, ltp=811.0)
        b.next(Tick, ltp=1403.0)
        seen_b = [e for e in list(b.events.queue) if isinstance(e, Tick)]
        assert all(t.instrument_id == "NSE:RELIANCE" for t in seen_b)
        first.unsubscribe(["NSE:SBIN"])
        time.sleep(0.3)
        sim.trade("NSE:SBIN", 810.0)
        sim.trade("NSE:RELIANCE", 1404.0)
        b.next(Tick, ltp=1404.0)
        time.sleep(0.3)
        assert not any(isinstance(e, Tick) and e.ltp == 810.0 for e in list(a.events.queue))
    finally:
        a.stop()
        b.stop()


def test_an_instrument_angel_does_not_have_is_named(sim: SmartApiSimulator, keys: dict) -> None:
    with pytest.raises(DataError, match="NSE:NOSUCH"):
        _feed(sim, keys).subscribe(["NSE:NOSUCH"])
