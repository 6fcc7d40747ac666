"""velox.fno.option_feed: the option contracts an engine replay may trade, and their bars.

References: Black-76 from vollib on the forward carried by hand, the expiry dates and strike
steps of June 2022 written out, and bars written to a real PostgreSQL store.
"""

from __future__ import annotations

import math
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox.errors import ValidationError
from velox.fno import option_feed
from velox.types import InstrumentKind

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black

ROOT = Path(__file__).resolve().parents[1]
IST = "Asia/Kolkata"
RATE, SIGMA = 0.065, 0.15


@pytest.fixture(scope="module")
def nifty() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data/bars/NIFTY_1m_2021_2022.csv.gz", index_col=0, parse_dates=True)


@pytest.fixture(scope="module")
def feed(nifty):  # noqa: ANN001, ANN201
    return option_feed(nifty, start="2022-06-15", end="2022-06-17", strikes=2, sigma=SIGMA,
                       freeze_qty=1_800)  # fmt: skip


def _premium(spot: float, strike: float, kind: str, at: pd.Timestamp, expiry: str) -> float:
    t = (pd.Timestamp(f"{expiry} 15:30", tz=IST) - at).total_seconds() / (365 * 86_400)
    price = vollib_black(kind[0].lower(), spot * math.exp(RATE * t), strike, t, RATE, SIGMA)
    return max(round(round(price / 0.05) * 0.05, 2), 0.05)


def test_model_bars_close_at_black76_of_the_index_close_and_open_at_the_previous_close(nifty, feed):
    day = nifty.loc["2022-06-15"]
    bars = feed.bars[("NFO:NIFTY2261615700PE", "1m")].loc["2022-06-15"]
    assert (bars.index == day.index).all() and len(bars) == len(day) == 375  # every minute
    for i in (0, 1, 4, 200, len(day) - 1):
        end = day.index[i] + pd.Timedelta(minutes=1)
        expected = _premium(day["close"].iloc[i], 15_700, "PE", end, "2022-06-16")
        assert bars["close"].iloc[i] == pytest.approx(expected, abs=1e-9)
    first = _premium(day["open"].iloc[0], 15_700, "PE", day.index[0], "2022-06-16")
    assert bars["open"].iloc[0] == pytest.approx(first, abs=1e-9)
    assert (bars["open"].to_numpy()[1:] == bars["close"].to_numpy()[:-1]).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


def test_each_session_lists_strikes_beyond_its_range_on_the_next_expiry(nifty, feed):
    contracts = feed.contracts
    for day, expiry in ((date(2022, 6, 15), date(2022, 6, 16)), (date(2022, 6, 16),
                        date(2022, 6, 16)), (date(2022, 6, 17), date(2022, 6, 23))):  # fmt: skip
        session = nifty.loc[str(day)]
        rows = contracts[contracts["date"] == day]
        assert set(rows["expiry"]) == {expiry}  # expiry day: its own contract, until the close
        low = math.floor(session["low"].min() / 50) * 50 - 2 * 50
        high = math.ceil(session["high"].max() / 50) * 50 + 2 * 50
        assert sorted(set(rows["strike"])) == list(np.arange(low, high + 1, 50.0))
        assert (rows.groupby("strike")["kind"].apply(sorted) == [["CE", "PE"]] * len(
            set(rows["strike"]))).all()  # fmt: skip
    ins = feed.instruments["NFO:NIFTY2262315300CE"]  # 23 Jun: a weekly, in the weekly symbol
    assert ins.kind is InstrumentKind.CE and ins.expiry == date(2022, 6, 23)
    assert not any("22JUN" in iid for iid in feed.instruments)  # no monthly (30 Jun) listed


def test_every_output_is_labelled_model_priced(feed):
    assert feed.price_source == "model" and feed.model_priced
    assert (feed.contracts["price_source"] == "model").all()
    assert feed.contracts.attrs["model_priced"] is True


def test_instrument_rows_carry_lot_freeze_and_fall_back_to_the_master(feed):
    ins = feed.instruments["NFO:NIFTY2261615700CE"]
    assert (ins.lot_size, ins.freeze_qty, ins.strike, ins.expiry, ins.tick_size) == (
        50, 1_800, 15_700.0, date(2022, 6, 16), 0.05,
    )  # fmt: skip
    lookup = feed.lookup()
    assert lookup("NFO:NIFTY2261615700CE") is ins
    assert lookup("NSE:NIFTY").id == "NSE:NIFTY"  # the underlying, from the bundled master


def test_stored_option_bars_replace_the_model_for_their_contract(nifty, store):
    day = nifty.loc["2022-06-15"]
    closes = np.round(np.linspace(150.0, 70.0, len(day)), 2)
    stored = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes,
                           "volume": 0.0}, index=day.index)  # fmt: skip
    store.write_bars("NFO:NIFTY2261615700CE", "1m", stored)
    feed = option_feed(nifty, start="2022-06-15", end="2022-06-15", strikes=1, sigma=SIGMA,
                       freeze_qty=1_800, option_bars=store)  # fmt: skip
    rows = feed.contracts.set_index("instrument_id")
    assert rows.loc["NFO:NIFTY2261615700CE", "price_source"] == "bars"
    assert rows.loc["NFO:NIFTY2261615700PE", "price_source"] == "model"
    assert feed.price_source == "model"  # some legs are still on the model
    got = feed.bars[("NFO:NIFTY2261615700CE", "1m")]
    assert got["close"].to_numpy().tolist() == closes.tolist()


def test_bad_input_is_a_one_line_error(nifty):
    with pytest.raises(ValidationError, match="freeze_qty"):
        option_feed(nifty, start="2022-06-15", end="2022-06-15", sigma=SIGMA)  # table starts 2025
    with pytest.raises(ValidationError, match="tz-aware"):
        option_feed(nifty.tz_localize(None), sigma=SIGMA, freeze_qty=1_800)
    with pytest.raises(ValidationError, match="strikes"):
        option_feed(nifty, strikes=-1, sigma=SIGMA, freeze_qty=1_800)


def test_docstring_examples_run(monkeypatch):
    import doctest

    import velox.fno.replay

    monkeypatch.chdir(ROOT)  # the example reads data/bars/
    result = doctest.testmod(velox.fno.replay, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
