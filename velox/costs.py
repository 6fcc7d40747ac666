"""Indian trading charges (dated rate tables), brokerage plans, and slippage models.

Every rupee a trade costs on an Indian contract note is modelled here, once, for the public
calculator (:func:`trade_charges`), for the simulator (:class:`CostModel`, applied to every
fill) and for backtests:

* **brokerage** — a swappable plan object (:class:`BrokeragePlan`; default Zerodha-like);
* **STT/CTT** — securities transaction tax (Finance Acts; changed 1 Apr 2023, 1 Oct 2024 and
  1 Apr 2026);
* **exchange** — exchange transaction charge (NSE figures include NSE's IPFT levy, as Zerodha's
  contract notes do);
* **sebi** — SEBI turnover fee;
* **stamp** — stamp duty: before 1 Jul 2020 set by the client's state on both sides of the
  trade (``ChargeSchedule.state``, default Maharashtra); from 1 Jul 2020 uniform and on the buy
  side only (Indian Stamp Act as amended by the Finance Act 2019);
* **gst** — 18% GST (15% service tax before 1 Jul 2017) on brokerage + exchange charge, and on
  the SEBI fee from 18 Jul 2022.

Rates live in dated tables (effective-from date → rates) inside a :class:`ChargeSchedule`; the row
in force on the trade date is used. ``docs/charges.md`` cites the source of every row and lists
what is unverified; pass your own schedule to override any of it.

Conventions
-----------
* Values are rupees. For options every value is **premium** value (qty × premium), never
  notional; STT on an option exercised in the money is a separate charge on intrinsic value
  (:func:`exercised_option_stt`).
* Turnover = buy value + sell value. Rates in the tables are written in percent (as published).
* Contract-note rounding (Zerodha's calculator): STT and stamp duty to the nearest rupee,
  everything else to the paisa; GST is computed on the already-rounded brokerage, exchange charge
  and SEBI fee. Halves round up. :func:`trade_charges` applies it; :meth:`CostModel.fill_charges`
  returns unrounded per-fill pieces (see :meth:`ChargeBreakdown.rounded`).
"""

from __future__ import annotations

import logging
import math
import numbers
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from functools import cache
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from velox.calendar import IST
from velox.errors import ValidationError
from velox.types import Instrument, InstrumentKind, Product, Side, snap_to_tick

__all__ = [
    "SEGMENTS",
    "EXCHANGES",
    "ChargeBreakdown",
    "Rates",
    "ChargeSchedule",
    "DEFAULT_SCHEDULE",
    "DEFAULT_STAMP_STATE",
    "BrokerageRule",
    "BrokeragePlan",
    "BrokerageModel",
    "ZERODHA",
    "FLAT_20",
    "ZERO_BROKERAGE",
    "BROKERAGE_PLANS",
    "trade_charges",
    "exercised_option_stt",
    "CostModel",
    "SlippageModel",
    "NoSlippage",
    "TickSlippage",
    "BpsSlippage",
]

logger = logging.getLogger(__name__)

#: The charge segments, in the order Zerodha's calculator lists them.
SEGMENTS: tuple[str, ...] = ("equity_delivery", "equity_intraday", "futures", "options")
#: Exchanges with rate tables. F&O venues map onto them: NFO → NSE, BFO → BSE.
EXCHANGES: tuple[str, ...] = ("NSE", "BSE")
_VENUE_TO_EXCHANGE = {"NSE": "NSE", "NFO": "NSE", "BSE": "BSE", "BFO": "BSE"}

# Enum members read on every simulated fill, bound once: looking a member up on its class is
# an unspecialised attribute lookup on Python 3.11 (~80 ns each).
_BUY, _SELL = Side.BUY, Side.SELL
_CNC, _MIS = Product.CNC, Product.MIS
_EQ, _FUT = InstrumentKind.EQ, InstrumentKind.FUT
_OPTION_KINDS = (InstrumentKind.CE, InstrumentKind.PE)

_PAISA = Decimal("0.01")
_RUPEE = Decimal("1")
_NOISE = Decimal("1e-9")
_HUNDRED = Decimal(100)
_CRORE = Decimal(10_000_000)


