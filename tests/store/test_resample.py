"""SQL resampling equals an independent pandas resample of real NIFTY 1-minute bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from velox.calendar import bucket_start
from velox.errors import ValidationError
from velox.store import Store
from velox.testing import market_file

pytestmark = pytest.mark.postgres

IST = "Asia/Kolkata"


@pytest.fixture(scope="module")
def nifty_1m() -> pd.DataFrame:
    """Return Jan–Mar 2021 NIFTY regular-session 1-minute bars, labelled by bar START."""
    path = market_file("intraday_1min_nifty_banknifty_2021_2022", "clean", "NIFTY_1min.csv.gz")
    # The file is chronological; 30k rows cover Jan–Mar 2021 (~60 sessions × 376 rows).
    raw = pd.read_csv(path, parse_dates=["timestamp"], index_col="timestamp", nrows=30_000)
    raw.index = pd.DatetimeIndex(raw.index).tz_convert(IST).as_unit("ns")
    bars = raw.loc["2021-01-01":"2021-03-31"].astype("float64")
    bars.index = bars.index - pd.Timedelta(minutes=1)  # the file labels bars by their END
    minutes = bars.index.hour * 60 + bars.index.minute
    return bars[(minutes >= 9 * 60 + 15) & (minutes <= 15 * 60 + 29)]


def pandas_resample(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Return the reference resample: group on the calendar's session-aligned bucket starts."""
    grouped = bars.groupby(bucket_start(bars.index, timeframe))
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    out.index.name = "ts"
    return out


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "1d"])
def test_sql_resample_of_real_nifty_equals_pandas(
    store: Store, nifty_1m: pd.DataFrame, timeframe: str
) -> None:
    store.write_bars("NSE:NIFTY 50", "1m", nifty_1m)
    got = store.read_bars("NSE:NIFTY 50", timeframe)  # not stored → resampled in SQL
    expected = pandas_resample(nifty_1m, timeframe)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, expected, check_freq=False, check_exact=True)
    if timeframe == "1h":
        assert got.index[:7].strftime("%H:%M").tolist() == [
            "09:15", "10:15", "11:15", "12:15", "13:15", "14:15", "15:15"
        ]  # fmt: skip
    if timeframe == "1d":
        assert (got.index.strftime("%H:%M") == "00:00").all()
        assert got.index[0] == pd.Timestamp("2021-01-01", tz=IST)


def test_resample_with_bounds_returns_whole_buckets(store: Store, nifty_1m: pd.DataFrame) -> None:
    store.write_bars("NSE:NIFTY 50", "1m", nifty_1m)
    # Buckets are selected by their start label: starting at 10:40 the first is 11:15.
    got = store.read_bars("NSE:NIFTY 50", "1h", start="2021-02-01 10:40", end="2021-02-01 13:15")
    assert got.index.strftime("%H:%M").tolist() == ["11:15", "12:15", "13:15"]
    expected = pandas_resample(nifty_1m.loc["2021-02-01"], "1h").loc["2021-02-01 11:15":]
    expected = expected.loc[:"2021-02-01 13:15"]
    pd.testing.assert_frame_equal(got, expected, check_freq=False, check_exact=True)

    days = store.read_bars("NSE:NIFTY 50", "1d", start="2021-02-01", end="2021-02-05")
    assert days.index.strftime("%Y-%m-%d").tolist() == [
        "2021-02-01", "2021-02-02", "2021-02-03", "2021-02-04", "2021-02-05"
    ]  # fmt: skip
    # The daily bar is the full session even though end is a date, not 15:29.
    session = nifty_1m.loc["2021-02-05"]
    assert days["volume"].iloc[-1] == session["volume"].sum()
    assert days["close"].iloc[-1] == session["close"].iloc[-1]


def test_stored_timeframe_wins_and_resample_uses_finest_source(store: Store) -> None:
    index = pd.date_range("2024-04-01 09:15", periods=30, freq="1min", tz=IST, unit="ns")
    ones = pd.DataFrame({c: np.arange(30.0) + 1 for c in ("open", "high", "low", "close")}, index)
    ones["volume"] = 1.0
    store.write_bars("NSE:X", "1m", ones)
    stored_15 = pandas_resample(ones, "15m").iloc[:1] * 0 + 7  # deliberately different values
    store.write_bars("NSE:X", "15m", stored_15)
    assert store.read_bars("NSE:X", "15m")["close"].tolist() == [7.0]
    # 30m is not stored: it comes from 1m (finest), not from the single stored 15m bar.
    thirty = store.read_bars("NSE:X", "30m")
    assert thirty["volume"].tolist() == [30.0]
    assert thirty["open"].tolist() == [1.0] and thirty["close"].tolist() == [30.0]
    direct = store.resample_bars("NSE:X", "15m", "30m")
    assert direct["close"].tolist() == [7.0]


def test_resample_refuses_incompatible_timeframes(store: Store) -> None:
    with pytest.raises(ValidationError, match="whole multiple"):
        store.resample_bars("NSE:X", "5m", "3m")
    with pytest.raises(ValidationError, match="whole multiple"):
        store.resample_bars("NSE:X", "1d", "1h")


def test_every_timeframe_matches_pandas_including_off_session_minutes(store: Store) -> None:
    # Random minutes over three days, including pre-open (08:50–09:14) and post-close minutes,
    # which fall into buckets before 09:15 / after 15:30 on the same session-aligned grid.
    rng = np.random.default_rng(42)
    days = pd.to_datetime(["2024-04-01", "2024-04-02", "2024-04-03"]).tz_localize(IST)
    minutes = np.sort(rng.choice(np.arange(8 * 60 + 50, 16 * 60 + 10), 300, replace=False))
    index = pd.DatetimeIndex(
        [day + pd.Timedelta(minutes=int(m)) for day in days for m in minutes]
    ).as_unit("ns")
    close = 100 + rng.normal(0, 1, len(index)).cumsum()
    bars = pd.DataFrame(
        {
            "open": close + rng.normal(0, 0.3, len(index)),
            "high": close + 2,
            "low": close - 2,
            "close": close,
            "volume": rng.integers(1, 1000, len(index)).astype(float),
        },
        index=index,
    )
    store.write_bars("NSE:RANDOM", "1m", bars)
    for timeframe in ("3m", "5m", "10m", "15m", "30m", "1h", "1d"):
        got = store.read_bars("NSE:RANDOM", timeframe)
        pd.testing.assert_frame_equal(
            got, pandas_resample(bars, timeframe), check_freq=False, check_exact=True
        )
    assert store.read_bars("NSE:RANDOM", "5m").index[0].strftime("%H:%M") == "08:50"
