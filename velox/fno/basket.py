"""The basket backtester: multi-leg option strategies entered and exited as one basket.

:func:`backtest_basket` replays an index's intraday bars day by day. At the entry time every
leg is resolved on a model-priced chain (:func:`velox.fno.resolve_legs`) and entered together;
then at each later bar close the basket is marked to market, per-leg stops, per-leg rolls
(:class:`velox.fno.Roll`: a tested leg closed and replaced at a new strike) and the combined
stop-loss/target are checked, and at the exit time (that day, or on the expiry day) what is
left is squared off or settled at intrinsic value. Charges come from :mod:`velox.costs`, one
contract note per leg and trade date, orders split at the exchange freeze quantity.

Conventions
-----------
* Bars are labelled by their start; a price "at 09:20" is the close of the bar that ended at
  09:20 (the 09:19 bar of 1-minute data). Decisions at a bar close fill at that close: a stop
  fills at the price of the bar that crossed it, not at the stop level (no intrabar path).
* Option prices are Black-76 on the forward carried from the index at ``rate``, at one
  volatility per trade (``sigma=``, or the annualised ``window``-day close-to-close volatility
  of the days *before* the entry day: causal), on the 0.05 tick grid (nearest, at least one
  tick). They are **model prices**: every output says ``price_source == "model"`` unless the
  leg's prices came from ``option_bars`` (``"bars"``).
* P&L is in rupees, gross of charges unless the column says ``net``; combined stop-loss and
  target act on the basket's gross mark-to-market P&L.
* Settlement (``exit="settle"``): legs of the expiry day are settled at intrinsic value on the
  day's last close (a proxy for the exchange's final settlement price), with the exercise STT on
  long in-the-money options (:func:`velox.costs.exercised_option_stt`) and no other charge;
  legs of later expiries are squared off at the model price of that close.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from velox.errors import DataError, ValidationError
from velox.fno.legs import Leg, Position, Roll, resolve_legs

if TYPE_CHECKING:
    import pandas as pd

    from velox.costs import BrokerageModel
    from velox.store import Store

    #: Where traded option prices come from: a store of option bars, or bars by contract.
    OptionBars: TypeAlias = Store | Mapping[tuple[date, float, str], pd.DataFrame]

logger = logging.getLogger(__name__)

__all__ = [
    "CHARGE_KINDS",
    "BasketResult",
    "backtest_basket",
    "option_instrument_id",
    "split_order",
]

#: The charge columns of every result, in contract-note order (``exercise_stt`` separate).
CHARGE_KINDS = ("brokerage", "stt", "exercise_stt", "exchange", "sebi", "stamp", "gst")
_YEAR_SECONDS = 365.0 * 86_400.0


def split_order(qty: int, lot_size: int, freeze_qty: int) -> list[int]:
    """Return the order quantities ``qty`` goes out as: whole lots, none above ``freeze_qty``.

    An F&O order above the exchange freeze quantity is rejected, so a larger position is sent
    as several orders of the largest whole number of lots within the limit, then the rest.

    Examples
    --------
    >>> split_order(2_600, 65, 1_800)  # 40 lots of 65; at most 27 lots (1,755) per order
    [1755, 845]
    """
    from velox.oms import split_at_freeze  # the engine splits a basket's legs the same way

    return split_at_freeze(qty, lot_size, freeze_qty)


@dataclass(frozen=True)
class BasketResult:
    """What a basket backtest returns: legs, strategy trades, Greeks over time (DataFrames).

    ``legs``: one row per trade and contract held (strategy ``leg``, ``roll`` 0 for the
    contract entered, k for the k-th replacement a :class:`velox.fno.Roll` opened; contract,
    entry/exit time and price, exit reason — ``"rolled"`` for a contract a roll closed —
    orders per side, gross ``pnl``, each charge kind, ``charges``, ``net_pnl``,
    ``price_source``). ``trades``: one row per basket (entry spot and volatility, exit reason,
    ``rolls``, ``pnl``, ``charges``, ``net_pnl``). ``greeks``: the basket's delta, gamma, vega,
    theta (Greek × signed quantity: delta in units of the index per rupee of the forward, vega in
    rupees per volatility point, theta in rupees per calendar day) at each bar close while it
    was open; a leg priced from traded bars at the implied volatility of each close.
    """

    legs: pd.DataFrame
    trades: pd.DataFrame
    greeks: pd.DataFrame
    price_source: str
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def charges(self) -> pd.Series:
        """Return the total of each charge kind over the run (rupees)."""
        return self.legs[list(CHARGE_KINDS)].sum()

    @property
    def pnl(self) -> float:
        """Return the run's net P&L (gross P&L of every leg minus every charge)."""
        return float(self.legs["net_pnl"].sum())

    def by_leg(self, rolls: bool = False) -> pd.DataFrame:
        """Return gross P&L, charges and net P&L summed per leg of the strategy.

        A rolled leg's contracts (the one it entered and each replacement) count towards
        their strategy leg; ``rolls=True`` keeps them apart, indexed by ``(leg, roll)``.
        """
        cols = ["pnl", *CHARGE_KINDS, "charges", "net_pnl"]
        return self.legs.groupby(["leg", "roll"] if rolls else "leg")[cols].sum()


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _clock(text: str, name: str) -> time:
    try:
        return time.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}={text!r} must be a time of day like '09:20'") from None


