"""Tests for velox.feeds: candle aggregation, replay feeds and clocks.

References are independent of the code under test: pandas group-bys on bucket labels computed
with plain pandas arithmetic, and hand-worked tick sequences.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velox.calendar import IST, TIMEFRAMES, bucket_start_ns
from velox.errors import ValidationError
from velox.feeds import (
    BarReplay,
    CandleAggregator,
    ReplayClock,
    TickArrays,
    TickReplayFeed,
    WallClock,
    aggregate_ticks,
    from_ns,
    to_ns,
)
from velox.feeds.aggregate import _bucket_start
from velox.testing import market_file
from velox.types import Bar, Tick

NIFTY_1M = ("intraday_1min_nifty_banknifty_2021_2022", "clean", "NIFTY_1min.csv.gz")
OHLCV = ["open", "high", "low", "close", "volume"]


def at(hh: int, mm: int, ss: int = 0, day: int = 1) -> datetime:
    return datetime(2024, 4, day, hh, mm, ss, tzinfo=IST)


def frame(bars: list[Bar]) -> pd.DataFrame:
    """Return bars as a frame sorted by (symbol, timeframe, ts), for comparisons."""
    rows = [
        (b.instrument_id, b.timeframe, pd.Timestamp(b.ts).tz_convert("Asia/Kolkata"))
        + (b.open, b.high, b.low, b.close, b.volume)
        for b in bars
    ]
    out = pd.DataFrame(rows, columns=["symbol", "timeframe", "ts", *OHLCV])
    return out.sort_values(["symbol", "timeframe", "ts"], ignore_index=True)


@pytest.fixture(scope="module")
def nifty_bars() -> pd.DataFrame:
    """Return three weeks of real NIFTY 1-minute bars, labelled by start, regular session only.

    The vendor labels bars by their END, so labels move back one minute. Index values have no
    volume; a deterministic volume derived from each bar's range is attached so the volume
    arithmetic is exercised on real bar shapes.
    """
    raw = pd.read_csv(market_file(*NIFTY_1M))
    idx = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"])).tz_convert("Asia/Kolkata")
    bars = raw[OHLCV].set_axis(idx - pd.Timedelta(minutes=1))
    minutes = bars.index.hour * 60 + bars.index.minute
    bars = bars[(minutes >= 9 * 60 + 15) & (minutes <= 15 * 60 + 29)]
    bars = bars.loc["2021-01-01":"2021-01-21"].copy()
    bars["volume"] = np.rint((bars["high"] - bars["low"]) * 100).astype(np.int64) + 1000
    return bars


def pandas_reference(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Return a session-aligned resample of 1m bars with plain pandas arithmetic."""
    minutes = TIMEFRAMES[timeframe]
    day = bars.index.normalize()
    if minutes is None:
        label = day
    else:
        open_ = day + pd.Timedelta(hours=9, minutes=15)
        length = pd.Timedelta(minutes=minutes)
        label = open_ + ((bars.index - open_) // length) * length
    agg = bars.groupby(label).agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    return agg.rename_axis("ts").reset_index()


@pytest.mark.parametrize("path", ["object", "array"])
def test_real_nifty_ticks_aggregate_to_the_pandas_resample(nifty_bars: pd.DataFrame, path: str):
    timeframes = ["5m", "15m", "1h", "1d"]
    feed = BarReplay({("NSE:NIFTY 50", "1m"): nifty_bars})
    if path == "object":
        agg = CandleAggregator(timeframes, band=None)
        bars = [b for tick in feed for b in agg.on_tick(tick) if b.closed] + agg.flush()
        assert agg.stats.accepted == 4 * len(nifty_bars)
        got = frame(bars)
    else:
        out = aggregate_ticks(feed.arrays(), timeframes, band=None)
        got = out.to_frame(feed.instrument_ids)
        got = got.sort_values(["symbol", "timeframe", "ts"], ignore_index=True)
    for tf in timeframes:
        expected = pandas_reference(nifty_bars, tf)
        mine = got[got["timeframe"] == tf][["ts", *OHLCV]].reset_index(drop=True)
        assert len(mine) == len(expected), tf
        pd.testing.assert_frame_equal(mine, expected, check_dtype=False, obj=tf)
    assert len(pandas_reference(nifty_bars, "1d")) == 15  # 1–21 Jan 2021: 15 sessions


def test_bar_replay_round_trips_through_the_aggregator(nifty_bars: pd.DataFrame):
    hourly = pandas_reference(nifty_bars, "1h").set_index("ts")
    agg = CandleAggregator(["1h"], band=None)
    bars = [b for t in BarReplay({("X:Y", "1h"): hourly}) for b in agg.on_tick(t) if b.closed]
    got = frame(bars + agg.flush())[["ts", *OHLCV]]
    pd.testing.assert_frame_equal(got, hourly.reset_index(), check_dtype=False)


def test_synthetic_path_and_volume_split():
    idx = pd.DatetimeIndex(["2024-04-01 15:15", "2024-04-02 09:15"]).tz_localize("Asia/Kolkata")
    bars = pd.DataFrame(
        {"open": [100.0, 50.0], "high": [104.0, 52.0], "low": [98.0, 47.0]}
        | {"close": [103.0, 48.0], "volume": [10, 7]},
        index=idx,
    )
    ticks = list(BarReplay({("NSE:A", "1h"): bars}))
    # up bar: O H L C; down bar: O L H C
    assert [t.ltp for t in ticks] == [100.0, 104.0, 98.0, 103.0, 50.0, 47.0, 52.0, 48.0]
    # 10 = 3+3+2+2 cumulative; the next day restarts: 7 = 2+2+2+1
    assert [t.volume for t in ticks] == [3, 6, 8, 10, 2, 4, 6, 7]
    # the 15:15 hourly bar is capped by the 15:30 close: ticks every 15/4 minutes
    assert [t.ts.strftime("%H:%M:%S") for t in ticks[:4]] == [
        "15:15:00",
        "15:18:45",
        "15:22:30",
        "15:26:15",
    ]
    assert ticks[4].ts.strftime("%H:%M:%S") == "09:15:00"


def test_daily_ticks_follow_each_dates_trading_hours():
    # a regular day, Diwali Muhurat 2021-11-04 (18:15-19:15 IST, published by NSE), and the
    # 2021-02-24 outage (halted 11:40, resumed 15:45, closed 17:00): 375, 60 and 145+75 minutes
    days = ["2021-11-03", "2021-11-04", "2021-02-24"]
    idx = pd.DatetimeIndex(days).tz_localize("Asia/Kolkata")
    bars = pd.DataFrame({c: [10.0, 10.0, 10.0] for c in ("open", "high", "low", "close")}, idx)
    times = [t.ts.strftime("%H:%M:%S") for t in BarReplay({("NSE:A", "1d"): bars})]
    regular = ["09:15:00", "10:48:45", "12:22:30", "13:56:15"]  # every 375/4 minutes
    muhurat = ["18:15:00", "18:30:00", "18:45:00", "19:00:00"]  # every 60/4 minutes
    # 220 trading minutes / 4 = 55: 09:15, 10:10, 11:05, then 12:00 is 20 minutes past the
    # halt, so it lands 20 minutes after the 15:45 resumption
    outage = ["09:15:00", "10:10:00", "11:05:00", "16:05:00"]
    assert times == outage + regular + muhurat  # replayed in time order


def test_bar_replay_rejects_misaligned_or_naive_bars():
    good = pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]})
    off_grid = good.set_axis(pd.DatetimeIndex(["2024-04-01 09:16"]).tz_localize("Asia/Kolkata"))
    with pytest.raises(ValidationError, match="not a 5m bar start"):
        BarReplay({("NSE:A", "5m"): off_grid})
    naive = good.set_axis(pd.DatetimeIndex(["2024-04-01 09:15"]))
    with pytest.raises(ValidationError, match="naive"):
        BarReplay({("NSE:A", "5m"): naive})


