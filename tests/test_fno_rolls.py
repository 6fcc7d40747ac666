"""Tests for the per-leg roll adjustment of velox.fno's basket backtester (``Leg(roll=Roll(…))``).

On the bundled real NIFTY 1-minute bars of 21 June 2022 the index rallied about 200 points
from 09:20, so the call leg of a short ATM straddle is tested and rolled up. The expected roll
bars, strikes, premiums and charges are worked out here from the CSV: spot read straight from
the bars, the roll bar found by scanning the closes, strikes as the strike step nearest spot,
premiums from ``velox.options.black76_price`` on the carried forward (checked against vollib
once), the contract notes from the published June 2022 rates (docs/charges.md) in Decimal
arithmetic — not from the backtester's internals.
"""

from __future__ import annotations

import math
import warnings
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from fno_notes import note_2022
from scipy.stats import norm

from velox.errors import ValidationError
from velox.fno import CHARGE_KINDS, Leg, Roll, backtest_basket
from velox.options import black76_price

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black

BARS = Path(__file__).resolve().parent.parent / "data" / "bars"
IST = "Asia/Kolkata"
RATE = 0.065
SIGMA = 0.2
LOT = 50  # NIFTY lot in June 2022
DAY = "2022-06-21"
EXPIRY = "2022-06-23"  # the Thursday weekly of that week
STEP = 50.0


@pytest.fixture(scope="module")
def nifty() -> pd.DataFrame:
    return pd.read_csv(BARS / "NIFTY_1m_2021_2022.csv.gz", index_col=0, parse_dates=True)


def close_at(bars: pd.DataFrame, moment: pd.Timestamp) -> float:
    """The index at ``moment``: the close of the 1-minute bar that ended then."""
    return float(bars.loc[moment - pd.Timedelta(minutes=1), "close"])


def minutes(first: str, last: str) -> pd.DatetimeIndex:
    return pd.date_range(f"{DAY} {first}", f"{DAY} {last}", freq="1min", tz=IST)


def years(moment: pd.Timestamp) -> float:
    gap = pd.Timestamp(f"{EXPIRY} 15:30", tz=IST) - moment
    return gap.total_seconds() / (365 * 86_400)


def premium(bars: pd.DataFrame, strike: float, kind: str, moment: pd.Timestamp) -> float:
    """Black-76 on the index carried at RATE, σ 0.2, on the 0.05 grid (nearest, >= 0.05)."""
    t = years(moment)
    price = float(black76_price(close_at(bars, moment) * math.exp(RATE * t), strike, t, RATE,
                                SIGMA, kind))  # fmt: skip
    return max(round(round(price / 0.05) * 0.05, 2), 0.05)


def call_delta(bars: pd.DataFrame, strike: float, moment: pd.Timestamp) -> float:
    t = years(moment)
    forward = close_at(bars, moment) * math.exp(RATE * t)
    d1 = (math.log(forward / strike) + 0.5 * SIGMA**2 * t) / (SIGMA * math.sqrt(t))
    return math.exp(-RATE * t) * float(norm.cdf(d1))


def atm(spot: float) -> float:
    """The strike step nearest spot (no exact half-way spot occurs on the bars used)."""
    assert abs(spot / STEP - math.floor(spot / STEP) - 0.5) > 1e-9, spot
    return round(spot / STEP) * STEP


def first_minute(bars: pd.DataFrame, after: pd.Timestamp, test) -> pd.Timestamp | None:  # noqa: ANN001
    """The first bar close after ``after`` (before the 15:15 exit) where ``test(spot)``."""
    for minute in minutes("09:21", "15:14"):
        if minute > after and test(close_at(bars, minute)):
            return minute
    return None


def straddle_rolling_the_call(max_rolls: int) -> list[Leg]:
    """Sell 2 lots of the ATM CE and PE; roll the CE one strike step in the money, to ATM."""
    roll = Roll(through=50, offset=0, max_rolls=max_rolls)
    return [Leg("CE", "sell", 2, offset=0, roll=roll), Leg("PE", "sell", 2, offset=0)]


def test_black76_premium_here_agrees_with_vollib(nifty):
    moment = pd.Timestamp(f"{DAY} 09:20", tz=IST)
    t = years(moment)
    forward = close_at(nifty, moment) * math.exp(RATE * t)
    for kind in ("CE", "PE"):
        ref = vollib_black(kind[0].lower(), forward, 15_500.0, t, RATE, SIGMA)
        assert float(black76_price(forward, 15_500.0, t, RATE, SIGMA, kind)) == pytest.approx(
            ref, rel=1e-10
        )


