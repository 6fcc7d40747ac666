"""Run records in the store: :meth:`RunsMixin.create_run`, ``finish_run`` and the readers.

A *run* is one engine session (a replay, a paper or a live session), identified by a short run
id such as ``R12``, ``P3`` or ``L1``: the prefix of its orders' client ids ``<run_id>-<n>``,
which travel in the broker's 20-character order tag. :meth:`RunsMixin.create_run` registers it;
the engine's :class:`~velox.store.recorder.RunRecorder` (also importable from here) then
records its orders (latest state), fills, positions (latest state), equity curve and risk
events. Readers return DataFrames (IST times) or, for orders and fills, the
:mod:`velox.types` objects themselves.

Conventions
-----------
- Equity points are keyed by the engine's exact time ``ts_ns`` (UTC epoch ns) and stored as
  float8 through binary COPY: a read returns the very bits recorded.
- Fill and order times are ``timestamptz`` (microseconds, as Python datetimes are): objects read
  back compare equal to the originals.
- Latest-state tables (orders, positions) are upserted: the last state recorded wins.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql

from velox.calendar import IST_NAME
from velox.errors import ConfigError, DataError, StoreError, ValidationError
from velox.store._values import (
    StoreLike,
    aware,
    choice,
    filtered_select,
    identifiers,
    ist_column,
    jsonb_text,
    mapping,
    number,
    recent_hint,
    text,
    to_ist,
)
from velox.types import Fill, Order, OrderStatus, OrderType, Product, Side, Validity, is_aware

if TYPE_CHECKING:
    import pandas as pd


log = logging.getLogger(__name__)

RUN_MODES = ("replay", "paper", "live")
RUN_STATUSES = ("running", "finished", "failed", "stopped")
_RUN_ID = re.compile(r"^[A-Za-z0-9]{1,10}$")
#: First key of the advisory locks that hold runs (:meth:`RunsMixin.hold_run`): "velo".
RUN_LOCK_CLASS = 0x76656C6F

#: Columns of the runs frame, in table order.
RUN_COLUMNS = (
    "run_id", "mode", "account", "status", "strategies", "initial_cash", "params", "started_at",
    "ended_at", "summary", "heartbeat_at", "restarts", "restarted_at",
)  # fmt: skip
_RUN_TIMES = ("started_at", "ended_at", "heartbeat_at", "restarted_at")

#: Fields of :class:`velox.types.Order`, in order: the columns of ``run_orders`` after run_id.
ORDER_COLUMNS = (
    "client_id", "instrument_id", "side", "qty", "order_type", "product", "validity",
    "limit_price", "trigger_price", "tag", "strategy", "status", "broker_order_id", "filled_qty",
    "average_price", "status_message", "created_at",
)  # fmt: skip
#: Fields of :class:`velox.types.Fill`, in order: the columns of ``run_fills`` after run_id.
FILL_COLUMNS = (
    "fill_id", "client_id", "instrument_id", "side", "qty", "price", "ts", "product",
    "broker_order_id", "charges", "strategy",
)  # fmt: skip
POSITION_COLUMNS = (
    "account", "strategy", "instrument_id", "product", "qty", "average_price", "realised_pnl",
    "charges", "updated_at",
)  # fmt: skip
RISK_EVENT_COLUMNS = ("ts", "kind", "limit", "message", "account", "payload", "written_at")
#: Columns of :meth:`RunsMixin.run_quotes` (table ``run_quotes``, migration 0012).
QUOTE_COLUMNS = ("instrument_id", "ts", "ltp", "volume", "open", "high", "low", "prev_close",
                 "bid", "ask", "updated_at")  # fmt: skip
#: Columns of :meth:`RunsMixin.run_candles` (table ``run_candles``, migration 0012).
CANDLE_COLUMNS = ("start", "open", "high", "low", "close", "volume", "closed")


class RunsMixin(StoreLike):
    """Run records: :meth:`create_run`, :meth:`finish_run`, :meth:`heartbeat` and the readers."""

    # -- writing -----------------------------------------------------------------------------

    def create_run(
        self,
        *,
        mode: str,
        account: str = "",
        strategies: Sequence[Mapping[str, object]] = (),
        initial_cash: float,
        params: Mapping[str, object] | None = None,
        run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> str:
        """Register a run (status ``running``) and return its run id.

        ``strategies`` lists ``{"name", "class", "params"}`` mappings (``class`` and ``params``
        optional; ``instruments`` and ``timeframe`` may be added). Without ``run_id`` the store
        generates one: the mode's upper-case letter and the next number of that mode's
        PostgreSQL sequence (``R12``, ``P3``, ``L1``), skipping numbers already taken by given
        ids. A given ``run_id`` (at most 10 letters and digits:
        ``<run_id>-<n>`` client ids must fit Kite's 20-character order tag) that exists is a
        restart: its status goes back to ``running`` (``ended_at`` and ``summary`` cleared,
        ``restarts`` counted, ``started_at`` and the recorded configuration kept) and the same
        id is returned. NOTIFY ``velox_runs`` with the run id.

        Raises
        ------
        ValidationError
            Unknown mode, malformed run id or strategies, or a restart with another mode or
            account than the run was created with.

        Examples
        --------
        >>> run_id = store.create_run(mode="paper", account="ZX1234", initial_cash=1e6,
        ...                           strategies=[{"name": "orb", "class": "OpeningRange",
        ...                                        "params": {"minutes": 15}}])  # doctest: +SKIP
        >>> run_id                                                                # doctest: +SKIP
        'P1'
        """
        mode = choice("mode", mode, RUN_MODES)
        account = text("account", account, empty=True)
        strategies_json = jsonb_text("strategies", _strategy_list(strategies))
        cash = _finite("initial_cash", initial_cash)
        params_json = jsonb_text("params", mapping("params", params))
        started = None if started_at is None else aware("started_at", started_at)
        if run_id is not None:
            check_run_id(run_id)
        insert = (
            "INSERT INTO runs (run_id, mode, account, strategies, initial_cash, params, started_at)"
            " VALUES (%s, %s, %s, %s::jsonb, %s, %s::jsonb, coalesce(%s, now()))"
            " ON CONFLICT (run_id) DO NOTHING RETURNING run_id"
        )
        values = (mode, account, strategies_json, cash, params_json, started)
        with self._atomic() as conn:
            if run_id is None:
                sequence = f"run_number_{mode}"
                for _ in range(10_000):  # only ids given by hand can be in the way
                    serial = conn.execute("SELECT nextval(%s::regclass)", (sequence,)).fetchone()[0]
                    candidate = f"{mode[0].upper()}{serial}"
                    if conn.execute(insert, (candidate, *values)).fetchone() is not None:
                        run_id = candidate
                        break
                else:  # pragma: no cover - 10,000 hand-made ids in a row
                    raise StoreError(f"could not find a free {mode} run id; give run_id=")
                log.info("created %s run %s (account %r)", mode, run_id, account)
            elif conn.execute(insert, (run_id, *values)).fetchone() is None:
                _restart(conn, run_id, mode, account, started)
            else:
                log.info("created %s run %s (account %r)", mode, run_id, account)
            conn.execute("SELECT pg_notify('velox_runs', %s)", (run_id,))
        return run_id

    @contextmanager
    def hold_run(self, run_id: str) -> Iterator[None]:
        """Hold ``run_id`` for this process while the block runs: one engine per run at a time.

        A second engine on a running paper/live run would take over its simulator or broker
        session and leave the first one trading blind, so it is refused before it touches
        anything. The hold is a PostgreSQL session-level advisory lock on a connection of its
        own, released when the block ends or the process dies (``kill -9`` included: the server
        ends the session), so a crashed engine never blocks its restart.

        Raises
        ------
        ConfigError
            Another live process holds the run (the message names its pid).
        """
        check_run_id(run_id)
        conn = self.connect(autocommit=True)
        try:
            conn.execute("SELECT set_config('application_name', %s, false)",
                         (f"velox run {run_id} pid {os.getpid()}",))  # fmt: skip
            held = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (RUN_LOCK_CLASS, run_id)
            ).fetchone()[0]
            if not held:
                holder = conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = %s AND l.objid = hashtext(%s)::oid AND l.objsubid = 2",
                    (RUN_LOCK_CLASS, run_id),
                ).fetchone()
                who = holder[0].rsplit(" ", 2)[-2:] if holder else []
                by = f" (pid {who[1]})" if len(who) == 2 and who[0] == "pid" else ""
                raise ConfigError(
                    f"run {run_id} is already running in another engine{by}: stop it first "
                    f"(velox kill --run {run_id}) or give another --run"
                )
            yield
        finally:
            conn.close()

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        summary: Mapping[str, object] | None,
        ended_at: datetime | None = None,
    ) -> None:
        """Mark a run ``finished``, ``failed`` or ``stopped`` with its summary (JSON).

        ``ended_at`` defaults to now. Non-finite floats in ``summary`` are stored as null (JSON
        has no NaN). Command targets the run never took stay pending: a restart of the run
        (:meth:`create_run` with its id) finds them. NOTIFY ``velox_runs``.

        Raises
        ------
        DataError
            Unknown run id.
        """
        status = choice("status", status, RUN_STATUSES[1:])
        summary_json = jsonb_text("summary", mapping("summary", summary))
        ended = None if ended_at is None else aware("ended_at", ended_at)
        with self._atomic() as conn:
            row = conn.execute(
                "UPDATE runs SET status = %s, summary = %s::jsonb, ended_at = coalesce(%s, now())"
                " WHERE run_id = %s RETURNING run_id",
                (status, summary_json, ended, run_id),
            ).fetchone()
            if row is None:
                raise unknown_run(conn, run_id)
            conn.execute("SELECT pg_notify('velox_runs', %s)", (run_id,))
        log.info("run %s %s", run_id, status)

    def heartbeat(self, run_id: str) -> None:
        """Set the run's ``heartbeat_at`` to now (a console shows engines that stopped beating).

        :meth:`RunRecorder.heartbeat` does the same from the engine's thread without I/O.
        """
        with self._shared() as conn:
            row = conn.execute(
                "UPDATE runs SET heartbeat_at = now() WHERE run_id = %s RETURNING run_id",
                (run_id,),
            ).fetchone()
            if row is None:
                raise unknown_run(conn, run_id)

    # -- reading -----------------------------------------------------------------------------

    def runs(
        self,
        *,
        mode: str | None = None,
        account: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Return runs, newest first, as a DataFrame (columns :data:`RUN_COLUMNS`, IST times).

        Filters are exact matches; None means any. ``strategies``, ``params`` and ``summary``
        are the stored JSON as Python lists and dicts.

        Examples
        --------
        >>> store.runs(mode="paper", status="running")[["run_id", "account"]]  # doctest: +SKIP
        """
        import pandas as pd

        query, values = filtered_select(
            "runs",
            RUN_COLUMNS,
            (
                ("mode", mode, RUN_MODES),
                ("account", account, None),
                ("status", status, RUN_STATUSES),
            ),
            "started_at DESC, run_id DESC",
            limit,
        )
        with self._shared() as conn:
            rows = conn.execute(query, values).fetchall()
        frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
        frame["initial_cash"] = frame["initial_cash"].astype("float64")
        frame["restarts"] = frame["restarts"].astype("int64")
        for col in _RUN_TIMES:
            ist_column(frame, col)
        return frame

    def run(self, run_id: str) -> dict[str, object]:
        """Return one run as a dict (keys :data:`RUN_COLUMNS`; times as IST datetimes).

        Raises
        ------
        DataError
            Unknown run id (the message lists a few recent ones).
        """
        query = sql.SQL("SELECT {} FROM runs WHERE run_id = %s").format(identifiers(RUN_COLUMNS))
        with self._shared() as conn:
            row = conn.execute(query, (run_id,)).fetchone()
            if row is None:
                raise unknown_run(conn, run_id)
        record = dict(zip(RUN_COLUMNS, row, strict=True))
        for col in _RUN_TIMES:
            record[col] = to_ist(record[col])  # type: ignore[arg-type]
        return record

    def run_orders(self, run_id: str) -> pd.DataFrame:
        """Return the latest state of the run's orders (columns :data:`ORDER_COLUMNS` +
        ``updated_at``), in creation order; prices NaN where the order has none."""
        return orders_frame(self._run_rows(run_id, "run_orders", _ORDER_ROW, _ORDERS_BY))

    def orders_of_run(self, run_id: str) -> list[Order]:
        """Return the run's orders (latest state) as :class:`velox.types.Order` objects."""
        rows = self._run_rows(run_id, "run_orders", ORDER_COLUMNS, _ORDERS_BY)
        return [_order(row) for row in rows]

    def run_fills(self, run_id: str) -> pd.DataFrame:
        """Return the run's fills in the order recorded (columns :data:`FILL_COLUMNS`)."""
        return fills_frame(self._run_rows(run_id, "run_fills", FILL_COLUMNS, "id"))

    def fills_of_run(self, run_id: str) -> list[Fill]:
        """Return the run's fills, in the order recorded, as :class:`velox.types.Fill` objects.

        They compare equal to the recorded ones (``ts`` in IST, the same instant).
        """
        rows = self._run_rows(run_id, "run_fills", FILL_COLUMNS, "id")
        return [_fill(row) for row in rows]

    def run_positions(self, run_id: str) -> pd.DataFrame:
        """Return the latest positions of a run (columns :data:`POSITION_COLUMNS`).

        One row per (account, strategy, instrument_id, product); strategy ``''`` is the
        account's own row.
        """
        rows = self._run_rows(run_id, "run_positions", POSITION_COLUMNS, _POSITIONS_BY)
        return positions_frame(rows)

    def run_equity(self, run_id: str) -> pd.DataFrame:
        """Return the run's equity curve: IST index ``ts`` (exact, from ``ts_ns``), columns
        ``equity`` (float64, the bits recorded) and ``ts_ns`` (UTC epoch ns).

        Read from ``run_equity_blocks`` (migration 0006) and decoded with numpy; where blocks
        overlap, the value of the block written last wins.
        """
        import pandas as pd

        query = "SELECT ts_ns, equity FROM run_equity_blocks WHERE run_id = %s ORDER BY written"
        with self._shared() as conn:
            self._require_run(conn, run_id)
            with conn.cursor(binary=True) as cur:
                blocks = cur.execute(query, (run_id,)).fetchall()
        ns = np.concatenate([np.frombuffer(t, ">i8") for t, _ in blocks] or [np.empty(0, ">i8")])
        values = np.concatenate([np.frombuffer(v, ">f8") for _, v in blocks] or [np.empty(0)])
        ns, values = ns.astype(np.int64), values.astype(np.float64)
        if len(blocks) > 1:  # time order, the last-written value of a repeated time
            order = np.argsort(ns, kind="stable")
            ns, values = ns[order], values[order]
            keep = np.r_[ns[1:] != ns[:-1], True]
            ns, values = ns[keep], values[keep]
        index = pd.DatetimeIndex(ns.view("M8[ns]"), name="ts").tz_localize("UTC")
        return pd.DataFrame({"equity": values, "ts_ns": ns}, index=index.tz_convert(IST_NAME))

    def run_risk_events(self, run_id: str) -> pd.DataFrame:
        """Return the run's risk events in time order (columns :data:`RISK_EVENT_COLUMNS`).

        ``ts`` is the engine's (market) time of the event, ``written_at`` the wall time the row
        was stored (NULL for rows stored before migration 0008).
        """
        return risk_events_frame(
            self._run_rows(run_id, "risk_events", RISK_EVENT_COLUMNS, "ts, id")
        )

    def run_quotes(self, run_id: str) -> pd.DataFrame:
        """Return the latest quote of every instrument the run has seen a tick of (columns
        :data:`QUOTE_COLUMNS`, one row per instrument by id; IST times; volume the day's
        cumulative, ``prev_close`` NaN until the run has seen a previous day)."""
        return quotes_frame(self._run_rows(run_id, "run_quotes", QUOTE_COLUMNS, "instrument_id"))

    def run_candles(
        self,
        run_id: str,
        instrument_id: str,
        *,
        since: datetime | None = None,
        limit: int | None = 500,
    ) -> pd.DataFrame:
        """Return the run's 1-minute candles of ``instrument_id``, oldest first (columns
        :data:`CANDLE_COLUMNS`; ``start`` in IST; the forming candle last, ``closed`` False).

        ``since`` keeps candles starting at or after it (tz-aware); ``limit`` the newest ones.
        """
        import pandas as pd

        if since is not None and not is_aware(since):
            raise ValidationError(f"since={since!r} must be tz-aware (e.g. IST or UTC)")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):  # fmt: skip
            raise ValidationError(f"limit={limit!r} must be a whole number of candles >= 1")
        query = (
            "SELECT start, open, high, low, close, volume, closed FROM run_candles"
            " WHERE run_id = %s AND instrument_id = %s AND start >= %s"
            " ORDER BY start DESC LIMIT %s"
        )
        floor = since if since is not None else datetime(1970, 1, 1, tzinfo=UTC)
        with self._shared() as conn:
            self._require_run(conn, run_id)
            rows = conn.execute(query, (run_id, instrument_id, floor, limit)).fetchall()
        frame = pd.DataFrame(rows[::-1], columns=list(CANDLE_COLUMNS))
        for col in ("open", "high", "low", "close"):
            frame[col] = frame[col].astype("float64")
        frame["volume"] = frame["volume"].astype("int64")
        frame["closed"] = frame["closed"].astype(bool)
        ist_column(frame, "start")
        return frame

    def run_changes(self, run_id: str, since: int | None = None) -> RunChanges:
        """Return the run and the rows of its live tables written since the mark ``since``.

        ``since`` is the :attr:`RunChanges.mark` of an earlier call (None: every row). A row
        counts as written since when the transaction that wrote it (its ``xmin``) was still
        running or not yet begun at that earlier call: every such transaction has an id at or
        above the oldest one running then (PostgreSQL's snapshot ``xmin``, the mark), whatever
        the order transactions commit in, so no change is missed; a few rows may come twice.
        All is read in one REPEATABLE READ snapshot, so the rows and the mark agree. When the
        32-bit transaction counter has wrapped since the mark, every row is returned
        (:attr:`RunChanges.full`).

        For the tables kept in a collation's order (quotes, positions, orders) the ordered keys
        of every row come with any change, so a merge can put rows in exactly the order of
        :meth:`run_quotes`, :meth:`run_positions` and :meth:`run_orders`.

        Raises
        ------
        DataError
            Unknown run id.
        """
        run_query = sql.SQL("SELECT {} FROM runs WHERE run_id = %s").format(
            identifiers(RUN_COLUMNS)
        )
        with self._shared() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute(run_query, (run_id,)).fetchone()
            if row is None:
                raise unknown_run(conn, run_id)
            mark, top = conn.execute(
                "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint"
                " FROM pg_current_snapshot() AS s"
            ).fetchone()
            full = since is None or since >> 32 != top >> 32

            def rows(table: str, columns: Sequence[str], order_by: str) -> list[tuple]:
                query = sql.SQL("SELECT {} FROM {} WHERE run_id = %s{} ORDER BY {}").format(
                    identifiers(columns),
                    sql.Identifier(table),
                    sql.SQL("" if full else " AND xmin::text::bigint >= %s"),
                    sql.SQL(order_by),
                )
                values = (run_id,) if full else (run_id, since & 0xFFFFFFFF)
                return conn.execute(query, values).fetchall()

            def keys(table: str, columns: Sequence[str], order_by: str) -> list[tuple]:
                query = sql.SQL("SELECT {} FROM {} WHERE run_id = %s ORDER BY {}").format(
                    identifiers(columns), sql.Identifier(table), sql.SQL(order_by)
                )
                return conn.execute(query, (run_id,)).fetchall()

            quotes = rows("run_quotes", QUOTE_COLUMNS, "instrument_id")
            positions = rows("run_positions", POSITION_COLUMNS, _POSITIONS_BY)
            orders = rows("run_orders", _ORDER_ROW, _ORDERS_BY)
            fills = rows("run_fills", ("id", *FILL_COLUMNS), "id")
            risk_events = rows("risk_events", ("id", *RISK_EVENT_COLUMNS), "ts, id")
            position_key = POSITION_COLUMNS[:4]
            changes = RunChanges(
                run=dict(zip(RUN_COLUMNS, row, strict=True)),
                mark=int(mark),
                full=full,
                quotes=quotes,
                quote_keys=[r[0] for r in quotes] if full or not quotes else
                [k for (k,) in keys("run_quotes", ("instrument_id",), "instrument_id")],
                positions=positions,
                position_keys=[r[:4] for r in positions] if full or not positions else
                keys("run_positions", position_key, _POSITIONS_BY),
                orders=orders,
                order_keys=[r[0] for r in orders] if full or not orders else
                [k for (k,) in keys("run_orders", ("client_id",), _ORDERS_BY)],
                fills=fills,
                risk_events=risk_events,
            )  # fmt: skip
        for col in _RUN_TIMES:
            changes.run[col] = to_ist(changes.run[col])  # type: ignore[arg-type]
        return changes

    def _run_rows(
        self, run_id: str, table: str, columns: Sequence[str], order_by: str
    ) -> list[tuple]:
        query = sql.SQL("SELECT {} FROM {} WHERE run_id = %s ORDER BY {}").format(
            identifiers(columns), sql.Identifier(table), sql.SQL(order_by)
        )
        with self._shared() as conn:
            self._require_run(conn, run_id)
            return conn.execute(query, (run_id,)).fetchall()

    @staticmethod
    def _require_run(conn: psycopg.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,)).fetchone() is None:
            raise unknown_run(conn, run_id)


