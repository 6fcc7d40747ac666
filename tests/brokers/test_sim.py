"""Tests of the simulated broker against hand-worked fills, rejects and ledgers.

Dates are in June 2025, whose charge rates are the ones MARKET.md lists (NSE equity exchange
charge 0.00307% incl. IPFT, futures STT 0.02% on sells, ...), so charges are worked by hand in
:func:`hand_charges` from that table rather than taken from ``velox.costs``.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velox.brokers.base import Broker
from velox.brokers.sim import SimBroker, SimConfig
from velox.calendar import IST, is_open
from velox.costs import DEFAULT_SCHEDULE, ChargeBreakdown, CostModel, TickSlippage, trade_charges
from velox.errors import ConfigError, OrderRejected
from velox.testing import market_file
from velox.types import (
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    Product,
    Side,
    Tick,
)

DAY = date(2025, 6, 2)  # a Monday session
NEXT_DAY = date(2025, 6, 3)
CASH = 1_000_000.0

SBIN = Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ, tick_size=0.05)
FUT = Instrument(
    "NFO:NIFTY25JUNFUT",
    "NFO",
    "NIFTY25JUNFUT",
    InstrumentKind.FUT,
    tick_size=0.1,
    lot_size=75,
    expiry=date(2025, 6, 26),
    freeze_qty=1800,
)
CALL = Instrument(
    "NFO:NIFTY25JUN24000CE",
    "NFO",
    "NIFTY25JUN24000CE",
    InstrumentKind.CE,
    tick_size=0.05,
    lot_size=75,
    expiry=date(2025, 6, 26),
    strike=24000.0,
    freeze_qty=1800,
)
INDEX = Instrument("NSE:NIFTY 50", "NSE", "NIFTY 50", InstrumentKind.INDEX)
INSTRUMENTS = {i.id: i for i in (SBIN, FUT, CALL, INDEX)}

# MARKET.md, rates in force in June 2025: (brokerage rule, STT buy, STT sell, exchange, stamp buy)
_HAND_RATES = {
    "equity_delivery": ("zero", 0.001, 0.001, 0.0000307, 0.00015),
    "equity_intraday": ("pct", 0.0, 0.00025, 0.0000307, 0.00003),
    "futures": ("pct", 0.0, 0.0002, 0.0000183, 0.00002),
    "options": ("flat", 0.0, 0.001, 0.0003553, 0.00003),
}
_SEBI = 10 / 1e7  # ₹10 per crore
_GST = 0.18


def hand_charges(segment: str, side: str, qty: int, price: float) -> float:
    """Return one single-fill order's charges from MARKET.md's table (unrounded)."""
    rule, stt_buy, stt_sell, exch, stamp = _HAND_RATES[segment]
    value = qty * price
    brokerage = {"zero": 0.0, "pct": min(0.0003 * value, 20.0), "flat": 20.0}[rule]
    buying = side == "BUY"
    exchange, sebi = value * exch, value * _SEBI
    return (
        brokerage
        + value * (stt_buy if buying else stt_sell)
        + exchange
        + sebi
        + (value * stamp if buying else 0.0)
        + _GST * (brokerage + exchange + sebi)
    )


def at(hour: int, minute: int, second: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=IST)


class ZeroCost:
    """A free broker, to test matching rules apart from charges."""

    def fill_charges(self, *args: object, **kwargs: object) -> ChargeBreakdown:
        return ChargeBreakdown()


@dataclass
class Recorder:
    """Listener keeping every postback, as the engine's queue would."""

    updates: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)

    def on_order_update(self, order: Order) -> None:
        self.updates.append(order)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def statuses(self, broker_order_id: str) -> list[str]:
        return [o.status.value for o in self.updates if o.broker_order_id == broker_order_id]


def make_sim(
    cash: float = CASH,
    *,
    free: bool = False,
    instruments: dict[str, Instrument] | None = None,
    **config: object,
) -> tuple[SimBroker, Recorder]:
    sim = SimBroker(
        instruments or INSTRUMENTS,
        initial_cash=cash,
        cost_model=ZeroCost() if free else None,
        config=SimConfig(**config),  # type: ignore[arg-type]
    )
    rec = Recorder()
    sim.set_listener(rec)
    return sim, rec


def tick(
    sim: SimBroker, ins: Instrument, ts: datetime, ltp: float, volume: int | None = None
) -> None:
    sim.on_tick(Tick(ins.id, ts, ltp, volume))


def mk(ins: Instrument, side: str, qty: int, kind: str = "MARKET", **kw: object) -> Order:
    cid = kw.pop("client_id", f"c-{side}-{kind}-{qty}")
    return Order(cid, ins.id, Side(side), qty, kind, **kw)  # type: ignore[arg-type]


def position(sim: SimBroker, ins: Instrument, product: Product) -> tuple[int, float]:
    for p in sim.positions():
        if p.instrument_id == ins.id and p.product is product:
            return p.qty, p.average_price
    return 0, 0.0


@pytest.fixture
def sim_rec() -> tuple[SimBroker, Recorder]:
    """A zero-cost simulator with SBIN last traded at ₹800.00 at 09:20."""
    sim, rec = make_sim(free=True)
    tick(sim, SBIN, at(9, 20), 800.0)
    return sim, rec


def test_simbroker_is_a_broker() -> None:
    sim, _ = make_sim(free=True)
    assert isinstance(sim, Broker)
    assert sim.name == "sim"


# ---------------------------------------------------------------- order type × product

TP, OPEN, FILLED = "TRIGGER_PENDING", "OPEN", "FILLED"

SCENARIOS = [
    # id, instrument, product, side, qty, type, limit, trigger, ltp before, ticks, fill, statuses
    ("cnc-market", SBIN, "CNC", "BUY", 100, "MARKET", None, None, 800.0, [800.5], 800.5,
     [OPEN, FILLED]),
    ("cnc-limit", SBIN, "CNC", "BUY", 100, "LIMIT", 800.0, None, 800.0, [800.5, 799.95], 799.95,
     [OPEN, FILLED]),
    # gaps over the limit on the trigger tick: triggered, then fills when back under 806
    ("cnc-sl", SBIN, "CNC", "BUY", 100, "SL", 806.0, 805.0, 800.0, [804.95, 807.0, 805.5], 805.5,
     [TP, OPEN, FILLED]),
    ("cnc-slm", SBIN, "CNC", "BUY", 100, "SL-M", None, 805.0, 800.0, [804.95, 806.2], 806.2,
     [TP, OPEN, FILLED]),
    ("mis-market", SBIN, "MIS", "SELL", 100, "MARKET", None, None, 800.0, [799.9], 799.9,
     [OPEN, FILLED]),
    ("mis-limit", SBIN, "MIS", "SELL", 100, "LIMIT", 801.0, None, 800.0, [800.95, 801.0], 801.0,
     [OPEN, FILLED]),
    ("mis-sl", SBIN, "MIS", "BUY", 100, "SL", 811.0, 810.0, 800.0, [809.95, 810.0], 810.0,
     [TP, OPEN, FILLED]),
    ("mis-slm", SBIN, "MIS", "SELL", 100, "SL-M", None, 795.0, 800.0, [796.0, 794.0], 794.0,
     [TP, OPEN, FILLED]),
    ("nrml-market", FUT, "NRML", "BUY", 75, "MARKET", None, None, 24800.0, [24801.5], 24801.5,
     [OPEN, FILLED]),
    ("nrml-limit", FUT, "NRML", "BUY", 150, "LIMIT", 24790.0, None, 24800.0, [24795.0, 24789.9],
     24789.9, [OPEN, FILLED]),
    ("nrml-sl", FUT, "NRML", "SELL", 75, "SL", 24745.0, 24750.0, 24800.0, [24760.0, 24748.0],
     24748.0, [TP, OPEN, FILLED]),
    ("nrml-slm", FUT, "NRML", "BUY", 75, "SL-M", None, 24850.0, 24800.0, [24849.9, 24851.0],
     24851.0, [TP, OPEN, FILLED]),
]  # fmt: skip


