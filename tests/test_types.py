"""Core types reject nonsense with messages that name the field and value."""

from __future__ import annotations

import dataclasses
import pickle
import re
from datetime import date, datetime, timedelta, timezone, tzinfo

import pytest

from velox.errors import ValidationError
from velox.types import (
    Bar,
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    Validity,
    apply_fill,
    is_aware,
    is_on_tick,
    replacer,
    snap_to_tick,
)

IST = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2024, 4, 1, 9, 15, tzinfo=IST)
NIFTY_OPT = Instrument(
    id="NFO:NIFTY24APR22500CE",
    exchange="NFO",
    symbol="NIFTY24APR22500CE",
    kind=InstrumentKind.CE,
    tick_size=0.05,
    lot_size=50,
    expiry=date(2024, 4, 25),
    strike=22500.0,
    underlying="NIFTY",
    freeze_qty=1800,
)


def test_order_rejects_non_positive_and_non_integer_quantity():
    with pytest.raises(ValidationError, match=r"Order.qty=-5 must be > 0"):
        Order("c1", "NSE:SBIN", Side.BUY, -5)
    with pytest.raises(ValidationError, match=r"Order.qty=1.5 must be an int"):
        Order("c1", "NSE:SBIN", Side.BUY, 1.5)  # type: ignore[arg-type]


def test_order_type_needs_its_prices_and_nothing_else():
    with pytest.raises(ValidationError, match="LIMIT order needs limit_price"):
        Order("c1", "NSE:SBIN", Side.BUY, 1, OrderType.LIMIT)
    with pytest.raises(ValidationError, match="SL-M order needs trigger_price"):
        Order("c1", "NSE:SBIN", Side.SELL, 1, OrderType.SL_M)
    with pytest.raises(ValidationError, match="SL order needs trigger_price"):
        Order("c1", "NSE:SBIN", Side.SELL, 1, OrderType.SL, limit_price=99.0)
    with pytest.raises(ValidationError, match="MARKET order must not carry limit_price=100.0"):
        Order("c1", "NSE:SBIN", Side.BUY, 1, limit_price=100.0)
    with pytest.raises(ValidationError, match=r"Order.limit_price=-1.0 must be a finite price"):
        Order("c1", "NSE:SBIN", Side.BUY, 1, OrderType.LIMIT, limit_price=-1.0)


def test_order_coerces_strings_and_names_bad_enum_values():
    order = Order("c1", "NSE:SBIN", "SELL", 3, "SL-M", "MIS", "IOC", trigger_price=500.0)
    assert (order.side, order.order_type, order.product, order.validity) == (
        Side.SELL,
        OrderType.SL_M,
        Product.MIS,
        Validity.IOC,
    )
    with pytest.raises(ValidationError, match=r"product='BTST' is not one of CNC, MIS, NRML"):
        Order("c1", "NSE:SBIN", Side.BUY, 1, product="BTST")


def test_order_against_instrument_checks_lot_and_tick_grid():
    ok = Order.for_instrument(
        NIFTY_OPT,
        client_id="c1",
        side=Side.BUY,
        qty=100,
        order_type=OrderType.LIMIT,
        limit_price=101.05,
        product=Product.NRML,
    )
    assert ok.instrument_id == NIFTY_OPT.id
    with pytest.raises(ValidationError, match="qty=75 is not a multiple of lot size 50"):
        Order.for_instrument(NIFTY_OPT, client_id="c2", side=Side.BUY, qty=75)
    with pytest.raises(
        ValidationError, match=r"limit_price=101.03 is off the tick grid 0.05.*101.05"
    ):
        Order.for_instrument(
            NIFTY_OPT,
            client_id="c3",
            side=Side.BUY,
            qty=50,
            order_type=OrderType.LIMIT,
            limit_price=101.03,
        )


def test_order_is_frozen_and_status_changes_make_copies():
    order = Order("c1", "NSE:SBIN", Side.BUY, 10)
    with pytest.raises(AttributeError):
        order.qty = 5  # type: ignore[misc]
    filled = order.with_status(OrderStatus.FILLED, filled_qty=10, average_price=101.0)
    assert order.status is OrderStatus.NEW and filled.is_terminal and filled.remaining_qty == 0
    assert pickle.loads(pickle.dumps(filled)) == filled


def test_bar_rejects_inconsistent_ohlc_and_naive_time():
    with pytest.raises(ValidationError, match="needs low <= open,close <= high"):
        Bar("NSE:SBIN", "1m", T0, open=100, high=99, low=98, close=99)
    with pytest.raises(ValidationError, match="must be finite and > 0"):
        Bar("NSE:SBIN", "1m", T0, open=0, high=1, low=0, close=1)
    with pytest.raises(ValidationError, match="naive"):
        Bar("NSE:SBIN", "1m", datetime(2024, 4, 1, 9, 15), 1, 1, 1, 1)