# Client ids "<run>-<n>" sort by n when shorter ids come first.
_ORDERS_BY = "created_at NULLS LAST, length(client_id), client_id"
_POSITIONS_BY = "account, strategy, instrument_id, product"
_ORDER_ROW = (*ORDER_COLUMNS, "updated_at")


@dataclass(frozen=True)
class RunChanges:
    """What :meth:`RunsMixin.run_changes` read: the run and its rows written since a mark.

    Row tuples have the columns of the full readers (``run_orders``: :data:`ORDER_COLUMNS` and
    ``updated_at``); fills and risk events carry their table ``id`` first, the order the full
    readers sort by. ``*_keys`` are the keys of every row of that table in the full reader's
    order, given when the table had any change (else empty: nothing changed).
    """

    run: dict[str, object]
    #: Pass as ``since`` to the next call.
    mark: int
    #: True when the rows are every row of the run (no ``since``, or the counter wrapped).
    full: bool
    quotes: list[tuple]
    quote_keys: list[str]
    positions: list[tuple]
    #: (account, strategy, instrument_id, product) of every position.
    position_keys: list[tuple]
    orders: list[tuple]
    order_keys: list[str]
    fills: list[tuple]
    risk_events: list[tuple]


def orders_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """The frame of :meth:`RunsMixin.run_orders` from its rows (columns ``_ORDER_ROW``)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(_ORDER_ROW))
    for col in ("qty", "filled_qty"):
        frame[col] = frame[col].astype("int64")
    for col in ("limit_price", "trigger_price", "average_price"):
        frame[col] = frame[col].astype("float64")
    for col in ("created_at", "updated_at"):
        ist_column(frame, col)
    return frame


def fills_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """The frame of :meth:`RunsMixin.run_fills` from its rows (columns :data:`FILL_COLUMNS`)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(FILL_COLUMNS))
    frame["qty"] = frame["qty"].astype("int64")
    for col in ("price", "charges"):
        frame[col] = frame[col].astype("float64")
    ist_column(frame, "ts")
    return frame


