"""Risk engine: one test per pre-trade check with hand-worked numbers, loss guards, kill switch.

Every expected number below is worked by hand in the comment beside it, never read back from
``velox.risk``.
"""

from __future__ import annotations

import doctest
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import pytest

import velox.risk
from velox.calendar import IST
from velox.errors import ConfigError, RiskBreach, ValidationError
from velox.risk import RiskEngine, RiskLimits
from velox.types import Instrument, InstrumentKind, Order, OrderStatus, OrderType, Side

SBIN = Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ)
RELIANCE = Instrument("NSE:RELIANCE", "NSE", "RELIANCE", InstrumentKind.EQ)
NIFTY_FUT = Instrument(
    "NFO:NIFTY26APRFUT",
    "NFO",
    "NIFTY26APRFUT",
    InstrumentKind.FUT,
    lot_size=65,
    expiry=date(2026, 4, 28),
)
INSTRUMENTS = {i.id: i for i in (SBIN, RELIANCE, NIFTY_FUT)}

#: A Monday in the session, mid-morning IST.
T0 = datetime(2026, 4, 6, 11, 0, tzinfo=IST)

_ids = itertools.count(1)


@dataclass
class View:
    """The smallest AccountView: a dict of positions, a list of open orders, a dict of LTPs."""

    now: datetime = T0
    held: dict[str, int] = field(default_factory=dict)
    prices: dict[str, float] = field(
        default_factory=lambda: {"NSE:SBIN": 800.0, "NSE:RELIANCE": 2500.0}
    )
    working: list[Order] = field(default_factory=list)

    def position_qty(self, instrument_id: str) -> int:
        return self.held.get(instrument_id, 0)

    def positions(self) -> Mapping[str, int]:
        return dict(self.held)

    def open_orders(self) -> Sequence[Order]:
        return list(self.working)

    def last_price(self, instrument_id: str) -> float | None:
        return self.prices.get(instrument_id)

    def instrument(self, instrument_id: str) -> Instrument:
        return INSTRUMENTS[instrument_id]


def order(
    instrument_id: str = "NSE:SBIN",
    side: Side = Side.BUY,
    qty: int = 1,
    order_type: OrderType = OrderType.MARKET,
    **fields: object,
) -> Order:
    return Order(f"c{next(_ids)}", instrument_id, side, qty, order_type, **fields)  # type: ignore[arg-type]


def limit_order(instrument_id: str, side: Side, qty: int, price: float, **fields: object) -> Order:
    return order(instrument_id, side, qty, OrderType.LIMIT, limit_price=price, **fields)


def open_order(instrument_id: str, side: Side, qty: int, filled: int = 0) -> Order:
    status = OrderStatus.PARTIAL if filled else OrderStatus.OPEN
    return order(instrument_id, side, qty, status=status, filled_qty=filled)


def breach_of(engine: RiskEngine, o: Order, view: View) -> RiskBreach:
    with pytest.raises(RiskBreach) as info:
        engine.check_order(o, view)
    return info.value


def engine_with(**limits: object) -> RiskEngine:
    return RiskEngine(RiskLimits(**limits), account="ZX1234")  # type: ignore[arg-type]


# --- per-order limits -----------------------------------------------------------------------


def test_max_order_qty_passes_at_limit_and_refuses_one_over() -> None:
    risk = engine_with(max_order_qty=100)
    risk.check_order(order(qty=100), View())
    breach = breach_of(risk, order(qty=101), View())
    assert breach.limit == "max_order_qty"
    assert "101" in str(breach) and "max_order_qty=100" in str(breach)


def test_max_order_notional_uses_limit_price_then_ltp() -> None:
    risk = engine_with(max_order_notional=25_000)
    # 10 × 2500.00 = 25,000.00: exactly at the limit.
    risk.check_order(limit_order("NSE:RELIANCE", Side.BUY, 10, 2500.00), View())
    # 10 × 2500.05 = 25,000.50: fifty paise over.
    breach = breach_of(risk, limit_order("NSE:RELIANCE", Side.BUY, 10, 2500.05), View())
    assert breach.limit == "max_order_notional"
    assert "₹25,000.50" in str(breach) and "₹25,000.00" in str(breach)
    # A market order is valued at the LTP: 10 × 2500 passes, 10 × 2500.05 does not.
    risk.check_order(order("NSE:RELIANCE", qty=10), View())
    dearer = View(prices={"NSE:RELIANCE": 2500.05})
    assert breach_of(risk, order("NSE:RELIANCE", qty=10), dearer).limit == "max_order_notional"


