"""Tests for velox.fno payoff diagrams, the SPAN-like margin estimate and the leg builders.

Payoffs at expiry against values worked by hand; margin scenarios revalued here with vollib's
Black-76; builders against the structures' textbook definitions.
"""

from __future__ import annotations

import math
import warnings
from datetime import date

import numpy as np
import pandas as pd
import pytest

from velox.errors import ValidationError
from velox.fno import (
    Position,
    butterfly,
    calendar,
    covered_call,
    iron_condor,
    margin,
    payoff,
    payoff_plot,
    ratio_spread,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black

EXPIRY = date(2022, 6, 16)
AT = pd.Timestamp("2022-06-15 09:20", tz="Asia/Kolkata")
RATE = 0.065


def pos(kind, sign, strike, price, qty=50, expiry=EXPIRY):
    return Position(kind, sign, float(strike), expiry, qty, qty // 50, 50, price)


def condor():
    return [
        pos("CE", -1, 15_900, 93.50), pos("CE", 1, 16_000, 58.90),
        pos("PE", -1, 15_700, 72.75), pos("PE", 1, 15_600, 43.55),
    ]  # fmt: skip


def test_iron_condor_payoff_at_expiry_by_hand():
    # net credit 93.50 − 58.90 + 72.75 − 43.55 = 63.80 a unit, 50 units
    spots = [15_400, 15_500, 15_650, 15_700, 15_800, 15_950, 16_100, 16_300]
    frame = payoff(condor(), spots)
    expected = {
        15_400: (63.80 - 100) * 50,  # both put strikes ITM: the 100-point spread is lost
        15_500: (63.80 - 100) * 50,
        15_650: (63.80 - 50) * 50,  # short put 50 ITM
        15_700: 63.80 * 50,  # at the short strike: keep the credit
        15_800: 63.80 * 50,
        15_950: (63.80 - 50) * 50,
        16_100: (63.80 - 100) * 50,
        16_300: (63.80 - 100) * 50,
    }
    assert frame["at_expiry"].to_dict() == pytest.approx(expected, abs=1e-9)


def test_payoff_at_entry_is_the_model_value_now():
    sigma, spot = 0.18, 15_800.0
    frame = payoff(condor(), [spot], at=AT, sigma=sigma)
    t = (pd.Timestamp("2022-06-16 15:30", tz="Asia/Kolkata") - AT).total_seconds() / (365 * 86400)
    forward = spot * math.exp(RATE * t)
    value = sum(
        p.sign * p.qty * (vollib_black(p.kind[0].lower(), forward, p.strike, t, RATE, sigma)
                          - p.entry_price)
        for p in condor()
    )  # fmt: skip
    assert frame.loc[spot, "at_entry"] == pytest.approx(value, abs=0.01)


def test_calendar_payoff_values_the_far_leg_on_the_model():
    far = date(2022, 6, 23)
    legs = [pos("CE", -1, 15_800, 80.0), pos("CE", 1, 15_800, 150.0, expiry=far)]
    sigma = 0.2
    frame = payoff(legs, [15_600, 15_800, 16_000], at=AT, sigma=sigma)
    left = 7 / 365  # from the near expiry's close to the far one's
    for spot, got in frame["at_expiry"].items():
        near = -50 * (max(spot - 15_800, 0) - 80.0)
        far_value = 50 * (vollib_black("c", spot * math.exp(RATE * left), 15_800, left, RATE,
                                       sigma) - 150.0)  # fmt: skip
        assert got == pytest.approx(near + far_value, abs=0.01)
    with pytest.raises(ValidationError, match="give at= and sigma="):
        payoff(legs, [15_800])


def test_payoff_plot_draws_the_frame():
    import holoviews as hv

    frame = payoff(condor(), np.arange(15_300, 16_400, 50), at=AT, sigma=0.18)
    plot = payoff_plot(frame)
    assert isinstance(plot, hv.Overlay)
    curves = [el for el in plot.traverse(lambda x: x, [hv.Curve])]
    assert curves and curves[0].data["at_expiry"].tolist() == frame["at_expiry"].tolist()


def scenario_losses(positions, spot, sigma):
    """Every SPAN-like scenario's weighted loss, revalued with vollib (independent)."""
    t = (pd.Timestamp("2022-06-16 15:30", tz="Asia/Kolkata") - AT).total_seconds() / (365 * 86400)

    def value(s, vol):
        f = s * math.exp(RATE * t)
        return sum(p.sign * p.qty * vollib_black(p.kind[0].lower(), f, p.strike, t, RATE, vol)
                   for p in positions)  # fmt: skip

    base = value(spot, sigma)
    out = [base - value(spot * (1 + m), sigma + v)
           for m in np.linspace(-0.08, 0.08, 7) for v in (-0.04, 0.0, 0.04)]  # fmt: skip
    out += [0.35 * (base - value(spot * (1 + m), sigma)) for m in (-0.16, 0.16)]
    return out


def test_short_straddle_needs_more_margin_than_the_same_strike_iron_condor():
    spot, sigma = 15_800.0, 0.18
    straddle = [pos("CE", -1, 15_800, 120.0), pos("PE", -1, 15_800, 110.0)]
    condor = [*straddle, pos("CE", 1, 16_000, 40.0), pos("PE", 1, 15_600, 35.0)]
    m_straddle = margin(straddle, spot, at=AT, sigma=sigma)
    m_condor = margin(condor, spot, at=AT, sigma=sigma)
    assert m_straddle.total > m_condor.total
    # the worst scenario, revalued here
    assert m_straddle.span == pytest.approx(max(scenario_losses(straddle, spot, sigma)), abs=0.01)
    assert m_condor.span == pytest.approx(max(scenario_losses(condor, spot, sigma)), abs=0.01)
    # the wings cap the loss: never more than the 200-point spread on 50 units
    assert 0 < m_condor.span <= 200 * 50
    # exposure: 2 % of spot on the 100 sold units; the condor's shorts are covered per kind
    assert m_straddle.exposure == pytest.approx(0.02 * spot * 100, abs=0.005)
    assert m_condor.exposure == 0.0


def test_builders_are_the_textbook_structures():
    assert [(x.kind, x.side, x.offset) for x in iron_condor(1, 3)] == [
        ("CE", "sell", 1), ("CE", "buy", 4), ("PE", "sell", 1), ("PE", "buy", 4),
    ]  # fmt: skip
    fly = butterfly("PE", 2, lots=3)
    assert [(x.side, x.lots, x.offset) for x in fly] == [
        ("buy", 3, -2), ("sell", 6, 0), ("buy", 3, 2),
    ]  # fmt: skip
    assert sum(x.lots * x.sign for x in fly) == 0  # delta-neutral in lots
    cal = calendar("CE", 1, far=2)
    assert [(x.side, x.nth, x.offset) for x in cal] == [("sell", 0, 1), ("buy", 2, 1)]
    assert [(x.side, x.lots) for x in ratio_spread(ratio=(2, 3))] == [("buy", 2), ("sell", 3)]
    assert [(x.kind, x.expiry) for x in covered_call()] == [("FUT", "monthly"), ("CE", "monthly")]
    with pytest.raises(ValidationError, match="wing=0 must be >= 1"):
        iron_condor(2, 0)


def test_docstring_examples_run(monkeypatch):
    import doctest
    from pathlib import Path

    import velox.fno.basket
    import velox.fno.legs
    import velox.fno.margins
    import velox.fno.payoffs

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # examples read data/bars/
    for module in (velox.fno.legs, velox.fno.basket, velox.fno.payoffs, velox.fno.margins):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
