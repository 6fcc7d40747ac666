"""The broker contract suite (velox.testing.BROKER_CONTRACT) against every venue Velox has.

The in-process simulator; the paper simulator server reached through its socket
(``PaperBroker``), which is what a paper engine talks to; and the same server as the dry-run
venue of live data (``PaperVenue``: the market reaches it as the engine's ticks, sent without
waiting for an answer). The Kite adapter runs this suite in tests/brokers/kite.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from velox.brokers.sim import SimBroker
from velox.brokers.sim.paper import PaperBroker, PaperConnection, PaperVenue, SimServer
from velox.calendar import IST
from velox.feeds import to_ns
from velox.testing import BROKER_CONTRACT, VenueHarness

PRICE = 2_500.0


def _now(step: int) -> datetime:
    """A trading-hours time that moves on by one second per trade (2025-04-07, a Monday)."""
    return datetime(2025, 4, 7, 10, 0, tzinfo=IST).replace(second=step % 60, minute=step // 60)


@pytest.fixture(params=["sim", "paper", "dry-run"])
def harness(request, tmp_path: Path) -> Iterator[VenueHarness]:  # noqa: ANN001
    from velox.modes import default_instruments

    master = default_instruments()
    instrument = master("NSE:RELIANCE")
    sim = SimBroker(master, initial_cash=10_000_000)
    steps = itertools.count(1)
    if request.param == "sim":
        sim.on_quote(instrument.id, _now(0), PRICE)
        yield VenueHarness(
            broker=sim,
            instrument=instrument,
            price=PRICE,
            trade=lambda p: sim.on_quote(instrument.id, _now(next(steps)), p),
            reconnect=lambda: sim,
        )
        return
    server = SimServer(sim, None, tmp_path / "sim.sock", speed=1.0)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    assert server.ready.wait(10), "the simulator server did not start"
    connections: list[PaperConnection] = []

    kind = PaperBroker if request.param == "paper" else PaperVenue

    def connect() -> PaperBroker:
        connections.append(PaperConnection(tmp_path / "sim.sock"))
        return kind(connections[-1])

    broker = connect()

    def trade(price: float) -> None:
        if isinstance(broker, PaperVenue):  # the engine's way: a tick, no answer awaited
            broker.on_quote(instrument.id, _now(next(steps)), price)
            return
        broker.connection.request(
            "quote", instrument_id=instrument.id, ns=to_ns(_now(next(steps))), price=price
        )

    trade(PRICE)
    # a request/reply round trip after the trade: every postback sent before it has arrived
    yield VenueHarness(broker, instrument, PRICE, trade, connect, settle=broker.funds)
    server.stop()
    thread.join(5)
    for conn in connections:
        conn.close()


@pytest.mark.parametrize("check", BROKER_CONTRACT, ids=lambda c: c.__name__)
def test_broker_contract(harness: VenueHarness, check) -> None:  # noqa: ANN001
    check(harness)
