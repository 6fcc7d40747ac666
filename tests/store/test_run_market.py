"""Live market data in the store: the recorder's quotes and 1-minute candles of a run's ticks,
against an independent pandas resample of the same ticks; and a real paper run writing them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tests.engine.conftest import reliance_in_store, store_settings  # noqa: F401
from velox.errors import DataError, ValidationError
from velox.store import RunRecorder, Store
from velox.types import Tick

pytestmark = pytest.mark.postgres

#: 09:15 IST on a trading day, as UTC.
OPEN = datetime(2025, 5, 20, 3, 45, tzinfo=UTC)


def ticks_frame(n: int, seed: int = 3) -> pd.DataFrame:
    """``n`` ticks of one instrument over ~4 minutes: random prices, a rising cumulative volume."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, 240, n))
    return pd.DataFrame({
        "ts": [OPEN + timedelta(seconds=float(s)) for s in offsets],
        "ltp": np.round(2400 + np.cumsum(rng.normal(0, 0.5, n)), 2),
        "volume": 50_000 + np.cumsum(rng.integers(1, 500, n)),
    })  # fmt: skip


def ns(ts: datetime) -> int:
    return int(pd.Timestamp(ts).value)


def test_quotes_and_candles_equal_a_pandas_resample_of_the_ticks(store: Store) -> None:
    frame = ticks_frame(400)
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        half = len(frame) // 2
        for row in frame.iloc[:half].itertuples():
            recorder.quote(Tick("NSE:SBIN", row.ts, row.ltp, int(row.volume)), ns(row.ts))
        recorder.flush()
        forming = store.run_candles(run_id, "NSE:SBIN")
        assert not forming["closed"].iloc[-1] and forming["closed"].iloc[:-1].all()
        for row in frame.iloc[half:].itertuples():
            recorder.quote(Tick("NSE:SBIN", row.ts, row.ltp, int(row.volume)), ns(row.ts))
        recorder.quote(Tick("NSE:INFY", OPEN, 1500.0, None, bid=1499.95), ns(OPEN))
        recorder.flush()
        recorder.flush()  # nothing new: a repeated flush changes nothing

    quotes = store.run_quotes(run_id).set_index("instrument_id")
    last = frame.iloc[-1]
    sbin = quotes.loc["NSE:SBIN"]
    assert sbin["ltp"] == last["ltp"] and sbin["volume"] == last["volume"]
    assert (sbin["open"], sbin["high"], sbin["low"]) == (
        frame["ltp"].iloc[0], frame["ltp"].max(), frame["ltp"].min())  # fmt: skip
    assert sbin["ts"] == pd.Timestamp(last["ts"])
    assert str(sbin["ts"].tz) == "Asia/Kolkata"  # shown in IST
    assert pd.isna(quotes.loc["NSE:INFY", "volume"]) and quotes.loc["NSE:INFY", "bid"] == 1499.95

    # The reference: pandas' 1-minute OHLC of the same ticks; volume from cumulative diffs
    # (the first tick of the run is where counting starts).
    indexed = frame.set_index("ts")
    expected = indexed["ltp"].resample("1min").ohlc()
    cumulative = indexed["volume"].resample("1min").last()
    expected["volume"] = cumulative.diff().fillna(cumulative.iloc[0] - frame["volume"].iloc[0])
    candles = store.run_candles(run_id, "NSE:SBIN", limit=None)
    assert len(candles) == len(expected) == 4
    got = candles.set_index(candles["start"].dt.tz_convert("UTC").dt.as_unit("ns"))
    expected.index = expected.index.as_unit("ns")
    pd.testing.assert_frame_equal(
        got[["open", "high", "low", "close"]], expected[["open", "high", "low", "close"]],
        check_names=False, check_freq=False,
    )  # fmt: skip
    assert got["volume"].tolist() == expected["volume"].astype(int).tolist()
    assert candles["closed"].tolist() == [True, True, True, False]  # the last is still forming
    assert len(store.run_candles(run_id, "NSE:SBIN", limit=2)) == 2
    later = store.run_candles(run_id, "NSE:SBIN", since=OPEN + timedelta(minutes=2))
    assert later["start"].iloc[0] == pd.Timestamp(OPEN + timedelta(minutes=2))


def test_a_new_day_sets_prev_close_and_restarts_the_volume(store: Store) -> None:
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    day2 = OPEN + timedelta(days=1)
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        for ts, price, volume in (
            (OPEN, 100.0, 1000),
            (OPEN + timedelta(hours=6), 104.0, 9000),
            (day2, 103.0, 200),
            (day2 + timedelta(seconds=5), 101.0, 260),
        ):
            recorder.quote(Tick("NSE:X", ts, price, volume), ns(ts))  # fmt: skip
    quote = store.run_quotes(run_id).iloc[0]
    assert (quote["prev_close"], quote["open"], quote["high"], quote["low"]) == (104, 103, 103, 101)
    candles = store.run_candles(run_id, "NSE:X")
    assert candles["volume"].tolist()[-1] == 260  # the day's cumulative restarted from zero


def test_readers_refuse_bad_input(store: Store) -> None:
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    with pytest.raises(DataError, match="NOPE"):
        store.run_quotes("NOPE")
    with pytest.raises(DataError, match="NOPE"):
        store.run_candles("NOPE", "NSE:SBIN")
    with pytest.raises(ValidationError, match="tz-aware"):
        store.run_candles(run_id, "NSE:SBIN", since=datetime(2025, 5, 20))
    with pytest.raises(ValidationError, match="limit"):
        store.run_candles(run_id, "NSE:SBIN", limit=0)
    assert store.run_quotes(run_id).empty and store.run_candles(run_id, "NSE:SBIN").empty


def test_a_paper_run_writes_its_quotes_while_it_runs(
    store: Store,
    reliance_in_store: pd.DataFrame,  # noqa: F811
    tmp_path,
    store_settings: None,  # noqa: F811
) -> None:
    import velox
    from tests.engine.test_paper_session import BuysTwice

    session = velox.start_paper(BuysTwice(), run_id="MD1", speed=3000, start="2025-05-20",
                                end="2025-05-20", store=store,
                                socket_path=tmp_path / "md.sock")  # fmt: skip
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline and session.running:
        try:
            quotes = store.run_quotes("MD1")
        except DataError:  # the run is not created yet
            quotes = pd.DataFrame()
        if not quotes.empty:
            seen.append(float(quotes["ltp"].iloc[0]))
        if len(set(seen)) >= 3:
            break
        time.sleep(0.05)
    assert len(set(seen)) >= 3, "the quote did not move while the run traded"
    session.kill(reason="enough")
    session.wait(60)
    day = reliance_in_store
    prices = set(np.round(day[["open", "high", "low", "close"]].to_numpy().ravel(), 2))
    assert set(np.round(seen, 2)) <= prices  # the day's real prices, as the ticks carried them
    candles = store.run_candles("MD1", "NSE:RELIANCE", limit=None)
    assert len(candles) > 3 and candles["low"].min() >= day["low"].min()
    assert candles["high"].max() <= day["high"].max()