def test_max_order_notional_values_sl_m_at_trigger_and_refuses_unpriced_market_orders() -> None:
    risk = engine_with(max_order_notional=25_000, price_band_pct=None)
    no_ltp = View(prices={})
    # SL-M 10 @ trigger 2500 = 25,000 (no LTP needed); 10 @ 2500.05 over.
    risk.check_order(order("NSE:RELIANCE", qty=10, order_type="SL-M", trigger_price=2500.0), no_ltp)
    over = order("NSE:RELIANCE", qty=10, order_type="SL-M", trigger_price=2500.05)
    assert breach_of(risk, over, no_ltp).limit == "max_order_notional"
    breach = breach_of(risk, order("NSE:RELIANCE", qty=1), no_ltp)
    assert breach.limit == "max_order_notional" and "no last traded price" in str(breach)


def test_price_band_is_inclusive_on_both_sides_of_ltp() -> None:
    risk = engine_with()  # default 5 %: LTP 2500 → band 2375.00 … 2625.00
    view = View()
    risk.check_order(limit_order("NSE:RELIANCE", Side.BUY, 1, 2625.00), view)
    risk.check_order(limit_order("NSE:RELIANCE", Side.SELL, 1, 2375.00), view)
    high = breach_of(risk, limit_order("NSE:RELIANCE", Side.BUY, 1, 2625.05), view)
    low = breach_of(risk, limit_order("NSE:RELIANCE", Side.SELL, 1, 2374.95), view)
    assert high.limit == low.limit == "price_band_pct"
    # |2625.05 − 2500| / 2500 = 5.002 %
    assert "5.00%" in str(high) and "2625.05" in str(high) and "LTP 2500" in str(high)
    assert "2374.95" in str(low)


def test_price_band_checks_trigger_prices_too() -> None:
    risk = engine_with(price_band_pct=2.0)  # SBIN LTP 800 → 784 … 816
    view = View()
    risk.check_order(order(side=Side.SELL, order_type="SL-M", trigger_price=784.0), view)
    stop = order(side=Side.SELL, order_type="SL-M", trigger_price=783.95)
    assert "trigger_price 783.95" in str(breach_of(risk, stop, view))
    # SL: trigger inside, limit outside → refused for the limit.
    sl = order(order_type="SL", trigger_price=810.0, limit_price=816.05)
    assert "limit_price 816.05" in str(breach_of(risk, sl, view))


def test_price_band_without_ltp_refuses_market_and_limit_orders() -> None:
    """Fail closed: no LTP → nothing to compare a price with, and a market order is blind."""
    risk = engine_with()
    no_ltp = View(prices={})
    market = breach_of(risk, order(), no_ltp)
    limit = breach_of(risk, limit_order("NSE:SBIN", Side.BUY, 1, 800.0), no_ltp)
    assert market.limit == limit.limit == "price_band_pct"
    assert "no last traded price for NSE:SBIN" in str(market)
    assert "price_band_pct = 'off'" in str(market)  # the message names the fix
    # With the band off (and no notional/exposure limits) nothing needs a price.
    engine_with(price_band_pct=None).check_order(order(), no_ltp)


def test_allowed_instruments() -> None:
    risk = engine_with(allowed_instruments=frozenset({"NSE:SBIN"}))
    risk.check_order(order("NSE:SBIN"), View())
    breach = breach_of(risk, order("NSE:RELIANCE"), View())
    assert breach.limit == "allowed_instruments" and "NSE:RELIANCE" in str(breach)


@pytest.mark.parametrize(
    ("clock", "allowed"),
    [
        (time(9, 14, 59), False),
        (time(9, 15, 0), True),
        (time(15, 29, 59), True),
        (time(15, 30, 0), False),
    ],
)
def test_trading_hours_edges(clock: time, allowed: bool) -> None:
    risk = engine_with()
    view = View(now=datetime.combine(date(2026, 4, 6), clock, tzinfo=IST))
    if allowed:
        risk.check_order(order(), view)
    else:
        breach = breach_of(risk, order(), view)
        assert breach.limit == "trading_hours"
        assert clock.isoformat() in str(breach) and "09:15:00–15:30:00" in str(breach)


