"""Order management: the order state machine, the audit trail, positions and P&L from fills.

The OMS is owned by the engine's single thread. It never talks to a broker itself: the engine
asks it to record a transition (appended to the :class:`AuditLog` *before* the engine acts on
it), then acts. Broker postbacks come back through :meth:`OMS.on_order_update` and
:meth:`OMS.on_fill`, which audit first and then update state.

Order lifecycle (``velox.types.OrderStatus``)::

    NEW → RISK_CHECKED → SUBMITTED → OPEN / TRIGGER_PENDING → PARTIAL → FILLED
       ↘ REJECTED (risk)   ↘ REJECTED (broker)          ↘ CANCELLED / REJECTED

Velox client ids read ``<run id>-<sequence>`` (``R1-17``): deterministic in a replay, unique per
run, carried to the broker in the order tag so a restarted engine recognises its own orders and
never sends one twice. The sequence restarts after the highest one found in the audit trail.

Positions come from fills only (``velox.types.apply_fill``), per strategy and for the account;
broker positions are for :meth:`OMS.reconcile`, which reports mismatches and never "fixes" them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from velox.errors import ValidationError
from velox.types import (
    TERMINAL_STATUSES,
    Fill,
    Order,
    OrderStatus,
    Position,
    Product,
    Side,
    apply_fill,
    replacer,
)

if TYPE_CHECKING:
    from velox.store import Store

__all__ = [
    "AuditEvent",
    "AuditLog",
    "MemoryAuditLog",
    "StoreAuditLog",
    "OMS",
    "ALLOWED_TRANSITIONS",
    "FILL_EVENT",
    "RISK_SUFFIX",
    "split_at_freeze",
]

log = logging.getLogger(__name__)

_S = TypeVar("_S")
S = OrderStatus
#: Status changes the OMS accepts; anything else is logged and ignored (a stale postback).
ALLOWED_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.RISK_CHECKED, S.REJECTED}),
    S.RISK_CHECKED: frozenset({S.SUBMITTED, S.REJECTED, S.CANCELLED}),
    S.SUBMITTED: frozenset(
        {S.SUBMITTED, S.OPEN, S.TRIGGER_PENDING, S.PARTIAL, S.FILLED, S.CANCELLED, S.REJECTED}
    ),
    S.OPEN: frozenset({S.OPEN, S.TRIGGER_PENDING, S.PARTIAL, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.TRIGGER_PENDING: frozenset(
        {S.TRIGGER_PENDING, S.OPEN, S.PARTIAL, S.FILLED, S.CANCELLED, S.REJECTED}
    ),
    S.PARTIAL: frozenset({S.PARTIAL, S.FILLED, S.CANCELLED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}
_BUY = Side.BUY
#: Audit status of an execution (the order's own status change follows it).
FILL_EVENT = "FILL"
#: Client-id suffix of the audit rows that record risk events (breaches, kills, resets).
RISK_SUFFIX = "RISK"


def split_at_freeze(qty: int, lot_size: int, freeze_qty: int | None) -> list[int]:
    """Return the order quantities ``qty`` goes out as: whole lots, none above ``freeze_qty``.

    The exchange rejects an F&O order above its freeze quantity, so a larger one is sent as
    orders of the largest whole number of lots within the limit, then the rest (a freeze
    quantity below one lot still lets one lot through). ``freeze_qty=None``: one order.

    Examples
    --------
    >>> split_at_freeze(2_600, 65, 1_800)  # 40 lots of 65; at most 27 lots (1,755) per order
    [1755, 845]
    """
    if qty <= 0 or qty % lot_size:
        raise ValidationError(f"qty={qty} must be a positive multiple of the lot size {lot_size}")
    if freeze_qty is None:
        return [qty]
    chunk = max(lot_size, freeze_qty // lot_size * lot_size)
    full, rest = divmod(qty, chunk)
    return [chunk] * full + ([rest] if rest else [])


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One appended audit row: what happened to which order, when, with what details."""

    client_id: str
    ts: datetime
    status: str
    payload: dict[str, object] = field(default_factory=dict)