def positions_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """The frame of :meth:`RunsMixin.run_positions` from its rows."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(POSITION_COLUMNS))
    frame["qty"] = frame["qty"].astype("int64")
    for col in ("average_price", "realised_pnl", "charges"):
        frame[col] = frame[col].astype("float64")
    ist_column(frame, "updated_at")
    return frame


def risk_events_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """The frame of :meth:`RunsMixin.run_risk_events` from its rows."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(RISK_EVENT_COLUMNS))
    ist_column(frame, "ts")
    ist_column(frame, "written_at")
    return frame


def quotes_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """The frame of :meth:`RunsMixin.run_quotes` from its rows."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(QUOTE_COLUMNS))
    frame["volume"] = frame["volume"].astype("Int64")
    for col in ("ltp", "open", "high", "low", "prev_close", "bid", "ask"):
        frame[col] = frame[col].astype("float64")
    ist_column(frame, "ts")
    ist_column(frame, "updated_at")
    return frame


# -- helpers -----------------------------------------------------------------------------------


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it follows the run-id grammar (1-10 ASCII letters or digits)."""
    if not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
        raise ValidationError(
            f"run_id={run_id!r} must be 1-10 ASCII letters or digits (e.g. P3): client ids "
            "'<run_id>-<n>' travel in the broker's 20-character order tag"
        )
    return run_id