def _daily_vol(closes: np.ndarray, window: int) -> np.ndarray:
    """Return, per day, the annualised vol of the ``window`` daily log returns before it."""
    returns = np.diff(np.log(closes))  # returns[k]: day k → day k + 1
    out = np.full(len(closes), np.nan)
    for i in range(window + 1, len(closes)):
        out[i] = np.std(returns[i - 1 - window : i - 1], ddof=1) * math.sqrt(252.0)
    return out


def _snap(prices: np.ndarray, tick: float) -> np.ndarray:
    """Return prices on the tick grid (nearest), at least one tick, rounded to its decimals."""
    decimals = max(0, -int(math.floor(math.log10(tick))) + 1)
    return np.maximum(np.round(np.round(prices / tick) * tick, decimals), tick)


def _freeze(underlying: str, day: date, freeze_qty: int | None) -> int:
    if freeze_qty is not None:
        if freeze_qty < 1:
            raise ValidationError(f"freeze_qty={freeze_qty} must be >= 1 unit")
        return freeze_qty
    from velox.instruments import FREEZE_PATH, freeze_quantities_on

    limits = freeze_quantities_on(day)
    if underlying not in limits:
        raise ValidationError(
            f"{FREEZE_PATH.name} has no freeze quantity for {underlying} on {day}: pass "
            "freeze_qty= (units) or add a dated row"
        )
    return limits[underlying]


# --------------------------------------------------------------------------------------------
# One basket
# --------------------------------------------------------------------------------------------