# --------------------------------------------------------------------------------------------
# Breakdown
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargeBreakdown:
    """Return-type of every charge computation: the six contract-note items in rupees.

    ``total`` and ``+`` add items that are whole paise exactly, as the decimals they print as
    (not as binary floats), so a breakdown rounded to the paisa has a total equal to the paisa
    figure on a contract note (``54.52``, never ``54.519999999999996``). Unrounded items (the
    per-fill pieces from :class:`CostModel`) are added as floats with :func:`math.fsum`, correct
    to the last bit and cheap enough for every simulated fill. Breakdowns add field by field,
    which is how the simulator accumulates per-fill charges into a day's figure.

    Examples
    --------
    >>> a = ChargeBreakdown(brokerage=20.0, stt=25.0)
    >>> (a + ChargeBreakdown(gst=3.6)).total
    48.6
    """

    brokerage: float = 0.0
    stt: float = 0.0
    exchange: float = 0.0
    sebi: float = 0.0
    stamp: float = 0.0
    gst: float = 0.0

    @property
    def total(self) -> float:
        """Return the sum of all items (rupees)."""
        return _sum((self.brokerage, self.stt, self.exchange, self.sebi, self.stamp, self.gst))

    def __add__(self, other: ChargeBreakdown) -> ChargeBreakdown:
        if not isinstance(other, ChargeBreakdown):
            return NotImplemented
        return ChargeBreakdown(
            *(_sum((getattr(self, f.name), getattr(other, f.name))) for f in fields(self))
        )

    def as_dict(self) -> dict[str, float]:
        """Return the items and ``total`` as a plain dict (for DataFrames and JSON)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["total"] = self.total
        return out

    def rounded(self) -> ChargeBreakdown:
        """Return this breakdown rounded as on a contract note.

        STT and stamp duty go to the nearest rupee, the rest to the paisa (halves up). Use it on
        the sum of one day's per-fill breakdowns from :class:`CostModel`. It rounds GST as
        accumulated rather than recomputing it from the rounded items, so it can differ from
        :func:`trade_charges` on the same trades by one paisa of GST (and brokerage differs when
        fills belong to different orders than ``trade_charges`` assumed).
        """
        return ChargeBreakdown(
            brokerage=_round(self.brokerage, _PAISA),
            stt=_round(self.stt, _RUPEE),
            exchange=_round(self.exchange, _PAISA),
            sebi=_round(self.sebi, _PAISA),
            stamp=_round(self.stamp, _RUPEE),
            gst=_round(self.gst, _PAISA),
        )


def _dec(value: float | int | str | Decimal) -> Decimal:
    """Return ``value`` as a Decimal via its shortest repr (``0.1`` → ``Decimal('0.1')``)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


#: Below this many rupees floats lie < 0.002 apart, so a float equal to ``k / 100`` prints as
#: exactly ``k`` paise: the test :func:`_sum` relies on.
_PAISE_LIMIT = 1e13


def _sum(values: tuple[float, ...]) -> float:
    """Return the sum of ``values``: exact in paise when every value is a whole number of paise.

    Whole-paise amounts (a contract note's items) are added as integers of paise and divided
    once, which gives the float nearest their decimal total, as a calculator prints it. Anything
    else (unrounded per-fill pieces) goes to :func:`math.fsum`: no Decimal, no ``repr``.
    """
    paise = 0
    for value in values:
        if not -_PAISE_LIMIT < value < _PAISE_LIMIT:
            return math.fsum(values)
        k = round(value * 100)
        if k / 100 != value:
            return math.fsum(values)
        paise += k
    return paise / 100