def test_hand_worked_roll_of_a_tested_short_call(nifty):
    # 2 lots of 50 with a freeze quantity of 50 units: every order is one lot, so each entry and
    # each exit (the roll's close and its replacement's open included) goes out as 2 orders.
    res = backtest_basket(straddle_rolling_the_call(1), nifty, start=DAY, end=DAY, sigma=SIGMA,
                          freeze_qty=50)  # fmt: skip
    entry = pd.Timestamp(f"{DAY} 09:20", tz=IST)
    exit_ = pd.Timestamp(f"{DAY} 15:15", tz=IST)
    k0 = atm(close_at(nifty, entry))
    assert k0 == 15_500.0  # 09:20 close 15,480.35
    # tested: the first close at or above the strike + 50 points
    roll_at = first_minute(nifty, entry, lambda s: s >= k0 + 50)
    assert roll_at == pd.Timestamp(f"{DAY} 10:01", tz=IST)
    k1 = atm(close_at(nifty, roll_at))
    assert k1 == 15_550.0

    expected = [  # (leg, roll, kind, strike, entry, exit, exit reason)
        (0, 0, "CE", k0, entry, roll_at, "rolled"),
        (0, 1, "CE", k1, roll_at, exit_, "time"),
        (1, 0, "PE", k0, entry, exit_, "time"),
    ]
    legs = res.legs
    got = list(zip(legs["leg"], legs["roll"], legs["kind"], legs["strike"], legs["entry_time"],
                   legs["exit_time"], legs["exit_reason"], strict=True))  # fmt: skip
    assert got == expected
    assert (legs["side"] == "sell").all() and (legs["lots"] == 2).all()
    assert (legs["qty"] == 100).all() and (legs["orders"] == 2).all()
    assert (legs["expiry"] == date(2022, 6, 23)).all()  # the replacement keeps the expiry

    total_pnl = total_charges = 0.0
    for row, (_, _, kind, strike, t_in, t_out, _) in zip(legs.itertuples(), expected, strict=True):
        p_in, p_out = premium(nifty, strike, kind, t_in), premium(nifty, strike, kind, t_out)
        assert (row.entry_price, row.exit_price) == (p_in, p_out)
        pnl = round(-100 * (p_out - p_in), 2)  # sold 100 units
        assert row.pnl == pnl
        note = note_2022(buy=100 * p_out, sell=100 * p_in, orders=4)  # 2 to open, 2 to close
        assert {k: getattr(row, k) for k in CHARGE_KINDS} == note
        assert row.charges == pytest.approx(sum(note.values()), abs=1e-9)
        assert row.net_pnl == pytest.approx(pnl - sum(note.values()), abs=1e-9)
        total_pnl += pnl
        total_charges += sum(note.values())
    # the figures worked out above, written down
    assert legs[["entry_price", "exit_price"]].to_numpy().tolist() == [
        [90.6, 127.5], [100.1, 146.55], [104.05, 37.65],
    ]  # fmt: skip

    trade = res.trades.iloc[0]
    assert trade["rolls"] == 1 and trade["exit_reason"] == "time"
    assert trade["pnl"] == pytest.approx(total_pnl, abs=1e-9)
    assert trade["net_pnl"] == pytest.approx(total_pnl - total_charges, abs=1e-9)
    assert res.charges["brokerage"] == 3 * 80.0  # 3 contracts × (2 + 2 orders) × ₹20
    # P&L by leg: the strategy's CE leg is the rolled call and its replacement together
    by_leg = res.by_leg()
    assert by_leg.loc[0, "pnl"] == pytest.approx(legs["pnl"].iloc[:2].sum(), abs=1e-9)
    by_contract = res.by_leg(rolls=True)
    assert list(by_contract.index) == [(0, 0), (0, 1), (1, 0)]
    assert by_contract["net_pnl"].tolist() == legs["net_pnl"].tolist()

    # model prices, labelled as such everywhere, replacement included
    assert set(legs["price_source"]) == {"model"} and res.price_source == "model"
    for frame in (res.legs, res.trades, res.greeks):
        assert frame.attrs["price_source"] == "model" and frame.attrs["model_priced"] is True

    # Greeks: before the roll bar the basket holds the 15,500 call; at it, the replacement
    before = roll_at - pd.Timedelta(minutes=1)
    for moment, strike in ((before, k0), (roll_at, k1)):
        t = years(moment)
        forward = close_at(nifty, moment) * math.exp(RATE * t)
        d1 = (math.log(forward / k0) + 0.5 * SIGMA**2 * t) / (SIGMA * math.sqrt(t))
        put = math.exp(-RATE * t) * (float(norm.cdf(d1)) - 1.0)
        want = -100 * (call_delta(nifty, strike, moment) + put)
        assert res.greeks.loc[moment, "delta"] == pytest.approx(want, rel=1e-9)