def test_trading_hours_compare_in_ist_whatever_the_clock_zone() -> None:
    risk = engine_with()
    # 03:45 UTC is 09:15 IST; 03:44:59 UTC is 09:14:59 IST.
    risk.check_order(order(), View(now=datetime(2026, 4, 6, 3, 45, tzinfo=UTC)))
    early = View(now=datetime(2026, 4, 6, 3, 44, 59, tzinfo=UTC))
    assert breach_of(risk, order(), early).limit == "trading_hours"
    with pytest.raises(ValidationError, match="tz-aware"):
        risk.check_order(order(), View(now=datetime(2026, 4, 6, 11, 0)))


@pytest.mark.parametrize(
    ("when", "allowed"),
    [
        # Diwali Muhurat trading 2021-11-04: 18:15-19:15 IST only (NSE circular)
        (datetime(2021, 11, 4, 18, 15, tzinfo=IST), True),
        (datetime(2021, 11, 4, 19, 14, 59, tzinfo=IST), True),
        (datetime(2021, 11, 4, 10, 0, tzinfo=IST), False),
        (datetime(2021, 11, 4, 19, 15, tzinfo=IST), False),
        # 2021-02-24: halted 11:40, resumed 15:45, closed 17:00
        (datetime(2021, 2, 24, 16, 30, tzinfo=IST), True),
        (datetime(2021, 2, 24, 12, 0, tzinfo=IST), False),
        # a regular day keeps the configured window
        (datetime(2021, 11, 3, 18, 30, tzinfo=IST), False),
    ],
)
def test_special_sessions_use_their_own_hours(when: datetime, allowed: bool) -> None:
    risk = engine_with()
    if allowed:
        risk.check_order(order(), View(now=when))
    else:
        breach = breach_of(risk, order(), View(now=when))
        assert breach.limit == "trading_hours"
        if when.day != 3:
            assert "special session" in str(breach)


# --- exposure -------------------------------------------------------------------------------


def test_max_position_qty_counts_position_and_same_side_open_orders() -> None:
    risk = engine_with(max_position_qty=100)
    risk.check_order(order(qty=100), View())
    assert breach_of(risk, order(qty=101), View()).limit == "max_position_qty"
    # Long 60 with 30 more in an open buy: +10 → 100 passes, +11 → 101 refused.
    view = View(held={"NSE:SBIN": 60}, working=[open_order("NSE:SBIN", Side.BUY, 30)])
    risk.check_order(order(qty=10), view)
    breach = breach_of(risk, order(qty=11), view)
    assert "from 60 (plus 30 in open BUY orders) to 101" in str(breach)
    assert "max_position_qty=100" in str(breach)
    # Only the unfilled part of a partly filled open order is still pending: 40 − 25 = 15,
    # so long 60 can add 25 (60 + 15 + 25 = 100) but not 26.
    view = View(held={"NSE:SBIN": 60}, working=[open_order("NSE:SBIN", Side.BUY, 40, filled=25)])
    risk.check_order(order(qty=25), view)
    assert breach_of(risk, order(qty=26), view).limit == "max_position_qty"
    # Short side: −100 then sell 1 → −101.
    short = View(held={"NSE:SBIN": -100})
    assert breach_of(risk, order(side=Side.SELL), short).limit == "max_position_qty"


def test_max_gross_exposure_values_every_instrument_at_ltp() -> None:
    risk = engine_with(max_gross_exposure=1_000_000)
    # SBIN 500 × 800 = 400,000 held; RELIANCE 240 × 2500 = 600,000 → exactly 1,000,000.
    view = View(held={"NSE:SBIN": 500})
    risk.check_order(order("NSE:RELIANCE", qty=240), view)
    breach = breach_of(risk, order("NSE:RELIANCE", qty=241), view)  # 1,002,500
    assert breach.limit == "max_gross_exposure"
    assert "₹1,002,500.00" in str(breach) and "₹1,000,000.00" in str(breach)
    # A short counts by its absolute value: −500 SBIN is also 400,000.
    risk.check_order(order("NSE:RELIANCE", qty=240), View(held={"NSE:SBIN": -500}))
    # An open buy of 10 SBIN adds 8,000: 236 RELIANCE → 408,000 + 590,000 = 998,000 passes,
    # 237 → 408,000 + 592,500 = 1,000,500 is refused.
    view = View(held={"NSE:SBIN": 500}, working=[open_order("NSE:SBIN", Side.BUY, 10)])
    risk.check_order(order("NSE:RELIANCE", qty=236), view)
    assert breach_of(risk, order("NSE:RELIANCE", qty=237), view).limit == "max_gross_exposure"


