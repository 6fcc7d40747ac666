"""Benchmark the simulated broker: orders matched per second against a real-price tick stream.

Prices are real NIFTY 1-minute bars
(the shared market data, ``velox.testing.shared_market_data``), traded as an equity-like
instrument (lot 1, tick ₹0.05) so every order size is valid. Measured in the same run:

1. **market, one per bar** — each bar is one tick (its open); after every tick the strategy
   sends one MARKET order (alternately buy and sell, MIS), which fills at the next tick's price.
   ``backtesting.py`` runs the same workload — ``self.buy(size=1)`` / ``self.sell(size=1)`` on
   alternate bars, filled at the next bar's open, zero commission — so the ratio compares the
   two order-handling loops bar for bar (each includes its own per-bar overhead: backtesting.py
   its ``Strategy.next`` call and data slicing, Velox the tick dispatch and postbacks).
2. the same with the real ``CostModel`` (six Indian charge items per fill) and one tick of
   slippage, against backtesting.py with a 0.03% commission (its nearest equivalent: one
   percentage per trade, no Indian charges, so the ratio compares unlike work).
3. **limit orders** — four ticks per bar (O→H→L→C); after every tick one LIMIT order 1–10 ticks
   away from the last price; orders still open 20 ticks later are cancelled. Absolute only.
4. **idle** — one tick per bar and no orders at all, which is what an event-driven replay of a
   signal strategy mostly pays: Velox's cost per tick against backtesting.py's per-bar cost with
   an empty ``next()``.

Orders/s counts orders *placed and resolved* (filled, cancelled or rejected) per second of the
whole loop, ticks included; each figure is the best of ``--repeat`` alternating runs. Run:
``python bench/sim.py [--orders 100000] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import time as clock_time
from datetime import timedelta

import numpy as np
import pandas as pd

from velox.brokers.sim import SimBroker, SimConfig
from velox.costs import TickSlippage
from velox.testing import shared_market_data
from velox.types import Fill, Instrument, InstrumentKind, Order, OrderType, Product, Side, Tick

NIFTY = (
    shared_market_data() / "intraday_1min_nifty_banknifty_2021_2022" / "clean" / "NIFTY_1min.csv.gz"
)
PROXY = Instrument("NSE:NIFTYPROXY", "NSE", "NIFTYPROXY", InstrumentKind.EQ, tick_size=0.05)
# No square-off inside the session so the alternating MIS flow runs all day, as backtesting.py's.
CONFIG = SimConfig(square_off_time=clock_time(15, 30))


class _Free:
    brokerage = 0.0
    total = 0.0


_FREE = _Free()


class ZeroCost:
    """No charges, like backtesting.py's ``commission=0``."""

    def fill_charges(self, *args: object, **kwargs: object) -> _Free:
        return _FREE


class Counter:
    """A listener that counts postbacks (the engine's would enqueue them)."""

    def __init__(self) -> None:
        self.fills = 0
        self.updates = 0

    def on_order_update(self, order: Order) -> None:
        self.updates += 1

    def on_fill(self, fill: Fill) -> None:
        self.fills += 1


def load_bars(n: int) -> pd.DataFrame:
    """Return ``n`` real NIFTY 1m bars of the regular session, labelled by start, in IST."""
    raw = pd.read_csv(NIFTY)
    idx = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"])).tz_convert("Asia/Kolkata")
    bars = raw[["open", "high", "low", "close"]].set_axis(idx - pd.Timedelta(minutes=1))
    minutes = bars.index.hour * 60 + bars.index.minute
    bars = bars[(minutes >= 9 * 60 + 15) & (minutes <= 15 * 60 + 29)]
    bars = bars.iloc[:n].copy()
    for col in ("open", "high", "low", "close"):
        bars[col] = (bars[col] / 0.05).round() * 0.05
    return bars


def velox_market(bars: pd.DataFrame, cost_model: object, slippage: object) -> tuple[float, int]:
    """Return (seconds, orders) for one MARKET order per bar-open tick."""
    sim = SimBroker(
        {PROXY.id: PROXY},
        initial_cash=1e12,
        cost_model=cost_model,  # type: ignore[arg-type]
        slippage=slippage,  # type: ignore[arg-type]
        config=CONFIG,
    )
    counter = Counter()
    sim.set_listener(counter)
    stamps = bars.index.to_pydatetime()
    opens = bars["open"].to_numpy().tolist()
    iid = PROXY.id
    buy, sell, market, mis = Side.BUY, Side.SELL, OrderType.MARKET, Product.MIS
    start = time.perf_counter()
    for n, (ts, price) in enumerate(zip(stamps, opens, strict=True)):
        sim.on_tick(Tick(iid, ts, price))
        sim.place_order(Order(f"o{n}", iid, sell if n % 2 else buy, 1, market, mis))
    elapsed = time.perf_counter() - start
    assert counter.fills >= len(bars) - 300, counter.fills  # a day's last order expires
    return elapsed, len(bars)


