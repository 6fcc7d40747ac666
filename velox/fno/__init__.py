"""Multi-leg index options: legs as data, a basket backtester, payoff diagrams, margin estimates.

=============================  ==============================================================
:class:`Leg`                   one leg chosen relative to the market (offset, delta, premium)
:class:`Roll`                  a per-leg adjustment: roll a tested leg to a new strike
:func:`straddle` …             builders: straddle, strangle, iron_condor, butterfly, calendar,
                               ratio_spread, covered_call (lists of legs)
:func:`resolve_legs`           legs → :class:`Position` contracts on a model-priced chain
:func:`backtest_basket`        enter/exit the legs as one basket on intraday index bars
:func:`split_order`            order quantities within the exchange freeze quantity
:func:`option_feed`            the contracts (bars, instrument rows) an engine replay may trade
:func:`option_instrument_id`   the ``NFO:`` id of a contract (where its stored bars are)
:func:`payoff`                 P&L over a spot range at entry and at expiry (+ :func:`payoff_plot`)
:func:`margin`                 a SPAN-like margin estimate (scenario grid + exposure margin)
=============================  ==============================================================

Pricing lives in :mod:`velox.options`; this package builds on it. Prices are model prices
(Black-76) unless stored option bars are given, and every result says which
(``price_source``). See ``docs/options.md``.
"""

from velox.fno.basket import (
    CHARGE_KINDS,
    BasketResult,
    backtest_basket,
    option_instrument_id,
    split_order,
)
from velox.fno.legs import (
    Leg,
    Position,
    Roll,
    butterfly,
    calendar,
    covered_call,
    iron_condor,
    ratio_spread,
    resolve_legs,
    straddle,
    strangle,
)
from velox.fno.margins import MarginEstimate, margin
from velox.fno.payoffs import payoff, payoff_plot
from velox.fno.replay import OptionFeed, option_feed

__all__ = [
    "CHARGE_KINDS",
    "BasketResult",
    "Leg",
    "MarginEstimate",
    "OptionFeed",
    "Position",
    "Roll",
    "backtest_basket",
    "butterfly",
    "calendar",
    "covered_call",
    "iron_condor",
    "margin",
    "option_feed",
    "option_instrument_id",
    "payoff",
    "payoff_plot",
    "ratio_spread",
    "resolve_legs",
    "split_order",
    "straddle",
    "strangle",
]