@pytest.mark.parametrize(
    "ins, product, side, qty, kind, limit, trigger, ltp0, ticks, fill_price, statuses",
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_order_type_by_product(
    ins: Instrument,
    product: str,
    side: str,
    qty: int,
    kind: str,
    limit: float | None,
    trigger: float | None,
    ltp0: float,
    ticks: list[float],
    fill_price: float,
    statuses: list[str],
) -> None:
    sim, rec = make_sim()  # real CostModel
    tick(sim, ins, at(9, 20), ltp0)
    oid = sim.place_order(
        mk(ins, side, qty, kind, product=product, limit_price=limit, trigger_price=trigger)
    )
    for k, price in enumerate(ticks, 1):
        tick(sim, ins, at(9, 20 + k), price)
        done = k == len(ticks)
        assert (sim.order(oid).status is OrderStatus.FILLED) is done, f"after tick {price}"
    assert rec.statuses(oid) == statuses
    assert [(f.qty, f.price) for f in rec.fills] == [(qty, fill_price)]
    segment = {"CNC": "equity_delivery", "MIS": "equity_intraday"}.get(product, "futures")
    charges = hand_charges(segment, side, qty, fill_price)
    assert rec.fills[0].charges == pytest.approx(charges, rel=1e-9)
    sign = 1 if side == "BUY" else -1
    assert position(sim, ins, Product(product)) == (sign * qty, pytest.approx(fill_price))
    funds = sim.funds()
    assert funds.charges == pytest.approx(charges, rel=1e-9)
    if product == "CNC":  # delivery pays the full value, no margin
        assert funds.cash == pytest.approx(CASH - qty * fill_price - charges, abs=1e-6)
        assert funds.used_margin == pytest.approx(0.0, abs=1e-6)
    else:  # leveraged: cash moves only by P&L; margin blocked on the notional
        rate = 0.2 if product == "MIS" else 0.15
        assert funds.cash == pytest.approx(CASH - charges, abs=1e-6)
        assert funds.used_margin == pytest.approx(rate * qty * fill_price, abs=1e-6)


def test_market_order_never_fills_at_the_price_seen_before_it(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 10))
    assert sim.order(oid).status is OrderStatus.OPEN and not rec.fills
    tick(sim, SBIN, at(9, 21), 802.0)
    assert rec.fills[0].price == 802.0  # the next tick, not the ₹800 visible at placement


def test_order_placed_inside_a_tick_callback_waits_for_the_next_tick() -> None:
    sim, rec = make_sim(free=True)

    class Reactor(Recorder):
        def on_fill(self, fill: Fill) -> None:
            super().on_fill(fill)
            if fill.side is Side.BUY:  # exit as soon as the entry fills, from the callback
                sim.place_order(mk(SBIN, "SELL", fill.qty, product="MIS", client_id="exit"))

    rec = Reactor()
    sim.set_listener(rec)
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 10, product="MIS"))
    tick(sim, SBIN, at(9, 21), 801.0)
    assert [(f.side.value, f.price) for f in rec.fills] == [("BUY", 801.0)]
    tick(sim, SBIN, at(9, 22), 799.0)
    assert [(f.side.value, f.price) for f in rec.fills] == [("BUY", 801.0), ("SELL", 799.0)]


def test_marketable_limit_fills_at_next_tick_price_not_its_limit(sim_rec) -> None:
    sim, rec = sim_rec
    sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=805.0))
    sim.place_order(mk(SBIN, "SELL", 10, "LIMIT", product="MIS", limit_price=790.0))
    tick(sim, SBIN, at(9, 21), 800.5)
    assert sorted((f.side.value, f.price) for f in rec.fills) == [("BUY", 800.5), ("SELL", 800.5)]


def test_limit_trade_through_mode_needs_price_beyond_limit() -> None:
    sim, rec = make_sim(free=True, limit_fill_on_touch=False)
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=799.0))
    tick(sim, SBIN, at(9, 21), 799.0)  # touch only
    assert not rec.fills
    tick(sim, SBIN, at(9, 22), 798.95)
    assert rec.fills[0].price == 798.95


def test_market_slippage_in_ticks_goes_against_the_trader() -> None:
    sim = SimBroker(INSTRUMENTS, initial_cash=CASH, cost_model=ZeroCost(), slippage=TickSlippage(2))
    rec = Recorder()
    sim.set_listener(rec)
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 10, product="MIS"))
    sim.place_order(mk(SBIN, "SELL", 20, product="MIS"))
    sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", product="MIS", limit_price=801.0))
    tick(sim, SBIN, at(9, 21), 801.0)
    # 2 ticks of ₹0.05: buy 801.10, sell 800.90; the limit gets no slippage
    assert [f.price for f in rec.fills] == [801.1, 800.9, 801.0]


def test_option_buy_blocks_full_premium_and_charges_options_rates() -> None:
    sim, rec = make_sim()
    tick(sim, CALL, at(9, 20), 150.0)
    sim.place_order(mk(CALL, "BUY", 75, product="NRML"))
    tick(sim, CALL, at(9, 21), 151.0)
    funds = sim.funds()
    assert funds.used_margin == pytest.approx(75 * 151.0)
    assert rec.fills[0].charges == pytest.approx(hand_charges("options", "BUY", 75, 151.0))
    # an option short blocks nrml_margin × strike × qty (simplified SPAN)
    sim.place_order(mk(CALL, "SELL", 150, "LIMIT", product="NRML", limit_price=160.0))
    expected = 75 * 151.0 + 0.15 * 24000.0 * 75  # closing 75 is free, opening 75 short is not
    assert sim.funds().used_margin == pytest.approx(expected)


def test_round_trip_realised_pnl_and_charges_match_contract_note() -> None:
    sim, rec = make_sim()
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "SELL", 100, "LIMIT", product="MIS", limit_price=801.0))
    tick(sim, SBIN, at(9, 21), 801.0)
    sim.place_order(mk(SBIN, "BUY", 100, "LIMIT", product="MIS", limit_price=800.0))
    tick(sim, SBIN, at(9, 22), 799.5)
    charges = hand_charges("equity_intraday", "SELL", 100, 801.0) + hand_charges(
        "equity_intraday", "BUY", 100, 799.5
    )
    funds = sim.funds()
    assert funds.realised_pnl == pytest.approx(100 * (801.0 - 799.5))
    assert funds.cash == pytest.approx(CASH + 150.0 - charges)
    assert funds.used_margin == pytest.approx(0.0, abs=1e-9)
    note = trade_charges("equity_intraday", 79_950.0, 80_100.0, trade_date=DAY, orders=2)
    assert funds.charges == pytest.approx(note.total, abs=1.0)  # STT/stamp round to the rupee


