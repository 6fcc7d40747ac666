"""Benchmark tick → candle aggregation: Velox's array and per-tick paths vs a pandas resample.

Workload: 100 instruments × 3 timeframes (1m, 5m, 15m) on replayed ticks. The ticks come from
real NIFTY 1-minute bars
(the shared market data, ``velox.testing.shared_market_data``) replayed through ``BarReplay``
(four synthetic ticks per bar, cumulative day volume); instrument k replays the same sessions
with prices scaled by ``1 + k/100`` so every instrument has real intraday shapes. The feed merges
all instruments in time order, as a replay of many symbols delivers them.

Measured in the same run:

* ``velox.feeds.aggregate_ticks`` (numba, one call for all instruments × timeframes);
* ``CandleAggregator.on_tick`` on ``Tick`` objects, with and without forming-candle updates
  (timed on a prefix of the stream: it is the live path, one tick at a time);
* pandas: ``groupby([symbol, pd.Grouper(freq, origin="start_day", offset="15min")])`` — pandas'
  resample machinery, session-aligned — with first/max/min/last and per-candle volume from the
  cumulative volume, one pass per timeframe.

The pandas result is checked equal to Velox's before any number is printed.

Run: ``python bench/feeds.py [--days 20] [--symbols 100]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from velox.feeds import BarReplay, CandleAggregator, TickArrays, aggregate_ticks, from_ns
from velox.testing import shared_market_data
from velox.types import Tick

NIFTY = (
    shared_market_data() / "intraday_1min_nifty_banknifty_2021_2022" / "clean" / "NIFTY_1min.csv.gz"
)
TIMEFRAMES = ["1m", "5m", "15m"]
PANDAS_FREQ = {"1m": "1min", "5m": "5min", "15m": "15min"}


def load_bars(days: int) -> pd.DataFrame:
    """Return ``days`` sessions of real NIFTY 1m bars, labelled by start, regular session only."""
    raw = pd.read_csv(NIFTY)
    idx = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"])).tz_convert("Asia/Kolkata")
    bars = raw[["open", "high", "low", "close"]].set_axis(idx - pd.Timedelta(minutes=1))
    minutes = bars.index.hour * 60 + bars.index.minute
    bars = bars[(minutes >= 9 * 60 + 15) & (minutes <= 15 * 60 + 29)]
    sessions = bars.index.normalize().unique()[:days]
    bars = bars[bars.index.normalize().isin(sessions)].copy()
    bars["volume"] = np.rint((bars["high"] - bars["low"]) * 100) + 1000
    return bars


def replayed_ticks(bars: pd.DataFrame, symbols: int) -> TickArrays:
    """Return the merged synthetic tick stream of ``symbols`` scaled copies of ``bars``."""
    prices = ["open", "high", "low", "close"]
    per_symbol = {}
    for k in range(symbols):
        scaled = bars.copy()
        scaled[prices] = (scaled[prices] * (1 + k / 100)).round(2)
        per_symbol[f"NSE:SYM{k:03d}"] = scaled
    return BarReplay({(iid, "1m"): frame for iid, frame in per_symbol.items()}).arrays()


def pandas_aggregate(ticks: TickArrays) -> dict[str, pd.DataFrame]:
    """Return session-aligned candles per timeframe computed by pandas."""
    frame = pd.DataFrame(
        {"symbol": ticks.symbol, "price": ticks.price, "cum": ticks.volume},
        index=pd.to_datetime(ticks.ts_ns, utc=True).tz_convert("Asia/Kolkata"),
    )
    out = {}
    for tf in TIMEFRAMES:
        grouper = pd.Grouper(freq=PANDAS_FREQ[tf], origin="start_day", offset="15min")
        candles = frame.groupby(["symbol", grouper]).agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            cum=("cum", "max"),
        )
        day = candles.index.get_level_values(1).normalize()
        symbol = candles.index.get_level_values(0)
        candles["volume"] = candles["cum"] - candles.groupby([symbol, day])["cum"].shift(
            fill_value=0.0
        )
        out[tf] = candles.drop(columns="cum")
    return out


def best_of(repeats: int, fn):  # noqa: ANN001, ANN201 - a tiny timing helper
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--object-ticks", type=int, default=300_000)
    args = parser.parse_args()

    bars = load_bars(args.days)
    ticks = replayed_ticks(bars, args.symbols)
    n = len(ticks.ts_ns)
    print(f"{args.symbols} symbols × {args.days} sessions × 375 bars × 4 ticks = {n:,} ticks")

    aggregate_ticks(ticks, TIMEFRAMES)  # compile / load the numba cache outside the timing
    t_array, velox_out = best_of(3, lambda: aggregate_ticks(ticks, TIMEFRAMES))
    t_pandas, pandas_out = best_of(1, lambda: pandas_aggregate(ticks))

    got = velox_out.to_frame()
    for j, tf in enumerate(TIMEFRAMES):
        mine = got[got["timeframe"] == tf].set_index(["symbol", "ts"]).sort_index()
        theirs = pandas_out[tf].rename_axis(["symbol", "ts"]).sort_index()
        cols = ["open", "high", "low", "close", "volume"]
        pd.testing.assert_frame_equal(mine[cols], theirs[cols], check_dtype=False, obj=tf)
        assert len(mine) == (velox_out.timeframe == j).sum()

    m = min(args.object_ticks, n)
    objects = [
        Tick(ticks.instrument_ids[s], from_ns(int(t)), float(p), int(v))
        for s, t, p, v in zip(
            ticks.symbol[:m], ticks.ts_ns[:m], ticks.price[:m], ticks.volume[:m], strict=True
        )
    ]

    def run_objects(emit_forming: bool) -> None:
        agg = CandleAggregator(TIMEFRAMES, emit_forming=emit_forming)
        for tick in objects:
            agg.on_tick(tick)

    t_obj, _ = best_of(1, lambda: run_objects(True))
    t_obj_closed, _ = best_of(1, lambda: run_objects(False))

    rows = [
        ("velox `aggregate_ticks` (numba array path)", n / t_array),
        ("velox `CandleAggregator.on_tick`, forming + closed bars", m / t_obj),
        ("velox `CandleAggregator.on_tick`, closed bars only", m / t_obj_closed),
        ("pandas groupby + `Grouper` resample (3 passes)", n / t_pandas),
    ]
    pandas_rate = n / t_pandas
    print("| implementation | ticks/s | vs pandas |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / pandas_rate:.2f}× |")


if __name__ == "__main__":
    main()