def _restart(
    conn: psycopg.Connection, run_id: str, mode: str, account: str, started: datetime | None
) -> None:
    """Set an existing run running again (a paper/live engine restarted with its run id)."""
    stored_mode, stored_account, status = conn.execute(
        "SELECT mode, account, status FROM runs WHERE run_id = %s FOR UPDATE", (run_id,)
    ).fetchone()
    if stored_mode != mode:
        raise ValidationError(
            f"run {run_id} exists as a {stored_mode} run; it cannot be restarted as {mode}. "
            "Leave run_id=None for a new run id"
        )
    if stored_account != account:
        raise ValidationError(
            f"run {run_id} belongs to account {stored_account!r}, not {account!r}; restart it "
            "with its own account, or leave run_id=None for a new run"
        )
    conn.execute(
        "UPDATE runs SET status = 'running', ended_at = NULL, summary = NULL,"
        " heartbeat_at = now(), restarts = restarts + 1, restarted_at = coalesce(%s, now())"
        " WHERE run_id = %s",
        (started, run_id),
    )
    log.info("restarted %s run %s (was %s)", mode, run_id, status)


def unknown_run(conn: psycopg.Connection, run_id: object) -> DataError:
    recent = [
        row[0]
        for row in conn.execute(
            "SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 5"
        )
    ]
    return DataError(
        f"unknown run {run_id!r}{recent_hint(recent, 'runs')}; list them with store.runs()"
    )