# ---------------------------------------------------------------- validity IOC


def test_ioc_limit_not_marketable_at_next_tick_is_cancelled(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=799.0, validity="IOC"))
    tick(sim, SBIN, at(9, 21), 800.0)
    tick(sim, SBIN, at(9, 22), 798.0)  # too late: IOC lives for one tick
    assert rec.statuses(oid) == ["OPEN", "CANCELLED"] and not rec.fills


def test_ioc_marketable_limit_fills(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=801.0, validity="IOC"))
    tick(sim, SBIN, at(9, 21), 800.5)
    assert rec.statuses(oid) == ["OPEN", "FILLED"] and rec.fills[0].price == 800.5


def test_ioc_fills_what_volume_allows_and_cancels_the_rest() -> None:
    sim, rec = make_sim(free=True, max_volume_share=0.1)
    tick(sim, SBIN, at(9, 20), 800.0, volume=100_000)
    oid = sim.place_order(mk(SBIN, "BUY", 120, validity="IOC"))
    tick(sim, SBIN, at(9, 21), 801.0, volume=100_500)  # 500 traded → 50 may fill
    order = sim.order(oid)
    assert rec.statuses(oid) == ["OPEN", "PARTIAL", "CANCELLED"]
    assert (order.filled_qty, order.average_price) == (50, 801.0)


def test_ioc_window_expires_on_the_clock_without_ticks(sim_rec) -> None:
    sim, rec = make_sim(free=True, ioc_window=timedelta(seconds=1))
    tick(sim, SBIN, at(9, 20), 800.0)
    oid = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=801.0, validity="IOC"))
    sim.on_clock(at(9, 20, 1))
    assert sim.order(oid).status is OrderStatus.CANCELLED


# ---------------------------------------------------------------- rejects


def _crossed_stop() -> Order:
    return mk(SBIN, "BUY", 10, "SL-M", product="MIS", trigger_price=795.0)


REJECTS = [
    ("lot", mk(FUT, "BUY", 50, product="NRML"), at(9, 21),
     "Quantity 50 should be a multiple of the lot size 75"),
    ("tick-grid", mk(SBIN, "BUY", 10, "LIMIT", limit_price=800.03), at(9, 21),
     "Tick size for this script is 0.05. Kindly enter price in the multiple of tick size"),
    ("trigger-grid", mk(SBIN, "BUY", 10, "SL-M", trigger_price=810.02), at(9, 21),
     "Kindly enter trigger price in the multiple of tick size"),
    ("freeze", mk(FUT, "BUY", 1875, product="NRML"), at(9, 21),
     "Quantity 1875 exceeds the exchange freeze quantity 1800"),
    ("closed-after", mk(SBIN, "BUY", 10), at(15, 30), "Markets are closed right now"),
    ("closed-preopen", mk(SBIN, "BUY", 10), at(9, 10), "Markets are closed right now"),
    ("closed-sunday", mk(SBIN, "BUY", 10), at(10, 0, day=date(2025, 6, 1)),
     "Markets are closed right now"),
    ("funds-cnc", mk(SBIN, "BUY", 1300), at(9, 21),
     "Insufficient funds. Required margin is 1040000.00 but available margin is 1000000.00"),
    ("funds-mis", mk(SBIN, "BUY", 6300, product="MIS"), at(9, 21),
     "Insufficient funds. Required margin is 1008000.00 but available margin is 1000000.00"),
    ("unknown", Order("c1", "NSE:NOSUCH", Side.BUY, 1), at(9, 21), "Invalid instrument NSE:NOSUCH"),
    ("short-delivery", mk(SBIN, "SELL", 10), at(9, 21),
     "Insufficient holdings to sell 10 NSE:SBIN in CNC: 0 free"),
    ("index", Order("c1", INDEX.id, Side.BUY, 1), at(9, 21), "is an index and cannot be traded"),
    ("nrml-equity", mk(SBIN, "BUY", 1, product="NRML"), at(9, 21), "NRML is for F&O"),
    ("cnc-fno", mk(FUT, "BUY", 75, product="CNC"), at(9, 21), "CNC is for equity delivery"),
    ("ioc-stop", mk(SBIN, "BUY", 1, "SL-M", trigger_price=810.0, validity="IOC"), at(9, 21),
     "IOC validity is allowed only for MARKET and LIMIT"),
    ("sl-limit-below-trigger", mk(SBIN, "BUY", 1, "SL", trigger_price=810.0, limit_price=809.0),
     at(9, 21), "Trigger price for stoploss buy orders should be lower than the price"),
    ("stop-already-crossed", _crossed_stop(), at(9, 21),
     "should be higher than the last traded price 800"),
    ("mis-after-square-off", mk(SBIN, "BUY", 1, product="MIS"), at(15, 16),
     "MIS orders are blocked after the square-off time 15:15"),
]  # fmt: skip


@pytest.mark.parametrize(
    "order, when, reason", [r[1:] for r in REJECTS], ids=[r[0] for r in REJECTS]
)
def test_reject_reasons(order: Order, when: datetime, reason: str) -> None:
    sim, rec = make_sim(free=True)
    tick(sim, SBIN, when, 800.0)
    tick(sim, FUT, when, 24800.0)
    with pytest.raises(OrderRejected) as caught:
        sim.place_order(order)
    assert reason in caught.value.reason
    assert caught.value.client_id == order.client_id
    # the same reason is pushed to the listener, as a broker postback, with a broker id
    (update,) = rec.updates
    assert update.status is OrderStatus.REJECTED and update.status_message == caught.value.reason
    assert update.broker_order_id and sim.order(update.broker_order_id).is_terminal
    assert sim.funds().used_margin == 0.0 and not rec.fills


def test_funds_boundary_just_affordable_is_accepted() -> None:
    sim, rec = make_sim(free=True)
    tick(sim, SBIN, at(9, 20), 800.0)
    # A CNC buy blocks its full value: 1,250 × ₹800.00 = ₹10,00,000, exactly the cash.
    qty, price = 1250, 800.0
    needed = qty * price
    assert needed == CASH
    broker_id = sim.place_order(mk(SBIN, "BUY", qty))
    assert sim.order(broker_id).status is OrderStatus.OPEN
    assert (sim.funds().used_margin, sim.funds().available) == (needed, 0.0)
    # One share more would not have been: ₹800 over.
    with pytest.raises(OrderRejected, match="Required margin is 800.00 but available margin is 0"):
        sim.place_order(mk(SBIN, "BUY", 1, client_id="one-more"))
    # It fills in full on the next tick, at that tick's price; the cash pays for it exactly.
    tick(sim, SBIN, at(9, 21), price)
    assert sim.order(broker_id).status is OrderStatus.FILLED
    assert [(f.qty, f.price) for f in rec.fills] == [(qty, price)]
    assert position(sim, SBIN, Product.CNC) == (qty, price)
    funds = sim.funds()
    assert (funds.cash, funds.used_margin, funds.available) == (CASH - needed, 0.0, 0.0)
    # Nothing is left for the next order: an MIS buy of one share needs 20% × ₹800 = ₹160.
    with pytest.raises(
        OrderRejected, match="Required margin is 160.00 but available margin is 0.00"
    ):
        sim.place_order(mk(SBIN, "BUY", 1, product="MIS", client_id="x"))