def test_max_gross_exposure_refuses_when_a_held_instrument_has_no_price() -> None:
    risk = engine_with(max_gross_exposure=1_000_000, price_band_pct=None)
    view = View(held={"NFO:NIFTY26APRFUT": 65})
    breach = breach_of(risk, order("NSE:RELIANCE", qty=1), view)
    assert breach.limit == "max_gross_exposure" and "cannot value NFO:NIFTY26APRFUT" in str(breach)


def test_reducing_orders_always_pass_exposure_limits() -> None:
    """Exits are never blocked: a position far over tight limits can still be closed."""
    risk = engine_with(max_position_qty=10, max_gross_exposure=1_000)
    long = View(held={"NSE:SBIN": 500})  # 500 × 800 = 400,000 ≫ 1,000
    risk.check_order(order(side=Side.SELL, qty=500), long)  # full exit
    risk.check_order(order(side=Side.SELL, qty=200), long)  # partial exit
    risk.check_order(order(side=Side.BUY, qty=300), View(held={"NSE:SBIN": -300}))  # cover
    # Anything that adds, or reverses through zero, is checked.
    assert breach_of(risk, order(side=Side.BUY, qty=1), long).limit == "max_position_qty"
    reverse = breach_of(risk, order(side=Side.SELL, qty=501), long)  # ends short 1
    assert reverse.limit == "max_gross_exposure"  # the 500 long counts until the sell fills
    # With 400 already working to sell, another 200 could end short 100: not a pure exit.
    pending = View(held={"NSE:SBIN": 500}, working=[open_order("NSE:SBIN", Side.SELL, 400)])
    risk.check_order(order(side=Side.SELL, qty=100), pending)  # 400 + 100 = 500: still an exit
    assert breach_of(risk, order(side=Side.SELL, qty=200), pending).limit == "max_position_qty"


def test_max_open_orders_counts_working_orders_only() -> None:
    risk = engine_with(max_open_orders=3)
    two = [open_order("NSE:SBIN", Side.BUY, 1), open_order("NSE:RELIANCE", Side.SELL, 1)]
    new = order(qty=7)
    # The order under check may already sit in the OMS book; it is not counted twice.
    risk.check_order(new, View(working=[*two, new]))
    done = order(qty=3, status=OrderStatus.FILLED, filled_qty=3)
    risk.check_order(order(qty=8), View(working=[*two, done]))  # a filled order is not working
    three = [*two, open_order("NFO:NIFTY26APRFUT", Side.BUY, 65)]
    breach = breach_of(risk, order(qty=9), View(working=three))
    assert breach.limit == "max_open_orders"
    assert "3 orders are already open" in str(breach) and "max_open_orders=3" in str(breach)


# --- throttle and duplicates ----------------------------------------------------------------


def test_throttle_allows_eight_per_second_then_refuses_the_ninth() -> None:
    risk = engine_with()  # default 8/s per exchange
    for qty in range(1, 9):  # distinct quantities so the duplicate guard stays out of it
        o = order(qty=qty)
        risk.check_order(o, View(now=T0))
        risk.record_sent(o, T0)
    for late in (timedelta(0), timedelta(milliseconds=999)):
        breach = breach_of(risk, order(qty=9), View(now=T0 + late))
        assert breach.limit == "max_orders_per_second"
        assert "8 orders sent on NSE" in str(breach) and "max_orders_per_second=8" in str(breach)
    # NFO has its own window: the futures order goes through.
    risk.check_order(
        order("NFO:NIFTY26APRFUT", qty=65), View(now=T0, prices={"NFO:NIFTY26APRFUT": 22500.0})
    )
    # One second after the burst the window has emptied.
    risk.check_order(order(qty=9), View(now=T0 + timedelta(seconds=1)))


