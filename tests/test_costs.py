"""Tests for velox.costs: every expected number is worked by hand from the published rates.

Rates used (see docs/charges.md): GST 18% (service tax 15% before 1 Jul 2017) on brokerage +
exchange charge, and on the SEBI fee from 18 Jul 2022. SEBI ₹15/crore to Mar 2019, ₹10/crore
(0.0001%) from Apr 2019, ₹5/crore Jun 2020 – Mar 2021. Stamp from 1 Jul 2020 (buy side) delivery
0.015%, intraday 0.003%, futures 0.002%, options 0.003%; before, the state's rates on both sides
(Maharashtra, the default: delivery 0.01%, the rest 0.002%; Tamil Nadu 0.006%). NSE exchange
charge: 0.00325% / 0.0019% / 0.05% (2017–2020); 0.00345% / 0.002% / 0.053% (2021 – Mar 2023);
0.00322% / 0.00183% / 0.0495% (Apr 2023 – Sep 2024); from 1 Oct 2024 (incl. IPFT) 0.00307% /
0.00183% / 0.03553%. BSE equity 0.003%, 0.00375% from 1 Dec 2022; BSE futures 0; BSE options
0.005%, 0.0495% from 13 May 2024, 0.0325% from 1 Oct 2024.
Rounding: STT and stamp to the rupee, the rest to the paisa, halves up; GST on rounded items.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velox.calendar import IST
from velox.costs import (
    DEFAULT_SCHEDULE,
    FLAT_20,
    BpsSlippage,
    BrokeragePlan,
    BrokerageRule,
    ChargeBreakdown,
    CostModel,
    NoSlippage,
    TickSlippage,
    exercised_option_stt,
    trade_charges,
)
from velox.types import Instrument, InstrumentKind, Product, Side, is_on_tick


def _cb(brokerage, stt, exchange, sebi, stamp, gst) -> ChargeBreakdown:
    return ChargeBreakdown(brokerage, stt, exchange, sebi, stamp, gst)


# ---------------------------------------------------------------------------------------------
# The MARKET.md worked check
# ---------------------------------------------------------------------------------------------


def test_market_md_delivery_worked_check() -> None:
    # 5,000 shares bought and sold at ₹1,000 → buy ₹50,00,000, sell ₹50,00,000, turnover ₹1 crore.
    # STT 0.1% × 1,00,00,000 = 10,000; exchange 0.00307% × 1 crore = 307; SEBI ₹10/crore = 10;
    # stamp 0.015% × 50,00,000 = 750; GST 18% × (0 + 307 + 10) = 57.06; total 11,124.06.
    # 0.00307% is NSE's table from 1 Oct 2024, so any date after that: 2 Jun 2025.
    c = trade_charges("equity_delivery", 5_000_000, 5_000_000, trade_date=date(2025, 6, 2))
    assert c == _cb(0.0, 10_000.0, 307.0, 10.0, 750.0, 57.06)
    assert c.total == 11_124.06


# ---------------------------------------------------------------------------------------------
# Equity delivery
# ---------------------------------------------------------------------------------------------


def test_delivery_before_oct_2024_uses_old_exchange_rate() -> None:
    # 3 Jun 2024, NSE: buy 100 × 2,500.50 = 2,50,050; sell 100 × 2,600.25 = 2,60,025;
    # turnover 5,10,075. STT 0.1% × 5,10,075 = 510.075 → 510. Exchange 0.00322% × 5,10,075 =
    # 16.424415 → 16.42. SEBI 0.510075 → 0.51. Stamp 0.015% × 2,50,050 = 37.5075 → 38.
    # GST 18% × (16.42 + 0.51) = 18% × 16.93 = 3.0474 → 3.05. Total 567.98.
    c = trade_charges("equity_delivery", 100 * 2500.50, 100 * 2600.25, trade_date=date(2024, 6, 3))
    assert c == _cb(0.0, 510.0, 16.42, 0.51, 38.0, 3.05)
    assert c.total == 567.98


def test_delivery_bse_buy_only() -> None:
    # 3 Mar 2025, BSE, buy 200 × 1,234.56 = 2,46,912, nothing sold. STT 0.1% = 246.912 → 247.
    # Exchange BSE 0.00375% × 2,46,912 = 9.2592 → 9.26. SEBI 0.246912 → 0.25.
    # Stamp 0.015% × 2,46,912 = 37.0368 → 37. GST 18% × (9.26 + 0.25) = 1.7118 → 1.71.
    # Total 247 + 9.26 + 0.25 + 37 + 1.71 = 295.22.
    c = trade_charges(
        "equity_delivery", 200 * 1234.56, 0, exchange="BSE", trade_date=date(2025, 3, 3)
    )
    assert c == _cb(0.0, 247.0, 9.26, 0.25, 37.0, 1.71)
    assert c.total == 295.22


def test_delivery_flat20_plan_and_half_rupee_rounds_up() -> None:
    # 15 Jan 2025, NSE, flat ₹20 plan: buy 10,000, sell 10,500 (one order each) → brokerage 40.
    # STT 0.1% × 20,500 = 20.5 → 21 (half up). Exchange 0.00307% × 20,500 = 0.62935 → 0.63.
    # SEBI 0.0205 → 0.02. Stamp 0.015% × 10,000 = 1.5 → 2 (half up).
    # GST 18% × (40 + 0.63 + 0.02) = 18% × 40.65 = 7.317 → 7.32. Total 70.97.
    c = trade_charges(
        "equity_delivery", 10_000, 10_500, trade_date=date(2025, 1, 15), broker="flat20"
    )
    assert c == _cb(40.0, 21.0, 0.63, 0.02, 2.0, 7.32)
    assert c.total == 70.97


# ---------------------------------------------------------------------------------------------
# Equity intraday
# ---------------------------------------------------------------------------------------------


def test_intraday_brokerage_capped_at_20_per_order() -> None:
    # 20 May 2025, NSE: buy 500 × 1,000 = 5,00,000; sell 500 × 1,010 = 5,05,000; turnover
    # 10,05,000. Brokerage: 0.03% of 5,00,000 = 150 → cap 20; 0.03% of 5,05,000 = 151.5 → 20;
    # total 40. STT 0.025% × 5,05,000 = 126.25 → 126. Exchange 0.00307% × 10,05,000 = 30.8535
    # → 30.85. SEBI 1.005 → 1.01 (half up). Stamp 0.003% × 5,00,000 = 15.
    # GST 18% × (40 + 30.85 + 1.01) = 18% × 71.86 = 12.9348 → 12.93. Total 225.79.
    c = trade_charges("equity_intraday", 500_000, 505_000, trade_date=date(2025, 5, 20))
    assert c == _cb(40.0, 126.0, 30.85, 1.01, 15.0, 12.93)
    assert c.total == 225.79


def test_intraday_small_order_pays_percent_not_cap() -> None:
    # 10 Dec 2024: buy 10 × 1,165 = 11,650; sell 10 × 1,170 = 11,700; turnover 23,350.
    # Brokerage 0.03% × 11,650 = 3.495 → 3.50 (half up) + 0.03% × 11,700 = 3.51 → 7.01 (< ₹20 cap).
    # STT 0.025% × 11,700 = 2.925 → 3. Exchange 0.00307% × 23,350 = 0.716845 → 0.72.
    # SEBI 0.02335 → 0.02. Stamp 0.003% × 11,650 = 0.3495 → 0.
    # GST 18% × (7.01 + 0.72 + 0.02) = 18% × 7.75 = 1.395 → 1.40. Total 12.15.
    c = trade_charges("equity_intraday", 11_650, 11_700, trade_date=date(2024, 12, 10))
    assert c == _cb(7.01, 3.0, 0.72, 0.02, 0.0, 1.40)
    assert c.total == 12.15


def test_intraday_before_oct_2024() -> None:
    # 30 Sep 2024 (last day of the old exchange table): buy 100 × 500 = 50,000; sell 100 × 505 =
    # 50,500; turnover 1,00,500. Brokerage 15 + 15.15 = 30.15. STT 0.025% × 50,500 = 12.625 → 13.
    # Exchange 0.00322% × 1,00,500 = 3.2361 → 3.24. SEBI 0.1005 → 0.10. Stamp 0.003% × 50,000
    # = 1.5 → 2. GST 18% × (30.15 + 3.24 + 0.10) = 18% × 33.49 = 6.0282 → 6.03. Total 54.52.
    c = trade_charges("equity_intraday", 50_000, 50_500, trade_date=date(2024, 9, 30))
    assert c == _cb(30.15, 13.0, 3.24, 0.10, 2.0, 6.03)
    assert c.total == 54.52


def test_intraday_zero_plan() -> None:
    # Same trade as the capped example with no brokerage: GST 18% × (30.85 + 1.01) = 5.7348 →
    # 5.73. Total 126 + 30.85 + 1.01 + 15 + 5.73 = 178.59.
    c = trade_charges(
        "equity_intraday", 500_000, 505_000, trade_date=date(2025, 5, 20), broker="zero"
    )
    assert c == _cb(0.0, 126.0, 30.85, 1.01, 15.0, 5.73)
    assert c.total == 178.59


def test_orders_are_split_between_sides() -> None:
    # orders=3 on the capped trade: buy gets 2 orders of 2,50,000 (0.03% = 75 → 20 each) and
    # sell 1 order of 5,05,000 (→ 20): brokerage 60. GST 18% × (60 + 30.85 + 1.01) = 16.5348
    # → 16.53.
    c = trade_charges("equity_intraday", 500_000, 505_000, trade_date=date(2025, 5, 20), orders=3)
    assert (c.brokerage, c.gst) == (60.0, 16.53)
    # Two orders is the default (one per non-zero side).
    assert trade_charges(
        "equity_intraday", 500_000, 505_000, trade_date=date(2025, 5, 20), orders=2
    ) == trade_charges("equity_intraday", 500_000, 505_000, trade_date=date(2025, 5, 20))


def test_custom_plan_object() -> None:
    # A broker charging 0.05% capped at ₹25 on intraday: 0.05% × 5,00,000 = 250 → 25 per side,
    # brokerage 50; GST 18% × (50 + 30.85 + 1.01) = 18% × 81.86 = 14.7348 → 14.73.
    plan = BrokeragePlan("mine", equity_intraday=BrokerageRule(percent=0.05, cap=25.0))
    c = trade_charges(
        "equity_intraday", 500_000, 505_000, trade_date=date(2025, 5, 20), broker=plan
    )
    assert (c.brokerage, c.gst) == (50.0, 14.73)


# ---------------------------------------------------------------------------------------------
# Futures — STT 0.01% → 0.0125% (1 Apr 2023) → 0.02% (1 Oct 2024) → 0.05% (1 Apr 2026)
# ---------------------------------------------------------------------------------------------

# NIFTY futures, one lot of 65: buy at 25,000 (16,25,000), sell at 25,100 (16,31,500);
# turnover 32,56,500. Brokerage 0.03% × 16,25,000 = 487.5 → 20 per side = 40.
# Exchange 0.00183% × 32,56,500 = 59.59395 → 59.59. SEBI 3.2565 → 3.26.
# Stamp 0.002% × 16,25,000 = 32.5 → 33 (half up). GST 18% × (40 + 59.59 + 3.26) = 18% × 102.85
# = 18.513 → 18.51. Non-STT items: 40 + 59.59 + 3.26 + 33 + 18.51 = 154.36.
NIFTY_FUT_BUY, NIFTY_FUT_SELL = 65 * 25_000.0, 65 * 25_100.0


@pytest.mark.parametrize(
    ("trade_date", "stt", "total"),
    [
        # 1 Apr 2023 (first day of both the 0.0125% STT and NSE's 0.00183% row):
        # 0.0125% × 16,31,500 = 203.9375 → 204; total 154.36 + 204 = 358.36
        (date(2023, 4, 1), 204.0, 358.36),
        # 0.0125% × 16,31,500 = 203.9375 → 204; total 358.36
        (date(2024, 7, 15), 204.0, 358.36),
        # 0.02% × 16,31,500 = 326.3 → 326; total 480.36
        (date(2026, 3, 31), 326.0, 480.36),
        # 0.05% × 16,31,500 = 815.75 → 816; total 970.36
        (date(2026, 4, 1), 816.0, 970.36),
    ],
)
def test_futures_stt_by_date(trade_date: date, stt: float, total: float) -> None:
    c = trade_charges("futures", NIFTY_FUT_BUY, NIFTY_FUT_SELL, trade_date=trade_date)
    assert c == _cb(40.0, stt, 59.59, 3.26, 33.0, 18.51)
    assert c.total == total


def test_futures_day_before_apr_2023() -> None:
    # 31 Mar 2023: STT 0.01% × 16,31,500 = 163.15 → 163. NSE's 6%-higher charge of 2021–Mar 2023:
    # 0.002% × 32,56,500 = 65.13. SEBI 3.26, stamp 33 as above. GST (SEBI fee taxed since
    # 18 Jul 2022) 18% × (40 + 65.13 + 3.26) = 18% × 108.39 = 19.5102 → 19.51.
    # Total 40 + 163 + 65.13 + 3.26 + 33 + 19.51 = 323.90.
    c = trade_charges("futures", NIFTY_FUT_BUY, NIFTY_FUT_SELL, trade_date=date(2023, 3, 31))
    assert c == _cb(40.0, 163.0, 65.13, 3.26, 33.0, 19.51)
    assert c.total == 323.90


def test_futures_bse_sell_only() -> None:
    # 3 Feb 2025, BSE SENSEX futures, sell 20 × 80,000 = 16,00,000 only. Brokerage 0.03% =
    # 480 → 20. STT 0.02% × 16,00,000 = 320. BSE futures exchange charge 0. SEBI 1.60.
    # No stamp (nothing bought). GST 18% × (20 + 0 + 1.60) = 3.888 → 3.89. Total 345.49.
    c = trade_charges("futures", 0, 1_600_000, exchange="BSE", trade_date=date(2025, 2, 3))
    assert c == _cb(20.0, 320.0, 0.0, 1.60, 0.0, 3.89)
    assert c.total == 345.49


def test_trade_date_datetime_is_read_in_ist() -> None:
    # 20:00 UTC on 31 Mar 2026 is 01:30 IST on 1 Apr 2026: the new 0.05% STT applies.
    late = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)
    assert trade_charges("futures", NIFTY_FUT_BUY, NIFTY_FUT_SELL, trade_date=late).stt == 816.0


# ---------------------------------------------------------------------------------------------
# Options (premium) — STT 0.0625% → 0.1% (1 Oct 2024) → 0.15% (1 Apr 2026)
# ---------------------------------------------------------------------------------------------

# NIFTY 25000 CE, one lot of 65: buy at 120.50 (7,832.50), sell at 135.25 (8,791.25);
# premium turnover 16,623.75. Brokerage ₹20 × 2 orders = 40. SEBI 0.01662375 → 0.02.
# Stamp 0.003% × 7,832.50 = 0.234975 → 0.
OPT_BUY, OPT_SELL = 65 * 120.50, 65 * 135.25


def test_options_before_1_apr_2026() -> None:
    # 31 Mar 2026: STT 0.1% × 8,791.25 = 8.79125 → 9. Exchange 0.03553% × 16,623.75 =
    # 5.906418375 → 5.91. GST 18% × (40 + 5.91 + 0.02) = 18% × 45.93 = 8.2674 → 8.27.
    # Total 40 + 9 + 5.91 + 0.02 + 0 + 8.27 = 63.20.
    c = trade_charges("options", OPT_BUY, OPT_SELL, trade_date=date(2026, 3, 31))
    assert c == _cb(40.0, 9.0, 5.91, 0.02, 0.0, 8.27)
    assert c.total == 63.20


def test_options_from_1_apr_2026() -> None:
    # 1 Apr 2026: STT 0.15% × 8,791.25 = 13.186875 → 13; everything else as above.
    # Total 63.20 − 9 + 13 = 67.20.
    c = trade_charges("options", OPT_BUY, OPT_SELL, trade_date=date(2026, 4, 1))
    assert c == _cb(40.0, 13.0, 5.91, 0.02, 0.0, 8.27)
    assert c.total == 67.20


def test_options_before_oct_2024() -> None:
    # 30 Sep 2024: STT 0.0625% × 8,791.25 = 5.49453125 → 5. Exchange 0.0495% × 16,623.75 =
    # 8.22875625 → 8.23. GST 18% × (40 + 8.23 + 0.02) = 18% × 48.25 = 8.685 → 8.69 (half up).
    # Total 40 + 5 + 8.23 + 0.02 + 0 + 8.69 = 61.94.
    c = trade_charges("options", OPT_BUY, OPT_SELL, trade_date=date(2024, 9, 30))
    assert c == _cb(40.0, 5.0, 8.23, 0.02, 0.0, 8.69)
    assert c.total == 61.94


def test_options_short_ten_lots_after_apr_2026() -> None:
    # 4 May 2026: sell 650 at 200 (1,30,000), buy back 650 at 150 (97,500); turnover 2,27,500.
    # STT 0.15% × 1,30,000 = 195. Exchange 0.03553% × 2,27,500 = 80.83075 → 80.83.
    # SEBI 0.2275 → 0.23. Stamp 0.003% × 97,500 = 2.925 → 3.
    # GST 18% × (40 + 80.83 + 0.23) = 18% × 121.06 = 21.7908 → 21.79. Total 340.85.
    c = trade_charges("options", 97_500, 130_000, trade_date=date(2026, 5, 4))
    assert c == _cb(40.0, 195.0, 80.83, 0.23, 3.0, 21.79)
    assert c.total == 340.85


def test_options_bse() -> None:
    # 1 Aug 2025, BSE SENSEX options: buy 20 × 300 = 6,000, sell 20 × 350 = 7,000; turnover
    # 13,000. STT 0.1% × 7,000 = 7. Exchange 0.0325% × 13,000 = 4.225 → 4.23 (half up).
    # SEBI 0.013 → 0.01. Stamp 0.003% × 6,000 = 0.18 → 0. GST 18% × (40 + 4.23 + 0.01) =
    # 18% × 44.24 = 7.9632 → 7.96. Total 59.20.
    c = trade_charges("options", 6_000, 7_000, exchange="BSE", trade_date=date(2025, 8, 1))
    assert c == _cb(40.0, 7.0, 4.23, 0.01, 0.0, 7.96)
    assert c.total == 59.20


def test_options_flat_fee_per_executed_order() -> None:
    # Same NIFTY CE trade in 5 executed orders: 5 × ₹20 = 100; GST 18% × (100 + 5.91 + 0.02)
    # = 18% × 105.93 = 19.0674 → 19.07.
    c = trade_charges("options", OPT_BUY, OPT_SELL, trade_date=date(2026, 3, 31), orders=5)
    assert (c.brokerage, c.gst) == (100.0, 19.07)


@pytest.mark.parametrize(
    ("trade_date", "expected"),
    [
        # NIFTY 25000 CE settles at 25,150, one lot of 65: intrinsic 150 × 65 = 9,750.
        (date(2026, 3, 26), 12.0),  # 0.125% × 9,750 = 12.1875 → 12
        (date(2026, 4, 30), 15.0),  # 0.15% × 9,750 = 14.625 → 15
    ],
)
def test_exercised_itm_option_stt(trade_date: date, expected: float) -> None:
    assert exercised_option_stt(150 * 65, trade_date) == expected


# ---------------------------------------------------------------------------------------------
# 2017–2024: service tax → GST, SEBI ₹15 → ₹10 → ₹5 → ₹10, state stamp duty → uniform,
# NSE +6% (2021) and back (2023), GST on the SEBI fee (18 Jul 2022), BSE ₹375/crore (Dec 2022)
# Every figure below is worked from the rates in docs/charges.md, not read off the code.
# ---------------------------------------------------------------------------------------------


def test_2017_delivery_under_service_tax() -> None:
    # 15 Mar 2017, NSE, default state Maharashtra: buy 100 × 1,500 = 1,50,000; sell 100 × 1,600 =
    # 1,60,000; turnover 3,10,000. STT 0.1% × 3,10,000 = 310. Exchange 0.00325% × 3,10,000 =
    # 10.075 → 10.08. SEBI ₹15/crore × 3,10,000 = 0.465 → 0.47. Stamp (Maharashtra, delivery,
    # both sides) 0.01% × 3,10,000 = 31. Service tax 15% × (0 + 10.08) = 1.512 → 1.51 (the SEBI
    # fee untaxed). Total 310 + 10.08 + 0.47 + 31 + 1.51 = 353.06.
    c = trade_charges("equity_delivery", 150_000, 160_000, trade_date=date(2017, 3, 15))
    assert c == _cb(0.0, 310.0, 10.08, 0.47, 31.0, 1.51)
    assert c.total == 353.06


# Intraday, NSE, Maharashtra: buy 1,000 × 250 = 2,50,000; sell 1,000 × 252 = 2,52,000; turnover
# 5,02,000. Brokerage 0.03% × 2,50,000 = 75 → 20 and 0.03% × 2,52,000 = 75.6 → 20: 40. STT
# 0.025% × 2,52,000 = 63. Exchange 0.00325% × 5,02,000 = 16.315 → 16.32. SEBI ₹15/crore =
# 0.753 → 0.75. Stamp 0.002% × 5,02,000 = 10.04 → 10. Tax base 40 + 16.32 = 56.32.
@pytest.mark.parametrize(
    ("trade_date", "tax", "total"),
    [
        # service tax 15% × 56.32 = 8.448 → 8.45; total 40 + 63 + 16.32 + 0.75 + 10 + 8.45
        (date(2017, 6, 30), 8.45, 138.52),
        # GST 18% × 56.32 = 10.1376 → 10.14; total 140.21
        (date(2017, 7, 3), 10.14, 140.21),
    ],
)
def test_2017_intraday_either_side_of_gst(trade_date: date, tax: float, total: float) -> None:
    c = trade_charges("equity_intraday", 250_000, 252_000, trade_date=trade_date)
    assert c == _cb(40.0, 63.0, 16.32, 0.75, 10.0, tax)
    assert c.total == total


# NIFTY futures in 2019, one lot of 75: buy at 11,700 (8,77,500), sell at 11,750 (8,81,250);
# turnover 17,58,750. Brokerage 20 + 20 = 40 (0.03% = 263.25 per side, capped). STT 0.01% ×
# 8,81,250 = 88.125 → 88. Exchange 0.0019% × 17,58,750 = 33.41625 → 33.42. Stamp (Maharashtra,
# both sides) 0.002% × 17,58,750 = 35.175 → 35. GST 18% × (40 + 33.42) = 13.2156 → 13.22.
@pytest.mark.parametrize(
    ("trade_date", "sebi", "total"),
    [
        # ₹15/crore × 17,58,750 = 2.638125 → 2.64; total 40 + 88 + 33.42 + 2.64 + 35 + 13.22
        (date(2019, 3, 29), 2.64, 212.28),
        # ₹10/crore from 1 Apr 2019: 1.75875 → 1.76; total 211.40
        (date(2019, 5, 2), 1.76, 211.40),
    ],
)
def test_2019_futures_either_side_of_sebi_cut(trade_date: date, sebi: float, total: float) -> None:
    c = trade_charges("futures", 75 * 11_700.0, 75 * 11_750.0, trade_date=trade_date)
    assert c == _cb(40.0, 88.0, 33.42, sebi, 35.0, 13.22)
    assert c.total == total


def test_2019_options() -> None:
    # 1 Aug 2019, NIFTY CE, one lot of 75: buy at 80 (6,000), sell at 95 (7,125); premium
    # turnover 13,125. Brokerage 20 + 20. STT 0.05% × 7,125 = 3.5625 → 4. Exchange 0.05% ×
    # 13,125 = 6.5625 → 6.56. SEBI 0.013125 → 0.01. Stamp 0.002% × 13,125 = 0.2625 → 0.
    # GST 18% × (40 + 6.56) = 8.3808 → 8.38. Total 40 + 4 + 6.56 + 0.01 + 0 + 8.38 = 58.95.
    c = trade_charges("options", 75 * 80.0, 75 * 95.0, trade_date=date(2019, 8, 1))
    assert c == _cb(40.0, 4.0, 6.56, 0.01, 0.0, 8.38)
    assert c.total == 58.95


# Delivery, NSE: buy 200 × 1,000 = 2,00,000; sell 200 × 1,050 = 2,10,000; turnover 4,10,000.
# STT 0.1% = 410. Exchange 0.00325% × 4,10,000 = 13.325 → 13.33. SEBI ₹5/crore (Jun 2020 – Mar
# 2021) = 0.205 → 0.21. GST 18% × 13.33 = 2.3994 → 2.40. Non-stamp items: 425.94.
@pytest.mark.parametrize(
    ("trade_date", "state", "stamp", "total"),
    [
        # state duty on both sides: Maharashtra 0.01% × 4,10,000 = 41
        (date(2020, 6, 30), "Maharashtra", 41.0, 466.94),
        (date(2020, 6, 30), "Delhi", 41.0, 466.94),
        # Tamil Nadu 0.006% × 4,10,000 = 24.6 → 25
        (date(2020, 6, 30), "Tamil Nadu", 25.0, 450.94),
        # uniform from 1 Jul 2020 whatever the state: 0.015% × 2,00,000 (buy side) = 30
        (date(2020, 7, 1), "Maharashtra", 30.0, 455.94),
        (date(2020, 7, 1), "Tamil Nadu", 30.0, 455.94),
    ],
)
def test_stamp_duty_by_state_then_uniform(
    trade_date: date, state: str, stamp: float, total: float
) -> None:
    schedule = DEFAULT_SCHEDULE.for_state(state)
    c = trade_charges("equity_delivery", 200_000, 210_000, trade_date=trade_date, schedule=schedule)
    assert c == _cb(0.0, 410.0, 13.33, 0.21, stamp, 2.40)
    assert c.total == total


def test_default_state_is_maharashtra() -> None:
    # Maharashtra before 1 Jul 2020: delivery 0.01%, intraday / futures / options 0.002%, on
    # both sides; from 1 Jul 2020 the uniform buy-side rates whatever the state.
    assert DEFAULT_SCHEDULE.state == "Maharashtra"
    expected = {"equity_delivery": "0.0001", "equity_intraday": "0.00002", "futures": "0.00002"}
    expected["options"] = "0.00002"
    for segment, fraction in expected.items():
        r = DEFAULT_SCHEDULE.rates(segment, "NSE", date(2018, 2, 1))
        assert (r.stamp_buy, r.stamp_sell) == (Decimal(fraction), Decimal(fraction))
    r = DEFAULT_SCHEDULE.rates("equity_delivery", "NSE", date(2020, 7, 1))
    assert (r.stamp_buy, r.stamp_sell) == (Decimal("0.00015"), Decimal(0))


def test_unknown_state_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        DEFAULT_SCHEDULE.for_state("Karnataka")
    message = str(info.value)
    for word in ("'Karnataka'", "Delhi", "Gujarat", "Kerala", "Maharashtra", "Tamil Nadu"):
        assert word in message
    with pytest.raises(ValueError, match="'Goa'"):
        dataclasses.replace(DEFAULT_SCHEDULE, state="Goa")


# Intraday, NSE: buy 500 × 1,000 = 5,00,000; sell 500 × 1,010 = 5,05,000; turnover 10,05,000.
# Brokerage 40; STT 0.025% × 5,05,000 = 126.25 → 126; SEBI ₹5/crore = 0.5025 → 0.50; stamp
# 0.003% × 5,00,000 = 15.
@pytest.mark.parametrize(
    ("trade_date", "exchange", "gst", "total"),
    [
        # 0.00325% × 10,05,000 = 32.6625 → 32.66; GST 18% × (40 + 32.66) = 13.0788 → 13.08
        (date(2020, 12, 31), 32.66, 13.08, 227.24),
        # +6% from 1 Jan 2021: 0.00345% × 10,05,000 = 34.6725 → 34.67; GST 18% × 74.67 =
        # 13.4406 → 13.44
        (date(2021, 1, 1), 34.67, 13.44, 229.61),
    ],
)
def test_nse_six_percent_rise_in_2021(
    trade_date: date, exchange: float, gst: float, total: float
) -> None:
    c = trade_charges("equity_intraday", 500_000, 505_000, trade_date=trade_date)
    assert c == _cb(40.0, 126.0, exchange, 0.50, 15.0, gst)
    assert c.total == total


# NIFTY futures in 2022, one lot of 50: buy at 16,000 (8,00,000), sell at 16,100 (8,05,000);
# turnover 16,05,000. Brokerage 40. STT 0.01% × 8,05,000 = 80.5 → 81. Exchange 0.002% ×
# 16,05,000 = 32.10. SEBI ₹10/crore = 1.605 → 1.61. Stamp 0.002% × 8,00,000 = 16.
@pytest.mark.parametrize(
    ("trade_date", "gst", "total"),
    [
        # GST 18% × (40 + 32.10) = 12.978 → 12.98 (the SEBI fee not yet taxed)
        (date(2022, 7, 15), 12.98, 183.69),
        # from 18 Jul 2022: 18% × (40 + 32.10 + 1.61) = 13.2678 → 13.27
        (date(2022, 7, 18), 13.27, 183.98),
    ],
)
def test_gst_on_sebi_fee_from_18_jul_2022(trade_date: date, gst: float, total: float) -> None:
    c = trade_charges("futures", 50 * 16_000.0, 50 * 16_100.0, trade_date=trade_date)
    assert c == _cb(40.0, 81.0, 32.10, 1.61, 16.0, gst)
    assert c.total == total


# BSE delivery, buy 200 × 1,234.56 = 2,46,912 only: STT 246.912 → 247; SEBI 0.25; stamp 0.015%
# = 37.0368 → 37.
@pytest.mark.parametrize(
    ("trade_date", "exchange", "gst", "total"),
    [
        # ₹300/crore: 0.003% × 2,46,912 = 7.40736 → 7.41; GST 18% × (7.41 + 0.25) = 1.3788 → 1.38
        (date(2022, 11, 30), 7.41, 1.38, 293.04),
        # flat ₹375/crore from 1 Dec 2022: 9.2592 → 9.26; GST 18% × 9.51 = 1.7118 → 1.71
        (date(2022, 12, 1), 9.26, 1.71, 295.22),
    ],
)
def test_bse_equity_flat_rate_from_dec_2022(
    trade_date: date, exchange: float, gst: float, total: float
) -> None:
    c = trade_charges("equity_delivery", 200 * 1234.56, 0, exchange="BSE", trade_date=trade_date)
    assert c == _cb(0.0, 247.0, exchange, 0.25, 37.0, gst)
    assert c.total == total


# BSE SENSEX options: buy 20 × 300 = 6,000, sell 20 × 350 = 7,000; premium turnover 13,000.
# Brokerage 40; STT 0.0625% × 7,000 = 4.375 → 4; SEBI 0.013 → 0.01; stamp 0.003% × 6,000 → 0.
@pytest.mark.parametrize(
    ("trade_date", "exchange", "gst", "total"),
    [
        # ₹500/crore: 0.005% × 13,000 = 0.65; GST 18% × 40.66 = 7.3188 → 7.32
        (date(2024, 5, 10), 0.65, 7.32, 51.98),
        # from 13 May 2024: 0.0495% × 13,000 = 6.435 → 6.44; GST 18% × 46.45 = 8.361 → 8.36
        (date(2024, 5, 13), 6.44, 8.36, 58.81),
    ],
)
def test_bse_options_slab_rise_in_may_2024(
    trade_date: date, exchange: float, gst: float, total: float
) -> None:
    c = trade_charges("options", 6_000, 7_000, exchange="BSE", trade_date=trade_date)
    assert c == _cb(40.0, 4.0, exchange, 0.01, 0.0, gst)
    assert c.total == total


def test_2018_fills_pay_state_stamp_on_both_sides_and_match_the_note() -> None:
    # 2 Feb 2018, Maharashtra, delivery: buy 100 SBIN at 300 (30,000) in fills of 40 + 60, sell
    # 100 at 310 (31,000) in one fill. Per fill, stamp is 0.01% of the fill's value on either
    # side: 1.2 + 1.8 on the buys, 3.1 on the sell; the contract note: 0.01% × 61,000 = 6.1 → 6.
    model, day = CostModel(), date(2018, 2, 2)
    fills = [
        model.fill_charges(SBIN, Product.CNC, Side.BUY, 40, 300.0, day),
        model.fill_charges(SBIN, Product.CNC, Side.BUY, 60, 300.0, day),
        model.fill_charges(SBIN, Product.CNC, Side.SELL, 100, 310.0, day),
    ]
    assert [c.stamp for c in fills] == [pytest.approx(1.2), pytest.approx(1.8), pytest.approx(3.1)]
    # STT 0.1% × 61,000 = 61; exchange 0.00325% × 61,000 = 1.9825 → 1.98; SEBI ₹15/crore ×
    # 61,000 = 0.0915 → 0.09; GST 18% × 1.98 = 0.3564 → 0.36 (SEBI fee untaxed in 2018).
    note = sum(fills, ChargeBreakdown()).rounded()
    assert note == _cb(0.0, 61.0, 1.98, 0.09, 6.0, 0.36)
    assert note == trade_charges("equity_delivery", 30_000, 31_000, trade_date=day)


# ---------------------------------------------------------------------------------------------
# Breakdown, schedule, defaults
# ---------------------------------------------------------------------------------------------


def test_breakdown_add_dict_and_frozen() -> None:
    a = _cb(20.0, 126.0, 30.85, 1.01, 15.0, 12.93)
    b = _cb(0.0, 0.0, 0.15, 0.0, 0.0, 0.03)
    s = a + b
    assert (s.exchange, s.gst) == (31.0, 12.96)
    assert s.total == 20 + 126 + 31 + 1.01 + 15 + 12.96
    d = a.as_dict()
    assert list(d) == ["brokerage", "stt", "exchange", "sebi", "stamp", "gst", "total"]
    assert d["total"] == 205.79
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.stt = 0.0  # type: ignore[misc]


def test_default_trade_date_is_today_in_ist() -> None:
    today = datetime.now(IST).date()
    args = ("futures", NIFTY_FUT_BUY, NIFTY_FUT_SELL)
    assert trade_charges(*args) == trade_charges(*args, trade_date=today)


def test_schedule_can_be_overridden() -> None:
    # A hypothetical NSE futures fee of 0.002% from 1 Jan 2027 (no IPFT split): exchange charge
    # 0.002% × 32,56,500 = 65.13; GST 18% × (40 + 65.13 + 3.26) = 18% × 108.39 = 19.5102 → 19.51.
    rows = DEFAULT_SCHEDULE.exchange["NSE"] + (
        (
            date(2027, 1, 1),
            {
                "equity_delivery": ("0.00307", "0"),
                "equity_intraday": ("0.00307", "0"),
                "futures": ("0.002", "0"),
                "options": ("0.03553", "0"),
            },
        ),
    )
    schedule = dataclasses.replace(
        DEFAULT_SCHEDULE, exchange={**DEFAULT_SCHEDULE.exchange, "NSE": rows}
    )
    c = trade_charges(
        "futures", NIFTY_FUT_BUY, NIFTY_FUT_SELL, trade_date=date(2027, 1, 4), schedule=schedule
    )
    assert (c.exchange, c.gst) == (65.13, 19.51)


def test_dates_before_the_tables_warn(caplog: pytest.LogCaptureFixture) -> None:
    # The warning is logged once per year per process; another test may have used 2016 already.
    from velox.costs import _warn_before_coverage

    _warn_before_coverage.cache_clear()
    with caplog.at_level(logging.WARNING, logger="velox.costs"):
        trade_charges("equity_delivery", 1000, 0, trade_date=date(2016, 12, 30))
    assert "2016" in caplog.text and "2017-01-01" in caplog.text


def test_bundled_data_years_are_silent(caplog: pytest.LogCaptureFixture) -> None:
    # The bundled daily bars run 2017-01-02 … 2022: every segment, exchange and state on the first
    # and last trading days of each year is charged from sourced rows, without a warning.
    from velox.costs import _warn_before_coverage

    _warn_before_coverage.cache_clear()
    days = [date(2017, 1, 1), date(2017, 1, 2)] + [
        d for y in range(2017, 2023) for d in (date(y, 1, 2), date(y, 12, 29))
    ]
    with caplog.at_level(logging.WARNING, logger="velox.costs"):
        for state in ("Maharashtra", "Delhi", "Gujarat", "Kerala", "Tamil Nadu"):
            schedule = DEFAULT_SCHEDULE.for_state(state)
            for day in days:
                for segment in ("equity_delivery", "equity_intraday", "futures", "options"):
                    for exchange in ("NSE", "BSE"):
                        trade_charges(
                            segment, 1000, 1000, exchange, trade_date=day, schedule=schedule
                        )
        CostModel().fill_charges(SBIN, Product.CNC, Side.BUY, 1, 100.0, date(2017, 1, 2))
    assert caplog.records == []


def test_nse_exchange_rate_splits_into_fee_and_ipft() -> None:
    r = DEFAULT_SCHEDULE.rates("options", "NSE", date(2025, 1, 2))
    # 0.03503% NSE fee + 0.0005% IPFT (₹50/crore) = 0.03553%
    assert (float(r.exchange), float(r.ipft)) == (0.0003553, 0.000005)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"segment": "equity"}, ["'equity'", "equity_delivery", "options"]),
        ({"exchange": "MCX"}, ["'MCX'", "NSE", "BSE"]),
        ({"broker": "upstox"}, ["'upstox'", "zerodha", "flat20", "zero"]),
        ({"buy_value": -1.0}, ["buy_value", "-1.0"]),
        ({"sell_value": math.nan}, ["sell_value", "nan"]),
        ({"orders": 1}, ["orders=1", "side"]),
        ({"orders": -2}, ["orders=-2"]),
        ({"trade_date": datetime(2025, 1, 2, 10, 0)}, ["naive"]),
    ],
)
def test_bad_inputs_raise_value_error(kwargs: dict, words: list[str]) -> None:
    call = {"segment": "futures", "buy_value": 1000.0, "sell_value": 1000.0}
    call.update(kwargs)
    with pytest.raises(ValueError) as info:
        trade_charges(**call)
    for word in words:
        assert word in str(info.value)


def test_negative_intrinsic_value_raises() -> None:
    with pytest.raises(ValueError, match="intrinsic_value"):
        exercised_option_stt(-5.0, date(2026, 4, 30))


# ---------------------------------------------------------------------------------------------
# CostModel: per-fill charges for the simulator
# ---------------------------------------------------------------------------------------------

SBIN = Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ)
NIFTY_FUT = Instrument("NFO:NIFTY26APRFUT", "NFO", "NIFTY26APRFUT", InstrumentKind.FUT, lot_size=65)
NIFTY_CE = Instrument(
    "NFO:NIFTY26APR25000CE",
    "NFO",
    "NIFTY26APR25000CE",
    InstrumentKind.CE,
    lot_size=65,
    strike=25_000.0,
    expiry=date(2026, 4, 28),
)
NIFTY_INDEX = Instrument("NSE:NIFTY 50", "NSE", "NIFTY 50", InstrumentKind.INDEX)


@pytest.mark.parametrize(
    ("instrument", "product", "segment"),
    [
        (SBIN, Product.CNC, "equity_delivery"),
        (SBIN, Product.MIS, "equity_intraday"),
        (NIFTY_FUT, Product.NRML, "futures"),
        (NIFTY_FUT, Product.MIS, "futures"),
        (NIFTY_CE, Product.NRML, "options"),
    ],
)
def test_segment_for(instrument: Instrument, product: Product, segment: str) -> None:
    assert CostModel.segment_for(instrument, product) == segment


def test_segment_for_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="CNC"):
        CostModel.segment_for(SBIN, Product.NRML)
    with pytest.raises(ValueError, match="not tradable"):
        CostModel.segment_for(NIFTY_INDEX, Product.CNC)


def test_fill_charges_by_side() -> None:
    model = CostModel()
    # Delivery buy of 100 × 1,000 = 1,00,000 on 2 Jun 2025: STT 0.1% = 100; exchange 0.00307%
    # = 3.07; SEBI 0.1; stamp 0.015% = 15; GST 18% × (3.07 + 0.1) = 0.5706. Unrounded.
    buy = model.fill_charges(SBIN, Product.CNC, Side.BUY, 100, 1000.0, date(2025, 6, 2))
    assert buy.brokerage == 0.0
    assert buy.stt == pytest.approx(100.0)
    assert buy.exchange == pytest.approx(3.07)
    assert buy.sebi == pytest.approx(0.1)
    assert buy.stamp == pytest.approx(15.0)
    assert buy.gst == pytest.approx(0.5706)
    # The sell side pays STT but no stamp duty.
    sell = model.fill_charges(SBIN, Product.CNC, Side.SELL, 100, 1000.0, date(2025, 6, 2))
    assert (sell.stamp, sell.stt) == (0.0, pytest.approx(100.0))


def test_fill_charges_nfo_future_uses_nse_rates_and_new_stt() -> None:
    # Sell 65 at 25,100 (16,31,500) on 1 Apr 2026: STT 0.05% = 815.75 (unrounded per fill);
    # exchange 0.00183% = 29.85645; brokerage 0.03% = 489.45 → cap 20.
    c = CostModel().fill_charges(NIFTY_FUT, Product.NRML, Side.SELL, 65, 25_100.0, date(2026, 4, 1))
    assert c.stt == pytest.approx(815.75)
    assert c.exchange == pytest.approx(29.85645)
    assert c.brokerage == 20.0


def _order_fills(model: CostModel, instrument, product, side, fills, day) -> list[ChargeBreakdown]:
    """Charge the fills of ONE order, passing the brokerage charged so far as the simulator does."""
    out, so_far = [], 0.0
    for qty, price in fills:
        c = model.fill_charges(
            instrument, product, side, qty, price, day, order_brokerage_so_far=so_far
        )
        so_far += c.brokerage
        out.append(c)
    return out


def test_partial_fills_pay_one_orders_brokerage() -> None:
    model, day = CostModel(), date(2025, 6, 2)
    # 1,000 SBIN at 800 MIS in fills of 300/300/400: the first fill's 0.03% × 2,40,000 = 72 is
    # already over the ₹20 cap, so it pays 20 and the rest pay 0.
    big = _order_fills(
        model, SBIN, Product.MIS, Side.BUY, [(300, 800.0), (300, 800.0), (400, 800.0)], day
    )
    assert [c.brokerage for c in big] == [20.0, 0.0, 0.0]
    # Fills of 30,000 each: 9 + 9 + (cap 20 − 18 =) 2 = 20.
    mid = _order_fills(model, SBIN, Product.MIS, Side.SELL, [(60, 500.0)] * 3, day)
    assert [round(c.brokerage, 6) for c in mid] == [9.0, 9.0, 2.0]
    # Under the cap the fills sum to 0.03% of the whole order: 6 + 9 = 15 = 0.03% × 50,000.
    small = _order_fills(model, SBIN, Product.MIS, Side.BUY, [(40, 500.0), (60, 500.0)], day)
    assert sum(c.brokerage for c in small) == pytest.approx(15.0)
    # Options: flat ₹20 per order, paid by the first fill only.
    opt = _order_fills(model, NIFTY_CE, Product.NRML, Side.BUY, [(65, 120.5)] * 3, day)
    assert [c.brokerage for c in opt] == [20.0, 0.0, 0.0]


def test_per_fill_sum_matches_contract_note() -> None:
    # The capped intraday trade as fills: buy 500 at 1,000 in fills of 200 + 300 (one order),
    # sell 500 at 1,010 in one fill. Summed and rounded it is the contract note computed above:
    # brokerage 40, STT 126, exchange 30.85, SEBI 1.01, stamp 15, GST 12.93, total 225.79.
    model, day = CostModel(), date(2025, 5, 20)
    fills = _order_fills(model, SBIN, Product.MIS, Side.BUY, [(200, 1000.0), (300, 1000.0)], day)
    fills += _order_fills(model, SBIN, Product.MIS, Side.SELL, [(500, 1010.0)], day)
    total = sum(fills, ChargeBreakdown())
    assert total.rounded() == _cb(40.0, 126.0, 30.85, 1.01, 15.0, 12.93)
    assert total.rounded() == trade_charges("equity_intraday", 500_000, 505_000, trade_date=day)
    # The MARKET.md delivery check through fills (buy in 2,000 + 3,000 shares, sell in one).
    d = date(2025, 6, 2)
    fills = [
        model.fill_charges(SBIN, Product.CNC, Side.BUY, 2000, 1000.0, d),
        model.fill_charges(SBIN, Product.CNC, Side.BUY, 3000, 1000.0, d),
        model.fill_charges(SBIN, Product.CNC, Side.SELL, 5000, 1000.0, d),
    ]
    assert sum(fills, ChargeBreakdown()).rounded().total == 11_124.06


def test_cost_model_plans_and_bad_inputs() -> None:
    day = date(2025, 6, 2)
    flat = CostModel(FLAT_20).fill_charges(SBIN, Product.CNC, Side.BUY, 1, 100.0, day)
    assert flat.brokerage == 20.0
    assert CostModel("zero").fill_charges(SBIN, Product.MIS, Side.BUY, 1, 100.0, day).brokerage == 0
    with pytest.raises(ValueError, match="zerodha"):
        CostModel("nobody")
    model = CostModel()
    with pytest.raises(ValueError, match="qty"):
        model.fill_charges(SBIN, Product.MIS, Side.BUY, 0, 100.0, day)
    with pytest.raises(ValueError, match="price"):
        model.fill_charges(SBIN, Product.MIS, Side.BUY, 1, -1.0, day)
    mcx = Instrument("MCX:GOLD", "MCX", "GOLD", InstrumentKind.FUT)
    with pytest.raises(ValueError, match="'MCX'"):
        model.fill_charges(mcx, Product.NRML, Side.BUY, 1, 100.0, day)


# ---------------------------------------------------------------------------------------------
# Slippage
# ---------------------------------------------------------------------------------------------


def test_no_slippage_only_snaps_adversely() -> None:
    assert NoSlippage().adjust(Side.BUY, 100.05, 0.05) == 100.05
    assert NoSlippage().adjust(Side.BUY, 100.02, 0.05) == 100.05
    assert NoSlippage().adjust(Side.SELL, 100.02, 0.05) == 100.00


def test_tick_slippage() -> None:
    # 3 ticks of 0.05 = 0.15: buy 250.10 → 250.25, sell → 249.95.
    assert TickSlippage(3).adjust(Side.BUY, 250.10, 0.05) == 250.25
    assert TickSlippage(3).adjust(Side.SELL, 250.10, 0.05) == 249.95
    # Off-grid 250.12: buy snaps up to 250.15 then + 0.15 = 250.30; sell down to 250.10 − 0.15.
    assert TickSlippage(3).adjust(Side.BUY, 250.12, 0.05) == 250.30
    assert TickSlippage(3).adjust(Side.SELL, 250.12, 0.05) == 249.95
    # A sell cannot go below the lowest valid price (one tick): 0.15 − 0.25 → 0.05.
    assert TickSlippage(5).adjust(Side.SELL, 0.15, 0.05) == 0.05


def test_bps_slippage() -> None:
    # 5 bps of 2,500 = 1.25: buy 2,501.25, sell 2,498.75 (both on the 0.05 grid already).
    assert BpsSlippage(5).adjust(Side.BUY, 2500.0, 0.05) == 2501.25
    assert BpsSlippage(5).adjust(Side.SELL, 2500.0, 0.05) == 2498.75
    # 3 bps of 1,234.55 = 0.370365: buy 1,234.920365 → up to 1,234.95; sell 1,234.179635 → down
    # to 1,234.15.
    assert BpsSlippage(3).adjust(Side.BUY, 1234.55, 0.05) == 1234.95
    assert BpsSlippage(3).adjust(Side.SELL, 1234.55, 0.05) == 1234.15


@settings(max_examples=200, deadline=None)
@given(
    price=st.floats(min_value=0.05, max_value=100_000, allow_nan=False),
    tick=st.sampled_from([0.05, 0.01, 0.1, 1.0]),
    ticks=st.integers(min_value=0, max_value=20),
    bps=st.floats(min_value=0, max_value=500),
)
def test_slippage_is_on_grid_and_never_favourable(price, tick, ticks, bps) -> None:
    for model in (NoSlippage(), TickSlippage(ticks), BpsSlippage(bps)):
        up = model.adjust(Side.BUY, price, tick)
        down = model.adjust(Side.SELL, price, tick)
        assert is_on_tick(up, tick) and is_on_tick(down, tick)
        assert up >= price - 1e-9
        assert down <= price + 1e-9 or down == tick  # floored at one tick


@pytest.mark.parametrize(
    "build", [lambda: TickSlippage(-1), lambda: TickSlippage(1.5), lambda: BpsSlippage(math.inf)]
)
def test_bad_slippage_parameters(build) -> None:
    with pytest.raises(ValueError):
        build()


def test_slippage_rejects_bad_price() -> None:
    with pytest.raises(ValueError, match="price"):
        TickSlippage(1).adjust(Side.BUY, 0.0, 0.05)


def test_cost_model_repr_names_plan() -> None:
    assert "zerodha" in repr(CostModel())


def test_default_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        DEFAULT_SCHEDULE.exchange["NSE"] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        DEFAULT_SCHEDULE.stt[-1][1]["futures"] = ("0", "0")  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# Totals without Decimal, picklable schedules
# ---------------------------------------------------------------------------------------------


def _reference_total(values: list[float]) -> float:
    """The documented rule, stated independently: items that print as whole paise add as those
    decimals; otherwise the exact sum of the binary values, rounded once."""
    printed = [Decimal(repr(v)) for v in values]
    if all(d == d.quantize(Decimal("0.01")) for d in printed):
        return float(sum(printed))
    return float(sum(Fraction(v) for v in values))


_AMOUNTS = st.one_of(
    st.integers(0, 10**11).map(lambda paise: paise / 100),  # contract-note items
    st.floats(min_value=0, max_value=1e7, allow_nan=False),  # unrounded per-fill pieces
)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(_AMOUNTS, min_size=6, max_size=6), paise=st.booleans())
def test_total_and_add_follow_the_stated_rule(items: list[float], paise: bool) -> None:
    if paise:  # all six whole paise, the case a contract note is
        items = [round(v * 100) / 100 for v in items]
    breakdown = _cb(*items)
    assert breakdown.total == _reference_total(items)
    doubled = breakdown + breakdown
    assert [getattr(doubled, f.name) for f in dataclasses.fields(doubled)] == [
        _reference_total([v, v]) for v in items
    ]


def test_paisa_totals_have_no_float_noise() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floats; as paise it is 30 + 0 + ... = ₹0.30.
    assert _cb(0.1, 0.2, 0.0, 0.0, 0.0, 0.0).total == 0.3
    assert (ChargeBreakdown(stt=0.1) + ChargeBreakdown(stt=0.2)).stt == 0.3
    # 30.15 + 13 + 3.24 + 0.10 + 2 + 6.03 (the Sep-2024 intraday note) = 54.52 exactly
    assert _cb(30.15, 13.0, 3.24, 0.10, 2.0, 6.03).total == 54.52


def test_schedules_pickle_and_stay_read_only() -> None:
    # A hypothetical SEBI fee of ₹15/crore from 2019 (instead of ₹10): pickled and loaded, the
    # schedule gives the same rates and its tables are still read-only mappings.
    custom = dataclasses.replace(DEFAULT_SCHEDULE, sebi=((date(2019, 4, 1), "15"),))
    day = date(2025, 6, 2)
    for schedule in (DEFAULT_SCHEDULE, custom):
        copy = pickle.loads(pickle.dumps(schedule))
        assert copy == schedule
        for segment in ("equity_delivery", "equity_intraday", "futures", "options"):
            for exchange in ("NSE", "BSE"):
                assert copy.rates(segment, exchange, day) == schedule.rates(segment, exchange, day)
        with pytest.raises(TypeError):
            copy.exchange["NSE"] = ()  # type: ignore[index]
        with pytest.raises(TypeError):
            copy.stt[-1][1]["futures"] = ("0", "0")  # type: ignore[index]
    # A CostModel on the custom schedule charges from it after the round trip:
    # futures sell 65 × 25,100 = 16,31,500 → SEBI ₹15/crore = ₹2.44725.
    model = pickle.loads(pickle.dumps(CostModel(schedule=custom)))
    c = model.fill_charges(NIFTY_FUT, Product.NRML, Side.SELL, 65, 25_100.0, day)
    assert c.sebi == pytest.approx(2.44725)
