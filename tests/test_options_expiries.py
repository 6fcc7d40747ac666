"""Tests for velox.options expiries, lot sizes and strike intervals.

The reference is the exchanges' own contract lists: every expiry, lot size and strike step of
the index contracts in the real instrument masters (Kite, April 2024, 31k rows; Angel One,
April 2025; Zerodha's official mock, 2017-2018; the subsets bundled in data/instruments) must
be what the tables produce, each master read with pandas here, not through velox. Dated facts
from the circulars (weeklies discontinued, Tuesday/Thursday moves, holiday shifts) are checked
by hand-picked dates.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import velox.calendar
import velox.options
from velox.errors import ValidationError
from velox.options import expiries, expiry_rules, lot_size, strike_interval
from velox.testing import market_file

INDEXES = {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX"}


def _kite(path) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype={"expiry": str})
    if raw["name"].isna().all() or raw["name"].isna().any():
        # The official mock leaves name blank on options: read it off the trading symbol.
        raw["name"] = raw["name"].fillna(raw["tradingsymbol"].str.extract(r"^([A-Z]+?)\d")[0])
    fo = raw[raw["instrument_type"].isin(["CE", "PE", "FUT"]) & raw["name"].isin(INDEXES)]
    dayfirst = fo["expiry"].str.match(r"\d\d-\d\d-\d{4}").all()
    return pd.DataFrame(
        {
            "name": fo["name"],
            "expiry": pd.to_datetime(fo["expiry"], dayfirst=bool(dayfirst)).dt.date,
            "option": fo["instrument_type"] != "FUT",
            "strike": fo["strike"].astype(float),
            "lot": fo["lot_size"].astype(int),
        }
    )


def _angel(path) -> pd.DataFrame:
    raw = pd.read_json(path, dtype=str)
    fo = raw[raw["exch_seg"].isin(["NFO", "BFO"]) & raw["name"].isin(INDEXES)]
    return pd.DataFrame(
        {
            "name": fo["name"],
            "expiry": pd.to_datetime(fo["expiry"], format="%d%b%Y").dt.date,
            "option": fo["instrumenttype"].str.startswith("OPT"),
            "strike": fo["strike"].astype(float) / 100,  # Angel writes strikes in paise
            "lot": fo["lotsize"].astype(int),
        }
    )


MASTERS = {
    "kite-2024-04": (
        ("instruments_zerodha_kite", "raw", "nikhil-chhabra_instruments_2024-04.csv.gz"),
        _kite,
    ),
    "angel-2025-04": (
        ("instruments_angelone_smartapi", "derived", "OpenAPIScripMaster_sample_2025-04.json"),
        _angel,
    ),
    "kite-mock-2017": (
        ("instruments_zerodha_kite", "raw", "kiteconnect-mocks", "instruments_all.csv"),
        _kite,
    ),
}


#: Master expiries the calendar does not produce, each with its explanation. 2026-03-26 (a
#: Thursday) is an NSE holiday (Ram Navami) in the 2026 list published in December 2025, after
#: the April 2025 master was taken; that master still lists the long-dated NIFTY/BANKNIFTY March
#: 2026 contracts on the unshifted day, which velox (knowing the holiday) moves to 2026-03-25.
EXPLAINED = {
    ("angel-2025-04", "NIFTY", date(2026, 3, 26)): date(2025, 4, 8),  # the master's day
    ("angel-2025-04", "BANKNIFTY", date(2026, 3, 26)): date(2025, 4, 8),
    ("bundled-angel-2025-04", "NIFTY", date(2026, 3, 26)): date(2025, 4, 8),
    ("bundled-angel-2025-04", "BANKNIFTY", date(2026, 3, 26)): date(2025, 4, 8),
}


#: The copies bundled in data/instruments (subsets of the shared files above), always present.
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "instruments"
MASTERS |= {
    "bundled-kite-2024-04": ((BUNDLED / "kite_instruments_sample_2024-04.csv",), _kite),
    "bundled-angel-2025-04": ((BUNDLED / "angel_scrip_master_sample_2025-04.json.gz",), _angel),
}


@pytest.fixture(scope="module", params=sorted(MASTERS))
def master(request) -> tuple[str, pd.DataFrame]:
    parts, reader = MASTERS[request.param]
    frame = reader(parts[0] if isinstance(parts[0], Path) else market_file(*parts))
    assert not frame.empty
    return request.param, frame


def test_every_master_expiry_is_produced(master):
    """Each master lists what the exchange had scheduled on the day it was downloaded: far
    contracts by the rule then in force (as_of), near ones exactly (no expiry missing, none
    invented) over its first three expiries."""
    label, frame = master
    unexplained = {}
    for name, group in frame.groupby("name"):
        listed = sorted(set(group["expiry"]))
        as_of = listed[0]
        weeklies_listed = len(listed) > 1 and (listed[1] - listed[0]).days < 20
        produced = set(expiries(name, listed[0], listed[-1], weekly=True, as_of=as_of))
        missing = [d for d in listed if d not in produced and (label, name, d) not in EXPLAINED]
        if missing:
            unexplained[name] = missing
        if not label.startswith("bundled"):  # the bundled copies keep only some expiries
            near = expiries(name, listed[0], listed[2], weekly=weeklies_listed, as_of=as_of)
            assert near == listed[:3], f"{label} {name}: near {near} != listed {listed[:3]}"
    assert not unexplained, f"{label}: expiries the table cannot explain: {unexplained}"
    for (where, name, day), taken in EXPLAINED.items():
        if where == label:  # by the rule of the master's day, shifted for the holiday
            shifted = expiries(name, day - timedelta(days=3), day, weekly=False, as_of=taken)
            assert shifted == [day - timedelta(days=1)]


def test_master_futures_expire_on_monthly_expiries(master):
    label, frame = master
    for name, group in frame[~frame["option"]].groupby("name"):
        listed = sorted(set(group["expiry"]))
        monthly = set(expiries(name, listed[0], listed[-1], weekly=False, as_of=listed[0]))
        assert set(listed) <= monthly, f"{label} {name} futures"


def test_master_lot_sizes_and_strike_steps(master):
    label, frame = master
    taken = min(frame["expiry"])  # the master was downloaded by its first expiry
    for name, group in frame.groupby("name"):
        first = min(group["expiry"])
        assert set(group["lot"]) == {lot_size(name, taken)}, f"{label} {name} lot"
        near = group[group["option"] & (group["expiry"] == first)]
        if len(near) > 20:  # a real chain, not the mock's handful of strikes
            steps = np.diff(np.sort(near["strike"].unique()))
            assert steps.min() == strike_interval(name, first), f"{label} {name} strike step"


def _days(*text: str) -> list[date]:
    return [date.fromisoformat(t) for t in text]


def test_dated_rule_changes():
    # BANKNIFTY weeklies: Thursday, Wednesday from 2023-09-04 (no weekly in a monthly week),
    # gone after 2024-11-13; monthly last Wednesday from March 2024, last Thursday from 2025.
    assert expiries("BANKNIFTY", "2023-08-28", "2023-09-14") == _days(
        "2023-08-31", "2023-09-06", "2023-09-13"
    )
    assert expiries("BANKNIFTY", "2023-09-25", "2023-09-30") == _days("2023-09-28")
    assert expiries("BANKNIFTY", "2024-11-01", "2024-11-30") == _days(
        "2024-11-06", "2024-11-13", "2024-11-27"
    )
    assert expiries("BANKNIFTY", "2025-01-01", "2025-01-31") == _days("2025-01-30")
    assert expiries("FINNIFTY", "2024-11-15", "2024-11-30") == _days("2024-11-19", "2024-11-26")
    assert expiries("MIDCPNIFTY", "2024-11-15", "2024-11-30") == _days("2024-11-18", "2024-11-25")
    # NSE to Tuesday from 2025-09-01: Thursday 2025-08-28 is the last Thursday expiry.
    assert expiries("NIFTY", "2025-08-20", "2025-09-10") == _days(
        "2025-08-21", "2025-08-28", "2025-09-02", "2025-09-09"
    )
    assert expiries("NIFTY", "2025-09-01", "2025-12-31", weekly=False) == _days(
        "2025-09-30", "2025-10-28", "2025-11-25", "2025-12-30"
    )
    # SENSEX: Friday, Tuesday from 2025 (the 2025-01-03 Friday weekly kept), Thursday from
    # 2025-09-01.
    assert expiries("SENSEX", "2024-12-23", "2025-01-10") == _days(
        "2024-12-27", "2025-01-03", "2025-01-07"
    )
    assert expiries("SENSEX", "2025-08-25", "2025-09-05") == _days("2025-08-26", "2025-09-04")


def test_holiday_shifts_to_the_previous_trading_day():
    # 2024-04-11 (Id-ul-Fitr) and 2024-04-17 (Ram Navami) were NSE holidays; 2025-12-25 too.
    assert date(2024, 4, 10) in expiries("NIFTY", "2024-04-08", "2024-04-12")
    assert expiries("BANKNIFTY", "2024-04-15", "2024-04-19") == _days("2024-04-16")
    assert expiries("NIFTY", "2025-12-22", "2025-12-26") == _days("2025-12-23")
    # Diwali 2025-10-21 held only the Muhurat evening session: the expiry moved to 10-20.
    assert expiries("NIFTY", "2025-10-20", "2025-10-24") == _days("2025-10-20")
    # 2024-05-20 (Mumbai election) was a holiday and Saturday 05-18 only a DR-site drill
    # (09:15-12:30 with a pause): NSE moved the MIDCPNIFTY expiry to Friday 05-17 (NSE
    # circular of 2024-04-08).
    assert expiries("MIDCPNIFTY", "2024-05-14", "2024-05-24") == _days("2024-05-17")


def test_exchange_re_dated_expiries(monkeypatch):
    # 2024-01-22 was declared a holiday on 2024-01-19 and Saturday 01-20 turned into a full
    # regular session; NSE's circular of that day moved the MIDCPNIFTY expiry to 01-20.
    assert expiries("MIDCPNIFTY", "2024-01-16", "2024-01-26") == _days("2024-01-20")
    assert expiries("NFO:MIDCPNIFTY", "2024-01-20", "2024-01-20") == _days("2024-01-20")
    # velox.calendar holds 01-20 as the full 09:15-15:30 session it was (not the DR drill
    # first planned), so the general rule alone gives the same date: Monday 01-22 is a holiday
    # and the previous full trading day is Saturday 01-20, not Friday 01-19.
    assert velox.calendar.session_bounds("2024-01-20")[1].strftime("%H:%M") == "15:30"
    assert not velox.calendar.is_trading_day("2024-01-22")
    monkeypatch.setattr(velox.options, "expiry_exceptions", lambda: {})
    assert expiries("MIDCPNIFTY", "2024-01-16", "2024-01-26") == _days("2024-01-20")
    # the DR-drill Saturday of 2024-05-18 (12:30 close) still is not an expiry day
    assert expiries("MIDCPNIFTY", "2024-05-14", "2024-05-24") == _days("2024-05-17")
    monkeypatch.undo()
    # the exception is one underlying's: the same week's other expiries follow the rule
    assert expiries("FINNIFTY", "2024-01-17", "2024-01-26") == _days("2024-01-23")
    assert expiries("BANKNIFTY", "2024-01-17", "2024-01-26") == _days("2024-01-17", "2024-01-25")
    for (name, scheduled), expiry in velox.options.expiry_exceptions().items():
        assert name in INDEXES and expiry < scheduled, (name, scheduled)
        assert expiries(name, expiry, expiry) == [expiry]


def test_as_of_keeps_the_rule_known_then():
    # A master of April 2025 listed the Sept 2025 NIFTY monthly on Thursday the 25th; it
    # expired on Tuesday the 30th.
    assert expiries("NIFTY", "2025-09-20", "2025-09-30", weekly=False, as_of="2025-04-08") == [
        date(2025, 9, 25)
    ]
    assert expiries("NIFTY", "2025-09-20", "2025-09-30", weekly=False) == [date(2025, 9, 30)]


def test_every_rule_is_sourced_and_dated():
    for name, rules in expiry_rules().items():
        assert [r.effective_from for r in rules] == sorted({r.effective_from for r in rules})
        for rule in rules:
            assert rule.source and rule.verified in {"data", "circular", "practice"}, name


def test_lot_sizes_by_date_and_unverified_rows_warn(caplog):
    assert lot_size("NIFTY", "2024-12-02") == 75
    assert lot_size("NIFTY", "2026-05-04") == 65  # ../shared/docs/MARKET.md: Apr-Jun 2026
    assert lot_size("BANKNIFTY", "2026-05-04") == 30
    assert lot_size("FINNIFTY", "2026-05-04") == 60
    assert lot_size("MIDCPNIFTY", "2026-05-04") == 120
    assert lot_size("NIFTYNXT50", "2026-05-04") == 25
    # The warning is logged once per row and process: forget earlier tests' lookups.
    velox.options._warn_unverified.cache_clear()
    with caplog.at_level(logging.WARNING, logger="velox.options"):
        assert lot_size("NIFTY", "2022-06-01") == 50
    assert "unverified" in caplog.text


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValidationError, match="did you mean 'BANKNIFTY'"):
        expiries("BANKNIFY", "2024-01-01", "2024-02-01")
    with pytest.raises(ValidationError, match="MIDCPNIFTY starts 2023-08-21"):
        expiries("MIDCPNIFTY", "2023-01-01", "2023-12-31")
    with pytest.raises(ValidationError, match="before start"):
        expiries("NIFTY", "2024-02-01", "2024-01-01")
    with pytest.raises(ValidationError, match="not a date"):
        expiries("NIFTY", "yesterday", "2024-01-01")
    assert expiries("NFO:NIFTY", "2024-04-01", "2024-04-05") == _days("2024-04-04")