def test_throttle_window_slides() -> None:
    risk = engine_with(max_orders_per_second=2, duplicate_window_seconds=0)
    for ms in (0, 600):
        risk.record_sent(order(), T0 + timedelta(milliseconds=ms))
    # At 999 ms both are in the window; at 1000 ms the first left, the one at 600 ms has not.
    assert breach_of(risk, order(), View(now=T0 + timedelta(milliseconds=999))).limit == (
        "max_orders_per_second"
    )
    risk.check_order(order(), View(now=T0 + timedelta(milliseconds=1000)))
    risk.record_sent(order(), T0 + timedelta(milliseconds=1000))
    assert breach_of(risk, order(), View(now=T0 + timedelta(milliseconds=1599))).limit == (
        "max_orders_per_second"
    )


def test_throttle_below_one_per_second_spaces_orders() -> None:
    risk = engine_with(max_orders_per_second=0.5, duplicate_window_seconds=0)  # one per 2 s
    risk.record_sent(order(), T0)
    assert breach_of(risk, order(), View(now=T0 + timedelta(seconds=1.9))).limit == (
        "max_orders_per_second"
    )
    risk.check_order(order(), View(now=T0 + timedelta(seconds=2)))


def test_duplicate_guard_inside_and_outside_the_window() -> None:
    risk = engine_with()  # 2 s
    first = limit_order("NSE:SBIN", Side.BUY, 10, 800.0)
    risk.record_sent(first, T0)
    same = limit_order("NSE:SBIN", Side.BUY, 10, 800.0)  # new client id, same signature
    breach = breach_of(risk, same, View(now=T0 + timedelta(seconds=1.999)))
    assert breach.limit == "duplicate_window_seconds"
    assert "1.999s ago" in str(breach) and "duplicate_window_seconds=2" in str(breach)
    # Any difference in qty, price, side or type makes it a different order.
    inside = View(now=T0 + timedelta(seconds=1))
    risk.check_order(limit_order("NSE:SBIN", Side.BUY, 11, 800.0), inside)
    risk.check_order(limit_order("NSE:SBIN", Side.BUY, 10, 800.05), inside)
    risk.check_order(limit_order("NSE:SBIN", Side.SELL, 10, 800.0), inside)
    risk.check_order(order(qty=10), inside)
    # At exactly 2 s the first order is outside the window.
    risk.check_order(same, View(now=T0 + timedelta(seconds=2)))


# --- breach events --------------------------------------------------------------------------


def test_every_refusal_is_a_breach_event() -> None:
    risk = engine_with(max_order_qty=5)
    risk.check_order(order(qty=5), View())
    assert risk.drain_events() == []  # a pass records nothing
    o = order(qty=6)
    breach = breach_of(risk, o, View())
    [event] = risk.drain_events()
    assert (event.ts, event.kind, event.limit, event.account) == (
        T0,
        "breach",
        "max_order_qty",
        "ZX1234",
    )
    assert event.message == f"order {o.client_id}: {breach}"
    assert risk.drain_events() == []
    assert event.to_dict()["ts"] == "2026-04-06T11:00:00+05:30"


# --- loss guards and the kill switch -------------------------------------------------------


def test_daily_loss_kills_at_exactly_the_limit() -> None:
    risk = engine_with(daily_loss_limit=5_000)
    # −3000 − 1849.99 − 150 = −4999.99: one paisa short of the limit.
    assert risk.on_equity(T0, realised=-3_000, unrealised=-1_849.99, charges=150) is None
    assert not risk.killed
    # −3000 − 1850 − 150 = −5000.00: at the limit → kill.
    event = risk.on_equity(T0, realised=-3_000, unrealised=-1_850, charges=150)
    assert event is not None and risk.killed
    assert (event.kind, event.limit, event.account) == ("kill", "daily_loss_limit", "ZX1234")
    assert "₹-5,000.00" in event.message and "daily_loss_limit=₹5,000.00" in event.message
    assert risk.kill_limit == "daily_loss_limit" and risk.kill_reason == event.message
    # Charges count: a gross profit can still be a loss limit breach.
    other = engine_with(daily_loss_limit=1_000)
    assert (
        other.on_equity(T0, realised=200, unrealised=0, charges=1_200).limit == "daily_loss_limit"
    )