def _path_prices(
    pos: Position,
    times: pd.DatetimeIndex,
    spot: np.ndarray,
    sigma: float,
    rate: float,
    tick: float,
    option_bars: OptionBars | None,
    bar_starts: pd.DatetimeIndex,
    underlying: str,
    timeframe: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Return (prices, forward, t) of one position at each path time, and their source."""
    import pandas as pd

    from velox.calendar import SESSION_CLOSE
    from velox.options import black76_price

    expiry_at = pd.Timestamp(datetime.combine(pos.expiry, SESSION_CLOSE)).tz_localize(times.tz)
    t = np.maximum((expiry_at - times).total_seconds().to_numpy() / _YEAR_SECONDS, 0.0)
    forward = spot * np.exp(rate * t)
    stored = _stored_bars(option_bars, pos, underlying, timeframe, bar_starts)
    if stored is not None:
        closes = stored["close"].astype(float).reindex(bar_starts).ffill()
        if closes.isna().any():
            raise DataError(
                f"option bars of {pos.kind} {pos.strike} {pos.expiry} start after {bar_starts[0]}"
            )
        return _snap(closes.to_numpy(), tick), forward, t, "bars"
    if pos.kind == "FUT":
        return _snap(forward, tick), forward, t, "model"
    price = black76_price(forward, pos.strike, t, rate, sigma, pos.kind)
    return _snap(np.asarray(price, dtype=float), tick), forward, t, "model"


def option_instrument_id(underlying: str, kind: str, expiry: date, strike: float) -> str:
    """Return the Velox id of an index option or future (``NFO:`` + its Kite symbol).

    Whether ``expiry`` is the monthly one (which changes the symbol) comes from the expiry
    calendar, not a guess.

    Examples
    --------
    >>> option_instrument_id("NIFTY", "CE", date(2022, 6, 16), 15_900.0)
    'NFO:NIFTY2261615900CE'
    >>> option_instrument_id("NIFTY", "PE", date(2022, 6, 30), 15_900.0)
    'NFO:NIFTY22JUN15900PE'
    """
    from velox.fno.legs import _expiry_years
    from velox.instruments import kite_symbol

    monthly = expiry in _expiry_years(underlying, False, expiry.year)
    exchange = "BFO" if underlying == "SENSEX" else "NFO"
    if kind == "FUT":
        return f"{exchange}:{kite_symbol(underlying, 'FUT', expiry)}"
    return f"{exchange}:{kite_symbol(underlying, kind, expiry, strike, monthly=monthly)}"


def _stored_bars(
    option_bars: OptionBars | None,
    pos: Position,
    underlying: str,
    timeframe: str,
    bar_starts: pd.DatetimeIndex,
) -> pd.DataFrame | None:
    """Return the stored bars of ``pos``'s contract over the path, or None (model-priced)."""
    if option_bars is None:
        return None
    if isinstance(option_bars, Mapping):
        return option_bars.get((pos.expiry, pos.strike, pos.kind))
    instrument_id = option_instrument_id(underlying, pos.kind, pos.expiry, pos.strike)
    frame = option_bars.read_bars(instrument_id, timeframe, bar_starts[0], bar_starts[-1])
    return None if frame.empty else frame


def _first(mask: np.ndarray) -> int:
    """Return the index of the first True in ``mask``, or its length when there is none."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else len(mask)


def _leg_charges(
    pos: Position,
    fills: list[tuple[date, int, float, int]],
    settled_intrinsic: float | None,
    expiry: date,
    broker: str | BrokerageModel,
) -> dict[str, float]:
    """Return the charges of one leg: one contract note per trade date of its fills.

    ``fills`` are (date, sign, value, orders); a settled long ITM option adds exercise STT.
    """
    from velox.costs import exercised_option_stt, trade_charges

    segment = "futures" if pos.kind == "FUT" else "options"
    out = dict.fromkeys(CHARGE_KINDS, 0.0)
    for day in sorted({f[0] for f in fills}):
        buy = sum(f[2] for f in fills if f[0] == day and f[1] > 0)
        sell = sum(f[2] for f in fills if f[0] == day and f[1] < 0)
        orders = sum(f[3] for f in fills if f[0] == day)
        note = trade_charges(segment, buy, sell, "NFO", day, broker, orders)
        for kind, value in note.as_dict().items():
            if kind in out:
                out[kind] = round(out[kind] + value, 2)
    if settled_intrinsic and pos.sign > 0 and pos.kind != "FUT":
        out["exercise_stt"] = exercised_option_stt(settled_intrinsic * pos.qty, expiry)
    return out


@dataclass(frozen=True)
class _Run:
    underlying: str
    entry: time
    exit: time | None  # None: settle at expiry
    hold: str
    stop_loss: float | None
    target: float | None
    rate: float
    tick: float
    freeze_qty: int | None
    broker: str | BrokerageModel
    option_bars: OptionBars | None
    timeframe: str
    strikes: int


@dataclass
class _Segment:
    """One contract a strategy leg held: the leg as entered, or a replacement a roll opened.

    Arrays run over the basket's path from ``start`` (the segment's entry bar) to its end.
    """

    pos: Position
    start: int
    prices: np.ndarray
    forward: np.ndarray
    t: np.ndarray
    source: str
    greeks: dict[str, np.ndarray]
    end: int = -1
    reason: str = ""
    roll: int = 0

    @property
    def entry_price(self) -> float:
        return float(self.prices[0])


@dataclass(frozen=True)
class _Path:
    """The bars one basket lives on (path index 0 = the entry bar)."""

    bars: pd.DataFrame
    entry_row: int
    times: pd.DatetimeIndex
    starts: pd.DatetimeIndex
    spot: np.ndarray
    sigma: float

    @property
    def n(self) -> int:
        return len(self.times)


def _segment(run: _Run, path: _Path, pos: Position, start: int, roll: int) -> _Segment:
    """Price ``pos`` from path index ``start`` on (entry at ``start``), with its Greeks."""
    from velox.options import greeks, implied_volatility

    prices, forward, t, source = _path_prices(
        pos, path.times[start:], path.spot[start:], path.sigma, run.rate, run.tick,
        run.option_bars, path.starts[start:], run.underlying, run.timeframe,
    )  # fmt: skip
    # a leg priced from bars enters at its bar's close, a model leg at its chain price
    if source != "bars":
        prices[0] = pos.entry_price
    exposure: dict[str, np.ndarray] = {}
    if pos.kind == "FUT":
        exposure = {name: np.zeros(len(prices)) for name in ("delta", "gamma", "vega", "theta")}
        exposure["delta"][:] = 1.0
    else:
        # A leg priced from its traded bars is taken at the implied volatility of each close
        # (as chain() does), the basket's model σ where no volatility fits that close.
        vol: float | np.ndarray = path.sigma
        if source == "bars":
            implied = implied_volatility(prices, forward, pos.strike, t, run.rate, pos.kind)
            vol = np.where(np.isfinite(implied), implied, path.sigma)
        g = greeks(forward, pos.strike, t, run.rate, vol, pos.kind)
        exposure = {
            name: np.nan_to_num(np.asarray(getattr(g, name), dtype=float))
            for name in ("delta", "gamma", "vega", "theta")
        }
    return _Segment(pos, start, prices, forward, t, source, exposure, roll=roll)


def _tested(roll: Roll, seg: _Segment, spot: np.ndarray) -> np.ndarray:
    """Return, per bar of ``seg``'s path, whether its leg is tested by ``roll``."""
    out = np.zeros(len(seg.prices), dtype=bool)
    strike = seg.pos.strike
    if roll.through is not None:
        out |= (
            (spot >= strike + roll.through)
            if seg.pos.kind == "CE"
            else (spot <= strike - roll.through)
        )
    if roll.delta is not None:
        out |= np.abs(seg.greeks["delta"]) >= roll.delta
    return out


