"""Benchmark the engine: event-driven SMA 10/30 replay vs backtesting.py and backtrader, and the
tick → order latency of the engine thread.

1. **Replay throughput.** One instrument, ``--bars`` 1-minute bars (default 1,000,000) of a
   seeded random walk laid on real NSE sessions (09:15–15:30, 375 bars a day, regular sessions
   since 2012). Velox runs the full engine: ``BarReplay`` (four synthetic ticks per bar), the
   OMS with an in-memory audit log, the risk engine (default pre-trade limits plus a daily loss
   limit, so every mark-to-market is watched) and the ``SimBroker`` (zero charges, like the
   others' ``commission=0``). Three strategies, which must make the same trades: the
   vectorisable ``strategies/sma_cross.py`` (signals computed once, proved causal by the
   look-ahead check; orders event by event), and two event-driven twins deciding in ``on_bar``
   bar by bar: one with ``velox.indicators.streaming.SMA`` objects, one with plain-Python
   rolling means doing the same floating-point operations (the difference between the two is
   the indicator objects' per-call cost, not the engine's). backtesting.py runs the same crossover
   (buy at the next open on a cross up, close at the next open on a cross down) on all bars;
   backtrader on ``--bt-bars`` (default 100,000) and its time is extrapolated linearly to
   ``--bars`` (said so in the output). Trades are compared by entry time with backtesting.py.
2. **Tick → order latency.** The engine's live loop (``Engine.run`` on a tick feed with a
   thread) with a strategy that sends a market order on every tick; latency is from the moment
   the feed thread puts the tick on the engine queue to the moment the order is handed to the
   broker's ``place_order``. Each tick also books the previous tick's order's fill before the
   strategy sees it (the worst case); a second run orders on every other tick, so the fill
   lands on the tick in between. Warmed up, ``gc.freeze()``-d, many samples. In-memory audit
   log (the store-backed one adds a PostgreSQL commit per transition, reported separately with
   ``--store``).

3. **Engine internals** (``--internals`` bars, default 100,000): the cost of one order in a
   replay (a vectorisable strategy whose target flips every bar, less a bar's cost) and an
   ``on_bar`` strategy's per-bar overhead, flat and holding a position.

4. **Recording** (unless ``--skip-record``): the vectorisable and the streaming replays again
   with ``record=True`` (a ``RunRecorder`` journal on the default store, ``velox.store.
   open_store()``), timed until every order, fill, position and equity point is written;
   reported as the overhead over the same replay unrecorded (goal ≤ 15 %).

Every timed run starts from a collected heap (``gc.collect()`` first, for every library), after
a warm-up of each Velox strategy (code paths, numba kernels loaded once per process).

Run: ``python bench/engine.py [--bars 1000000] [--bt-bars 100000] [--ticks 20000] [--store]``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import statistics
import threading
import time
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.feeds import BarReplay
from velox.indicators.streaming import SMA
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Context, Strategy, load_strategy
from velox.types import Bar, Instrument, InstrumentKind, Tick

ROOT = Path(__file__).resolve().parent.parent
STOCK = Instrument("NSE:BENCH", "NSE", "BENCH", InstrumentKind.EQ, tick_size=0.05)
SmaCross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))


class _Free:
    brokerage = 0.0
    total = 0.0


class ZeroCost:
    """No charges, like the other libraries' ``commission=0``."""

    def fill_charges(self, *args: object, **kwargs: object) -> _Free:
        return _Free()


class StreamingSmaCross(Strategy):
    """Event-driven SMA cross: streaming SMAs updated in ``on_bar`` (no ``signals``)."""

    instruments = ("NSE:BENCH",)
    timeframe = "1m"
    fast: int = 10
    slow: int = 30
    weight: float = 0.95

    def on_start(self, ctx: Context) -> None:
        self.f, self.s = SMA(self.fast), SMA(self.slow)
        self.above = None

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        f, s = self.f.update(bar.close), self.s.update(bar.close)
        if s != s:
            return
        above = f > s
        if above != self.above:
            self.above = above
            ctx.target_weight(self.weight if above else 0.0)


class RollingMean:
    """A streaming simple moving average in plain Python, with the same floating-point
    operations as ``velox.indicators.sma`` (TA-Lib's running sum of the last ``n - 1`` inputs),
    so it gives bit-identical values."""

    __slots__ = ("n", "window", "acc")

    def __init__(self, n: int) -> None:
        self.n, self.window, self.acc = n, deque(maxlen=n), 0.0

    def update(self, x: float) -> float:
        total = self.acc + x
        window = self.window
        window.append(x)
        if len(window) < self.n:
            self.acc = total
            return math.nan
        if self.n > 1:
            self.acc = total - window[0]
        return total / self.n