def test_funds_boundary_with_charges_paid_from_cash_after_the_fill() -> None:
    # With the real cost model the margin check is on the trade value alone (docs/simulator.md),
    # so the same order is accepted; its charges, worked by hand from MARKET.md's table, are then
    # paid from cash: STT 1,000 + exchange 30.70 + SEBI 1.00 + stamp 150 + GST 18% × 31.70 =
    # ₹1,187.406 (unrounded, per fill), leaving the account that much short.
    sim, rec = make_sim()
    tick(sim, SBIN, at(9, 20), 800.0)
    broker_id = sim.place_order(mk(SBIN, "BUY", 1250))
    assert sim.order(broker_id).status is OrderStatus.OPEN
    tick(sim, SBIN, at(9, 21), 800.0)
    assert sim.order(broker_id).status is OrderStatus.FILLED
    charges = hand_charges("equity_delivery", "BUY", 1250, 800.0)
    assert charges == pytest.approx(1187.406)
    (fill,) = rec.fills
    assert fill.charges == pytest.approx(charges)
    funds = sim.funds()
    assert funds.charges == pytest.approx(charges)
    assert funds.available == pytest.approx(CASH - 1250 * 800.0 - charges)
    with pytest.raises(OrderRejected, match="available margin is -1187.41"):
        sim.place_order(mk(SBIN, "BUY", 1, product="MIS", client_id="x"))


def test_second_order_rejected_once_margin_is_blocked() -> None:
    sim, _ = make_sim(free=True)
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 1000, "LIMIT", limit_price=790.0))  # blocks ₹7,90,000
    with pytest.raises(OrderRejected, match="available margin is 210000.00"):
        sim.place_order(mk(SBIN, "BUY", 300, client_id="second"))


def test_exit_order_needs_no_extra_margin() -> None:
    sim, _ = make_sim(cash=300_000, free=True)
    tick(sim, FUT, at(9, 20), 24800.0)
    sim.place_order(mk(FUT, "BUY", 75, product="NRML"))
    tick(sim, FUT, at(9, 21), 24800.0)
    assert sim.funds().used_margin == pytest.approx(0.15 * 75 * 24800.0)  # ₹2,79,000
    with pytest.raises(OrderRejected, match="Insufficient funds"):
        sim.place_order(mk(FUT, "BUY", 75, product="NRML", client_id="more"))
    sim.place_order(mk(FUT, "SELL", 75, "LIMIT", product="NRML", limit_price=25000.0))


# ---------------------------------------------------------------- freeze auto-split


def test_freeze_auto_split_into_lot_multiples() -> None:
    sim, rec = make_sim(cash=20_000_000, free=True, auto_split_freeze=True)
    tick(sim, FUT, at(9, 20), 24800.0)
    first = sim.place_order(mk(FUT, "BUY", 4500, product="NRML", client_id="big", tag="t1"))
    placed = [o for o in sim.orders() if o.status is OrderStatus.OPEN]
    assert [(o.client_id, o.qty, o.tag) for o in placed] == [
        ("big#1", 1800, "t1"),
        ("big#2", 1800, "t1"),
        ("big#3", 900, "t1"),
    ]
    assert first == placed[0].broker_order_id
    tick(sim, FUT, at(9, 21), 24801.0)
    assert position(sim, FUT, Product.NRML) == (4500, 24801.0)


def test_freeze_split_is_all_or_nothing_on_funds() -> None:
    sim, rec = make_sim(cash=8_000_000, free=True, auto_split_freeze=True)  # 1,800 fit alone
    tick(sim, FUT, at(9, 20), 24800.0)
    with pytest.raises(OrderRejected, match="Insufficient funds"):
        sim.place_order(mk(FUT, "BUY", 2700, product="NRML", client_id="big"))
    assert [(o.client_id, o.status.value) for o in sim.orders()] == [("big", "REJECTED")]


def test_freeze_split_when_freeze_is_not_a_lot_multiple() -> None:
    odd = replace(FUT, freeze_qty=1000)
    sim, _ = make_sim(cash=20_000_000, free=True, instruments={odd.id: odd}, auto_split_freeze=True)
    tick(sim, odd, at(9, 20), 24800.0)
    sim.place_order(mk(odd, "BUY", 2250, product="NRML"))
    assert [o.qty for o in sim.orders()] == [975, 975, 300]  # 13 lots ≤ 1000, twice, then 4


# ---------------------------------------------------------------- partial fills by volume


def test_partial_fills_follow_traded_volume_share() -> None:
    sim, rec = make_sim(free=True, max_volume_share=0.1)
    tick(sim, SBIN, at(9, 20), 800.0, volume=100_000)
    a = sim.place_order(mk(SBIN, "BUY", 60, client_id="a"))
    b = sim.place_order(mk(SBIN, "BUY", 60, client_id="b"))
    tick(sim, SBIN, at(9, 21), 801.0, volume=100_500)  # 500 traded → 50, to the older order
    tick(sim, SBIN, at(9, 22), 802.0, volume=100_500)  # nothing traded → nothing fills
    tick(sim, SBIN, at(9, 23), 803.0, volume=101_500)  # 1000 traded → 100: a 10, b 60
    assert [(f.client_id, f.qty, f.price) for f in rec.fills] == [
        ("a", 50, 801.0),
        ("a", 10, 803.0),
        ("b", 60, 803.0),
    ]
    assert rec.statuses(a) == ["OPEN", "PARTIAL", "FILLED"]
    assert sim.order(a).average_price == pytest.approx((50 * 801 + 10 * 803) / 60)
    assert rec.statuses(b) == ["OPEN", "FILLED"]


def test_partial_fills_in_whole_lots_and_off_without_volume() -> None:
    sim, rec = make_sim(cash=5_000_000, free=True, max_volume_share=0.1)
    tick(sim, FUT, at(9, 20), 24800.0, volume=10_000)
    sim.place_order(mk(FUT, "BUY", 300, product="NRML"))
    tick(sim, FUT, at(9, 21), 24801.0, volume=11_000)  # 100 allowed → one lot of 75
    assert [f.qty for f in rec.fills] == [75]
    tick(sim, FUT, at(9, 22), 24802.0, volume=None)  # volume unknown → fills in full
    assert [f.qty for f in rec.fills] == [75, 225]


# ---------------------------------------------------------------- latency


def test_latency_order_is_live_only_after_the_delay() -> None:
    sim, rec = make_sim(free=True, latency=timedelta(seconds=2))
    tick(sim, SBIN, at(9, 20), 800.0)
    oid = sim.place_order(mk(SBIN, "BUY", 10))
    tick(sim, SBIN, at(9, 20, 1), 801.0)
    assert sim.order(oid).status is OrderStatus.SUBMITTED and not rec.fills
    tick(sim, SBIN, at(9, 20, 2), 802.0)
    assert rec.statuses(oid) == ["SUBMITTED", "OPEN", "FILLED"]
    assert rec.fills[0].price == 802.0


