"""Benchmark the SmartAPI path on loopback: ticks decoded per second and order round trips.

In one run:

* **ticks decoded per second**, per mode (LTP 51 B, QUOTE 123 B, SNAP_QUOTE 379 B): the
  official SDK's parser (``SmartWebSocketV2._parse_binary_data``, which returns a dict) and
  Velox's decoder (``velox.brokers.smartapi.packets.decode``, which returns a
  :class:`~velox.types.Tick`), over the same packets (random prices, volumes and times over 200
  tokens, built by the simulator's encoder);
* **order round trip**: a resting LIMIT order placed and acknowledged against the SmartAPI
  simulator on 127.0.0.1, p50/p99 over ``--orders`` placements: the SDK alone
  (``SmartConnect.placeOrder``) and Velox's adapter (``SmartApiBroker.place_order``: mapping,
  throttle check, the SDK, translation). The simulator's limits and the adapter's throttles
  are off: they would measure Angel's 20 orders/s, not the path.

Run: ``python bench/smartapi.py [--packets 50000] [--orders 300]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from velox.brokers.smartapi import _sdk, packets  # noqa: E402
from velox.brokers.smartapi.adapter import SmartApiBroker  # noqa: E402
from velox.brokers.smartapi.simulator import SmartApiSimulator  # noqa: E402
from velox.brokers.throttle import RateLimit, ThrottleSet  # noqa: E402
from velox.instruments import load_bundled_master  # noqa: E402
from velox.types import Order  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_packets(mode: int, n: int, tokens: int = 200) -> list[bytes]:
    rng = random.Random(7)
    start = datetime(2025, 5, 20, 3, 45, tzinfo=UTC)
    out = []
    for k in range(n):
        ltp = round(rng.uniform(100, 3000), 2)
        depth = {side: [{"price": round(ltp + sign * 0.05 * (i + 1), 2), "quantity": 10 * i + 1,
                         "orders": i + 1} for i in range(5)]
                 for side, sign in (("buy", -1), ("sell", 1))}  # fmt: skip
        out.append(packets.encode(
            mode, 1, str(1000 + k % tokens), sequence=k, ts=start + timedelta(milliseconds=k),
            ltp=ltp, last_qty=rng.randint(1, 500), average=ltp, volume=rng.randint(1, 10**7),
            ohlc=(ltp, ltp + 1, ltp - 1, ltp), last_trade=start, depth=depth,
        ))  # fmt: skip
    return out


def decode_rates(n: int) -> list[tuple[str, float, float]]:
    ws = _sdk.new_feed("jwt", "key", "C1", "feed")
    ids = {(1, str(1000 + k)): f"NSE:S{k}" for k in range(200)}
    rows = []
    for name, mode in (("LTP", packets.LTP), ("QUOTE", packets.QUOTE),
                       ("SNAP_QUOTE", packets.SNAP_QUOTE)):  # fmt: skip
        data = make_packets(mode, n)
        best_sdk = best_velox = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for p in data:
                ws._parse_binary_data(p)  # noqa: SLF001 - the SDK's own parser
            best_sdk = min(best_sdk, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in data:
                packets.decode(p, ids)
            best_velox = min(best_velox, time.perf_counter() - t0)
        rows.append((name, n / best_sdk, n / best_velox))
    return rows


def round_trips(n: int) -> tuple[list[float], list[float]]:
    master = load_bundled_master()
    sim = SmartApiSimulator(master, rate_limits=False)
    sim.start()
    try:
        sim.trade("NSE:SBIN", 812.0)
        api = _sdk.SmartConnect(api_key="bench", root=sim.url)
        jwt = api.generateSession("C1", "1111", "000000")["data"]["jwtToken"]
        unlimited = {"other": (RateLimit.per_second(10**9),)}
        broker = SmartApiBroker("bench", "C1", jwt, instruments=master, root=sim.url,
                                throttles=ThrottleSet(unlimited, default="other"))  # fmt: skip
        sdk, adapter = [], []
        for k in range(n):  # interleaved: both paths see the same book size and machine state
            t0 = time.perf_counter()
            api.placeOrder({"variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045",
                            "transactiontype": "BUY", "exchange": "NSE", "ordertype": "LIMIT",
                            "producttype": "INTRADAY", "duration": "DAY", "price": "700",
                            "quantity": "1", "ordertag": f"S-{k}"})  # fmt: skip
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
    parser.add_argument("--packets", type=int, default=50_000)
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    print(f"ticks decoded per second ({args.packets:,} packets a mode, best of 3)")
    print(f"{'mode':<12} {'SDK parser':>12} {'Velox decode':>13} {'ratio':>7}")
    for name, sdk, velox in decode_rates(args.packets):
        print(f"{name:<12} {sdk:>12,.0f} {velox:>13,.0f} {velox / sdk:>6.1f}x")
    sdk, adapter = round_trips(args.orders)
    print(f"\norder round trip, µs ({args.orders} resting LIMIT orders each)")
    print(f"{'path':<46} {'p50':>8} {'p99':>8}")
    for name, times in (("SmartConnect.placeOrder (the SDK alone)", sdk),
                        ("SmartApiBroker.place_order", adapter)):  # fmt: skip
        us = [t * 1e6 for t in times]
        print(f"{name:<46} {statistics.median(us):>8,.0f} {_pct(us, 0.99):>8,.0f}")
    ratio = statistics.median(adapter) / statistics.median(sdk)
    print(f"adapter / SDK (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