def _offset_strike(frame: pd.DataFrame, kind: str, offset: int, spot: float) -> float | None:
    """Return the strike ``offset`` steps OTM of the ATM nearest ``spot`` on ``frame``'s
    strikes, or None where the chain could answer otherwise (a tie, or near its edge)."""
    levels = np.unique(frame["strike"].to_numpy(dtype=float))
    gaps = np.abs(levels - spot)
    i = int(np.argmin(gaps))
    if len(levels) < 3 or np.sort(gaps)[1] - gaps[i] < 1e-6:
        return None
    j = i + offset if kind == "CE" else i - offset
    if not (0 < i < len(levels) - 1 and 0 < j < len(levels) - 1):
        return None
    return float(levels[j])


def _slot(run: _Run, path: _Path, leg: Leg, first: Position) -> list[_Segment]:
    """Return the contracts one strategy leg held: its entry and the replacements its rolls
    opened, each with its exit bar and reason (before the basket's combined stop/target)."""
    from velox.fno.legs import _replacement, _resolve_leg

    n = path.n
    default = "time" if run.exit is not None else "settled"
    new_leg = _replacement(leg)
    selector_offset = None
    if new_leg.delta is None and new_leg.premium is None and new_leg.strike is None:
        selector_offset = 0 if new_leg.offset is None else new_leg.offset
    segments: list[_Segment] = []
    pos, start = first, 0
    while True:
        seg = _segment(run, path, pos, start, len(segments))
        seg.end, seg.reason = n - 1, default
        if pos.stop_loss is not None:
            level = seg.entry_price * (1.0 - pos.sign * pos.stop_loss)
            later = seg.prices[1:]
            crossed = later >= level if pos.sign < 0 else later <= level
            hit = start + _first(crossed) + 1
            if hit < n:
                seg.end, seg.reason = hit, "leg stop"
        segments.append(seg)
        if leg.roll is None or len(segments) > leg.roll.max_rolls:
            return segments
        tested = _tested(leg.roll, seg, path.spot[start:])
        # not at its own entry, not on or after a leg stop, not on the basket's last bar
        candidates = start + np.flatnonzero(tested[1 : min(seg.end, n - 1) - start]) + 1
        replacement: Position | None = None
        last_frame: pd.DataFrame | None = None
        for r in candidates:
            r = int(r)
            spot = float(path.spot[r])
            if last_frame is not None and selector_offset is not None:
                guess = _offset_strike(last_frame, pos.kind, selector_offset, spot)
                if guess is not None and guess == pos.strike:
                    continue  # the chain would pick the same contract: no roll
            row = path.entry_row + r
            candidate, last_frame = _resolve_leg(
                new_leg, run.underlying, path.times[r], path.bars.iloc[row : row + 1],
                sigma=path.sigma, rate=run.rate, tick_size=run.tick, strikes=run.strikes,
                chains={}, expiry=pos.expiry,
            )  # fmt: skip
            if candidate.strike != pos.strike:
                replacement = candidate
                seg.end, seg.reason = r, "rolled"
                break
        if replacement is None:
            return segments
        pos, start = replacement, seg.end


