"""Option strategy legs as data, the builders of the common structures, and leg resolution.

A :class:`Leg` says *what* to trade relative to the market at entry (CE two steps out of the
money of the next weekly expiry, one lot, sold); :func:`resolve_legs` turns it into a
:class:`Position` (strike 17,400, expiry 2022-06-16, 50 units, entry premium 31.05) against a
model-priced chain at one moment. Builders return plain lists of legs, so a strategy is data a
user can print, edit and store.

Conventions: ``side`` is ``"buy"`` or ``"sell"``; ``offset`` counts strike steps **out of the
money** as :func:`velox.options.select_strike` does (0 = ATM, 2 = two steps OTM, negative = in
the money); ``lots`` is a whole number of the contract's lots; a ``"FUT"`` leg is the future of
the chosen expiry (priced at the carried forward, strike ignored).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from velox.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Leg",
    "Position",
    "Roll",
    "butterfly",
    "calendar",
    "covered_call",
    "iron_condor",
    "ratio_spread",
    "resolve_legs",
    "straddle",
    "strangle",
]

_KINDS = ("CE", "PE", "FUT")
_SIDES = ("buy", "sell")
_EXPIRY_KINDS = ("weekly", "monthly")


@dataclass(frozen=True, slots=True)
class Roll:
    """A per-leg adjustment: when the leg is *tested*, close it and open a replacement.

    Tested (checked at every bar close after the leg's entry, before the basket's last bar)
    when either trigger given holds:

    * ``through``: the index has gone ``through`` points past the strike towards the money —
      a CE when ``spot >= strike + through``, a PE when ``spot <= strike - through`` (0: the
      index crosses the strike; 50: it is 50 points in the money; -30: it comes within 30
      points of the strike from the out-of-the-money side);
    * ``delta``: the leg's |delta| (Black-76, as ``BasketResult.greeks`` has it) reaches
      ``delta``.

    The replacement is the same kind, side, lots and expiry, its strike chosen the way entry
    strikes are, on the chain at that bar close: ``offset`` strike steps out of the money of
    the ATM then (None: the leg's own selector, ``offset``/``delta``/``premium``). A tested bar
    whose replacement would be the same contract makes no roll (the leg stays; later bars are
    checked again). At most ``max_rolls`` rolls per leg and basket.

    Examples
    --------
    >>> Roll(through=50, offset=0, max_rolls=2)
    Roll(through=50, delta=None, offset=0, max_rolls=2)
    """

    through: float | None = None
    delta: float | None = None
    offset: int | None = None
    max_rolls: int = 1

    def __post_init__(self) -> None:
        if self.through is None and self.delta is None:
            raise ValidationError("a Roll needs a trigger: through= (points) or delta=")
        if self.through is not None and (
            isinstance(self.through, bool) or not math.isfinite(self.through)
        ):
            raise ValidationError(f"Roll.through={self.through!r} must be a number of points")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValidationError(f"Roll.delta={self.delta!r} must be between 0 and 1 (|delta|)")
        if self.offset is not None and (
            isinstance(self.offset, bool) or not isinstance(self.offset, int)
        ):
            raise ValidationError(f"Roll.offset={self.offset!r} must be a whole number of steps")
        if (
            isinstance(self.max_rolls, bool)
            or not isinstance(self.max_rolls, int)
            or self.max_rolls < 1
        ):
            raise ValidationError(f"Roll.max_rolls={self.max_rolls!r} must be a whole number >= 1")


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of an option strategy, chosen relative to the market at entry.

    Give at most one strike selector: ``offset`` (strike steps out of the money, the default
    0 = ATM when none is given), ``delta`` (nearest |delta|, e.g. 0.25), ``premium`` (nearest
    model premium in rupees) or ``strike`` (an absolute strike). ``expiry`` is ``"weekly"``
    (every listed expiry, weeklies included) or ``"monthly"``; ``nth`` picks the n-th one after
    entry (0 = the next). ``stop_loss`` is a per-leg stop as a fraction of the entry premium
    (0.3: a sold leg exits when its premium rises 30 %, a bought leg when it falls 30 %).
    ``roll`` is a :class:`Roll`: when the leg is tested, the basket backtester closes it and
    opens a replacement at a new strike (options only).

    Examples
    --------
    >>> Leg("CE", "sell", offset=2)
    Leg(kind='CE', side='sell', lots=1, offset=2, delta=None, premium=None, strike=None, \
expiry='weekly', nth=0, stop_loss=None, roll=None)
    """

    kind: str
    side: str
    lots: int = 1
    offset: int | None = None
    delta: float | None = None
    premium: float | None = None
    strike: float | None = None
    expiry: str = "weekly"
    nth: int = 0
    stop_loss: float | None = None
    roll: Roll | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValidationError(f"Leg.kind={self.kind!r} must be one of {', '.join(_KINDS)}")
        if self.side not in _SIDES:
            raise ValidationError(f"Leg.side={self.side!r} must be 'buy' or 'sell'")
        if isinstance(self.lots, bool) or not isinstance(self.lots, int) or self.lots < 1:
            raise ValidationError(f"Leg.lots={self.lots!r} must be a whole number of lots >= 1")
        chosen = [x is not None for x in (self.offset, self.delta, self.premium, self.strike)]
        if sum(chosen) > 1:
            raise ValidationError(
                f"a Leg takes at most one of offset=, delta=, premium=, strike= (got {sum(chosen)})"
            )
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValidationError(f"Leg.delta={self.delta!r} must be between 0 and 1 (|delta|)")
        if self.premium is not None and not self.premium > 0:
            raise ValidationError(f"Leg.premium={self.premium!r} must be > 0 rupees")
        if self.strike is not None and not self.strike > 0:
            raise ValidationError(f"Leg.strike={self.strike!r} must be > 0")
        if self.expiry not in _EXPIRY_KINDS:
            raise ValidationError(f"Leg.expiry={self.expiry!r} must be 'weekly' or 'monthly'")
        if isinstance(self.nth, bool) or not isinstance(self.nth, int) or self.nth < 0:
            raise ValidationError(f"Leg.nth={self.nth!r} must be a whole number >= 0")
        if self.stop_loss is not None and not (
            math.isfinite(self.stop_loss) and self.stop_loss > 0
        ):
            raise ValidationError(f"Leg.stop_loss={self.stop_loss!r} must be a fraction > 0")
        if self.roll is not None:
            if not isinstance(self.roll, Roll):
                raise ValidationError(f"Leg.roll={self.roll!r} must be a velox.fno.Roll")
            if self.kind == "FUT":
                raise ValidationError("a FUT leg cannot roll (Roll is for options: strikes)")
            if self.strike is not None and self.roll.offset is None:
                raise ValidationError(
                    "a Leg with an absolute strike= needs Roll(offset=…) to choose the "
                    "replacement's strike"
                )

    @property
    def sign(self) -> int:
        """Return +1 for a bought leg, -1 for a sold one (the sign of its position)."""
        return 1 if self.side == "buy" else -1


@dataclass(frozen=True, slots=True)
class Position:
    """A resolved leg: a concrete contract held in a quantity, with its entry premium.

    ``qty`` is in units (lots × lot size), positive; ``sign`` +1 long, -1 short. ``strike`` is
    NaN for a future. ``price_source`` is ``"model"`` for a model-priced entry, ``"bars"`` for
    one taken from stored option bars.
    """

    kind: str
    sign: int
    strike: float
    expiry: date
    qty: int
    lots: int
    lot_size: int
    entry_price: float
    price_source: str = "model"
    stop_loss: float | None = None


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def straddle(
    side: str = "sell", lots: int = 1, *, expiry: str = "weekly", nth: int = 0
) -> list[Leg]:
    """Return an ATM straddle: the CE and the PE of the ATM strike, both bought or both sold.

    Examples
    --------
    >>> [(leg.kind, leg.side, leg.offset) for leg in straddle()]
    [('CE', 'sell', 0), ('PE', 'sell', 0)]
    """
    return [Leg(k, side, lots, offset=0, expiry=expiry, nth=nth) for k in ("CE", "PE")]


def strangle(
    width: int = 2, side: str = "sell", lots: int = 1, *, expiry: str = "weekly", nth: int = 0
) -> list[Leg]:
    """Return a strangle: the CE and the PE ``width`` strike steps out of the money.

    Examples
    --------
    >>> [(leg.kind, leg.offset) for leg in strangle(3)]
    [('CE', 3), ('PE', 3)]
    """
    return [Leg(k, side, lots, offset=width, expiry=expiry, nth=nth) for k in ("CE", "PE")]


def iron_condor(
    short_offset: int = 2,
    wing: int = 2,
    lots: int = 1,
    *,
    side: str = "sell",
    expiry: str = "weekly",
    nth: int = 0,
) -> list[Leg]:
    """Return an iron condor: a short strangle ``short_offset`` steps OTM with wings ``wing``
    steps further out bought (``side="buy"`` gives the long condor).

    The wings cap the loss on either side at ``wing × step − net credit`` per unit, which is
    what the margin estimate rewards (:func:`velox.fno.margin`).

    Examples
    --------
    >>> [(leg.kind, leg.side, leg.offset) for leg in iron_condor(2, 2)]
    [('CE', 'sell', 2), ('CE', 'buy', 4), ('PE', 'sell', 2), ('PE', 'buy', 4)]
    """
    if wing < 1:
        raise ValidationError(f"iron_condor wing={wing} must be >= 1 strike step")
    inner, outer = side, "buy" if side == "sell" else "sell"
    return [
        Leg(kind, s, lots, offset=o, expiry=expiry, nth=nth)
        for kind in ("CE", "PE")
        for s, o in ((inner, short_offset), (outer, short_offset + wing))
    ]


def butterfly(
    kind: str = "CE", wing: int = 2, lots: int = 1, *, expiry: str = "weekly", nth: int = 0
) -> list[Leg]:
    """Return a long butterfly: buy ``wing`` steps ITM and OTM, sell twice the ATM.

    Examples
    --------
    >>> [(leg.side, leg.lots, leg.offset) for leg in butterfly("CE", 2)]
    [('buy', 1, -2), ('sell', 2, 0), ('buy', 1, 2)]
    """
    if wing < 1:
        raise ValidationError(f"butterfly wing={wing} must be >= 1 strike step")
    return [
        Leg(kind, "buy", lots, offset=-wing, expiry=expiry, nth=nth),
        Leg(kind, "sell", 2 * lots, offset=0, expiry=expiry, nth=nth),
        Leg(kind, "buy", lots, offset=wing, expiry=expiry, nth=nth),
    ]


def calendar(
    kind: str = "CE", offset: int = 0, lots: int = 1, *, expiry: str = "weekly", far: int = 1
) -> list[Leg]:
    """Return a long calendar spread: sell the next expiry, buy the ``far``-th, same strike step.

    Examples
    --------
    >>> [(leg.side, leg.nth) for leg in calendar("PE")]
    [('sell', 0), ('buy', 1)]
    """
    if far < 1:
        raise ValidationError(f"calendar far={far} must be >= 1 (a later expiry than the next)")
    return [
        Leg(kind, "sell", lots, offset=offset, expiry=expiry, nth=0),
        Leg(kind, "buy", lots, offset=offset, expiry=expiry, nth=far),
    ]


def ratio_spread(
    kind: str = "CE",
    buy_offset: int = 0,
    sell_offset: int = 2,
    ratio: tuple[int, int] = (1, 2),
    *,
    expiry: str = "weekly",
    nth: int = 0,
) -> list[Leg]:
    """Return a ratio spread: buy ``ratio[0]`` lots at ``buy_offset``, sell ``ratio[1]`` lots
    at ``sell_offset`` (further out: more sold than bought, a credit or small debit).

    Examples
    --------
    >>> [(leg.side, leg.lots, leg.offset) for leg in ratio_spread("CE", 0, 2, (1, 2))]
    [('buy', 1, 0), ('sell', 2, 2)]
    """
    return [
        Leg(kind, "buy", ratio[0], offset=buy_offset, expiry=expiry, nth=nth),
        Leg(kind, "sell", ratio[1], offset=sell_offset, expiry=expiry, nth=nth),
    ]


def covered_call(offset: int = 2, lots: int = 1, *, nth: int = 0) -> list[Leg]:
    """Return a covered call on the index future: buy the monthly future, sell its OTM CE.

    Examples
    --------
    >>> [(leg.kind, leg.side, leg.expiry) for leg in covered_call()]
    [('FUT', 'buy', 'monthly'), ('CE', 'sell', 'monthly')]
    """
    return [
        Leg("FUT", "buy", lots, expiry="monthly", nth=nth),
        Leg("CE", "sell", lots, offset=offset, expiry="monthly", nth=nth),
    ]


# --------------------------------------------------------------------------------------------
# Resolution against a chain
# --------------------------------------------------------------------------------------------


@functools.cache
def _expiry_years(underlying: str, weekly: bool, year: int) -> tuple[date, ...]:
    """Return the expiries of ``year`` and the next (cached: a backtest asks every day)."""
    from velox.options import expiries

    return tuple(expiries(underlying, date(year, 1, 1), date(year + 1, 12, 31), weekly=weekly))


def _replacement(leg: Leg) -> Leg:
    """Return the leg a roll of ``leg`` opens: the same leg with the roll's strike selector."""
    if leg.roll is None or leg.roll.offset is None:
        return leg
    return dataclasses.replace(leg, offset=leg.roll.offset, delta=None, premium=None,
                               strike=None)  # fmt: skip


def leg_expiry(leg: Leg, underlying: str, moment: pd.Timestamp) -> date:
    """Return the expiry date ``leg`` asks for, counted from ``moment`` (after its close)."""
    from datetime import datetime

    import pandas as pd

    from velox.calendar import SESSION_CLOSE
    from velox.errors import DataError

    day = moment.date()
    closed = moment >= pd.Timestamp(datetime.combine(day, SESSION_CLOSE)).tz_localize(moment.tz)
    ahead = [
        d
        for d in _expiry_years(underlying, leg.expiry == "weekly", moment.year)
        if d > day or (d == day and not closed)
    ][: leg.nth + 1]
    if len(ahead) <= leg.nth:
        raise DataError(f"no {leg.expiry} expiry #{leg.nth} of {underlying} after {moment}")
    return ahead[leg.nth]


def resolve_legs(
    legs: list[Leg],
    underlying: str,
    at: pd.Timestamp,
    bars: pd.DataFrame,
    *,
    sigma: float,
    rate: float = 0.065,
    tick_size: float = 0.05,
    strikes: int = 40,
) -> list[Position]:
    """Return the contracts ``legs`` select at ``at``, priced on a model chain (labelled model).

    One :func:`velox.options.chain` per expiry at volatility ``sigma`` (``strikes`` steps
    either side of ATM), the strike picked by :func:`velox.options.select_strike` (or the
    absolute ``strike``), the entry premium the chain's price on the tick grid (nearest tick,
    at least one tick). A future's entry price is the carried forward.
    """
    chains: dict[date, pd.DataFrame] = {}
    return [
        _resolve_leg(leg, underlying, at, bars, sigma=sigma, rate=rate, tick_size=tick_size,
                     strikes=strikes, chains=chains)[0]
        for leg in legs
    ]  # fmt: skip


def _resolve_leg(
    leg: Leg,
    underlying: str,
    at: pd.Timestamp,
    bars: pd.DataFrame,
    *,
    sigma: float,
    rate: float,
    tick_size: float,
    strikes: int,
    chains: dict[date, pd.DataFrame],
    expiry: date | None = None,
) -> tuple[Position, pd.DataFrame]:
    """Return the contract ``leg`` selects at ``at`` and the chain it was picked from.

    ``expiry`` fixes the contract's expiry (a roll keeps the rolled leg's); None counts it
    from ``at`` as the leg says. ``chains`` caches one chain per expiry for this moment.
    """
    from velox.options import chain, select_strike
    from velox.types import snap_to_tick

    if expiry is None:
        expiry = leg_expiry(leg, underlying, at)
    if expiry not in chains:
        chains[expiry] = chain(
            underlying, at, expiry=expiry, bars=bars, timeframe="1m", sigma=sigma,
            rate=rate, strikes=strikes,
        )  # fmt: skip
    frame = chains[expiry]
    lot = int(frame["lot_size"].iloc[0])
    if leg.kind == "FUT":
        strike, price = math.nan, float(frame["forward"].iloc[0])
    else:
        if leg.strike is not None:
            rows = frame[(frame["kind"] == leg.kind) & (frame["strike"] == leg.strike)]
            if rows.empty:
                raise ValidationError(
                    f"strike {leg.strike} is not on the {underlying} chain of {expiry} "
                    f"({frame['strike'].min():.0f}..{frame['strike'].max():.0f})"
                )
            row = rows.iloc[0]
        else:
            offset = leg.offset
            if offset is None and leg.delta is None and leg.premium is None:
                offset = 0  # no selector: ATM
            row = select_strike(
                frame, leg.kind, offset=offset, delta=leg.delta, premium=leg.premium
            )
        strike, price = float(row["strike"]), float(row["price"])
    position = Position(
        kind=leg.kind,
        sign=leg.sign,
        strike=strike,
        expiry=expiry,
        qty=leg.lots * lot,
        lots=leg.lots,
        lot_size=lot,
        entry_price=max(snap_to_tick(price, tick_size), tick_size),
        stop_loss=leg.stop_loss,
    )
    return position, frame
