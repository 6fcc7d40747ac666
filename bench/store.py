"""Benchmark the PostgreSQL store: COPY ingest vs executemany, bar reads, ``import velox`` time.

Run ``python bench/store.py``. It starts a throwaway embedded PostgreSQL in a temp dir (never
the user's store) and ingests 1,000,000 synthetic 1-minute bars (4 symbols, regular sessions
09:15-15:29 IST on weekdays) twice: with :meth:`Store.write_bars` (binary COPY, one connection)
and with :meth:`Store.write_bars_many` (one COPY per instrument, two connections at a time).
The alternative is psycopg ``executemany`` of 3 x 20,000 of the rows (what a user would write:
same ``bars`` table, same upsert, the series id looked up once; pipelined by psycopg 3; median
run); a row-by-row ``execute`` loop is timed too. Then it reads one symbol-year back with
:meth:`Store.read_bars`, with ``cursor.fetchall`` → DataFrame and with ``pandas.read_sql``, and
times ``import velox`` in a fresh interpreter.
Ticks: 1,000,000 synthetic ticks of one instrument (every column, 10 % NULL ``qty`` and ``bid``)
written with :meth:`Store.write_ticks` and read back with :meth:`Store.read_ticks` (median of
runs), beside the same ticks in the row-per-tick table of migrations 0001/0002 read with the
query ``read_ticks`` used then (one binary array per column).
Goals: COPY >= 10x executemany rows/s, a symbol-year read <= 100 ms, 1M ticks read <= 200 ms,
``import velox`` < 0.5 s.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from velox.store import Store, core, embedded_url, stop_embedded

TOTAL_BARS = 1_000_000
SYMBOLS = [f"NSE:BENCH{i}" for i in range(4)]
EXECUTEMANY_ROWS = 20_000
EXECUTEMANY_RUNS = 3
EXECUTE_ROWS = 2_000
READ_REPEATS = 7
PARALLEL_WORKERS = 2
TICKS = 1_000_000
TICK_READ_REPEATS = 9
#: Read time of 1M ticks before migration 0003 (row per tick, text key; docs/store.md).
TICK_READ_BEFORE = "1.5-2.3 s"


def session_minutes(sessions: int) -> pd.DatetimeIndex:
    """Return 375 bar starts (09:15-15:29 IST) on each of ``sessions`` weekdays from 2019."""
    days = pd.bdate_range("2019-01-01", periods=sessions, unit="ns").values
    offsets = pd.to_timedelta(np.arange(9 * 60 + 15, 15 * 60 + 30), unit="min").values
    naive = pd.DatetimeIndex((days[:, None] + offsets[None, :]).ravel())
    return naive.tz_localize("Asia/Kolkata")


def synthetic_bars(index: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """Return OHLC-consistent random-walk bars on ``index``."""
    rng = np.random.default_rng(seed)
    n = len(index)
    close = 1000 + rng.normal(0, 1, n).cumsum()
    open_ = close + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + rng.random(n),
            "low": np.minimum(open_, close) - rng.random(n),
            "close": close,
            "volume": rng.integers(0, 50_000, n).astype(float),
        },
        index=index,
    )


def synthetic_ticks(n: int, seed: int = 0) -> pd.DataFrame:
    """Return ``n`` random-walk ticks ~10 ms apart from 2024-04-01 09:15 IST (µs stamps).

    Every tick column is given; ``qty`` and ``bid`` are NULL in ~10 % of the ticks.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-04-01 09:15", tz="Asia/Kolkata").value // 1000
    stamps = start + np.cumsum(rng.integers(0, 20_000, n))
    index = pd.DatetimeIndex((stamps * 1000).view("M8[ns]"), name="ts")
    price = np.round(770 + rng.normal(0, 0.05, n).cumsum(), 2)
    bid = price - 0.05
    bid[rng.random(n) < 0.1] = np.nan
    qty = pd.arrays.IntegerArray(rng.integers(1, 500, n), rng.random(n) < 0.1)
    return pd.DataFrame(
        {"price": price, "qty": qty, "volume": np.arange(n) * 3, "bid": bid, "ask": price + 0.05,
         "bid_qty": rng.integers(1, 1000, n), "ask_qty": rng.integers(1, 1000, n),
         "oi": rng.integers(0, 10**6, n)},
        index=index.tz_localize("UTC").tz_convert("Asia/Kolkata"),
    )  # fmt: skip


