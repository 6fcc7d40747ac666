"""The :class:`RunRecorder`: an engine's orders, fills, positions, equity, risk events and
alerts, written to the store in batches: by a background thread in paper and live runs, so
the engine's thread never waits for I/O, and by the engine's own thread in turn in a replay,
which nobody watches tick (see :class:`RunRecorder`).

Records are idempotent, so a batch retried after a failure (even after a commit whose outcome
was unknown) stores nothing twice. The tables are described in ``docs/store.md``; they are read
with :class:`velox.store.Store` (``run_orders``, ``fills_of_run``, ``run_equity``, …).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING

import numpy as np
import psycopg

from velox._gc import gc_paused
from velox.errors import StoreError, ValidationError
from velox.store._values import aware, choice, jsonb_text, mapping, number, text
from velox.store.alerts import ALERT_KINDS, ALERT_SEVERITIES, RAISE_SQL
from velox.store.runs import FILL_COLUMNS, ORDER_COLUMNS, POSITION_COLUMNS
from velox.types import Fill, Order, Product, Tick

if TYPE_CHECKING:
    from velox.engine.journal import Alert
    from velox.store.core import Store

log = logging.getLogger(__name__)

#: Binary COPY types of an order row. ``updated_at`` (a timestamptz column) is sent with the
#: ``timestamp`` dumper as a naive UTC datetime: both types travel as the same int64 of
#: microseconds since 2000-01-01 UTC, and numpy makes naive datetimes in C (aware ones would
#: need Python per order).
_ORDER_TYPES = ["text"] * 4 + ["int8"] + ["text"] * 3 + ["float8"] * 2 + ["text"] * 4
_ORDER_TYPES += ["int8", "float8", "text", "timestamptz", "timestamp"]  # ... updated_at
_FILL_TYPES = ["text"] * 5 + ["int8", "float8", "timestamptz", "text", "text", "float8", "text"]
_POSITION_TYPES = ["text"] * 5 + ["int8"] + ["float8"] * 3 + ["timestamptz"]
_QUOTE_COLUMNS = ("run_id", "instrument_id", "ts", "ltp", "volume", "open", "high", "low",
                  "prev_close", "bid", "ask", "updated_at")  # fmt: skip
_QUOTE_TYPES = ["text", "text", "timestamptz", "float8", "int8"] + ["float8"] * 6
_QUOTE_TYPES += ["timestamptz"]
_CANDLE_COLUMNS = ("run_id", "instrument_id", "start", "open", "high", "low", "close", "volume",
                   "closed")  # fmt: skip
_CANDLE_TYPES = ["text", "text", "timestamptz"] + ["float8"] * 4 + ["int8", "bool"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_NS = 60_000_000_000
_DAY_NS = 86_400 * 1_000_000_000
_IST_NS = 19_800 * 1_000_000_000  # a trading day is an IST date

#: Seconds between the batches of a paper or live run's recorder: a tick reaches the trader
#: console within one batch plus the console's timer (tick → screen target 250 ms p95, see
#: bench/dashboard.py).
LIVE_FLUSH_S = 0.1

#: Seconds between the batches of a recorded replay (:meth:`RunRecorder.for_replay`), written
#: on the engine's own thread: nobody watches a replay tick, and a shorter replay is written
#: once, when it ends.
REPLAY_FLUSH_S = 10.0

#: Rows converted from the recorder's lists to numpy at a time: each conversion holds the GIL,
#: so the engine's thread waits for at most one piece (a few ms at worst; measured < 0.5 ms).
_CONVERT_ROWS = 32_768


@dataclass
class _Batch:
    """Records taken from the recorder's buffers and not yet written (kept across failures)."""

    orders: dict[str, tuple] = field(default_factory=dict)  # client_id -> COPY row
    fills: list[tuple] = field(default_factory=list)
    equity_ts: list[np.ndarray] = field(default_factory=list)
    equity_values: list[np.ndarray] = field(default_factory=list)
    positions: dict[tuple, tuple] = field(default_factory=dict)  # key -> COPY row
    risk_events: list[tuple] = field(default_factory=list)
    alerts: list[dict[str, object]] = field(default_factory=list)  # raise_alert's values
    quotes: dict[str, tuple] = field(default_factory=dict)  # instrument -> COPY row
    candles: dict[tuple[str, int], tuple] = field(default_factory=dict)  # (id, start) -> row
    heartbeat: float | None = None

    def counts(self) -> dict[str, int]:
        return {
            "orders": len(self.orders),
            "fills": len(self.fills),
            "equity": sum(len(a) for a in self.equity_ts),
            "positions": len(self.positions),
            "risk_events": len(self.risk_events),
            "alerts": len(self.alerts),
            "quotes": len(self.quotes),
            "candles": len(self.candles),
        }

    def empty(self) -> bool:
        return self.heartbeat is None and not any(self.counts().values())


