"""Pure Kite ↔ Velox translation, checked against Zerodha's recorded responses.

The references are independent of the code: the kiteconnect-mocks JSON recorded by Zerodha,
hand-computed IST→UTC conversions and hand-added quantities.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kiteconnect import exceptions as kex

from velox.brokers.kite import mapping as m
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited
from velox.testing import KITE_MOCKS
from velox.types import Order, OrderStatus, OrderType, Product, Side

MOCKS = KITE_MOCKS


def mock(name: str) -> dict:
    path = MOCKS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the Kite SDK mocks are bundled in data/brokers")
    return json.loads(path.read_text())


def test_capabilities_are_data() -> None:
    caps = m.KITE_CAPABILITIES
    assert caps.tag_length == 20 and caps.gtt is False and caps.modify_stop
    assert 0 < caps.max_orders_per_second < 10
    assert {t.value for t in caps.order_types} == {"MARKET", "LIMIT", "SL", "SL-M"}
    assert {p.value for p in caps.products} == {"CNC", "MIS", "NRML"}
    assert {v.value for v in caps.validities} == {"DAY", "IOC"}


def test_ist_strings_become_aware_and_convert_to_utc_by_hand() -> None:
    ts = m.kite_time("2021-05-31 09:18:57")
    assert ts.utcoffset().total_seconds() == 5.5 * 3600
    assert ts.astimezone(UTC) == datetime(2021, 5, 31, 3, 48, 57, tzinfo=UTC)
    # the SDK's naive datetime is the same IST wall clock
    assert m.kite_time(datetime(2021, 5, 31, 0, 10)) == datetime(2021, 5, 30, 18, 40, tzinfo=UTC)
    # a candle's "+0530" is kept
    assert m.kite_time("2017-12-15T09:15:00+0530") == datetime(2017, 12, 15, 3, 45, tzinfo=UTC)
    assert m.kite_time(None) is None
    with pytest.raises(BrokerError, match="timestamp"):
        m.kite_time("yesterday-ish")


def test_orders_mock_maps_every_order() -> None:
    data = mock("orders.json")["data"]
    orders = [m.order_from_kite(o) for o in data]
    by_id = {o.broker_order_id: o for o in orders}
    cancelled = by_id["100000000000000"]
    assert cancelled.instrument_id == "CDS:USDINR21JUNFUT" and cancelled.status.value == "CANCELLED"
    assert cancelled.product is Product.NRML and cancelled.limit_price == 72.0
    assert cancelled.trigger_price is None and cancelled.client_id == "kite:100000000000000"
    assert cancelled.created_at.astimezone(UTC) == datetime(2021, 5, 31, 3, 48, 57, tzinfo=UTC)
    done = by_id["300000000000000"]
    assert (done.status, done.filled_qty, done.average_price) == (OrderStatus.FILLED, 1, 109.4)
    market = by_id["500000000000000"]
    assert market.order_type is OrderType.MARKET and market.limit_price is None
    tagged = [o for o in orders if o.tag]
    assert {o.client_id for o in tagged} == {o.tag for o in tagged} >= {"icebergord"}
    rejected = next(o for o in orders if o.status is OrderStatus.REJECTED)
    assert rejected.status_message.startswith("Insufficient funds") and rejected.qty == 200
    # MTF (margin delivery) maps to CNC
    mtf = next(o for o in data if o["product"] == "MTF")
    assert by_id[mtf["order_id"]].product is Product.CNC
    assert len({o["status"] for o in data} - {"COMPLETE", "CANCELLED", "REJECTED", "OPEN"}) == 0


def test_postback_mock_maps_to_a_filled_order() -> None:
    order = m.order_from_kite(mock("postback.json"))
    assert order.status is OrderStatus.FILLED and order.average_price == 470.0
    assert order.instrument_id == "NSE:SBIN" and order.side is Side.BUY


def test_open_order_with_fills_is_partial_and_statuses_cover_kite() -> None:
    assert m.order_status("OPEN", 4, 10) is OrderStatus.PARTIAL
    assert m.order_status("TRIGGER PENDING", 0, 10) is OrderStatus.TRIGGER_PENDING
    assert m.order_status("PUT ORDER REQ RECEIVED", 0, 1) is OrderStatus.SUBMITTED
    assert m.order_status("CANCELLED", 3, 10) is OrderStatus.CANCELLED
    with pytest.raises(BrokerError, match="order status"):
        m.order_status("WEIRD", 0, 1)


def test_trades_mock_maps_to_fills() -> None:
    data = mock("trades.json")["data"]
    fills = [m.trade_from_kite(t, client_id="c1", charges=1.5) for t in data]
    first = fills[0]
    assert (first.fill_id, first.instrument_id, first.qty, first.price) == (
        "10000000",
        "NSE:SBIN",
        1,
        420.65,
    )
    assert first.ts.astimezone(UTC) == datetime(2021, 5, 31, 3, 46, 39, tzinfo=UTC)
    assert first.broker_order_id == "200000000000000" and first.charges == 1.5
    assert [f.fill_id for f in fills] == [t["trade_id"] for t in data]
    assert fills[1].product is Product.MIS and fills[2].product is Product.NRML


def test_positions_and_holdings_mocks() -> None:
    positions = m.positions_from_kite(mock("positions.json")["data"])
    lead = positions[0]
    assert (lead.instrument_id, lead.qty, lead.average_price) == ("MCX:LEADMINI17DECFUT", 1, 161.05)
    assert lead.product is Product.NRML and lead.bought_qty == 1
    assert positions[2].product is Product.MIS  # CO → intraday
    holdings = [m.holding_from_kite(h) for h in mock("holdings.json")["data"]]
    assert [(h.instrument_id, h.qty, h.product) for h in holdings] == [
        ("NSE:AARON", 1, Product.CNC),
        ("BSE:SBIN", 16, Product.CNC),
    ]
    assert holdings[1].average_price == 801.78125


def test_margins_mock_funds_available_equals_kites_net() -> None:
    funds = m.funds_from_kite(mock("margins.json")["data"])
    assert funds.available == pytest.approx(99725.05)
    assert funds.used_margin == pytest.approx(145706.55)
    assert funds.cash == pytest.approx(245431.6)  # = available.cash in the mock, by hand
    assert funds.realised_pnl == pytest.approx(761.7)
    with pytest.raises(BrokerError, match="margins payload"):
        m.funds_from_kite({"commodity": {}})


def test_order_params_for_every_type() -> None:
    base = dict(client_id="R1-1", instrument_id="NFO:NIFTY24APR22500CE", side="SELL", qty=50)
    market = m.order_params(Order(**base, product="NRML", validity="IOC"))
    assert market == {
        "variety": "regular",
        "exchange": "NFO",
        "tradingsymbol": "NIFTY24APR22500CE",
        "transaction_type": "SELL",
        "quantity": 50,
        "product": "NRML",
        "order_type": "MARKET",
        "validity": "IOC",
        "tag": "R1-1",
    }
    sl = m.order_params(Order(**base, order_type="SL", limit_price=99.0, trigger_price=100.0))
    assert (sl["price"], sl["trigger_price"], sl["order_type"]) == (99.0, 100.0, "SL")
    slm = m.order_params(Order(**base, order_type="SL-M", trigger_price=100.0), qty=25, tag="X")
    assert "price" not in slm and slm["trigger_price"] == 100.0 and slm["quantity"] == 25
    assert slm["tag"] == "X"
    with pytest.raises(OrderRejected, match="20 characters"):
        m.order_params(Order(**{**base, "client_id": "A" * 21}))
    assert m.modify_params(qty=2, limit_price=10.5) == {
        "variety": "regular",
        "quantity": 2,
        "price": 10.5,
    }


def test_slices_aggregate_into_one_velox_order() -> None:
    def piece(oid: str, status: str, qty: int, filled: int, avg: float) -> Order:
        return m.order_from_kite(
            {"order_id": oid, "status": status, "exchange": "NFO", "tradingsymbol": "NIFTYX",
             "transaction_type": "BUY", "quantity": qty, "filled_quantity": filled,
             "order_type": "MARKET", "product": "NRML", "average_price": avg, "tag": "R9-1"}
        )  # fmt: skip

    a = piece("1", "COMPLETE", 1800, 1800, 100.0)
    b = piece("2", "OPEN", 1800, 900, 102.0)
    c = piece("3", "OPEN", 400, 0, 0.0)
    whole = m.aggregate_orders([a, b, c])
    assert (whole.qty, whole.filled_qty, whole.status) == (4000, 2700, OrderStatus.PARTIAL)
    assert whole.average_price == pytest.approx((1800 * 100 + 900 * 102) / 2700)
    assert whole.broker_order_id == "1" and whole.client_id == "R9-1"
    done = m.aggregate_orders([a, piece("2", "COMPLETE", 1800, 1800, 101.0)])
    assert done.status is OrderStatus.FILLED and done.average_price == pytest.approx(100.5)
    part_cancelled = m.aggregate_orders([a, piece("2", "CANCELLED", 1800, 0, 0.0)])
    assert part_cancelled.status is OrderStatus.CANCELLED and part_cancelled.filled_qty == 1800
    rejected = m.aggregate_orders(
        [piece("4", "REJECTED", 10, 0, 0), piece("5", "REJECTED", 1, 0, 0)]
    )
    assert rejected.status is OrderStatus.REJECTED


def test_history_windows_respect_kites_limits() -> None:
    from velox.calendar import IST

    start, end = datetime(2023, 1, 1, tzinfo=IST), datetime(2024, 1, 1, tzinfo=IST)
    for timeframe, (_, days) in m.HISTORY_LIMITS.items():
        windows = m.history_windows(start, end, timeframe)
        assert windows[0][0] == start and windows[-1][1] == end
        for (_, b), (c, _) in zip(windows, windows[1:], strict=False):
            assert (c - b).total_seconds() == 1
        assert all((b - a).total_seconds() < days * 86400 for a, b in windows)
    assert len(m.history_windows(start, end, "1m")) == 7  # 365 days / 60 = 6.08 → 7 by hand
    assert len(m.history_windows(start, end, "1d")) == 1


def test_historical_mock_becomes_velox_bars() -> None:
    from dateutil.parser import parse

    raw = mock("historical_minute.json")["data"]["candles"]
    records = [
        dict(zip(("date", "open", "high", "low", "close", "volume"), c[:6], strict=True))
        for c in raw
    ]
    for r in records:
        r["date"] = parse(r["date"])  # what the SDK hands back
    frame = m.candles_frame(records)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "ts" and str(frame.index.tz) == "Asia/Kolkata"
    assert (frame.dtypes == "float64").all() and frame.index.is_monotonic_increasing
    first = raw[0]
    assert frame.iloc[0]["open"] == first[1] and frame.iloc[0]["volume"] == first[5]
    assert frame.index[0] == parse(first[0])
    empty = m.candles_frame([])
    assert len(empty) == 0 and str(empty.index.tz) == "Asia/Kolkata"


def test_sdk_exceptions_become_velox_errors() -> None:
    token = m.translate_error(
        kex.TokenException("Incorrect `api_key` or `access_token`."), what="x"
    )
    assert isinstance(token, AuthExpired) and "velox broker login kite" in str(token)
    limited = m.translate_error(kex.NetworkException("Too many requests", code=429), what="x")
    assert isinstance(limited, RateLimited)
    rejected = m.translate_error(kex.InputException("Invalid price", code=400), what="x")
    assert isinstance(rejected, OrderRejected) and rejected.reason == "Invalid price"
    order = m.translate_error(kex.OrderException("Margin shortfall"), what="x", client_id="c")
    assert isinstance(order, OrderRejected) and order.client_id == "c"
    other = m.translate_error(kex.GeneralException("boom", code=500), what="listing orders")
    assert type(other) is BrokerError and "listing orders" in str(other)
    assert m.is_retryable(kex.NetworkException("gateway", code=503))
    assert m.is_retryable(kex.GeneralException("busy", code=429))
    assert not m.is_retryable(kex.InputException("bad", code=400))
    assert not m.is_retryable(kex.TokenException("expired"))
