"""The one broker boundary every venue implements: simulated, Zerodha, Angel One, ICICI.

The engine talks to brokers only through :class:`Broker`. Order and fill updates flow back as
*postbacks* to a :class:`BrokerListener`; a live adapter calls the listener from its SDK thread,
so the engine's listener only puts events on its queue (one thread owns all state).

Velox's ``client_id`` travels in the broker's order tag so a restarted engine can match broker
orders to its own and never send one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from velox.types import Fill, Order, OrderType, Position


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
class Broker(Protocol):
    """What the engine needs from a broker.

    Every method raises :class:`velox.errors.BrokerError` subclasses, never SDK exceptions:
    :class:`~velox.errors.OrderRejected` carries the broker-style reason text.
    """

    name: str

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

    def positions(self) -> list[Position]:
        """Return net positions per instrument and product."""
        ...

    def holdings(self) -> list[Position]:
        """Return delivery holdings carried from earlier sessions."""
        ...

    def funds(self) -> Funds:
        """Return the account's funds."""
        ...
