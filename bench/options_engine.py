"""Benchmark the short straddle as an engine replay (baskets) against the research backtester.

Data: the bundled real NIFTY index 1-minute bars (``data/bars/NIFTY_1m_2021_2022.csv.gz``),
``--sessions`` sessions (default 60) from ``--start`` (default 2022-06-01); model prices at
the 20-day realised volatility before each day (no option prices exist for those days).

Strategy: ``strategies/short_straddle.py``: sell the ATM weekly straddle (1 lot) at 09:20 IST
as one basket, combined stop-loss ₹3,000, buy back at 15:15.

* **engine** — ``velox.fno.option_feed`` (each session's contracts, ±3 strikes, model bars) then
  ``velox.replay`` of ``ShortStraddle``: the full engine, OMS with audit log, risk engine
  (one basket check per entry and exit), simulator with charges, every option contract's
  synthetic ticks. Timed as feed build and replay separately.
* **research** — ``velox.fno.backtest_basket(straddle("sell"), …, stop_loss=3000)``: the
  vectorised backtester a user picks for research, on the same prices.

Both must agree on every leg's gross P&L (checked). Best of ``--repeat`` wall times.

Run: ``python bench/options_engine.py [--sessions 60] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

import velox
from velox.fno import backtest_basket, option_feed, option_instrument_id, straddle
from velox.strategy import load_strategy

ROOT = Path(__file__).resolve().parent.parent
BARS = ROOT / "data" / "bars" / "NIFTY_1m_2021_2022.csv.gz"
FIRST, STOP, FREEZE = "2022-06-01", 3_000.0, 1_800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--start", default=FIRST, help="first session (the data end 2022-09-30)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("velox").setLevel(logging.ERROR)  # the unverified-lot warning, once a day

    nifty = pd.read_csv(BARS, index_col=0, parse_dates=True)
    days = sorted({d for d in nifty.index.date if d >= pd.Timestamp(args.start).date()})
    if len(days) < args.sessions:
        parser.error(f"only {len(days)} sessions from {args.start}: pass an earlier --start")
    start, end = days[0], days[args.sessions - 1]
    week = nifty[(nifty.index.date >= start) & (nifty.index.date <= end)]
    straddle_cls = load_strategy(str(ROOT / "strategies/short_straddle.py"))

    feed_times, replay_times, research_times = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        feed = option_feed(nifty, start=start, end=end, strikes=3, freeze_qty=FREEZE)
        t1 = time.perf_counter()
        result = velox.replay(straddle_cls(stop_loss=STOP),
                              bars={("NSE:NIFTY", "1m"): week, **feed.bars},
                              instrument_master=feed.lookup())  # fmt: skip
        t2 = time.perf_counter()
        research = backtest_basket(straddle("sell"), nifty, start=start, end=end,
                                   stop_loss=STOP, freeze_qty=FREEZE)  # fmt: skip
        t3 = time.perf_counter()
        feed_times.append(t1 - t0)
        replay_times.append(t2 - t1)
        research_times.append(t3 - t2)

    fills = result.fills.copy()
    fills["date"] = pd.to_datetime(fills["ts"]).dt.date
    fills["cash"] = fills["qty"] * fills["price"] * fills["side"].map({"BUY": -1, "SELL": 1})
    engine_pnl = fills.groupby(["date", "instrument_id"])["cash"].sum().round(2)
    legs = research.legs
    keys = [(r.entry_time.date(), option_instrument_id("NIFTY", r.kind, r.expiry, r.strike))
            for r in legs.itertuples()]  # fmt: skip
    research_pnl = pd.Series(legs["pnl"].to_numpy(), index=pd.MultiIndex.from_tuples(keys))
    same = len(engine_pnl) == len(research_pnl) and np.array_equal(
        engine_pnl.reindex(research_pnl.index).to_numpy(), research_pnl.to_numpy()
    )
    contracts = len(feed.contracts)
    ticks = sum(len(f) for f in feed.bars.values()) * 4 + len(week) * 4
    feed_s, replay_s, research_s = min(feed_times), min(replay_times), min(research_times)
    n = args.sessions
    print(
        f"{n} sessions {start} … {end}: {len(research.trades)} baskets, "
        f"{len(result.orders)} orders, {contracts} contract-sessions, {ticks:,} ticks"
    )
    print(f"option_feed     {feed_s:6.2f} s ({feed_s / contracts * 1e3:.1f} ms a contract-session)")
    print(f"engine replay   {replay_s:6.2f} s ({replay_s / n * 1e3:.0f} ms a session)")
    print(f"backtest_basket {research_s:6.2f} s ({research_s / n * 1e3:.0f} ms a session)")
    total = feed_s + replay_s
    print(f"engine (feed + replay) / research: {total / research_s:.1f}x slower")
    print(f"every leg's gross P&L equal: {same}")


if __name__ == "__main__":
    main()