def _round(value: float | Decimal, step: Decimal) -> float:
    """Return ``value`` rounded half-up to ``step``, after dropping float noise below 1e-9.

    ``0.03% × ₹11,650`` is ₹3.495 on paper but ``3.4949999999999997`` in binary floating point;
    clearing the noise first makes a published half-paisa round up, as the calculator does.
    """
    clean = _dec(value).quantize(_NOISE, rounding=ROUND_HALF_EVEN)
    return float(clean.quantize(step, rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------------
# Dated rate tables
# --------------------------------------------------------------------------------------------

#: ``((effective_from, value), ...)`` sorted by date; a row applies until the next one starts.
Dated = tuple[tuple[date, object], ...]


def _pct(text: str) -> Decimal:
    return Decimal(text) / _HUNDRED


def _pick(rows: tuple[tuple[date, object], ...], on: date) -> object:
    """Return the value of the row in force ``on`` (the earliest row for earlier dates)."""
    i = bisect_right([d for d, _ in rows], on) - 1
    return rows[max(i, 0)][1]


@dataclass(frozen=True, slots=True)
class Rates:
    """The rates in force for one segment, exchange and date, as fractions of value.

    ``exchange`` already includes ``ipft`` (NSE's Investor Protection Fund Trust levy, billed
    inside the exchange transaction charge); ``ipft`` is kept to show the split. ``gst`` is the
    tax on brokerage and the exchange charge (service tax before 1 Jul 2017); ``gst_sebi`` is the
    tax on the SEBI fee: the same rate from 18 Jul 2022, zero before.
    """

    stt_buy: Decimal
    stt_sell: Decimal
    exchange: Decimal
    ipft: Decimal
    sebi: Decimal
    stamp_buy: Decimal
    stamp_sell: Decimal
    gst: Decimal
    gst_sebi: Decimal


# STT (Securities Transaction Tax), percent of value: segment → (buy, sell). Exchange-independent.
# Sources: Finance Act 2016 (options 0.05% from 1 Jun 2016), Finance Act 2023 (futures 0.0125%,
# options 0.0625% from 1 Apr 2023), Finance (No. 2) Act 2024 (0.02% / 0.1% from 1 Oct 2024),
# Finance Act 2026 (0.05% / 0.15% from 1 Apr 2026). Equity rates unchanged since 2013.
_STT: Dated = (
    (
        date(2016, 6, 1),
        {
            "equity_delivery": ("0.1", "0.1"),
            "equity_intraday": ("0", "0.025"),
            "futures": ("0", "0.01"),
            "options": ("0", "0.05"),
        },
    ),
    (
        date(2023, 4, 1),
        {
            "equity_delivery": ("0.1", "0.1"),
            "equity_intraday": ("0", "0.025"),
            "futures": ("0", "0.0125"),
            "options": ("0", "0.0625"),
        },
    ),
    (
        date(2024, 10, 1),
        {
            "equity_delivery": ("0.1", "0.1"),
            "equity_intraday": ("0", "0.025"),
            "futures": ("0", "0.02"),
            "options": ("0", "0.1"),
        },
    ),
    (
        date(2026, 4, 1),
        {
            "equity_delivery": ("0.1", "0.1"),
            "equity_intraday": ("0", "0.025"),
            "futures": ("0", "0.05"),
            "options": ("0", "0.15"),
        },
    ),
)

# STT on a long option exercised in the money, percent of intrinsic value (paid by the buyer).
_STT_EXERCISE: Dated = ((date(2016, 6, 1), "0.125"), (date(2026, 4, 1), "0.15"))


def _same(
    equity: str, futures: str, options: str, ipft: tuple[str, str, str] = ("0", "0", "0")
) -> dict[str, tuple[str, str]]:
    """Return one exchange row: delivery and intraday share the equity figure."""
    return {
        "equity_delivery": (equity, ipft[0]),
        "equity_intraday": (equity, ipft[0]),
        "futures": (futures, ipft[1]),
        "options": (options, ipft[2]),
    }


# NSE's IPFT levy from 1 Apr 2023 (₹10 / ₹10 / ₹50 per crore; ₹0.01 per crore before, ignored).
_NSE_IPFT = ("0.0001", "0.0001", "0.0005")

# Exchange transaction charge, percent of value (options: premium): exchange → dated rows of
# segment → (transaction charge, IPFT). NSE: the published top-slab rates of 2017–2020; +6% from
# 1 Jan 2021 (to fund NSE IPFT after broker defaults); the 6% rolled back and IPFT raised to
# ₹10/₹10/₹50 per crore from 1 Apr 2023 (NSE, 24 Mar 2023); flat fees from 1 Oct 2024 (circular
# of 27 Sep 2024: ₹2.97/₹1.73/₹35.03 per lakh) plus IPFT. The 2023-04-01 row holds the all-in
# figures brokers published just before Oct 2024 (its IPFT split is unverified). BSE: equity
# ₹300/crore, flat ₹375/crore from 1 Dec 2022; SENSEX/BANKEX options slabs. docs/charges.md
# cites each row and marks what is unverified.
_EXCHANGE: Mapping[str, Dated] = {
    "NSE": (
        (date(2017, 1, 1), _same("0.00325", "0.0019", "0.05")),
        (date(2021, 1, 1), _same("0.00345", "0.002", "0.053")),
        (date(2023, 4, 1), _same("0.00322", "0.00183", "0.0495")),
        (date(2024, 10, 1), _same("0.00297", "0.00173", "0.03503", _NSE_IPFT)),
    ),
    "BSE": (
        (date(2017, 1, 1), _same("0.003", "0", "0.005")),
        (date(2022, 12, 1), _same("0.00375", "0", "0.005")),
        (date(2024, 5, 13), _same("0.00375", "0", "0.0495")),
        (date(2024, 10, 1), _same("0.00375", "0", "0.0325")),
    ),
}

# SEBI turnover fee, rupees per crore of turnover (options: premium turnover). ₹15/crore until
# 31 Mar 2019; ₹10/crore from 1 Apr 2019 (SEBI (Payment of Fees) (Amendment) Regulations 2019);
# halved for Jun 2020–Mar 2021 (SEBI COVID-19 relief, press release of Apr 2020).
_SEBI: Dated = (
    (date(2017, 1, 1), "15"),
    (date(2019, 4, 1), "10"),
    (date(2020, 6, 1), "5"),
    (date(2021, 4, 1), "10"),
)

# Stamp duty from 1 Jul 2020, percent of value: segment → (buy, sell). Indian Stamp Act 1899 as
# amended by the Finance Act 2019, collected by the exchanges on the buy side at uniform rates.
_STAMP: Dated = (
    (
        date(2020, 7, 1),
        {
            "equity_delivery": ("0.015", "0"),
            "equity_intraday": ("0.003", "0"),
            "futures": ("0.002", "0"),
            "options": ("0.003", "0"),
        },
    ),
)


def _both_sides(
    delivery: str, intraday: str, futures: str, options: str
) -> dict[str, tuple[str, str]]:
    """Return one state row: the same rate on the buy and the sell side of each segment."""
    return {
        "equity_delivery": (delivery, delivery),
        "equity_intraday": (intraday, intraday),
        "futures": (futures, futures),
        "options": (options, options),
    }


# Stamp duty before 1 Jul 2020: each state's own rates on the contract note, so on both buy and
# sell value; state → dated rows of segment → (buy, sell). Only states that two or more brokers'
# published state tables agree on and that had no cap per contract note (docs/charges.md).
_STATE_STAMP_ROW_2017 = date(2017, 1, 1)
_STATE_STAMP: Mapping[str, Dated] = {
    "Maharashtra": ((_STATE_STAMP_ROW_2017, _both_sides("0.01", "0.002", "0.002", "0.002")),),
    "Delhi": ((_STATE_STAMP_ROW_2017, _both_sides("0.01", "0.002", "0.002", "0.002")),),
    "Gujarat": ((_STATE_STAMP_ROW_2017, _both_sides("0.01", "0.002", "0.002", "0.002")),),
    "Kerala": ((_STATE_STAMP_ROW_2017, _both_sides("0.01", "0.002", "0.002", "0.002")),),
    "Tamil Nadu": ((_STATE_STAMP_ROW_2017, _both_sides("0.006", "0.006", "0.006", "0.006")),),
}

#: The state whose stamp duty applies before 1 Jul 2020 unless a schedule names another:
#: Maharashtra, home of NSE, BSE and most brokers' registered offices.
DEFAULT_STAMP_STATE = "Maharashtra"

# Tax on brokerage + exchange charge, percent: service tax 15% (14% + Swachh Bharat cess 0.5% +
# Krishi Kalyan cess 0.5%, from 1 Jun 2016), GST 18% from 1 Jul 2017.
_GST: Dated = ((date(2016, 6, 1), "15"), (date(2017, 7, 1), "18"))

# Whether that tax also applies to the SEBI fee: from 18 Jul 2022 (SEBI turnover fee made
# subject to 18% GST; BSE notice 20220830-5). Brokers' pages before then taxed brokerage +
# transaction charges only.
_GST_ON_SEBI: Dated = ((date(2016, 6, 1), False), (date(2022, 7, 18), True))


def _read_only(rows: Dated) -> Dated:
    """Return ``rows`` with each row's mapping read-only, so no caller can edit the defaults."""
    return tuple(
        (d, MappingProxyType(v) if isinstance(v, dict) else v)  # type: ignore[arg-type]
        for d, v in rows
    )


_STT = _read_only(_STT)
_STAMP = _read_only(_STAMP)
_EXCHANGE = MappingProxyType({name: _read_only(rows) for name, rows in _EXCHANGE.items()})
_STATE_STAMP = MappingProxyType({name: _read_only(rows) for name, rows in _STATE_STAMP.items()})


@dataclass(frozen=True)
class ChargeSchedule:
    """The dated statutory and exchange rate tables Velox charges from.

    Each table is a tuple of ``(effective_from, value)`` rows sorted by date; the row in force on
    the trade date is used. Dates before ``coverage_start`` (the first date every table has a
    sourced row for: 1 Jan 2017) use each table's earliest row and log a warning once per year.
    Override any table with :func:`dataclasses.replace` — e.g. to model a new circular before
    Velox ships it.

    Stamp duty comes from ``stamp`` from its first row (1 Jul 2020, uniform, buy side only) and
    from ``state_stamp[state]`` before it, when each state levied its own duty on both sides of
    the contract note. ``state`` defaults to Maharashtra; :meth:`for_state` picks another.

    A schedule pickles (so does a simulator charging from it); the copy's tables are read-only
    mappings, like the defaults.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from datetime import date
    >>> s = replace(DEFAULT_SCHEDULE, sebi=((date(2019, 4, 1), "15"),))
    >>> float(s.rates("futures", "NSE", date(2025, 1, 2)).sebi * 10_000_000)
    15.0
    >>> tamil_nadu = DEFAULT_SCHEDULE.for_state("Tamil Nadu")
    >>> r = tamil_nadu.rates("equity_delivery", "NSE", date(2019, 5, 2))
    >>> float(r.stamp_buy * 100), float(r.stamp_sell * 100)  # percent, both sides
    (0.006, 0.006)
    """

    stt: Dated = _STT
    stt_exercise: Dated = _STT_EXERCISE
    exchange: Mapping[str, Dated] = field(default_factory=lambda: _EXCHANGE)
    sebi: Dated = _SEBI
    stamp: Dated = _STAMP
    gst: Dated = _GST
    coverage_start: date = date(2017, 1, 1)
    state_stamp: Mapping[str, Dated] = field(default_factory=lambda: _STATE_STAMP)
    state: str = DEFAULT_STAMP_STATE
    gst_on_sebi: Dated = _GST_ON_SEBI

    def __post_init__(self) -> None:
        if self.state not in self.state_stamp:
            raise ValidationError(
                f"no stamp-duty table for state {self.state!r}; use one of "
                f"{', '.join(sorted(self.state_stamp))}, or add its rows to state_stamp"
            )

    def for_state(self, state: str) -> ChargeSchedule:
        """Return this schedule charging ``state``'s stamp duty on trades before 1 Jul 2020."""
        return replace(self, state=state)

    def rates(self, segment: str, exchange: str, trade_date: date) -> Rates:
        """Return the rates in force for ``segment`` on ``exchange`` on ``trade_date``."""
        _check_choice("segment", segment, SEGMENTS)
        if exchange not in self.exchange:
            _check_choice("exchange", exchange, tuple(self.exchange))
        if trade_date < self.coverage_start:
            _warn_before_coverage(trade_date.year, self.coverage_start)
        stt_buy, stt_sell = _pick(self.stt, trade_date)[segment]  # type: ignore[index]
        txn, ipft = _pick(self.exchange[exchange], trade_date)[segment]  # type: ignore[index]
        stamp_rows = self.stamp if trade_date >= self.stamp[0][0] else self.state_stamp[self.state]
        stamp_buy, stamp_sell = _pick(stamp_rows, trade_date)[segment]  # type: ignore[index]
        gst = _pct(str(_pick(self.gst, trade_date)))
        return Rates(
            stt_buy=_pct(stt_buy),
            stt_sell=_pct(stt_sell),
            exchange=_pct(txn) + _pct(ipft),
            ipft=_pct(ipft),
            sebi=Decimal(str(_pick(self.sebi, trade_date))) / _CRORE,
            stamp_buy=_pct(stamp_buy),
            stamp_sell=_pct(stamp_sell),
            gst=gst,
            gst_sebi=gst if _pick(self.gst_on_sebi, trade_date) else Decimal(0),
        )

    def exercise_stt_rate(self, trade_date: date) -> Decimal:
        """Return the STT rate (fraction of intrinsic value) on options exercised in the money."""
        return _pct(str(_pick(self.stt_exercise, trade_date)))

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # The tables hold read-only mappings (MappingProxyType), which pickle refuses: store
        # them as plain dicts and make them read-only again on load.
        return (_load_schedule, tuple(_plain(getattr(self, f.name)) for f in fields(self)))


def _plain(value: object) -> object:
    """Return ``value`` with every mapping inside (tuples and mappings) a plain dict."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _frozen(value: object) -> object:
    """Return ``value`` with every dict inside (tuples and dicts) a read-only mapping."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _load_schedule(*values: object) -> ChargeSchedule:
    """Return the schedule pickled by :meth:`ChargeSchedule.__reduce__`."""
    return ChargeSchedule(*(_frozen(v) for v in values))  # type: ignore[arg-type]


#: The schedule :func:`trade_charges` and :class:`CostModel` use unless given another.
DEFAULT_SCHEDULE = ChargeSchedule()


@cache
def _warn_before_coverage(year: int, coverage_start: date) -> None:
    logger.warning(
        "charges for %d use the earliest rate rows: the charge tables start on %s; older "
        "contract notes differed (exchange slabs, state stamp duty, service tax rates). Pass a "
        "ChargeSchedule with earlier rows for exact figures.",
        year,
        coverage_start.isoformat(),
    )


def _check_choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValidationError(f"unknown {name} {value!r}; use one of {', '.join(valid)}")


# --------------------------------------------------------------------------------------------
# Brokerage plans
# --------------------------------------------------------------------------------------------


@runtime_checkable
class BrokerageModel(Protocol):
    """What Velox needs from a brokerage plan (implement it to model any broker).

    ``order_brokerage`` is the brokerage for one executed order of ``order_value`` rupees
    (premium for options); ``order_cap`` is the most one order can ever cost (``None`` when
    uncapped), which lets partial fills of one order share one order's brokerage.
    """

    name: str

    def order_brokerage(self, segment: str, order_value: float) -> float: ...

    def order_cap(self, segment: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class BrokerageRule:
    """Brokerage for one segment: ``flat`` rupees + ``percent`` % of order value, capped at ``cap``.

    Examples
    --------
    >>> BrokerageRule(percent=0.03, cap=20.0).for_order(50_000.0)  # 0.03% = ₹15 < ₹20
    15.0
    """

    percent: float = 0.0
    cap: float | None = None
    flat: float = 0.0

    def __post_init__(self) -> None:
        for name in ("percent", "flat"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"BrokerageRule.{name}={value!r} must be finite and >= 0")
        if self.cap is not None and not (math.isfinite(self.cap) and self.cap >= 0):
            raise ValidationError(f"BrokerageRule.cap={self.cap!r} must be None or >= 0")

    def for_order(self, order_value: float) -> float:
        """Return the brokerage for one executed order of ``order_value`` (0 for no value)."""
        if order_value <= 0:
            return 0.0
        fee = self.flat + self.percent * order_value / 100.0
        return fee if self.cap is None else min(fee, self.cap)

    @property
    def max_per_order(self) -> float | None:
        """Return the most one order can cost (``cap``; ``flat`` for a pure flat fee)."""
        if self.cap is not None:
            return self.cap
        return self.flat if self.percent == 0 else None


@dataclass(frozen=True, slots=True)
class BrokeragePlan:
    """A broker's brokerage, one :class:`BrokerageRule` per segment (a :class:`BrokerageModel`).

    Examples
    --------
    >>> plan = BrokeragePlan(
    ...     "my-broker",
    ...     equity_delivery=BrokerageRule(percent=0.1, cap=20.0),
    ...     equity_intraday=BrokerageRule(percent=0.03, cap=20.0),
    ...     futures=BrokerageRule(percent=0.03, cap=20.0),
    ...     options=BrokerageRule(flat=20.0),
    ... )
    >>> plan.order_brokerage("equity_delivery", 10_000.0)
    10.0
    """

    name: str
    equity_delivery: BrokerageRule = BrokerageRule()
    equity_intraday: BrokerageRule = BrokerageRule()
    futures: BrokerageRule = BrokerageRule()
    options: BrokerageRule = BrokerageRule()

    def _rule(self, segment: str) -> BrokerageRule:
        if segment not in SEGMENTS:  # checked inline: this runs twice per simulated fill
            _check_choice("segment", segment, SEGMENTS)
        return getattr(self, segment)

    def order_brokerage(self, segment: str, order_value: float) -> float:
        """Return the brokerage for one executed order in ``segment``."""
        return self._rule(segment).for_order(order_value)

    def order_cap(self, segment: str) -> float | None:
        """Return the most one order in ``segment`` can cost, or None if uncapped."""
        return self._rule(segment).max_per_order


_PCT_CAP_20 = BrokerageRule(percent=0.03, cap=20.0)
_FLAT_20 = BrokerageRule(flat=20.0)

#: Zerodha's published plan: free delivery; intraday and futures min(0.03%, ₹20) per executed
#: order; options flat ₹20 per executed order.
ZERODHA = BrokeragePlan(
    "zerodha", equity_intraday=_PCT_CAP_20, futures=_PCT_CAP_20, options=_FLAT_20
)
#: Flat ₹20 per executed order in every segment (delivery included).
FLAT_20 = BrokeragePlan(
    "flat20", equity_delivery=_FLAT_20, equity_intraday=_FLAT_20, futures=_FLAT_20, options=_FLAT_20
)
#: No brokerage at all: statutory and exchange charges only.
ZERO_BROKERAGE = BrokeragePlan("zero")

#: Plans selectable by name in ``broker=``; pass a :class:`BrokerageModel` object for others.
BROKERAGE_PLANS: Mapping[str, BrokerageModel] = {
    p.name: p for p in (ZERODHA, FLAT_20, ZERO_BROKERAGE)
}


def _plan(broker: str | BrokerageModel) -> BrokerageModel:
    if isinstance(broker, str):
        _check_choice("broker", broker, tuple(BROKERAGE_PLANS))
        return BROKERAGE_PLANS[broker]
    if isinstance(broker, BrokerageModel):
        return broker
    raise ValidationError(
        f"broker={broker!r} is neither a plan name ({', '.join(BROKERAGE_PLANS)}) nor an object "
        "with name, order_brokerage() and order_cap()"
    )


# --------------------------------------------------------------------------------------------
# The contract-note calculator
# --------------------------------------------------------------------------------------------


def _trade_date(trade_date: date | None) -> date:
    if trade_date is None:
        return datetime.now(IST).date()
    if isinstance(trade_date, datetime):
        if trade_date.tzinfo is None:
            raise ValidationError(
                f"trade_date={trade_date!r} is naive; pass a date or a tz-aware datetime"
            )
        return trade_date.astimezone(IST).date()
    if isinstance(trade_date, date):
        return trade_date
    raise ValidationError(f"trade_date={trade_date!r} must be a datetime.date")


def _check_qty(qty: int) -> None:
    if isinstance(qty, bool) or not isinstance(qty, numbers.Integral) or qty <= 0:
        raise ValidationError(f"qty={qty!r} must be a whole number > 0")


def _check_price(price: float) -> None:
    if not (math.isfinite(price) and price > 0):
        raise ValidationError(f"price={price!r} must be a finite price > 0")


def _check_value(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise ValidationError(f"{name}={value!r} must be a number of rupees")
    if not math.isfinite(value) or value < 0:
        raise ValidationError(f"{name}={value!r} must be a finite amount >= 0")


def _split_orders(orders: int | None, buy_value: float, sell_value: float) -> tuple[int, int]:
    """Return (buy orders, sell orders): one per non-zero side, or ``orders`` split between them."""
    sides = int(buy_value > 0) + int(sell_value > 0)
    if orders is None:
        return int(buy_value > 0), int(sell_value > 0)
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 0:
        raise ValidationError(f"orders={orders!r} must be a whole number of executed orders >= 0")
    if orders < sides:
        raise ValidationError(
            f"orders={orders} but {sides} side(s) have a value: each non-zero side needs at "
            "least one executed order"
        )
    if sides == 0:
        if orders:
            raise ValidationError(f"orders={orders} but buy_value and sell_value are both 0")
        return 0, 0
    if sides == 1:
        return (orders, 0) if buy_value > 0 else (0, orders)
    return orders - orders // 2, orders // 2


def trade_charges(
    segment: str,
    buy_value: float,
    sell_value: float,
    exchange: str = "NSE",
    trade_date: date | None = None,
    broker: str | BrokerageModel = "zerodha",
    orders: int | None = None,
    *,
    schedule: ChargeSchedule = DEFAULT_SCHEDULE,
) -> ChargeBreakdown:
    """Return the charges of a trade as a contract note prints them (rounded).

    Parameters
    ----------
    segment
        One of ``equity_delivery``, ``equity_intraday``, ``futures``, ``options``.
    buy_value, sell_value
        Rupees bought and sold (quantity × price; **premium** for options). Either may be 0.
    exchange
        ``"NSE"`` or ``"BSE"`` (``"NFO"``/``"BFO"`` are accepted as their F&O venues).
    trade_date
        Picks the rate rows in force; defaults to today in IST.
    broker
        A plan name (``"zerodha"``, ``"flat20"``, ``"zero"``) or any :class:`BrokerageModel`.
    orders
        Number of executed orders, for per-order brokerage. Default: one per non-zero side. When
        given, orders are split between the two sides (buy gets the odd one) and each side's
        value is spread evenly over its orders.
    schedule
        The rate tables (override to model an unpublished change).

    Notes
    -----
    Rounding follows Zerodha's calculator: each order's brokerage, the exchange charge, the
    SEBI fee and GST to the paisa; STT and stamp duty to the nearest rupee; GST is 18% of the
    rounded brokerage + exchange charge (+ SEBI fee from 18 Jul 2022). Halves round up. Before
    1 Jul 2020 stamp duty is the schedule's state's (default Maharashtra), on both sides.

    Examples
    --------
    The delivery check from MARKET.md: 5,000 shares bought and sold at ₹1,000 on NSE.

    >>> from datetime import date
    >>> c = trade_charges("equity_delivery", 5_000_000, 5_000_000, trade_date=date(2025, 6, 2))
    >>> c.stt, c.exchange, c.sebi, c.stamp, c.gst, c.total
    (10000.0, 307.0, 10.0, 750.0, 57.06, 11124.06)
    """
    _check_choice("segment", segment, SEGMENTS)
    _check_choice("exchange", exchange, tuple(_VENUE_TO_EXCHANGE))
    _check_value("buy_value", buy_value)
    _check_value("sell_value", sell_value)
    plan = _plan(broker)
    day = _trade_date(trade_date)
    rates = schedule.rates(segment, _VENUE_TO_EXCHANGE[exchange], day)

    buy, sell = _dec(buy_value), _dec(sell_value)
    turnover = buy + sell
    brokerage = Decimal(0)
    for value, count in zip((buy, sell), _split_orders(orders, buy_value, sell_value), strict=True):
        if count:
            per_order = plan.order_brokerage(segment, float(value / count))
            brokerage += count * _dec(_round(per_order, _PAISA))
    exchange_charge = _dec(_round(turnover * rates.exchange, _PAISA))
    sebi = _dec(_round(turnover * rates.sebi, _PAISA))
    gst = _round((brokerage + exchange_charge) * rates.gst + sebi * rates.gst_sebi, _PAISA)
    return ChargeBreakdown(
        brokerage=float(brokerage),
        stt=_round(buy * rates.stt_buy + sell * rates.stt_sell, _RUPEE),
        exchange=float(exchange_charge),
        sebi=float(sebi),
        stamp=_round(buy * rates.stamp_buy + sell * rates.stamp_sell, _RUPEE),
        gst=gst,
    )


def exercised_option_stt(
    intrinsic_value: float,
    trade_date: date | None = None,
    *,
    schedule: ChargeSchedule = DEFAULT_SCHEDULE,
) -> float:
    """Return the STT on a long option exercised in the money, rounded to the rupee.

    ``intrinsic_value`` is (settlement price − strike) × quantity for a call, (strike −
    settlement price) × quantity for a put. The rate was 0.125% and is 0.15% from 1 Apr 2026
    (Finance Act 2026). Exchange charges and stamp duty on physical settlement are not modelled.

    Examples
    --------
    >>> from datetime import date
    >>> exercised_option_stt(100 * 65, date(2026, 4, 30))  # ₹100 ITM, one NIFTY lot of 65
    10.0
    """
    _check_value("intrinsic_value", intrinsic_value)
    rate = schedule.exercise_stt_rate(_trade_date(trade_date))
    return _round(_dec(intrinsic_value) * rate, _RUPEE)


# --------------------------------------------------------------------------------------------
# The model the simulator applies to every fill
# --------------------------------------------------------------------------------------------


class CostModel:
    """Return per-fill charges for the simulator and event-driven backtests (swappable object).

    One fill is charged on its own side only (STT sell side, stamp duty buy side from 1 Jul
    2020 and both sides before, …) with
    unrounded amounts; summing a day's fills and calling :meth:`ChargeBreakdown.rounded` gives
    the contract note, up to the paisa of GST rounding noted there. Brokerage is per *order*:
    pass the brokerage already charged to earlier fills of the same order as
    ``order_brokerage_so_far`` and the fills of one order never pay more than one order's cap.

    Parameters
    ----------
    broker
        Plan name or :class:`BrokerageModel` (default Zerodha-like).
    schedule
        Rate tables (default :data:`DEFAULT_SCHEDULE`).

    Examples
    --------
    >>> from datetime import date
    >>> from velox.types import Instrument, InstrumentKind, Product, Side
    >>> sbin = Instrument("NSE:SBIN", "NSE", "SBIN", InstrumentKind.EQ)
    >>> c = CostModel().fill_charges(sbin, Product.MIS, Side.SELL, 100, 800.0, date(2025, 6, 2))
    >>> round(c.brokerage, 2), round(c.stt, 2)  # 0.03% of ₹80,000 = ₹24 → capped at ₹20
    (20.0, 20.0)
    """

    def __init__(
        self,
        broker: str | BrokerageModel = "zerodha",
        schedule: ChargeSchedule = DEFAULT_SCHEDULE,
    ) -> None:
        self.plan = _plan(broker)
        self.schedule = schedule
        self._float_rates: dict[tuple[str, str, date], tuple[float, ...]] = {}

    def __repr__(self) -> str:
        return f"CostModel(broker={self.plan.name!r})"

    @staticmethod
    def segment_for(instrument: Instrument, product: Product) -> str:
        """Return the charge segment of trading ``instrument`` under ``product``.

        EQ + CNC → ``equity_delivery``; EQ + MIS → ``equity_intraday``; FUT → ``futures``;
        CE/PE → ``options`` (whatever the product: F&O charges do not depend on it).
        """
        if product.__class__ is not Product:
            product = Product(product)
        kind = instrument.kind
        if kind is _FUT:
            return "futures"
        if kind in _OPTION_KINDS:
            return "options"
        if kind is _EQ:
            if product is _CNC:
                return "equity_delivery"
            if product is _MIS:
                return "equity_intraday"
            raise ValidationError(
                f"{instrument.id}: product {product.value} is for F&O; trade equity as CNC "
                "(delivery) or MIS (intraday)"
            )
        raise ValidationError(f"{instrument.id}: {kind.value} instruments are not tradable")

    def _rates(self, segment: str, exchange: str, trade_date: date) -> tuple[float, ...]:
        key = (segment, exchange, trade_date)
        cached = self._float_rates.get(key)
        if cached is None:
            r = self.schedule.rates(segment, exchange, trade_date)
            cached = tuple(
                float(x)
                for x in (
                    r.stt_buy,
                    r.stt_sell,
                    r.exchange,
                    r.sebi,
                    r.stamp_buy,
                    r.stamp_sell,
                    r.gst,
                    r.gst_sebi,
                )
            )
            self._float_rates[key] = cached
        return cached

    def fill_charges(
        self,
        instrument: Instrument,
        product: Product,
        side: Side,
        qty: int,
        price: float,
        trade_date: date,
        *,
        order_brokerage_so_far: float = 0.0,
    ) -> ChargeBreakdown:
        """Return the unrounded charges of one fill of ``qty`` at ``price`` on ``side``.

        The brokerage of a fill is the plan's brokerage on the fill's value, limited to what is
        left of the order's cap after ``order_brokerage_so_far``: for a percent-with-cap plan
        the fills of one order sum to exactly the brokerage of the whole order, for a flat
        per-order fee the first fill pays it and later fills pay nothing.
        """
        # Called for every simulated fill: each check has a fast path for the common exact
        # types and falls back to the full validation (same errors) for anything else.
        segment = self.segment_for(instrument, product)
        exchange = _VENUE_TO_EXCHANGE.get(instrument.exchange)
        if exchange is None:
            _check_choice("exchange", instrument.exchange, tuple(_VENUE_TO_EXCHANGE))
        if side.__class__ is not Side:
            side = Side(side)
        if qty.__class__ is not int or qty <= 0:
            _check_qty(qty)
        if price.__class__ is not float or not 0.0 < price < math.inf:
            _check_price(price)
        so_far = order_brokerage_so_far
        if so_far.__class__ is not float or not 0.0 <= so_far < math.inf:
            _check_value("order_brokerage_so_far", so_far)
        if trade_date.__class__ is not date:
            trade_date = _trade_date(trade_date)
        rates = self._rates(segment, exchange, trade_date)
        stt_buy, stt_sell, exch, sebi_rate, stamp_buy, stamp_sell, gst_rate, gst_sebi = rates
        value = qty * price
        brokerage = self.plan.order_brokerage(segment, value)
        cap = self.plan.order_cap(segment)
        if cap is not None:
            brokerage = max(0.0, min(brokerage, cap - order_brokerage_so_far))
        buying = side is _BUY
        exchange_charge = value * exch
        sebi = value * sebi_rate
        return ChargeBreakdown(  # positional (documented order): cheaper, once per fill
            brokerage,
            value * (stt_buy if buying else stt_sell),  # stt
            exchange_charge,
            sebi,
            value * (stamp_buy if buying else stamp_sell),  # stamp
            (brokerage + exchange_charge) * gst_rate + sebi * gst_sebi,  # gst
        )


# --------------------------------------------------------------------------------------------
# Slippage
# --------------------------------------------------------------------------------------------


@runtime_checkable
class SlippageModel(Protocol):
    """Moves a reference price to the fill price: on the tick grid, never better for the trader."""

    def adjust(self, side: Side, price: float, tick_size: float) -> float: ...


def _sign(side: Side) -> int:
    """Return +1 for a buy, -1 for a sell (``side`` may be the string; anything else raises)."""
    if side is _BUY:
        return 1
    if side is _SELL:
        return -1
    return Side(side).sign


def _adverse_snap(side: Side, price: float, tick_size: float) -> float:
    if price.__class__ is not float or not 0.0 < price < math.inf:
        _check_price(price)
    up = side is _BUY or (side is not _SELL and Side(side) is _BUY)
    return snap_to_tick(price, tick_size, "up" if up else "down")


def _floor_price(price: float, tick_size: float) -> float:
    # A sell pushed to or below zero fills at the lowest valid price, one tick.
    return price if price > 0 else (tick_size if tick_size > 0 else price)


@dataclass(frozen=True, slots=True)
class NoSlippage:
    """Fill at the reference price, moved onto the tick grid against the trader if off it.

    Examples
    --------
    >>> NoSlippage().adjust(Side.BUY, 100.02, 0.05), NoSlippage().adjust(Side.SELL, 100.02, 0.05)
    (100.05, 100.0)
    """

    def adjust(self, side: Side, price: float, tick_size: float) -> float:
        """Return ``price`` on the grid: rounded up for a buy, down for a sell."""
        return _adverse_snap(side, price, tick_size)


@dataclass(frozen=True, slots=True)
class TickSlippage:
    """Fill ``ticks`` ticks worse than the reference price (buys higher, sells lower).

    Examples
    --------
    >>> slip = TickSlippage(2)
    >>> slip.adjust(Side.BUY, 100.0, 0.05), slip.adjust(Side.SELL, 100.0, 0.05)
    (100.1, 99.9)
    """

    ticks: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.ticks, bool) or not isinstance(self.ticks, int) or self.ticks < 0:
            raise ValidationError(f"TickSlippage.ticks={self.ticks!r} must be a whole number >= 0")

    def adjust(self, side: Side, price: float, tick_size: float) -> float:
        """Return the price ``ticks`` ticks beyond ``price`` (snapped adversely first)."""
        base = _adverse_snap(side, price, tick_size)
        step = self.ticks * tick_size * _sign(side)
        moved = snap_to_tick(base + step, tick_size)
        return _floor_price(moved, tick_size)


@dataclass(frozen=True, slots=True)
class BpsSlippage:
    """Fill ``bps`` basis points worse than the reference price, then onto the grid adversely.

    Examples
    --------
    >>> slip = BpsSlippage(10)
    >>> slip.adjust(Side.BUY, 1000.0, 0.05), slip.adjust(Side.SELL, 1000.0, 0.05)
    (1001.0, 999.0)
    """

    bps: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bps) and self.bps >= 0):
            raise ValidationError(f"BpsSlippage.bps={self.bps!r} must be finite and >= 0")

    def adjust(self, side: Side, price: float, tick_size: float) -> float:
        """Return ``price`` × (1 ± bps/10,000), rounded to the grid against the trader."""
        _adverse_snap(side, price, tick_size)  # validates price
        moved = price * (1.0 + _sign(side) * self.bps / 10_000.0)
        return _floor_price(_adverse_snap(side, max(moved, 1e-12), tick_size), tick_size)