def _strategy_list(strategies: object) -> list[dict[str, object]]:
    if isinstance(strategies, str | bytes | Mapping) or not isinstance(strategies, Sequence):
        raise ValidationError(
            "strategies must be a list of {'name', 'class', 'params'} mappings, got "
            f"{type(strategies).__name__}"
        )
    out, seen = [], set()
    for i, item in enumerate(strategies):
        if not isinstance(item, Mapping):
            raise ValidationError(f"strategies[{i}] must be a mapping with a 'name', got {item!r}")
        unknown = sorted(set(item) - {"name", "class", "params", "instruments", "timeframe"})
        if unknown:
            raise ValidationError(
                f"strategies[{i}] has unknown keys {unknown}; use 'name', 'class', 'params', "
                "'instruments' and 'timeframe'"
            )
        name = text(f"strategies[{i}]['name']", item.get("name"))
        if name in seen:
            raise ValidationError(f"strategy name {name!r} appears twice; names must be unique")
        seen.add(name)
        out.append(
            {
                "name": name,
                "class": text(f"strategies[{i}]['class']", item.get("class", ""), empty=True),
                "params": mapping(f"strategies[{i}]['params']", item.get("params")),
            }
        )
        if "instruments" in item:
            listed = item["instruments"]
            if isinstance(listed, str) or not isinstance(listed, Sequence):
                raise ValidationError(f"strategies[{i}]['instruments'] must be a list of ids")
            out[-1]["instruments"] = [
                text(f"strategies[{i}]['instruments']", iid) for iid in listed
            ]
        if "timeframe" in item:
            out[-1]["timeframe"] = text(f"strategies[{i}]['timeframe']", item["timeframe"])
    return out