class RunRecorder:
    """Record one run's orders, fills, positions, equity and risk events in the store.

    The recording methods are called from the engine's thread and only append to in-memory
    lists (no I/O, no locks on the common path: ~100 ns a call, see bench/recorder.py). A
    background thread takes what was recorded every ``flush_interval`` seconds and writes it in
    ONE transaction: fills and equity by binary COPY, the latest state of each order and
    position by COPY into a staging table and ``INSERT … ON CONFLICT DO UPDATE``, then NOTIFY
    ``velox_runs`` with the run id. It uses its own connection, so it never waits for (or holds
    up) the store's.

    A replay's recorder (:meth:`for_replay`, ``background=False``) has no writer thread: the
    engine's thread writes the batch itself, from :meth:`heartbeat` once ``flush_interval``
    seconds have passed since the last one, and at :meth:`close`. A writer thread beside a
    replay costs it more than the writer's own work: the engine's thread, which never waits
    for I/O, has to hand the GIL over and take it back at every switch (``docs/benchmarks.md``,
    "record=True"); written in turn, a replay pays only for the conversion and the COPY.

    A failed write is logged (ERROR, at most every 10 s while it keeps failing) and retried
    with the next batch; nothing is raised into the engine. The records stay in memory until
    written (memory grows while the store is down). :meth:`flush` writes synchronously and
    raises if it cannot; :meth:`close` flushes, stops the thread and raises
    :class:`~velox.errors.StoreError` if anything could not be written (a record that was
    invalid, or a store still unreachable: call ``close()`` again once it is back). Use it as
    a context manager.

    Records are idempotent, so a retry after a commit whose outcome was unknown writes nothing
    twice: fills are unique per ``fill_id`` (a repeat is ignored), equity per ``ts_ns`` (the
    last value recorded wins, also within a batch), orders per ``client_id`` and positions per
    key (the last state wins), risk events get a key when first taken.

    One thread records (the engine's); the methods are safe from several threads, but then
    the order of their equity points at the same ``ts_ns`` is not defined.

    Examples
    --------
    >>> recorder = RunRecorder(store, run_id)           # doctest: +SKIP
    >>> recorder.equity(1_711_942_200_000_000_000, 1_000_000.0)  # doctest: +SKIP
    >>> recorder.fill(fill)                              # doctest: +SKIP
    >>> recorder.close()                                 # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        flush_interval: float = 0.5,
        alerts: bool = True,
        background: bool = True,
    ) -> None:
        if isinstance(flush_interval, bool) or not (
            isinstance(flush_interval, int | float) and flush_interval > 0
        ):
            raise ValidationError(f"flush_interval={flush_interval!r} must be seconds > 0")
        store.run(run_id)  # DataError naming recent runs if it does not exist
        self.store = store
        self.run_id = run_id
        self.flush_interval = float(flush_interval)
        #: Whether :meth:`alert` stores alerts (off for replays: nobody is paged by a backtest).
        self.stores_alerts = bool(alerts)
        #: Rows written so far, per kind (orders and positions count upserted states).
        self.written = dict.fromkeys(
            ("orders", "fills", "equity", "positions", "risk_events", "alerts", "quotes",
             "candles"), 0,
        )  # fmt: skip
        self._orders: list[tuple[Order, datetime | int | None]] = []
        self._fills: list[Fill] = []
        self._equity: list[tuple[int, float]] = []
        # equity_many arrays, each with the number of single points recorded before it, so the
        # writer keeps the order of both kinds (the last value of a ts_ns wins).
        self._equity_arrays: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._equity_lock = threading.Lock()
        self._equity_taken = 0
        self._positions: list[tuple] = []
        self._risk_events: list[tuple] = []
        self._alerts: list[Alert] = []
        # Market data, kept as the latest state per instrument (see quote()): the tick and its
        # ns; the day [day, open, high, low, prev_close]; the candle [start, o, h, l, c,
        # volume, cumulative volume at its start, ns of its last tick]; rolled-over candles.
        self._quotes: dict[str, tuple[Tick, int]] = {}
        self._days: dict[str, list] = {}
        self._candles: dict[str, list] = {}
        self._closed_candles: list[tuple[str, tuple]] = []
        self._quotes_written: dict[str, int] = {}  # instrument -> ns of the quote written
        self._candles_written: dict[str, tuple[int, int]] = {}  # instrument -> (start, ns)
        self._heartbeat: float | None = None
        self._held = _Batch()
        self._stored_orders: set[str] = set()  # client ids of the orders written so far
        self._rejected: list[str] = []
        self._failures = 0
        self._last_error_log = -math.inf
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._closed = False
        #: The writer thread (``None``: the recording thread writes, see :meth:`heartbeat`).
        self.thread: threading.Thread | None = None
        self._next_write = time.monotonic() + self.flush_interval
        if background:
            self.thread = threading.Thread(
                target=self._loop, name=f"velox-recorder-{run_id}", daemon=True
            )
            self.thread.start()

    @classmethod
    def for_replay(cls, store: Store, run_id: str) -> RunRecorder:
        """The recorder of a replay (``velox.replay(record=True)``, ``velox replay --record``):
        no writer thread, a batch every :data:`REPLAY_FLUSH_S` seconds on the engine's thread,
        no alerts stored (nobody is paged by a backtest)."""
        return cls(store, run_id, flush_interval=REPLAY_FLUSH_S, alerts=False, background=False)

    def __repr__(self) -> str:
        return f"RunRecorder({self.run_id!r}, written={self.written})"

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the engine's side: append only ------------------------------------------------------

    def order(self, order: Order, ts: datetime | int | None = None) -> None:
        """Record the latest state of an order; ``ts`` is the engine time of the update
        (tz-aware datetime or UTC epoch ns; default: when it is written)."""
        self._orders.append((order, ts))

    def fill(self, fill: Fill) -> None:
        """Record a fill (a repeated ``fill_id`` is stored once)."""
        self._fills.append(fill)

    def equity(self, ts_ns: int, value: float) -> None:
        """Record the equity ``value`` at engine time ``ts_ns`` (UTC epoch ns)."""
        self._equity.append((ts_ns, value))

    def equity_many(self, ts_ns: Sequence[int], values: Sequence[float]) -> None:
        """Record many equity points at once (arrays are copied; checked here, not written).

        Raises
        ------
        ValidationError
            Lengths differ, times are not integers, or values not numbers.
        """
        times = np.array(ts_ns, copy=True)
        if times.dtype.kind == "M":
            times = times.astype("M8[ns]").view(np.int64)
        if times.ndim != 1 or (times.size and times.dtype.kind not in "iu"):
            raise ValidationError(
                f"equity_many ts_ns must be a 1-D sequence of UTC epoch ns integers, got "
                f"{times.dtype} with shape {times.shape}"
            )
        try:
            numbers = np.array(values, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"equity_many values must be numbers: {exc}") from None
        if numbers.shape != times.shape:
            raise ValidationError(
                f"equity_many got {times.size} times and {numbers.size} values; give one "
                "value per time"
            )
        with self._equity_lock:
            self._equity_arrays.append(
                (self._equity_taken + len(self._equity), times.astype(np.int64), numbers)
            )

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
        """Record the latest position of (account, strategy, instrument, product); strategy
        ``''`` is the account's row. ``ts`` is tz-aware or UTC epoch ns."""
        self._positions.append(
            (account, strategy, instrument_id, product, qty, average_price, realised_pnl,
             charges, ts)
        )  # fmt: skip

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
        """Record a risk event (breach, kill, reset; see :class:`velox.risk.RiskEvent`)."""
        self._risk_events.append((ts, kind, limit, message, account, payload))

    def alert(self, alert: Alert) -> None:
        """Record an alert (:class:`velox.engine.journal.Alert`); the next batch stores it with
        :meth:`velox.store.Store.raise_alert`'s de-duplication and NOTIFY ``velox_alerts``.
        Nothing happens when the recorder was made with ``alerts=False``.

        A batch retried after a commit whose outcome was unknown counts a de-duplicated alert's
        occurrence twice at worst; it never loses one.
        """
        if self.stores_alerts:
            self._alerts.append(alert)

    def quote(self, tick: Tick, ns: int) -> None:
        """Record a tick (engine time ``ns``, UTC epoch ns): the instrument's latest quote, the
        day's open/high/low and its 1-minute candle. O(1), a few dict operations.

        A candle's volume is the rise of the tick's cumulative day volume within the minute;
        the first candle of a run starts from its first tick's cumulative (so it counts what
        was traded after that tick), and a cumulative that falls (a new day) starts again
        from zero.
        """
        iid = tick.instrument_id
        price = tick.ltp
        self._quotes[iid] = (tick, ns)
        day = (ns + _IST_NS) // _DAY_NS
        d = self._days.get(iid)
        if d is None or d[0] != day:
            prev_close = None
            if d is not None:
                last = self._candles.get(iid)
                prev_close = last[4] if last is not None else None
            self._days[iid] = [day, price, price, price, prev_close]
        else:
            if price > d[2]:
                d[2] = price
            if price < d[3]:
                d[3] = price
        start = ns - ns % _MINUTE_NS
        volume = tick.volume
        c = self._candles.get(iid)
        if c is None or c[0] != start:
            base = volume  # cumulative volume when the candle opens (None: unknown)
            if c is not None:
                self._closed_candles.append((iid, tuple(c)))
                if c[6] is not None:
                    base = c[6] + c[5]
            c = self._candles[iid] = [start, price, price, price, price, 0, base, ns]
        else:
            if price > c[2]:
                c[2] = price
            if price < c[3]:
                c[3] = price
            c[4] = price
            c[7] = ns
        if volume is not None:
            if c[6] is None:
                c[6] = volume
            elif volume < c[6]:  # the cumulative started again: a new day
                c[6] = 0
            c[5] = volume - c[6]

    def heartbeat(self) -> None:
        """Note that the engine is alive; the next batch sets the run's ``heartbeat_at``.

        Without a writer thread this writes the batch when ``flush_interval`` seconds have
        passed since the last one (a failure is logged and retried, never raised)."""
        self._heartbeat = time.time()
        if self.thread is None and time.monotonic() >= self._next_write:
            self._flush(raise_errors=False)
            self._next_write = time.monotonic() + self.flush_interval

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything recorded so far, synchronously.

        Raises
        ------
        StoreError
            The write failed; the records stay buffered and are retried by the next flush.
        """
        self._flush(raise_errors=True)

    def close(self) -> None:
        """Flush, stop the writer thread and close its connection (idempotent).

        Raises
        ------
        StoreError
            Records could not be written: the store is unreachable (they are kept; call
            ``close()`` again to retry) or some records were invalid (named in the message).
        """
        if self._closed:
            return
        self._stop.set()
        thread = self.thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join()
        self._flush(raise_errors=True)
        self._closed = True
        self._drop_connection()
        if self._rejected:
            shown = "; ".join(self._rejected[:5])
            more = f" (and {len(self._rejected) - 5} more)" if len(self._rejected) > 5 else ""
            raise StoreError(
                f"run {self.run_id}: {len(self._rejected)} recorded values were invalid and not "
                f"stored: {shown}{more}"
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._flush(raise_errors=False)

    def _flush(self, *, raise_errors: bool) -> None:
        with self._write_lock:
            try:
                with gc_paused():  # converting a batch makes only acyclic rows (velox._gc)
                    self._take()
                if self._held.empty():
                    return
                counts = self._write(self._held)
            except Exception as exc:
                self._failed(exc)
                if raise_errors:
                    backlog = {k: v for k, v in self._held.counts().items() if v}
                    raise StoreError(
                        f"run {self.run_id}: writing to the store failed ({exc}); kept in memory "
                        f"for the next flush: {backlog}"
                    ) from exc
                return
            self._stored_orders.update(self._held.orders)
            self._held = _Batch()
            for kind, n in counts.items():
                self.written[kind] += n
            if self._failures:
                log.warning(
                    "run %s: store writes work again after %d failed attempts",
                    self.run_id,
                    self._failures,
                )
                self._failures = 0

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._drop_connection()
        now = time.monotonic()
        if now - self._last_error_log >= 10.0 or self._failures == 1:
            self._last_error_log = now
            log.error(
                "run %s: recording to the store failed (attempt %d), keeping %s in memory and "
                "retrying every %.1f s: %s",
                self.run_id,
                self._failures,
                {k: v for k, v in self._held.counts().items() if v},
                self.flush_interval,
                exc,
                exc_info=self._failures == 1,
            )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self.store.connect(autocommit=True)
        return self._conn

    # -- taking records from the buffers (writer thread) ---------------------------------------

    def _take(self) -> None:
        """Move what was recorded into the held batch, checked and converted for COPY.

        Lists are taken as ``items = buf[:n]; del buf[:n]``: under the GIL each is atomic and
        an append by the engine meanwhile lands after ``n``, so nothing is lost or taken twice.
        """
        batch = self._held
        orders, fills = _take(self._orders), _take(self._fills)
        positions, risk_events = _take(self._positions), _take(self._risk_events)
        alerts = _take(self._alerts)
        self._take_market(batch)
        with self._equity_lock:
            n = len(self._equity)
            singles = self._equity[:n]
            del self._equity[:n]
            base, self._equity_taken = self._equity_taken, self._equity_taken + n
            arrays = self._equity_arrays[:]
            self._equity_arrays.clear()
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            batch.heartbeat = max(beat, batch.heartbeat or beat)
        self._take_orders(batch, orders)
        self._take_fills(batch, fills)
        last_positions = {item[:4]: item for item in positions}  # (account, strategy, id, product)
        for item in last_positions.values():
            row = self._checked("position", _position_row, self.run_id, *item)
            if row is not None:
                batch.positions[row[:5]] = row
        for item in risk_events:
            row = self._checked("risk event", _risk_row, self.run_id, *item)
            if row is not None:
                batch.risk_events.append(row)
        for alert in alerts:
            values = self._checked("alert", _alert_values, self.run_id, alert)
            if values is not None:
                batch.alerts.append(values)  # type: ignore[arg-type]
        start = 0
        for at, times, values in arrays:
            self._take_equity(batch, singles[start : at - base])
            batch.equity_ts.append(times)
            batch.equity_values.append(values)
            start = at - base
        self._take_equity(batch, singles[start:])

    def _take_orders(
        self, batch: _Batch, orders: list[tuple[Order, datetime | int | None]]
    ) -> None:
        """Convert each order's last state in ``orders`` (~4 states per order) to its row.

        This runs on the writer thread while the engine's thread waits for the GIL, so the
        common batch (every item an ``Order`` with an engine time in epoch ns) is converted
        without Python code per order: the last state of each order is picked by a ``dict``
        built from ``zip``, the fields read by one ``attrgetter``, the times converted by
        numpy. Anything else is checked one by one, so a bad record is rejected alone.
        """
        if not orders:
            return
        written_at = _naive_utc(datetime.now(UTC))
        objects = list(map(_FIRST, orders))
        if set(map(type, objects)) == {Order}:
            latest = dict(zip(map(_CLIENT_ID, objects), orders, strict=True))
            stamps = list(map(_SECOND, latest.values()))
            if set(map(type, stamps)) == {int}:
                micros = np.fromiter(stamps, np.int64, len(stamps)) // 1000
                updated = micros.astype("M8[us]").tolist()  # naive UTC datetimes, in C
                fields = map(_ORDER_FIELDS, map(_FIRST, latest.values()))
                run_id = self.run_id
                rows = [(run_id, *f, u) for f, u in zip(fields, updated, strict=True)]
                batch.orders.update(zip(latest, rows, strict=True))
                return
            orders = list(latest.values())
        for order, ts in orders:
            row = self._checked("order", _order_row, self.run_id, order, ts, written_at)
            if row is not None:
                batch.orders[row[1]] = row

    def _take_fills(self, batch: _Batch, fills: list[Fill]) -> None:
        """Convert fills to rows: every item a ``Fill`` (checked when it was made) by one
        ``attrgetter`` each, anything else checked one by one (see :meth:`_take_orders`)."""
        if set(map(type, fills)) <= {Fill}:
            run_id = self.run_id
            batch.fills += [(run_id, *f) for f in map(_FILL_FIELDS, fills)]
            return
        for fill in fills:
            row = self._checked("fill", _fill_row, self.run_id, fill)
            if row is not None:
                batch.fills.append(row)

    def _take_market(self, batch: _Batch) -> None:
        """The quotes and candles that changed since the last batch (latest state wins)."""
        written = datetime.now(UTC)
        for iid, (tick, ns) in list(self._quotes.items()):
            if self._quotes_written.get(iid) == ns:
                continue
            day = self._days.get(iid)
            if day is None:
                continue
            batch.quotes[iid] = (
                self.run_id, iid, _utc(ns), float(tick.ltp),
                None if tick.volume is None else int(tick.volume), float(day[1]),
                float(day[2]), float(day[3]), day[4], _price(tick.bid), _price(tick.ask),
                written,
            )  # fmt: skip
            self._quotes_written[iid] = ns
        closed = _take(self._closed_candles)
        for iid, c in closed:
            batch.candles[(iid, c[0])] = self._candle_row(iid, c, closed=True)
        for iid, c in list(self._candles.items()):
            c = tuple(c)
            if self._candles_written.get(iid) == (c[0], c[7]):
                continue
            batch.candles[(iid, c[0])] = self._candle_row(iid, c, closed=False)
            self._candles_written[iid] = (c[0], c[7])

    def _candle_row(self, iid: str, c: tuple, *, closed: bool) -> tuple:
        return (self.run_id, iid, _utc(c[0]), float(c[1]), float(c[2]), float(c[3]),
                float(c[4]), int(c[5]), closed)  # fmt: skip

    def _checked(self, what: str, build: Callable[..., tuple], *args: object) -> tuple | None:
        try:
            return build(*args)
        except (ValidationError, TypeError, ValueError, AttributeError) as exc:
            self._reject(f"{what}: {exc}")
            return None

    def _reject(self, problem: str) -> None:
        log.error("run %s: not storing an invalid %s", self.run_id, problem)
        self._rejected.append(problem)

    def _take_equity(self, batch: _Batch, points: list[tuple[int, float]]) -> None:
        for lo in range(0, len(points), _CONVERT_ROWS):
            piece = points[lo : lo + _CONVERT_ROWS]
            try:
                rows = np.fromiter(piece, _EQUITY_DTYPE, len(piece))
            except (TypeError, ValueError, OverflowError):
                rows = self._equity_rows_one_by_one(piece)
            batch.equity_ts.append(rows["ts_ns"])
            batch.equity_values.append(rows["equity"])

    def _equity_rows_one_by_one(self, points: list[tuple[int, float]]) -> np.ndarray:
        good = []
        for ts_ns, value in points:
            if isinstance(ts_ns, int | np.integer) and not isinstance(ts_ns, bool):
                try:
                    good.append((int(ts_ns), float(value)))
                    continue
                except (TypeError, ValueError, OverflowError):
                    pass
            self._reject(f"equity point ({ts_ns!r}, {value!r}): need (int ns, float)")
        return np.array(good, _EQUITY_DTYPE)

    # -- one batch, one transaction ------------------------------------------------------------

    def _write_orders(self, conn: psycopg.Connection, orders: dict[str, tuple]) -> None:
        """COPY the orders this recorder never wrote (most of a replay's orders end within one
        batch), upsert the others: the upsert's staging round trip costs twice the COPY."""
        columns = ("run_id", *ORDER_COLUMNS, "updated_at")
        fresh = [row for client_id, row in orders.items() if client_id not in self._stored_orders]
        known = [row for client_id, row in orders.items() if client_id in self._stored_orders]
        if fresh and not _copy_new_rows(conn, "run_orders", columns, _ORDER_TYPES, fresh):
            known += fresh  # stored before this recorder started (a restarted run)
        if known:
            _upsert(conn, "run_orders", columns, _ORDER_TYPES, 2, known)

    def _write(self, batch: _Batch) -> dict[str, int]:
        conn = self._connection()
        counts = batch.counts()
        with conn.transaction():
            if batch.fills:
                _write_fills(conn, batch.fills)
            if batch.equity_ts:
                counts["equity"] = _write_equity(
                    conn, self.run_id, np.concatenate(batch.equity_ts),
                    np.concatenate(batch.equity_values),
                )  # fmt: skip
            if batch.orders:
                self._write_orders(conn, batch.orders)
            if batch.positions:
                _upsert(conn, "run_positions", ("run_id", *POSITION_COLUMNS), _POSITION_TYPES, 5,
                        list(batch.positions.values()))  # fmt: skip
            if batch.risk_events:
                with conn.cursor() as cur:
                    cur.executemany(
                        'INSERT INTO risk_events (run_id, ts, kind, "limit", message, account,'
                        " payload, event_key) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
                        " ON CONFLICT (event_key) DO NOTHING",
                        batch.risk_events,
                    )
            if batch.quotes:
                _upsert(conn, "run_quotes", _QUOTE_COLUMNS, _QUOTE_TYPES, 2,
                        list(batch.quotes.values()))  # fmt: skip
            if batch.candles:
                _upsert(conn, "run_candles", _CANDLE_COLUMNS, _CANDLE_TYPES, 3,
                        list(batch.candles.values()))  # fmt: skip
            for values in batch.alerts:
                alert_id = conn.execute(RAISE_SQL, values).fetchone()[0]
                conn.execute("SELECT pg_notify('velox_alerts', %s)", (str(alert_id),))
            if batch.heartbeat is not None:
                conn.execute(
                    "UPDATE runs SET heartbeat_at = greatest(heartbeat_at, %s) WHERE run_id = %s",
                    (datetime.fromtimestamp(batch.heartbeat, UTC), self.run_id),
                )
            conn.execute("SELECT pg_notify('velox_runs', %s)", (self.run_id,))
        return counts