def test_quiet_symbol_candle_closes_on_the_timer():
    agg = CandleAggregator(["1m", "1h", "1d"])
    agg.on_tick(Tick("NSE:BUSY", at(9, 15, 10), 100.0))
    agg.on_tick(Tick("NSE:QUIET", at(9, 15, 20), 50.0))
    closed = agg.on_tick(Tick("NSE:BUSY", at(9, 16, 5), 101.0))
    assert [(b.instrument_id, b.timeframe) for b in closed if b.closed] == [("NSE:BUSY", "1m")]
    assert agg.on_clock(at(9, 15, 59)) == []
    assert agg.on_clock(np.int64(to_ns(at(9, 15, 59)))) == []  # epoch ns work too
    timer = agg.on_clock(at(9, 16))
    assert [(b.instrument_id, b.timeframe, b.ts, b.closed) for b in timer] == [
        ("NSE:QUIET", "1m", at(9, 15), True)
    ]
    assert agg.on_clock(at(9, 16, 30)) == []
    # the last hourly candle (15:15) and the daily candle end at the 15:30 close, not 16:15
    late_day = agg.on_tick(Tick("NSE:QUIET", at(15, 20), 51.0))  # closes its 09:15 hour itself
    assert [(b.timeframe, b.ts) for b in late_day if b.closed] == [("1h", at(9, 15))]
    assert [(b.instrument_id, b.timeframe, b.ts) for b in agg.on_clock(at(15, 29, 59))] == [
        ("NSE:BUSY", "1m", at(9, 16)),
        ("NSE:BUSY", "1h", at(9, 15)),
        ("NSE:QUIET", "1m", at(15, 20)),
    ]
    at_close = agg.on_clock(at(15, 30))
    assert [(b.instrument_id, b.timeframe, b.ts) for b in at_close] == [
        ("NSE:BUSY", "1d", datetime(2024, 4, 1, tzinfo=IST)),
        ("NSE:QUIET", "1h", at(15, 15)),
        ("NSE:QUIET", "1d", datetime(2024, 4, 1, tzinfo=IST)),
    ]
    assert agg.forming("NSE:QUIET", "1d") is None
    # a tick for a candle the timer already closed is late
    assert agg.on_tick(Tick("NSE:QUIET", at(15, 29, 50), 51.0)) == []
    assert agg.stats.late_dropped == 1


