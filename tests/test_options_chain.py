"""Tests for velox.options.chain and select_strike on the bundled real NIFTY and India VIX bars.

Checks against values read straight from the CSV files (spot, VIX), hand-computed time to
expiry, vollib's Black-76 price, parity across each strike, and a pandas realised volatility.
"""

from __future__ import annotations

import math
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox.errors import DataError, ValidationError
from velox.options import chain, realised_volatility, select_strike

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black

BARS = Path(__file__).resolve().parent.parent / "data" / "bars"


@pytest.fixture(scope="module")
def nifty() -> pd.DataFrame:
    return pd.read_csv(BARS / "NIFTY_1d_2024_2026.csv", index_col=0, parse_dates=True)


@pytest.fixture(scope="module")
def vix() -> pd.DataFrame:
    return pd.read_csv(BARS / "INDIAVIX_1d_2025_2026.csv", index_col=0, parse_dates=True)


def test_vix_chain_on_real_data(nifty, vix):
    c = chain("NIFTY", "2025-09-01", bars=nifty, vix=vix, strikes=5)
    assert len(c) == 22 and set(c["kind"]) == {"CE", "PE"}
    # spot and VIX: the closes of 2025-09-01 in the CSV files
    assert (c["spot"] == 24625.05).all()
    assert np.allclose(c["sigma"], 0.1129)
    # the next expiry after the 15:30 close is Tuesday 2025-09-02, 15:30: one day
    assert (c["expiry"] == date(2025, 9, 2)).all()
    assert np.allclose(c["t"], 1 / 365)
    # ATM = the 50-point strike nearest spot; 5 strikes each side
    assert sorted(set(c["strike"])) == [24650.0 + 50 * k for k in range(-5, 6)]
    assert set(c.loc[c["strike"] == 24650.0, "moneyness"]) == {"ATM"}
    assert c.loc[(c["strike"] < 24625) & (c["kind"] == "CE"), "moneyness"].eq("ITM").all()
    assert c.loc[(c["strike"] < 24625) & (c["kind"] == "PE"), "moneyness"].eq("OTM").all()
    forward = 24625.05 * math.exp(0.065 / 365)
    for row in c.itertuples():
        flag = "c" if row.kind == "CE" else "p"
        assert row.price == pytest.approx(
            vollib_black(flag, forward, row.strike, 1 / 365, 0.065, 0.1129), rel=1e-9
        )
    calls = c[c["kind"] == "CE"].set_index("strike")["price"]
    puts = c[c["kind"] == "PE"].set_index("strike")["price"]
    parity = math.exp(-0.065 / 365) * (forward - calls.index.to_numpy())
    np.testing.assert_allclose(calls - puts, parity, atol=1e-8)
    assert (c["lot_size"] == 75).all()


def test_every_output_is_labelled_model_priced(nifty, vix):
    c = chain("NIFTY", "2025-09-01", bars=nifty, vix=vix, strikes=3)
    assert c["price_source"].eq("model").all()
    assert c["price_note"].str.contains("model price").all()
    assert c["price_note"].str.contains("India VIX 11.29").all()
    assert c.attrs["model_priced"] is True
    row = select_strike(c, "CE", offset=1)
    assert row["price_source"] == "model" and "not a traded price" in row["price_note"]


def test_realised_volatility_when_vix_is_absent(nifty, vix):
    c = chain("NIFTY", "2025-03-03", bars=nifty, volatility="realised", window=20, strikes=1)
    closes = nifty["close"][nifty.index <= "2025-03-03"]
    expected = np.log(closes).diff().dropna().iloc[-20:].std() * math.sqrt(252)
    assert np.allclose(c["sigma"], expected)
    assert c["price_note"].str.contains("20-day realised volatility").all()
    assert realised_volatility(closes, 20) == pytest.approx(expected)
    # auto falls back to realised volatility before the VIX file starts (2025-08-08)
    auto = chain("NIFTY", "2025-03-03", bars=nifty, vix=vix, volatility="auto", strikes=1)
    np.testing.assert_allclose(auto["sigma"], expected)