class PlainSmaCross(StreamingSmaCross):
    """The event-driven twin with plain-Python rolling means instead of indicator objects."""

    def on_start(self, ctx: Context) -> None:
        self.f, self.s = RollingMean(self.fast), RollingMean(self.slow)  # type: ignore[assignment]
        self.above = None


class Alternate(Strategy):
    """A vectorisable strategy whose target flips every bar: one order per bar (micro-bench)."""

    instruments = ("NSE:BENCH",)
    timeframe = "1m"

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        """Return 0.5, 0, 0.5, 0, … (a causal signal: each row depends on its position only)."""
        return pd.Series(np.resize([0.5, 0.0], len(bars)), index=bars.index)


class Idle(Strategy):
    """An event strategy that only receives bars (micro-bench of the per-bar overhead)."""

    instruments = ("NSE:BENCH",)
    timeframe = "1m"
    hold: int = 0

    def on_start(self, ctx: Context) -> None:
        self.started = False

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if not self.started:
            self.started = True
            if self.hold:
                ctx.buy(self.hold)


def internals_line(n: int) -> str:
    """Return the engine's per-order and per-bar costs on ``n`` bars (best of three runs each).

    Per order: the alternating vectorisable strategy places one order per bar (strategy →
    OMS → risk → simulator → fill → positions); its time per bar, less the per-bar cost of a
    replay without orders, is the round trip. Per bar: an ``on_bar`` strategy that does
    nothing, flat and holding a position (marked at every tick, daily loss limit watched).
    """
    bars = make_bars(n, seed=2)

    def best(make: type[Strategy], **params: object) -> float:
        return min(run_velox(bars, make(**params))[0] for _ in range(3)) / n * 1e6

    flat, held = best(Idle), best(Idle, hold=100)
    per_order = best(Alternate) - flat
    return (
        f"engine internals on {n:,} bars: order round trip {per_order:.1f} µs (one order per "
        f"bar, less a bar's cost); on_bar per-bar overhead {flat:.2f} µs flat, "
        f"{held:.2f} µs holding a position"
    )


def make_bars(n: int, seed: int = 1) -> pd.DataFrame:
    """Return ``n`` 1-minute bars of a random walk on regular NSE sessions from 2012."""
    from velox.calendar import sessions

    days = sessions("2012-01-02", "2030-12-31")
    opens = pd.DatetimeIndex(days["open"]).tz_convert("Asia/Kolkata")
    regular = opens[(opens.hour == 9) & (opens.minute == 15)]
    need = -(-n // 375)
    if need > len(regular):
        raise SystemExit(f"--bars {n} needs {need} sessions; only {len(regular)} available")
    minutes = pd.to_timedelta(np.arange(375), unit="min")
    index = (regular[:need].values[:, None] + minutes.values[None, :]).ravel()[:n]
    index = pd.DatetimeIndex(index).tz_localize("UTC").tz_convert("Asia/Kolkata")
    rng = np.random.default_rng(seed)
    close = 1000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.5
    low = np.minimum(open_, close) - 0.5
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1000.0}, index=index
    )


def run_velox(bars: pd.DataFrame, strategy: Strategy, store: object = None) -> tuple[float, list]:
    """Return the replay's wall time and trade entries; with ``store``, the run is recorded
    (``record=True``: a RunRecorder journal) and the time includes writing every record."""
    sim = SimBroker({STOCK.id: STOCK}, initial_cash=1e9, cost_model=ZeroCost())
    recorder = None
    run_id = "R1"
    if store is not None:
        from velox.engine.core import strategy_record
        from velox.store import RunRecorder

        run_id = store.create_run(  # type: ignore[attr-defined]
            mode="replay", initial_cash=1e9, strategies=[strategy_record(strategy)]
        )
        recorder = RunRecorder.for_replay(store, run_id)  # type: ignore[arg-type]
    engine = Engine(
        [strategy],
        broker=sim,
        feed=BarReplay({(STOCK.id, "1m"): bars}),
        instruments={STOCK.id: STOCK},
        initial_cash=1e9,
        risk=RiskEngine(RiskLimits(daily_loss_limit=1e12)),
        reconcile_every=86_400.0,  # as velox.modes.replay: once per replayed day
        run_id=run_id,
        journal=recorder,
    )
    gc.collect()  # every run starts from a collected heap (the others' too)
    t = time.perf_counter()
    result = engine.run()
    if recorder is not None:
        recorder.close()  # every record written
    elapsed = time.perf_counter() - t
    if store is not None:
        store.finish_run(run_id, status="finished", summary={})  # type: ignore[attr-defined]
    return elapsed, result.trades["entry_time"].tolist()