def test_drawdown_is_measured_from_the_intraday_peak() -> None:
    risk = engine_with(max_drawdown=3_000)
    assert risk.on_equity(T0, 2_000, 0, 0) is None  # peak 2,000
    assert risk.on_equity(T0, 1_000, -500, 0) is None  # 500: drawdown 1,500
    assert risk.on_equity(T0, 1_000, -1_999.99, 0) is None  # −999.99: drawdown 2,999.99
    event = risk.on_equity(T0, 1_000, -1_900, 100)  # −1,000: drawdown 3,000
    assert event is not None and event.limit == "max_drawdown"
    assert "₹3,000.00 below the intraday peak ₹2,000.00" in event.message


def test_kill_refuses_every_later_order_naming_the_original_limit() -> None:
    risk = engine_with(daily_loss_limit=5_000)
    risk.on_equity(T0, -5_000, 0, 0)
    risk.drain_events()
    later = [
        order(),
        order(side=Side.SELL, qty=3),
        limit_order("NSE:RELIANCE", Side.BUY, 1, 2500.0),
        order("NFO:NIFTY26APRFUT", qty=65),
    ]
    for o in later:
        breach = breach_of(risk, o, View(now=T0 + timedelta(minutes=5)))
        assert breach.limit == "kill_switch"
        assert "daily_loss_limit" in str(breach) and "admin" in str(breach)
    events = risk.drain_events()
    assert [e.kind for e in events] == ["breach"] * 4
    assert {e.limit for e in events} == {"kill_switch"}
    # While killed the loss guard stays quiet (no second kill event).
    assert risk.on_equity(T0, -9_000, 0, 0) is None


def test_flatten_orders_pass_while_killed_but_only_if_they_reduce() -> None:
    risk = engine_with(max_order_qty=1, trading_end=time(11, 0))  # even outside hours
    risk.engage_kill("test", T0)
    view = View(held={"NSE:SBIN": 500, "NSE:RELIANCE": -20})
    risk.check_order(order(side=Side.SELL, qty=500), view, flatten=True)
    risk.check_order(order("NSE:RELIANCE", Side.BUY, 20), view, flatten=True)
    for bad in (
        order(side=Side.BUY, qty=1),
        order(side=Side.SELL, qty=501),
        order("NSE:RELIANCE", Side.SELL),
    ):
        assert breach_of_flatten(risk, bad, view).limit == "flatten"
    assert breach_of_flatten(risk, order("NFO:NIFTY26APRFUT", qty=65), view).limit == "flatten"


def breach_of_flatten(engine: RiskEngine, o: Order, view: View) -> RiskBreach:
    with pytest.raises(RiskBreach) as info:
        engine.check_order(o, view, flatten=True)
    return info.value


def test_manual_kill_and_admin_reset() -> None:
    risk = engine_with()
    event = risk.engage_kill("operator pressed the button", T0)
    assert (event.kind, event.limit, event.message) == (
        "kill",
        "manual",
        "operator pressed the button",
    )
    assert risk.killed and risk.kill_reason == "operator pressed the button"
    # Engaging again records the request but keeps the first cause.
    again = risk.engage_kill("second press", T0, limit="dashboard")
    assert again.limit == "dashboard" and risk.kill_reason == "operator pressed the button"
    assert breach_of(risk, order(), View()).limit == "kill_switch"
    with pytest.raises(ValidationError, match="admin"):
        risk.reset_kill("  ", T0)
    reset = risk.reset_kill("alice", T0 + timedelta(minutes=1))
    assert reset.kind == "reset" and "alice" in reset.message and "manual" in reset.message
    assert not risk.killed and risk.kill_reason is None
    risk.check_order(order(), View())
    with pytest.raises(ValidationError, match="not engaged"):
        risk.reset_kill("alice", T0)
    assert [e.kind for e in risk.drain_events()] == ["kill", "kill", "breach", "reset"]


def test_reset_rebases_drawdown_but_not_the_daily_loss() -> None:
    dd = engine_with(max_drawdown=3_000)
    dd.on_equity(T0, 2_000, 0, 0)
    assert dd.on_equity(T0, -1_000, 0, 0) is not None  # drawdown 3,000 from 2,000
    dd.reset_kill("alice", T0)
    assert dd.on_equity(T0, -1_000, 0, 0) is None  # new peak −1,000: drawdown 0
    assert dd.on_equity(T0, -3_999.99, 0, 0) is None  # drawdown 2,999.99
    assert dd.on_equity(T0, -4_000, 0, 0).limit == "max_drawdown"

    loss = engine_with(daily_loss_limit=5_000)
    loss.on_equity(T0, -5_000, 0, 0)
    reset = loss.reset_kill("alice", T0)
    assert (reset.kind, reset.limit) == ("reset", "daily_loss_limit")
    assert loss.on_equity(T0, -5_000, 0, 0).limit == "daily_loss_limit"  # still beyond