_EQUITY_DTYPE = np.dtype([("ts_ns", np.int64), ("equity", np.float64)])


def _utc(ns: int) -> datetime:
    """UTC epoch ns as a tz-aware datetime (µs: what PostgreSQL keeps)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _take(buffer: list) -> list:
    n = len(buffer)
    items = buffer[:n]
    del buffer[:n]
    return items


def _order_row(run_id: str, order: Order, ts: datetime | int | None, written_at: datetime) -> tuple:
    if not isinstance(order, Order):
        raise ValidationError(f"expected a velox.types.Order, got {type(order).__name__}")
    updated = written_at if ts is None else _naive_utc(aware("order ts", ts))
    return (run_id, *_ORDER_FIELDS(order), updated)


def _fill_row(run_id: str, fill: Fill) -> tuple:
    if not isinstance(fill, Fill):
        raise ValidationError(f"expected a velox.types.Fill, got {type(fill).__name__}")
    return (run_id, *_FILL_FIELDS(fill))


def _naive_utc(value: datetime) -> datetime:
    """The UTC wall time of an aware datetime: what ``updated_at`` is written as (see
    :data:`_ORDER_TYPES`)."""
    return value.astimezone(UTC).replace(tzinfo=None)


_FIRST, _SECOND, _CLIENT_ID = itemgetter(0), itemgetter(1), attrgetter("client_id")
#: An order's columns of ``run_orders`` after run_id (:data:`ORDER_COLUMNS`), enums as values;
#: one C call per order instead of a Python function.
_ORDER_FIELDS = attrgetter(
    "client_id", "instrument_id", "side._value_", "qty", "order_type._value_",
    "product._value_", "validity._value_", "limit_price", "trigger_price", "tag", "strategy",
    "status._value_", "broker_order_id", "filled_qty", "average_price", "status_message",
    "created_at",
)  # fmt: skip
#: A fill's columns of ``run_fills`` after run_id (:data:`FILL_COLUMNS`).
_FILL_FIELDS = attrgetter(
    "fill_id", "client_id", "instrument_id", "side._value_", "qty", "price", "ts",
    "product._value_", "broker_order_id", "charges", "strategy",
)  # fmt: skip


def _position_row(
    run_id: str, account: object, strategy: object, instrument_id: object, product: object,
    qty: object, average_price: object, realised_pnl: object, charges: object, ts: object,
) -> tuple:  # fmt: skip
    if isinstance(qty, bool) or not isinstance(qty, int | np.integer):
        raise ValidationError(f"position qty={qty!r} must be an int")
    return (
        run_id, text("account", account, empty=True), text("strategy", strategy, empty=True),
        text("instrument_id", instrument_id), Product(product)._value_, int(qty),
        number("average_price", average_price), number("realised_pnl", realised_pnl),
        number("charges", charges), aware("position ts", ts),
    )  # fmt: skip


def _risk_row(
    run_id: str, ts: object, kind: object, limit: object, message: object, account: object,
    payload: object,
) -> tuple:  # fmt: skip
    return (
        run_id, aware("risk event ts", ts), text("kind", kind), text("limit", limit),
        text("message", message, empty=True), text("account", account, empty=True),
        jsonb_text("payload", mapping("payload", payload)), uuid.uuid4(),
    )  # fmt: skip


def _alert_values(run_id: str, alert: Alert) -> dict[str, object]:
    values = {
        "kind": choice("kind", alert.kind, ALERT_KINDS),
        "severity": choice("severity", alert.severity, ALERT_SEVERITIES),
        "message": text("message", alert.message),
        "dedup_key": alert.dedup_key,
        "run_id": run_id,
        "account": alert.account or None,
        "payload": jsonb_text("payload", mapping("payload", alert.payload)),
        "ts": aware("ts", alert.ts),
    }
    return values


def _price(value: float | None) -> float | None:
    return None if value is None else float(value)


def _copy_new_rows(
    conn: psycopg.Connection, table: str, columns: Sequence[str], types: Sequence[str],
    rows: list[tuple],
) -> bool:  # fmt: skip
    """Binary-COPY ``rows`` into ``table`` in a savepoint; return False (nothing written) if
    one of them is stored already (a unique violation)."""
    names = ", ".join(columns)
    try:
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def _write_fills(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """COPY fills into run_fills; a fill already stored (a retried batch) is skipped."""
    names = ", ".join(("run_id", *FILL_COLUMNS))
    if _copy_new_rows(conn, "run_fills", ("run_id", *FILL_COLUMNS), _FILL_TYPES, rows):
        return
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _velox_stage_fills (seq bigint, run_id text,"
        " fill_id text, client_id text, instrument_id text, side text, qty bigint, price float8,"
        " ts timestamptz, product text, broker_order_id text, charges float8, strategy text)"
        " ON COMMIT DELETE ROWS"
    )
    conn.execute("TRUNCATE _velox_stage_fills")
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY _velox_stage_fills (seq, {names}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int8", *_FILL_TYPES])
        for seq, row in enumerate(rows):
            copy.write_row((seq, *row))
    conn.execute(
        f"INSERT INTO run_fills ({names}) SELECT {names} FROM _velox_stage_fills ORDER BY seq"
        " ON CONFLICT (run_id, fill_id) DO NOTHING"
    )


#: Equity points per stored block (``run_equity_blocks``, migration 0006): 256 KB of bytea
#: per column, ~60 rows for a replay of a million bars.
EQUITY_BLOCK_POINTS = 16_384

_INSERT_EQUITY_BLOCK = (
    "INSERT INTO run_equity_blocks (run_id, first_ns, last_ns, points, ts_ns, equity)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (run_id, first_ns) DO UPDATE SET last_ns = EXCLUDED.last_ns,"
    " points = EXCLUDED.points, ts_ns = EXCLUDED.ts_ns, equity = EXCLUDED.equity,"
    " written = EXCLUDED.written"
)


def _write_equity(
    conn: psycopg.Connection, run_id: str, ts_ns: np.ndarray, values: np.ndarray
) -> int:
    """Store equity points (the last value of each ts_ns) as blocks of
    :data:`EQUITY_BLOCK_POINTS`, cut from the batch's first point, so a retried batch rewrites
    the same blocks; a point also in an earlier block is superseded on read (written last)."""
    if len(ts_ns) > 1 and not (ts_ns[1:] > ts_ns[:-1]).all():
        order = np.argsort(ts_ns, kind="stable")  # equal times keep the order recorded
        ts_ns, values = ts_ns[order], values[order]
        last = np.r_[ts_ns[1:] != ts_ns[:-1], True]
        ts_ns, values = ts_ns[last], values[last]
    times, numbers = ts_ns.astype(">i8"), values.astype(">f8")
    rows = [
        (run_id, int(ts_ns[lo]), int(ts_ns[hi - 1]), hi - lo, times[lo:hi].tobytes(),
         numbers[lo:hi].tobytes())
        for lo in range(0, len(ts_ns), EQUITY_BLOCK_POINTS)
        for hi in [min(lo + EQUITY_BLOCK_POINTS, len(ts_ns))]
    ]  # fmt: skip
    with conn.cursor(binary=True) as cur:
        cur.executemany(_INSERT_EQUITY_BLOCK, rows)
    return len(ts_ns)


def _upsert(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    key: int,
    rows: list[tuple],
) -> None:
    """Binary-COPY ``rows`` into a staging copy of ``table``, then insert-or-replace them."""
    stage = f"_velox_stage_{table}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
    conn.execute(f"TRUNCATE {stage}")
    names = ", ".join(columns)
    with conn.cursor() as cur, cur.copy(f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)") as c:
        c.set_types(list(types))
        for row in rows:
            c.write_row(row)
    updates = ", ".join(f"{col} = EXCLUDED.{col}" for col in columns[key:])
    conn.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}"
        f" ON CONFLICT ({', '.join(columns[:key])}) DO UPDATE SET {updates}"
    )


__all__ = ["LIVE_FLUSH_S", "RunRecorder"]
