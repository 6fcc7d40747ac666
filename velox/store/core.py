"""The :class:`Store`: bars, ticks, instruments, imports and order events in PostgreSQL (psycopg 3).

Run state, commands and alerts are in :mod:`velox.store.runs`, :mod:`~velox.store.commands`
and :mod:`~velox.store.alerts` (mixed into :class:`Store`).

Conventions
-----------
- Timestamps are stored as ``timestamptz`` (UTC on disk) and returned as tz-aware Asia/Kolkata.
- Bars are labelled by their START; higher timeframes not stored are resampled in SQL with
  ``date_bin`` from a 09:15 IST origin (daily: 00:00 IST), which equals
  :func:`velox.calendar.bucket_start_ns` because every intraday timeframe divides a day.
- Bars are keyed by an integer series id (``bar_series``: one per instrument and timeframe),
  which the methods resolve; callers use instrument ids and timeframes only.
- Ticks are stored in column blocks (``tick_blocks``: up to :data:`TICK_BLOCK_ROWS` ticks of
  one ``tick_series`` per row, each column one bytea of big-endian values); the ``ticks`` view
  shows them as rows to SQL.
- Bulk writes are one binary ``COPY`` stream built with numpy; bulk reads fetch each bar column
  as one binary PostgreSQL array, and tick blocks as raw bytes, parsed with numpy. Neither
  creates per-row Python objects, which is what keeps a symbol-year of 1-minute bars under
  100 ms and a million ticks under 200 ms.
- ``start`` is inclusive; ``end`` is inclusive, and a date-only ``end`` ("2021-03-31") means
  the whole of that day. Naive bounds are IST.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from velox.calendar import IST_NAME, TIMEFRAMES, bucket_start_ns, check_timeframe
from velox.config import mask_url, redact
from velox.errors import StoreError, ValidationError
from velox.instruments import COLUMNS
from velox.store.alerts import AlertsMixin
from velox.store.commands import CommandsMixin
from velox.store.listen import NotifyMixin
from velox.store.migrate import apply_migrations
from velox.store.pipelines import PipelinesMixin
from velox.store.runs import RunsMixin
from velox.store.server import embedded_url
from velox.types import check_instrument_id

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

OHLCV = ("open", "high", "low", "close", "volume")

#: Columns of the ``instruments`` table, in order: the instrument master defines them once.
INSTRUMENT_COLUMNS = COLUMNS

_INTEGER_COLUMNS = frozenset({"lot_size", "freeze_qty", "exchange_token", "kite_token"})

#: Columns of a ticks frame: the ``ticks`` view without instrument_id and ts, in view order.
TICK_COLUMNS = ("seq", "price", "qty", "volume", "bid", "ask", "bid_qty", "ask_qty", "oi")
_TICK_FLOATS = frozenset({"price", "bid", "ask"})
#: Tick columns that may be NULL (read back as NaN, or as <NA> in nullable Int64 columns); the
#: i-th one is bit i of a tick's byte in ``tick_blocks.nulls``.
_TICK_NULLABLE = TICK_COLUMNS[2:]
#: Byte columns of ``tick_blocks`` in table order, named as in a decoded block (``ts`` is the
#: ``times`` column; ``nulls`` the NULL bits).
_BLOCK_FIELDS = ("ts", *TICK_COLUMNS, "nulls")
_BLOCK_SELECT = "SELECT times, " + ", ".join(TICK_COLUMNS) + ", nulls FROM tick_blocks"
_BLOCK_NAMES = "series_id, ts, last_ts, tick_count, times, " + ", ".join(TICK_COLUMNS) + ", nulls"
_BLOCK_TYPES = ["int8", "timestamptz", "timestamptz", "int4"] + ["bytea"] * len(_BLOCK_FIELDS)

#: Ticks per ``tick_blocks`` row. A soft limit: a run of ticks sharing one timestamp is never
#: split, so a block holding one may be longer. 16,384 ticks are ~1.3 MB of column bytes: a read
#: moves few rows, and an overlapping write rewrites at most a few blocks of that size.
TICK_BLOCK_ROWS = 16_384

#: Tables whose contents :meth:`Store.table_fingerprint` may hash.
TABLES = frozenset(
    {
        "instruments",
        "bar_series",
        "bars",
        "tick_series",
        "tick_blocks",
        "ticks",
        "runs",
        "run_orders",
        "run_fills",
        "run_positions",
        "run_quotes",
        "run_candles",
        "run_equity",
        "run_equity_blocks",
        "risk_events",
        "order_events",
        "alerts",
        "commands",
        "command_targets",
        "command_events",
        "imports",
        "import_log",
        "pipeline_runs",
        "schema_migrations",
    }
)


@dataclass(frozen=True, slots=True)
class ImportLogEntry:
    """One audited import: who wrote which bytes (sha256) into which series, what it replaced."""

    imported_by: str
    source: str
    sha256: str
    instrument_id: str
    timeframe: str
    rows: int
    replaced_rows: int
    replace: bool


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's epoch) in Unix microseconds
_DAY_NS = 86_400 * 1_000_000_000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = _COPY_SIGNATURE + b"\x00" * 8  # signature, flags, extension length
_COPY_TRAILER = b"\xff\xff"

_COPY_BARS = "COPY bars (series_id, ts, open, high, low, close, volume) FROM STDIN (FORMAT BINARY)"
_UPSERT_BARS = """
INSERT INTO bars (series_id, ts, open, high, low, close, volume)
SELECT %s, ts, open, high, low, close, volume FROM _velox_stage_bars
ON CONFLICT (series_id, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume
"""
_BUMP_REVISION = "UPDATE bar_series SET revision = revision + 1 WHERE id = %s"
#: The blocks a tick write in [first, last] may rewrite: those starting inside it (all of them),
#: and up to 32 on each side, of which the one just before may reach into it.
_NEARBY_BLOCKS = """
(SELECT ts, last_ts, tick_count FROM tick_blocks
 WHERE series_id = %(series)s AND ts < %(first)s ORDER BY ts DESC LIMIT 32)
UNION ALL
(SELECT ts, last_ts, tick_count FROM tick_blocks
 WHERE series_id = %(series)s AND ts BETWEEN %(first)s AND %(last)s)
UNION ALL
(SELECT ts, last_ts, tick_count FROM tick_blocks
 WHERE series_id = %(series)s AND ts > %(last)s ORDER BY ts LIMIT 32)
"""
_FIND_SERIES = """
SELECT id, EXISTS (SELECT 1 FROM bars WHERE series_id = s.id AND ts BETWEEN %s AND %s)
FROM bar_series AS s WHERE instrument_id = %s AND timeframe = %s
"""

#: Idle connections :meth:`Store.pooled` keeps for reuse.
POOL_IDLE = 8

#: Rows per binary COPY chunk: the server ingests one chunk while the next is being built.
COPY_CHUNK_ROWS = 65_536


class Store(RunsMixin, PipelinesMixin, CommandsMixin, AlertsMixin, NotifyMixin):
    """A handle on one PostgreSQL database holding Velox's data (bars, instruments, orders, runs).

    Run state, pipeline runs, commands, alerts and LISTEN/NOTIFY come from the mixins in
    ``velox.store.runs``, ``pipelines``, ``commands``, ``alerts`` and ``listen``.

    Build it with :func:`velox.store.open_store`. Attributes: ``url`` (connection URI),
    ``backend`` (``"embedded"`` or ``"external"``) and ``timescale`` (whether ``bars`` and
    ``tick_blocks`` are TimescaleDB hypertables). Opening applies pending migrations. With
    ``store_dir`` (the embedded server's data directory) a stopped server is started again on
    the next connect; a connection cut by the stop fails once, then the following call
    reconnects.

    Thread-safe: internal operations share one connection under a lock. After ``fork`` the child
    opens its own connection (a libpq connection must never be shared across processes).

    Examples
    --------
    >>> from velox.store import open_store          # doctest: +SKIP
    >>> store = open_store()                         # doctest: +SKIP
    >>> store.read_bars("NSE:NIFTY 50", "5m", start="2021-01-04")  # doctest: +SKIP
    """

    def __init__(
        self, url: str, *, backend: str = "external", store_dir: Path | None = None
    ) -> None:
        if backend not in ("embedded", "external"):
            raise ValidationError(f"backend={backend!r}; use 'embedded' or 'external'")
        self.url = url
        self.backend = backend
        #: Data directory of the embedded server, restarted on connect if it was stopped.
        self.store_dir = store_dir
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._idle: list[psycopg.Connection] = []  # the pool of :meth:`pooled`
        self._local = threading.local()  # a thread's own connection (:meth:`own_connection`)
        with self._shared() as conn:
            applied, self.timescale = apply_migrations(conn)
            version = conn.execute("SHOW server_version").fetchone()[0]
        mode = "TimescaleDB hypertables" if self.timescale else "plain tables (no TimescaleDB)"
        log.info(
            "Velox store: %s PostgreSQL %s at %s, %s%s",
            backend,
            version,
            mask_url(url),
            mode,
            f"; applied migrations {applied}" if applied else "",
        )

    def __repr__(self) -> str:
        return (
            f"Store(backend={self.backend!r}, url={mask_url(self.url)!r}, "
            f"timescale={self.timescale})"
        )

    # -- connections ---------------------------------------------------------------------------

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """Return a new psycopg connection; use it as a context manager.

        On leaving the ``with`` block the transaction commits (or rolls back on an exception)
        and the connection closes. Pass it as ``conn=`` to the write methods to make several
        writes one atomic transaction.

        Examples
        --------
        >>> with store.connect() as conn:                                   # doctest: +SKIP
        ...     store.write_bars("NSE:RELIANCE", "1d", frame, conn=conn)
        ...     store.record_import("file.csv", digest, "NSE:RELIANCE", "1d", len(frame), conn=conn)
        """
        try:
            return psycopg.connect(self.url, autocommit=autocommit)
        except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
            if self.store_dir is not None and isinstance(exc, psycopg.OperationalError):
                # the embedded server was stopped: start it again
                self.url = embedded_url(self.store_dir)
                return psycopg.connect(self.url, autocommit=autocommit)
            # psycopg's message may quote the URL: masked, and not chained (``-v`` would print it)
            problem = redact(" ".join(str(exc).split()), self.url)
            raise StoreError(
                f"cannot connect to PostgreSQL at {mask_url(self.url)}: {problem}"
                "; is the server running and VELOX_DATABASE_URL right?"
            ) from None

    @contextmanager
    def pooled(self, *, transaction: bool = True) -> Iterator[psycopg.Connection]:
        """Yield a reused autocommit connection, inside a transaction unless told otherwise.

        The transaction commits when the block ends and rolls back on an exception, as with
        :meth:`connect`, but the connection goes back to a small pool instead of closing: a
        web server checks a session on every request, and a new PostgreSQL connection (a
        backend process forked per connection) costs more than the queries it would run.
        At most :data:`POOL_IDLE` connections are kept; a broken one is dropped.
        """
        conn = None
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._idle, self._conn, self._pid = [], None, os.getpid()
            while self._idle and conn is None:
                conn = self._idle.pop()
                if conn.closed or conn.broken:
                    conn = None
        if conn is None:
            conn = self.connect(autocommit=True)
            conn.execute("SET enable_bitmapscan = off")  # as on the shared connection
        try:
            if transaction:
                with conn.transaction():
                    yield conn
            else:
                yield conn
        finally:
            idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            healthy = not (conn.closed or conn.broken) and idle
            with self._lock:
                if healthy and self._pid == os.getpid() and len(self._idle) < POOL_IDLE:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    @contextmanager
    def own_connection(self) -> Iterator[None]:
        """Run this thread's store calls in the block on a pooled connection of their own.

        Every method that would use the shared connection (one, behind a lock, for the whole
        process) uses this thread's instead, so a web handler's reads on a worker thread do
        not queue behind the console's live reader or each other.
        """
        if getattr(self._local, "conn", None) is not None:  # nested: keep the outer one
            yield
            return
        with self.pooled(transaction=False) as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _shared(self, conn: psycopg.Connection | None = None) -> Iterator[psycopg.Connection]:
        """Yield ``conn`` if given, else this thread's own connection (:meth:`own_connection`),
        else the store's shared autocommit connection (locked)."""
        if conn is None:
            conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._lock:
            if self._pid != os.getpid():  # forked: never touch the parent's socket
                self._conn, self._pid = None, os.getpid()
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self.connect(autocommit=True)
                # Range reads walk the (series_id, ts) primary key, whose order they need.
                # Before the table has statistics (right after a bulk load, until autovacuum
                # analyses it) the planner expects a handful of rows and picks a bitmap scan
                # plus a sort instead: ~50 % more server time for a symbol-year. This
                # connection only runs the store's own queries: key lookups, key-range reads
                # and whole-table scans, none of which needs a bitmap scan.
                self._conn.execute("SET enable_bitmapscan = off")
            yield self._conn

    @contextmanager
    def _atomic(self, conn: psycopg.Connection | None = None) -> Iterator[psycopg.Connection]:
        """Yield a connection inside a transaction that is all-or-nothing.

        A caller's non-autocommit ``conn`` is already in (or implicitly starts) the caller's
        transaction, which the caller commits or rolls back; psycopg's ``transaction()`` there
        would COMMIT on exit and break that contract, so it is only used on autocommit
        connections.
        """
        with self._shared(conn) as c:
            if conn is not None and not conn.autocommit:
                yield c
            else:
                with c.transaction():
                    yield c

    def close(self) -> None:
        """Close the store's shared and pooled connections (a later call reopens them)."""
        with self._lock:
            if self._pid == os.getpid():
                for conn in [self._conn, *self._idle]:
                    if conn is not None:
                        conn.close()
            self._conn, self._idle = None, []

    # -- bars ------------------------------------------------------------------------------------

    def write_bars(
        self,
        instrument_id: str,
        timeframe: str,
        df: pd.DataFrame,
        *,
        conn: psycopg.Connection | None = None,
    ) -> int:
        """Upsert bars for one instrument and timeframe; return the number of rows written.

        ``df`` is indexed by tz-aware bar START timestamps with columns open/high/low/close and
        optionally volume (default 0). The (instrument, timeframe) series gets its integer id
        in ``bar_series`` (created on first write). A new time range is one binary COPY
        straight into ``bars``; a range that overlaps stored bars goes through a staging table
        and one ``INSERT … ON CONFLICT DO UPDATE``, so an existing bar is replaced. The whole
        call is one transaction, committed without waiting for its WAL flush (a crash may
        lose the last ~0.6 s of bar writes, never part of one: bars can be imported again).
        With ``conn`` the caller owns the transaction and its durability (the importer writes
        bars and the ``imports`` row atomically).

        Raises
        ------
        ValidationError
            Naive or duplicate timestamps, missing columns or NaN values (nothing is written).

        Examples
        --------
        >>> import pandas as pd                                              # doctest: +SKIP
        >>> idx = pd.DatetimeIndex(["2024-04-01 09:15"], tz="Asia/Kolkata")  # doctest: +SKIP
        >>> frame = pd.DataFrame({"open": [100.0], "high": [101.0], "low": [99.5],
        ...                       "close": [100.5], "volume": [1200.0]}, index=idx)
        >>> store.write_bars("NSE:RELIANCE", "1m", frame)                   # doctest: +SKIP
        1
        """
        check_instrument_id(instrument_id)
        check_timeframe(timeframe)
        records = _bar_records(df)
        if records is None:
            return 0
        first, last = (_pg_datetime(records["ts"][i]) for i in (0, -1))
        with self._atomic(conn) as c:
            if conn is None or conn.autocommit:
                # Our own transaction holds nothing but bars, which can be imported again, so
                # it need not wait for its WAL flush (a crash may lose the last ~0.6 s of
                # such commits; the database stays consistent). A caller's transaction keeps
                # the server's setting: it may hold rows that must be durable.
                c.execute("SET LOCAL synchronous_commit = off")
            series, overlap = _bar_series(c, instrument_id, timeframe, first, last)
            # Every write moves the series to a new revision, so an import's "unchanged;
            # skipped" shortcut holds only while its bytes were the last thing written here.
            c.execute(_BUMP_REVISION, (series,))
            if not overlap:
                # New range (the common bulk import): COPY straight into bars, which is about
                # twice as fast as staging + ON CONFLICT. A concurrent writer that inserted
                # into the range meanwhile makes it fail; the savepoint lets us upsert instead.
                try:
                    with c.transaction(), c.cursor() as cur, cur.copy(_COPY_BARS) as copy:
                        for chunk in _copy_chunks(_bar_fields(records, series), len(records)):
                            copy.write(chunk)
                    rows = len(records)
                except psycopg.errors.UniqueViolation:
                    overlap = True
            if overlap:
                rows = self._upsert_bars(c, series, records)
        log.debug("wrote %d %s bars of %s", rows, timeframe, instrument_id)
        return rows

    def write_bars_many(
        self, frames: Mapping[str, pd.DataFrame], timeframe: str, *, workers: int | None = None
    ) -> dict[str, int]:
        """Write several instruments' bars concurrently; return rows written per instrument.

        Each instrument is one :meth:`write_bars` call in its own transaction on its own
        connection, ``workers`` at a time (default: the CPU count, at most 4). Why: one COPY
        keeps one server process busy (its primary-key maintenance is most of the cost), so a
        universe loads about as many times faster as there are idle cores. An instrument
        whose frame is invalid is not written and the others are unaffected; the first error
        is raised, naming the instrument, after every other write has finished.

        Examples
        --------
        >>> store.write_bars_many({"NSE:TCS": tcs, "NSE:INFY": infy}, "1m")  # doctest: +SKIP
        {'NSE:TCS': 98250, 'NSE:INFY': 98250}
        """
        from concurrent.futures import ThreadPoolExecutor

        check_timeframe(timeframe)
        for instrument_id in frames:  # before any write: a bad id is refused, not reported later
            check_instrument_id(instrument_id)
        workers = max(1, min(len(frames), workers or min(os.cpu_count() or 1, 4)))

        def write(item: tuple[str, pd.DataFrame]) -> int:
            instrument_id, frame = item
            with self.connect(autocommit=True) as conn:
                return self.write_bars(instrument_id, timeframe, frame, conn=conn)

        with ThreadPoolExecutor(workers, thread_name_prefix="velox-copy") as pool:
            futures = {iid: pool.submit(write, (iid, frame)) for iid, frame in frames.items()}
        written: dict[str, int] = {}
        for iid, future in futures.items():
            error = future.exception()
            if isinstance(error, ValidationError):
                raise ValidationError(f"{iid}: {error}") from error
            if error is not None:
                message = f"writing the {timeframe} bars of {iid} failed: {error}"
                raise StoreError(message) from error
            written[iid] = future.result()
        return written

    @staticmethod
    def _upsert_bars(conn: psycopg.Connection, series: int, records: np.ndarray) -> int:
        """Stage ``records`` with COPY, then insert-or-replace them into bars; return the count."""
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _velox_stage_bars ("
            " ts timestamptz NOT NULL, open float8 NOT NULL, high float8 NOT NULL,"
            " low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL)"
            " ON COMMIT DELETE ROWS"
        )
        conn.execute("TRUNCATE _velox_stage_bars")
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY _velox_stage_bars (ts, open, high, low, close, volume) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            for chunk in _copy_chunks(_bar_fields(records), len(records)):
                copy.write(chunk)
        return conn.execute(_UPSERT_BARS, (series,)).rowcount

    def read_bars(
        self,
        instrument_id: str,
        timeframe: str,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """Return bars of one instrument as a DataFrame (IST index ``ts``, float64 OHLCV).

        If ``timeframe`` is not stored but a finer one that divides it is (e.g. 1m for 15m, any
        intraday for 1d), the bars are resampled in SQL from the finest such timeframe, aligned
        to the 09:15 IST session open and labelled by bar start (daily: 00:00 IST of the
        session date). Nothing stored → an empty frame with the same columns.

        Examples
        --------
        >>> store.read_bars("NSE:NIFTY 50", "15m", start="2021-01-04", end="2021-01-08")
        ... # doctest: +SKIP
        """
        check_timeframe(timeframe)
        stored = self._stored_series(instrument_id)
        if timeframe in stored:
            return self._read_stored(stored[timeframe], start, end)
        source = _finest_source(stored, timeframe)
        if source is None:
            return _frame(None)
        return self._resample(stored[source], source, timeframe, start, end)

    def resample_bars(
        self,
        instrument_id: str,
        source_tf: str,
        target_tf: str,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """Return ``source_tf`` bars aggregated to ``target_tf`` in SQL (open first, high max,
        low min, close last, volume sum).

        Buckets are ``date_bin(length, ts, 09:15 IST)`` (daily: 00:00 IST), identical to
        :func:`velox.calendar.bucket_start_ns`. ``start``/``end`` select buckets by their start
        label; every bucket returned is built from all of its source bars.

        Raises
        ------
        ValidationError
            If ``target_tf`` is not a whole multiple of ``source_tf``.
        """
        source_minutes = TIMEFRAMES[check_timeframe(source_tf)]
        target_minutes = TIMEFRAMES[check_timeframe(target_tf)]
        if source_minutes is None or (
            target_minutes is not None and target_minutes % source_minutes
        ):
            raise ValidationError(
                f"cannot resample {source_tf} bars to {target_tf}: the target must be a whole "
                "multiple of the source (daily needs intraday source bars)"
            )
        series = self._stored_series(instrument_id).get(source_tf)
        if series is None:
            return _frame(None)
        return self._resample(series, source_tf, target_tf, start, end)

    def _resample(
        self, series: int, source_tf: str, target_tf: str, start: object, end: object
    ) -> pd.DataFrame:
        """Return the bars of ``series`` (stored as ``source_tf``) aggregated to ``target_tf``."""
        target_minutes = TIMEFRAMES[target_tf]
        if target_minutes is None:
            stride, origin, length_ns = "1 day", "1900-01-01 00:00:00+05:30", _DAY_NS
        else:
            stride = f"{target_minutes} minutes"
            origin = "1900-01-01 09:15:00+05:30"
            length_ns = target_minutes * 60 * 1_000_000_000
        lo, hi = _bounds_ns(start, end)
        conditions = [sql.SQL("series_id = {}").format(sql.Literal(series))]
        having = []
        if lo is not None:
            conditions.append(
                sql.SQL("ts >= {}").format(_ts_literal(bucket_start_ns(lo, target_tf)))
            )
            having.append(sql.SQL("b >= {}").format(_ts_literal(lo)))
        if hi is not None:
            last_bucket = bucket_start_ns(hi - 1, target_tf)
            conditions.append(sql.SQL("ts < {}").format(_ts_literal(last_bucket + length_ns)))
            having.append(sql.SQL("b < {}").format(_ts_literal(hi)))
        query = sql.SQL(
            "SELECT b AS ts, (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high,"
            " min(low) AS low, (array_agg(close ORDER BY ts DESC))[1] AS close,"
            " sum(volume) AS volume"
            " FROM (SELECT date_bin({stride}::interval, ts, {origin}::timestamptz) AS b, ts,"
            " open, high, low, close, volume FROM bars WHERE {where}) AS s"
            " GROUP BY b {having}"
        ).format(
            stride=sql.Literal(stride),
            origin=sql.Literal(origin),
            where=sql.SQL(" AND ").join(conditions),
            having=sql.SQL("HAVING ") + sql.SQL(" AND ").join(having) if having else sql.SQL(""),
        )
        return self._fetch_bars(query)

    def bar_summary(self) -> pd.DataFrame:
        """Return one row per stored (instrument_id, timeframe): rows, first and last bar (IST)."""
        import pandas as pd

        with self._shared() as conn:
            rows = conn.execute(
                "SELECT s.instrument_id, s.timeframe, b.rows, b.first, b.last FROM bar_series s"
                " JOIN (SELECT series_id, count(*) AS rows, min(ts) AS first, max(ts) AS last"
                " FROM bars GROUP BY series_id) AS b ON b.series_id = s.id"
                " ORDER BY s.instrument_id, s.timeframe"
            ).fetchall()
        frame = pd.DataFrame(rows, columns=["instrument_id", "timeframe", "rows", "first", "last"])
        frame["rows"] = frame["rows"].astype("int64")
        for col in ("first", "last"):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(IST_NAME)
        return frame

    def _stored_series(self, instrument_id: str) -> dict[str, int]:
        """Return {timeframe: series id} of the timeframes of ``instrument_id`` that hold bars."""
        with self._shared() as conn:
            rows = conn.execute(
                "SELECT timeframe, id FROM bar_series AS s WHERE instrument_id = %s"
                " AND EXISTS (SELECT 1 FROM bars WHERE series_id = s.id)",
                (instrument_id,),
            ).fetchall()
        return dict(rows)

    def _read_stored(
        self, series: int, start: object, end: object, *, conn: psycopg.Connection | None = None
    ) -> pd.DataFrame:
        conditions = _range_conditions("series_id", series, start, end)
        query = sql.SQL("SELECT ts, open, high, low, close, volume FROM bars WHERE {}").format(
            sql.SQL(" AND ").join(conditions)
        )
        return self._fetch_bars(query, conn=conn)

    def _fetch_bars(
        self, relation: sql.Composable, *, conn: psycopg.Connection | None = None
    ) -> pd.DataFrame:
        """Return the rows of ``relation`` (columns ts + OHLCV, none NULL) as the bars frame.

        Each column comes back as ONE binary array (``array_send(array_agg(…))``) parsed with
        ``np.frombuffer``: a row-per-message COPY costs ~1 µs of Python per row, this does not.
        """
        aggregates = sql.SQL(", ").join(
            sql.SQL("array_send(array_agg({}))").format(sql.Identifier(col))
            for col in ("ts", *OHLCV)
        )
        # Aggregating an ordered subquery keeps its order in practice and is ~25% faster than
        # six ``array_agg(… ORDER BY ts)``; _frame re-sorts if a plan ever breaks that.
        query = sql.SQL("SELECT {} FROM ({} ORDER BY 1) AS s").format(aggregates, relation)
        with self._shared(conn) as c, c.cursor(binary=True) as cur:
            row = cur.execute(query).fetchone()
        return _frame(row)

    # -- ticks -----------------------------------------------------------------------------------

    def write_ticks(
        self,
        instrument_id: str,
        ticks: pd.DataFrame | Mapping[str, object],
        *,
        conn: psycopg.Connection | None = None,
    ) -> int:
        """Upsert ticks of one instrument; return the number of rows written.

        ``ticks`` is a DataFrame indexed by tz-aware timestamps (or with a ``ts`` column), or a
        mapping of equal-length columns that includes ``ts``. Columns: ``price`` (the last
        traded price, required) and any of ``seq``, ``qty``, ``volume`` (cumulative day
        volume), ``bid``, ``ask``, ``bid_qty``, ``ask_qty``, ``oi``. A tick is identified by
        (ts, seq): without ``seq``, ticks sharing a timestamp are numbered 0, 1, … in the order
        given. Missing values are stored as NULL, except a NaN ``price``, which is kept: it is
        a malformed tick, and a replay must see the same ticks as the live session did. A
        stored tick with the same (ts, seq) is replaced wholesale.

        Ticks are stored in blocks of up to :data:`TICK_BLOCK_ROWS` (``tick_blocks``, one
        series id per instrument in ``tick_series``). A write whose time range holds no stored
        ticks only inserts new blocks; otherwise the blocks it overlaps are read, merged with
        the new ticks and written again. It also absorbs a smaller neighbouring block, so a
        live session writing a few ticks at a time leaves blocks that double in size rather
        than one tiny block per write (each tick is rewritten ~log2 of the block size times).
        One transaction, or the caller's with ``conn``; writers of one instrument take turns
        (a row lock on its series). Unlike bars, ticks keep the server's
        ``synchronous_commit``: a recorded live session cannot be imported again.

        Raises
        ------
        ValidationError
            Naive timestamps, no ``price``, unknown columns, duplicate (ts, seq), or
            fractional values in an integer column (nothing is written).

        Examples
        --------
        >>> import pandas as pd                                              # doctest: +SKIP
        >>> idx = pd.DatetimeIndex(["2024-04-01 09:15:00.250", "2024-04-01 09:15:00.250"],
        ...                        tz="Asia/Kolkata")                        # doctest: +SKIP
        >>> ticks = pd.DataFrame({"price": [770.0, 770.05], "qty": [10, 5]}, index=idx)
        >>> store.write_ticks("NSE:SBIN", ticks)                            # doctest: +SKIP
        2
        """
        check_instrument_id(instrument_id)
        parsed = _tick_records(ticks)
        if parsed is None:
            return 0
        new = _tick_columns(*parsed)
        written = len(new["ts"])
        first, last = (_pg_datetime(new["ts"][i]) for i in (0, -1))
        with self._atomic(conn) as c:
            series = _tick_series(c, instrument_id)
            nearby = c.execute(
                _NEARBY_BLOCKS, {"series": series, "first": first, "last": last}
            ).fetchall()
            rewrite = _blocks_to_rewrite(nearby, first, last, written)
            if rewrite:
                where = sql.SQL("series_id = {} AND ts IN ({})").format(
                    sql.Literal(series), sql.SQL(", ").join(map(sql.Literal, rewrite))
                )
                new = _merge_ticks(_fetch_blocks(c, where), new)
                c.execute(
                    "DELETE FROM tick_blocks WHERE series_id = %s AND ts = ANY(%s)",
                    (series, rewrite),
                )
            with (
                c.cursor() as cur,
                cur.copy(f"COPY tick_blocks ({_BLOCK_NAMES}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(_BLOCK_TYPES)
                for lo, hi in _block_bounds(new["ts"], TICK_BLOCK_ROWS):
                    copy.write_row(_block_row(series, new, lo, hi))
        log.debug(
            "wrote %d ticks of %s (%d blocks rewritten)", written, instrument_id, len(rewrite)
        )
        return written

    def read_ticks(
        self, instrument_id: str, start: object = None, end: object = None
    ) -> pd.DataFrame:
        """Return the ticks of one instrument, ordered by (ts, seq), as a DataFrame.

        The index ``ts`` is tz-aware Asia/Kolkata; the columns are those of the ``ticks``
        view: ``seq`` (int64), ``price``/``bid``/``ask`` (float64, NaN when NULL) and ``qty``,
        ``volume``, ``bid_qty``, ``ask_qty``, ``oi`` (nullable ``Int64``, exact beyond 2^53).
        Bounds as in :meth:`read_bars`: inclusive, a date-only ``end`` covers that day, naive
        means IST. The frame feeds :class:`velox.feeds.TickReplayFeed` as is.

        The blocks overlapping the range come back as one binary ``COPY`` of raw column bytes,
        which numpy parses; the ticks outside the range are cut off here.

        Examples
        --------
        >>> store.read_ticks("NSE:SBIN", start="2024-04-01 09:15", end="2024-04-01")
        ... # doctest: +SKIP
        """
        lo, hi = _bounds_ns(start, end)
        conditions = [
            sql.SQL("series_id = (SELECT id FROM tick_series WHERE instrument_id = {})").format(
                sql.Literal(instrument_id)
            )
        ]
        if hi is not None:
            conditions.append(sql.SQL("ts < {}").format(_ts_literal(hi)))
        if lo is not None:
            conditions.append(sql.SQL("last_ts >= {}").format(_ts_literal(lo)))
        with self._shared() as conn:
            columns = _fetch_blocks(conn, sql.SQL(" AND ").join(conditions))
        ts = columns["ts"]
        first = 0 if lo is None else np.searchsorted(ts, lo // 1000 - _PG_EPOCH_US, "left")
        stop = len(ts) if hi is None else np.searchsorted(ts, hi // 1000 - _PG_EPOCH_US, "left")
        if first > 0 or stop < len(ts):
            columns = {name: values[first:stop] for name, values in columns.items()}
        return _tick_frame(columns)

    # -- instruments -------------------------------------------------------------------------------

    def write_instruments(self, df: pd.DataFrame, *, conn: psycopg.Connection | None = None) -> int:
        """Upsert instrument-master rows (COPY into staging, then one upsert); return the count.

        ``df`` must have exactly the columns of :data:`INSTRUMENT_COLUMNS`; missing values
        (NaN/None/NaT) become NULL. An existing id is replaced wholesale.
        """
        import pandas as pd

        missing = [c for c in INSTRUMENT_COLUMNS if c not in df.columns]
        extra = [c for c in df.columns if c not in INSTRUMENT_COLUMNS]
        if missing or extra:
            raise ValidationError(
                f"instrument frame columns do not match the instruments table: missing "
                f"{missing}, unexpected {extra}; expected {list(INSTRUMENT_COLUMNS)}"
            )
        if df["id"].duplicated().any():
            dups = df.loc[df["id"].duplicated(), "id"].head(5).tolist()
            raise ValidationError(f"duplicate instrument ids {dups}; ids must be unique")
        for instrument_id in df["id"].tolist():
            check_instrument_id(instrument_id)
        columns = []
        for name in INSTRUMENT_COLUMNS:
            col = df[name]
            if name == "expiry":
                col = pd.to_datetime(col).dt.date
            values = [None if _is_missing(v) else _plain(v) for v in col.tolist()]
            if name in _INTEGER_COLUMNS:
                values = [_whole(name, v) for v in values]
            columns.append(values)
        names = sql.SQL(", ").join(map(sql.Identifier, INSTRUMENT_COLUMNS))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in INSTRUMENT_COLUMNS[1:]
        )
        with self._atomic(conn) as c:
            c.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _velox_stage_instruments"
                " (LIKE instruments) ON COMMIT DELETE ROWS"
            )
            c.execute("TRUNCATE _velox_stage_instruments")
            with (
                c.cursor() as cur,
                cur.copy(
                    sql.SQL("COPY _velox_stage_instruments ({}) FROM STDIN").format(names)
                ) as copy,
            ):
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
            return c.execute(
                sql.SQL(
                    "INSERT INTO instruments ({n}) SELECT {n} FROM _velox_stage_instruments"
                    " ON CONFLICT (id) DO UPDATE SET {u}"
                ).format(n=names, u=updates)
            ).rowcount

    def read_instruments(self) -> pd.DataFrame:
        """Return the instrument master as a DataFrame ordered by id.

        Dtypes: text columns object (None when NULL), ``expiry`` python ``date`` or None,
        ``strike``/``tick_size`` float64 (NaN when NULL), ``lot_size`` int64, ``freeze_qty``,
        ``exchange_token`` and ``kite_token`` nullable ``Int64``.
        """
        import pandas as pd

        names = sql.SQL(", ").join(map(sql.Identifier, INSTRUMENT_COLUMNS))
        with self._shared() as conn:
            rows = conn.execute(
                sql.SQL("SELECT {} FROM instruments ORDER BY id").format(names)
            ).fetchall()
        frame = pd.DataFrame(rows, columns=list(INSTRUMENT_COLUMNS), dtype=object)
        for col in ("strike", "tick_size"):
            frame[col] = frame[col].astype("float64")
        frame["lot_size"] = frame["lot_size"].astype("int64")
        for col in ("freeze_qty", "exchange_token", "kite_token"):
            frame[col] = frame[col].astype("Int64")
        return frame

    # -- imports -----------------------------------------------------------------------------------

    def import_checksum(self, source_key: str) -> str | None:
        """Return the sha256 recorded for ``source_key`` by the last import, or None."""
        with self._shared() as conn:
            row = conn.execute(
                "SELECT sha256 FROM imports WHERE source_key = %s", (source_key,)
            ).fetchone()
        return None if row is None else row[0]

    def import_is_current(self, source_key: str, sha256: str) -> bool:
        """Return whether ``sha256`` was recorded for ``source_key`` and nothing wrote since.

        "Nothing since" compares the revision recorded with the import against the series'
        current revision (bumped by every :meth:`write_bars`), so bytes imported, then
        overwritten by another file, are imported again rather than skipped.
        """
        with self._shared() as conn:
            row = conn.execute(
                "SELECT 1 FROM imports AS i JOIN bar_series AS s"
                " ON s.instrument_id = i.instrument_id AND s.timeframe = i.timeframe"
                " WHERE i.source_key = %s AND i.sha256 = %s AND i.series_revision = s.revision",
                (source_key, sha256),
            ).fetchone()
        return row is not None

    def record_import(
        self,
        source_key: str,
        sha256: str,
        instrument_id: str,
        timeframe: str,
        rows: int,
        *,
        conn: psycopg.Connection | None = None,
    ) -> None:
        """Record (or replace) the import of ``source_key`` so an unchanged file is skipped.

        The series' current revision is recorded with it (see :meth:`import_is_current`), so
        call this after writing the bars, in the same transaction.
        """
        with self._shared(conn) as c:
            c.execute(
                "INSERT INTO imports"
                " (source_key, sha256, instrument_id, timeframe, rows, series_revision)"
                " VALUES (%s, %s, %s, %s, %s, coalesce((SELECT revision FROM bar_series"
                "  WHERE instrument_id = %s AND timeframe = %s), 0))"
                " ON CONFLICT (source_key) DO UPDATE SET"
                " sha256 = EXCLUDED.sha256, instrument_id = EXCLUDED.instrument_id,"
                " timeframe = EXCLUDED.timeframe, rows = EXCLUDED.rows,"
                " series_revision = EXCLUDED.series_revision, imported_at = now()",
                (source_key, sha256, instrument_id, timeframe, int(rows), instrument_id, timeframe),
            )

    def log_import(self, entry: ImportLogEntry, *, conn: psycopg.Connection | None = None) -> None:
        """Append one row to the audit of imports (``import_log``, append-only)."""
        with self._shared(conn) as c:
            c.execute(
                "INSERT INTO import_log (imported_by, source, sha256, instrument_id, timeframe,"
                " rows, replaced_rows, replace) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    entry.imported_by,
                    entry.source,
                    entry.sha256,
                    entry.instrument_id,
                    entry.timeframe,
                    entry.rows,
                    entry.replaced_rows,
                    entry.replace,
                ),
            )

    def read_import_log(self) -> pd.DataFrame:
        """Return the import audit, oldest first (``imported_at`` in IST)."""
        import pandas as pd

        columns = [
            "id",
            "imported_at",
            "imported_by",
            "source",
            "sha256",
            "instrument_id",
            "timeframe",
            "rows",
            "replaced_rows",
            "replace",
        ]
        with self._shared() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(columns)} FROM import_log ORDER BY id"  # noqa: S608
            ).fetchall()
        frame = pd.DataFrame(rows, columns=columns)
        frame["imported_at"] = pd.to_datetime(frame["imported_at"], utc=True).dt.tz_convert(
            IST_NAME
        )
        return frame

    def differing_bars(
        self,
        instrument_id: str,
        timeframe: str,
        bars: pd.DataFrame,
        *,
        conn: psycopg.Connection | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Return ``(stored, new)``: the stored bars that ``bars`` would change, and its rows.

        Both frames hold the same timestamps (IST index, OHLCV), in time order; identical
        rows are not included, so re-writing the same values is not a difference. With
        ``conn`` the series row is created if new and locked for the caller's transaction
        (``FOR UPDATE``), so no other writer can change the series between this check and the
        caller's write: a second importer waits here, then compares against the first's bars.
        """
        empty = bars.iloc[:0][list(OHLCV)]
        with self._shared(conn) as c:
            if conn is not None:
                c.execute(
                    "INSERT INTO bar_series (instrument_id, timeframe) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (instrument_id, timeframe),
                )
            row = c.execute(
                "SELECT id FROM bar_series WHERE instrument_id = %s AND timeframe = %s"
                + (" FOR UPDATE" if conn is not None else ""),
                (instrument_id, timeframe),
            ).fetchone()
            if row is None or bars.empty:
                return empty, empty
            stored = self._read_stored(row[0], bars.index[0], bars.index[-1], conn=c)
        common = stored.index.intersection(bars.index)
        old = stored.loc[common, list(OHLCV)]
        new = bars.loc[common, list(OHLCV)].astype("float64")
        changed = (old.to_numpy() != new.to_numpy()).any(axis=1)
        return old[changed], new[changed]

    # -- order events ------------------------------------------------------------------------------

    def append_order_event(
        self,
        client_id: str,
        ts: datetime,
        status: str,
        payload: dict | None = None,
        *,
        mode: str,
        run_id: str | None = None,
        conn: psycopg.Connection | None = None,
    ) -> int:
        """Append one event to the order audit trail; return its id (ids increase with time).

        ``ts`` must be tz-aware: the market time of the event (the engine's time), never the
        wall time it is written, which the server stores beside it as ``written_at``.
        ``run_id`` names the run the row belongs to, so a restarted engine reads back also the
        rows of orders it did not create (whose client ids lack its prefix). The table refuses
        UPDATE, DELETE and TRUNCATE: history is only appended.
        """
        if ts.tzinfo is None:
            raise ValidationError(f"order event ts={ts} is naive; pass a tz-aware timestamp")
        with self._shared(conn) as c:
            return c.execute(
                "INSERT INTO order_events (client_id, ts, status, payload, mode, run_id)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (client_id, ts, status, Jsonb(payload or {}), mode, run_id),
            ).fetchone()[0]

    def read_order_events(
        self, client_id: str | None = None, *, run_id: str | None = None
    ) -> pd.DataFrame:
        """Return order events (all, one order's, or one run's) in append order.

        Columns ``id, client_id, ts, status, payload, mode, run_id, written_at``: ``ts`` is the
        market time of the event and ``written_at`` the wall time the row was stored, both in
        IST. ``run_id`` selects the run's rows: those appended with that run id, and rows from
        before migration 0008 (no run id) whose client id starts with ``<run_id>-``.
        """
        import pandas as pd

        columns = ["id", "client_id", "ts", "status", "payload", "mode", "run_id", "written_at"]
        query = f"SELECT {', '.join(columns)} FROM order_events"
        conditions, params = [], []
        if client_id is not None:
            conditions.append("client_id = %s")
            params.append(client_id)
        if run_id is not None:
            conditions.append("(run_id = %s OR (run_id IS NULL AND starts_with(client_id, %s)))")
            params += [run_id, f"{run_id}-"]
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        with self._shared() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        frame = pd.DataFrame(rows, columns=columns)
        frame["id"] = frame["id"].astype("int64")
        for column in ("ts", "written_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(IST_NAME)
        return frame

    # -- checks ------------------------------------------------------------------------------------

    def table_fingerprint(self, table: str) -> tuple[int, str]:
        """Return (row count, md5 of all rows in a canonical order) of one Velox table.

        Two equal fingerprints mean the table's contents are identical, which is how tests
        prove that a rejected import changed nothing.
        """
        if table not in TABLES:
            raise ValidationError(f"unknown table {table!r}; use one of {sorted(TABLES)}")
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
            " FROM {} AS t"
        ).format(sql.Identifier(table))
        with self._shared() as conn:
            count, digest = conn.execute(query).fetchone()
        return int(count), digest


# -- helpers ---------------------------------------------------------------------------------


def _bar_records(df: pd.DataFrame) -> np.ndarray | None:
    """Return ``df`` as sorted records (ts in PostgreSQL microseconds, OHLCV), validated.

    None for an empty frame.
    """
    import pandas as pd

    if not isinstance(df.index, pd.DatetimeIndex):
        raise ValidationError("bars need a DatetimeIndex of bar start times")
    if df.index.tz is None:
        raise ValidationError(
            f"bar timestamps are naive; localise them first (df.tz_localize('{IST_NAME}'))"
        )
    missing = [c for c in OHLCV[:4] if c not in df.columns]
    if missing:
        raise ValidationError(f"bars are missing columns {missing}; need {list(OHLCV)}")
    if len(df) == 0:
        return None
    if df.index.has_duplicates:
        dups = df.index[df.index.duplicated()][:5].tolist()
        raise ValidationError(f"duplicate bar timestamps {dups}; each bar must appear once")
    records = np.empty(len(df), [("ts", np.int64)] + [(col, np.float64) for col in OHLCV])
    records["ts"] = df.index.tz_convert("UTC").as_unit("us").asi8 - _PG_EPOCH_US
    for col in OHLCV:
        values = (
            df[col].to_numpy(dtype="float64", na_value=np.nan)
            if col in df.columns
            else np.zeros(len(df))
        )
        if np.isnan(values).any():
            where = df.index[np.isnan(values)][:3].tolist()
            raise ValidationError(f"column {col!r} has missing values (first at {where})")
        records[col] = values
    ts = records["ts"]
    return records if (ts[1:] > ts[:-1]).all() else records[np.argsort(ts, kind="stable")]


def _bar_series(
    conn: psycopg.Connection, instrument_id: str, timeframe: str, first: datetime, last: datetime
) -> tuple[int, bool]:
    """Return (series id, whether bars exist in [first, last]), creating the series if new.

    A concurrent writer creating the same series makes the INSERT wait for its transaction;
    once it commits, the INSERT does nothing and the series is read again.
    """
    row = conn.execute(_FIND_SERIES, (first, last, instrument_id, timeframe)).fetchone()
    if row is None:
        created = conn.execute(
            "INSERT INTO bar_series (instrument_id, timeframe) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (instrument_id, timeframe),
        ).fetchone()
        if created is not None:
            return created[0], False
        row = conn.execute(_FIND_SERIES, (first, last, instrument_id, timeframe)).fetchone()
    return row[0], row[1]


def _finest_source(stored: dict[str, int], timeframe: str) -> str | None:
    """Return the finest timeframe in ``stored`` that ``timeframe`` can be resampled from."""
    target = TIMEFRAMES[timeframe]
    for source, minutes in TIMEFRAMES.items():
        if minutes is None or source == timeframe or source not in stored:
            continue
        if target is None or (target > minutes and target % minutes == 0):
            return source
    return None


#: One field of a binary COPY row: (big-endian numpy type, or "text"; the values: an array with
#: one per row, or one scalar/bytes for every row; the rows where it is NULL, or None).
CopyField = tuple[str, object, np.ndarray | None]


def _copy_chunks(fields: list[CopyField], n: int) -> Iterator[memoryview]:
    """Yield a binary COPY stream of ``n`` rows of ``fields``, :data:`COPY_CHUNK_ROWS` a piece.

    Every field has a fixed width, so a piece is one numpy structured array: per row a field
    count, then (byte length, big-endian value) for each field. The constant parts come from
    a template row; only the per-row values are filled in. A NULL field is sent as length -1
    without its value: those bytes are dropped with one boolean mask over the piece. Pieces
    are yielded as memoryviews, and the server ingests one while the next is built.
    """
    layout: list[tuple[str, str]] = [("count", ">i2")]
    for i, (kind, value, _) in enumerate(fields):
        layout += [(f"len{i}", ">i4"), (f"val{i}", f"S{len(value)}" if kind == "text" else kind)]
    template = np.zeros(1, layout)
    template["count"] = len(fields)
    for i, (_, value, _) in enumerate(fields):
        template[f"len{i}"] = template.dtype[f"val{i}"].itemsize
        if not isinstance(value, np.ndarray):
            template[f"val{i}"] = value
    yield memoryview(_COPY_HEADER)
    for lo in range(0, n, COPY_CHUNK_ROWS):
        hi = min(n, lo + COPY_CHUNK_ROWS)
        out = np.repeat(template, hi - lo)
        keep = None
        for i, (_, value, nulls) in enumerate(fields):
            if isinstance(value, np.ndarray):
                out[f"val{i}"] = value[lo:hi]
            if nulls is not None and nulls[lo:hi].any():
                if keep is None:
                    keep = np.ones((hi - lo, template.itemsize), bool)
                out[f"len{i}"][nulls[lo:hi]] = -1
                start = template.dtype.fields[f"val{i}"][1]
                keep[nulls[lo:hi], start : start + template.dtype[f"val{i}"].itemsize] = False
        raw = memoryview(out).cast("B")
        yield raw if keep is None else memoryview(np.frombuffer(raw, np.uint8)[keep.ravel()])
    yield memoryview(_COPY_TRAILER)


def _bar_fields(records: np.ndarray, series: int | None = None) -> list[CopyField]:
    """Return the COPY fields of bar ``records``: (``series``,) ts, open … volume."""
    fields: list[CopyField] = [] if series is None else [(">i8", series, None)]
    return fields + [(">i8", records["ts"], None)] + [(">f8", records[c], None) for c in OHLCV]


def _tick_records(
    ticks: pd.DataFrame | Mapping[str, object],
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Return validated ticks as records sorted by (ts, seq) and the NULL mask of each column.

    ``ts`` is in PostgreSQL-epoch microseconds; columns not given are all NULL (``seq`` is
    numbered instead). None for no ticks.
    """
    import pandas as pd

    frame = ticks if isinstance(ticks, pd.DataFrame) else pd.DataFrame(dict(ticks))
    data = frame.drop(columns="ts") if "ts" in frame.columns else frame
    stamps = frame["ts"] if "ts" in frame.columns else frame.index
    if not isinstance(stamps, pd.DatetimeIndex) and not (
        isinstance(stamps, pd.Series) and isinstance(stamps.dtype, pd.DatetimeTZDtype)
    ):
        raise ValidationError(
            "ticks need tz-aware timestamps: a DatetimeIndex or a 'ts' column "
            f"(got {type(stamps).__name__} of {getattr(stamps, 'dtype', '?')})"
        )
    index = pd.DatetimeIndex(stamps)
    if index.tz is None:
        raise ValidationError(
            f"tick timestamps are naive; localise them first (tz_localize('{IST_NAME}'))"
        )
    unknown = [c for c in data.columns if c not in TICK_COLUMNS]
    if unknown or "price" not in data.columns:
        problem = f"unknown columns {unknown}" if unknown else "no 'price' column"
        raise ValidationError(
            f"ticks have {problem}; give 'price' (the last traded price) and any of "
            f"{[c for c in TICK_COLUMNS if c != 'price']}"
        )
    n = len(index)
    if n == 0:
        return None
    kinds = [(c, np.float64 if c in _TICK_FLOATS else np.int64) for c in TICK_COLUMNS]
    records = np.zeros(n, [("ts", np.int64), *kinds])
    records["ts"] = index.tz_convert("UTC").as_unit("us").asi8 - _PG_EPOCH_US
    nulls = {}
    for col in TICK_COLUMNS:
        if col not in data.columns:
            if col != "seq":
                nulls[col] = np.ones(n, bool)
            continue
        if col in _TICK_FLOATS:
            records[col] = data[col].to_numpy(dtype="float64", na_value=np.nan)
            missing = np.isnan(records[col]) if col != "price" else np.zeros(n, bool)
        else:
            records[col], missing = _whole_numbers(col, data[col])
            if col == "seq" and missing.any():
                raise ValidationError("ticks column 'seq' has missing values; give every tick one")
        if missing.any():
            nulls[col] = missing
    ts = records["ts"]
    if "seq" in data.columns:
        order = np.lexsort((records["seq"], ts))
    else:
        order = np.argsort(ts, kind="stable")
    records, nulls = records[order], {col: mask[order] for col, mask in nulls.items()}
    ts, same = records["ts"], records["ts"][1:] == records["ts"][:-1]
    if "seq" not in data.columns:  # 0, 1, … within each run of equal timestamps
        runs = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(n), 0))
        records["seq"] = np.arange(n) - runs
    elif (same & (records["seq"][1:] == records["seq"][:-1])).any():
        at = np.flatnonzero(same & (records["seq"][1:] == records["seq"][:-1]))[:3]
        raise ValidationError(
            f"duplicate ticks (ts, seq) at {[_pg_datetime(ts[i]).isoformat() for i in at]}; "
            "each (ts, seq) must appear once"
        )
    return records, nulls


def _whole_numbers(column: str, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return (int64 values with 0 where missing, missing mask) of an integer tick column."""
    import pandas as pd

    missing = values.isna().to_numpy()
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype="int64", na_value=0), missing
    floats = values.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~missing & ~(np.isfinite(floats) & (floats == np.round(floats)))
    if bad.any():
        raise ValidationError(
            f"ticks column {column!r} must hold whole numbers, got {floats[bad][:3].tolist()}"
        )
    return np.where(missing, 0, floats).astype(np.int64), missing


def _tick_columns(records: np.ndarray, nulls: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return validated tick ``records`` as the columns of a block (see :func:`_fetch_blocks`)."""
    columns = {name: records[name] for name in ("ts", *TICK_COLUMNS)}
    bits = np.zeros(len(records), np.uint8)
    for bit, col in enumerate(_TICK_NULLABLE):
        if col in nulls:
            bits |= nulls[col].astype(np.uint8) << bit
            if col in _TICK_FLOATS:  # a float column not given is 0 in the records
                columns[col] = np.where(nulls[col], np.nan, columns[col])
    columns["nulls"] = bits
    return columns


def _tick_series(conn: psycopg.Connection, instrument_id: str) -> int:
    """Return the tick series id of ``instrument_id``, created if new, locked until commit.

    The row lock makes writers of one instrument take turns, so each sees the blocks the
    previous one left. A concurrent writer creating the same series makes the INSERT wait for
    its transaction; once that commits, the INSERT does nothing and the row is locked instead.
    """
    find = "SELECT id FROM tick_series WHERE instrument_id = %s FOR UPDATE"
    row = conn.execute(find, (instrument_id,)).fetchone()
    if row is None:
        row = (
            conn.execute(
                "INSERT INTO tick_series (instrument_id) VALUES (%s) ON CONFLICT DO NOTHING"
                " RETURNING id",
                (instrument_id,),
            ).fetchone()
            or conn.execute(find, (instrument_id,)).fetchone()
        )
    return row[0]


def _blocks_to_rewrite(
    nearby: list[tuple[datetime, datetime, int]], first: datetime, last: datetime, count: int
) -> list[datetime]:
    """Return the start times of the stored blocks a write of ``count`` ticks must rewrite.

    Those overlapping [first, last] always. Then, while the nearest block on either side holds
    no more ticks than the merged result so far and both fit in one block, that one too: like
    carrying in binary addition, a run of small writes leaves blocks of doubling size, so a
    tick is rewritten about log2(:data:`TICK_BLOCK_ROWS`) times, never once per later write.
    """
    chosen = [start for start, end, _ in nearby if start <= last and end >= first]
    count += sum(n for start, end, n in nearby if start <= last and end >= first)
    before = sorted(((start, n) for start, end, n in nearby if end < first), reverse=True)
    after = sorted((start, n) for start, _, n in nearby if start > last)
    while True:
        sides = [side for side in (before, after) if side and side[0][1] <= count]
        sides = [side for side in sides if side[0][1] + count <= TICK_BLOCK_ROWS]
        if not sides:
            return chosen
        start, n = min(sides, key=lambda side: side[0][1]).pop(0)
        chosen.append(start)
        count += n


def _merge_ticks(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return ``old`` and ``new`` ticks in (ts, seq) order, a new tick replacing an old one."""
    both = {name: np.concatenate([old[name], new[name]]) for name in _BLOCK_FIELDS}
    source = np.repeat([0, 1], [len(old["ts"]), len(new["ts"])])
    order = np.lexsort((source, both["seq"], both["ts"]))
    ts, seq = both["ts"][order], both["seq"][order]
    keep = np.ones(len(order), bool)
    keep[:-1] = (ts[1:] != ts[:-1]) | (seq[1:] != seq[:-1])  # the last of equal keys is new
    return {name: values[order[keep]] for name, values in both.items()}


def _block_bounds(ts: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Return (start, stop) row ranges cutting sorted ``ts`` into blocks of about equal size.

    As few blocks as ``limit`` allows. A cut inside a run of ticks sharing a timestamp moves to
    the nearer end of the run, so blocks never share a timestamp (and a block can exceed
    ``limit`` by less than the longest such run).
    """
    n = len(ts)
    parts = -(-n // limit)
    cuts = [0]
    for target in (n * k // parts for k in range(1, parts)):
        back = int(np.searchsorted(ts, ts[target], "left"))
        ahead = int(np.searchsorted(ts, ts[target - 1], "right"))
        options = [cut for cut in (back, ahead) if cuts[-1] < cut < n]
        if options:
            cuts.append(min(options, key=lambda cut: abs(cut - target)))
    return list(zip(cuts, [*cuts[1:], n], strict=True))


def _block_row(series: int, columns: dict[str, np.ndarray], lo: int, hi: int) -> tuple:
    """Return the ``tick_blocks`` row of ticks ``lo:hi`` of ``columns`` (fields of _BLOCK_NAMES)."""
    ts, bits = columns["ts"][lo:hi], columns["nulls"][lo:hi]
    fields: list[object] = [series, _pg_datetime(ts[0]), _pg_datetime(ts[-1]), hi - lo]
    fields.append(ts.astype(">i8").tobytes())
    for col in TICK_COLUMNS:
        if col in _TICK_NULLABLE and (bits & (1 << _TICK_NULLABLE.index(col))).all():
            fields.append(None)  # NULL in every tick of the block
        else:
            fields.append(
                columns[col][lo:hi].astype(">f8" if col in _TICK_FLOATS else ">i8").tobytes()
            )
    fields.append(bits.tobytes() if bits.any() else None)
    return tuple(fields)


def _fetch_blocks(conn: psycopg.Connection, where: sql.Composable) -> dict[str, np.ndarray]:
    """Return the ticks of the ``tick_blocks`` rows matching ``where``, decoded, in block order.

    Keys: ``ts`` (int64 microseconds since 2000-01-01 UTC), the :data:`TICK_COLUMNS` (int64 or
    float64; 0 or NaN where NULL) and ``nulls`` (uint8 NULL bits). The rows come as one binary
    ``COPY``: a message per block, its fields big-endian arrays that numpy converts in one pass
    each into the output columns (a ``SELECT`` would copy every byte once more).
    """
    query = sql.SQL("COPY ({} WHERE {} ORDER BY ts) TO STDOUT (FORMAT BINARY)").format(
        sql.SQL(_BLOCK_SELECT), where
    )
    blocks = []
    with conn.cursor() as cur, cur.copy(query) as copy:
        for message in copy:
            blocks.extend(_copy_rows(memoryview(message), first=not blocks))
    counts = [len(block[0]) // 8 for block in blocks]
    kinds = {name: ">f8" if name in _TICK_FLOATS else ">i8" for name in _BLOCK_FIELDS}
    kinds["nulls"] = "u1"
    out = {
        name: np.empty(sum(counts), np.dtype(kind).newbyteorder("="))
        for name, kind in kinds.items()
    }
    start = 0
    for block, n in zip(blocks, counts, strict=True):
        for name, field in zip(_BLOCK_FIELDS, block, strict=True):
            target = out[name][start : start + n]
            if field is None:
                target[:] = np.nan if name in _TICK_FLOATS else 0
            elif len(field) != n * target.itemsize:
                raise StoreError(
                    f"tick block column {name!r} holds {len(field)} bytes for {n} ticks; the"
                    " block is damaged (rewrite those ticks with Store.write_ticks)"
                )
            else:
                target[:] = np.frombuffer(field, kinds[name])
        start += n
    return out


def _copy_rows(data: memoryview, *, first: bool) -> list[list[memoryview | None]]:
    """Return the rows (lists of field bytes, None for NULL) in one binary COPY message.

    PostgreSQL sends one row per message, the file header in front of the first and a
    trailer (field count -1) at the end; several rows in one message are parsed all the same.
    """
    pos = 0
    if first and data[: len(_COPY_SIGNATURE)] == _COPY_SIGNATURE:
        pos = len(_COPY_SIGNATURE) + 4
        pos += 4 + int.from_bytes(data[pos : pos + 4], "big")  # header extension
    rows = []
    while pos < len(data):
        count = int.from_bytes(data[pos : pos + 2], "big", signed=True)
        pos += 2
        if count < 0:
            break
        fields: list[memoryview | None] = []
        for _ in range(count):
            length = int.from_bytes(data[pos : pos + 4], "big", signed=True)
            pos += 4
            fields.append(None if length < 0 else data[pos : pos + length])
            pos += max(length, 0)
        rows.append(fields)
    return rows


def _tick_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Return the ticks DataFrame of decoded block ``columns`` (see :meth:`Store.read_ticks`)."""
    import pandas as pd

    ts, seq = columns["ts"], columns["seq"]
    ordered = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (seq[1:] > seq[:-1]))
    if not ordered.all():  # never written so by Velox; blocks edited by hand, say
        order = np.lexsort((seq, ts))
        columns = {name: values[order] for name, values in columns.items()}
    data: dict[str, object] = {"seq": columns["seq"], "price": columns["price"]}
    for bit, col in enumerate(_TICK_NULLABLE):
        missing = (columns["nulls"] & (1 << bit)) != 0
        if col in _TICK_FLOATS:  # NaN where NULL already; a block edited by hand may not be
            data[col] = np.where(missing, np.nan, columns[col]) if missing.any() else columns[col]
        else:
            data[col] = pd.arrays.IntegerArray(columns[col], missing)
    ns = (columns["ts"] + _PG_EPOCH_US) * 1000
    index = pd.DatetimeIndex(ns.view("M8[ns]"), name="ts").tz_localize("UTC").tz_convert(IST_NAME)
    return pd.DataFrame({col: data[col] for col in TICK_COLUMNS}, index=index)


def _pg_datetime(pg_us: int) -> datetime:
    """Return a UTC datetime for PostgreSQL-epoch microseconds."""
    return datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(pg_us))


def _frame(row: tuple | None) -> pd.DataFrame:
    """Return the standard bars DataFrame from one row of binary arrays (ts, OHLCV) or None."""
    import pandas as pd

    if row is None or row[0] is None:
        columns = [np.empty(0, ">i8")] + [np.empty(0, ">f8")] * len(OHLCV)
    else:
        columns = [_array_values(row[0], ">i8")] + [_array_values(v, ">f8") for v in row[1:]]
    ns = (columns[0].astype(np.int64) + _PG_EPOCH_US) * 1000
    if len(ns) > 1 and not (ns[1:] > ns[:-1]).all():
        order = np.argsort(ns, kind="stable")
        ns, columns = ns[order], [values[order] for values in columns]
    index = pd.DatetimeIndex(ns.view("M8[ns]"), name="ts").tz_localize("UTC").tz_convert(IST_NAME)
    return pd.DataFrame(
        {col: values.astype(np.float64) for col, values in zip(OHLCV, columns[1:], strict=True)},
        index=index,
    )


def _array_values(data: bytes, element: str) -> np.ndarray:
    """Return the elements of a binary 1-D PostgreSQL array of 8-byte values without NULLs."""
    ndim, has_nulls = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if ndim != 1 or has_nulls:
        raise StoreError(f"unexpected array from the server (ndim={ndim}, nulls={has_nulls})")
    cells = np.frombuffer(data, np.dtype([("length", ">i4"), ("value", element)]), offset=20)
    return cells["value"]


def _to_ns(value: object) -> tuple[int, bool]:
    """Return (UTC epoch ns, is_date_only) for a bound; naive values are IST."""
    import pandas as pd

    from velox.data import timestamp_problem

    date_only = (isinstance(value, date) and not isinstance(value, datetime)) or (
        isinstance(value, str) and bool(_DATE_ONLY.match(value.strip()))
    )
    problem = timestamp_problem(value)  # the rules of a file's timestamps, on the text
    if problem is None:
        try:
            stamp = pd.Timestamp(value)
            problem = timestamp_problem(stamp)  # a year the text did not show ("Jan 01 0001")
            if problem is None:
                if stamp.tzinfo is None:
                    stamp = stamp.tz_localize(IST_NAME)
                return int(stamp.tz_convert("UTC").as_unit("ns").value), date_only
        except (TypeError, ValueError, OverflowError) as exc:  # OutOfBoundsDatetime too
            problem = str(exc)
    raise ValidationError(f"cannot read {value!r} as a timestamp: {problem}")


def _bounds_ns(start: object, end: object) -> tuple[int | None, int | None]:
    """Return the half-open [lo, hi) range in UTC ns for inclusive ``start``/``end`` bounds."""
    lo = None if start is None else _to_ns(start)[0]
    hi = None
    if end is not None:
        ns, date_only = _to_ns(end)
        hi = ns + _DAY_NS if date_only else ns + 1_000  # inclusive: next microsecond
    return lo, hi


def _range_conditions(key: str, value: object, start: object, end: object) -> list[sql.Composable]:
    """Return ``key = value`` plus the ``ts`` bounds of a read (inclusive start, exclusive end)."""
    lo, hi = _bounds_ns(start, end)
    conditions = [sql.SQL("{} = {}").format(sql.Identifier(key), sql.Literal(value))]
    if lo is not None:
        conditions.append(sql.SQL("ts >= {}").format(_ts_literal(lo)))
    if hi is not None:
        conditions.append(sql.SQL("ts < {}").format(_ts_literal(hi)))
    return conditions


def _ts_literal(ns: int) -> sql.Composable:
    """Return a timestamptz SQL literal for UTC epoch ns (microsecond precision)."""
    return sql.SQL("(timestamptz 'epoch' + {} * interval '1 microsecond')").format(
        sql.Literal(ns // 1000)
    )


def _is_missing(value: object) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _whole(column: str, value: object) -> int | None:
    """Return ``value`` as an int (NaN-padded int columns arrive as floats), else raise."""
    if value is None:
        return None
    if isinstance(value, float) and not value.is_integer():
        raise ValidationError(f"instrument column {column!r} must be whole numbers, got {value}")
    return int(value)


def _plain(value: object) -> object:
    """Return numpy scalars as Python scalars for psycopg's text COPY."""
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["INSTRUMENT_COLUMNS", "OHLCV", "TABLES", "TICK_COLUMNS", "Store"]