def test_max_rolls_caps_the_adjustments(nifty):
    entry = pd.Timestamp(f"{DAY} 09:20", tz=IST)
    exit_ = pd.Timestamp(f"{DAY} 15:15", tz=IST)
    k0 = atm(close_at(nifty, entry))
    rolls_at, strikes = [], [k0]
    after = entry
    while (hit := first_minute(nifty, after, lambda s: s >= strikes[-1] + 50)) is not None:
        rolls_at.append(hit)
        strikes.append(atm(close_at(nifty, hit)))
        after = hit
    # by hand: the rally tests the call four times (15,550 at 10:01, then 15,600 … 15,700)
    assert strikes == [15_500.0, 15_550.0, 15_600.0, 15_650.0, 15_700.0]

    one = backtest_basket(straddle_rolling_the_call(1), nifty, start=DAY, end=DAY, sigma=SIGMA,
                          freeze_qty=50)  # fmt: skip
    calls = one.legs[one.legs["kind"] == "CE"]
    # one roll only, although the replacement was tested again at rolls_at[1]
    assert calls["strike"].tolist() == strikes[:2]
    assert calls["exit_reason"].tolist() == ["rolled", "time"]
    assert calls["exit_time"].tolist() == [rolls_at[0], exit_]
    assert one.trades.iloc[0]["rolls"] == 1

    two = backtest_basket(straddle_rolling_the_call(2), nifty, start=DAY, end=DAY, sigma=SIGMA,
                          freeze_qty=50)  # fmt: skip
    calls = two.legs[two.legs["kind"] == "CE"]
    assert calls["strike"].tolist() == strikes[:3]
    assert calls["roll"].tolist() == [0, 1, 2]
    assert calls["entry_time"].tolist() == [entry, rolls_at[0], rolls_at[1]]
    assert calls["exit_time"].tolist() == [rolls_at[0], rolls_at[1], exit_]
    assert calls["exit_reason"].tolist() == ["rolled", "rolled", "time"]
    # the second replacement at the second roll bar's prices
    row = calls.iloc[2]
    assert row["entry_price"] == premium(nifty, strikes[2], "CE", rolls_at[1])
    assert row["exit_price"] == premium(nifty, strikes[2], "CE", exit_)
    # both orders of each roll are charged: 2 + 2 per contract, 4 call contracts + 1 put
    assert two.charges["brokerage"] == 4 * 80.0
    assert two.trades.iloc[0]["rolls"] == 2
    # the put was never rolled and is the same in every run
    pe = [r.legs[r.legs["kind"] == "PE"].drop(columns="roll").reset_index(drop=True)
          for r in (one, two)]  # fmt: skip
    pd.testing.assert_frame_equal(pe[0], pe[1])


def test_delta_trigger_rolls_when_the_call_delta_reaches_it(nifty):
    legs = [Leg("CE", "sell", 1, roll=Roll(delta=0.7, offset=1))]
    res = backtest_basket(legs, nifty, start=DAY, end=DAY, sigma=SIGMA, freeze_qty=1_800)
    entry = pd.Timestamp(f"{DAY} 09:20", tz=IST)
    k0 = atm(close_at(nifty, entry))
    hit = next(m for m in minutes("09:21", "15:14") if call_delta(nifty, k0, m) >= 0.7)
    k1 = atm(close_at(nifty, hit)) + STEP  # one step out of the money of the ATM then
    assert res.legs["strike"].tolist() == [k0, k1]
    assert res.legs["exit_time"].iloc[0] == hit == res.legs["entry_time"].iloc[1]
    assert res.legs["entry_price"].iloc[1] == premium(nifty, k1, "CE", hit)
    assert res.legs["exit_reason"].tolist() == ["rolled", "time"]


def test_no_roll_to_the_same_contract(nifty):
    # through=0: tested as soon as the index is at the strike, but while the strike is still
    # the ATM step the replacement would be the same contract, so the roll waits for the
    # first close that makes another strike ATM.
    legs = [Leg("CE", "sell", 1, roll=Roll(through=0, max_rolls=1))]
    res = backtest_basket(legs, nifty, start=DAY, end=DAY, sigma=SIGMA, freeze_qty=1_800)
    entry = pd.Timestamp(f"{DAY} 09:20", tz=IST)
    k0 = atm(close_at(nifty, entry))
    tested = first_minute(nifty, entry, lambda s: s >= k0)
    rolled = first_minute(nifty, entry, lambda s: s >= k0 and atm(s) != k0)
    assert tested is not None and rolled is not None and tested < rolled  # a real wait
    assert res.legs["exit_time"].iloc[0] == rolled
    assert res.legs["strike"].tolist() == [k0, atm(close_at(nifty, rolled))]