def _one_basket(
    run: _Run,
    trade: int,
    legs: list[Leg],
    bars: pd.DataFrame,
    ends: pd.DatetimeIndex,
    dates: np.ndarray,
    entry_row: int,
    sigma: float,
) -> tuple[list[dict[str, object]], dict[str, object], pd.DataFrame, int]:
    """Run one basket entered at bar ``entry_row``; return leg rows, the trade, Greeks, exit row."""
    import pandas as pd

    entry_at = ends[entry_row]
    positions = resolve_legs(
        legs, run.underlying, entry_at, bars.iloc[entry_row : entry_row + 1], sigma=sigma,
        rate=run.rate, tick_size=run.tick, strikes=run.strikes,
    )  # fmt: skip
    # The path: every bar close after entry through the exit moment (that day or expiry day).
    last_day = min(p.expiry for p in positions) if run.hold == "expiry" else entry_at.date()
    if run.exit is None:
        stop_row = int(np.flatnonzero(dates == last_day)[-1]) if (dates == last_day).any() else -1
    else:
        exit_at = pd.Timestamp(datetime.combine(last_day, run.exit)).tz_localize(ends.tz)
        stop_row = int(np.searchsorted(ends, exit_at, side="right")) - 1
    if stop_row <= entry_row or dates[stop_row] != last_day:
        raise DataError(f"no bars from {entry_at} through the exit on {last_day}")
    rows = slice(entry_row, stop_row + 1)  # index 0 is the entry bar itself
    path = _Path(
        bars=bars, entry_row=entry_row, times=ends[rows], starts=bars.index[rows],
        spot=bars["close"].to_numpy(dtype=float)[rows], sigma=sigma,
    )  # fmt: skip
    times, spot, n = path.times, path.spot, path.n
    steps = np.arange(n)

    # Each strategy leg on its own first: per-leg stops and rolls depend on that leg's premium,
    # strike and the index only. Then the basket's P&L (closed contracts at their exits, open
    # ones marked), then the combined stop/target on that P&L: every contract open at that
    # bar exits there, and a roll that bar (or later) is not made.
    slots = [_slot(run, path, leg, p) for leg, p in zip(legs, positions, strict=True)]
    basket = np.zeros(n)
    for seg in (s for slot in slots for s in slot):
        held = np.minimum(steps[seg.start :], seg.end) - seg.start
        size = seg.pos.sign * seg.pos.qty
        basket[seg.start :] += size * (seg.prices[held] - seg.entry_price)
    basket_exit, basket_reason = n - 1, None
    stop_hit = n if run.stop_loss is None else _first(basket[1:] <= -run.stop_loss) + 1
    target_hit = n if run.target is None else _first(basket[1:] >= run.target) + 1
    if min(stop_hit, target_hit) < n:  # a bar cannot be both a loss and a gain
        basket_exit = min(stop_hit, target_hit)
        basket_reason = "stop loss" if stop_hit < target_hit else "target"
        for j, slot in enumerate(slots):
            slots[j] = slot = [s for s in slot if s.start < basket_exit]
            last_seg = slot[-1]
            if last_seg.end > basket_exit or (
                last_seg.end == basket_exit and last_seg.reason == "rolled"
            ):
                last_seg.end, last_seg.reason = basket_exit, basket_reason

    leg_rows = []
    exposure = {name: np.zeros(n) for name in ("delta", "gamma", "vega", "theta")}
    final_reasons = []
    for j, slot in enumerate(slots):
        for seg in slot:
            p, e = seg.pos, seg.end
            exit_price = float(seg.prices[e - seg.start])
            settled = None
            if seg.reason == "settled" and p.expiry == last_day:
                s = float(spot[-1])
                if p.kind == "FUT":
                    exit_price = round(s, 2)
                else:
                    exit_price = round(
                        max((s - p.strike) if p.kind == "CE" else (p.strike - s), 0.0), 2
                    )
                settled = exit_price
            elif seg.reason == "settled":
                seg.reason = "time"  # a later expiry: squared off at the model price
            freeze = _freeze(run.underlying, times[seg.start].date(), run.freeze_qty)
            orders = len(split_order(p.qty, p.lot_size, freeze))
            fills = [(times[seg.start].date(), p.sign, p.qty * seg.entry_price, orders)]
            if settled is None:
                fills.append((times[e].date(), -p.sign, p.qty * exit_price, orders))
            charges = _leg_charges(p, fills, settled, p.expiry, run.broker)
            pnl = round(p.sign * p.qty * (exit_price - seg.entry_price), 2)
            total = round(math.fsum(charges.values()), 2)
            leg_rows.append(
                {
                    "trade": trade,
                    "leg": j,
                    "roll": seg.roll,
                    "kind": p.kind,
                    "side": "buy" if p.sign > 0 else "sell",
                    "strike": p.strike,
                    "expiry": p.expiry,
                    "lots": p.lots,
                    "lot_size": p.lot_size,
                    "qty": p.qty,
                    "entry_time": times[seg.start],
                    "entry_price": seg.entry_price,
                    "exit_time": times[e],
                    "exit_price": exit_price,
                    "exit_reason": seg.reason,
                    "orders": orders,
                    "pnl": pnl,
                    **charges,
                    "charges": total,
                    "net_pnl": round(pnl - total, 2),
                    "price_source": seg.source,
                }
            )
            # Greeks while held: a rolled contract up to (not at) its roll bar, where its
            # replacement stands; any other through its exit bar.
            rel = steps[seg.start :]
            open_ = (rel < e) if seg.reason == "rolled" else (rel <= e)
            size = p.sign * p.qty
            for name in exposure:
                exposure[name][seg.start :] += np.where(open_, size * seg.greeks[name], 0.0)
        final_reasons.append(slot[-1].reason)
    last = max(seg.end for slot in slots for seg in slot)
    greek_frame = pd.DataFrame(
        {"trade": trade, **{k: v[: last + 1] for k, v in exposure.items()}},
        index=pd.DatetimeIndex(times[: last + 1], name="timestamp"),
    )
    pnl = round(math.fsum(r["pnl"] for r in leg_rows), 2)
    charges = round(math.fsum(r["charges"] for r in leg_rows), 2)
    sources = [r["price_source"] for r in leg_rows]
    trade_row = {
        "trade": trade,
        "date": times[0].date(),
        "entry_time": times[0],
        "exit_time": times[last],
        "exit_reason": basket_reason
        or ("leg stop" if "leg stop" in final_reasons else final_reasons[0]),
        "spot": float(spot[0]),
        "sigma": sigma,
        "rolls": sum(len(slot) - 1 for slot in slots),
        "pnl": pnl,
        "charges": charges,
        "net_pnl": round(pnl - charges, 2),
        "price_source": "model" if "model" in sources else "bars",
    }
    return leg_rows, trade_row, greek_frame, entry_row + last