def run_backtesting(bars: pd.DataFrame) -> tuple[float, list]:
    from backtesting import Backtest
    from backtesting import Strategy as BtStrategy
    from backtesting.lib import crossover

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class Cross(BtStrategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 30)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = bars.rename(columns=str.capitalize)
    frame.index = frame.index.tz_localize(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(frame, Cross, cash=1e12, commission=0, finalize_trades=True)
        gc.collect()
        t = time.perf_counter()
        stats = bt.run()
        elapsed = time.perf_counter() - t
    entries = list(pd.DatetimeIndex(stats._trades["EntryTime"]).tz_localize("Asia/Kolkata"))
    return elapsed, entries


def run_backtrader(bars: pd.DataFrame) -> tuple[float, int]:
    import backtrader as bt

    class Cross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.indicators.CrossOver(bt.ind.SMA(period=10), bt.ind.SMA(period=30))

        def next(self) -> None:
            if self.cross > 0 and not self.position:
                self.buy(size=100)
            elif self.cross < 0 and self.position:
                self.close()

    frame = bars.copy()
    frame.index = frame.index.tz_localize(None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(1e12)
    gc.collect()
    t = time.perf_counter()
    cerebro.run()
    return time.perf_counter() - t, 0


class _QueueFeed:
    """A live-like feed: ``run`` pushes ticks from this thread, stamping enqueue times."""

    def __init__(self, ticks: list[Tick], stamps: dict[int, int], gap: float) -> None:
        self.ticks, self.stamps, self.gap = ticks, stamps, gap
        self._stop = threading.Event()

    def run(self, put) -> None:  # noqa: ANN001
        for tick in self.ticks:
            if self._stop.is_set():
                return
            self.stamps[id(tick)] = time.perf_counter_ns()
            put(tick)
            time.sleep(self.gap)

    def stop(self) -> None:
        self._stop.set()


class _TimedSim(SimBroker):
    """The simulator, noting when each order is handed over."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.placed: list[int] = []

    def place_order(self, order):  # noqa: ANN001, ANN201
        self.placed.append(time.perf_counter_ns())
        return super().place_order(order)


def run_latency(n: int, audit: object = None, every: int = 1) -> list[float]:
    """Return per-order latencies (µs) from tick enqueue to ``place_order``.

    The strategy orders on every ``every``-th tick (alternately buying and selling one share),
    so with ``every=1`` each tick first books the fill of the previous tick's order.
    """
    from datetime import datetime, timedelta

    from velox.calendar import IST

    class EveryTick(Strategy):
        instruments = ("NSE:BENCH",)
        timeframe = "1m"

        def on_start(self, ctx: Context) -> None:
            self.seen = 0

        def on_tick(self, ctx: Context, bar: Bar) -> None:
            self.seen += 1
            if self.seen % every == 0:
                ctx.buy(1) if ctx.position() <= 0 else ctx.sell(1)

    start = datetime(2024, 4, 1, 9, 30, tzinfo=IST)
    ticks = [
        Tick(STOCK.id, start + timedelta(seconds=i), 1000.0 + (i % 7) * 0.05) for i in range(n)
    ]
    stamps: dict[int, int] = {}
    sim = _TimedSim({STOCK.id: STOCK}, initial_cash=1e9, cost_model=ZeroCost())
    # An unthrottled stream is far above SEBI's algo line: declared as such, for the measurement.
    limits = RiskLimits(
        max_orders_per_second=1e9, algo_id="bench-unthrottled", duplicate_window_seconds=0
    )
    engine = Engine(
        [EveryTick()],
        broker=sim,
        feed=_QueueFeed(ticks, stamps, gap=0.0005),
        instruments={STOCK.id: STOCK},
        initial_cash=1e9,
        risk=RiskEngine(limits),
        mode="paper",
        audit=audit,
        reconcile_every=None,
    )
    engine.run()
    # one order per ``every`` ticks, in order: the k-th placement answers tick k·every − 1
    sent = [stamps[id(t)] for t in ticks[every - 1 :: every]]
    k = min(len(sent), len(sim.placed))
    return [(sim.placed[i] - sent[i]) / 1000 for i in range(k)]


def latency_line(label: str, n: int, audit: object = None, every: int = 1) -> str:
    """Return one latency report line after a warm-up run, with the GC's old objects frozen."""
    run_latency(min(n, 1000), audit, every)  # warm-up: code paths, caches, allocator
    gc.collect()
    gc.freeze()
    lat = run_latency(n, audit, every)
    q = statistics.quantiles(lat, n=1000)
    return (
        f"tick → order ({label}), {len(lat):,} orders: p50 {q[499]:.0f} µs  p90 {q[899]:.0f} µs"
        f"  p99 {q[989]:.0f} µs  p99.9 {q[998]:.0f} µs  max {max(lat):.0f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--bt-bars", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--internals", type=int, default=100_000, help="bars of the micro-bench")
    parser.add_argument("--store", action="store_true", help="also time the store audit log")
    parser.add_argument("--skip-backtrader", action="store_true")
    parser.add_argument("--skip-record", action="store_true", help="skip the record=True runs")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar, off
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("velox").setLevel(logging.ERROR)

    bars = make_bars(args.bars)
    print(f"bars: {len(bars):,} 1-minute bars, {bars.index[0]} → {bars.index[-1]}")
    for warm in (SmaCross(instruments=("NSE:BENCH",), timeframe="1m"), StreamingSmaCross()):
        run_velox(bars.iloc[:30_000], warm)  # warm-up: code paths, numba kernels loaded once
    t_vec, vec_entries = run_velox(bars, SmaCross(instruments=("NSE:BENCH",), timeframe="1m"))
    print(f"velox replay, vectorisable SmaCross : {t_vec:8.2f} s  {len(vec_entries):,} trades")
    t_ev, ev_entries = run_velox(bars, StreamingSmaCross())
    print(f"velox replay, on_bar streaming SMA  : {t_ev:8.2f} s  {len(ev_entries):,} trades")
    t_py, py_entries = run_velox(bars, PlainSmaCross())
    print(f"velox replay, on_bar plain rolling  : {t_py:8.2f} s  {len(py_entries):,} trades")
    t_bt, bt_entries = run_backtesting(bars)
    print(f"backtesting.py                       : {t_bt:8.2f} s  {len(bt_entries):,} trades")
    common = set(vec_entries) & set(bt_entries)
    twins = set(vec_entries) & set(ev_entries)
    print(
        f"same trades: on_bar streaming == on_bar plain entries: {ev_entries == py_entries}; "
        f"vectorised vs on_bar {len(twins):,} common entries of {len(vec_entries):,} / "
        f"{len(ev_entries):,}; vectorised vs backtesting.py {len(common):,} common entries of "
        f"{len(vec_entries):,} / {len(bt_entries):,}"
    )
    if not args.skip_backtrader:
        sub = bars.iloc[: args.bt_bars]
        t_trader, _ = run_backtrader(sub)
        scale = len(bars) / len(sub)
        est = t_trader * scale
        print(
            f"backtrader ({len(sub):,} bars)          : {t_trader:8.2f} s → {est:.1f} s "
            f"extrapolated ×{scale:g} to {len(bars):,} bars"
        )
        for label, t in (("vectorised", t_vec), ("on_bar streaming", t_ev), ("on_bar plain", t_py)):
            print(f"ratio backtrader / velox {label:17s}: {est / t:6.1f}×")
    for label, t in (("vectorised", t_vec), ("on_bar streaming", t_ev), ("on_bar plain", t_py)):
        print(f"ratio backtesting.py / velox {label:17s}: {t_bt / t:5.2f}×")

    if not args.skip_record:
        from velox.store import open_store

        store = open_store()
        for label, make, t in (
            ("vectorised", lambda: SmaCross(instruments=("NSE:BENCH",), timeframe="1m"), t_vec),
            ("on_bar streaming", StreamingSmaCross, t_ev),
        ):
            t_rec, rec_entries = run_velox(bars, make(), store)
            same = rec_entries == (vec_entries if label == "vectorised" else ev_entries)
            print(
                f"record=True {label:17s}: {t_rec:8.2f} s ({t_rec / t - 1:+.1%} over recording "
                f"off), same trades: {same}"
            )

    print(internals_line(args.internals))
    print(latency_line("memory audit, order every tick", args.ticks))
    print(latency_line("memory audit, order every 2nd tick", args.ticks, every=2))
    if args.store:
        from velox.oms import StoreAuditLog
        from velox.store import open_store

        print(
            latency_line("store audit", min(args.ticks, 3000), StoreAuditLog(open_store(), "paper"))
        )


if __name__ == "__main__":
    main()
