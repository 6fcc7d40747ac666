"""Benchmark the Kite live path on loopback: order round trips and tick → order in live mode.

Measured in one run against the Kite simulator (``velox.brokers.kite.simulator``) on
127.0.0.1, with its rate limits and the adapter's throttles switched off (they would measure
Kite's 10 orders/s, not the path):

* **order round trip**: a resting LIMIT order placed and acknowledged, p50/p99 over ``--orders``
  placements: the official SDK alone (``KiteConnect.place_order``) and Velox's adapter
  (``KiteBroker.place_order``: mapping, throttle check, the SDK, translation back);
* **tick → order in live mode**: the engine on ``KiteMarketData`` (the official ``KiteTicker``
  in its child process, frames decoded by Velox) and ``KiteBroker``, a strategy placing an
  order on every tick of a replayed day of real RELIANCE 5-minute bars: from the moment the
  feed hands the decoded tick to the engine to the moment the adapter is asked to place the
  order (the engine's share), and to the order's acknowledgement by the simulator.

Ticks decoded per second (SDK parser vs Velox's decoder) are in ``bench/kite_ticks.py``.

Run: ``python bench/kite.py [--orders 500] [--ticks 300]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiteconnect import KiteConnect  # noqa: E402

from velox.brokers.kite.adapter import KiteBroker, kite_throttles  # noqa: E402
from velox.brokers.kite.simulator import KiteSimulator  # noqa: E402
from velox.brokers.kite.ticker import KiteMarketData  # noqa: E402
from velox.brokers.throttle import RateLimit  # noqa: E402
from velox.data import read_bar_file, validate_bars  # noqa: E402
from velox.deployment import ClockedFeed  # noqa: E402
from velox.engine import Engine  # noqa: E402
from velox.feeds.clock import FeedClock  # noqa: E402
from velox.instruments import load_bundled_master  # noqa: E402
from velox.risk import RiskEngine, RiskLimits  # noqa: E402
from velox.strategy import Strategy  # noqa: E402
from velox.types import Order, OrderType  # noqa: E402

UNLIMITED = {g: (RateLimit.per_second(10**9),) for g in ("order", "quote", "historical", "other")}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(name: str, seconds: list[float]) -> str:
    us = [s * 1e6 for s in seconds]
    return f"{name:<44} {statistics.median(us):>9,.0f} {_pct(us, 0.99):>9,.0f} {len(us):>6}"


def round_trips(sim: KiteSimulator, n: int) -> tuple[list[float], list[float]]:
    """Return (SDK, adapter) round-trip times of ``n`` resting LIMIT buys each."""
    kite = KiteConnect("bench", root=sim.url)
    kite.set_access_token(kite.generate_session("benchtoken1", "secret")["access_token"])
    sdk = []
    for _ in range(n):
        t0 = time.perf_counter()
        kite.place_order(variety="regular", exchange="NSE", tradingsymbol="RELIANCE",
                         transaction_type="BUY", quantity=1, product="MIS", order_type="LIMIT",
                         price=1000.0, validity="DAY", tag="bench")  # fmt: skip
        sdk.append(time.perf_counter() - t0)
    master = load_bundled_master()
    broker = KiteBroker("bench", kite.access_token, instruments=master, root=sim.url,
                        throttles=kite_throttles(UNLIMITED, margin=0.0))  # fmt: skip
    adapter = []
    for k in range(n):
        order = Order(client_id=f"B-{k + 1}", instrument_id="NSE:RELIANCE", side="BUY", qty=1,
                      order_type="LIMIT", limit_price=1000.0, product="MIS",
                      tag=f"B-{k + 1}")  # fmt: skip
        t0 = time.perf_counter()
        broker.place_order(order)
        adapter.append(time.perf_counter() - t0)
    return sdk, adapter


class EveryTick(Strategy):
    """Places a resting limit buy 3% below the market on every tick."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_tick(self, ctx, bar) -> None:  # noqa: ANN001
        price = ctx.instrument().snap_price(bar.close * 0.97, "down")
        ctx.buy(1, order_type=OrderType.LIMIT, limit_price=price)


def tick_to_order(ticks: int) -> tuple[list[float], list[float]]:
    """Return (tick → place_order called, tick → acknowledged) in live mode."""
    bars, _ = validate_bars(read_bar_file(ROOT / "data/bars/RELIANCE_5m_2025.csv"), timeframe="5m",
                            source="RELIANCE_5m_2025.csv")  # fmt: skip
    day = bars.loc["2025-05-20"]
    sim = KiteSimulator(bars={("NSE:RELIANCE", "5m"): day}, speed=3000.0, rate_limits=False,
                        replay_on_subscribe=True)  # fmt: skip
    sim.start()
    try:
        kite = KiteConnect("bench", root=sim.url)
        token = kite.generate_session("benchtoken2", "secret")["access_token"]
        master = load_bundled_master()
        broker = KiteBroker("bench", token, instruments=master, root=sim.url,
                            throttles=kite_throttles(UNLIMITED, margin=0.0))  # fmt: skip
        feed = KiteMarketData("bench", token, root=sim.ws_url, instruments=master,
                              on_order_update=broker.on_kite_order_update)  # fmt: skip
        feed.subscribe(["NSE:RELIANCE"], mode="full")  # type: ignore[arg-type]
        handed = [0.0]
        to_order: list[float] = []
        to_ack: list[float] = []
        place = broker.place_order

        def timed_place(order: Order) -> str:
            start = time.perf_counter()
            to_order.append(start - handed[0])
            out = place(order)
            to_ack.append(time.perf_counter() - handed[0])
            return out

        broker.place_order = timed_place  # type: ignore[method-assign]
        clock = FeedClock()

        class Stamped:
            """The feed, stamping when each event is handed to the engine's queue."""

            name = feed.name
            subscribe, unsubscribe, stop = feed.subscribe, feed.unsubscribe, feed.stop

            def run(self, callback) -> None:  # noqa: ANN001
                def on_event(event: object) -> None:
                    callback(event)
                    handed[0] = time.perf_counter()

                feed.run(on_event)

        engine = Engine(
            [EveryTick()], broker=broker, clock=clock, instruments=master.get,
            feed=ClockedFeed(Stamped(), clock, stop_after=None),  # type: ignore[arg-type]
            mode="live", reconcile_every=None, callback_budget=None,
            risk=RiskEngine(RiskLimits(max_orders_per_second=1000, algo_id="BENCH1")),
        )  # fmt: skip
        done = threading.Event()

        def stop_after() -> None:
            while len(to_ack) < ticks and not done.is_set():
                time.sleep(0.05)
            engine.stop()

        threading.Thread(target=stop_after, daemon=True).start()
        engine.run()
        done.set()
        return to_order[:ticks], to_ack[:ticks]
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    sim = KiteSimulator(rate_limits=False)
    sim.start()
    try:
        sim.trade("NSE:RELIANCE", 1400.0)
        sdk, adapter = round_trips(sim, args.orders)
    finally:
        sim.stop()
    to_order, to_ack = tick_to_order(args.ticks)
    print(f"{'loopback, rate limits off':<44} {'p50 µs':>9} {'p99 µs':>9} {'n':>6}")
    print(_row("order round trip: KiteConnect.place_order", sdk))
    print(_row("order round trip: KiteBroker.place_order", adapter))
    print(_row("live: tick handed to engine → place_order", to_order))
    print(_row("live: tick handed to engine → acknowledged", to_ack))
    print(f"adapter / SDK round trip (p50): "
          f"{statistics.median(adapter) / statistics.median(sdk):.2f}×")  # fmt: skip


if __name__ == "__main__":
    main()
