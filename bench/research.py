"""Benchmark ``velox.research`` against raw vectorbt: SMA 10/30 on 1,000,000 one-minute bars.

Both measured in the same run, on the same bars (``bench/engine.py``'s seeded random walk on
real NSE sessions, 375 one-minute bars a day):

* **raw vectorbt**: ``vbt.MA.run(close, 10)`` and ``(close, 30)``, the crossovers, then
  ``vbt.Portfolio.from_signals(close, entries, exits)`` without charges (vectorbt's defaults:
  fills at the signal bar's close, all cash in, fractional sizes): the usual vectorbt backtest,
  on the closes indexed by IST wall-clock time without a zone, its fast case. (With the bars'
  tz-aware IST index, vectorbt 1.2 on pandas 3 takes ~100× longer in ``ma_crossed_above``;
  that time is printed once, for information.)
* **velox.research**: ``strategies/sma_cross.py`` (``signals()`` → target weights) through the
  whole entry point (bars checked against the 1m grid, the strategy built, its signals, the
  dated charge rates of every session, the compiled simulation): next-open fills, whole-share
  sizing like the engine's ``target_weight``, Indian delivery charges (STT, exchange, SEBI,
  stamp duty, GST) on every fill. Timed alone (what a backtest costs; statistics are built on
  first access, as vectorbt's are) and with ``.stats`` (trades and every statistic, the
  engine's ``summary_stats``).

Each figure is the best of ``--repeat`` runs, after a warm-up of each side on the same bars
(numba kernels compiled or loaded from their caches once per process, for both libraries).
Also printed: the combinations per second of the kernel reused the way a sweep reuses it
(:func:`velox.backtest.research.prepare` once, then ``signals`` and ``Universe.run`` per
combination); the final equity of the research result and of its vectorbt ``Portfolio``
(``from_orders`` with the exact charges as fixed fees), which must agree; the same backtest
with every charge rate zero (a ``ChargeSchedule`` of zeros, zero brokerage), whose round trips
must be vectorbt's (delivery charges on every 1-minute crossover drain the account, after which
whole-share sizing buys nothing, so the charged run trades less); and the parity of
``velox.research`` with ``velox.replay`` on the first ``--parity-bars`` bars.

Run: ``python bench/research.py [--bars 1000000] [--repeat 5] [--parity-bars 100000]``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from engine import STOCK, make_bars  # noqa: E402  (bench/engine.py: the same 1M bars)

import velox  # noqa: E402
from velox.strategy import load_strategy  # noqa: E402

SmaCross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
MASTER = {STOCK.id: STOCK}


def best(fn, repeat: int) -> tuple[float, object]:  # noqa: ANN001
    """Return the best wall time of ``repeat`` calls of ``fn`` (heap collected before each)."""
    times, out = [], None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def raw_vectorbt(close) -> object:  # noqa: ANN001
    """Return the plain vectorbt SMA 10/30 crossover portfolio, no charges."""
    import vectorbt as vbt

    fast = vbt.MA.run(close, 10)
    slow = vbt.MA.run(close, 30)
    entries = fast.ma_crossed_above(slow)
    exits = fast.ma_crossed_below(slow)
    return vbt.Portfolio.from_signals(close, entries, exits, init_cash=1_000_000.0, freq="1min")


def research(bars, cost_model: object = None) -> velox.backtest.research.ResearchResult:  # noqa: ANN001
    """Return one velox.research backtest of SmaCross(10, 30) with Indian delivery charges."""
    strategy = SmaCross(instruments=(STOCK.id,), timeframe="1m", fast=10, slow=30)
    return velox.research(strategy, bars, instrument_master=MASTER, cost_model=cost_model)


def zero_charges() -> object:
    """Return a CostModel whose every rate is zero (and zero brokerage)."""
    from velox.testing import zero_cost_model

    return zero_cost_model()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parity-bars", type=int, default=100_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")

    bars = make_bars(args.bars)
    close = bars["close"]
    close = close.set_axis(close.index.tz_convert("Asia/Kolkata").tz_localize(None))
    print(f"bars: {len(bars):,} 1-minute bars, {bars.index[0]} → {bars.index[-1]}")
    raw_vectorbt(close)  # warm-up: vectorbt's numba functions
    research(bars)  # warm-up: velox's kernel and code paths
    t_vbt, pf = best(lambda: raw_vectorbt(close), args.repeat)
    t_res, res = best(lambda: research(bars), args.repeat)
    t_stats, _ = best(lambda: research(bars).stats, args.repeat)
    vbt_trades = int(pf.trades.count())
    fills = len(res.fill_records)
    print(f"raw vectorbt MA.run + from_signals, no charges : {t_vbt:7.3f} s  {vbt_trades:,} trades")
    print(f"velox.research, Indian charges               : {t_res:7.3f} s  {fills:,} fills, "
          f"charges ₹{res.charges:,.2f}")  # fmt: skip
    print(f"velox.research + .stats (trades, statistics) : {t_stats:7.3f} s  "
          f"{res.stats['trades']:,} trades, Sharpe {res.stats['sharpe']:.2f}")  # fmt: skip
    print(f"ratio velox.research / raw vectorbt          : {t_res / t_vbt:7.2f}×  (goal ≤ 1.0×)")
    print(f"ratio velox.research + stats / raw vectorbt  : {t_stats / t_vbt:7.2f}×")
    from velox.backtest.research import prepare, strategy_weights

    strategy = SmaCross(instruments=(STOCK.id,), timeframe="1m", fast=10, slow=30)
    universe = prepare(strategy, {STOCK.id: bars}, instrument_master=MASTER)
    combos = [(fast, slow) for fast in range(5, 15) for slow in (30, 60)]

    def sweep() -> list[float]:
        finals = []
        for fast, slow in combos:
            strategy.fast, strategy.slow = fast, slow
            _, _, equity = universe.run(strategy_weights(strategy, universe))
            finals.append(float(equity[-1]))
        return finals

    t_sweep, finals = best(sweep, max(1, args.repeat // 2))
    strategy.fast, strategy.slow = combos[-1]
    alone = velox.research(strategy, bars, instrument_master=MASTER).final_equity
    print(f"kernel reuse (prepare once; signals + Universe.run per combination): "
          f"{len(combos) / t_sweep:6.1f} combos/s on {len(bars):,} bars "
          f"({t_sweep / len(combos) * 1e3:.1f} ms each; last equals a full research run: "
          f"{finals[-1] == alone})")  # fmt: skip
    import tracemalloc

    peaks = []
    for fn in (lambda: raw_vectorbt(close), lambda: research(bars), lambda: research(bars).stats):
        gc.collect()
        tracemalloc.start()
        fn()
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    print(f"peak traced memory (tracemalloc: Python and numpy allocations): raw vectorbt "
          f"{peaks[0]:.0f} MiB, velox.research {peaks[1]:.0f} MiB, "
          f"with .stats {peaks[2]:.0f} MiB")  # fmt: skip
    free = zero_charges()
    t_free, res_free = best(lambda: research(bars, free), args.repeat)
    free_trades = res_free.stats["trades"] + res_free.stats["open_trades"]
    print(f"velox.research, zero charges                 : {t_free:7.3f} s  {free_trades:,} trades "
          f"(vectorbt {vbt_trades:,}: same count {free_trades == vbt_trades}), charges "
          f"₹{res_free.charges:,.2f}")  # fmt: skip
    t_tz = time.perf_counter()
    raw_vectorbt(bars["close"])
    t_tz = time.perf_counter() - t_tz
    print(f"raw vectorbt on the tz-aware IST index (info): {t_tz:7.3f} s")
    t_pf, portfolio = best(lambda: research(bars).portfolio, 1)
    final_pf = float(portfolio.final_value())
    print(f"vectorbt Portfolio of the research orders    : {t_pf:7.3f} s (research + from_orders); "
          f"final value {final_pf:,.2f} vs research {res.final_equity:,.2f} "
          f"(equal: {np.isclose(final_pf, res.final_equity, rtol=1e-9)})")  # fmt: skip
    sub = bars.iloc[: args.parity_bars]
    strategy = SmaCross(instruments=(STOCK.id,), timeframe="1m", fast=10, slow=30)
    t = time.perf_counter()
    report = velox.parity(strategy, sub, instrument_master=MASTER)
    took = time.perf_counter() - t
    print(f"parity with velox.replay on {len(sub):,} bars: {report!r} ({took:.1f} s)")


if __name__ == "__main__":
    main()
