"""Tests for velox.calendar: sessions checked against real NSE data files, buckets by hand."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox import calendar as cal
from velox.errors import DataError, ValidationError
from velox.testing import market_file, shared_market_data

MARKET = shared_market_data()
IST = "Asia/Kolkata"


def ist(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=IST)


def _need(path: Path) -> Path:
    return market_file(str(path.relative_to(MARKET)))


def _dates(frame: pd.DataFrame) -> set[date]:
    return set(pd.to_datetime(frame["timestamp"].str[:10]).dt.date)


@pytest.fixture(scope="module")
def stock_dates() -> list[set[date]]:
    folder = _need(MARKET / "daily_nse_nifty50_stocks_2017_2022" / "clean")
    return [_dates(pd.read_csv(f)) for f in sorted(folder.glob("*.csv.gz"))]


@pytest.fixture(scope="module")
def one_minute() -> pd.DataFrame:
    path = _need(MARKET / "intraday_1min_nifty_banknifty_2021_2022" / "clean" / "NIFTY_1min.csv.gz")
    frame = pd.read_csv(path)
    frame["ts"] = pd.to_datetime(frame["timestamp"]).dt.tz_convert(IST)
    return frame


def _session_dates(start: date, end: date) -> set[date]:
    return {ts.date() for ts in cal.sessions(start, end).index}


# ---- import stays light ------------------------------------------------------------------------


def test_import_does_not_load_pandas_or_the_calendar_library() -> None:
    code = (
        "import sys, velox.calendar; "
        "print(any(m in sys.modules for m in ('pandas', 'pandas_market_calendars')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- holidays and sessions against real data ---------------------------------------------------


def test_every_date_in_the_daily_stock_files_is_a_session(stock_dates: list[set[date]]) -> None:
    seen = set().union(*stock_dates)
    assert len(seen) > 1200
    assert [d for d in sorted(seen) if not cal.is_trading_day(d)] == []


def test_weekdays_missing_from_every_stock_file_are_holidays_or_known_gaps(
    stock_dates: list[set[date]], one_minute: pd.DataFrame
) -> None:
    seen = set().union(*stock_dates)
    calendar_days = _session_dates(min(seen), max(seen))
    missing = calendar_days - seen
    # Two sessions the NSE daily files lack. 2021-08-10 is an ordinary session in the 1-minute
    # file (an independent source), so the gap is in the daily files, not the calendar.
    assert missing == {date(2018, 1, 2), date(2021, 8, 10)}
    assert date(2021, 8, 10) in set(one_minute["ts"].dt.date)
    # Weekend sessions in the data are the override-file specials (Muhurat, Budget Saturday).
    weekend = sorted(d for d in seen if d.weekday() >= 5)
    assert weekend == [date(2019, 10, 27), date(2020, 2, 1), date(2020, 11, 14)]


def test_well_known_holidays_are_closed() -> None:
    # Published NSE holidays (Republic Day, Holi, Diwali Balipratipada, Christmas, Ram Mandir).
    for day in ["2021-01-26", "2022-03-18", "2022-10-26", "2023-12-25", "2024-01-22"]:
        assert not cal.is_trading_day(day), day
    assert not cal.is_trading_day("2024-04-13")  # a Saturday


def test_sessions_match_the_2024_2026_nifty_daily_file_exactly() -> None:
    path = (
        MARKET / "daily_index_nifty50_indiavix_yfinance_2024_2026" / "clean" / "NIFTY50_daily.csv"
    )
    seen = _dates(pd.read_csv(_need(path)))
    assert _session_dates(min(seen), max(seen)) == seen
    assert date(2025, 2, 1) in seen  # Budget Saturday: only the override file has it


def test_one_minute_file_days_match_the_calendar(one_minute: pd.DataFrame) -> None:
    seen = set(one_minute["ts"].dt.date)
    assert _session_dates(min(seen), max(seen)) == seen


@pytest.mark.parametrize(
    ("day", "first", "last"),
    [
        ("2021-11-04", "18:15", "19:14"),
        ("2021-06-01", "09:15", "15:29"),
    ],
)
def test_one_minute_bars_fill_the_expected_grid_on_special_days(
    one_minute: pd.DataFrame, day: str, first: str, last: str
) -> None:
    # The vendor labels bars by their END; label - 1 minute is the start Velox uses.
    rows = one_minute[one_minute["ts"].dt.date == date.fromisoformat(day)]
    starts = rows["ts"] - pd.Timedelta(minutes=1)
    inside = starts[[cal.is_open(t) for t in starts]]
    expected = cal.expected_bar_starts(day, "1m")
    assert expected[0].strftime("%H:%M") == first and expected[-1].strftime("%H:%M") == last
    assert set(inside) <= set(expected)
    assert len(set(expected) - set(inside)) <= 2  # the vendor drops the odd minute
    # the vendor's pre-open print (09:08 or 18:08) is outside the session
    pre_open = rows["ts"][rows["ts"] < expected[0]]
    assert len(pre_open) == 1 and not cal.is_open(pre_open.iloc[0])


def test_muhurat_2022_is_an_evening_session() -> None:
    frame = cal.sessions("2022-10-24", "2022-10-24")
    row = frame.iloc[0]
    assert (row["open"], row["close"]) == (ist("2022-10-24 18:15"), ist("2022-10-24 19:15"))
    assert bool(row["special"]) and frame.index[0] == ist("2022-10-24")
    assert cal.is_open(ist("2022-10-24 18:15")) and cal.is_open(ist("2022-10-24 19:14:59"))
    assert not cal.is_open(ist("2022-10-24 10:00")) and not cal.is_open(ist("2022-10-24 19:15"))
    assert [t.strftime("%H:%M") for t in cal.expected_bar_starts("2022-10-24", "15m")] == [
        "18:15",
        "18:30",
        "18:45",
        "19:00",
    ]


def test_extended_session_2021_02_24_runs_to_17_00_after_the_outage(
    one_minute: pd.DataFrame,
) -> None:
    assert cal.session_bounds("2021-02-24") == (ist("2021-02-24 09:15"), ist("2021-02-24 17:00"))
    assert not cal.is_open(ist("2021-02-24 12:00")) and cal.is_open(ist("2021-02-24 16:30"))
    hours = [t.strftime("%H:%M") for t in cal.expected_bar_starts("2021-02-24", "1h")]
    assert hours == ["09:15", "10:15", "11:15", "15:15", "16:15"]
    assert cal.bucket_end(ist("2021-02-24 16:20"), "1h") == ist("2021-02-24 17:00")
    # the real 1-minute bars (end-labelled) resume at 15:45 and run to the 17:00 close
    rows = one_minute[one_minute["ts"].dt.date == date(2021, 2, 24)]
    starts = set(rows["ts"] - pd.Timedelta(minutes=1))
    after = [t for t in cal.expected_bar_starts("2021-02-24", "1m") if t >= ist("2021-02-24 15:45")]
    assert len(after) == 75 and set(after) <= starts


def test_session_with_a_pause_skips_bars_inside_it() -> None:
    # 2024-03-02: 09:15-10:00 at the primary site, 11:30-12:30 at the DR site.
    assert cal.is_open(ist("2024-03-02 09:59:59")) and not cal.is_open(ist("2024-03-02 10:00"))
    assert not cal.is_open(ist("2024-03-02 11:29")) and cal.is_open(ist("2024-03-02 11:30"))
    assert cal.next_open(ist("2024-03-02 10:30")) == ist("2024-03-02 11:30")
    hours = [t.strftime("%H:%M") for t in cal.expected_bar_starts("2024-03-02", "1h")]
    assert hours == ["09:15", "11:15", "12:15"]
    assert cal.session_bounds("2024-03-02")[1] == ist("2024-03-02 12:30")


def test_saturday_2024_01_20_was_a_full_regular_session() -> None:
    # The DR-site drill planned for Saturday 2024-01-20 was replaced by a full regular session
    # (NSE circular of 2024-01-19) when Monday 2024-01-22 was declared a trading holiday.
    assert cal.session_bounds("2024-01-20") == (ist("2024-01-20 09:15"), ist("2024-01-20 15:30"))
    assert cal.trading_hours_ns("2024-01-20") == (
        (ist("2024-01-20 09:15").value, ist("2024-01-20 15:30").value),
    )
    assert not cal.is_open(ist("2024-01-20 09:14:59"))  # pre-open, as on any day
    for clock in ("09:15", "10:00", "10:30", "11:29", "12:30", "15:29:59"):
        assert cal.is_open(ist(f"2024-01-20 {clock}")), clock
    assert not cal.is_open(ist("2024-01-20 15:30"))
    hours = [t.strftime("%H:%M") for t in cal.expected_bar_starts("2024-01-20", "1h")]
    assert hours == ["09:15", "10:15", "11:15", "12:15", "13:15", "14:15", "15:15"]
    assert len(cal.expected_bar_starts("2024-01-20", "1m")) == 375
    assert cal.is_trading_day("2024-01-20") and not cal.is_trading_day("2024-01-22")
    assert cal.next_open(ist("2024-01-20 15:30")) == ist("2024-01-23 09:15")


# ---- is_open / next_open / previous_close ------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "expected"),
    [("09:14:59", False), ("09:15:00", True), ("15:29:59", True), ("15:30:00", False)],
)
def test_is_open_at_the_edges(clock: str, expected: bool) -> None:
    assert cal.is_open(ist(f"2024-04-01 {clock}")) is expected


def test_is_open_accepts_plain_aware_datetimes_in_any_zone() -> None:
    from datetime import UTC

    assert cal.is_open(datetime(2024, 4, 1, 3, 45, tzinfo=UTC))  # 09:15 IST
    assert not cal.is_open(datetime(2024, 4, 1, 3, 44, 59, tzinfo=UTC))


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="naive"):
        cal.is_open(datetime(2024, 4, 1, 10, 0))


def test_is_open_is_false_on_weekends_and_holidays() -> None:
    assert not cal.is_open(ist("2024-04-13 11:00"))  # Saturday
    assert not cal.is_open(ist("2024-04-11 11:00"))  # Id-ul-Fitr holiday (Thursday)


def test_next_open_over_a_weekend_and_a_holiday() -> None:
    assert cal.next_open(ist("2024-04-12 16:00")) == ist("2024-04-15 09:15")
    assert cal.next_open(ist("2024-04-13 12:00")) == ist("2024-04-15 09:15")
    # Wednesday close -> Thursday 11 Apr is a holiday -> Friday
    assert cal.next_open(ist("2024-04-10 15:45")) == ist("2024-04-12 09:15")
    # Saturday before Diwali 2022: the next trading is the Muhurat evening, not Tuesday
    assert cal.next_open(ist("2022-10-22 10:00")) == ist("2022-10-24 18:15")


def test_next_open_before_and_at_the_open() -> None:
    assert cal.next_open(ist("2024-04-01 09:00")) == ist("2024-04-01 09:15")
    assert cal.next_open(ist("2024-04-01 09:15")) == ist("2024-04-02 09:15")
    assert cal.next_open(ist("2024-04-01 12:00")) == ist("2024-04-02 09:15")


def test_previous_close() -> None:
    assert cal.previous_close(ist("2024-04-15 10:00")) == ist("2024-04-12 15:30")
    assert cal.previous_close(ist("2024-04-15 15:30")) == ist("2024-04-15 15:30")
    assert cal.previous_close(ist("2022-10-25 09:00")) == ist("2022-10-24 19:15")


def test_session_bounds_of_a_holiday_names_the_next_session() -> None:
    with pytest.raises(ValidationError, match="2024-04-12"):
        cal.session_bounds("2024-04-11")


def test_years_outside_the_schedule_are_refused() -> None:
    with pytest.raises(ValidationError, match="outside"):
        cal.is_trading_day("2031-01-02")


def test_unknown_holiday_years_log_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cal._warn_unknown_holidays.cache_clear()
    with caplog.at_level(logging.WARNING, logger="velox.calendar"):
        cal.is_trading_day("2027-03-01")
    assert "2027" in caplog.text and "not known" in caplog.text


def test_sessions_frame_shape() -> None:
    frame = cal.sessions(date(2024, 4, 8), "2024-04-12")
    assert list(frame.columns) == ["open", "close", "break_start", "break_end", "special", "note"]
    assert [d.day for d in frame.index] == [8, 9, 10, 12]  # 11 Apr holiday
    assert str(frame["open"].dt.tz) == IST and frame["break_start"].isna().all()
    assert not frame["special"].any()


# ---- override file ------------------------------------------------------------------------------


def test_override_file_rows_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        "# comment\ndate,action,open,close,break_start,break_end,description,verified,recorded\n"
        "2024-01-20,session,09:15,12:30,,,x,circular,2026-11-21\n"
        "2024-01-21,party,09:15,12:30,,,x,circular,2026-11-21\n"
    )
    with pytest.raises(DataError, match=r"o\.csv:4: action='party'"):
        cal._read_overrides(path)
    path.write_text("date,action,open,close\n2024-01-20,session,9.15,12:30\n")
    with pytest.raises(DataError, match=r"o\.csv:2: open='9.15'"):
        cal._read_overrides(path)


def test_override_holiday_removes_a_session(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("date,action,open,close\n2024-04-01,holiday,,\n")
    day_ns = int(ist("2024-04-01").tz_convert("UTC").value)
    assert cal._read_overrides(path) == {day_ns: None}


# ---- buckets, worked by hand ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeframe", "clock", "start", "end"),
    [
        ("1m", "09:15:00", "09:15", "09:16"),
        ("1m", "15:29:30", "15:29", "15:30"),
        ("3m", "09:17:59", "09:15", "09:18"),
        ("3m", "09:18:00", "09:18", "09:21"),
        ("3m", "15:28:00", "15:27", "15:30"),  # 372 min after 09:15 = 124 x 3
        ("5m", "09:19:59", "09:15", "09:20"),
        ("5m", "09:20:00", "09:20", "09:25"),
        ("5m", "10:17:00", "10:15", "10:20"),
        ("10m", "15:24:00", "15:15", "15:25"),
        ("10m", "15:25:00", "15:25", "15:30"),  # short last bar
        ("15m", "15:20:00", "15:15", "15:30"),
        ("30m", "10:00:00", "09:45", "10:15"),
        ("30m", "15:20:00", "15:15", "15:30"),  # short last bar
        ("1h", "10:14:59", "09:15", "10:15"),
        ("1h", "10:15:00", "10:15", "11:15"),
        ("1h", "15:15:00", "15:15", "15:30"),  # 15 minutes long
    ],
)
def test_bucket_start_and_end_by_hand(timeframe: str, clock: str, start: str, end: str) -> None:
    ts = ist(f"2024-04-01 {clock}")
    assert cal.bucket_start(ts, timeframe) == ist(f"2024-04-01 {start}")
    assert cal.bucket_end(ts, timeframe) == ist(f"2024-04-01 {end}")


def test_daily_bucket_is_the_session_date() -> None:
    assert cal.bucket_start(ist("2024-04-01 15:29"), "1d") == ist("2024-04-01 00:00")
    assert cal.bucket_end(ist("2024-04-01 10:00"), "1d") == ist("2024-04-01 15:30")
    assert cal.bucket_end(ist("2022-10-24 18:20"), "1d") == ist("2022-10-24 19:15")
    assert cal.expected_bar_starts("2024-04-01", "1d").tolist() == [ist("2024-04-01")]


def test_bucket_end_on_a_holiday_is_start_plus_length() -> None:
    assert cal.bucket_end(ist("2024-04-13 15:20"), "1h") == ist("2024-04-13 16:15")


@pytest.mark.parametrize(
    ("timeframe", "count", "last"),
    [
        ("1m", 375, "15:29"),
        ("3m", 125, "15:27"),
        ("5m", 75, "15:25"),
        ("10m", 38, "15:25"),
        ("15m", 25, "15:15"),
        ("30m", 13, "15:15"),
        ("1h", 7, "15:15"),
    ],
)
def test_expected_bar_starts_of_a_regular_day(timeframe: str, count: int, last: str) -> None:
    # 09:15-15:30 is 375 minutes: ceil(375 / length) bars, the last one possibly short.
    starts = cal.expected_bar_starts("2024-04-01", timeframe)
    minutes = cal.TIMEFRAMES[timeframe]
    reference = pd.date_range(
        ist("2024-04-01 09:15"), ist(f"2024-04-01 {last}"), freq=f"{minutes}min"
    )
    assert len(starts) == count
    assert starts.equals(reference)


def test_expected_bar_starts_of_a_holiday_is_empty() -> None:
    assert len(cal.expected_bar_starts("2024-04-14", "5m")) == 0


def test_vector_bucket_end_equals_scalar() -> None:
    rng = np.random.default_rng(7)
    base = ist("2022-10-20 00:00")
    stamps = pd.DatetimeIndex(
        [base + timedelta(minutes=int(m)) for m in rng.integers(0, 7 * 24 * 60, 300)]
    )
    for timeframe in cal.TIMEFRAMES:
        vector = cal.bucket_end(stamps, timeframe)
        assert list(vector) == [cal.bucket_end(t, timeframe) for t in stamps]
        assert (vector > cal.bucket_start(stamps, timeframe)).all()
