"""The venue contracts every broker implements: simulated, Zerodha, Angel One, ICICI.

Three protocols, and the engine uses nothing else of a venue:

* :class:`Broker` — orders and account state: place/modify/cancel, today's orders and fills,
  positions, holdings, funds, and :class:`Capabilities` as data (what order types, products and
  validities the venue takes, whether it can modify a stop, GTT, baskets, its order rate).
  Order and fill updates flow back as *postbacks* to a :class:`BrokerListener`; a live adapter
  calls the listener from its SDK thread, so the engine's listener only puts events on its
  queue (one thread owns all state).
* :class:`MarketData` — the tick source: subscribe/unsubscribe instruments in a
  :class:`TickMode`, then ``run(callback)`` hands the callback every :class:`~velox.types.Tick`
  and every :class:`ConnectionEvent` (connected, disconnected, reconnecting) in arrival order.
  Replays of stored data implement it too.
* :class:`SimulatedVenue` — what only a simulator has: the engine's ticks (``on_quote``), its
  clock (``on_clock``), and which instruments it needs ticks for (``watched``). The engine
  hands a simulated venue only the ticks it needs (an instrument with working orders, or an
  intraday/F&O position to square off), and the latest unseen one just before an order.

Velox's ``client_id`` travels in the broker's order tag so a restarted engine can match broker
orders to its own and never send one twice. ``velox.testing.broker_contract_suite`` checks any
implementation against these contracts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from velox.types import Fill, Order, OrderType, Position, Product, Tick, Validity


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a venue accepts, as data (the engine and the contract suite read it).

    ``max_orders_per_second`` is the venue's own order-rate limit; Velox's risk throttle stays
    below it and below SEBI's 10 orders/s per exchange. ``tag_length`` is how many characters of
    the order tag survive at the venue (the client id must fit).
    """

    order_types: frozenset[OrderType] = frozenset(OrderType)
    products: frozenset[Product] = frozenset(Product)
    validities: frozenset[Validity] = frozenset(Validity)
    modify: bool = True
    modify_stop: bool = True
    gtt: bool = False
    basket: bool = False
    varieties: tuple[str, ...] = ("regular",)
    max_orders_per_second: float = 10.0
    tag_length: int = 20

    def supports(self, order: Order) -> str | None:
        """Return why the venue cannot take ``order`` (``None`` if it can)."""
        if order.order_type not in self.order_types:
            return f"order type {order.order_type.value} is not supported"
        if order.product not in self.products:
            return f"product {order.product.value} is not supported"
        if order.validity not in self.validities:
            return f"validity {order.validity.value} is not supported"
        if len(order.tag) > self.tag_length:
            return f"tag {order.tag!r} is longer than {self.tag_length} characters"
        return None


class TickMode(StrEnum):
    """How much of each tick a subscription asks for (brokers map these to their own modes)."""

    LTP = "ltp"
    QUOTE = "quote"
    FULL = "full"