class AuditLog(Protocol):
    """Append-only record of every order transition, fill and risk event."""

    mode: str

    def append(self, client_id: str, ts: datetime, status: str, payload: dict[str, object]) -> None:
        """Append one event; it must be durable (for the store) when this returns."""
        ...

    def append_lazy(
        self,
        client_id: str,
        ts: datetime,
        status: str,
        build: Callable[[Any], dict[str, object]],
        source: object,
    ) -> None:
        """Append one event whose payload is ``build(source)`` (``source`` immutable).

        A log may build the payload when the row is read (the in-memory log does: a replay
        appends six rows per order and usually reads none); a durable log builds it at once
        (:func:`built_at_once`).
        """
        ...

    def events(self, prefix: str) -> list[AuditEvent]:
        """Return the events whose client id starts with ``prefix``, in append order."""
        ...


class MemoryAuditLog:
    """An in-memory audit log for fast replays (a list of :class:`AuditEvent`).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> audit = MemoryAuditLog()
    >>> audit.append("R1-1", datetime(2024, 1, 1, tzinfo=timezone.utc), "NEW", {})
    >>> [e.status for e in audit.events("R1-")]
    ['NEW']
    """

    def __init__(self, mode: str = "replay") -> None:
        self.mode = mode
        # (client id, time, status, payload or its source, payload builder or None)
        self._appended: list[tuple[str, datetime, str, object, Callable[[Any], object] | None]]
        self._appended = []
        self._rows: list[AuditEvent] = []
        if type(self).append is not MemoryAuditLog.append:
            # a subclass watching append() must see every row as it is appended
            self.append_lazy = built_at_once(self.append)  # type: ignore[method-assign]

    @property
    def rows(self) -> list[AuditEvent]:
        """Return every event, in append order.

        Appends keep plain tuples and the :class:`AuditEvent` objects (and payloads appended
        with :meth:`append_lazy`) are built when the rows are first read: a replay appends six
        rows per order and usually reads none of them.
        """
        appended, rows = self._appended, self._rows
        if len(rows) < len(appended):
            rows.extend(
                AuditEvent(cid, ts, status, payload if build is None else build(payload))  # type: ignore[arg-type]
                for cid, ts, status, payload, build in appended[len(rows) :]
            )
        return rows

    def append(self, client_id: str, ts: datetime, status: str, payload: dict[str, object]) -> None:
        """Append one event."""
        self._appended.append((client_id, ts, status, payload, None))

    def append_lazy(
        self,
        client_id: str,
        ts: datetime,
        status: str,
        build: Callable[[_S], dict[str, object]],
        source: _S,
    ) -> None:
        """Append one event whose payload is ``build(source)``, built when the row is read.

        ``source`` must be immutable (an :class:`~velox.types.Order` or
        :class:`~velox.types.Fill`, an empty tuple): the row then reads exactly as if the
        payload had been built now.
        """
        self._appended.append((client_id, ts, status, source, build))

    def events(self, prefix: str) -> list[AuditEvent]:
        """Return the events whose client id starts with ``prefix``."""
        return [e for e in self.rows if e.client_id.startswith(prefix)]


LazyAppend = Callable[[str, datetime, str, Callable[[Any], dict[str, object]], object], None]


def built_at_once(append: Callable[[str, datetime, str, dict[str, object]], None]) -> LazyAppend:
    """Return an ``append_lazy`` that builds each payload at once and hands it to ``append``.

    For audit logs that need the payload when the row is appended (the store's, or a
    subclass of :class:`MemoryAuditLog` watching its ``append``).
    """

    def append_lazy(
        client_id: str, ts: datetime, status: str, build: Callable[[Any], dict[str, object]],
        source: object,
    ) -> None:  # fmt: skip
        append(client_id, ts, status, build(source))

    return append_lazy


