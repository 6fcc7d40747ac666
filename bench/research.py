"""Benchmark ``velox.research`` and ``velox.optimize`` against raw vectorbt (issue 11).

Part 1, one backtest (``--part single``): SMA 10/30 on 1,000,000 one-minute bars.

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

Each figure is the best of ``--repeat-single`` runs, after a warm-up of each side on the same bars
(numba kernels compiled or loaded from their caches once per process, for both libraries).
Also printed: the combinations per second of the kernel reused the way a sweep reuses it
(:func:`velox.backtest.research.prepare` once, then ``signals`` and ``Universe.run`` per
combination); the final equity of the research result and of its vectorbt ``Portfolio``
(``from_orders`` with the exact charges as fixed fees), which must agree; the same backtest
with every charge rate zero (a ``ChargeSchedule`` of zeros, zero brokerage), whose round trips
must be vectorbt's (delivery charges on every 1-minute crossover drain the account, after which
whole-share sizing buys nothing, so the charged run trades less); and the parity of
``velox.research`` with ``velox.replay`` on the first ``--parity-bars`` bars.


Part 2, sweeps (``--part sweep``): a 174-pair SMA crossover sweep on the same bars, and sweeps
of the 45 bundled daily stocks.

The grid: ``fast in range(5, 30, 5)`` × ``slow in range(25, 200, 5)`` with ``fast < slow``:
5 × 35 − 1 (the pair 25/25) = **174 pairs**, 40 distinct windows (10/30 among them).

* **raw vectorbt** (in a subprocess of its own, run once: it takes about a minute and ~10 GB):
  ``vbt.MA.run(close, [fast of each pair])`` and ``vbt.MA.run(close, [slow of each pair])``
  (174 columns each), ``ma_crossed_above`` / ``ma_crossed_below``, then one
  ``vbt.Portfolio.from_signals(close, entries, exits)`` over the 174 columns, no charges,
  and ``total_return()`` per column (the figure a sweep ranks by): the usual broadcast
  vectorbt sweep, on the closes indexed by IST wall-clock time without a zone (its fast case;
  see part 1).
* **velox.optimize** (subprocesses too): ``strategies/sma_cross.py`` over the same grid with
  Indian delivery charges, next-open fills, whole-share sizing, every statistic of every
  combination (Sharpe, CAGR, drawdown, trades …), best of ``--repeat`` after a warm-up sweep in
  the same process; by default (forked worker processes on both cores) and in one process.

Peak memory is each subprocess's maximum resident set (``resource.getrusage``), the bars
included. Trades: vectorbt's default fills at the signal bar's close, velox's at the next bar's
open, and Indian charges drain the account (``docs/benchmarks.md``), so for the trade check the
same vectorbt call is configured to match velox's conventions — signals shifted one bar,
``price=open``, state signals (``entries = fast > slow``, ``exits = fast <= slow``, as
``sma_cross.signals`` holds its weight) — and compared with ``velox.research`` of the same
pairs with every charge rate zero: entry and exit bar of every round trip.

Memory: the same sweep × four ``weight`` values (696 combinations) in a fresh process: its peak
is that of the 174-pair sweep, since only each combination's row of statistics is kept.

Walk-forward: ``velox.walk_forward`` of the same grid on the same bars, rolling folds of
250,000 in-sample and 125,000 out-of-sample bars (6 folds), after a warm-up run on 100,000 bars.

Daily: ``velox.optimize`` of the same 174 pairs on each of the 45 bundled stocks (the
2017–2022 daily files: 1,277 bars each for 43 of them, fewer for two), combinations per
second over all of them.

Run: ``python bench/research.py [--part all|single|sweep] [--bars 1000000] [--repeat-single 5]
[--repeat 3] [--parity-bars 100000] [--skip-vectorbt]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import subprocess
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

MASTER = {STOCK.id: STOCK}
SmaCross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))


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


# -- part 1: one backtest ----


def single(args: argparse.Namespace) -> None:
    """Part 1: one backtest of SMA 10/30 on the 1M bars against raw vectorbt."""
    repeat = args.repeat_single
    bars = make_bars(args.bars)
    close = bars["close"]
    close = close.set_axis(close.index.tz_convert("Asia/Kolkata").tz_localize(None))
    print(f"bars: {len(bars):,} 1-minute bars, {bars.index[0]} → {bars.index[-1]}")
    raw_vectorbt(close)  # warm-up: vectorbt's numba functions
    research(bars)  # warm-up: velox's kernel and code paths
    t_vbt, pf = best(lambda: raw_vectorbt(close), repeat)
    t_res, res = best(lambda: research(bars), repeat)
    t_stats, _ = best(lambda: research(bars).stats, repeat)
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

    t_sweep, finals = best(sweep, max(1, repeat // 2))
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
    t_free, res_free = best(lambda: research(bars, free), repeat)
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


# -- part 2: sweeps ----

FAST = range(5, 30, 5)
SLOW = range(25, 200, 5)
PAIRS = [(f, s) for f in FAST for s in SLOW if f < s]
CHECKED = [(10, 30), (5, 195), (25, 100), (15, 60)]


def peak_mb() -> float:
    """Return the peak resident memory in MB of this process or its largest child (a forked
    sweep worker), whichever is larger."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def wall_close(bars):  # noqa: ANN001, ANN201
    close = bars["close"]
    return close.set_axis(close.index.tz_convert("Asia/Kolkata").tz_localize(None))


