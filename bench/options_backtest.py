"""Benchmark a year of daily short-straddle backtests on 1-minute NIFTY: velox.fno vs a loop.

Data: the bundled real NIFTY index 1-minute bars (``data/bars/NIFTY_1m_2021_2022.csv.gz``),
the last 12 months they cover (2021-10-01 … 2022-09-30). No option prices exist for those
days, so both sides price on Black-76 at the 20-day realised volatility before each day.

Strategy: sell the ATM weekly straddle (1 lot) at 09:20 IST, combined stop-loss ₹3,000 on the
mark-to-market, square off at 15:15; charges on every leg.

* **velox** — ``velox.fno.backtest_basket(straddle("sell"), bars, stop_loss=3000, …)``: legs,
  trades, charges by kind and Greeks over time.
* **pandas loop** — what a user writes without it: for each day slice the bars, pick the ATM
  strike and the next weekly expiry, then ``iterrows`` the minutes pricing both legs with
  ``vollib.black.black`` and checking the stop; P&L only (no charges, no Greeks).

Both must agree on every day's gross P&L (checked). Best of ``--repeat`` wall times.

Run: ``python bench/options_backtest.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from velox.fno import backtest_basket, straddle
from velox.options import expiries

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black

BARS = Path(__file__).resolve().parent.parent / "data" / "bars" / "NIFTY_1m_2021_2022.csv.gz"
START, END, STOP, RATE, LOT = "2021-10-01", "2022-09-30", 3_000.0, 0.065, 50


def velox_run(bars: pd.DataFrame) -> pd.Series:
    res = backtest_basket(straddle("sell"), bars, start=START, end=END, stop_loss=STOP,
                          freeze_qty=1_800, rate=RATE)  # fmt: skip
    return res.trades.set_index("date")["pnl"]


def pandas_loop(bars: pd.DataFrame) -> pd.Series:
    """The plain loop: one day at a time, one minute at a time."""
    tick = 0.05
    daily = bars["close"].groupby(bars.index.date).last()
    weeklies = expiries("NIFTY", "2021-09-01", "2022-12-31")
    out = {}
    for i, day in enumerate(daily.index):
        if not pd.Timestamp(START).date() <= day <= pd.Timestamp(END).date() or i < 21:
            continue
        rets = np.diff(np.log(daily.iloc[i - 21 : i].to_numpy()))
        sigma = rets.std(ddof=1) * math.sqrt(252)
        session = bars[bars.index.date == day]
        if not (session.index.strftime("%H:%M") == "09:19").any():
            continue  # no 09:20 close (the Muhurat evening session)
        expiry = next(d for d in weeklies if d >= day)
        close = pd.Timestamp(datetime.combine(expiry, datetime.min.time())).tz_localize(
            "Asia/Kolkata"
        ) + pd.Timedelta(hours=15, minutes=30)
        entry, strike, pnl = None, None, 0.0
        for ts, row in session.iterrows():
            end = ts + pd.Timedelta(minutes=1)
            if end.time() < datetime.strptime("09:20", "%H:%M").time():
                continue
            t = (close - end).total_seconds() / (365 * 86_400)
            f = row["close"] * math.exp(RATE * t)
            if entry is None:
                strike = round(row["close"] / 50) * 50
            prices = [
                max(round(round(vollib_black(k, f, strike, t, RATE, sigma) / tick) * tick, 2),
                    tick)
                for k in ("c", "p")
            ]  # fmt: skip
            if entry is None:
                entry = prices
                continue
            pnl = round(sum(LOT * (e - p) for e, p in zip(entry, prices, strict=True)), 2)
            if pnl <= -STOP or end.time() >= datetime.strptime("15:15", "%H:%M").time():
                break
        out[day] = pnl
    return pd.Series(out)


def best(func, bars: pd.DataFrame, repeat: int) -> tuple[float, pd.Series]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func(bars)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bars = pd.read_csv(BARS, index_col=0, parse_dates=True)
    v_time, v_pnl = best(velox_run, bars, args.repeat)
    p_time, p_pnl = best(pandas_loop, bars, max(1, args.repeat // 3))
    same = v_pnl.round(2).equals(p_pnl.round(2))
    print(f"days: {len(v_pnl)} ({v_pnl.index[0]} .. {v_pnl.index[-1]}), 1-minute NIFTY bars")
    print(f"velox.fno.backtest_basket : {v_time:8.2f} s  ({v_time / len(v_pnl) * 1e3:.1f} ms/day)")
    print(f"pandas iterrows + vollib  : {p_time:8.2f} s  ({p_time / len(p_pnl) * 1e3:.1f} ms/day)")
    print(f"speed-up: {p_time / v_time:.1f}x; same gross P&L every day: {same}")
    print(f"total gross P&L: velox {v_pnl.sum():,.2f}  loop {p_pnl.sum():,.2f}")


if __name__ == "__main__":
    main()