class StoreAuditLog:
    """The audit log in the store's append-only ``order_events`` table (paper, live, replay).

    Each :meth:`append` is one INSERT on the store's autocommit connection, so the row is
    committed before the engine acts on the transition; a crash afterwards cannot lose it.
    With a ``run_id`` every row is stamped with it and :meth:`events` returns the run's rows,
    including those of orders the engine did not create (the broker's square-off, another
    terminal's orders): a restarted engine rebuilds the whole account it had booked.
    """

    def __init__(self, store: Store, mode: str, *, run_id: str | None = None) -> None:
        self.store = store
        self.mode = mode
        self.run_id = run_id
        self.append_lazy = built_at_once(self.append)

    def append(self, client_id: str, ts: datetime, status: str, payload: dict[str, object]) -> None:
        """Append one event to ``order_events`` (committed on return)."""
        self.store.append_order_event(
            client_id, ts, status, payload, mode=self.mode, run_id=self.run_id
        )

    def events(self, prefix: str) -> list[AuditEvent]:
        """Return events in append order: the run's, whatever mode wrote them (with a
        ``run_id``: a deployment switched between live and dry-run is one run), else this
        mode's whose client id starts with ``prefix``."""
        frame = self.store.read_order_events(run_id=self.run_id)
        if self.run_id is None:
            keep = (frame["mode"] == self.mode) & frame["client_id"].str.startswith(prefix)
        else:
            keep = frame["mode"].notna()
        return [
            AuditEvent(str(r.client_id), r.ts.to_pydatetime(), str(r.status), dict(r.payload))
            for r in frame[keep].itertuples()
        ]


# ``member._value_`` is ``member.value`` without the enum property's descriptor call (the
# payload builders run for every order and fill of a replay).


def order_payload(order: Order) -> dict[str, object]:
    """Return the JSON-ready fields that define an order (the NEW audit row)."""
    return {
        "instrument_id": order.instrument_id,
        "side": order.side._value_,
        "qty": order.qty,
        "order_type": order.order_type._value_,
        "product": order.product._value_,
        "validity": order.validity._value_,
        "limit_price": order.limit_price,
        "trigger_price": order.trigger_price,
        "tag": order.tag,
        "strategy": order.strategy,
    }


def update_payload(update: Order) -> dict[str, object]:
    """Return the fields of a broker order update that its audit row records."""
    return {
        "broker_order_id": update.broker_order_id,
        "filled_qty": update.filled_qty,
        "average_price": update.average_price,
        "message": update.status_message,
    }


def fill_payload(fill: Fill) -> dict[str, object]:
    """Return the JSON-ready fields of a fill (the FILL audit row)."""
    return {
        "fill_id": fill.fill_id,
        "instrument_id": fill.instrument_id,
        "side": fill.side._value_,
        "qty": fill.qty,
        "price": fill.price,
        "ts": fill.ts.isoformat(),
        "product": fill.product._value_,
        "broker_order_id": fill.broker_order_id,
        "charges": fill.charges,
        "strategy": fill.strategy,
    }


@dataclass(slots=True)
class Book:
    """Positions of one owner (a strategy, or the account): by (instrument, product)."""

    positions: dict[tuple[str, Product], Position] = field(default_factory=dict)
    realised: float = 0.0
    charges: float = 0.0
    net: dict[str, int] = field(default_factory=dict)  # instrument → signed qty, all products

    def apply(self, fill: Fill, owner: str) -> Position:
        key = (fill.instrument_id, fill.product)
        before = self.positions.get(key)
        if before is None:
            before = Position(fill.instrument_id, fill.product, strategy=owner)
        after = apply_fill(before, fill)
        self.positions[key] = after
        self.realised += after.realised_pnl - before.realised_pnl
        self.charges += fill.charges
        iid = fill.instrument_id
        qty = fill.qty
        self.net[iid] = self.net.get(iid, 0) + (qty if fill.side is _BUY else -qty)
        return after

    def unrealised(self, prices: Mapping[str, float]) -> float:
        total = 0.0
        for (iid, _), pos in self.positions.items():
            if pos.qty:
                price = prices.get(iid)
                if price is not None:
                    total += pos.qty * (price - pos.average_price)
        return total


