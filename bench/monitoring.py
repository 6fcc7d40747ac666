"""Benchmark the engine's tick → order path with metrics off, on (Velox's), and instrumented
by hand with prometheus_client the way a user would add it, in the same run.

The live loop (``Engine.run`` on a tick feed with its feed thread) runs a strategy that sends a
market order on every tick (alternately buying and selling one share), so every tick takes the
whole path: queue → aggregator → ``on_tick`` → risk checks → ``place_order`` → the fill of the
previous order. Three variants, interleaved repeat by repeat so machine load hits them alike:

* **off**: ``Engine(metrics=None)``;
* **velox**: ``Engine(metrics=EngineMetrics())`` and a ``/metrics`` server scraped every 0.5 s
  from another thread while it runs (the tick counter is a plain int, the other figures are
  read at scrape time; only the latency histogram is observed, once per order);
* **hand-instrumented**: metrics off, but the strategy does what a prometheus_client user
  writes: ``TICKS.labels(run).inc()``, ``QUEUE.labels(run).set(...)`` and a latency
  ``Histogram.observe`` per tick, plus an ``ORDERS.labels(run, "SUBMITTED").inc()`` per order.

Reported: median wall time per tick of each variant, and the ratios to **off**. Then tick → order
latency percentiles (tick enqueued → ``place_order``) with metrics off and on, the ticks paced
0.5 ms apart as in ``bench/engine.py``.

Run: ``python bench/monitoring.py [--ticks 20000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import STOCK, ZeroCost, _QueueFeed, _TimedSim  # noqa: E402  (bench/engine.py)

from velox.calendar import IST  # noqa: E402
from velox.engine import Engine  # noqa: E402
from velox.monitoring import EngineMetrics, start_metrics_server  # noqa: E402
from velox.risk import RiskEngine, RiskLimits  # noqa: E402
from velox.strategy import Context, Strategy  # noqa: E402
from velox.types import Bar, Tick  # noqa: E402


def _strategy(hand: object = None) -> Strategy:
    class EveryTick(Strategy):
        instruments = ("NSE:BENCH",)
        timeframe = "1m"

        def on_tick(self, ctx: Context, bar: Bar) -> None:
            if hand is not None:
                hand.tick()  # type: ignore[attr-defined]
            ctx.buy(1) if ctx.position() <= 0 else ctx.sell(1)
            if hand is not None:
                hand.ordered()  # type: ignore[attr-defined]

    return EveryTick()


class _Hand:
    """prometheus_client as a user instruments a strategy: labelled children looked up per call."""

    def __init__(self, engine_queue: object) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        self.ticks = Counter("ticks", "ticks", ["run"], registry=registry)
        self.queue = Gauge("queue", "queue", ["run"], registry=registry)
        self.orders = Counter("orders", "orders", ["run", "status"], registry=registry)
        self.latency = Histogram("latency", "latency", ["run"], registry=registry)
        self.engine_queue = engine_queue
        self.t0 = 0.0

    def tick(self) -> None:
        self.t0 = time.perf_counter()
        self.ticks.labels("B1").inc()
        self.queue.labels("B1").set(self.engine_queue.qsize())  # type: ignore[attr-defined]

    def ordered(self) -> None:
        self.orders.labels("B1", "SUBMITTED").inc()
        self.latency.labels("B1").observe(time.perf_counter() - self.t0)


def _ticks(n: int) -> list[Tick]:
    start = datetime(2024, 4, 1, 9, 30, tzinfo=IST)
    return [Tick(STOCK.id, start + timedelta(seconds=i), 1000.0 + (i % 7) * 0.05)
            for i in range(n)]  # fmt: skip


def _engine(ticks: list[Tick], *, metrics: EngineMetrics | None, hand: bool, gap: float,
            stamps: dict[int, int]) -> tuple[Engine, _TimedSim]:  # fmt: skip
    sim = _TimedSim({STOCK.id: STOCK}, initial_cash=1e9, cost_model=ZeroCost())
    limits = RiskLimits(
        max_orders_per_second=1e9, algo_id="bench-unthrottled", duplicate_window_seconds=0
    )
    holder: list[_Hand] = []

    class Late:  # the strategy's hand instrumentation needs the engine's queue
        def tick(self) -> None:
            holder[0].tick()

        def ordered(self) -> None:
            holder[0].ordered()

    engine = Engine(
        [_strategy(Late() if hand else None)], broker=sim,
        feed=_QueueFeed(ticks, stamps, gap=gap), instruments={STOCK.id: STOCK},
        initial_cash=1e9, risk=RiskEngine(limits), mode="paper", reconcile_every=None,
        metrics=metrics, callback_budget=None,
    )  # fmt: skip
    if hand:
        holder.append(_Hand(engine._queue))
    return engine, sim


def run_once(variant: str, n: int, gap: float = 0.0) -> tuple[float, list[float]]:
    """Return (seconds per tick, per-order latencies in µs) of one run of ``variant``."""
    ticks = _ticks(n)
    stamps: dict[int, int] = {}
    metrics = EngineMetrics() if variant == "velox" else None
    engine, sim = _engine(ticks, metrics=metrics, hand=variant == "hand", gap=gap, stamps=stamps)
    server = scraper = None
    done = threading.Event()
    if metrics is not None:
        server = start_metrics_server(metrics, engine, port=0)

        def scrape() -> None:
            while not done.wait(0.5):
                urllib.request.urlopen(server.url + "/metrics", timeout=5).read()

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
    gc.collect()
    start = time.perf_counter()
    engine.run()
    elapsed = time.perf_counter() - start
    done.set()
    if scraper is not None:
        scraper.join()
    if server is not None:
        server.close()
    sent = [stamps[id(t)] for t in ticks]
    k = min(len(sent), len(sim.placed))
    assert k >= 0.99 * n, f"{variant}: only {k} orders for {n} ticks"
    return elapsed / n, [(sim.placed[i] - sent[i]) / 1000 for i in range(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("velox").setLevel(logging.ERROR)
    variants = ("off", "velox", "hand")
    for variant in variants:  # warm-up: code paths, caches
        run_once(variant, 2_000)
    per_tick: dict[str, list[float]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        order = variants if repeat % 2 == 0 else variants[::-1]
        for variant in order:
            per_tick[variant].append(run_once(variant, args.ticks)[0])
    print(f"tick → order path, {args.ticks:,} ticks, an order per tick, {args.repeats} "
          "interleaved repeats (median, µs per tick):")  # fmt: skip
    base = statistics.median(per_tick["off"])
    names = {"off": "metrics off", "velox": "velox metrics (scraped every 0.5 s)",
             "hand": "hand-instrumented prometheus_client"}  # fmt: skip
    for variant in variants:
        value = statistics.median(per_tick[variant])
        spread = (max(per_tick[variant]) - min(per_tick[variant])) * 1e6
        print(f"  {names[variant]:<38} {value * 1e6:7.2f} µs  (range {spread:5.2f} µs)  "
              f"ratio to off {value / base:5.3f}")  # fmt: skip
    noise = (max(per_tick["off"]) - min(per_tick["off"])) / base
    print(f"  run-to-run spread of 'off' itself: {noise:.1%} of its median")
    for variant in ("off", "velox"):
        lat = run_once(variant, min(args.ticks, 10_000), gap=0.0005)[1]
        q = statistics.quantiles(lat, n=100)
        print(f"tick → order latency, metrics {variant:<5}: p50 {q[49]:.0f} µs  p90 {q[89]:.0f} µs"
              f"  p99 {q[98]:.0f} µs  ({len(lat):,} orders, ticks 0.5 ms apart)")  # fmt: skip


if __name__ == "__main__":
    main()
