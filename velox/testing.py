"""Helpers shared by Velox's tests and benchmarks: the shared market data and the broker
contract suite (:data:`BROKER_CONTRACT`, run against any venue through a :class:`VenueHarness`).

The project's real market data (read-only, with PROVENANCE.md per folder) lives in
``shared/data/market`` beside the repository checkout — where CI puts it — unless
``$MARKET_DATA_DIR`` points elsewhere. (Not a ``VELOX_*`` variable: those are settings, and
unknown settings are errors.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from velox.brokers.base import Broker
from velox.types import Fill, Instrument, Order

if TYPE_CHECKING:
    from velox.costs import CostModel

_REPO = Path(__file__).resolve().parent.parent
_CANDIDATES = (_REPO.parent / "shared" / "data" / "market", Path("/work/shared/data/market"))


#: Zerodha's recorded Kite Connect responses and ticker packets (wire fixtures, see
#: data/brokers/kiteconnect-mocks/PROVENANCE.md), shipped with Velox.
KITE_MOCKS = _REPO / "data" / "brokers" / "kiteconnect-mocks"


def shared_market_data() -> Path:
    """Return the folder holding the shared real market data sets."""
    override = os.environ.get("MARKET_DATA_DIR")
    if override:
        return Path(override)
    return next((c for c in _CANDIDATES if c.exists()), _CANDIDATES[0])


def market_file(*parts: str) -> Path:
    """Return a path inside the shared market data, for a test that needs it.

    A missing file skips the test on a developer machine without the data and fails it under
    ``CI=true``, where a real-data test must never silently disappear.
    """
    import pytest

    path = shared_market_data().joinpath(*parts)
    if not path.exists():
        message = f"real market data {path} is missing (set MARKET_DATA_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# --------------------------------------------------------------------------------------------
# The broker contract suite: what every venue must do for the engine (velox.brokers.base)
# --------------------------------------------------------------------------------------------


@dataclass
class VenueHarness:
    """A venue under test and the levers the contract suite needs to drive it.

    ``broker`` is the :class:`~velox.brokers.base.Broker` under test, logged in to an account
    that starts flat with ample cash. ``trade(price)`` makes the venue's market trade
    ``instrument`` once at ``price`` (a simulator tick; a loopback broker simulator's trade),
    after which the venue has matched its working orders. ``reconnect()`` returns a new broker
    object on the same account, as a restarted engine would build. ``settle()`` waits until
    postbacks in flight have been delivered (a no-op for an in-process simulator).
    """

    broker: Broker
    instrument: Instrument
    price: float
    trade: Callable[[float], None]
    reconnect: Callable[[], Broker]
    settle: Callable[[], None] = lambda: None


class _Recorder:
    """A postback listener that keeps what it is told (thread-safe enough: list appends)."""

    def __init__(self) -> None:
        self.orders: list[Order] = []
        self.fills: list[Fill] = []

    def on_order_update(self, order: Order) -> None:
        self.orders.append(order)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)


def _order(h: VenueHarness, cid: str, side: str, order_type: str, **prices: float) -> Order:
    from velox.types import snap_to_tick as round_to_tick

    snapped = {k: round_to_tick(v, h.instrument.tick_size) for k, v in prices.items()}
    return Order(
        client_id=cid, instrument_id=h.instrument.id, side=side, qty=h.instrument.lot_size,
        order_type=order_type, product="MIS", tag=cid, created_at=None, **snapped,
    )  # fmt: skip


def _status(h: VenueHarness, broker_order_id: str) -> Order:
    h.settle()
    for order in h.broker.orders():
        if order.broker_order_id == broker_order_id:
            return order
    raise AssertionError(f"order {broker_order_id} is not in the venue's order book")


def check_market_order_fills_on_the_next_trade(h: VenueHarness) -> None:
    """A MARKET order fills at the next trade; the postbacks and fills() report it with its
    client id, and positions() holds the lot."""
    listener = _Recorder()
    h.broker.set_listener(listener)
    oid = h.broker.place_order(_order(h, "CT-1", "BUY", "MARKET"))
    h.trade(h.price)
    order = _status(h, oid)
    assert order.status.value == "FILLED", order
    assert order.client_id == "CT-1" and order.filled_qty == h.instrument.lot_size
    assert any(f.client_id == "CT-1" for f in listener.fills), "no fill postback"
    assert any(o.client_id == "CT-1" and o.status.value == "FILLED" for o in listener.orders)
    assert [f.client_id for f in h.broker.fills()].count("CT-1") >= 1
    held = {(p.instrument_id, p.qty) for p in h.broker.positions() if p.qty}
    assert (h.instrument.id, h.instrument.lot_size) in held


def check_limit_rests_then_fills_when_crossed(h: VenueHarness) -> None:
    """A buy LIMIT below the market works until the market trades at or below it."""
    below = h.price * 0.98
    oid = h.broker.place_order(_order(h, "CT-2", "BUY", "LIMIT", limit_price=below))
    h.trade(h.price)
    assert _status(h, oid).status.value == "OPEN"
    h.trade(h.price * 0.97)
    order = _status(h, oid)
    assert order.status.value == "FILLED" and order.average_price <= order.limit_price


def check_stops_trigger(h: VenueHarness) -> None:
    """SL and SL-M sells trigger when the market trades at or through the trigger."""
    ids = [
        h.broker.place_order(_order(h, "CT-3", "SELL", "SL-M", trigger_price=h.price * 0.95)),
        h.broker.place_order(
            _order(h, "CT-4", "SELL", "SL", trigger_price=h.price * 0.95, limit_price=h.price * 0.9)
        ),
    ]
    h.trade(h.price)
    assert [_status(h, i).status.value for i in ids] == ["TRIGGER_PENDING"] * 2
    h.trade(h.price * 0.94)
    assert [_status(h, i).status.value for i in ids] == ["FILLED"] * 2


def check_modify_and_cancel(h: VenueHarness) -> None:
    """A working LIMIT can be modified (the book shows the new price and quantity) and
    cancelled; cancelling it again is refused with :class:`velox.errors.OrderRejected`."""
    from velox.errors import OrderRejected
    from velox.types import snap_to_tick as round_to_tick

    oid = h.broker.place_order(_order(h, "CT-5", "BUY", "LIMIT", limit_price=h.price * 0.9))
    new_price = round_to_tick(h.price * 0.91, h.instrument.tick_size)
    h.broker.modify_order(oid, qty=2 * h.instrument.lot_size, limit_price=new_price)
    order = _status(h, oid)
    assert (order.qty, order.limit_price) == (2 * h.instrument.lot_size, new_price)
    h.broker.cancel_order(oid)
    assert _status(h, oid).status.value == "CANCELLED"
    try:
        h.broker.cancel_order(oid)
    except OrderRejected:
        pass
    else:
        raise AssertionError("cancelling a cancelled order must raise OrderRejected")


def check_rejects_are_mapped(h: VenueHarness) -> None:
    """A price off the tick grid and a quantity off the lot are refused with a reason."""
    from velox.errors import OrderRejected

    off_grid = _order(h, "CT-6", "BUY", "LIMIT", limit_price=h.price * 0.9)
    off_grid = replace(off_grid, limit_price=off_grid.limit_price + h.instrument.tick_size / 3)
    bad = [off_grid]
    if h.instrument.lot_size > 1:
        bad.append(replace(_order(h, "CT-7", "BUY", "MARKET"), qty=h.instrument.lot_size + 1))
    for order in bad:
        try:
            oid = h.broker.place_order(order)
        except OrderRejected as exc:
            assert exc.reason, "a reject must say why"
            continue
        status = _status(h, oid)  # some venues accept the request and reject the order
        assert status.status.value == "REJECTED" and status.status_message, status


def check_reconcile_into_an_empty_oms(h: VenueHarness) -> None:
    """An engine that lost its state (an empty OMS) finds the venue's position as a mismatch:
    reconciliation reports it and never invents it."""
    from velox.oms import OMS, MemoryAuditLog

    h.broker.place_order(_order(h, "CT-8", "BUY", "MARKET"))
    h.trade(h.price)
    h.settle()
    empty = OMS(MemoryAuditLog(), run_id="CT")
    problems = empty.reconcile(h.broker.orders(), h.broker.positions(), h.broker.holdings())
    assert any(h.instrument.id in p for p in problems), problems
    assert empty.account_positions() == {}


def check_restart_sees_the_same_account(h: VenueHarness) -> None:
    """A reconnected broker object reports the same orders, fills and positions."""
    oid = h.broker.place_order(_order(h, "CT-9", "BUY", "LIMIT", limit_price=h.price * 0.9))
    h.settle()
    before = (h.broker.orders(), h.broker.fills(), h.broker.positions())
    again = h.reconnect()
    after = (again.orders(), again.fills(), again.positions())
    key = lambda o: (o.client_id, o.broker_order_id, o.status, o.filled_qty)  # noqa: E731
    assert sorted(map(key, after[0])) == sorted(map(key, before[0]))
    assert sorted(f.fill_id for f in after[1]) == sorted(f.fill_id for f in before[1])
    assert sorted((p.instrument_id, p.qty) for p in after[2]) == sorted(
        (p.instrument_id, p.qty) for p in before[2]
    )
    assert any(o.broker_order_id == oid and not o.is_terminal for o in after[0])


def check_capabilities_are_declared(h: VenueHarness) -> None:
    """The venue declares its capabilities as data, and takes what it declares."""
    from velox.brokers.base import Capabilities

    caps = h.broker.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.max_orders_per_second > 0 and caps.tag_length >= len("R123-4567")
    assert caps.supports(_order(h, "CT-10", "BUY", "MARKET")) is None


#: Every check of the broker contract, in the order they are run.
BROKER_CONTRACT = (
    check_capabilities_are_declared,
    check_market_order_fills_on_the_next_trade,
    check_limit_rests_then_fills_when_crossed,
    check_stops_trigger,
    check_modify_and_cancel,
    check_rejects_are_mapped,
    check_reconcile_into_an_empty_oms,
    check_restart_sees_the_same_account,
)


def zero_cost_model() -> CostModel:
    """Return a :class:`velox.costs.CostModel` whose every rate and brokerage is zero.

    For comparisons with libraries run without commission (``commission=0``): the same dated
    schedule with each rate ``"0"``, and the ``"zero"`` brokerage plan.

    Examples
    --------
    >>> from datetime import date
    >>> from velox.types import Instrument, InstrumentKind, Product, Side
    >>> sbin = Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ)
    >>> model = zero_cost_model()
    >>> model.fill_charges(sbin, Product.CNC, Side.BUY, 10, 800.0, date(2024, 5, 2)).total
    0.0
    """
    from dataclasses import fields as dataclass_fields

    from velox.costs import DEFAULT_SCHEDULE, CostModel

    def zero(value: object) -> object:
        if hasattr(value, "items"):
            return {k: zero(v) for k, v in value.items()}  # type: ignore[attr-defined]
        if isinstance(value, tuple):
            if len(value) == 2 and hasattr(value[0], "toordinal"):  # (effective_from, rates)
                return (value[0], zero(value[1]))
            return tuple(zero(v) for v in value)
        if isinstance(value, str):
            return "0"
        return 0 if isinstance(value, int | float) else value

    tables = {
        f.name: zero(getattr(DEFAULT_SCHEDULE, f.name))
        for f in dataclass_fields(DEFAULT_SCHEDULE)
        if f.name not in ("coverage_start", "state")
    }
    return CostModel("zero", replace(DEFAULT_SCHEDULE, **tables))  # type: ignore[arg-type]