def test_new_day_keeps_the_kill_switch_and_resets_the_peak() -> None:
    risk = engine_with(max_drawdown=3_000)
    risk.on_equity(T0, 2_500, 0, 0)
    risk.engage_kill("operator", T0)
    risk.new_day(date(2026, 4, 7))
    assert risk.killed and risk.kill_limit == "manual"
    assert breach_of(risk, order(), View(now=T0 + timedelta(days=1))).limit == "kill_switch"
    risk.reset_kill("alice", T0 + timedelta(days=1))
    # The peak restarted at 0 for the new day: −2,999.99 is not yet a 3,000 drawdown.
    assert risk.on_equity(T0 + timedelta(days=1), -2_999.99, 0, 0) is None


def test_new_day_clears_the_throttle() -> None:
    risk = engine_with(max_orders_per_second=1, duplicate_window_seconds=0)
    risk.record_sent(order(), T0)
    assert breach_of(risk, order(), View()).limit == "max_orders_per_second"
    risk.new_day(date(2026, 4, 6))
    risk.check_order(order(), View())


def test_state_round_trip_keeps_the_kill_switch() -> None:
    limits = RiskLimits(daily_loss_limit=5_000, max_drawdown=8_000)
    risk = RiskEngine(limits, account="ZX1234")
    risk.new_day(date(2026, 4, 6))
    risk.on_equity(T0, 1_000, 0, 0)
    risk.on_equity(T0 + timedelta(minutes=1), -4_000, -1_200, 0)  # −5,200 → kill
    stored = json.loads(json.dumps(risk.to_state()))  # what the store keeps
    restarted = RiskEngine.from_state(limits, stored)
    assert restarted.killed and restarted.kill_limit == "daily_loss_limit"
    assert restarted.kill_reason == risk.kill_reason and restarted.account == "ZX1234"
    assert restarted.to_state() == risk.to_state()
    breach = breach_of(restarted, order(), View(now=T0 + timedelta(minutes=2)))
    assert breach.limit == "kill_switch" and "daily_loss_limit" in str(breach)
    assert "2026-04-06T11:01:00+05:30" in str(breach)  # when it was engaged
    # A fresh engine from a clean state is not killed.
    assert not RiskEngine.from_state(limits, RiskEngine(limits).to_state()).killed


def test_from_state_refuses_foreign_or_broken_state() -> None:
    limits = RiskLimits()
    good = RiskEngine(limits).to_state()
    with pytest.raises(ValidationError, match="version"):
        RiskEngine.from_state(limits, {**good, "version": 99})
    with pytest.raises(ValidationError, match="malformed"):
        RiskEngine.from_state(limits, {k: v for k, v in good.items() if k != "killed"})


# --- configuration --------------------------------------------------------------------------


def test_from_mapping_unknown_key_suggests_the_close_match() -> None:
    with pytest.raises(
        ConfigError, match="unknown risk limit 'max_order_quantity'; did you mean 'max_order_qty'"
    ):
        RiskLimits.from_mapping({"max_order_quantity": 10})
    with pytest.raises(ConfigError, match="known: "):
        RiskLimits.from_mapping({"zzz": 1})


