"""KiteBroker: the :class:`~velox.brokers.base.Broker` contract over Zerodha's official SDK.

Everything the engine needs from Kite (orders, fills, positions, holdings, funds) and the
REST market-data calls (instrument master, historical candles, quotes, LTP), behind throttles
and with every SDK exception translated at this boundary (:func:`mapping.translate_error`).

Robustness rules
----------------
* **Throttles wait, never exceed.** Each call takes a turn from its endpoint group's
  :class:`~velox.brokers.throttle.Throttle` (Kite's published limits: orders 10/s, 400/min,
  5,000/day — Velox keeps to 8/s; quote 1/s; historical 3/s; everything else 10/s).
* **Only reads are retried** (GETs, on network errors, HTTP 429 and 5xx), with exponential
  backoff. An order placement is never retried blindly.
* **A placement that may have landed is looked up, not re-sent.** When a place times out or
  fails in transit (``requests`` timeout/connection error, Kite NetworkException/5xx), the
  order book is searched for the order's tag (Velox's client id); a found order is adopted.
  Only if it is still absent after a short settle is it placed once more.
* **One Velox order may be several Kite orders.** Above the instrument's freeze quantity the
  order is sliced into Kite orders of at most the freeze quantity (whole lots), all with the
  same tag. Their updates aggregate into one Velox order (quantities add, status from all
  slices; the id is the first slice's); after a restart the book regroups them by tag.
* **An expired session stops everything at once.** The token's expiry (06:00 IST) is checked
  before each request, and a TokenException marks the session dead: every later call raises
  :class:`~velox.errors.AuthExpired` naming ``velox broker login kite`` without sending.
* **Fills exactly once.** Order updates (ticker text messages, verified HTTP postbacks) go
  through :meth:`KiteBroker.on_kite_order_update`; when a Kite order's filled quantity grows,
  its trades are fetched and each ``trade_id`` becomes one :class:`~velox.types.Fill`, with
  charges from :mod:`velox.costs` exactly as the simulator computes them.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from velox.brokers.base import BrokerListener, Capabilities, Funds
from velox.brokers.kite import mapping as m
from velox.brokers.throttle import RateLimit, ThrottleSet
from velox.calendar import IST, as_ist
from velox.errors import AuthExpired, BrokerError, OrderRejected, UnknownInstrument, VeloxError
from velox.types import (
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Tick,
)

if TYPE_CHECKING:
    import pandas as pd
    from kiteconnect import KiteConnect

    from velox.brokers.sim.exchange import ChargeModel
    from velox.instruments import InstrumentMaster
    from velox.secrets import SecretStore
    from velox.store import Store

__all__ = ["KiteBroker", "kite_throttles", "KITE_RATE_LIMITS"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Kite's published rate limits per endpoint group (orders below the 10/s ceiling).
KITE_RATE_LIMITS: dict[str, tuple[RateLimit, ...]] = {
    "order": (
        RateLimit.per_second(m.DEFAULT_ORDERS_PER_SECOND),
        RateLimit.per_minute(400),
        RateLimit.per_day(5000),
    ),
    "quote": (RateLimit.per_second(1),),
    "historical": (RateLimit.per_second(3),),
    "other": (RateLimit.per_second(10),),
}

#: Largest instrument lists per quote / LTP request (Kite: 500 and 1,000).
_QUOTE_BATCH, _LTP_BATCH = 500, 1000


def kite_throttles(
    limits: Mapping[str, Iterable[RateLimit]] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    margin: float = 0.05,
) -> ThrottleSet:
    """Return the throttles of one Kite app key (default :data:`KITE_RATE_LIMITS`).

    ``margin`` (seconds) widens every window so that loopback or network jitter cannot make
    two requests sent a full window apart arrive inside one window at Kite.
    """
    return ThrottleSet(
        limits or KITE_RATE_LIMITS, default="other", clock=clock, sleep=sleep, margin=margin
    )


def _ambiguous(exc: BaseException) -> bool:
    """Return True when a placement failed in a way that may have placed the order."""
    import requests
    from kiteconnect import exceptions as kex

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False  # the connection was never made: nothing was sent
    if getattr(exc, "code", None) == 429:
        return False  # refused by the rate limiter before Kite's OMS saw it
    if isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, kex.NetworkException | kex.DataException):
        return True
    if isinstance(exc, kex.GeneralException):
        return (getattr(exc, "code", 0) or 0) >= 500
    return False


class KiteBroker:
    """Zerodha Kite Connect as a Velox :class:`~velox.brokers.base.Broker`.

    Parameters
    ----------
    api_key, access_token
        The app key and the day's access token (``velox broker login kite``).
    instruments
        The instrument master (freeze quantities, lot/tick sizes for charges, Kite tokens for
        history); default: the store's master if :meth:`from_store` built it, else the
        bundled one. A lookup callable raising ``KeyError`` also works.
    root
        The REST root (default setting ``kite_root``: ``https://api.kite.trade``; a loopback
        simulator's URL in tests).
    expires_at
        When the token expires; calls at or after it raise AuthExpired without sending.
    cost_model
        Charges per fill (default :class:`velox.costs.CostModel`), as the simulator uses.
    throttles
        Endpoint throttles (default :func:`kite_throttles`: Kite's published limits).
    retries, backoff
        Attempts after the first for a read, and the first backoff in seconds (doubling).
    timeout
        Seconds the SDK waits for an answer.
    settle
        Seconds to wait before looking for a timed-out order a second time.
    clock
        Wall clock (tz-aware) for the expiry check and trade dates.

    Examples
    --------
    >>> broker = KiteBroker.from_store(open_store())       # doctest: +SKIP
    >>> broker.place_order(order)                          # doctest: +SKIP
    '240401000012345'
    """

    name = "kite"
    capabilities: Capabilities = m.KITE_CAPABILITIES

    def __init__(
        self,
        api_key: str,
        access_token: str,
        *,
        instruments: InstrumentMaster | Callable[[str], Instrument] | None = None,
        root: str | None = None,
        expires_at: datetime | None = None,
        cost_model: ChargeModel | None = None,
        throttles: ThrottleSet | None = None,
        retries: int = 3,
        backoff: float = 0.25,
        timeout: float = 7.0,
        settle: float = 1.0,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kiteconnect import KiteConnect

        from velox.costs import CostModel

        if root is None:
            from velox.config import get_settings

            root = get_settings().kite_root
        self.root = root
        self._kite: KiteConnect = KiteConnect(api_key, access_token=access_token, root=root,
                                              timeout=timeout)  # fmt: skip
        self._api_key = api_key
        self.expires_at = expires_at
        self._dead: str | None = None  # why the session is unusable, once Kite said so
        self._master: InstrumentMaster | None = None
        self._lookup: Callable[[str], Instrument] | None = None
        self._set_instruments(instruments)
        self.cost_model = cost_model if cost_model is not None else CostModel()
        self.throttles = throttles if throttles is not None else kite_throttles()
        self.retries = retries
        self.backoff = backoff
        self.settle = settle
        self._clock = clock or (lambda: datetime.now(IST))
        self._sleep = sleep
        self._listener: BrokerListener | None = None
        self._lock = threading.RLock()
        # Kite order id → its latest mapped Order (a slice); tag → slice ids in placement order
        self._slices: dict[str, Order] = {}
        self._groups: dict[str, list[str]] = {}
        self._book_loaded = False
        self._emitted: set[str] = set()  # trade ids handed out as fills
        self._fills: dict[str, Fill] = {}  # trade id → Fill (charges computed once)
        self._brokerage: dict[str, float] = {}  # Kite order id → brokerage charged so far
        self._unpriced: set[str] = set()  # instruments charges could not be computed for

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_store(
        cls,
        store: Store,
        *,
        secrets: SecretStore | None = None,
        instruments: InstrumentMaster | Callable[[str], Instrument] | None = None,
        now: datetime | None = None,
        **options: Any,
    ) -> KiteBroker:
        """Return a broker on the session stored by ``velox broker login kite``.

        Refuses a missing or expired session with :class:`~velox.errors.AuthExpired` before
        anything is sent. The instrument master defaults to the store's (``download_instruments``
        fills it), else the bundled one.
        """
        from velox.brokers.kite.auth import load_session
        from velox.secrets import SecretStore

        secrets = secrets if secrets is not None else SecretStore(store)
        session = load_session(secrets, now=now)
        if instruments is None:
            instruments = _store_master(store)
        broker = cls(
            session.api_key,
            session.access_token,
            instruments=instruments,
            expires_at=session.expires_at,
            **options,
        )
        return broker

    def __repr__(self) -> str:
        expiry = "" if self.expires_at is None else f", expires_at={self.expires_at.isoformat()}"
        return f"KiteBroker(root={self.root!r}{expiry})"

    def _set_instruments(self, instruments: object) -> None:
        from velox.instruments import InstrumentMaster

        if isinstance(instruments, InstrumentMaster):
            self._master, self._lookup = instruments, instruments.get
        elif callable(instruments):
            self._master, self._lookup = None, instruments  # type: ignore[assignment]
        else:
            self._master, self._lookup = None, None

    def _instrument(self, instrument_id: str) -> Instrument | None:
        if self._lookup is None:
            from velox.instruments import load_bundled_master

            self._master = load_bundled_master()
            self._lookup = self._master.get
        try:
            return self._lookup(instrument_id)
        except (KeyError, UnknownInstrument):
            return None

    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener

    # ---- the request path --------------------------------------------------------------------

    def _check_session(self) -> None:
        if self._dead is not None:
            raise AuthExpired(self._dead)
        if self.expires_at is not None and self._clock() >= self.expires_at:
            self._dead = (
                f"the Kite session expired at {self.expires_at.astimezone(IST):%Y-%m-%d %H:%M} "
                f"IST (Kite ends sessions at 06:00 IST); log in again with `{m.LOGIN_COMMAND}`"
            )
            raise AuthExpired(self._dead)

    def _fail(self, exc: BaseException, what: str, client_id: str | None = None) -> BrokerError:
        error = m.translate_error(exc, what=what, client_id=client_id)
        if isinstance(error, AuthExpired):
            self._dead = str(error)  # never hammer Kite with a dead token
            log.error("%s", error)
        return error

    def _read(self, what: str, group: str, call: Callable[[], _T]) -> _T:
        """Run an idempotent GET with throttling and retries; translate what it raises."""
        attempt = 0
        while True:
            self._check_session()
            self.throttles.acquire(group)
            try:
                result = call()
            except Exception as exc:  # noqa: BLE001 - every SDK failure is translated here
                if attempt < self.retries and m.is_retryable(exc):
                    delay = self.backoff * (2**attempt)
                    attempt += 1
                    log.warning(
                        "Kite %s failed (%s: %s); retry %d of %d in %.2fs",
                        what, type(exc).__name__, exc, attempt, self.retries, delay,
                    )  # fmt: skip
                    self._sleep(delay)
                    continue
                raise self._fail(exc, what) from None
            if result is None:
                raise BrokerError(f"Kite answered {what} with nothing; is the API root right?")
            return result

    def _write(self, what: str, call: Callable[[], _T], client_id: str | None = None) -> _T:
        """Send one order request (no retry) and translate what it raises."""
        self._check_session()
        self.throttles.acquire("order")
        try:
            return call()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, what, client_id) from exc

    # ---- orders ------------------------------------------------------------------------------

    def _slice_sizes(self, order: Order, instrument: Instrument | None) -> list[int]:
        if instrument is None or not instrument.freeze_qty or order.qty <= instrument.freeze_qty:
            return [order.qty]
        lot = instrument.lot_size
        most = max(lot, instrument.freeze_qty // lot * lot)
        full, rest = divmod(order.qty, most)
        return [most] * full + ([rest] if rest else [])

    def _ensure_book(self) -> None:
        """Load today's order book once, so tags placed before a restart are known."""
        if not self._book_loaded:
            self._load_book()

    def _load_book(self) -> list[dict[str, Any]]:
        raw = self._read("listing orders", "other", self._kite.orders)
        if not isinstance(raw, list):
            raise BrokerError(f"Kite's order book is not a list: {type(raw).__name__}")
        with self._lock:
            for data in raw:
                self._remember(m.order_from_kite(data))
            self._book_loaded = True
        return raw

    def _remember(self, order: Order) -> None:
        """Record one Kite order (slice) under its tag; caller holds the lock."""
        oid = order.broker_order_id
        assert oid is not None
        self._slices[oid] = order
        ids = self._groups.setdefault(order.client_id, [])
        if oid not in ids:
            ids.append(oid)

    def _group_of(self, broker_order_id: str) -> list[str]:
        with self._lock:
            known = self._slices.get(broker_order_id)
            if known is not None:
                return list(self._groups[known.client_id])
        self._load_book()
        with self._lock:
            known = self._slices.get(broker_order_id)
            if known is None:
                raise OrderRejected(f"order {broker_order_id} is not in today's Kite order book")
            return list(self._groups[known.client_id])

    def _aggregate(self, client_id: str) -> Order:
        with self._lock:
            ids = self._groups[client_id]
            return m.aggregate_orders([self._slices[i] for i in ids], broker_order_id=ids[0])

    def place_order(self, order: Order) -> str:
        """Send ``order`` (sliced above the freeze quantity); return the first Kite order id.

        A client id already in today's book (a restarted engine re-sending) is adopted, not
        sent again.
        """
        problem = self.capabilities.supports(order)
        if problem:
            raise OrderRejected(problem, client_id=order.client_id)
        tag = order.client_id  # Velox's id is the Kite tag, whatever label the strategy gave
        m.order_params(order, tag=tag)  # refuses a tag Kite would cut, before anything is sent
        self._ensure_book()
        with self._lock:
            existing = self._groups.get(tag)
            if existing:
                log.warning("order %s is already at Kite as %s; adopted", tag, existing[0])
                return existing[0]
        sizes = self._slice_sizes(order, self._instrument(order.instrument_id))
        if len(sizes) > 1:
            log.info("order %s: %d above freeze quantity, %d slices", tag, order.qty, len(sizes))
        placed: list[str] = []
        for i, size in enumerate(sizes):
            try:
                placed.append(self._place_one(order, size, tag, already=len(placed)))
            except BrokerError:
                if i == 0:
                    raise
                log.error(
                    "order %s: slice %d of %d failed; %d of %d units placed (the order book "
                    "shows what is working)", tag, i + 1, len(sizes), sum(sizes[:i]), order.qty,
                )  # fmt: skip
                break
        return placed[0]

    def _place_one(self, order: Order, qty: int, tag: str, *, already: int) -> str:
        """Place one Kite order; on an ambiguous failure find it by tag before re-sending."""
        params = m.order_params(order, qty=qty, tag=tag)
        for attempt in (1, 2):
            self._check_session()
            self.throttles.acquire("order")
            try:
                order_id = self._kite.place_order(**params)
            except Exception as exc:  # noqa: BLE001
                if not _ambiguous(exc):
                    raise self._fail(exc, f"placing order {tag}", order.client_id) from None
                log.warning(
                    "placing %s may or may not have reached Kite (%s: %s); looking it up by tag",
                    tag, type(exc).__name__, exc,
                )  # fmt: skip
                found = self._find_placed(tag, already)
                if found is None:
                    self._sleep(self.settle)
                    found = self._find_placed(tag, already)
                if found is not None:
                    log.warning("order %s was placed as %s; adopted, not re-sent", tag, found)
                    return found
                if attempt == 2:
                    raise BrokerError(
                        f"placing order {tag} failed twice in transit and it is not in the order "
                        "book; check Kite before sending it again"
                    ) from None
                log.warning("order %s is not at Kite; placing it once more", tag)
                continue
            if not order_id:
                raise BrokerError(f"Kite accepted order {tag} but returned no order id")
            order_id = str(order_id)
            with self._lock:
                if order_id in self._slices:  # its update (postback, ticker) came first
                    self._remember(self._slices[order_id])
                    return order_id
                self._remember(
                    replace(
                        order,
                        qty=qty,
                        tag=tag,
                        broker_order_id=order_id,
                        status=OrderStatus.SUBMITTED,
                        filled_qty=0,
                        average_price=0.0,
                        client_id=tag,
                    )
                )
            return order_id
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_placed(self, tag: str, already: int) -> str | None:
        """Return the id of the ``already``-th Kite order with ``tag``, if the book has it."""
        try:
            raw = self._read("looking up an order by tag", "other", self._kite.orders)
        except AuthExpired:
            raise
        except BrokerError as exc:
            log.warning("order book lookup failed: %s", exc)
            return None
        matches = [str(o.get("order_id")) for o in raw if (o.get("tag") or "") == tag]
        if len(matches) <= already:
            return None
        with self._lock:
            for data in raw:
                if (data.get("tag") or "") == tag:
                    self._remember(m.order_from_kite(data))
        return matches[already]

    def modify_order(
        self,
        broker_order_id: str,
        *,
        qty: int | None = None,
        limit_price: float | None = None,
        trigger_price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        """Change an open order; on a sliced order prices change on every working slice.

        A new quantity is only taken for an order of one slice (Kite would need a slice plan).
        """
        ids = self._group_of(broker_order_id)
        with self._lock:
            working = [i for i in ids if not self._slices[i].is_terminal]
        if not working:
            raise OrderRejected(f"order {broker_order_id} is not open; it cannot be modified")
        if qty is not None and len(ids) > 1:
            raise OrderRejected(
                f"order {broker_order_id} is {len(ids)} Kite orders (sliced above the freeze "
                "quantity); cancel it and place a new one to change its quantity"
            )
        params = m.modify_params(
            qty=qty, limit_price=limit_price, trigger_price=trigger_price, order_type=order_type
        )
        for oid in working:
            self._write(
                f"modifying order {oid}",
                lambda oid=oid: self._kite.modify_order(order_id=oid, **params),
            )
            with self._lock:
                before = self._slices[oid]
                changes: dict[str, Any] = {}
                if qty is not None:
                    changes["qty"] = qty
                if limit_price is not None:
                    changes["limit_price"] = limit_price
                if trigger_price is not None:
                    changes["trigger_price"] = trigger_price
                if order_type is not None:
                    changes["order_type"] = OrderType(order_type)
                with contextlib.suppress(VeloxError):  # the next update from Kite brings the truth
                    self._slices[oid] = replace(before, **changes)

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel an open order (every working slice); a terminal order raises OrderRejected."""
        ids = self._group_of(broker_order_id)
        with self._lock:
            working = [i for i in ids if not self._slices[i].is_terminal]
        if not working:
            self._load_book()  # our copy may be stale: ask Kite before refusing
            with self._lock:
                working = [i for i in ids if not self._slices[i].is_terminal]
        if not working:
            status = self._aggregate(self._slices[ids[0]].client_id).status.value
            raise OrderRejected(f"order {broker_order_id} is {status}; it cannot be cancelled")
        for oid in working:
            self._write(
                f"cancelling order {oid}",
                lambda oid=oid: self._kite.cancel_order(variety="regular", order_id=oid),
            )

    def orders(self) -> list[Order]:
        """Return today's Velox orders (Kite orders of one tag aggregated), placement order."""
        self._load_book()
        with self._lock:
            return [self._aggregate(cid) for cid in list(self._groups)]

    # ---- fills -------------------------------------------------------------------------------

    def _charges(self, trade: Mapping[str, Any], fill: Fill) -> float:
        instrument = self._instrument(fill.instrument_id)
        if instrument is None:
            if fill.instrument_id not in self._unpriced:
                self._unpriced.add(fill.instrument_id)
                log.warning("no instrument %s in the master: its fills carry no charges",
                            fill.instrument_id)  # fmt: skip
            return 0.0
        oid = str(trade.get("order_id"))
        try:
            charges = self.cost_model.fill_charges(
                instrument,
                fill.product,
                fill.side,
                fill.qty,
                float(fill.price),
                fill.ts.astimezone(IST).date(),
                order_brokerage_so_far=self._brokerage.get(oid, 0.0),
            )
        except VeloxError as exc:
            if fill.instrument_id not in self._unpriced:
                self._unpriced.add(fill.instrument_id)
                log.warning("no charges for %s: %s", fill.instrument_id, exc)
            return 0.0
        self._brokerage[oid] = self._brokerage.get(oid, 0.0) + charges.brokerage
        return float(charges.total)

    def _fill_of(self, trade: Mapping[str, Any], client_id: str, strategy: str = "") -> Fill:
        """Return the Fill of one Kite trade, computed once per trade id (caller holds lock)."""
        trade_id = str(trade.get("trade_id"))
        known = self._fills.get(trade_id)
        if known is not None:
            return known
        bare = m.trade_from_kite(trade, client_id=client_id, strategy=strategy)
        fill = replace(bare, charges=self._charges(trade, bare))
        self._fills[trade_id] = fill
        return fill

    def fills(self) -> list[Fill]:
        """Return today's executions as Fills (``fill_id`` = Kite trade id), in time order.

        The engine books what these return, so their trades are not emitted again later.
        """
        self._load_book()
        trades = self._read("listing trades", "other", self._kite.trades)
        if not isinstance(trades, list):
            raise BrokerError(f"Kite's trade book is not a list: {type(trades).__name__}")
        ordered = sorted(trades, key=_trade_order)
        out = []
        with self._lock:
            for trade in ordered:
                order = self._slices.get(str(trade.get("order_id")))
                client_id = order.client_id if order else f"kite:{trade.get('order_id')}"
                fill = self._fill_of(trade, client_id)
                self._emitted.add(fill.fill_id)
                out.append(fill)
        return out

    def on_kite_order_update(self, data: Mapping[str, Any]) -> None:
        """Take one Kite order dict (ticker text message or verified postback) and tell the
        listener: new fills first (once per trade id), then the aggregated Velox order.

        Called from the ticker's or the postback server's thread; never raises (a bad update
        is logged), since an exception there would only kill that thread.
        """
        try:
            self._on_update(data)
        except AuthExpired as exc:
            log.error("order update not processed: %s", exc)
        except (BrokerError, KeyError, TypeError, ValueError) as exc:
            log.error("bad Kite order update %r: %s", dict(data) if data else data, exc)

    def _on_update(self, data: Mapping[str, Any]) -> None:
        order = m.order_from_kite(data)
        oid = order.broker_order_id
        assert oid is not None
        with self._lock:
            if not self._book_loaded or order.client_id not in self._groups:
                regroup = True
            else:
                regroup = False
        if regroup:
            try:
                self._ensure_book()  # after a restart: learn the other slices of this tag
            except BrokerError as exc:
                log.warning("cannot load the order book to regroup %s: %s", oid, exc)
        with self._lock:
            before = self._slices.get(oid)
            if before is not None and _is_stale(order, before):
                # postbacks may arrive out of order: an OPEN after its COMPLETE is old news
                log.debug("stale Kite update of %s (%s after %s) ignored", oid,
                          order.status.value, before.status.value)  # fmt: skip
                return
            self._remember(order)
            grew = order.filled_qty > (before.filled_qty if before is not None else 0)
            pending = order.filled_qty > sum(
                f.qty for f in self._fills.values() if f.broker_order_id == oid
            )
        new_fills: list[Fill] = []
        if grew or pending:
            trades = self._read(
                f"listing the trades of order {oid}",
                "other",
                lambda: self._kite.order_trades(oid),
            )
            with self._lock:
                for trade in sorted(trades, key=_trade_order):
                    fill = self._fill_of(trade, order.client_id, order.strategy)
                    if fill.fill_id not in self._emitted:
                        self._emitted.add(fill.fill_id)
                        new_fills.append(fill)
        aggregated = self._aggregate(order.client_id)
        listener = self._listener
        if listener is not None:
            for fill in new_fills:
                listener.on_fill(fill)
            listener.on_order_update(aggregated)

    # ---- account -----------------------------------------------------------------------------

    def positions(self) -> list[Position]:
        data = self._read("listing positions", "other", self._kite.positions)
        return m.positions_from_kite(data)

    def holdings(self) -> list[Position]:
        data = self._read("listing holdings", "other", self._kite.holdings)
        if not isinstance(data, list):
            raise BrokerError(f"Kite's holdings are not a list: {type(data).__name__}")
        return [m.holding_from_kite(h) for h in data]

    def funds(self) -> Funds:
        data = self._read("reading margins", "other", self._kite.margins)
        return m.funds_from_kite(data)

    def profile(self) -> dict[str, Any]:
        """Return the user profile (a cheap call that proves the session works)."""
        return dict(self._read("reading the profile", "other", self._kite.profile))

    # ---- market data over REST ---------------------------------------------------------------

    def download_instruments(
        self, store: Store | None = None, *, as_of: date | None = None
    ) -> InstrumentMaster:
        """Download Kite's instrument master (GET /instruments), store it, and use it.

        The CSV is read by :func:`velox.instruments.read_kite_csv` (NSE, BSE, NFO, BFO rows;
        freeze quantities for ``as_of``) and, when ``store`` is given, upserted into its
        ``instruments`` table. Returns the new :class:`~velox.instruments.InstrumentMaster`.
        """
        from velox.instruments import InstrumentMaster, read_kite_csv

        raw = self._read(
            "downloading the instrument master",
            "other",
            lambda: self._kite._get("market.instruments.all"),  # noqa: SLF001 - raw CSV bytes
        )
        if not isinstance(raw, bytes | str) or not raw:
            raise BrokerError("Kite's instrument master download is empty; try again later")
        with tempfile.TemporaryDirectory(prefix="velox-kite-") as folder:
            path = Path(folder) / "instruments.csv"
            path.write_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
            table = read_kite_csv(path, as_of=as_of)
        if store is not None:
            written = store.write_instruments(table)
            log.info("stored %d Kite instruments", written)
        master = InstrumentMaster(table)
        self._set_instruments(master)
        return master

    def _token(self, instrument_id: str) -> int:
        instrument = self._instrument(instrument_id)
        master = self._master
        if instrument is None or master is None:
            raise UnknownInstrument(
                f"{instrument_id} is not in the instrument master; run download_instruments()"
            )
        token = master.row(instrument_id)["kite_token"]
        if token is None or str(token) in ("", "<NA>", "nan"):
            raise UnknownInstrument(f"{instrument_id} has no Kite instrument token in the master")
        return int(token)

    def history(
        self,
        instrument_id: str,
        timeframe: str,
        start: datetime | date | str,
        end: datetime | date | str,
        *,
        continuous: bool = False,
    ) -> pd.DataFrame:
        """Return candles of ``[start, end]`` as Velox's bar frame, paginated within Kite's
        per-request spans (1m: 60 days, 3/5/10m: 100, 15/30m: 200, 1h: 400, 1d: 2,000).

        The frame is the shape :meth:`velox.store.Store.read_bars` returns (tz-aware index
        ``ts`` labelled by bar start, float64 OHLCV), ready for ``store.write_bars``. Naive
        times and dates are IST; a date ``end`` means the end of that day.
        """
        import pandas as pd

        interval, _ = m.kite_interval(timeframe)
        token = self._token(instrument_id)
        begin, finish = as_ist(start), as_ist(end, end_of_day=True)
        frames = []
        for lo, hi in m.history_windows(begin, finish, timeframe):
            records = self._read(
                f"reading {timeframe} history of {instrument_id}",
                "historical",
                lambda lo=lo, hi=hi: self._kite.historical_data(
                    token,
                    lo.astimezone(IST).replace(tzinfo=None),
                    hi.astimezone(IST).replace(tzinfo=None),
                    interval,
                    continuous=continuous,
                ),
            )
            frames.append(m.candles_frame(records))
        frame = pd.concat(frames) if frames else m.candles_frame([])
        return frame[~frame.index.duplicated(keep="last")].sort_index()

    def _kite_keys(self, instrument_ids: Collection[str]) -> dict[str, str]:
        """Return Kite's ``EXCHANGE:TRADINGSYMBOL`` key → Velox id for each instrument.

        They differ only for indices: Velox's ``NSE:NIFTY`` is Kite's ``NSE:NIFTY 50`` (the
        index's name in the master).
        """
        keys: dict[str, str] = {}
        for iid in instrument_ids:
            instrument = self._instrument(iid)
            key = iid
            if (
                instrument is not None
                and instrument.kind is InstrumentKind.INDEX
                and instrument.name
            ):
                key = f"{instrument.exchange}:{instrument.name}"
            keys[key] = iid
        return keys

    def ltp(self, instrument_ids: Collection[str]) -> dict[str, float]:
        """Return the last traded price of each instrument (GET /quote/ltp), by Velox id."""
        out: dict[str, float] = {}
        keys = self._kite_keys(instrument_ids)
        wanted = list(keys)
        for i in range(0, len(wanted), _LTP_BATCH):
            batch = wanted[i : i + _LTP_BATCH]
            data = self._read("reading LTP", "quote", lambda b=batch: self._kite.ltp(b))
            for key, value in data.items():
                if isinstance(value, Mapping) and value.get("last_price") is not None:
                    out[keys.get(key, key)] = float(value["last_price"])
        return out

    def quote(self, instrument_ids: Collection[str]) -> dict[str, Tick]:
        """Return a full quote of each instrument as a :class:`~velox.types.Tick` (best bid
        and ask from the depth, cumulative day volume, open interest), by Velox id."""
        out: dict[str, Tick] = {}
        keys = self._kite_keys(instrument_ids)
        wanted = list(keys)
        for i in range(0, len(wanted), _QUOTE_BATCH):
            batch = wanted[i : i + _QUOTE_BATCH]
            data = self._read("reading quotes", "quote", lambda b=batch: self._kite.quote(b))
            for key, value in data.items():
                iid = keys.get(key, key)
                tick = _quote_tick(iid, value, self._clock())
                if tick is not None:
                    out[iid] = tick
        return out


def _is_stale(update: Order, known: Order) -> bool:
    """Return True if ``update`` is older than what is ``known`` of the same Kite order."""
    if update.filled_qty < known.filled_qty:
        return True
    return known.is_terminal and not update.is_terminal


def _trade_order(trade: Mapping[str, Any]) -> tuple[str, str]:
    """Sort key of trades: fill time, then trade id. Both paths (fills() and updates) charge
    an order's fills in this order, so the brokerage cap splits the same way after a restart."""
    return (str(trade.get("fill_timestamp")), str(trade.get("trade_id")))


def _best(side: object) -> float | None:
    if isinstance(side, list) and side and isinstance(side[0], Mapping):
        price = side[0].get("price")
        return float(price) if price else None
    return None


def _quote_tick(instrument_id: str, data: object, now: datetime) -> Tick | None:
    if not isinstance(data, Mapping) or data.get("last_price") is None:
        return None
    depth = data.get("depth") if isinstance(data.get("depth"), Mapping) else {}
    ts = m.kite_time(data.get("last_trade_time")) or m.kite_time(data.get("timestamp")) or now
    volume = data.get("volume")
    return Tick(
        instrument_id=instrument_id,
        ts=ts,
        ltp=float(data["last_price"]),
        volume=int(volume) if volume is not None else None,
        last_qty=int(data["last_quantity"]) if data.get("last_quantity") is not None else None,
        bid=_best(depth.get("buy")),
        ask=_best(depth.get("sell")),
        oi=int(data["oi"]) if data.get("oi") is not None else None,
    )


def _store_master(store: Store) -> InstrumentMaster | None:
    """Return the store's instrument master, or None when it holds none."""
    from velox.instruments import InstrumentMaster

    table = store.read_instruments()
    return InstrumentMaster(table) if len(table) else None