def _finite(what: str, value: object) -> float:
    amount = number(what, value)
    if not math.isfinite(amount) or amount < 0:
        raise ValidationError(f"{what}={value!r} must be a finite amount >= 0")
    return amount


def _order(row: tuple) -> Order:
    values = dict(zip(ORDER_COLUMNS, row, strict=True))
    values["side"] = Side(values["side"])
    values["order_type"] = OrderType(values["order_type"])
    values["product"] = Product(values["product"])
    values["validity"] = Validity(values["validity"])
    values["status"] = OrderStatus(values["status"])
    values["created_at"] = to_ist(values["created_at"])  # type: ignore[arg-type]
    return Order(**values)  # type: ignore[arg-type]


def _fill(row: tuple) -> Fill:
    values = dict(zip(FILL_COLUMNS, row, strict=True))
    values["side"] = Side(values["side"])
    values["product"] = Product(values["product"])
    values["ts"] = to_ist(values["ts"])  # type: ignore[arg-type]
    return Fill(**values)  # type: ignore[arg-type]


def __getattr__(name: str) -> object:
    """Return :class:`~velox.store.recorder.RunRecorder` for ``velox.store.runs.RunRecorder``."""
    if name == "RunRecorder":  # imported on use: velox.store.recorder imports this module
        from velox.store.recorder import RunRecorder

        return RunRecorder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FILL_COLUMNS",
    "ORDER_COLUMNS",
    "POSITION_COLUMNS",
    "RISK_EVENT_COLUMNS",
    "RUN_COLUMNS",
    "RUN_MODES",
    "RUN_STATUSES",
    "RunChanges",
    "RunsMixin",
]