def test_combined_stop_closes_the_replacement_and_cancels_later_rolls(nifty):
    stop = 3_000.0
    free = backtest_basket(straddle_rolling_the_call(3), nifty, start=DAY, end=DAY,
                           sigma=SIGMA, freeze_qty=50)  # fmt: skip
    stopped = backtest_basket(straddle_rolling_the_call(3), nifty, start=DAY, end=DAY,
                              sigma=SIGMA, freeze_qty=50, stop_loss=stop)  # fmt: skip
    # the basket's marked P&L by hand from the unstopped run's contracts: closed at their
    # exits, open ones at the model price of each close
    rows = free.legs
    hit = None
    for minute in minutes("09:21", "15:14"):
        pnl = 0.0
        for r in rows.itertuples():
            if r.entry_time > minute or (r.entry_time == minute and r.roll > 0):
                continue
            price = r.exit_price if r.exit_time <= minute else premium(nifty, r.strike, r.kind,
                                                                        minute)  # fmt: skip
            pnl += -r.qty * (price - r.entry_price)
        if pnl <= -stop:
            hit = minute
            break
    assert hit is not None
    legs = stopped.legs
    assert (legs["exit_time"] <= hit).all() and (legs["entry_time"] < hit).all()
    open_at_hit = legs[legs["exit_time"] == hit]
    assert set(open_at_hit["exit_reason"]) == {"stop loss"} and len(open_at_hit) == 2
    assert stopped.trades.iloc[0]["exit_reason"] == "stop loss"
    assert stopped.trades.iloc[0]["pnl"] <= -stop
    # the contracts before the stop are those of the free run
    same = free.legs[free.legs["entry_time"] < hit]
    assert legs["strike"].tolist() == same["strike"].tolist()


@pytest.mark.parametrize(("hold", "exit_at"), [("day", "15:15"), ("expiry", "settle")])
def test_rolling_basket_equals_its_legs_one_by_one(nifty, hold, exit_at):
    legs = [
        Leg("CE", "sell", offset=1, roll=Roll(through=0, offset=1, max_rolls=2)),
        Leg("PE", "sell", offset=1, roll=Roll(delta=0.55, max_rolls=3)),
        Leg("CE", "buy", offset=4),  # (a per-leg stop would end a single leg's hold="expiry"
    ]  # basket early and shift its next entry: a basket lives until its last leg exits)
    common = dict(start="2022-06-13", end="2022-06-24", hold=hold, exit=exit_at,
                  freeze_qty=1_800)  # fmt: skip
    basket = backtest_basket(legs, nifty, **common).legs
    assert (basket["roll"] > 0).any()
    singles = [backtest_basket([leg], nifty, **common).legs.assign(leg=j)
               for j, leg in enumerate(legs)]  # fmt: skip
    one_by_one = pd.concat(singles).sort_values(["entry_time", "leg", "roll"])
    basket = basket.sort_values(["entry_time", "leg", "roll"])
    cols = ["leg", "roll", "strike", "entry_time", "entry_price", "exit_time", "exit_price",
            "exit_reason", "pnl", *CHARGE_KINDS, "net_pnl"]  # fmt: skip
    pd.testing.assert_frame_equal(basket[cols].reset_index(drop=True),
                                  one_by_one[cols].reset_index(drop=True))  # fmt: skip


def test_bad_rolls_are_clear_errors():
    with pytest.raises(ValidationError, match="a Roll needs a trigger"):
        Roll()
    with pytest.raises(ValidationError, match="Roll.max_rolls=0"):
        Roll(through=0, max_rolls=0)
    with pytest.raises(ValidationError, match=r"Roll.delta=1.5 must be between 0 and 1"):
        Roll(delta=1.5)
    with pytest.raises(ValidationError, match="a FUT leg cannot roll"):
        Leg("FUT", "buy", roll=Roll(through=0))
    with pytest.raises(ValidationError, match="needs Roll\\(offset="):
        Leg("CE", "sell", strike=15_500, roll=Roll(through=0))
    assert Leg("CE", "sell", strike=15_500, roll=Roll(through=0, offset=0)).roll.offset == 0