def side_vectorbt(n: int) -> dict:
    """The raw vectorbt sweep, timed once after a small warm-up."""
    import vectorbt as vbt

    close = wall_close(make_bars(n))
    small = close.iloc[:2000]
    fast = vbt.MA.run(small, [5, 10])
    slow = vbt.MA.run(small, [25, 30])
    vbt.Portfolio.from_signals(
        small, fast.ma_crossed_above(slow), fast.ma_crossed_below(slow), init_cash=1e6, freq="1min"
    ).total_return()
    started = time.perf_counter()
    fast = vbt.MA.run(close, [p[0] for p in PAIRS], short_name="fast")
    slow = vbt.MA.run(close, [p[1] for p in PAIRS], short_name="slow")
    entries, exits = fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
    portfolio = vbt.Portfolio.from_signals(
        close, entries, exits, init_cash=1_000_000.0, freq="1min"
    )
    returns = portfolio.total_return()
    took = time.perf_counter() - started
    return {
        "seconds": took,
        "combos": len(PAIRS),
        "peak_mb": peak_mb(),
        "trades": int(portfolio.trades.count().sum()),
        "best": str(returns.idxmax()),
    }


def side_velox(n: int, scheduler: str | None, repeat: int) -> dict:
    """velox.optimize of the grid with Indian charges: warm-up sweep, then best of ``repeat``."""
    import velox
    from velox.strategy import load_strategy

    sma_cross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
    bars = make_bars(n)
    strategy = sma_cross(instruments=(STOCK.id,), timeframe="1m")

    def sweep():  # noqa: ANN202
        return velox.optimize(
            strategy,
            bars,
            fast=FAST,
            slow=SLOW,
            constraint="fast < slow",
            instrument_master=MASTER,
            progress=False,
            scheduler=scheduler,
        )

    sweep()
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = sweep()
        times.append(time.perf_counter() - started)
    alone = velox.research(
        strategy.__class__(instruments=(STOCK.id,), timeframe="1m", **result.best_params),
        bars,
        instrument_master=MASTER,
    )
    equal = all(
        alone.stats[k] == result.best_stats[k]
        or (alone.stats[k] != alone.stats[k] and result.best_stats[k] != result.best_stats[k])
        for k in alone.stats
    )
    return {
        "seconds": min(times),
        "combos": len(result),
        "peak_mb": peak_mb(),
        "best": result.best_params,
        "sharpe": result.best_stats["sharpe"],
        "trades": int(result.stats["trades"].sum()),
        "best_equals_research": equal,
    }


def side_bigger(n: int) -> dict:
    """velox.optimize of the grid × four weights (696 combinations): the peak memory of a
    sweep does not grow with the grid (only rows of statistics are kept)."""
    import velox
    from velox.strategy import load_strategy

    sma_cross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
    bars = make_bars(n)
    strategy = sma_cross(instruments=(STOCK.id,), timeframe="1m")
    started = time.perf_counter()
    result = velox.optimize(
        strategy,
        bars,
        fast=FAST,
        slow=SLOW,
        weight=[0.25, 0.5, 0.75, 0.95],
        constraint="fast < slow",
        instrument_master=MASTER,
        progress=False,
    )
    return {"seconds": time.perf_counter() - started, "combos": len(result), "peak_mb": peak_mb()}