def test_out_of_order_tick_merges_inside_the_forming_candle_and_is_dropped_after():
    agg = CandleAggregator(["1m", "5m"])
    agg.on_tick(Tick("NSE:A", at(9, 15, 10), 100.0))
    agg.on_tick(Tick("NSE:A", at(9, 15, 30), 101.0))
    forming = agg.on_tick(Tick("NSE:A", at(9, 15, 5), 99.0))  # earlier: becomes the open
    one = forming[0]
    assert (one.open, one.high, one.low, one.close, one.closed) == (99.0, 101.0, 99.0, 101.0, False)
    closed = agg.on_tick(Tick("NSE:A", at(9, 16, 1), 102.0))
    assert (closed[0].timeframe, closed[0].closed, closed[0].close) == ("1m", True, 101.0)
    # its 1m candle closed: dropped from every timeframe so 5m stays the sum of its 1m candles
    assert agg.on_tick(Tick("NSE:A", at(9, 15, 50), 105.0)) == []
    assert agg.forming("NSE:A", "5m").high == 102.0
    assert agg.stats.late_dropped == 1 and agg.stats.accepted == 4
    # a tick inside the forming 1m candle but earlier than its last tick still merges
    merged = agg.on_tick(Tick("NSE:A", at(9, 16, 0), 103.0))
    assert (merged[0].open, merged[0].high, merged[0].close) == (103.0, 103.0, 102.0)


def test_duplicates_are_ignored_and_same_time_different_price_is_not():
    agg = CandleAggregator(["1m"])
    tick = Tick("NSE:A", at(9, 20, 1), 100.0, volume=10)
    assert len(agg.on_tick(tick)) == 1
    assert agg.on_tick(Tick("NSE:A", at(9, 20, 1), 100.0, volume=10)) == []
    assert agg.stats.duplicates == 1
    bars = agg.on_tick(Tick("NSE:A", at(9, 20, 1), 100.5, volume=12))
    assert (bars[0].close, bars[0].volume) == (100.5, 12.0)
    assert agg.stats.accepted == 2


def test_bad_ticks_are_rejected_counted_and_never_raise():
    agg = CandleAggregator(["1m"], band=0.2)
    assert agg.on_tick(Tick("NSE:A", at(9, 15), 100.0, volume=5))
    bad = [
        Tick("NSE:A", at(9, 15, 1), math.nan),
        Tick("NSE:A", at(9, 15, 2), math.inf),
        Tick("NSE:A", at(9, 15, 3), 0.0),
        Tick("NSE:A", at(9, 15, 4), -5.0),
        Tick("NSE:A", at(9, 15, 5), 120.5),  # 20.5 % above the day's first price
        Tick("NSE:A", at(9, 15, 6), 79.0),
        Tick("NSE:A", datetime(2024, 4, 1, 9, 15, 7), 100.0),  # naive timestamp
        Tick("NSE:A", "09:15:08", 100.0),  # type: ignore[arg-type]
        Tick("NSE:A", at(9, 15, 9), 100.0, volume=-1),
        Tick("NSE:A", at(9, 15, 9), "100"),  # type: ignore[arg-type]
        Tick("NSE:A", at(9, 15, 9), 100.0, volume="5"),  # type: ignore[arg-type]
    ]
    assert all(agg.on_tick(t) == [] for t in bad)
    assert agg.stats.rejected == {
        "non_finite_price": 3,
        "non_positive_price": 2,
        "outside_band": 2,
        "bad_volume": 2,
        "bad_timestamp": 2,
        "error": 0,
    }
    assert agg.stats.rejected_bad == 11 and agg.stats.seen == 12
    ok = agg.on_tick(Tick("NSE:A", at(9, 15, 10), np.float32(119.5)))  # inside the band
    assert (ok[0].high, ok[0].volume) == (119.5, 5.0)
    assert type(ok[0].high) is float


