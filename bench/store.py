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
Goals: COPY >= 10x executemany rows/s, a symbol-year read <= 100 ms, ``import velox`` < 0.5 s.
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

from velox.store import Store, embedded_url, stop_embedded

TOTAL_BARS = 1_000_000
SYMBOLS = [f"NSE:BENCH{i}" for i in range(4)]
EXECUTEMANY_ROWS = 20_000
EXECUTEMANY_RUNS = 3
EXECUTE_ROWS = 2_000
READ_REPEATS = 7
PARALLEL_WORKERS = 2


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
    print(
        f"import velox: {import_wall * 1e3:.0f} ms wall over bare python, "
        f"{import_cumulative * 1e3:.0f} ms by -X importtime (goal < 500 ms)"
    )


if __name__ == "__main__":
    main()