def test_latency_clock_makes_order_live_and_next_tick_fills() -> None:
    sim, rec = make_sim(free=True, latency=timedelta(seconds=2))
    tick(sim, SBIN, at(9, 20), 800.0)
    oid = sim.place_order(mk(SBIN, "BUY", 10))
    sim.on_clock(at(9, 20, 2))
    assert sim.order(oid).status is OrderStatus.OPEN
    tick(sim, SBIN, at(9, 20, 3), 803.0)
    assert rec.fills[0].price == 803.0


def test_ticks_of_other_instruments_run_latency_and_ioc_timers() -> None:
    # Time moves with every instrument's ticks: an SBIN order goes live (latency) and an SBIN
    # IOC order expires (ioc_window) on FUT ticks alone.
    sim, rec = make_sim(free=True, latency=timedelta(seconds=2), ioc_window=timedelta(seconds=5))
    tick(sim, SBIN, at(9, 20), 800.0)
    tick(sim, FUT, at(9, 20), 24800.0)
    day = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=790.0, client_id="day"))
    ioc = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=790.0, validity="IOC"))
    tick(sim, FUT, at(9, 20, 1), 24801.0)
    assert sim.order(day).status is OrderStatus.SUBMITTED
    tick(sim, FUT, at(9, 20, 2), 24802.0)
    assert sim.order(day).status is OrderStatus.OPEN
    assert sim.order(ioc).status is OrderStatus.OPEN
    tick(sim, FUT, at(9, 20, 7), 24803.0)  # live at :02, window 5 s
    assert rec.statuses(ioc) == ["SUBMITTED", "OPEN", "CANCELLED"]
    assert sim.order(day).status is OrderStatus.OPEN and not rec.fills


# ---------------------------------------------------------------- modify and cancel


def test_modify_limit_price_then_fill(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 100, "LIMIT", limit_price=790.0))
    tick(sim, SBIN, at(9, 21), 795.0)
    sim.modify_order(oid, limit_price=801.0)
    assert sim.order(oid).limit_price == 801.0
    assert sim.funds().used_margin == pytest.approx(100 * 801.0)  # re-blocked at the new price
    tick(sim, SBIN, at(9, 22), 800.5)
    assert rec.statuses(oid) == ["OPEN", "OPEN", "FILLED"] and rec.fills[0].price == 800.5
    with pytest.raises(OrderRejected, match="already FILLED and cannot be modified"):
        sim.modify_order(oid, limit_price=802.0)


def test_modify_to_market_drops_the_limit(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=790.0))
    sim.modify_order(oid, order_type="MARKET")
    assert sim.order(oid).limit_price is None
    tick(sim, SBIN, at(9, 21), 800.5)
    assert rec.fills[0].price == 800.5


def test_bad_modify_leaves_order_unchanged(sim_rec) -> None:
    sim, rec = make_sim(free=True, max_volume_share=0.1)
    tick(sim, SBIN, at(9, 20), 800.0, volume=1000)
    oid = sim.place_order(mk(SBIN, "BUY", 100, "LIMIT", limit_price=801.0))
    tick(sim, SBIN, at(9, 21), 800.0, volume=1500)  # fills 50
    with pytest.raises(OrderRejected, match="multiple of tick size"):
        sim.modify_order(oid, limit_price=801.03)
    with pytest.raises(OrderRejected, match="must exceed the filled quantity 50"):
        sim.modify_order(oid, qty=50)
    order = sim.order(oid)
    assert (order.limit_price, order.qty, order.status) == (801.0, 100, OrderStatus.PARTIAL)
    assert sim.funds().used_margin == pytest.approx(50 * 801.0)


def test_cancel_releases_margin_and_cannot_repeat(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 100, "LIMIT", limit_price=790.0))
    assert sim.funds().used_margin == pytest.approx(79_000.0)
    sim.cancel_order(oid)
    assert rec.statuses(oid) == ["OPEN", "CANCELLED"]
    assert sim.funds().used_margin == 0.0
    tick(sim, SBIN, at(9, 21), 780.0)
    assert not rec.fills
    with pytest.raises(OrderRejected, match="already CANCELLED and cannot be cancelled"):
        sim.cancel_order(oid)
    with pytest.raises(OrderRejected, match="Invalid order id"):
        sim.cancel_order("NOPE")


def test_modify_triggered_stop_keeps_it_triggered(sim_rec) -> None:
    sim, rec = sim_rec
    oid = sim.place_order(mk(SBIN, "BUY", 10, "SL", limit_price=806.0, trigger_price=805.0))
    tick(sim, SBIN, at(9, 21), 807.0)  # triggers, but above the limit: rests as a limit
    assert sim.order(oid).status is OrderStatus.OPEN and not rec.fills
    # its trigger is now below the LTP; a triggered stop is modified as the limit it has become
    sim.modify_order(oid, limit_price=808.0)
    tick(sim, SBIN, at(9, 22), 807.5)
    assert rec.fills[0].price == 807.5


def test_modified_order_loses_time_priority() -> None:
    sim, rec = make_sim(free=True, max_volume_share=0.1)
    tick(sim, SBIN, at(9, 20), 800.0, volume=10_000)
    first = sim.place_order(mk(SBIN, "BUY", 50, "LIMIT", limit_price=799.0, client_id="first"))
    sim.place_order(mk(SBIN, "BUY", 50, "LIMIT", limit_price=800.0, client_id="second"))
    sim.modify_order(first, limit_price=800.0)
    tick(sim, SBIN, at(9, 21), 800.0, volume=10_500)  # room for 50 only
    assert [f.client_id for f in rec.fills] == ["second"]


def test_brokerage_cap_is_per_order_across_partial_fills() -> None:
    sim, rec = make_sim(max_volume_share=0.5)
    tick(sim, SBIN, at(9, 20), 800.0, volume=10_000)
    sim.place_order(mk(SBIN, "BUY", 1000, product="MIS"))
    tick(sim, SBIN, at(9, 21), 800.0, volume=11_000)  # 500
    tick(sim, SBIN, at(9, 22), 800.0, volume=12_000)  # 500
    assert [f.qty for f in rec.fills] == [500, 500]
    # one order of ₹8,00,000: brokerage min(₹240, ₹20) once, not ₹20 per fill
    total = sum(f.charges for f in rec.fills)
    assert total == pytest.approx(hand_charges("equity_intraday", "BUY", 1000, 800.0))


def test_malformed_and_foreign_ticks_only_move_the_clock(sim_rec) -> None:
    sim, rec = sim_rec
    sim.place_order(mk(SBIN, "BUY", 10))
    tick(sim, SBIN, at(9, 21), float("nan"))
    tick(sim, SBIN, at(9, 22), -5.0)
    sim.on_tick(Tick("NSE:OTHER", at(9, 23), 10.0))
    assert not rec.fills and sim.now == at(9, 23) and sim.last_price(SBIN.id) == 800.0
    tick(sim, SBIN, at(9, 24), 801.0)
    assert rec.fills[0].price == 801.0


# ---------------------------------------------------------------- MIS square-off


def _mis_day(sim: SimBroker) -> str:
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 100, product="MIS", client_id="entry"))
    tick(sim, SBIN, at(9, 21), 800.5)
    working = sim.place_order(mk(SBIN, "BUY", 100, "LIMIT", product="MIS", limit_price=790.0))
    sim.place_order(mk(SBIN, "BUY", 10, client_id="delivery"))
    tick(sim, SBIN, at(9, 22), 801.0)
    return working


