"""Breeze's pure mapping: notifications read through the SDK's own parser, book statuses,
protective limits, candle spans and error envelopes."""

from __future__ import annotations

import doctest
import itertools
from datetime import datetime, timedelta

import pytest

from velox.brokers.breeze import _sdk, mapping
from velox.brokers.breeze.simulator import BreezeSimulator, _BreezeOrder
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, OrderRejected, RateLimited
from velox.types import Order, OrderStatus, OrderType, Side


def test_docstring_examples() -> None:
    assert doctest.testmod(mapping).failed == 0


@pytest.mark.parametrize(
    ("status", "filled", "word"),
    [(OrderStatus.OPEN, 0, "ordered"), (OrderStatus.PARTIAL, 40, "partially executed"),
     (OrderStatus.FILLED, 100, "executed"), (OrderStatus.CANCELLED, 40, "cancelled"),
     (OrderStatus.REJECTED, 0, "rejected")],
)  # fmt: skip
def test_a_notification_reads_back_through_the_sdks_parser(
    status: OrderStatus, filled: int, word: str
) -> None:
    sim = BreezeSimulator()
    order = Order(client_id="x", instrument_id="NSE:SBIN", side="SELL", qty=100,
                  order_type="LIMIT", limit_price=812.5, product="CNC", status=status,
                  filled_qty=filled, average_price=812.5 if filled else 0.0)  # fmt: skip
    record = _BreezeOrder("20250520N300000007", order, "STABAN", "U1", "CID-7",
                          updated_at=datetime(2025, 5, 20, 10, 0, tzinfo=IST))  # fmt: skip
    parsed = _sdk.sdk().connect.BreezeConnect(api_key="k").parse_data(sim.notification(record))
    assert parsed["orderStatus"].lower() == word and parsed["stockCode"] == "STABAN"
    got = mapping.order_from_notification(parsed, "NSE:SBIN", "CID-7")
    assert (got.client_id, got.broker_order_id, got.side, got.qty) == (
        "CID-7", "20250520N300000007", Side.SELL, 100)  # fmt: skip
    assert (got.status, got.filled_qty, got.limit_price) == (status, filled, 812.5)


def test_book_statuses_and_a_working_stop() -> None:
    entry = {"order_id": "1", "status": "Ordered", "quantity": "10", "pending_quantity": "10",
             "cancelled_quantity": "0", "order_type": "StopLoss", "action": "Sell",
             "product_type": "Margin", "price": "776", "stoploss": "800", "user_remark": "S1",
             "order_datetime": "20-May-2025 10:40:05"}  # fmt: skip
    stop = mapping.order_from_breeze(entry, "NSE:SBIN")
    assert (stop.status, stop.order_type, stop.trigger_price) == (
        OrderStatus.TRIGGER_PENDING, OrderType.SL, 800.0)  # fmt: skip
    assert stop.created_at == datetime(2025, 5, 20, 10, 40, 5, tzinfo=IST)
    part = mapping.order_from_breeze({**entry, "order_type": "Limit", "pending_quantity": "4"},
                                     "NSE:SBIN")  # fmt: skip
    assert (part.status, part.filled_qty) == (OrderStatus.PARTIAL, 6)


def test_marketable_and_protective_limits_are_on_tick_and_inside_the_band() -> None:
    assert mapping.marketable_limit(Side.SELL, 812.0, 0.05) == 787.6  # 812 × 0.97 = 787.64 ↓
    assert mapping.marketable_limit(Side.SELL, 812.0, 0.05, lower=800.0) == 800.0
    assert mapping.protective_limit(Side.BUY, 99.99, 0.01) == 102.99  # 102.9897 ↑


def test_candle_windows_never_hold_more_than_1000_candles() -> None:
    start = datetime(2025, 1, 1, 9, 15, tzinfo=IST)
    for tf, seconds in (("1s", 1), ("1m", 60), ("1d", 86400)):
        end = start + timedelta(seconds=seconds * 3500)
        spans = mapping.candle_windows(start, end, tf)
        assert spans[0][0] == start and spans[-1][1] == end
        assert all((hi - lo).total_seconds() / seconds + 1 <= 1000 for lo, hi in spans)
        assert all(b[0] - a[1] == timedelta(seconds=seconds) for a, b in itertools.pairwise(spans))


def test_error_envelopes_become_velox_errors() -> None:
    expired = mapping.error_of({"Status": 401, "Error": "Session key is expired."}, "x")
    assert isinstance(expired, AuthExpired) and "velox broker login breeze" in str(expired)
    assert isinstance(mapping.error_of({"Status": 429, "Error": "limit"}, "x"), RateLimited)
    refused = mapping.error_of({"Status": 500, "Error": "Insufficient"}, "x", client_id="C")
    assert isinstance(refused, OrderRejected) and refused.reason == "Insufficient"
    checksum = mapping.error_of({"Status": 401, "Error": "Checksum mismatch"}, "x")
    assert isinstance(checksum, BrokerError) and "api_secret" in str(checksum)
    assert "API root" in str(mapping.error_of(None, "x"))