# --------------------------------------------------------------------------------------------
# The backtest
# --------------------------------------------------------------------------------------------


def backtest_basket(
    legs: list[Leg],
    bars: pd.DataFrame,
    *,
    underlying: str = "NIFTY",
    entry: str = "09:20",
    exit: str = "15:15",
    hold: str = "day",
    start: date | str | None = None,
    end: date | str | None = None,
    stop_loss: float | None = None,
    target: float | None = None,
    sigma: float | None = None,
    window: int = 20,
    rate: float = 0.065,
    freeze_qty: int | None = None,
    broker: str | BrokerageModel = "zerodha",
    option_bars: OptionBars | None = None,
    timeframe: str = "1m",
    tick_size: float = 0.05,
    strikes: int = 40,
) -> BasketResult:
    """Return the backtest of ``legs`` entered as one basket each day at ``entry``.

    Parameters
    ----------
    legs
        The strategy (:class:`velox.fno.Leg` list, e.g. ``iron_condor(2, 2)``).
    bars
        The underlying index's intraday bars (IST bar-start index, ``close`` column), e.g. the
        bundled ``data/bars/NIFTY_1m_2021_2022.csv.gz``.
    entry, exit
        IST times of day: enter at the close of the bar ending at ``entry``; square off at the
        close of the bar ending at ``exit`` — that day with ``hold="day"``, on the nearest
        leg's expiry day with ``hold="expiry"``. ``exit="settle"`` (``hold="expiry"`` only)
        holds through the expiry day's close and settles at intrinsic value.
    hold
        ``"day"`` (a new basket every session) or ``"expiry"`` (a basket lives until the
        expiry day; the next one is entered on the following session).
    start, end
        Entry dates to test (inclusive); default all the bars allow.
    stop_loss, target
        Combined stop-loss and target in rupees of the basket's gross mark-to-market P&L (a
        loss of ``stop_loss``, a gain of ``target``); per-leg stops are ``Leg.stop_loss``.
    sigma, window, rate
        Model volatility (default: ``window``-day realised volatility before each entry day)
        and the continuous rate for carry and discounting.
    freeze_qty
        Exchange freeze quantity in units; default from ``data/instruments/freeze_quantities.csv``
        on the entry date (an error where the table has no row for the date).
    broker
        Brokerage plan for :func:`velox.costs.trade_charges` (default Zerodha-like).
    option_bars
        Traded option prices: a :class:`velox.store.Store` holding option bars (read at
        ``timeframe`` by :func:`option_instrument_id`, e.g. ``NFO:NIFTY2261615900CE``), or a
        mapping ``(expiry, strike, kind) → bars``. Legs found there are priced from their bar
        closes (``price_source == "bars"``), the rest on the model.

    Examples
    --------
    >>> import pandas as pd
    >>> from velox.fno import backtest_basket, straddle
    >>> nifty = pd.read_csv("data/bars/NIFTY_1m_2021_2022.csv.gz", index_col=0,
    ...                     parse_dates=True)
    >>> res = backtest_basket(straddle("sell"), nifty, start="2022-06-13", end="2022-06-17",
    ...                       stop_loss=3_000, freeze_qty=1_800)
    >>> res.trades["price_source"].unique().tolist()
    ['model']
    """
    import pandas as pd

    from velox.calendar import timeframe_minutes
    from velox.options import _check_underlying

    name = _check_underlying(underlying)
    if not legs:
        raise ValidationError("legs is empty: give at least one Leg")
    if hold not in ("day", "expiry"):
        raise ValidationError(f"hold={hold!r} must be 'day' or 'expiry'")
    settle = exit == "settle"
    if settle and hold != "expiry":
        raise ValidationError("exit='settle' needs hold='expiry' (settlement is on expiry day)")
    for label, value in (("stop_loss", stop_loss), ("target", target)):
        if value is not None and not value > 0:
            raise ValidationError(f"{label}={value!r} must be a positive number of rupees")
    if "close" not in bars.columns or not isinstance(bars.index, pd.DatetimeIndex):
        raise ValidationError("bars must have a DatetimeIndex (bar start, IST) and a close column")
    if bars.index.tz is None:
        raise ValidationError("bars has a naive index: localise it to Asia/Kolkata first")
    if not settle and hold == "day" and _clock(exit, "exit") <= _clock(entry, "entry"):
        raise ValidationError(f"exit={exit!r} must be after entry={entry!r} for hold='day'")
    minutes = timeframe_minutes(timeframe)
    if not minutes:
        raise ValidationError(f"timeframe={timeframe!r} must be intraday ('1m', '5m', …)")
    run = _Run(
        underlying=name, entry=_clock(entry, "entry"),
        exit=None if settle else _clock(exit, "exit"), hold=hold, stop_loss=stop_loss,
        target=target, rate=rate, tick=tick_size,
        freeze_qty=freeze_qty, broker=broker, option_bars=option_bars,
        timeframe=timeframe, strikes=strikes,
    )  # fmt: skip
    bars = bars.tz_convert("Asia/Kolkata").sort_index()
    ends = bars.index + pd.Timedelta(minutes=minutes)
    dates = ends.date
    days = np.array(sorted(set(dates)))
    closes = bars["close"].groupby(dates).last().reindex(days).to_numpy(dtype=float)
    vols = np.full(len(days), float(sigma)) if sigma is not None else _daily_vol(closes, window)
    first = pd.Timestamp(start).date() if start is not None else days[0]
    last = pd.Timestamp(end).date() if end is not None else days[-1]

    leg_rows: list[dict[str, object]] = []
    trade_rows: list[dict[str, object]] = []
    greek_frames: list[pd.DataFrame] = []
    busy_until = -1
    for i, day in enumerate(days):
        if not first <= day <= last or math.isnan(vols[i]):
            continue
        entry_at = pd.Timestamp(datetime.combine(day, run.entry)).tz_localize("Asia/Kolkata")
        row = int(np.searchsorted(ends, entry_at))
        if row >= len(ends) or ends[row] != entry_at or row <= busy_until:
            continue
        try:
            legs_out, trade, greek_frame, exit_row = _one_basket(
                run, len(trade_rows), legs, bars, ends, dates, row, float(vols[i])
            )
        except DataError as exc:
            logger.info("no basket on %s: %s", day, exc)
            continue
        leg_rows += legs_out
        trade_rows.append(trade)
        greek_frames.append(greek_frame)
        if hold == "expiry":  # the next basket starts on the session after the exit day
            busy_until = int(np.flatnonzero(dates == dates[exit_row])[-1])
    if not trade_rows:
        raise DataError(f"no basket could be entered at {entry} between {first} and {last}")
    legs_frame = pd.DataFrame(leg_rows)
    trades = pd.DataFrame(trade_rows).set_index("trade")
    source = "model" if (legs_frame["price_source"] == "model").any() else "bars"
    greeks_frame = pd.concat(greek_frames)
    for frame in (legs_frame, trades, greeks_frame):
        frame.attrs.update(price_source=source, model_priced=source == "model")
    settings = {
        "underlying": name, "entry": entry, "exit": exit, "hold": hold,
        "stop_loss": stop_loss, "target": target, "sigma": sigma, "window": window,
        "rate": rate, "freeze_qty": freeze_qty,
    }  # fmt: skip
    return BasketResult(legs_frame, trades, greeks_frame, source, settings)
