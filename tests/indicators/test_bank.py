"""IndicatorBank: the fused multi-symbol tick path ends where the batch functions say.

Ticks are synthesised from real 1-minute NIFTY and BANKNIFTY bars (open, then high/low in
random order, then close, all inside the bar's minute) and interleaved in time, so each
symbol's candles rebuilt by the bank are exactly the source bars. After the last tick of every
candle the bank's preview must equal the batch EMA/RSI/ATR/Supertrend of the bars up to it, bit
for bit (the bank runs the batch functions' steps).
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import velox.indicators as vi
from velox.indicators.streaming import BANK_COLUMNS, IndicatorBank

BARS = 1500


def _ticks(frames: list[pd.DataFrame], seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for sym, frame in enumerate(frames):
        start = frame.index.tz_convert("UTC").as_unit("ns").asi8
        hl_first = rng.uniform(size=len(frame)) < 0.5
        second = np.where(hl_first, frame.high, frame.low)
        third = np.where(hl_first, frame.low, frame.high)
        prices = np.column_stack([frame.open, second, third, frame.close]).ravel()
        offsets = np.array([1, 15, 30, 59]) * 1_000_000_000
        ts = (start[:, None] + offsets[None, :]).ravel()
        last = np.tile([False, False, False, True], len(frame))
        bar = np.repeat(np.arange(len(frame)), 4)
        parts.append(
            pd.DataFrame({"sym": sym, "price": prices, "ts": ts, "last": last, "bar": bar})
        )
    ticks = pd.concat(parts).sort_values(["ts", "sym"], kind="stable")
    return ticks.reset_index(drop=True)


def _expected(frame: pd.DataFrame) -> np.ndarray:
    st = vi.supertrend(frame.high, frame.low, frame.close, 10, 3.0)
    return np.column_stack(
        [
            vi.ema(frame.close, 20),
            vi.rsi(frame.close, 14),
            vi.atr(frame.high, frame.low, frame.close, 14),
            st.supertrend,
            st.direction,
        ]
    )


@pytest.fixture(scope="module")
def frames(intraday: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
    # the source labels bars by their END minute; as candle buckets any unique minute works
    return [intraday["NIFTY"].iloc[:BARS], intraday["BANKNIFTY"].iloc[:BARS]]


def test_replay_matches_batch_after_every_candle(frames: list[pd.DataFrame]) -> None:
    ticks = _ticks(frames)
    bank = IndicatorBank(symbols=2)
    record = bank.replay(ticks.sym.to_numpy(), ticks.price.to_numpy(), ticks.ts.to_numpy(), True)
    assert record is not None and record.shape == (len(ticks), len(BANK_COLUMNS))
    for sym, frame in enumerate(frames):
        rows = ticks.index[(ticks.sym == sym) & ticks["last"]]
        got = record[rows]
        np.testing.assert_array_equal(got, _expected(frame))


def test_on_tick_equals_replay_and_survives_pickle(frames: list[pd.DataFrame]) -> None:
    ticks = _ticks([f.iloc[:300] for f in frames])
    replayed = IndicatorBank(symbols=2)
    replayed.replay(ticks.sym.to_numpy(), ticks.price.to_numpy(), ticks.ts.to_numpy())
    live = IndicatorBank(symbols=2)
    for k, (sym, price, ts) in enumerate(zip(ticks.sym, ticks.price, ticks.ts, strict=True)):
        if k == len(ticks) // 2:
            live = pickle.loads(pickle.dumps(live))
        live.on_tick(int(sym), float(price), int(ts))
    np.testing.assert_array_equal(live.values, replayed.values)


def test_explicit_update_and_preview_match_batch(frames: list[pd.DataFrame]) -> None:
    frame = frames[0].iloc[:200]
    bank = IndicatorBank(symbols=1)
    expected = _expected(frame)
    for k, row in enumerate(frame.itertuples()):
        bank.preview(0, row.open, row.high, row.low, row.close)
        np.testing.assert_array_equal(bank.values[0], expected[k])
        bank.update(0, row.open, row.high, row.low, row.close)
        np.testing.assert_array_equal(bank.values[0], expected[k])


def test_bank_rejects_bad_ticks() -> None:
    bank = IndicatorBank(symbols=3)
    t0 = pd.Timestamp("2024-04-01 09:20", tz="Asia/Kolkata").value
    with pytest.raises(ValueError, match="symbol index out of range"):
        bank.on_tick(3, 100.0, t0)
    with pytest.raises(ValueError, match="NaN price"):
        bank.on_tick(0, float("nan"), t0)
    bank.on_tick(0, 100.0, t0)
    with pytest.raises(ValueError, match="older than"):
        bank.on_tick(0, 100.0, t0 - 120 * 1_000_000_000)
    with pytest.raises(ValueError, match="tick 1"):
        bank.replay(np.array([1, 5]), np.array([1.0, 2.0]), np.array([t0, t0]))
    with pytest.raises(ValueError, match="intraday timeframe"):
        IndicatorBank(symbols=1, timeframe="1d")


def test_five_minute_buckets_follow_the_session_grid() -> None:
    bank = IndicatorBank(symbols=1, timeframe="5m", ema_window=2)
    base = pd.Timestamp("2024-04-01 09:15", tz="Asia/Kolkata").value
    minute = 60_000_000_000
    # 09:15–09:19 is one candle (close 101), 09:20 starts the next: EMA(2) seeds on 101 & 103
    for m, price in [(0, 100.0), (4, 101.0), (5, 103.0)]:
        bank.on_tick(0, price, base + m * minute)
    assert bank.values[0, 0] == pytest.approx(102.0)


def test_seed_from_history_then_ticks_equals_batch(frames: list[pd.DataFrame]) -> None:
    frame = frames[1].iloc[:600]
    history, live = frame.iloc[:400], frame.iloc[400:]
    bank = IndicatorBank(symbols=3)
    bank.seed(2, history)
    np.testing.assert_array_equal(bank.values[2], _expected(history)[-1])
    ticks = _ticks([live])
    record = bank.replay(np.full(len(ticks), 2), ticks.price.to_numpy(), ticks.ts.to_numpy(), True)
    assert record is not None
    rows = ticks.index[ticks["last"]]
    np.testing.assert_array_equal(record[rows], _expected(frame)[400:])
    with pytest.raises(ValueError, match="lacks column"):
        bank.seed(0, history[["close"]])
