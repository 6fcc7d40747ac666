"""Benchmark the RunRecorder: what recording 1M equity points + 20k fills costs the engine.

Run ``python bench/recorder.py``. It starts a throwaway embedded PostgreSQL in a temp dir (never
the user's store), creates a replay run and, on the main thread (standing in for the engine's),
records 1,000,000 equity points with ``equity()`` one at a time and 20,000 fills with ``fill()``
while the recorder's writer thread flushes every 0.5 s. Reported:

- hot path: ns per call on the engine's thread, minus the same loop calling a no-op method;
- stalls: the slowest calls of a second run that times every call (the writer thread holds the
  GIL while numpy converts a piece of the buffer);
- end to end: from the first call until ``close()`` returned with everything committed, and
  how long ``close()`` itself waited;
- the same with ``equity_many`` (one call for the whole curve);
- ``quote()``, the live path of paper and live engines (latest quote, day high/low and the
  1-minute candle of every tick): ``QUOTE_TICKS`` ticks over 100 instruments, ns per call
  minus the loop's own cost, then the rows written (quotes, candles) checked.

Every run's rows are read back and checked (counts, bit-exact equity).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from velox.store import RunRecorder, Store, embedded_url, stop_embedded
from velox.types import Fill, Side, Tick

EQUITY_POINTS = 1_000_000
FILLS = 20_000
T0_NS = 1_711_942_200_000_000_000  # 2024-04-01 09:00 IST
QUOTE_TICKS = 400_000
QUOTE_SYMBOLS = 100


class NoOp:
    """The recorder's call signatures doing nothing: the loop's own cost."""

    def quote(self, tick: Tick, ns: int) -> None:
        pass

    def equity(self, ts_ns: int, value: float) -> None:
        pass

    def fill(self, fill: Fill) -> None:
        pass


def make_fills() -> list[Fill]:
    t0 = datetime.fromtimestamp(T0_NS / 1e9, UTC)
    return [
        Fill(f"T{i}", f"R1-{i}", "NSE:SBIN", Side.BUY if i % 2 else Side.SELL, 10, 770.05 + i % 7,
             t0 + timedelta(microseconds=i), charges=0.25, strategy="bench")
        for i in range(FILLS)
    ]  # fmt: skip


def record(target: object, times: list[int], values: list[float], fills: list[Fill]) -> float:
    """Return seconds to make the engine-side calls (fills interleaved every 50 points)."""
    equity, fill = target.equity, target.fill  # type: ignore[attr-defined]
    every = len(times) // len(fills)
    started = time.perf_counter()
    for i in range(len(times)):
        equity(times[i], values[i])
        if i % every == 0:
            fill(fills[i // every])
    return time.perf_counter() - started


def timed_calls(recorder: RunRecorder, times: list[int], values: list[float]) -> np.ndarray:
    """Return the duration in ns of every ``equity()`` call."""
    out = np.empty(len(times), np.int64)
    clock, equity = time.perf_counter_ns, recorder.equity
    for i in range(len(times)):
        t = clock()
        equity(times[i], values[i])
        out[i] = clock() - t
    return out


def check(store: Store, run_id: str, values: np.ndarray, fills: int) -> None:
    curve = store.run_equity(run_id)
    assert len(curve) == len(values), (len(curve), len(values))
    assert (curve["equity"].to_numpy().view(np.int64) == values.view(np.int64)).all()
    assert len(store.run_fills(run_id)) == fills


def make_ticks() -> list[tuple[Tick, int]]:
    """``QUOTE_TICKS`` ticks, 100 ms apart per instrument, volume rising."""
    out = []
    for i in range(QUOTE_TICKS):
        ns = T0_NS + i * (100_000_000 // QUOTE_SYMBOLS)
        ts = datetime.fromtimestamp(ns / 1e9, UTC)
        out.append((Tick(f"NSE:S{i % QUOTE_SYMBOLS:03d}", ts, 1000.0 + (i % 97) * 0.05,
                         volume=i), ns))  # fmt: skip
    return out


def quote_calls(target: object, ticks: list[tuple[Tick, int]]) -> float:
    quote = target.quote  # type: ignore[attr-defined]
    started = time.perf_counter()
    for tick, ns in ticks:
        quote(tick, ns)
    return time.perf_counter() - started


def main() -> None:
    rng = np.random.default_rng(7)
    values_array = 1e6 + rng.normal(0, 50, EQUITY_POINTS).cumsum()
    times_array = T0_NS + np.arange(EQUITY_POINTS, dtype=np.int64) * 1_000_000
    times, values = times_array.tolist(), values_array.tolist()
    fills = make_fills()
    loop = min(record(NoOp(), times, values, fills) for _ in range(3))

    root = Path(tempfile.mkdtemp(prefix="vx-bench-"))
    try:
        store = Store(embedded_url(root / "store"), backend="embedded")

        run_id = store.create_run(mode="replay", initial_cash=1e6)
        started = time.perf_counter()
        recorder = RunRecorder(store, run_id)
        calls = record(recorder, times, values, fills)
        closing = time.perf_counter()
        recorder.close()
        end = time.perf_counter()
        check(store, run_id, values_array, FILLS)

        run_id = store.create_run(mode="replay", initial_cash=1e6)
        recorder = RunRecorder(store, run_id)
        durations = timed_calls(recorder, times, values)
        recorder.close()

        run_id = store.create_run(mode="replay", initial_cash=1e6)
        many_started = time.perf_counter()
        recorder = RunRecorder(store, run_id)
        recorder.equity_many(times_array, values_array)
        many_call = time.perf_counter() - many_started
        recorder.close()
        many_end = time.perf_counter() - many_started
        check(store, run_id, values_array, 0)

        ticks = make_ticks()
        quote_loop = min(quote_calls(NoOp(), ticks) for _ in range(3))
        run_id = store.create_run(mode="paper", initial_cash=1e6)
        recorder = RunRecorder(store, run_id, flush_interval=0.1)
        quote_time = quote_calls(recorder, ticks)
        recorder.close()
        minutes = (ticks[-1][1] - T0_NS) // 60_000_000_000 + 1
        assert len(store.run_quotes(run_id)) == QUOTE_SYMBOLS
        candles = store.run_candles(run_id, "NSE:S000", limit=100_000)
        assert len(candles) == minutes, (len(candles), minutes)
        store.close()
    finally:
        stop_embedded(root / "store")
        shutil.rmtree(root, ignore_errors=True)

    n_calls = EQUITY_POINTS + FILLS
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{EQUITY_POINTS:,} equity() + {FILLS:,} fill() calls, writer flushing every 0.5 s")
    print(f"  engine thread: {calls:.3f} s for the calls ({calls / n_calls * 1e9:.0f} ns/call; "
          f"the loop alone {loop / n_calls * 1e9:.0f} ns/call, recorder "
          f"{(calls - loop) / n_calls * 1e9:.0f} ns/call)")  # fmt: skip
    print(f"  close() waited {end - closing:.3f} s; end to end {end - started:.3f} s")
    q = np.percentile(durations, [50, 99, 99.9, 99.99])
    print(f"  equity() call ns: median {q[0]:.0f}, p99 {q[1]:.0f}, p99.9 {q[2]:.0f}, "
          f"p99.99 {q[3]:.0f}, max {durations.max() / 1e6:.2f} ms")  # fmt: skip
    print(f"equity_many() of {EQUITY_POINTS:,} points: call {many_call * 1e3:.1f} ms, "
          f"end to end {many_end:.3f} s")  # fmt: skip
    print(f"quote() of {QUOTE_TICKS:,} ticks over {QUOTE_SYMBOLS} instruments, writer every 0.1 s: "
          f"{quote_time / QUOTE_TICKS * 1e9:.0f} ns/call (the loop alone "
          f"{quote_loop / QUOTE_TICKS * 1e9:.0f}, recorder "
          f"{(quote_time - quote_loop) / QUOTE_TICKS * 1e9:.0f} ns/call)")  # fmt: skip


if __name__ == "__main__":
    main()
