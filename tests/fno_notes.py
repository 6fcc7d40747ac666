"""The hand-worked contract notes of the F&O tests (test_fno_basket, test_fno_rolls): June 2022
NSE index-option charges from the published rates, independent of velox.costs."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def half_up(value: float, step: str) -> float:
    return float(Decimal(repr(value)).quantize(Decimal(step), rounding=ROUND_HALF_UP))


def note_2022(buy: float, sell: float, orders: int, exercise_intrinsic: float = 0.0):
    """NSE index-option contract note of June 2022, by hand from the published rates.

    Brokerage ₹20 per executed order (Zerodha); STT 0.05 % of sell premium (Finance Act 2016
    rate, before 1 Apr 2023); exchange 0.053 % of premium turnover (NSE from 1 Jan 2021); SEBI
    ₹10 per crore; stamp 0.003 % of buy premium; GST 18 % of brokerage + exchange charge (the
    SEBI fee joins the base only from 18 Jul 2022); STT to the rupee, the rest to the paisa;
    exercise STT 0.125 % of intrinsic value on a long ITM option held to expiry.
    """
    turnover = buy + sell
    brokerage = 20.0 * orders
    exchange = half_up(turnover * 0.00053, "0.01")
    return {
        "brokerage": brokerage,
        "stt": half_up(sell * 0.0005, "1"),
        "exercise_stt": half_up(exercise_intrinsic * 0.00125, "1"),
        "exchange": exchange,
        "sebi": half_up(turnover * 10 / 1e7, "0.01"),
        "stamp": half_up(buy * 0.00003, "1"),
        "gst": half_up((brokerage + exchange) * 0.18, "0.01"),
    }