def test_volume_from_cumulative_volume_with_session_reset():
    agg = CandleAggregator(["1m", "1d"], band=None)
    ticks = [
        Tick("NSE:A", at(9, 15, 1), 10.0, volume=100),  # first tick of the day: 100 from 0
        Tick("NSE:A", at(9, 15, 30), 10.1, volume=150),
        Tick("NSE:A", at(9, 16, 2), 10.2, volume=400),
        Tick("NSE:A", at(9, 16, 3), 10.3, volume=None),  # no volume: adds nothing
        Tick("NSE:A", at(9, 16, 4), 10.3, volume=390),  # a stale count never subtracts
        Tick("NSE:A", at(9, 17, 0), 10.4, volume=420),
        Tick("NSE:A", at(9, 15, 2, day=2), 11.0, volume=30),  # new session: counts restart
        Tick("NSE:A", at(9, 15, 40, day=2), 11.0, volume=35),
    ]
    closed = [b for t in ticks for b in agg.on_tick(t) if b.closed] + agg.flush()
    got = {(b.timeframe, b.ts): b.volume for b in closed}
    assert got == {
        ("1m", at(9, 15)): 150.0,
        ("1m", at(9, 16)): 250.0,
        ("1m", at(9, 17)): 20.0,
        ("1d", datetime(2024, 4, 1, tzinfo=IST)): 420.0,
        ("1m", at(9, 15, day=2)): 35.0,
        ("1d", datetime(2024, 4, 2, tzinfo=IST)): 35.0,
    }