class ConnectionState(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A market-data connection changed state (the engine stores an alert for a disconnect)."""

    source: str
    state: ConnectionState
    ts: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Funds:
    """Account funds as the broker reports them (rupees).

    ``available`` is what a new order may use: cash less margin blocked by open orders and
    positions. ``realised_pnl`` and ``charges`` are for the trading day.
    """

    cash: float
    used_margin: float = 0.0
    realised_pnl: float = 0.0
    charges: float = 0.0

    @property
    def available(self) -> float:
        return self.cash - self.used_margin


class BrokerListener(Protocol):
    """Receives postbacks. Implementations must be quick and thread-safe (enqueue, return)."""

    def on_order_update(self, order: Order) -> None: ...

    def on_fill(self, fill: Fill) -> None: ...


@runtime_checkable
class ConnectionListener(Protocol):
    """A listener that also hears about the broker's own connections: a broker whose order
    updates come on a socket of their own (SmartAPI's order-update websocket) reports it going
    down and coming back, so the engine alerts on it and catches up, as for market data."""

    def on_connection(self, event: ConnectionEvent) -> None: ...


@runtime_checkable
class Broker(Protocol):
    """What the engine needs from a broker: everything it calls, and nothing else.

    Every method raises :class:`velox.errors.BrokerError` subclasses, never SDK exceptions:
    :class:`~velox.errors.OrderRejected` carries the broker-style reason text.
    """

    name: str
    capabilities: Capabilities

    def set_listener(self, listener: BrokerListener) -> None:
        """Register the receiver of order updates and fills (replaces any previous one)."""
        ...

    def place_order(self, order: Order) -> str:
        """Send ``order`` (already risk-checked) and return the broker order id."""
        ...

    def modify_order(
        self,
        broker_order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        trigger_price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        """Change an open order's quantity/prices/type."""
        ...

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel an open order (an already-terminal order raises OrderRejected)."""
        ...

    def orders(self) -> list[Order]:
        """Return today's orders with their latest status (for reconciliation)."""
        ...

    def fills(self) -> list[Fill]:
        """Return today's executions (a restarted engine books the ones it missed)."""
        ...

    def positions(self) -> list[Position]:
        """Return net positions per instrument and product."""
        ...

    def holdings(self) -> list[Position]:
        """Return delivery holdings carried from earlier sessions."""
        ...

    def funds(self) -> Funds:
        """Return the account's funds."""
        ...


@runtime_checkable
class MarketData(Protocol):
    """A source of ticks: a broker's live feed, or a replay of stored data.

    ``run`` blocks, handing ``callback`` every :class:`~velox.types.Tick` and every
    :class:`ConnectionEvent` in arrival order (from the feed's own thread for a live feed),
    until the feed ends or :meth:`stop` is called.
    """

    name: str

    def subscribe(self, instrument_ids: Collection[str], mode: TickMode = TickMode.QUOTE) -> None:
        """Start ticks for these instruments (an instrument the source cannot serve raises
        :class:`velox.errors.DataError` naming what it has)."""
        ...

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        """Stop ticks for these instruments."""
        ...

    def run(self, callback: Callable[[Tick | ConnectionEvent], object]) -> None:
        """Deliver events to ``callback`` until the end of the feed or :meth:`stop`."""
        ...

    def stop(self) -> None:
        """End :meth:`run` (any thread)."""
        ...


@runtime_checkable
class SimulatedVenue(Protocol):
    """What only a simulated exchange has: it sees the engine's ticks and clock.

    A live broker has its own market; a simulator must be told it. The engine calls
    :meth:`watched` after order and position changes, hands it the ticks of those instruments
    as they arrive (:meth:`on_quote`, as plain fields: most replayed ticks exist only as numbers
    in columns), the latest unseen tick of an instrument just before an order in it, and its
    time before each order (:meth:`on_clock`).
    """

    def on_quote(
        self,
        instrument_id: str,
        ts: datetime,
        price: float,
        volume: int | None = None,
        epoch: float | None = None,
    ) -> None:
        """Take one tick (``epoch`` is ``ts.timestamp()`` when the caller has it)."""
        ...

    def on_clock(self, now: datetime, epoch: float | None = None) -> None:
        """Move the venue's clock to the engine's time."""
        ...

    def watched(
        self,
        open_orders: Iterable[Order],
        positions: Mapping[tuple[str, Product], Position],
    ) -> set[str]:
        """Return the instruments whose ticks the venue must see, given the account's state."""
        ...


@dataclass(frozen=True, slots=True)
class LiveConnection:
    """A logged-in broker: its :class:`Broker`, its :class:`MarketData` (order updates from
    the feed already wired to the broker's listener) and how to let both go."""

    broker: Broker
    feed: MarketData
    close: Callable[[], None]


def simulated_venue(broker: Broker) -> SimulatedVenue | None:
    """Return ``broker`` as a :class:`SimulatedVenue` if it is one (declared by the protocol)."""
    return broker if isinstance(broker, SimulatedVenue) else None


__all__ = [
    "Broker",
    "BrokerListener",
    "Capabilities",
    "ConnectionEvent",
    "ConnectionState",
    "Funds",
    "LiveConnection",
    "MarketData",
    "SimulatedVenue",
    "TickMode",
    "simulated_venue",
]