def test_mis_square_off_at_1515_on_the_clock() -> None:
    sim, rec = make_sim(free=True)
    working = _mis_day(sim)
    tick(sim, SBIN, at(15, 14, 59), 805.0)
    assert position(sim, SBIN, Product.MIS)[0] == 100
    sim.on_clock(at(15, 15))
    assert sim.order(working).status is OrderStatus.CANCELLED
    assert "square-off at 15:15" in sim.order(working).status_message
    exits = [o for o in sim.orders() if o.tag == "squareoff"]
    assert [(o.side, o.qty, o.status) for o in exits] == [(Side.SELL, 100, OrderStatus.OPEN)]
    tick(sim, SBIN, at(15, 15, 5), 806.0)  # at market: the next tick
    assert position(sim, SBIN, Product.MIS)[0] == 0
    assert position(sim, SBIN, Product.CNC)[0] == 10  # delivery untouched
    assert sim.funds().realised_pnl == pytest.approx(100 * (806.0 - 800.5))
    assert rec.fills[-1].charges == 0.0  # Velox's own square-off is free by default


def test_mis_square_off_configured_1520_with_broker_charge() -> None:
    sim, rec = make_sim(free=True, square_off_time=time(15, 20), square_off_charge=50.0)
    _mis_day(sim)
    tick(sim, SBIN, at(15, 15, 30), 805.0)
    assert position(sim, SBIN, Product.MIS)[0] == 100
    tick(sim, SBIN, at(15, 20), 804.0)  # first tick at 15:20 squares off at its price
    assert position(sim, SBIN, Product.MIS)[0] == 0
    assert (rec.fills[-1].price, rec.fills[-1].charges) == (804.0, pytest.approx(59.0))


def test_square_off_runs_on_a_tick_of_another_instrument() -> None:
    # SBIN has an open MIS position and a working MIS order; the first event at or after 15:15
    # is a FUT tick. It must square SBIN off (a tick with no orders of its own is no excuse).
    sim, rec = make_sim(free=True)
    working = _mis_day(sim)
    tick(sim, FUT, at(15, 15, 1), 24800.0)
    assert sim.order(working).status is OrderStatus.CANCELLED
    exits = [o for o in sim.orders() if o.tag == "squareoff"]
    assert [(o.side, o.qty, o.status) for o in exits] == [(Side.SELL, 100, OrderStatus.OPEN)]
    tick(sim, SBIN, at(15, 15, 2), 804.0)
    assert position(sim, SBIN, Product.MIS)[0] == 0 and rec.fills[-1].price == 804.0


# ---------------------------------------------------------------- sessions and holdings


def test_session_roll_carries_cnc_to_holdings_and_expires_orders() -> None:
    sim, rec = make_sim(free=True)
    tick(sim, SBIN, at(9, 20), 800.0)
    tick(sim, FUT, at(9, 20), 24800.0)
    sim.place_order(mk(SBIN, "BUY", 100))
    sim.place_order(mk(FUT, "BUY", 75, product="NRML"))
    tick(sim, SBIN, at(9, 21), 800.0)
    tick(sim, FUT, at(9, 21), 24810.0)
    stale = sim.place_order(mk(SBIN, "BUY", 10, "LIMIT", limit_price=700.0))
    tick(sim, SBIN, at(9, 15, 5, day=NEXT_DAY), 820.0)
    assert "expired" in rec.updates[-1].status_message
    assert rec.updates[-1].broker_order_id == stale
    (held,) = sim.holdings()
    assert (held.instrument_id, held.qty, held.average_price) == (SBIN.id, 100, 800.0)
    assert [(p.instrument_id, p.qty, p.realised_pnl) for p in sim.positions()] == [
        (FUT.id, 75, 0.0)
    ]
    # today: buy 100 more at 820, sell 150 at 830 → closes today's 100 first, then 50 held
    sim.place_order(mk(SBIN, "BUY", 100, client_id="b2"))
    tick(sim, SBIN, at(9, 16, day=NEXT_DAY), 820.0)
    sim.place_order(mk(SBIN, "SELL", 150, client_id="s2"))
    tick(sim, SBIN, at(9, 17, day=NEXT_DAY), 830.0)
    assert sim.funds().realised_pnl == pytest.approx(100 * 10.0 + 50 * 30.0)
    assert [(h.qty, h.average_price) for h in sim.holdings()] == [(50, 800.0)]
    with pytest.raises(OrderRejected, match="50 free"):
        sim.place_order(mk(SBIN, "SELL", 51, client_id="s3"))
    # cash: −80,000 (day 1) −82,000 +1,24,500 (day 2)
    assert sim.funds().cash == pytest.approx(CASH - 80_000 - 82_000 + 124_500)


def test_pending_cnc_sell_reserves_holdings() -> None:
    sim, _ = make_sim(free=True)
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 100))
    tick(sim, SBIN, at(9, 21), 800.0)
    sim.place_order(mk(SBIN, "SELL", 60, "LIMIT", limit_price=900.0))
    with pytest.raises(OrderRejected, match="40 free"):
        sim.place_order(mk(SBIN, "SELL", 41, client_id="more"))


def test_no_market_time_yet_rejects() -> None:
    sim, _ = make_sim(free=True)
    with pytest.raises(OrderRejected, match="no market time yet"):
        sim.place_order(mk(SBIN, "BUY", 1))


def test_market_order_without_any_price_rejects() -> None:
    sim, _ = make_sim(free=True)
    sim.on_clock(at(9, 20))
    with pytest.raises(OrderRejected, match="No last traded price for NSE:SBIN"):
        sim.place_order(mk(SBIN, "BUY", 1))


def test_assigning_a_new_config_takes_effect() -> None:
    sim, rec = make_sim(free=True)
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.config = SimConfig(latency=timedelta(seconds=2), max_volume_share=0.1)
    oid = sim.place_order(mk(SBIN, "BUY", 100))
    tick(sim, SBIN, at(9, 20, 1), 801.0, volume=1_000)  # still in flight
    assert sim.order(oid).status is OrderStatus.SUBMITTED and not rec.fills
    tick(sim, SBIN, at(9, 20, 2), 802.0, volume=1_500)  # live; 500 traded → 50 may fill
    assert [(f.qty, f.price) for f in rec.fills] == [(50, 802.0)]


@pytest.mark.parametrize(
    "day",
    [
        date(2021, 2, 24),  # NSE outage: trading paused 11:40-15:45, extended to 17:00
        date(2022, 10, 24),  # Muhurat trading, 18:15-19:15 only
        date(2024, 1, 20),  # Saturday full regular session (Monday 01-22 made a holiday)
        date(2024, 3, 2),  # Saturday DR-site session in two parts
        date(2025, 6, 1),  # a Sunday
    ],
)
def test_orders_are_refused_exactly_when_the_calendar_says_closed(day: date) -> None:
    """Every half minute from 08:00 to 20:00 (and one second before each minute), an order is
    accepted exactly when ``velox.calendar.is_open`` says NSE is trading."""
    sim, _ = make_sim(cash=1e9, free=True)
    start = datetime(day.year, day.month, day.day, 8, 0, tzinfo=IST)
    accepted = expected = 0
    for k in range(12 * 60 * 2):
        for when in (start + timedelta(seconds=30 * k - 1), start + timedelta(seconds=30 * k)):
            sim.on_clock(when)
            is_open_now = is_open(when)
            order = mk(SBIN, "BUY", 1, "LIMIT", limit_price=1.0, client_id=f"c{k}")
            try:
                sim.place_order(order)
                accepted += 1
            except OrderRejected as exc:
                assert not is_open_now and "Markets are closed" in exc.reason, when
            else:
                assert is_open_now, when
            expected += is_open_now
    assert accepted == expected