def random_stream(seed: int, n: int = 4000) -> TickArrays:
    """Return a messy multi-symbol, multi-day tick stream: out of order, duplicated, bad."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-04-01 09:10", tz="Asia/Kolkata").value
    day = rng.integers(0, 2, n) * 86_400 * 10**9
    ts = np.sort(rng.integers(0, 7 * 3600 * 10**9, n)) + t0
    ts = np.sort(ts + day)
    jitter = rng.random(n) < 0.1  # 10 % of ticks arrive up to 90 s late
    ts[jitter] -= rng.integers(0, 90 * 10**9, jitter.sum())
    sym = rng.integers(0, 3, n)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    price[rng.random(n) < 0.01] = np.nan
    price[rng.random(n) < 0.01] = -1.0
    price[rng.random(n) < 0.01] *= 1.5
    volume = np.cumsum(rng.integers(0, 50, n)).astype(float)
    volume[rng.random(n) < 0.05] = np.nan
    volume[rng.random(n) < 0.005] = -3.0
    dup = np.flatnonzero(rng.random(n) < 0.05)
    order = np.sort(np.r_[np.arange(n), dup])  # repeat some ticks right after themselves
    ids = ("NSE:A", "NSE:B", "NSE:C")
    return TickArrays(ids, sym[order], ts[order], price[order], volume[order])


@pytest.mark.parametrize("seed", range(5))
def test_array_path_equals_object_path(seed: int):
    ticks = random_stream(seed)
    timeframes = ["1m", "3m", "15m", "1d"]
    agg = CandleAggregator(timeframes)
    objects = []
    for s, t, p, v in zip(ticks.symbol, ticks.ts_ns, ticks.price, ticks.volume, strict=True):
        tick = Tick(ticks.instrument_ids[s], from_ns(int(t)), float(p), None if v != v else int(v))
        objects += [b for b in agg.on_tick(tick) if b.closed]
    objects += agg.flush()
    assert [replace(b) for b in objects] == objects  # replace() re-runs Bar's own validation
    arrays = aggregate_ticks(ticks, timeframes)
    got = arrays.to_frame(ticks.instrument_ids)
    got = got.sort_values(["symbol", "timeframe", "ts"], ignore_index=True)
    pd.testing.assert_frame_equal(got, frame(objects), check_dtype=False)
    assert arrays.stats == agg.stats
    assert agg.stats.late_dropped > 0 and agg.stats.duplicates > 0 and agg.stats.rejected_bad > 0
    assert agg.stats.seen == len(ticks.ts_ns)


def test_array_path_resumes_when_its_output_buffer_fills():
    # more closed candles than one output chunk (2**20) would hold
    n = 600_000
    ts = pd.Timestamp("2024-04-01 09:15", tz="Asia/Kolkata").value + np.arange(n) * 60 * 10**9
    ticks = TickArrays(("NSE:A",), np.zeros(n, np.int64), ts, np.full(n, 10.0), np.full(n, np.nan))
    out = aggregate_ticks(ticks, ["1m", "3m"], band=None)
    assert (out.timeframe == 0).sum() == n
    assert (np.diff(out.start_ns[out.timeframe == 0]) == 60 * 10**9).all()


def test_scalar_bucket_start_matches_the_calendar():
    rng = np.random.default_rng(7)
    ns = rng.integers(1_600_000_000, 1_800_000_000, 500) * 10**9 + rng.integers(0, 10**9, 500)
    for tf, minutes in TIMEFRAMES.items():
        length = 0 if minutes is None else minutes * 60 * 10**9
        got = [_bucket_start(int(x), length) for x in ns]
        assert got == list(bucket_start_ns(ns, tf)), tf


def test_tick_replay_merges_symbols_in_time_order_with_a_stable_tie_break():
    def ticks(times: list[str], prices: list[float]) -> pd.DataFrame:
        idx = pd.DatetimeIndex([f"2024-04-01 {t}" for t in times]).tz_localize("Asia/Kolkata")
        return pd.DataFrame({"ltp": prices, "volume": [1, 2, 3][: len(prices)]}, index=idx)

    feed = TickReplayFeed(
        {
            "NSE:ZEE": ticks(["09:15:01", "09:15:03", "09:15:03"], [1.0, 2.0, 3.0]),
            "NSE:ABB": ticks(["09:15:02", "09:15:03"], [10.0, 20.0]),
        }
    )
    got = [(t.instrument_id, t.ts.strftime("%S"), t.ltp) for t in feed]
    assert got == [
        ("NSE:ZEE", "01", 1.0),
        ("NSE:ABB", "02", 10.0),
        ("NSE:ABB", "03", 20.0),  # same second: the id that sorts first goes first
        ("NSE:ZEE", "03", 2.0),  # then stored order within an instrument
        ("NSE:ZEE", "03", 3.0),
    ]
    assert feed.clock.now() == at(9, 15, 3)


def test_stop_ends_the_replay_before_the_next_tick():
    idx = pd.date_range("2024-04-01 09:15", periods=10, freq="s", tz="Asia/Kolkata")
    feed = TickReplayFeed({"NSE:A": pd.DataFrame({"ltp": np.arange(10.0) + 1}, index=idx)})
    seen: list[float] = []

    def on_tick(tick: Tick) -> None:
        seen.append(tick.ltp)
        if len(seen) == 3:
            feed.stop()

    feed.run(on_tick)
    assert seen == [1.0, 2.0, 3.0]


def test_replay_clock_is_the_last_event_time_and_never_goes_back():
    clock = ReplayClock()
    clock.advance_to(to_ns(at(10, 0)))
    clock.advance_to(to_ns(at(9, 0)))
    assert clock.now() == at(10, 0)


def test_wall_clock_paces_a_replay_at_n_times_speed():
    waits: list[float] = []
    wall = [0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        wall[0] += int(seconds * 1e9)

    clock = WallClock(speed=10.0, sleep=sleep, monotonic_ns=lambda: wall[0])
    times = ["09:15:00", "09:15:01", "09:15:01", "09:15:06"]
    idx = pd.DatetimeIndex([f"2024-04-01 {t}" for t in times]).tz_localize("Asia/Kolkata")
    feed = TickReplayFeed({"NSE:A": pd.DataFrame({"ltp": [1.0, 2.0, 3.0, 4.0]}, index=idx)}, clock)
    assert [t.ltp for t in feed] == [1.0, 2.0, 3.0, 4.0]
    assert waits == pytest.approx([0.1, 0.5])  # 1 s then 5 s of market time at 10x
    wall[0] += 2 * 10**8  # 0.2 s of wall time later the replayed clock is 2 s further on
    assert clock.now() == at(9, 15, 8)


def test_wall_clock_really_sleeps():
    idx = pd.DatetimeIndex(["2024-04-01 09:15:00", "2024-04-01 09:15:03"]).tz_localize(
        "Asia/Kolkata"
    )
    feed = TickReplayFeed(
        {"NSE:A": pd.DataFrame({"ltp": [1.0, 2.0]}, index=idx)}, WallClock(speed=1000.0)
    )
    start = time.perf_counter()
    assert len(list(feed)) == 2
    assert time.perf_counter() - start >= 0.003 - 1e-4  # 3 s of market time at 1000x
    assert abs(WallClock().now_ns() - time.time_ns()) < 10**9


def test_clock_and_aggregator_reject_bad_configuration():
    with pytest.raises(ValidationError, match="speed"):
        WallClock(speed=0)
    with pytest.raises(ValidationError, match="unknown timeframe"):
        CandleAggregator(["2m"])
    with pytest.raises(ValidationError, match="band"):
        CandleAggregator(["1m"], band=-1)


def test_after_hours_ticks_form_their_own_candles():
    # Muhurat-style evening session: nothing before the close, then an hour from 18:15
    agg = CandleAggregator(["15m", "1d"])
    agg.on_tick(Tick("NSE:A", at(18, 15, 5), 100.0, volume=10))
    assert agg.on_clock(at(18, 29)) == []
    assert [b.timeframe for b in agg.on_clock(at(18, 30))] == ["15m"]
    assert agg.on_clock(at(23, 59)) == []
    assert [b.timeframe for b in agg.on_clock(at(0, 0, day=2))] == ["1d"]
    assert agg.stats.accepted == 1


@pytest.mark.postgres
def test_bar_replay_from_the_store_agrees_with_the_store_resample(store, nifty_bars):  # noqa: ANN001
    # The store (SQL) and the feeds (ticks) share one bucket definition: ticks synthesised from
    # stored 1m bars and aggregated here must equal the store's own 15m and 1d resample.
    two_days = nifty_bars.loc["2021-01-04":"2021-01-05"].astype(float)
    store.write_bars("NSE:NIFTY 50", "1m", two_days)
    feed = BarReplay.from_store(store, [("NSE:NIFTY 50", "1m")], "2021-01-04", "2021-01-06")
    assert len(feed) == 4 * len(two_days)
    candles = aggregate_ticks(feed.arrays(), ["15m", "1d"], band=None).to_frame(feed.instrument_ids)
    for tf in ("15m", "1d"):
        expected = store.read_bars("NSE:NIFTY 50", tf).reset_index()
        got = candles[candles["timeframe"] == tf][["ts", *OHLCV]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected[["ts", *OHLCV]], check_dtype=False, obj=tf)


BOUNDARY_TIMES = [
    to_ns(t)
    for t in (
        at(9, 14, 59),
        at(9, 15),
        at(9, 15, 1),
        at(9, 19, 59),
        at(9, 20),
        at(10, 14, 59),
        at(10, 15),
        at(15, 29, 59),
        at(15, 30),
        at(15, 45),
        at(9, 15, day=2),
        at(9, 20, 30, day=2),
    )
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from(BOUNDARY_TIMES),
            st.sampled_from([100.0, 100.05, 99.5, 130.0, 0.0, math.nan]),
            st.sampled_from([math.nan, 0.0, 10.0, 25.0, 40.0, -1.0]),
        ),
        max_size=40,
    )
)
def test_array_and_object_paths_agree_on_boundary_ticks(rows):
    ticks = TickArrays(
        ("NSE:A", "NSE:B"),
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]),
    )
    timeframes = ["1m", "5m", "1h", "1d"]
    agg = CandleAggregator(timeframes)
    objects = []
    for s, t, p, v in rows:
        tick = Tick(ticks.instrument_ids[s], from_ns(t), p, None if v != v else int(v))
        objects += [b for b in agg.on_tick(tick) if b.closed]
    objects += agg.flush()
    got = aggregate_ticks(ticks, timeframes).to_frame(ticks.instrument_ids)
    got = got.sort_values(["symbol", "timeframe", "ts"], ignore_index=True)
    pd.testing.assert_frame_equal(got, frame(objects), check_dtype=False, check_index_type=False)
    assert aggregate_ticks(ticks, timeframes).stats == agg.stats