def test_instrument_validation():
    with pytest.raises(ValidationError, match="must read 'EXCHANGE:SYMBOL'"):
        Instrument("RELIANCE", "NSE", "RELIANCE", InstrumentKind.EQ)
    with pytest.raises(ValidationError, match="lot_size=0"):
        Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ, lot_size=0)
    with pytest.raises(ValidationError, match="needs strike and expiry"):
        Instrument("NFO:X", "NFO", "X", InstrumentKind.PE)
    assert NIFTY_OPT.snap_qty(149) == 100


@pytest.mark.parametrize(
    ("price", "tick", "mode", "expected"),
    [
        (101.23, 0.05, "nearest", 101.25),
        (101.22, 0.05, "nearest", 101.20),
        (101.23, 0.05, "down", 101.20),
        (101.21, 0.05, "up", 101.25),
        (100.1 + 0.2, 0.05, "down", 100.30),  # float noise must not push it a tick down
        (2500.0, 0.5, "up", 2500.0),
        (0.07, 0.01, "nearest", 0.07),
    ],
)
def test_snap_to_tick_worked_examples(price, tick, mode, expected):
    assert snap_to_tick(price, tick, mode) == expected
    assert is_on_tick(expected, tick)


def test_is_on_tick():
    assert is_on_tick(22500.05, 0.05)
    assert not is_on_tick(22500.02, 0.05)


def _fill(side: Side, qty: int, price: float, charges: float = 0.0) -> Fill:
    return Fill("f", "c", "NSE:SBIN", side, qty, price, T0, charges=charges)


def test_apply_fill_hand_worked_sequence():
    # buy 10 @100, buy 10 @110 -> 20 @105; sell 25 @120 -> realise 20*15=300, short 5 @120;
    # buy 5 @100 -> realise 5*20=100, flat.
    p = Position("NSE:SBIN")
    p = apply_fill(p, _fill(Side.BUY, 10, 100.0, charges=1.0))
    p = apply_fill(p, _fill(Side.BUY, 10, 110.0))
    assert (p.qty, p.average_price, p.realised_pnl) == (20, 105.0, 0.0)
    p = apply_fill(p, _fill(Side.SELL, 25, 120.0, charges=2.5))
    assert (p.qty, p.average_price, p.realised_pnl) == (-5, 120.0, 300.0)
    assert p.unrealised_pnl(118.0) == 10.0
    p = apply_fill(p, _fill(Side.BUY, 5, 100.0))
    assert (p.qty, p.average_price, p.realised_pnl, p.charges) == (0, 0.0, 400.0, 3.5)
    assert (p.bought_qty, p.sold_qty) == (25, 25)


def test_fill_validation():
    with pytest.raises(ValidationError, match="Fill.qty=0"):
        _fill(Side.BUY, 0, 100.0)
    with pytest.raises(ValidationError, match="naive"):
        Fill("f", "c", "NSE:SBIN", Side.BUY, 1, 1.0, datetime(2024, 1, 1))


def test_replacer_copies_with_changes_and_keeps_the_rest():
    order = Order("c1", "NSE:SBIN", Side.BUY, 10, OrderType.LIMIT, limit_price=100.0, tag="t")
    with_fill = replacer(Order, "status", "filled_qty", "average_price")
    done = with_fill(order, OrderStatus.FILLED, 10, 99.95)
    assert type(done) is Order and done is not order
    assert (done.status, done.filled_qty, done.average_price) == (OrderStatus.FILLED, 10, 99.95)
    assert done == Order(
        "c1", "NSE:SBIN", Side.BUY, 10, OrderType.LIMIT, limit_price=100.0, tag="t",
        status=OrderStatus.FILLED, filled_qty=10, average_price=99.95,
    )  # fmt: skip
    assert order.status is OrderStatus.NEW  # the source is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.qty = 1  # type: ignore[misc]  # a copy is as frozen as any Order
    assert pickle.loads(pickle.dumps(done)) == done and hash(done) == hash(pickle.loads(
        pickle.dumps(done)))  # fmt: skip
    # every field named: the source is not read
    whole = replacer(Position, *(f.name for f in dataclasses.fields(Position)))
    assert whole(None, "NSE:SBIN", Product.MIS, 3, 10.0, 0.0, 0.0, "s", 3, 0) == Position(
        "NSE:SBIN", Product.MIS, 3, 10.0, strategy="s", bought_qty=3
    )
    with pytest.raises(ValueError, match="no field"):
        replacer(Order, "quantity")