def test_saturday_2024_01_20_trades_the_full_regular_session() -> None:
    # NSE turned the DR-site drill planned for Saturday 2024-01-20 into a full regular session
    # (circular of 2024-01-19): orders are accepted 09:15-15:30, through the old drill's pause
    # (10:00-11:30) and after its 12:30 close, and refused in the pre-open and after 15:30.
    sim, _ = make_sim(cash=1e9, free=True)
    day = date(2024, 1, 20)
    for n, (clock, accepted) in enumerate(
        [(time(9, 14, 59), False), (time(9, 15), True), (time(10, 30), True),
         (time(12, 45), True), (time(15, 29, 59), True), (time(15, 30), False)]
    ):  # fmt: skip
        sim.on_clock(datetime.combine(day, clock, tzinfo=IST))
        order = mk(SBIN, "BUY", 1, "LIMIT", limit_price=1.0, client_id=f"sat{n}")
        if accepted:
            sim.place_order(order)
        else:
            with pytest.raises(OrderRejected, match="Markets are closed"):
                sim.place_order(order)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_volume_share"):
        SimConfig(max_volume_share=1.5)


def test_deterministic_ids_and_replay() -> None:
    def run() -> list[tuple[str | None, str, float]]:
        sim, rec = make_sim()
        tick(sim, SBIN, at(9, 20), 800.0)
        sim.place_order(mk(SBIN, "BUY", 10))
        tick(sim, SBIN, at(9, 21), 801.0)
        return [(f.broker_order_id, f.fill_id, f.charges) for f in rec.fills]

    assert (
        run()
        == run()
        == [
            (
                "SIM000000001",
                "SIM000000001-10",
                pytest.approx(hand_charges("equity_delivery", "BUY", 10, 801.0)),
            )
        ]
    )


@settings(max_examples=60, deadline=None)
@given(
    side=st.sampled_from(["BUY", "SELL"]),
    kind=st.sampled_from(["MARKET", "LIMIT", "SL", "SL-M"]),
    offset=st.integers(1, 40),
    limit_gap=st.integers(0, 10),
    path=st.lists(st.integers(-60, 60), min_size=1, max_size=30),
)
def test_fill_is_at_the_first_qualifying_tick_by_the_stated_rule(
    side: str, kind: str, offset: int, limit_gap: int, path: list[int]
) -> None:
    """An independent re-statement of the fill rules, checked on random price paths."""
    sim, rec = make_sim(free=True)
    step, base = 0.05, 800.0
    tick(sim, SBIN, at(9, 20), base)
    sign = 1 if side == "BUY" else -1
    limit = trigger = None
    if kind == "LIMIT":
        limit = round(base - sign * offset * step, 2)  # a resting limit, away from the market
    if kind in ("SL", "SL-M"):
        trigger = round(base + sign * offset * step, 2)  # a stop beyond the market
    if kind == "SL":
        limit = round(trigger + sign * limit_gap * step, 2)  # type: ignore[operator]
    sim.place_order(
        mk(SBIN, side, 5, kind, product="MIS", limit_price=limit, trigger_price=trigger)
    )
    prices = [round(base + k * step, 2) for k in path]
    expected = None
    triggered = kind in ("MARKET", "LIMIT")
    for p in prices:
        if not triggered:
            triggered = p >= trigger if side == "BUY" else p <= trigger  # type: ignore[operator]
            if not triggered:
                continue
        if kind in ("MARKET", "SL-M"):
            expected = p
            break
        if (side == "BUY" and p <= limit) or (side == "SELL" and p >= limit):  # type: ignore[operator]
            expected = p
            break
    for k, p in enumerate(prices):
        tick(sim, SBIN, at(9, 21, k), p)
    assert [f.price for f in rec.fills] == ([] if expected is None else [expected])


def test_pickled_simulator_resumes_identically() -> None:
    sim, _ = make_sim(max_volume_share=0.1, latency=timedelta(seconds=1))
    tick(sim, SBIN, at(9, 20), 800.0, volume=1_000)
    sim.place_order(mk(SBIN, "BUY", 200, "LIMIT", limit_price=801.0))
    sim.place_order(mk(SBIN, "SELL", 100, "SL-M", product="MIS", trigger_price=795.0))
    tick(sim, SBIN, at(9, 21), 800.0, volume=2_000)  # 100 of the limit fill
    clone = pickle.loads(pickle.dumps(sim))
    rec_a, rec_b = Recorder(), Recorder()
    sim.set_listener(rec_a)
    clone.set_listener(rec_b)
    for k, price in enumerate([800.5, 794.0, 799.0]):
        for s in (sim, clone):
            tick(s, SBIN, at(9, 22 + k), price, volume=3_000 + 1_000 * k)
    assert rec_a.fills == rec_b.fills and len(rec_a.fills) == 2
    assert sim.funds() == clone.funds() and sim.positions() == clone.positions()
    assert sim.orders() == clone.orders()


def test_pickled_simulator_with_a_custom_schedule_resumes_identically() -> None:
    # A hypothetical ₹15/crore SEBI fee: the schedule's read-only tables must pickle too.
    custom = replace(DEFAULT_SCHEDULE, sebi=((date(2019, 4, 1), "15"),))
    sim = SimBroker(INSTRUMENTS, initial_cash=CASH, cost_model=CostModel(schedule=custom))
    tick(sim, SBIN, at(9, 20), 800.0)
    sim.place_order(mk(SBIN, "BUY", 100, "LIMIT", limit_price=800.0))
    clone = pickle.loads(pickle.dumps(sim))
    rec_a, rec_b = Recorder(), Recorder()
    sim.set_listener(rec_a)
    clone.set_listener(rec_b)
    for s in (sim, clone):
        tick(s, SBIN, at(9, 21), 799.95)
    assert rec_a.fills == rec_b.fills and len(rec_a.fills) == 1
    # 100 × 799.95 = ₹79,995 delivery buy at ₹15/crore SEBI: 0.119993 instead of 0.079995
    value = 100 * 799.95
    sebi = value * 15 / 1e7
    expected = value * (0.001 + 0.0000307 + 0.00015) + sebi + 0.18 * (value * 0.0000307 + sebi)
    assert rec_b.fills[0].charges == pytest.approx(expected, rel=1e-9)
    assert sim.funds() == clone.funds()


# ---------------------------------------------------------------- ledger over real prices

_MARKET = ("intraday_1min_nifty_banknifty_2021_2022", "clean")


