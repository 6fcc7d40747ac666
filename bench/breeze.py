"""Benchmark the Breeze path on loopback: ticks decoded per second and order round trips.

In one run:

* **ticks decoded per second**: the 21-field NSE cash quote lists of Breeze's ``stock``
  socket.io event (random prices, volumes and times over 200 stock tokens, built by the
  simulator), read by the official SDK's parser (``BreezeConnect.parse_data``, a dict with
  the trade time rendered as local-time text) and by Velox's
  (``velox.brokers.breeze.mapping.tick_from_stock``, a :class:`~velox.types.Tick` with the
  exchange time kept exact);
* **order round trip**: a resting LIMIT order placed and acknowledged against the Breeze
  simulator on 127.0.0.1, p50/p99 over ``--orders`` placements: the SDK alone
  (``BreezeConnect.place_order``: checksum headers, JSON body) and Velox's adapter
  (``BreezeBroker.place_order``: mapping, throttle check, the SDK, translation), interleaved
  order by order. The simulator's limit and the adapter's throttle are off: they would
  measure Breeze's 100 calls a minute, not the path.

Run: ``python bench/breeze.py [--quotes 50000] [--orders 300]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from velox.brokers.breeze import _sdk  # noqa: E402
from velox.brokers.breeze.adapter import BreezeBroker  # noqa: E402
from velox.brokers.breeze.mapping import tick_from_stock  # noqa: E402
from velox.brokers.breeze.simulator import BreezeSimulator  # noqa: E402
from velox.brokers.throttle import RateLimit, ThrottleSet  # noqa: E402
from velox.instruments import load_bundled_master  # noqa: E402
from velox.types import Order  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_quotes(n: int, tokens: int = 200) -> list[list[object]]:
    """Quote lists in the simulator's (and Breeze's) field order, random values."""
    rng = random.Random(7)
    start = int(datetime(2025, 5, 20, 3, 45, tzinfo=UTC).timestamp())
    out: list[list[object]] = []
    for k in range(n):
        ltp = round(rng.uniform(100, 3000), 2)
        out.append([f"4.1!{1000 + k % tokens}", ltp, ltp, ltp + 1, ltp - 1, 0.5,
                    round(ltp - 0.05, 2), 100, round(ltp + 0.05, 2), 100, rng.randint(1, 500),
                    ltp, rng.randint(1, 10**7), 1500, 1500, 1.0e9, "", ltp * 0.8, ltp * 1.2,
                    start + k // 10, ltp])  # fmt: skip
    return out


def decode_rates(n: int) -> tuple[float, float]:
    api = _sdk.sdk().connect.BreezeConnect(api_key="bench")
    ids = {f"4.1!{1000 + k}": f"NSE:S{k}" for k in range(200)}
    data = make_quotes(n)
    best_sdk = best_velox = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for q in data:
            api.parse_data(q)
        best_sdk = min(best_sdk, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for q in data:
            tick_from_stock(q, ids[q[0]])  # type: ignore[index]
        best_velox = min(best_velox, time.perf_counter() - t0)
    return n / best_sdk, n / best_velox


def round_trips(n: int) -> tuple[list[float], list[float]]:
    master = load_bundled_master()
    sim = BreezeSimulator(master, rate_limits=False)
    sim.start()
    try:
        sim.trade("NSE:SBIN", 812.0)
        urls = _sdk.BreezeUrls(sim.url)
        api = _sdk.sdk().connect.BreezeConnect(api_key="bench")
        api.session_key, api.secret_key = sim.api_session(), sim.DEMO_SECRET
        with _sdk.pointed_at(urls):
            api.api_util()
            api.api_handler = _sdk.sdk().connect.ApificationBreeze(api)
        unlimited = {"api": (RateLimit.per_second(10**9),)}
        broker = BreezeBroker("bench", sim.DEMO_SECRET, api.user_id, api.session_key,
                              instruments=master, urls=urls, notifications=False,
                              throttles=ThrottleSet(unlimited, default="api"))  # fmt: skip
        broker.orders()  # the adapter reads the book once before its first place
        sdk, adapter = [], []
        for k in range(n):  # interleaved: both paths see the same book size and machine state
            t0 = time.perf_counter()
            api.place_order(stock_code="STABAN", exchange_code="NSE", product="margin",
                            action="buy", order_type="limit", quantity="1", price="700",
                            validity="day", user_remark=f"S-{k}")  # fmt: skip
            sdk.append(time.perf_counter() - t0)
            order = Order(client_id=f"B-{k}", instrument_id="NSE:SBIN", side="BUY", qty=1,
                          order_type="LIMIT", limit_price=700.0, product="MIS")  # fmt: skip
            t0 = time.perf_counter()
            broker.place_order(order)
            adapter.append(time.perf_counter() - t0)
        return sdk, adapter
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quotes", type=int, default=50_000)
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    sdk_rate, velox_rate = decode_rates(args.quotes)
    print(f"ticks decoded per second ({args.quotes:,} NSE quote lists, best of 3)")
    print(f"{'parser':<44} {'ticks/s':>10}")
    print(f"{'BreezeConnect.parse_data (the SDK)':<44} {sdk_rate:>10,.0f}")
    print(f"{'mapping.tick_from_stock (Velox)':<44} {velox_rate:>10,.0f}")
    print(f"Velox / SDK: {velox_rate / sdk_rate:.1f}x")
    sdk, adapter = round_trips(args.orders)
    print(f"\norder round trip, µs ({args.orders} resting LIMIT orders each)")
    print(f"{'path':<46} {'p50':>8} {'p99':>8}")
    for name, times in (("BreezeConnect.place_order (the SDK alone)", sdk),
                        ("BreezeBroker.place_order", adapter)):  # fmt: skip
        us = [t * 1e6 for t in times]
        print(f"{name:<46} {statistics.median(us):>8,.0f} {_pct(us, 0.99):>8,.0f}")
    ratio = statistics.median(adapter) / statistics.median(sdk)
    print(f"adapter / SDK (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
