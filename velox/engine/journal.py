"""What a running engine tells the outside world: its run journal and its alerts.

The engine owns the run's state in memory; a :class:`RunJournal` is where it reports each change
as it happens, so dashboards, alert delivery and reports have something to read while the run
is still going. The store's :class:`velox.store.RunRecorder` is the journal of every recorded
run (paper and live always, a replay with ``record=True``); it only appends to memory on the
engine's thread and writes in batches from its own, so the hot path does no I/O.

What the engine reports, and when:

=============  ==========================================================================
order          every new state of every order (created, risk-checked, sent, updated, …)
fill           every fill booked, with the strategy's and the account's position after it
equity         the sampled equity curve, handed over in slices on the engine's timers
               (never its last point, which the next sample at the same instant may
               replace) and in full when the run ends
risk_event     every breach, kill, reset and reconciliation alert
alert          every event a person must hear about (:data:`ALERT_KINDS` of the store)
quote          every valid tick of a paper or live run (the tick loop; a bar replay has
               none): a console's watchlist and forming candle come from it
heartbeat      on the timers: the run is alive
=============  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from velox.types import Fill, Order, Product, Tick

__all__ = ["RunJournal", "Alert"]


class RunJournal(Protocol):
    """Where the engine reports a run's state as it changes (see the module docstring).

    Called only from the engine's thread; every method must return at once (no I/O).
    """

    def order(self, order: Order, ts: datetime | int | None = None) -> None:
        """The latest state of an order; ``ts`` is the engine time (UTC epoch ns)."""
        ...

    def fill(self, fill: Fill) -> None:
        """A fill booked by the OMS."""
        ...

    def equity_many(self, ts_ns: Sequence[int], values: Sequence[float]) -> None:
        """Equity samples (UTC epoch ns, rupees), in time order, none handed over twice."""
        ...

    def position(
        self,
        *,
        account: str,
        strategy: str,
        instrument_id: str,
        product: Product | str,
        qty: int,
        average_price: float,
        realised_pnl: float,
        charges: float,
        ts: datetime | int,
    ) -> None:
        """The latest position of (account, strategy, instrument, product); strategy ``''``
        is the account's own row."""
        ...

    def risk_event(
        self,
        *,
        ts: datetime | int,
        kind: str,
        limit: str,
        message: str,
        account: str,
        payload: Mapping[str, object] | None = None,
    ) -> None:
        """A risk event (:class:`velox.risk.RiskEvent`)."""
        ...

    def alert(self, alert: Alert) -> None:
        """An alert to store for delivery (it must not be lost if the store is down)."""
        ...

    def quote(self, tick: Tick, ns: int) -> None:
        """A valid market tick at engine time ``ns`` (UTC epoch ns); called on every tick, so
        it must cost well under a microsecond or two."""
        ...

    def heartbeat(self) -> None:
        """The engine is alive."""
        ...


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert the engine raised: what a delivery worker sends to people.

    ``kind`` is one of the store's ``ALERT_KINDS`` (``risk_breach``, ``kill_switch``,
    ``order_rejected``, ``reconciliation``, ``strategy_error``, ``broker_disconnect`` …);
    ``dedup_key`` folds repeats of the same condition into one undelivered alert (the run id,
    the kind and what it is about, e.g. ``"P3:order_rejected:NSE:SBIN"``).
    """

    ts: datetime
    kind: str
    severity: str
    message: str
    dedup_key: str | None = None
    account: str = ""
    payload: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Return the alert as JSON-ready values (``ts`` in ISO 8601 with its offset)."""
        return {
            "ts": self.ts.isoformat(),
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "dedup_key": self.dedup_key,
            "account": self.account,
            "payload": dict(self.payload),
        }