def _session_ticks(symbol: str, days: int) -> list[tuple[datetime, float]]:
    """Return ticks synthesised from real 1-minute bars: O→H→L→C (or O→L→H→C if down).

    The file labels bars by their END; a bar ending at 09:16 covers 09:15:00–09:16:00, so its
    four ticks are stamped 09:15:01, :20, :40 and :59.
    """
    out: list[tuple[datetime, float]] = []
    seen: list[str] = []
    with gzip.open(market_file(*_MARKET, f"{symbol}_1min.csv.gz"), "rt") as fh:
        next(fh)
        for line in fh:
            stamp, o, h, l, c, _ = line.rstrip().split(",")  # noqa: E741
            day, clock = stamp[:10], stamp[11:16]
            if not "09:16" <= clock <= "15:30":
                continue
            if day not in seen:
                if len(seen) == days:
                    break
                seen.append(day)
            end = datetime.fromisoformat(stamp)
            path = (o, h, l, c) if float(c) >= float(o) else (o, l, h, c)
            for offset, price in zip((59, 40, 20, 1), path, strict=True):
                out.append((end - timedelta(seconds=offset), float(price)))
    return out


@dataclass
class Ledger:
    """Independent book-keeping from the fill postbacks only (no velox accounting)."""

    initial: float
    flow: float = 0.0  # Σ −side·qty·price − charges
    charges: float = 0.0
    qty: dict[str, int] = field(default_factory=dict)
    realised_before: float = 0.0  # Funds reports today's realised/charges; earlier days here
    charges_before: float = 0.0

    def on_fill(self, fill: Fill) -> None:
        self.flow -= fill.side.sign * fill.qty * fill.price + fill.charges
        self.charges += fill.charges
        self.qty[fill.instrument_id] = (
            self.qty.get(fill.instrument_id, 0) + fill.side.sign * fill.qty
        )

    def on_order_update(self, order: Order) -> None:
        pass

    def check(self, sim: SimBroker) -> None:
        funds = sim.funds()
        books = sim.positions() + sim.holdings()
        ltp = sim.last_price
        unrealised = sum(p.qty * (ltp(p.instrument_id) - p.average_price) for p in books)
        marked = sum(
            p.qty * ltp(p.instrument_id)
            if p.product is Product.CNC
            else p.qty * (ltp(p.instrument_id) - p.average_price)
            for p in books
        )
        realised = self.realised_before + funds.realised_pnl
        charges = self.charges_before + funds.charges
        identity = self.initial + realised + unrealised - charges
        # the simulator's own account: cash + positions marked to market
        assert funds.cash + marked == pytest.approx(identity, abs=1e-4)
        # an independent path: raw cash flows of the fills + market value of the units held
        held = sum(q * ltp(iid) for iid, q in self.qty.items() if q)
        assert self.initial + self.flow + held == pytest.approx(identity, abs=1e-4)
        assert charges == pytest.approx(self.charges, abs=1e-6)
        by_id: dict[str, int] = {}
        for p in books:
            by_id[p.instrument_id] = by_id.get(p.instrument_id, 0) + p.qty
        assert {k: v for k, v in by_id.items() if v} == {k: v for k, v in self.qty.items() if v}
        assert funds.used_margin >= -1e-6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ledger_balances_over_randomized_run_on_real_prices(seed: int) -> None:
    fut = Instrument("NFO:NIFTY21JANFUT", "NFO", "NIFTY21JANFUT", InstrumentKind.FUT,
                     lot_size=75, expiry=date(2021, 1, 28), freeze_qty=2800)  # fmt: skip
    bank = Instrument("NFO:BANKNIFTY21JANFUT", "NFO", "BANKNIFTY21JANFUT", InstrumentKind.FUT,
                      lot_size=25, expiry=date(2021, 1, 28), freeze_qty=1200)  # fmt: skip
    etf = Instrument("NSE:NIFTYBEES", "NSE", "NIFTYBEES", InstrumentKind.EQ, tick_size=0.01)
    instruments = {i.id: i for i in (fut, bank, etf)}
    days = 4
    stream = [(ts, fut, p) for ts, p in _session_ticks("NIFTY", days)]
    stream += [(ts, bank, p) for ts, p in _session_ticks("BANKNIFTY", days)]
    stream += [(ts, etf, round(p / 100, 2)) for ts, p in _session_ticks("NIFTY", days)]
    stream.sort(key=lambda row: (row[0], row[1].id))
    ledger = Ledger(initial=3_000_000.0)
    config = SimConfig(latency=timedelta(seconds=1))
    sim = SimBroker(
        instruments, initial_cash=ledger.initial, slippage=TickSlippage(1), config=config
    )
    sim.set_listener(ledger)
    rng = np.random.default_rng(seed)
    products = {fut.id: ["MIS", "NRML"], bank.id: ["MIS", "NRML"], etf.id: ["CNC", "MIS"]}
    kinds = ["MARKET", "LIMIT", "SL", "SL-M"]
    placed = rejected = 0
    day = None
    for n, (ts, ins, raw) in enumerate(stream):
        price = ins.snap_price(raw)
        if ts.date() != day:
            if day is not None:  # book the finished day before the simulator rolls it
                assert all(p.qty == 0 for p in sim.positions() if p.product is Product.MIS)
                funds = sim.funds()
                ledger.realised_before += funds.realised_pnl
                ledger.charges_before += funds.charges
            day = ts.date()
        sim.on_tick(Tick(ins.id, ts, price))
        ledger.check(sim)
        if rng.random() < 0.03:
            target = instruments[rng.choice(list(instruments))]
            ltp = sim.last_price(target.id)
            if ltp is None:
                continue
            kind = kinds[rng.integers(4)]
            side = "BUY" if rng.random() < 0.5 else "SELL"
            sign = 1 if side == "BUY" else -1
            step = target.tick_size * max(1, round(ltp * 0.0005 / target.tick_size))
            fields: dict[str, object] = {}
            if kind in ("LIMIT", "SL"):
                fields["limit_price"] = target.snap_price(ltp + int(rng.integers(-5, 6)) * step)
            if kind in ("SL", "SL-M"):
                fields["trigger_price"] = target.snap_price(
                    ltp + sign * int(rng.integers(1, 6)) * step
                )
                if kind == "SL":
                    fields["limit_price"] = target.snap_price(
                        fields["trigger_price"] + sign * int(rng.integers(0, 3)) * step  # type: ignore[operator]
                    )
            if kind in ("MARKET", "LIMIT") and rng.random() < 0.1:
                fields["validity"] = "IOC"
            qty = target.lot_size * int(rng.integers(1, 4)) * (100 if target is etf else 1)
            product = products[target.id][rng.integers(2)]
            try:
                sim.place_order(Order(f"r{n}", target.id, Side(side), qty, kind, product,  # type: ignore[arg-type]
                                      **fields))  # fmt: skip
                placed += 1
            except OrderRejected:
                rejected += 1
            ledger.check(sim)
        if rng.random() < 0.01:
            live = [o for o in sim.orders() if not o.is_terminal and o.broker_order_id]
            if live:
                victim = live[rng.integers(len(live))]
                try:
                    if victim.order_type.value == "LIMIT" and rng.random() < 0.5:
                        last = sim.last_price(victim.instrument_id) or victim.limit_price
                        ins_v = instruments[victim.instrument_id]
                        sim.modify_order(victim.broker_order_id, limit_price=ins_v.snap_price(last))  # type: ignore[arg-type]
                    else:
                        sim.cancel_order(victim.broker_order_id)  # type: ignore[arg-type]
                except OrderRejected:
                    pass
                ledger.check(sim)
    assert placed > 100 and rejected > 0 and len(sim.fills()) > 50