def side_walk_forward(n: int) -> dict:
    """velox.walk_forward of the 174 pairs on the 1M bars: rolling 250,000-bar in-sample
    windows, 125,000-bar out-of-sample ones (6 folds), after a warm-up on 100,000 bars."""
    import velox
    from velox.strategy import load_strategy

    sma_cross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
    bars = make_bars(n)
    strategy = sma_cross(instruments=(STOCK.id,), timeframe="1m")
    grid = {"fast": FAST, "slow": SLOW, "constraint": "fast < slow", "progress": False,
            "instrument_master": MASTER}  # fmt: skip
    velox.walk_forward(strategy, bars.iloc[:100_000], train=25_000, test=25_000, **grid)
    started = time.perf_counter()
    report = velox.walk_forward(strategy, bars, train=n // 4, test=n // 8, **grid)
    return {"seconds": time.perf_counter() - started, "folds": len(report.folds),
            "combos": len(report.folds) * len(PAIRS), "peak_mb": peak_mb(),
            "oos_return": report.stats["total_return"]}  # fmt: skip


def side_trades(n: int) -> dict:
    """Compare round trips of vectorbt (configured to match) with zero-charge velox.research."""
    import pandas as pd
    import vectorbt as vbt

    import velox
    from velox.indicators import sma
    from velox.strategy import load_strategy

    sma_cross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
    bars = make_bars(n)
    wall = bars.index.tz_convert("Asia/Kolkata").tz_localize(None)
    close = bars["close"].to_numpy(np.float64)
    opens = pd.Series(bars["open"].to_numpy(np.float64), index=wall)
    free = zero_charges()
    out = {}
    for fast_w, slow_w in CHECKED:
        fast, slow = sma(close, fast_w), sma(close, slow_w)
        valid = ~(np.isnan(fast) | np.isnan(slow))
        state = valid & (fast > slow)
        entries = pd.Series(np.r_[False, state[:-1]], index=wall)  # decided at t, filled at t+1
        exits = pd.Series(np.r_[False, (valid & ~state)[:-1]], index=wall)
        portfolio = vbt.Portfolio.from_signals(
            opens, entries, exits, price=opens, init_cash=1_000_000.0, freq="1min"
        )
        theirs = portfolio.trades.records_readable
        strategy = sma_cross(instruments=(STOCK.id,), timeframe="1m", fast=fast_w, slow=slow_w)
        mine = velox.research(strategy, bars, instrument_master=MASTER, cost_model=free).trades
        entry = (
            mine["entry_time"].dt.tz_convert("Asia/Kolkata").dt.tz_localize(None).dt.floor("min")
        )
        exit_ = mine["exit_time"].dt.tz_convert("Asia/Kolkata").dt.tz_localize(None).dt.floor("min")
        closed_theirs = theirs[theirs["Status"] == "Closed"]
        closed_mine = mine["exit_time"].notna()
        same = (
            len(theirs) == len(mine)
            and (entry.to_numpy() == theirs["Entry Timestamp"].to_numpy()).all()
            and (exit_[closed_mine].to_numpy() == closed_theirs["Exit Timestamp"].to_numpy()).all()
        )
        out[f"{fast_w}/{slow_w}"] = {
            "velox": len(mine),
            "vectorbt": len(theirs),
            "same": bool(same),
        }
    return out


def side_daily(repeat: int) -> dict:
    """velox.optimize of the grid on each bundled daily stock."""
    import velox
    from velox.data import read_bar_file, validate_bars
    from velox.errors import UnknownInstrument
    from velox.instruments import load_bundled_master
    from velox.strategy import load_strategy
    from velox.types import Instrument, InstrumentKind

    sma_cross = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
    master = load_bundled_master()

    def lookup(iid: str) -> Instrument:  # HDFC merged into HDFCBANK in 2023: not in the master
        try:
            return master.get(iid)
        except UnknownInstrument:
            return Instrument(iid, "NSE", iid.split(":")[1], InstrumentKind.EQ, tick_size=0.05)

    frames = {}
    for path in sorted((ROOT / "data" / "bars").glob("*_1d_2017_2022.csv.gz")):
        frame, _ = validate_bars(read_bar_file(path), timeframe="1d", source=path.name)
        frames[f"NSE:{path.name.split('_1d_')[0]}"] = frame

    def sweep_all() -> int:
        combos = 0
        for iid, frame in frames.items():
            result = velox.optimize(
                sma_cross,
                {iid: frame},
                fast=FAST,
                slow=SLOW,
                constraint="fast < slow",
                progress=False,
                instrument_master=lookup,
            )
            combos += len(result)
        return combos

    sweep_all()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        combos = sweep_all()
        times.append(time.perf_counter() - started)
    bars = sorted({len(f) for f in frames.values()})
    return {
        "seconds": min(times),
        "combos": combos,
        "stocks": len(frames),
        "bars": bars,
        "peak_mb": peak_mb(),
    }


def run_side(*args: str) -> dict:
    """Run one side in a fresh interpreter; return its JSON line."""
    proc = subprocess.run(
        [sys.executable, __file__, "--side", *args], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"side {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def sweep(args: argparse.Namespace) -> None:
    """Part 2: the 174-pair sweep against raw vectorbt, memory, walk-forward, trades, daily."""
    n = args.bars
    print(
        f"{len(PAIRS)} (fast, slow) pairs: fast in {FAST}, slow in {SLOW}, fast < slow; "
        f"{n:,} one-minute bars"
    )
    vbt = None if args.skip_vectorbt else run_side("vectorbt", str(n))
    default = run_side("velox", str(n), "default", str(args.repeat))
    one_process = run_side("velox", str(n), "in-process", str(args.repeat))

    def line(name: str, side: dict) -> None:
        rate = side["combos"] / side["seconds"]
        ratio = f"{vbt['seconds'] / side['seconds']:6.1f}× faster" if vbt else ""
        print(
            f"{name:<52}: {side['seconds']:7.2f} s  {rate:7.1f} combos/s  peak "
            f"{side['peak_mb']:7,.0f} MB  {ratio}"
        )

    if vbt:
        line("raw vectorbt MA.run + from_signals, no charges", vbt)
        print(f"{'':52}  {vbt['trades']:,} round trips over the 174 columns")
    line("velox.optimize, Indian charges (both cores)", default)
    line("velox.optimize, Indian charges (one process)", one_process)
    if vbt:
        print(f"{'':52}  goal ≥ 20× faster than raw vectorbt (both cores)")
    print(
        f"{'':52}  best {default['best']} (Sharpe {default['sharpe']:.3f}); re-run alone by "
        f"velox.research: same stats {default['best_equals_research']}"
    )
    bigger = run_side("bigger", str(n))
    print(
        f"velox.optimize of {bigger['combos']} combinations (× 4 weights), first sweep of the "
        f"process: {bigger['seconds']:.2f} s, peak {bigger['peak_mb']:,.0f} MB"
    )
    walk = run_side("walkforward", str(n))
    print(
        f"velox.walk_forward, {walk['folds']} rolling folds of {n // 4:,} + {n // 8:,} bars × "
        f"174 pairs: {walk['seconds']:.2f} s ({walk['combos'] / walk['seconds']:.1f} "
        f"in-sample combos/s), peak {walk['peak_mb']:,.0f} MB"
    )
    trades = run_side("trades", str(n))
    for pair, check in trades.items():
        print(
            f"trades {pair:>7}: velox (zero charges) {check['velox']:,}, vectorbt (next open) "
            f"{check['vectorbt']:,}: identical entry/exit bars {check['same']}"
        )
    daily = run_side("daily", str(args.repeat))
    print(
        f"daily: {daily['stocks']} stocks × 174 pairs ({daily['bars']} bars each): "
        f"{daily['seconds']:.2f} s, {daily['combos'] / daily['seconds']:,.0f} combos/s, peak "
        f"{daily['peak_mb']:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--part", choices=("all", "single", "sweep"), default="all")
    parser.add_argument("--repeat-single", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each velox sweep")
    parser.add_argument("--parity-bars", type=int, default=100_000)
    parser.add_argument("--skip-vectorbt", action="store_true", help="skip the raw vectorbt sweep")
    parser.add_argument("--side", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.side:
        kind, rest = args.side[0], args.side[1:]
        if kind == "vectorbt":
            out = side_vectorbt(int(rest[0]))
        elif kind == "velox":
            scheduler = None if rest[1] == "default" else rest[1]
            out = side_velox(int(rest[0]), scheduler, int(rest[2]))
        elif kind == "walkforward":
            out = side_walk_forward(int(rest[0]))
        elif kind == "bigger":
            out = side_bigger(int(rest[0]))
        elif kind == "trades":
            out = side_trades(int(rest[0]))
        else:
            out = side_daily(int(rest[0]))
        print(json.dumps(out, default=str))
        return

    if args.part == "single":
        single(args)
    elif args.part == "all":
        # part 1 in a child of its own: Linux keeps a process's peak resident set across exec,
        # so the sweep's subprocesses, forked from a parent that had held the million-bar
        # backtests, would report that parent's peak as theirs
        part1 = [sys.executable, __file__, "--part", "single", "--bars", str(args.bars),
                 "--repeat-single", str(args.repeat_single), "--parity-bars",
                 str(args.parity_bars)]  # fmt: skip
        subprocess.run(part1, check=True)
    if args.part in ("all", "sweep"):
        sweep(args)


if __name__ == "__main__":
    main()