def test_from_mapping_reads_toml_style_values() -> None:
    limits = RiskLimits.from_mapping(
        {
            "max_order_qty": 500,
            "max_gross_exposure": 1_000_000,
            "price_band_pct": "off",
            "trading_start": "09:20",
            "trading_end": time(15, 15),
            "allowed_instruments": ["NSE:SBIN", "NSE:SBIN", "NFO:NIFTY26APRFUT"],
        }
    )
    assert limits.max_order_qty == 500 and limits.max_gross_exposure == 1_000_000.0
    assert limits.price_band_pct is None
    assert (limits.trading_start, limits.trading_end) == (time(9, 20), time(15, 15))
    assert limits.allowed_instruments == frozenset({"NSE:SBIN", "NFO:NIFTY26APRFUT"})
    assert RiskLimits.from_mapping(limits.to_mapping()) == limits
    assert RiskLimits.from_mapping(RiskLimits().to_mapping()) == RiskLimits()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_order_qty": 0}, "max_order_qty=0 must be a whole number >= 1"),
        ({"max_order_qty": 1.5}, "max_order_qty=1.5"),
        ({"max_order_qty": True}, "max_order_qty=True"),
        ({"daily_loss_limit": -5000}, "positive amount"),
        ({"max_orders_per_second": "off"}, "max_orders_per_second cannot be turned off"),
        ({"duplicate_window_seconds": None}, "0 turns the guard off"),
        ({"trading_start": "9h15"}, "trading_start='9h15' must be a time like '09:15'"),
        ({"trading_start": "15:30"}, "must be before trading_end"),
        ({"allowed_instruments": "NSE:SBIN"}, "must be a list of instrument ids"),
        ({"allowed_instruments": ["SBIN"]}, "must read 'EXCHANGE:SYMBOL'"),
        ({"price_band_pct": float("nan")}, "price_band_pct=nan must be a number > 0"),
    ],
)
def test_from_mapping_rejects_bad_values(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="^risk limits: ") as info:
        RiskLimits.from_mapping(data)
    assert message in str(info.value)


def test_from_toml_reads_the_risk_table(tmp_path) -> None:
    path = tmp_path / "velox.toml"
    path.write_text(
        "data_dir = 'data'\n\n[risk]\nmax_order_notional = 200000\ntrading_end = 15:15:00\n"
        "daily_loss_limit = 10000\nprice_band_pct = 'off'\n"
    )
    limits = RiskLimits.from_toml(path)
    assert limits.max_order_notional == 200_000.0 and limits.daily_loss_limit == 10_000.0
    assert limits.trading_end == time(15, 15) and limits.price_band_pct is None
    path.write_text("[risk]\ndaily_loss_limt = 1\n")
    with pytest.raises(ConfigError, match=r"velox.toml \[risk\]: unknown .*'daily_loss_limit'"):
        RiskLimits.from_toml(path)
    with pytest.raises(ConfigError, match=r"no \[limits\] table"):
        RiskLimits.from_toml(path, table="limits")


def test_docstring_examples_run() -> None:
    result = doctest.testmod(velox.risk, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_checks_run_alone_and_replaced_limits_apply_at_once() -> None:
    # each check is a plain function of (order, limits, view, state): off limits pass
    state = velox.risk.RiskState()
    off = RiskLimits()  # no max_order_qty
    velox.risk.check_order_qty(order(qty=10_000), off, View(), state)
    with pytest.raises(RiskBreach, match="max_order_qty=50"):
        velox.risk.check_order_qty(order(qty=51), RiskLimits(max_order_qty=50), View(), state)
    velox.risk.check_duplicate(order(), RiskLimits(duplicate_window_seconds=0), View(), state)
    # the engine picks up limits replaced while it runs
    risk = engine_with(max_order_qty=100)
    risk.check_order(order(qty=60), View())
    risk.limits = RiskLimits(max_order_qty=50)
    assert breach_of(risk, order(qty=60), View()).limit == "max_order_qty"
    risk.limits = RiskLimits(max_order_qty=50, price_band_pct=None)
    risk.check_order(order(qty=40), View(prices={}))  # no LTP needed once the band is off


def test_loss_guard_trips_at_its_limits_and_is_off_without_them() -> None:
    from velox.risk import LossGuard

    guard = LossGuard.from_limits(RiskLimits(daily_loss_limit=10_000, max_drawdown=4_000))
    assert guard.active
    # the daily loss limit trips AT the limit (inclusive), not a paisa before
    assert guard.trip(pnl=-10_000.0, peak=-10_000.0) == "daily_loss_limit"
    assert guard.trip(pnl=-9_999.99, peak=-9_999.99) is None
    # drawdown from the day's peak: 6,000 → 2,000 is exactly 4,000 down
    assert guard.trip(pnl=2_000.0, peak=6_000.0) == "max_drawdown"
    assert guard.trip(pnl=2_000.01, peak=6_000.0) is None
    # the loss limit is reported first when both trip
    assert guard.trip(pnl=-10_500.0, peak=0.0) == "daily_loss_limit"
    off = LossGuard.from_limits(RiskLimits())
    assert not off.active and off.trip(pnl=-1e12, peak=1e12) is None
