"""RiskEngine.check_basket: a basket is judged as a whole, all or nothing (hand-worked limits)."""

from __future__ import annotations

import pytest

from tests.test_risk import T0, View, order
from velox.errors import RiskBreach
from velox.risk import RiskEngine, RiskLimits
from velox.types import Side


def _engine(**limits: object) -> RiskEngine:
    return RiskEngine(RiskLimits(**limits))  # type: ignore[arg-type]


def test_position_limit_counts_every_leg_of_the_basket():
    engine = _engine(max_position_qty=150, duplicate_window_seconds=0)
    legs = [order("NSE:SBIN", Side.BUY, 100), order("NSE:SBIN", Side.BUY, 100)]
    for leg in legs:
        engine.check_order(leg, View())  # each alone: 100 <= 150
    with pytest.raises(RiskBreach) as info:
        engine.check_basket(legs, View())  # together: 200 > 150
    assert info.value.limit == "max_position_qty"
    engine.check_basket(legs[:1] + [order("NSE:SBIN", Side.BUY, 50)], View())  # 150: passes


def test_open_order_limit_counts_the_basket_once_whether_or_not_the_view_lists_it():
    engine = _engine(max_open_orders=3)
    legs = [order("NSE:SBIN", Side.BUY, q) for q in (1, 2, 3)]
    engine.check_basket(legs, View())  # 3 working once sent: at the limit
    engine.check_basket(legs, View(working=list(legs)))  # the engine's view lists them already
    with pytest.raises(RiskBreach) as info:
        engine.check_basket([*legs, order("NSE:SBIN", Side.BUY, 4)], View())
    assert info.value.limit == "max_open_orders"


def test_gross_exposure_values_the_whole_basket():
    engine = _engine(max_gross_exposure=300_000)
    # SBIN 800 × 200 = 1.6 lakh, RELIANCE 2,500 × 60 = 1.5 lakh: each fits, together 3.1 lakh
    legs = [order("NSE:SBIN", Side.BUY, 200), order("NSE:RELIANCE", Side.SELL, 60)]
    with pytest.raises(RiskBreach) as info:
        engine.check_basket(legs, View())
    assert info.value.limit == "max_gross_exposure"


def test_equal_split_orders_are_not_duplicates_but_a_repeat_of_a_sent_one_is():
    engine = _engine(duplicate_window_seconds=2)
    legs = [order("NSE:SBIN", Side.SELL, 100), order("NSE:SBIN", Side.SELL, 100)]
    engine.check_basket(legs, View())
    for leg in legs:
        engine.record_sent(leg, T0)
    with pytest.raises(RiskBreach) as info:
        engine.check_basket([order("NSE:SBIN", Side.SELL, 100)], View())
    assert info.value.limit == "duplicate_window_seconds"


def test_the_whole_basket_must_fit_the_throttle():
    engine = _engine(max_orders_per_second=4, duplicate_window_seconds=0)
    engine.check_basket([order("NSE:SBIN", Side.BUY, q) for q in (1, 2, 3, 4)], View())
    engine.record_sent(order("NSE:SBIN", Side.BUY, 9), T0)
    with pytest.raises(RiskBreach) as info:  # one sent this second + 4 = 5 > 4
        engine.check_basket([order("NSE:SBIN", Side.BUY, q) for q in (1, 2, 3, 4)], View())
    assert info.value.limit == "max_orders_per_second"
    assert engine.state.sent["NSE"] and len(engine.drain_events()) == 1  # the breach recorded


def test_a_killed_engine_refuses_any_basket():
    engine = _engine()
    engine.engage_kill("test", T0)
    with pytest.raises(RiskBreach) as info:
        engine.check_basket([order("NSE:SBIN", Side.BUY, 1)], View())
    assert info.value.limit == "kill_switch"
