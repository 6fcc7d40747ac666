"""Tests for velox.fno's basket backtester on the bundled real NIFTY 1-minute bars (2021-22).

No option prices exist for those days, so legs are model-priced; the references are built here
independently: spot read straight from the CSV, Black-76 from vollib, time to expiry by hand,
contract-note charges from the published rates (docs/charges.md) in Decimal arithmetic.
"""

from __future__ import annotations

import math
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fno_notes import half_up, note_2022
from scipy.stats import norm

from velox.errors import ValidationError
from velox.fno import (
    CHARGE_KINDS,
    Leg,
    backtest_basket,
    covered_call,
    iron_condor,
    split_order,
    straddle,
    strangle,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black
    from vollib.black.implied_volatility import implied_volatility as vollib_iv

BARS = Path(__file__).resolve().parent.parent / "data" / "bars"
IST = "Asia/Kolkata"
RATE = 0.065
LOT = 50  # NIFTY lot from the July 2021 series to April 2024


@pytest.fixture(scope="module")
def nifty() -> pd.DataFrame:
    return pd.read_csv(BARS / "NIFTY_1m_2021_2022.csv.gz", index_col=0, parse_dates=True)


def close_at(bars: pd.DataFrame, moment: str) -> float:
    """The index at ``moment``: the close of the 1-minute bar that ended then."""
    start = pd.Timestamp(moment, tz=IST) - pd.Timedelta(minutes=1)
    return float(bars.loc[start, "close"])


def years(moment: str, expiry: str) -> float:
    gap = pd.Timestamp(f"{expiry} 15:30", tz=IST) - pd.Timestamp(moment, tz=IST)
    return gap.total_seconds() / (365 * 86_400)


def model_premium(spot: float, strike: float, kind: str, moment: str, expiry: str, sigma: float):
    """Black-76 (vollib) on the carried forward, on the 0.05 grid (nearest, >= 0.05)."""
    t = years(moment, expiry)
    price = vollib_black(kind[0].lower(), spot * math.exp(RATE * t), strike, t, RATE, sigma)
    return max(round(round(price / 0.05) * 0.05, 2), 0.05)


def test_hand_worked_iron_condor_on_real_nifty(nifty):
    sigma = 0.18
    res = backtest_basket(
        iron_condor(2, 2), nifty, start="2022-06-15", end="2022-06-15", sigma=sigma,
        freeze_qty=1_800,
    )  # fmt: skip
    legs = res.legs
    spot_in = close_at(nifty, "2022-06-15 09:20")
    spot_out = close_at(nifty, "2022-06-15 15:15")
    atm = round(spot_in / 50) * 50
    expected = [  # sell 2 steps OTM, buy 4 steps OTM, each side
        ("CE", "sell", atm + 100), ("CE", "buy", atm + 200),
        ("PE", "sell", atm - 100), ("PE", "buy", atm - 200),
    ]  # fmt: skip
    assert list(zip(legs["kind"], legs["side"], legs["strike"], strict=True)) == expected
    assert (legs["expiry"] == date(2022, 6, 16)).all()  # the Thursday weekly
    assert (legs["qty"] == LOT).all() and (legs["orders"] == 1).all()
    assert (legs["exit_time"] == pd.Timestamp("2022-06-15 15:15", tz=IST)).all()

    total_pnl, total_charges = 0.0, 0.0
    for row, (kind, side, strike) in zip(legs.itertuples(), expected, strict=True):
        p_in = model_premium(spot_in, strike, kind, "2022-06-15 09:20", "2022-06-16", sigma)
        p_out = model_premium(spot_out, strike, kind, "2022-06-15 15:15", "2022-06-16", sigma)
        assert (row.entry_price, row.exit_price) == (p_in, p_out)
        sign = 1 if side == "buy" else -1
        pnl = round(sign * LOT * (p_out - p_in), 2)
        assert row.pnl == pnl
        buy, sell = (LOT * p_in, LOT * p_out) if side == "buy" else (LOT * p_out, LOT * p_in)
        note = note_2022(buy, sell, orders=2)
        assert {k: getattr(row, k) for k in CHARGE_KINDS} == note
        assert row.charges == pytest.approx(sum(note.values()), abs=1e-9)
        total_pnl += pnl
        total_charges += sum(note.values())
    trade = res.trades.iloc[0]
    assert trade["pnl"] == pytest.approx(total_pnl, abs=1e-9)
    assert trade["net_pnl"] == pytest.approx(total_pnl - total_charges, abs=1e-9)
    assert res.charges["brokerage"] == 160.0  # 4 legs × (entry + exit) × ₹20


def test_every_output_is_labelled_model(nifty):
    res = backtest_basket(straddle(), nifty, start="2022-06-13", end="2022-06-14", sigma=0.2,
                          freeze_qty=1_800)  # fmt: skip
    assert res.price_source == "model"
    assert set(res.legs["price_source"]) == {"model"} == set(res.trades["price_source"])
    for frame in (res.legs, res.trades, res.greeks):
        assert frame.attrs["price_source"] == "model" and frame.attrs["model_priced"] is True


def test_settled_at_intrinsic_with_exercise_stt(nifty):
    # A long straddle bought on expiry day and held to settlement: one leg ends ITM.
    sigma = 0.2
    res = backtest_basket(straddle("buy"), nifty, start="2022-06-16", end="2022-06-16",
                          hold="expiry", exit="settle", sigma=sigma, freeze_qty=1_800)  # fmt: skip
    spot_in = close_at(nifty, "2022-06-16 09:20")
    settle = close_at(nifty, "2022-06-16 15:30")  # the day's last close
    strike = round(spot_in / 50) * 50
    itm_seen = False
    for row in res.legs.itertuples():
        assert row.strike == strike and row.exit_reason == "settled"
        intrinsic = max(settle - strike, 0.0) if row.kind == "CE" else max(strike - settle, 0.0)
        p_in = model_premium(spot_in, strike, row.kind, "2022-06-16 09:20", "2022-06-16", sigma)
        assert row.exit_price == round(intrinsic, 2)
        assert row.pnl == round(LOT * (round(intrinsic, 2) - p_in), 2)
        # bought only: no exit order, STT only on exercise of the ITM leg
        note = note_2022(LOT * p_in, 0.0, orders=1, exercise_intrinsic=LOT * round(intrinsic, 2))
        assert {k: getattr(row, k) for k in CHARGE_KINDS} == note
        itm_seen |= intrinsic > 0 and note["exercise_stt"] > 0
    assert itm_seen


def test_combined_stop_loss_exits_at_the_first_bar_past_it(nifty):
    sigma, stop = 0.2, 2_000.0
    res = backtest_basket(straddle("sell"), nifty, start="2022-06-16", end="2022-06-16",
                          stop_loss=stop, sigma=sigma, freeze_qty=1_800)  # fmt: skip
    spot_in = close_at(nifty, "2022-06-16 09:20")
    strike = round(spot_in / 50) * 50
    entry = {k: model_premium(spot_in, strike, k, "2022-06-16 09:20", "2022-06-16", sigma)
             for k in ("CE", "PE")}  # fmt: skip
    hit = None
    for minute in pd.date_range("2022-06-16 09:21", "2022-06-16 15:15", freq="1min", tz=IST):
        m = str(minute.tz_localize(None))
        s = close_at(nifty, m)
        loss = sum(
            LOT * (model_premium(s, strike, k, m, "2022-06-16", sigma) - entry[k])
            for k in ("CE", "PE")
        )
        if loss >= stop:
            hit = minute
            break
    assert hit is not None, "the day should move enough to stop this straddle"
    assert (res.legs["exit_time"] == hit).all() and (res.legs["exit_reason"] == "stop loss").all()
    assert res.trades.iloc[0]["pnl"] <= -stop


def test_per_leg_stop_exits_only_that_leg(nifty):
    sigma = 0.2
    legs = [Leg("CE", "sell", stop_loss=0.3), Leg("PE", "sell", stop_loss=0.3)]
    res = backtest_basket(legs, nifty, start="2022-06-16", end="2022-06-16", sigma=sigma,
                          freeze_qty=1_800)  # fmt: skip
    spot_in = close_at(nifty, "2022-06-16 09:20")
    strike = round(spot_in / 50) * 50
    reasons = {}
    for kind in ("CE", "PE"):
        p_in = model_premium(spot_in, strike, kind, "2022-06-16 09:20", "2022-06-16", sigma)
        first = None
        for minute in pd.date_range("2022-06-16 09:21", "2022-06-16 15:15", freq="1min", tz=IST):
            m = str(minute.tz_localize(None))
            p = model_premium(close_at(nifty, m), strike, kind, m, "2022-06-16", sigma)
            if p >= p_in * 1.3:
                first = (minute, p)
                break
        row = res.legs[res.legs["kind"] == kind].iloc[0]
        if first is None:
            assert row["exit_reason"] == "time"
        else:
            assert (row["exit_time"], row["exit_price"]) == first
        reasons[kind] = row["exit_reason"]
    assert "leg stop" in reasons.values() and "time" in reasons.values()


def test_freeze_quantity_splits_orders(nifty):
    assert split_order(2_600, 65, 1_800) == [1_755, 845]  # 27 lots of 65 fit in 1,800
    assert split_order(1_800, 50, 1_800) == [1_800]
    assert split_order(2_000, 50, 1_800) == [1_800, 200]
    with pytest.raises(ValidationError, match="multiple of the lot size 65"):
        split_order(100, 65, 1_800)
    res = backtest_basket(straddle("sell", lots=40), nifty, start="2022-06-15", end="2022-06-15",
                          sigma=0.2, freeze_qty=1_800)  # fmt: skip
    assert (res.legs["qty"] == 2_000).all() and (res.legs["orders"] == 2).all()
    assert (res.legs["brokerage"] == 80.0).all()  # 2 entry + 2 exit orders × ₹20
    # the dated table starts in Dec 2025: for 2022 the caller must say the limit
    with pytest.raises(ValidationError, match="no freeze quantity for NIFTY on 2022-06-15"):
        backtest_basket(straddle(), nifty, start="2022-06-15", end="2022-06-15", sigma=0.2)


@pytest.mark.parametrize(
    ("hold", "exit_at"), [("day", "15:15"), ("expiry", "settle"), ("expiry", "15:00")]
)
def test_basket_equals_the_legs_placed_one_by_one(nifty, hold, exit_at):
    legs = [*iron_condor(2, 3), Leg("CE", "sell", 2, offset=1, stop_loss=0.4)]
    common = dict(start="2022-06-06", end="2022-06-17", hold=hold, exit=exit_at,
                  freeze_qty=1_800)  # fmt: skip
    basket = backtest_basket(legs, nifty, **common).legs
    singles = [backtest_basket([leg], nifty, **common).legs.assign(leg=j)
               for j, leg in enumerate(legs)]  # fmt: skip
    one_by_one = pd.concat(singles).sort_values(["entry_time", "leg"]).reset_index(drop=True)
    cols = ["entry_time", "leg", "strike", "expiry", "entry_price", "exit_time", "exit_price",
            "pnl", *CHARGE_KINDS, "charges", "net_pnl"]  # fmt: skip
    pd.testing.assert_frame_equal(basket[cols].reset_index(drop=True), one_by_one[cols])
    assert basket["pnl"].sum() == pytest.approx(one_by_one["pnl"].sum(), abs=1e-6)


def test_greeks_at_entry_match_black76_by_hand(nifty):
    sigma = 0.2
    res = backtest_basket(strangle(2), nifty, start="2022-06-15", end="2022-06-15", sigma=sigma,
                          freeze_qty=1_800)  # fmt: skip
    spot = close_at(nifty, "2022-06-15 09:20")
    t = years("2022-06-15 09:20", "2022-06-16")
    forward = spot * math.exp(RATE * t)
    delta = 0.0
    for row in res.legs.itertuples():
        d1 = (math.log(forward / row.strike) + 0.5 * sigma**2 * t) / (sigma * math.sqrt(t))
        unit = math.exp(-RATE * t) * (norm.cdf(d1) if row.kind == "CE" else norm.cdf(d1) - 1)
        delta += -LOT * unit  # both sold
    first = res.greeks.iloc[0]
    assert res.greeks.index[0] == pd.Timestamp("2022-06-15 09:20", tz=IST)
    assert first["delta"] == pytest.approx(delta, rel=1e-9)
    assert first["theta"] > 0 and first["vega"] < 0  # a short strangle earns decay, is short vol


def test_realised_volatility_is_from_days_before_entry(nifty):
    res = backtest_basket(straddle(), nifty, start="2022-06-15", end="2022-06-15",
                          freeze_qty=1_800)  # fmt: skip
    daily = nifty["close"].groupby(nifty.index.date).last()
    before = daily[daily.index < date(2022, 6, 15)].tail(21)
    expected = np.std(np.diff(np.log(before.to_numpy())), ddof=1) * math.sqrt(252)
    assert res.trades.iloc[0]["sigma"] == pytest.approx(expected, rel=1e-12)


def test_option_bars_replace_the_model_for_their_leg(nifty):
    day = nifty.loc["2022-06-15"]
    spot_in = close_at(nifty, "2022-06-15 09:20")
    strike = round(spot_in / 50) * 50
    ce = pd.DataFrame({"close": np.linspace(120.0, 60.0, len(day))}, index=day.index)
    res = backtest_basket(straddle(), nifty, start="2022-06-15", end="2022-06-15", sigma=0.2,
                          freeze_qty=1_800,
                          option_bars={(date(2022, 6, 16), float(strike), "CE"): ce})  # fmt: skip
    row = res.legs.set_index("kind").loc["CE"]
    assert row["price_source"] == "bars"
    start_in = pd.Timestamp("2022-06-15 09:19", tz=IST)
    start_out = pd.Timestamp("2022-06-15 15:14", tz=IST)
    assert row["entry_price"] == round(round(ce.loc[start_in, "close"] / 0.05) * 0.05, 2)
    assert row["exit_price"] == round(round(ce.loc[start_out, "close"] / 0.05) * 0.05, 2)
    assert res.legs.set_index("kind").loc["PE", "price_source"] == "model"
    assert res.price_source == "model"  # still partly model-priced
    # Greeks: the traded CE at the implied volatility of its close (vollib's solver), the
    # model PE at σ 0.2; both sold, 50 units each
    for minute in ("2022-06-15 09:20", "2022-06-15 12:00"):
        spot = close_at(nifty, minute)
        t = years(minute, "2022-06-16")
        forward = spot * math.exp(RATE * t)
        start = pd.Timestamp(minute, tz=IST) - pd.Timedelta(minutes=1)
        premium = row["entry_price"] if minute.endswith("09:20") else ce.loc[start, "close"]
        premium = round(round(premium / 0.05) * 0.05, 2)
        iv = vollib_iv(premium, forward, strike, RATE, t, "c")
        delta = 0.0
        for vol, kind in ((iv, "CE"), (0.2, "PE")):
            d1 = (math.log(forward / strike) + 0.5 * vol**2 * t) / (vol * math.sqrt(t))
            n1 = norm.cdf(d1)
            delta += -LOT * math.exp(-RATE * t) * (n1 if kind == "CE" else n1 - 1)
        got = res.greeks.loc[pd.Timestamp(minute, tz=IST), "delta"]
        assert got == pytest.approx(delta, rel=1e-6)


def test_bad_input_is_a_clear_error(nifty):
    with pytest.raises(ValidationError, match="Leg.side='short' must be 'buy' or 'sell'"):
        Leg("CE", "short")
    with pytest.raises(ValidationError, match="at most one of offset=, delta="):
        Leg("CE", "sell", offset=1, delta=0.3)
    with pytest.raises(ValidationError, match="Leg.lots=0"):
        Leg("PE", "buy", lots=0)
    with pytest.raises(ValidationError, match="exit='settle' needs hold='expiry'"):
        backtest_basket(straddle(), nifty, exit="settle")
    with pytest.raises(ValidationError, match="exit='09:00' must be after entry='09:20'"):
        backtest_basket(straddle(), nifty, exit="09:00")
    with pytest.raises(ValidationError, match="entry='9.20' must be a time of day"):
        backtest_basket(straddle(), nifty, entry="9.20")


def test_target_exits_at_the_first_bar_reaching_it(nifty):
    sigma, target = 0.2, 600.0
    res = backtest_basket(straddle("sell"), nifty, start="2022-06-15", end="2022-06-15",
                          target=target, sigma=sigma, freeze_qty=1_800)  # fmt: skip
    spot_in = close_at(nifty, "2022-06-15 09:20")
    strike = round(spot_in / 50) * 50
    entry = {k: model_premium(spot_in, strike, k, "2022-06-15 09:20", "2022-06-16", sigma)
             for k in ("CE", "PE")}  # fmt: skip
    hit = None
    for minute in pd.date_range("2022-06-15 09:21", "2022-06-15 15:15", freq="1min", tz=IST):
        m = str(minute.tz_localize(None))
        s = close_at(nifty, m)
        gain = sum(LOT * (entry[k] - model_premium(s, strike, k, m, "2022-06-16", sigma))
                   for k in ("CE", "PE"))  # fmt: skip
        if gain >= target:
            hit = minute
            break
    assert hit is not None, "a day of decay should reach this target"
    assert (res.legs["exit_time"] == hit).all() and (res.legs["exit_reason"] == "target").all()
    assert res.trades.iloc[0]["pnl"] >= target


def test_covered_call_future_leg_and_its_charges_by_hand(nifty):
    sigma = 0.2
    res = backtest_basket(covered_call(2), nifty, start="2022-06-15", end="2022-06-15",
                          sigma=sigma, freeze_qty=1_800)  # fmt: skip
    fut = res.legs.set_index("kind").loc["FUT"]
    assert fut["expiry"] == date(2022, 6, 30)  # the June monthly (last Thursday)
    prices = []
    for moment in ("2022-06-15 09:20", "2022-06-15 15:15"):
        forward = close_at(nifty, moment) * math.exp(RATE * years(moment, "2022-06-30"))
        prices.append(round(round(forward / 0.05) * 0.05, 2))
    assert (fut["entry_price"], fut["exit_price"]) == tuple(prices)
    buy, sell = LOT * prices[0], LOT * prices[1]
    # futures, June 2022: brokerage 0.03 % capped at ₹20 an order; STT 0.01 % of sell value
    # (before 1 Apr 2023); NSE 0.002 % (from 1 Jan 2021); SEBI ₹10/crore; stamp 0.002 % buy;
    # GST 18 % of brokerage + exchange charge
    brokerage = 2 * 20.0  # 0.03 % of ~₹7.9 lakh is ~₹237 an order: the cap applies
    exchange = half_up((buy + sell) * 0.00002, "0.01")
    expected = {
        "brokerage": brokerage,
        "stt": half_up(sell * 0.0001, "1"),
        "exercise_stt": 0.0,
        "exchange": exchange,
        "sebi": half_up((buy + sell) * 10 / 1e7, "0.01"),
        "stamp": half_up(buy * 0.00002, "1"),
        "gst": half_up((brokerage + exchange) * 0.18, "0.01"),
    }
    assert {k: fut[k] for k in CHARGE_KINDS} == expected
    assert fut["pnl"] == round(LOT * (prices[1] - prices[0]), 2)
    assert res.greeks.iloc[0]["delta"] > 0  # long future, short OTM call: net long


def test_option_bars_stored_in_postgresql_price_their_leg(nifty, store):
    day = nifty.loc["2022-06-15"]
    strike = round(close_at(nifty, "2022-06-15 09:20") / 50) * 50
    closes = np.round(np.linspace(150.0, 70.0, len(day)), 2)
    bars = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes,
                         "volume": 0.0}, index=day.index)  # fmt: skip
    # the weekly 16 Jun 2022 contract in Kite's symbol rule: NIFTY + 22 + 6 + 16 + strike + CE
    store.write_bars(f"NFO:NIFTY22616{strike}CE", "1m", bars)
    res = backtest_basket(straddle(), nifty, start="2022-06-15", end="2022-06-15", sigma=0.2,
                          freeze_qty=1_800, option_bars=store)  # fmt: skip
    legs = res.legs.set_index("kind")
    assert legs.loc["CE", "price_source"] == "bars" and legs.loc["PE", "price_source"] == "model"
    entry = bars.loc[pd.Timestamp("2022-06-15 09:19", tz=IST), "close"]
    exit_ = bars.loc[pd.Timestamp("2022-06-15 15:14", tz=IST), "close"]
    snap = lambda x: round(round(x / 0.05) * 0.05, 2)  # noqa: E731
    assert (legs.loc["CE", "entry_price"], legs.loc["CE", "exit_price"]) == (
        snap(entry),
        snap(exit_),
    )
    assert legs.loc["CE", "pnl"] == round(-LOT * (snap(exit_) - snap(entry)), 2)