class OMS:
    """Return the order book, audit trail writer and position keeper of one engine run.

    Parameters
    ----------
    audit
        Where every transition is appended before it is acted on.
    run_id
        Prefix of the client ids (``<run_id>-<seq>``); also selects this run's audit rows.

    Examples
    --------
    >>> from datetime import datetime
    >>> from velox.calendar import IST
    >>> oms = OMS(MemoryAuditLog(), run_id="R1")
    >>> t = datetime(2024, 4, 1, 9, 15, tzinfo=IST)
    >>> o = oms.create(Order("", "NSE:SBIN", "BUY", 10, strategy="s"), t)
    >>> o.client_id, o.status.value
    ('R1-1', 'NEW')
    >>> oms.transition(o.client_id, OrderStatus.RISK_CHECKED, t).status.value
    'RISK_CHECKED'
    """

    def __init__(self, audit: AuditLog, *, run_id: str) -> None:
        if not (isinstance(run_id, str) and run_id.isascii() and run_id.isalnum()):
            raise ValidationError(
                f"run_id={run_id!r} must be a short ASCII alphanumeric id such as R1 (it is the "
                "prefix of client ids, which brokers' order tags restrict to letters and digits)"
            )
        self.audit = audit
        self.run_id = run_id
        self.prefix = f"{run_id}-"
        self.seq = 0
        self.orders: dict[str, Order] = {}
        self.open: dict[str, Order] = {}
        self.fill_ids: set[str] = set()
        self.fills: list[Fill] = []
        self.books: dict[str, Book] = {}
        self.account = Book()
        self._append: LazyAppend = audit.append_lazy
        #: Called with every new state of an order (tracked, transitioned, updated, adopted) and
        #: with every fill booked (also when restoring): how a run journal follows the book.
        #: None (a replay that records nothing) costs one comparison per state.
        self.on_order: Callable[[Order], object] | None = None
        self.on_fill_booked: Callable[[Fill], object] | None = None

    # -- ids and creation ------------------------------------------------------------------

    def next_client_id(self) -> str:
        """Return a fresh client id ``<run_id>-<seq>``."""
        self.seq += 1
        return f"{self.prefix}{self.seq}"

    def peek_client_id(self) -> str:
        """Return the client id the next order will get, without taking it.

        The engine builds (and validates) a strategy's order with this id, then hands it to
        :meth:`track`: an order that fails validation takes no id, so ids stay gap-free.
        """
        return f"{self.prefix}{self.seq + 1}"

    def create(self, order: Order, ts: datetime) -> Order:
        """Give ``order`` a client id, audit it as NEW and track it; return the tracked order.

        ``order`` was validated when it was built (``Order.__post_init__``); only the creation
        time is new, so the copy skips re-validating the rest.
        """
        if not isinstance(ts, datetime) or ts.tzinfo is None:
            raise ValidationError(f"order creation time {ts!r} must be a tz-aware datetime")
        cid = self.peek_client_id()
        return self.track(_as_new(order, cid, order.tag or cid, S.NEW, ts))

    def track(self, order: Order, *, given_id: bool = False) -> Order:
        """Audit a NEW order that already carries :meth:`peek_client_id` and track it.

        For orders the engine built itself with their id, tag and creation time (validated by
        ``Order.__post_init__`` then): tracked as they are, without a copy. ``given_id``: the
        order brings its own client id instead (``<run_id>-C<command id>`` of an operator's
        order), which must start with this run's prefix and be new.
        """
        cid = order.client_id
        if given_id:
            ok = cid.startswith(self.prefix) and cid not in self.orders
        else:
            ok = cid == f"{self.prefix}{self.seq + 1}"
        if not ok or order.status is not S.NEW:
            expected = (
                f"a new client id starting with {self.prefix!r}" if given_id
                else f"the next client id {self.peek_client_id()!r} (use create())"
            )  # fmt: skip
            raise ValidationError(
                f"order {cid!r} ({order.status.value}) cannot be tracked: expected a NEW order "
                f"with {expected}"
            )
        ts = order.created_at
        if ts is None:
            raise ValidationError(f"order {cid} needs its creation time to be tracked")
        if not given_id:
            self.seq += 1
        self._append(cid, ts, "NEW", order_payload, order)
        self.orders[cid] = order
        self.open[cid] = order
        if self.on_order is not None:
            self.on_order(order)
        return order

    def transition(
        self,
        client_id: str,
        status: OrderStatus,
        ts: datetime,
        message: str = "",
        *,
        audit: Mapping[str, object] | None = None,
    ) -> Order:
        """Audit and apply an engine-side transition (risk check, submit, risk reject).

        ``audit`` adds details to the audit row only (e.g. the risk limit that refused).
        """
        order = self.orders[client_id]
        if status not in ALLOWED_TRANSITIONS[order.status]:
            raise ValidationError(
                f"order {client_id}: {order.status.value} → {status.value} is not a valid "
                "transition"
            )
        if message or audit:
            payload: dict[str, object] = {"message": message} if message else {}
            if audit:
                payload.update(audit)
            self.audit.append(client_id, ts, status._value_, payload)
        else:
            self._append(client_id, ts, status._value_, dict, ())
        return self._store(_with_status(order, status, message))

    def submit(self, client_id: str, ts: datetime) -> Order:
        """Audit a NEW order's RISK_CHECKED and SUBMITTED rows, then make it SUBMITTED.

        What the engine does once the risk checks passed, right before it hands the order to
        the broker: both rows are appended before the state changes (in one step, as
        :meth:`transition` twice would leave it), and the order is sent after this returns.
        """
        order = self.orders[client_id]
        if order.status is not S.NEW:
            raise ValidationError(
                f"order {client_id}: {order.status.value} → SUBMITTED is not a valid transition "
                "(only a NEW order is risk-checked and submitted)"
            )
        append = self._append
        append(client_id, ts, "RISK_CHECKED", dict, ())
        append(client_id, ts, "SUBMITTED", dict, ())
        return self._store(_with_status(order, S.SUBMITTED, ""))

    def _store(self, order: Order) -> Order:
        cid = order.client_id
        self.orders[cid] = order
        if order.status in TERMINAL_STATUSES:
            self.open.pop(cid, None)
        else:
            self.open[cid] = order
        if self.on_order is not None:
            self.on_order(order)
        return order

    # -- broker postbacks ------------------------------------------------------------------

    def on_order_update(self, update: Order, ts: datetime) -> Order | None:
        """Apply a broker order update; return the tracked order, or None if it was stale.

        An order this OMS did not create (a broker's own square-off, an order from another
        terminal) is adopted as ``external``, owned by no strategy, so its fills still count
        for the account (:meth:`on_fill`).
        """
        cid = update.client_id
        known = self.orders.get(cid)
        if known is None:
            if not cid.startswith(self.prefix) and update.strategy:  # the account's (on_fill)
                update = replace(update, strategy="")
            payload = update_payload(update)
            payload.update(order_payload(update), external=True)
            self.audit.append(cid, ts, update.status._value_, payload)
            return self._store(update)
        status = update.status
        if status not in ALLOWED_TRANSITIONS[known.status]:
            if status is not known.status:
                log.warning(
                    "order %s: ignoring stale update %s → %s",
                    cid,
                    known.status.value,
                    status.value,
                )
            return None
        self._append(cid, ts, status._value_, update_payload, update)
        merged = _merge(
            known,
            status,
            update.status_message,
            update.broker_order_id or known.broker_order_id,
            max(update.filled_qty, known.filled_qty),
            update.average_price or known.average_price,
            update.qty,
            update.limit_price,
            update.trigger_price,
            update.order_type,
        )
        return self._store(merged)

    def on_fill(self, fill: Fill, ts: datetime) -> list[Fill]:
        """Audit and book a fill; return the booked fills with their owners (empty: a duplicate).

        A fill of this run's order (client id ``<run_id>-…``) belongs to the order's strategy.
        A fill of an order this engine did not create (the broker's MIS square-off, the
        exchange, another terminal) names no strategy a broker could know: it closes the
        strategies' positions it reduces (see :meth:`allocate`), and the rest is the account's
        own (strategy ``""``). Each part is booked and audited as one FILL row.
        """
        if fill.fill_id in self.fill_ids:
            return []
        cid = fill.client_id
        if cid.startswith(self.prefix):
            known = self.orders.get(cid)
            strategy = known.strategy if known is not None else fill.strategy
            parts = [fill if strategy == fill.strategy else replace(fill, strategy=strategy)]
        else:
            parts = self.allocate(fill)
        for part in parts:
            self._append(part.client_id, ts, FILL_EVENT, fill_payload, part)
            self._book(part)
        return parts

    def allocate(self, fill: Fill) -> list[Fill]:
        """Return an account-level fill split by owner: first the strategies whose positions it
        reduces (each up to its position, in the order the strategies first traded), then the
        account (strategy ``""``) for the rest.

        The first part keeps the fill's id (so a repeated postback is recognised), the others
        read ``<fill_id>/2``, ``/3`` …; charges are shared in proportion to quantity and add up
        to the fill's.

        Examples
        --------
        >>> from datetime import datetime
        >>> from velox.calendar import IST
        >>> oms = OMS(MemoryAuditLog(), run_id="R1")
        >>> t = datetime(2024, 4, 1, 9, 15, tzinfo=IST)
        >>> _ = oms.on_fill(Fill("B1-10", "R1-1", "NSE:SBIN", "BUY", 10, 800.0, t, "MIS",
        ...                      strategy="orb"), t)
        >>> [(f.fill_id, f.strategy, f.qty) for f in oms.allocate(
        ...     Fill("SQ-17", "SQUAREOFF-1", "NSE:SBIN", "SELL", 17, 810.0, t, "MIS"))]
        [('SQ-17', 'orb', 10), ('SQ-17/2', '', 7)]
        """
        key = (fill.instrument_id, fill.product)
        sign = fill.side.sign
        left = fill.qty
        shares: list[tuple[str, int]] = []
        for owner, book in self.books.items():
            pos = book.positions.get(key)
            if owner and left and pos is not None and pos.qty * sign < 0:
                take = min(left, abs(pos.qty))
                shares.append((owner, take))
                left -= take
        if left:
            shares.append(("", left))
        parts: list[Fill] = []
        charged = 0.0
        for k, (owner, qty) in enumerate(shares):
            last = k == len(shares) - 1
            charges = fill.charges - charged if last else fill.charges * qty / fill.qty
            charged += charges
            fill_id = fill.fill_id if k == 0 else f"{fill.fill_id}/{k + 1}"
            parts.append(replace(fill, fill_id=fill_id, qty=qty, strategy=owner, charges=charges))
        return parts

    def _book(self, fill: Fill) -> None:
        self.fill_ids.add(fill.fill_id)
        self.fills.append(fill)
        book = self.books.get(fill.strategy)
        if book is None:
            book = self.books[fill.strategy] = Book()
        book.apply(fill, fill.strategy)
        self.account.apply(fill, "")
        if self.on_fill_booked is not None:
            self.on_fill_booked(fill)

    # -- queries -----------------------------------------------------------------------------

    def position_qty(self, strategy: str | None, instrument_id: str) -> int:
        """Return the signed net quantity of a strategy (None: the account) in an instrument."""
        book = self.account if strategy is None else self.books.get(strategy)
        return 0 if book is None else book.net.get(instrument_id, 0)

    def open_orders(
        self, strategy: str | None = None, instrument_id: str | None = None
    ) -> list[Order]:
        """Return working orders, optionally of one strategy and/or instrument."""
        return [
            o
            for o in self.open.values()
            if (strategy is None or o.strategy == strategy)
            and (instrument_id is None or o.instrument_id == instrument_id)
        ]

    def account_positions(self) -> dict[tuple[str, Product], int]:
        """Return the account's non-zero net quantities by (instrument, product)."""
        return {k: p.qty for k, p in self.account.positions.items() if p.qty}

    # -- reconciliation ----------------------------------------------------------------------

    def reconcile(
        self,
        broker_orders: Sequence[Order],
        broker_positions: Iterable[Position],
        broker_holdings: Iterable[Position] = (),
    ) -> list[str]:
        """Return every difference between the OMS and the broker (empty when they agree).

        Compared: each of this run's working orders must be at the broker with the same status
        family and filled quantity; the broker must hold no working order of this run the OMS
        does not know; net quantities per (instrument, product) must be equal, CNC holdings
        included. Nothing is changed: the engine alerts and halts on a mismatch.
        """
        problems: list[str] = []
        at_broker = {o.client_id: o for o in broker_orders}
        for cid, order in self.open.items():
            if order.status in (S.NEW, S.RISK_CHECKED):
                continue
            theirs = at_broker.get(cid)
            if theirs is None:
                problems.append(
                    f"order {cid} is {order.status.value} here but unknown at the broker"
                )
            elif theirs.filled_qty != order.filled_qty or theirs.is_terminal:
                problems.append(
                    f"order {cid}: here {order.status.value} filled {order.filled_qty}, at the "
                    f"broker {theirs.status.value} filled {theirs.filled_qty}"
                )
        for cid, theirs in at_broker.items():
            if cid.startswith(self.prefix) and cid not in self.orders and not theirs.is_terminal:
                problems.append(f"order {cid} is working at the broker but unknown here")
        broker_net: dict[tuple[str, Product], int] = {}
        for pos in (*broker_positions, *broker_holdings):
            key = (pos.instrument_id, Product(pos.product))
            broker_net[key] = broker_net.get(key, 0) + pos.qty
        ours = self.account_positions()
        for key in sorted(set(ours) | {k for k, v in broker_net.items() if v}):
            if ours.get(key, 0) != broker_net.get(key, 0):
                problems.append(
                    f"position {key[0]} {key[1].value}: {ours.get(key, 0)} here, "
                    f"{broker_net.get(key, 0)} at the broker"
                )
        return problems

    # -- recovery ----------------------------------------------------------------------------

    def restore(self, events: Iterable[AuditEvent]) -> list[AuditEvent]:
        """Rebuild orders, fills, positions and the id sequence from audit rows; return risk rows.

        Used on restart, before anything else happens: positions are replayed from the FILL
        rows (never taken from the broker), so they are exactly what the crashed run had booked.
        """
        risk_rows: list[AuditEvent] = []
        for event in events:
            cid = event.client_id
            head, _, tail = cid.rpartition("-")
            if head == self.run_id and tail.isdigit():
                self.seq = max(self.seq, int(tail))
            if tail == RISK_SUFFIX:
                risk_rows.append(event)
                continue
            p = event.payload
            if event.status == FILL_EVENT:
                if p["fill_id"] in self.fill_ids:
                    continue
                self._book(
                    Fill(
                        fill_id=str(p["fill_id"]),
                        client_id=cid,
                        instrument_id=str(p["instrument_id"]),
                        side=Side(str(p["side"])),
                        qty=int(p["qty"]),  # type: ignore[arg-type]
                        price=float(p["price"]),  # type: ignore[arg-type]
                        ts=datetime.fromisoformat(str(p["ts"])),
                        product=Product(str(p["product"])),
                        broker_order_id=p.get("broker_order_id"),  # type: ignore[arg-type]
                        charges=float(p.get("charges") or 0.0),  # type: ignore[arg-type]
                        strategy=str(p.get("strategy") or ""),
                    )
                )
                continue
            status = S(event.status)
            known = self.orders.get(cid)
            if known is None:
                fields = {k: p[k] for k in _ORDER_FIELDS if k in p}
                self._store(
                    Order(client_id=cid, status=status, created_at=event.ts, **fields)  # type: ignore[arg-type]
                )
                continue
            changes: dict[str, object] = {}
            if p.get("broker_order_id"):
                changes["broker_order_id"] = p["broker_order_id"]
            if "filled_qty" in p:
                changes["filled_qty"] = int(p["filled_qty"])  # type: ignore[arg-type]
                changes["average_price"] = float(p.get("average_price") or 0.0)  # type: ignore[arg-type]
            self._store(known.with_status(status, str(p.get("message") or ""), **changes))
        return risk_rows


# Copies of tracked orders skip re-validation: a tracked order was validated when it was
# built, and its later states only change the status, fills and broker fields (or take the
# broker's accepted modification). See velox.types.replacer.
_as_new = replacer(Order, "client_id", "tag", "status", "created_at")
_with_status = replacer(Order, "status", "status_message")
_merge = replacer(
    Order,
    "status",
    "status_message",
    "broker_order_id",
    "filled_qty",
    "average_price",
    "qty",
    "limit_price",
    "trigger_price",
    "order_type",
)

_ORDER_FIELDS = (
    "instrument_id",
    "side",
    "qty",
    "order_type",
    "product",
    "validity",
    "limit_price",
    "trigger_price",
    "tag",
    "strategy",
)