def row_per_tick_read(store: Store, ticks: pd.DataFrame) -> float:
    """Return the median read time of ``ticks`` stored one row per tick, as before 0003.

    The table is the ``ticks`` table of migration 0001 (primary key (instrument_id, ts, seq)),
    loaded by binary COPY; the query is the one ``read_ticks`` ran on it: one
    ``array_send(array_agg(…))`` per column (NULLs as 0/NaN plus a bit mask), parsed by numpy
    (the DataFrame is not built: a few ms in its favour).
    """
    nullable = core.TICK_COLUMNS[2:]
    floats = ("price", "bid", "ask")
    names = ", ".join(core.TICK_COLUMNS)
    records, nulls = core._tick_records(ticks)
    fields = [("text", b"NSE:BENCH", None), (">i8", records["ts"], None)]
    fields += [
        (">f8" if c in floats else ">i8", records[c], nulls.get(c)) for c in core.TICK_COLUMNS
    ]
    values = ", ".join(
        f"coalesce({c}, 'NaN') AS {c}" if c in floats else f"coalesce({c}, 0) AS {c}"
        for c in nullable
    )
    bits = " + ".join(f"({c} IS NULL)::int * {1 << b}" for b, c in enumerate(nullable))
    arrays = ", ".join(f"array_send(array_agg({c}))" for c in ("ts", "seq", "price", *nullable))
    query = (
        f"SELECT {arrays}, array_send(array_agg(nulls)) FROM (SELECT ts, seq, price, {values},"
        f" {bits} AS nulls FROM ticks_0002 WHERE instrument_id = 'NSE:BENCH' ORDER BY ts, seq) s"
    )
    with store.connect() as conn:
        conn.execute(
            "CREATE TABLE ticks_0002 (instrument_id text NOT NULL, ts timestamptz NOT NULL,"
            " seq bigint NOT NULL, price float8 NOT NULL, qty bigint, volume bigint, bid float8,"
            " ask float8, bid_qty bigint, ask_qty bigint, oi bigint,"
            " PRIMARY KEY (instrument_id, ts, seq))"
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                f"COPY ticks_0002 (instrument_id, ts, {names}) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            for chunk in core._copy_chunks(fields, len(records)):
                copy.write(chunk)
    with store.connect(autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE ticks_0002")
        conn.execute("SET enable_bitmapscan = off")  # as the store's own connection

        def read() -> None:
            with conn.cursor(binary=True) as cur:
                row = cur.execute(query).fetchone()
            kinds = [">i8", ">i8", ">f8"] + [">f8" if c in floats else ">i8" for c in nullable]
            for data, kind in zip(row, [*kinds, ">i4"], strict=True):
                core._array_values(data, kind).astype(np.dtype(kind).newbyteorder("="))

        seconds, _ = timed(read, 3)
        conn.execute("DROP TABLE ticks_0002")
    return seconds


def timed(func, repeats: int = 1) -> tuple[float, object]:  # noqa: ANN001
    """Return (median seconds, last result) of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    timed.best = min(times)
    return statistics.median(times), result


def import_time() -> tuple[float, float]:
    """Return (wall seconds of ``python -c 'import velox'`` minus bare startup, importtime s)."""

    def wall(code: str) -> float:
        return min(
            timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))[0]
            for _ in range(5)
        )

    bare, with_velox = wall("pass"), wall("import velox")
    report = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import velox"],
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    cumulative = [
        int(m.group(1)) for m in re.finditer(r"\|\s*(\d+) \|\s*velox$", report, re.MULTILINE)
    ]
    return with_velox - bare, (cumulative[-1] / 1e6 if cumulative else float("nan"))


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="vx-bench-"))
    try:
        store = Store(embedded_url(root / "store"), backend="embedded")
        sessions = TOTAL_BARS // 375 // len(SYMBOLS) + 1
        index = session_minutes(sessions)
        frames = {
            sym: synthetic_bars(index, seed)[: TOTAL_BARS // len(SYMBOLS)]
            for seed, sym in enumerate(SYMBOLS)
        }
        rows = sum(len(f) for f in frames.values())

        start = time.perf_counter()
        for sym, frame in frames.items():
            store.write_bars(sym, "1m", frame)
        copy_seconds = time.perf_counter() - start
        copy_rate = rows / copy_seconds

        # The same million rows as another four series through write_bars_many: one COPY per
        # instrument, two connections at a time (a universe load on the 2-core machine).
        start = time.perf_counter()
        store.write_bars_many(
            {sym.replace("BENCH", "PARALLEL"): frame for sym, frame in frames.items()},
            "1m",
            workers=PARALLEL_WORKERS,
        )
        parallel_seconds = time.perf_counter() - start
        parallel_rate = rows / parallel_seconds

        # The alternative a user would write against the same table: look the series id up
        # (here: create it) once, then one pipelined executemany with the same upsert. Timed
        # EXECUTEMANY_RUNS times, each into a new series; the median counts (one 20k-row run
        # takes ~0.2 s, so another process's burst can halve or double a single run).
        subset = frames[SYMBOLS[0]].iloc[:EXECUTEMANY_ROWS]
        many_rates = []
        with store.connect() as conn, conn.cursor() as cur:
            for run in range(EXECUTEMANY_RUNS + 1):
                name = f"NSE:EXECMANY{run}" if run < EXECUTEMANY_RUNS else "NSE:EXECUTE"
                series = cur.execute(
                    "INSERT INTO bar_series (instrument_id, timeframe) VALUES (%s, '1m')"
                    " RETURNING id",
                    (name,),
                ).fetchone()[0]
                conn.commit()
                params = [
                    (series, ts.to_pydatetime(), *map(float, values))
                    for ts, values in zip(subset.index, subset.to_numpy(), strict=True)
                ]
                if run == EXECUTEMANY_RUNS:
                    break  # params of the row-by-row execute loop below
                start = time.perf_counter()
                cur.executemany(
                    "INSERT INTO bars (series_id, ts, open, high, low, close, volume)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (series_id, ts) DO UPDATE SET"
                    " open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,"
                    " close = EXCLUDED.close, volume = EXCLUDED.volume",
                    params,
                )
                conn.commit()
                many_rates.append(len(params) / (time.perf_counter() - start))
            many_rate = statistics.median(many_rates)
            start = time.perf_counter()
            for row in params[:EXECUTE_ROWS]:
                cur.execute(
                    "INSERT INTO bars (series_id, ts, open, high, low, close, volume)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    row,
                )
            conn.commit()
            execute_rate = EXECUTE_ROWS / (time.perf_counter() - start)

        year = ("2020-01-01", "2020-12-31")
        velox_read, bars = timed(lambda: store.read_bars(SYMBOLS[0], "1m", *year), READ_REPEATS)
        velox_best = timed.best

        def fetchall_frame() -> pd.DataFrame:
            with store.connect() as conn:
                records = conn.execute(
                    "SELECT ts, open, high, low, close, volume FROM bars JOIN bar_series s"
                    " ON s.id = series_id WHERE s.instrument_id = %s AND s.timeframe = '1m'"
                    " AND ts >= %s AND ts < %s ORDER BY ts",
                    (SYMBOLS[0], pd.Timestamp(year[0], tz="Asia/Kolkata"),
                     pd.Timestamp("2021-01-01", tz="Asia/Kolkata")),
                ).fetchall()  # fmt: skip
            frame = pd.DataFrame(records, columns=["ts", "open", "high", "low", "close", "volume"])
            return frame.set_index(pd.DatetimeIndex(frame.pop("ts")).tz_convert("Asia/Kolkata"))

        def read_sql_frame() -> pd.DataFrame:
            with store.connect() as conn, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas prefers SQLAlchemy; psycopg works
                return pd.read_sql(
                    "SELECT ts, open, high, low, close, volume FROM bars JOIN bar_series s"
                    " ON s.id = series_id WHERE s.instrument_id = %s AND s.timeframe = '1m'"
                    " AND ts >= %s AND ts < %s ORDER BY ts",
                    conn,
                    params=(SYMBOLS[0], "2020-01-01 00:00+05:30", "2021-01-01 00:00+05:30"),
                    index_col="ts",
                )

        fetch_read, fetched = timed(fetchall_frame, 3)
        sql_read, _ = timed(read_sql_frame, 3)
        assert np.array_equal(fetched.to_numpy(), bars.to_numpy())
        resample_read, five = timed(lambda: store.read_bars(SYMBOLS[0], "5m", *year), 3)
        daily_read, daily = timed(lambda: store.read_bars(SYMBOLS[0], "1d", *year), 3)

        ticks = synthetic_ticks(TICKS)
        start = time.perf_counter()
        store.write_ticks("NSE:BENCH", ticks)
        tick_write = time.perf_counter() - start
        tick_read, got = timed(lambda: store.read_ticks("NSE:BENCH"), TICK_READ_REPEATS)
        tick_best = timed.best
        pd.testing.assert_frame_equal(
            got.drop(columns="seq"), ticks, check_freq=False, check_dtype=False
        )
        window = ("2024-04-01 10:00", "2024-04-01 10:10")
        window_read, part = timed(lambda: store.read_ticks("NSE:BENCH", *window), 5)
        rows_read = row_per_tick_read(store, ticks)
        import_wall, import_cumulative = import_time()
    finally:
        stop_embedded(root / "store")
        shutil.rmtree(root, ignore_errors=True)

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"ingest {rows:,} 1m bars, {len(SYMBOLS)} symbols (write_bars: binary COPY)")
    print(f"  COPY        {copy_rate:12,.0f} rows/s  ({copy_seconds:.2f} s)")
    print(
        f"  executemany {many_rate:12,.0f} rows/s  (median of {EXECUTEMANY_RUNS} x "
        f"{EXECUTEMANY_ROWS:,} rows; {min(many_rates):,.0f}-{max(many_rates):,.0f})"
    )
    print(f"  execute     {execute_rate:12,.0f} rows/s  ({EXECUTE_ROWS:,} rows one by one)")
    print(
        f"  COPY x{PARALLEL_WORKERS}     {parallel_rate:12,.0f} rows/s  ({parallel_seconds:.2f} s;"
        f" write_bars_many, {PARALLEL_WORKERS} connections)"
    )
    print(f"  ratio       {copy_rate / many_rate:12.1f} x  vs executemany (goal >= 10x)")
    print(f"  ratio       {parallel_rate / many_rate:12.1f} x  COPY x2 vs executemany")
    print(f"  ratio       {copy_rate / execute_rate:12.1f} x  vs execute loop")
    print(f"read one symbol-year of 1m bars ({len(bars):,} rows), median of runs")
    print(
        f"  velox read_bars      {velox_read * 1e3:7.1f} ms  (best {velox_best * 1e3:.1f} ms;"
        " goal <= 100 ms)"
    )
    print(f"  fetchall + DataFrame {fetch_read * 1e3:7.1f} ms  ({fetch_read / velox_read:.1f}x)")
    print(f"  pandas.read_sql      {sql_read * 1e3:7.1f} ms  ({sql_read / velox_read:.1f}x)")
    print(f"  SQL resample to 5m   {resample_read * 1e3:7.1f} ms  ({len(five):,} bars)")
    print(f"  SQL resample to 1d   {daily_read * 1e3:7.1f} ms  ({len(daily):,} bars)")
    print(f"ticks: {TICKS:,} of one instrument (10 % NULL qty/bid)")
    print(f"  write_ticks          {TICKS / tick_write:9,.0f} ticks/s ({tick_write:.2f} s)")
    print(
        f"  velox read_ticks     {tick_read * 1e3:7.1f} ms  (median of {TICK_READ_REPEATS}, best"
        f" {tick_best * 1e3:.1f} ms; goal <= 200 ms; {TICK_READ_BEFORE} before migration 0003)"
    )
    print(
        f"  row per tick (0002)  {rows_read * 1e3:7.1f} ms  ({rows_read / tick_read:.1f}x; the"
        " old table and read query, same ticks, same run)"
    )
    print(f"  10-minute window     {window_read * 1e3:7.1f} ms  ({len(part):,} ticks)")
    print(
        f"import velox: {import_wall * 1e3:.0f} ms wall over bare python, "
        f"{import_cumulative * 1e3:.0f} ms by -X importtime (goal < 500 ms)"
    )


if __name__ == "__main__":
    main()