def backtesting_run(bars: pd.DataFrame, *, trade: bool = True, commission: float = 0.0) -> float:
    """Return the seconds ``Backtest.run`` takes on ``bars`` (the same order flow, or none)."""
    import warnings

    from backtesting import Backtest, Strategy

    class Alternate(Strategy):
        def init(self) -> None:
            self.n = 0

        def next(self) -> None:
            if self.n % 2 == 0:
                self.buy(size=1)
            else:
                self.sell(size=1)
            self.n += 1

    class Idle(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            pass

    data = bars.rename(columns=str.capitalize).tz_localize(None)
    data["Volume"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(
            data,
            Alternate if trade else Idle,
            cash=1e12,
            commission=commission,
            finalize_trades=True,
        )
        start = time.perf_counter()
        stats = bt.run()
        elapsed = time.perf_counter() - start
    if trade:
        assert stats["# Trades"] > len(bars) // 3, stats["# Trades"]
    return elapsed


def velox_idle(bars: pd.DataFrame) -> tuple[float, int]:
    """Return (seconds, ticks) of ``on_tick`` for one tick per bar with no orders anywhere.

    The ticks are built before the clock starts: making them is the feed's cost, not the
    simulator's.
    """
    sim = SimBroker({PROXY.id: PROXY}, initial_cash=1e12, config=CONFIG)
    sim.set_listener(Counter())
    stamps = bars.index.to_pydatetime()
    opens = bars["open"].to_numpy().tolist()
    ticks = [Tick(PROXY.id, ts, price) for ts, price in zip(stamps, opens, strict=True)]
    on_tick = sim.on_tick
    start = time.perf_counter()
    for tick in ticks:
        on_tick(tick)
    return time.perf_counter() - start, len(ticks)


def velox_limits(bars: pd.DataFrame, n_orders: int) -> tuple[float, int, int]:
    """Return (seconds, orders, fills) for LIMIT orders against four ticks per bar."""
    sim = SimBroker({PROXY.id: PROXY}, initial_cash=1e12, cost_model=ZeroCost(), config=CONFIG)
    counter = Counter()
    sim.set_listener(counter)
    offsets = [timedelta(seconds=s) for s in (0, 20, 40, 59)]
    rng = np.random.default_rng(7)
    away = (rng.integers(1, 11, n_orders) * 0.05).tolist()
    sides = rng.integers(0, 2, n_orders).tolist()
    o, h, l, c = (bars[k].to_numpy().tolist() for k in ("open", "high", "low", "close"))  # noqa: E741
    stamps = bars.index.to_pydatetime()
    iid = PROXY.id
    recent: list[str] = []
    placed = 0
    start = time.perf_counter()
    for i, ts in enumerate(stamps):
        if i and ts.date() != stamps[i - 1].date():
            recent.clear()  # yesterday's orders expired at the session roll
        up = c[i] >= o[i]
        path = (o[i], h[i], l[i], c[i]) if up else (o[i], l[i], h[i], c[i])
        for offset, price in zip(offsets, path, strict=True):
            sim.on_tick(Tick(iid, ts + offset, price))
            if placed == n_orders:
                break
            buy = sides[placed] == 0
            limit = round(price - away[placed] if buy else price + away[placed], 2)
            side = Side.BUY if buy else Side.SELL
            recent.append(
                sim.place_order(
                    Order(
                        f"l{placed}", iid, side, 1, OrderType.LIMIT, Product.MIS, limit_price=limit
                    )  # fmt: skip
                )
            )
            placed += 1
            if len(recent) > 20:
                stale = recent.pop(0)
                if not sim.order(stale).is_terminal:
                    sim.cancel_order(stale)
        if placed == n_orders:
            break
    elapsed = time.perf_counter() - start
    return elapsed, placed, counter.fills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the end-of-day MIS flatten warns, as designed
    n = args.orders
    bars = load_bars(n)
    print(f"{len(bars):,} real NIFTY 1m bars, {bars.index[0]} .. {bars.index[-1]}")

    # Best of ``--repeat`` runs, alternating the libraries: the machine is shared, and the
    # minimum is the least disturbed measurement of each. One short warm-up run of each first:
    # the NSE calendar (built once per process on the first order) and backtesting.py's first
    # run pay one-off costs that are not per order.
    velox_market(bars.iloc[:1000], ZeroCost(), None)
    backtesting_run(bars.iloc[:1000])
    t_vx = t_bt = t_real = t_bt_fee = t_lim = t_idle = t_bt_idle = float("inf")
    limit_bars = load_bars(n // 4 + 1)
    for _ in range(args.repeat):
        t, orders = velox_market(bars, ZeroCost(), None)
        t_vx = min(t_vx, t)
        t_bt = min(t_bt, backtesting_run(bars))
        t_real = min(t_real, velox_market(bars, None, TickSlippage(1))[0])
        t_bt_fee = min(t_bt_fee, backtesting_run(bars, commission=0.0003))
        t, placed, fills = velox_limits(limit_bars, n)
        t_lim = min(t_lim, t)
        t, ticks = velox_idle(bars)
        t_idle = min(t_idle, t)
        t_bt_idle = min(t_bt_idle, backtesting_run(bars, trade=False))

    def rate(seconds: float) -> str:
        return f"{orders / seconds:>9,.0f} orders/s ({seconds:.2f} s)"

    print(
        "\n"
        f"market, 1/bar, zero cost   velox {rate(t_vx)}  backtesting.py {rate(t_bt)}  "
        f"ratio {t_bt / t_vx:.2f}x"
    )
    print(
        f"market, CostModel + slip   velox {rate(t_real)}  backtesting.py 0.03% fee "
        f"{rate(t_bt_fee)}  ratio {t_bt_fee / t_real:.2f}x"
    )
    print(
        f"limit, 1/tick, 4 ticks/bar velox {placed / t_lim:>9,.0f} orders/s ({t_lim:.2f} s, "
        f"{fills:,} fills, {4 * len(limit_bars) / t_lim:,.0f} ticks/s)"
    )
    print(
        f"idle, 1 tick/bar, no orders velox {t_idle / ticks * 1e6:.2f} µs/tick  "
        f"backtesting.py {t_bt_idle / ticks * 1e6:.2f} µs/bar  ratio {t_bt_idle / t_idle:.2f}x"
    )


if __name__ == "__main__":
    main()