def test_no_peeking_into_a_forming_bar(nifty, vix):
    # at 12:00 IST on 2025-09-02 the day's bar has not closed: spot is 09-01's close
    at = pd.Timestamp("2025-09-02 12:00", tz="Asia/Kolkata")
    c = chain("NIFTY", at, bars=nifty, vix=vix, strikes=0)
    assert (c["spot"] == 24625.05).all() and np.allclose(c["sigma"], 0.1129)
    assert (c["expiry"] == date(2025, 9, 2)).all()
    assert np.allclose(c["t"], 3.5 / 24 / 365)


def test_skew_and_explicit_expiry(nifty):
    flat = chain("NIFTY", "2025-09-01", bars=nifty, sigma=0.12, strikes=4, expiry=1)
    assert (flat["expiry"] == date(2025, 9, 9)).all()
    skewed = chain("NIFTY", "2025-09-01", bars=nifty, sigma=0.12, strikes=4, skew=-2.0)
    m = np.log(skewed["strike"] / skewed["forward"])
    np.testing.assert_allclose(skewed["sigma"], 0.12 * (1 - 2.0 * m))
    assert skewed["price_note"].str.contains("skew -2.0").all()
    monthly = chain("NIFTY", "2025-09-01", bars=nifty, sigma=0.12, expiry="2025-09-30")
    assert (monthly["expiry"] == date(2025, 9, 30)).all()


def test_strike_selection(nifty):
    c = chain("NIFTY", "2025-09-01", bars=nifty, sigma=0.12, strikes=8, expiry=3)
    assert select_strike(c, "CE", offset=0)["strike"] == 24650.0
    assert select_strike(c, "CE", offset=2)["strike"] == 24750.0
    assert select_strike(c, "PE", offset=2)["strike"] == 24550.0
    assert select_strike(c, "PE", offset=-1)["strike"] == 24700.0
    row = select_strike(c, "PE", delta=0.25)
    puts = c[c["kind"] == "PE"]
    assert abs(abs(row["delta"]) - 0.25) == (puts["delta"].abs() - 0.25).abs().min()
    row = select_strike(c, "CE", premium=100.0)
    calls = c[c["kind"] == "CE"]
    assert abs(row["price"] - 100.0) == (calls["price"] - 100.0).abs().min()
    with pytest.raises(ValidationError, match="outside the chain"):
        select_strike(c, "CE", offset=30)
    with pytest.raises(ValidationError, match="exactly one"):
        select_strike(c, "CE", offset=1, delta=0.3)


@pytest.mark.postgres
def test_chain_reads_the_store(store, nifty, vix):
    """bars=None / vix=None: the same chain from the bundled bars imported into PostgreSQL."""
    from velox.data import ensure_bundled

    ensure_bundled(["NSE:NIFTY", "NSE:INDIAVIX"], "1d", store=store)
    stored = chain("NIFTY", "2025-09-01", store=store, strikes=3)
    given = chain("NIFTY", "2025-09-01", bars=nifty, vix=vix, strikes=3)
    pd.testing.assert_frame_equal(stored, given)
    assert stored["price_note"].str.contains("India VIX 11.29").all()
    with pytest.raises(DataError, match="NSE:BANKNIFTY"):
        chain("BANKNIFTY", "2025-09-01", store=store)


def test_bad_input(nifty, vix):
    with pytest.raises(ValidationError, match="naive"):
        chain("NIFTY", pd.Timestamp("2025-09-01 12:00"), bars=nifty, vix=vix)
    with pytest.raises(DataError, match="had closed"):
        chain("NIFTY", "2024-01-02", bars=nifty, vix=vix)
    with pytest.raises(DataError, match="India VIX"):
        chain("NIFTY", "2025-03-03", bars=nifty, vix=vix, volatility="vix")
    with pytest.raises(ValidationError, match="volatility="):
        chain("NIFTY", "2025-09-01", bars=nifty, volatility="implied")


def test_docstring_examples_run(monkeypatch):
    import doctest

    import velox.options

    monkeypatch.chdir(BARS.parent.parent)  # the examples read data/bars/
    result = doctest.testmod(velox.options, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 12