def test_apply_fill_keeps_a_position_subclass():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tagged(Position):
        note: str = "x"

    p = apply_fill(Tagged("NSE:SBIN", note="mine"), _fill(Side.BUY, 4, 50.0, charges=0.5))
    assert type(p) is Tagged and p.note == "mine"
    assert (p.qty, p.average_price, p.charges, p.bought_qty) == (4, 50.0, 0.5, 4)


def test_is_aware_for_fixed_offsets_zones_and_naive_times():
    from zoneinfo import ZoneInfo

    class NoOffset(tzinfo):
        def utcoffset(self, dt):  # noqa: ANN001, ANN201
            return None

    assert is_aware(datetime(2024, 4, 1, 9, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))))
    assert is_aware(datetime(2024, 4, 1, 9, 15, tzinfo=ZoneInfo("Asia/Kolkata")))
    assert not is_aware(datetime(2024, 4, 1, 9, 15))
    assert not is_aware(datetime(2024, 4, 1, 9, 15, tzinfo=NoOffset()))
    with pytest.raises(ValidationError, match="naive"):
        Order("c1", "NSE:SBIN", Side.BUY, 1, created_at=datetime(2024, 4, 1, tzinfo=NoOffset()))


# ---- the instrument id grammar ----------------------------------------------------------------

BAD_IDS = {
    "trailing space": ("NSE:RELIANCE ", "leading or trailing blanks"),
    "leading space": (" NSE:RELIANCE", "leading or trailing blanks"),
    "tab": ("NSE:RELI\tANCE", "control characters"),
    "newline (log injection)": ("NSE:SBIN\n2026-01-01 INFO fake line", "control characters"),
    "NUL": ("NSE:SBIN\x00", "control characters"),
    "three parts": ("NSE:A:B:C", "more than one ':'"),
    "no colon": ("RELIANCE", "must read 'EXCHANGE:SYMBOL'"),
    "empty symbol": ("NSE:", "must read 'EXCHANGE:SYMBOL'"),
    "empty exchange": (":SBIN", "must read 'EXCHANGE:SYMBOL'"),
    "empty": ("", "must read 'EXCHANGE:SYMBOL'"),
    "unknown exchange": ("NYSE:IBM", "unknown exchange 'NYSE'"),
    "lower case exchange": ("nse:SBIN", "ids are upper case: 'NSE:SBIN'"),
    "lower case symbol": ("NSE:sbin", "ids are upper case: 'NSE:SBIN'"),
    "emoji": ("NSE:🚀MOON", "outside the exchange's character set"),
    "double inner space": ("NSE:NIFTY  50", "outside the exchange's character set"),
    "symbol of punctuation": ("NSE:-", "outside the exchange's character set"),
    "quote (SQL)": ("NSE:SBIN';DROP", "outside the exchange's character set"),
    "2.8 KB": ("NSE:" + "A" * 2800, "is too long"),
    "41-char symbol": ("NSE:" + "A" * 41, "is too long"),
}


@pytest.mark.parametrize(("text", "problem"), BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_instrument_ids_are_refused_with_repr(text: str, problem: str) -> None:
    from velox.types import check_instrument_id

    with pytest.raises(ValidationError, match=re.escape(problem)) as info:
        check_instrument_id(text)
    message = str(info.value)
    assert "\n" not in message and "\t" not in message  # shown by repr: no forged log line
    assert len(message) < 400  # truncated, however long the id
    assert repr(text[:48]) in message
    with pytest.raises(ValidationError):  # and the dataclass refuses it the same way
        Instrument(text, text.partition(":")[0], text.partition(":")[2], InstrumentKind.EQ)


@pytest.mark.parametrize("bad", [None, 42, b"NSE:SBIN", ("NSE", "SBIN")])
def test_non_string_ids_are_refused(bad: object) -> None:
    from velox.types import check_instrument_id

    with pytest.raises(ValidationError, match="must be a string"):
        check_instrument_id(bad)


def test_every_bundled_instrument_id_follows_the_grammar() -> None:
    # the grammar is derived from the exchanges' symbols: the master must pass it whole
    from velox.instruments import load_bundled_master
    from velox.types import MAX_SYMBOL_LENGTH, check_instrument_id

    ids = load_bundled_master().table["id"].tolist()
    assert all(check_instrument_id(i) == i for i in ids)
    for good in ("NSE:M&M", "NSE:BAJAJ-AUTO", "NFO:ABCAPITAL24APR162.5CE", "NSE:NIFTY 50",
                 "MCX:GOLD", "NSE:" + "A" * MAX_SYMBOL_LENGTH):  # fmt: skip
        assert check_instrument_id(good) == good
