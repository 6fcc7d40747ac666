"""Option contracts and their prices for an engine replay of multi-leg strategies.

An engine replay trades only instruments whose bars are in its feed and whose instrument
rows it can look up, but a basket picks its strikes at entry. :func:`option_feed` therefore
lists, for each session, the contracts any entry that day could pick — ``strikes`` steps
beyond the session's range of the underlying, for the next ``expiries`` expiries of the
expiry calendar — and gives each one bars and an instrument row (lot size from the dated
table, freeze quantity from the dated table or ``freeze_qty=``). Hand ``feed.bars`` with the
underlying's bars to :func:`velox.replay` and ``feed.lookup()`` as its instruments.

Prices: stored option bars where the store has the contract (``price_source == "bars"``),
else **model bars** built from the underlying's 1-minute bars exactly as
:func:`velox.fno.backtest_basket` prices a leg: Black-76 on the forward carried at ``rate``,
one volatility per session (``sigma=``, or the ``window``-day realised volatility of the days
before it), on the 0.05 grid. A model bar's close is the model price at the bar's end (the
underlying's close); its open is the previous bar's close (the session's first bar: the
underlying's open at the bar's start), its high and low the larger and smaller of the two. So
an order placed when a bar closes fills at the price the strategy saw at that close, as in the
research backtester. Every contract row says where its prices came from.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import DataError, ValidationError
from velox.fno.basket import _daily_vol, _freeze, _path_prices, option_instrument_id
from velox.fno.legs import Position, _expiry_years

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store
    from velox.types import Instrument

logger = logging.getLogger(__name__)

__all__ = ["OptionFeed", "option_feed"]


@dataclass(frozen=True)
class OptionFeed:
    """What :func:`option_feed` returns: option bars, instrument rows and what they are.

    ``bars``: ``{(instrument_id, timeframe): DataFrame}`` ready for :func:`velox.replay`.
    ``instruments``: the contracts' :class:`~velox.types.Instrument` rows. ``contracts``: one
    row per contract and session (``instrument_id, kind, strike, expiry, date, sigma,
    price_source``). ``price_source``: ``"model"`` if any contract is model-priced, else
    ``"bars"``; ``model_priced`` says the same as a flag.
    """

    bars: dict[tuple[str, str], pd.DataFrame]
    instruments: dict[str, Instrument]
    contracts: pd.DataFrame
    price_source: str
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def model_priced(self) -> bool:
        """Return True if any contract's prices come from the model, not traded bars."""
        return self.price_source == "model"

    def lookup(
        self, fallback: Callable[[str], Instrument] | Mapping[str, Instrument] | None = None
    ) -> Callable[[str], Instrument]:
        """Return an instrument lookup: these contracts first, then ``fallback`` (default the
        bundled instrument master, for the underlying)."""
        if fallback is None:
            from velox.modes import default_instruments

            fallback = default_instruments()
        other = fallback.__getitem__ if isinstance(fallback, Mapping) else fallback
        own = self.instruments

        def get(instrument_id: str) -> Instrument:
            found = own.get(instrument_id)
            return found if found is not None else other(instrument_id)

        return get


def _session_expiries(underlying: str, day: date, weekly: bool, n: int) -> list[date]:
    """Return the next ``n`` expiries on or after ``day`` (an expiry day is tradable until
    its close, so it counts)."""
    ahead = [
        d
        for year in (day.year, day.year + 1)
        for d in _expiry_years(underlying, weekly, year)
        if d >= day
    ]
    if len(ahead) < n:
        raise DataError(
            f"the expiry calendar lists fewer than {n} {underlying} expiries from {day}"
        )
    return ahead[:n]


def option_feed(
    bars: pd.DataFrame,
    *,
    underlying: str = "NIFTY",
    start: date | str | None = None,
    end: date | str | None = None,
    strikes: int = 5,
    expiries: int = 1,
    weekly: bool = True,
    sigma: float | None = None,
    window: int = 20,
    rate: float = 0.065,
    freeze_qty: int | None = None,
    option_bars: Store | None = None,
    tick_size: float = 0.05,
) -> OptionFeed:
    """Return the option contracts a replay of ``start``..``end`` may trade, with their bars.

    Parameters
    ----------
    bars
        The underlying index's 1-minute bars (IST bar-start index, ``open``/``high``/``low``/
        ``close``), with at least ``window`` + 1 sessions before ``start`` when ``sigma`` is
        None. The same bars :func:`velox.fno.backtest_basket` takes.
    strikes
        Strike steps listed beyond the session's low and high (a leg ``offset`` of up to this
        many steps from any ATM of the day is then in the feed).
    expiries, weekly
        How many of the next expiries to list (weekly ones where listed, else monthly).
    sigma, window, rate
        The model's volatility (default: realised over ``window`` days before each session,
        as the backtester's), and the continuous rate for carry and discounting.
    freeze_qty
        Units per order the exchange accepts; default the dated table
        ``data/instruments/freeze_quantities.csv`` (an error before its first row).
    option_bars
        A store holding traded option bars (``NFO:<Kite symbol>`` ids, ``1m``): contracts found
        there are priced from them, the others on the model.

    Examples
    --------
    >>> import pandas as pd
    >>> nifty = pd.read_csv("data/bars/NIFTY_1m_2021_2022.csv.gz", index_col=0,
    ...                     parse_dates=True)
    >>> feed = option_feed(nifty, start="2022-06-13", end="2022-06-13", strikes=2,
    ...                    sigma=0.15, freeze_qty=1_800)
    >>> feed.price_source, sorted(feed.instruments)[0]
    ('model', 'NFO:NIFTY2261615550CE')
    """
    import pandas as pd

    from velox.options import _check_underlying, lot_size, strike_interval
    from velox.types import Instrument, InstrumentKind

    name = _check_underlying(underlying)
    if strikes < 0 or expiries < 1:
        raise ValidationError(f"strikes={strikes} must be >= 0 and expiries={expiries} >= 1")
    if not isinstance(bars.index, pd.DatetimeIndex) or bars.index.tz is None:
        raise ValidationError("bars needs a tz-aware DatetimeIndex of 1-minute bar starts (IST)")
    bars = bars.tz_convert("Asia/Kolkata").sort_index()
    minute = pd.Timedelta(minutes=1)
    dates = bars.index.date
    days = np.array(sorted(set(dates)))
    closes = bars["close"].groupby(dates).last().reindex(days).to_numpy(dtype=float)
    vols = np.full(len(days), float(sigma)) if sigma is not None else _daily_vol(closes, window)
    first = pd.Timestamp(start).date() if start is not None else days[0]
    last = pd.Timestamp(end).date() if end is not None else days[-1]
    exchange = "BFO" if name == "SENSEX" else "NFO"

    pieces: dict[str, list[pd.DataFrame]] = {}
    instruments: dict[str, Instrument] = {}
    rows: list[dict[str, object]] = []
    for i, day in enumerate(days):
        if not first <= day <= last:
            continue
        if math.isnan(vols[i]):
            logger.info("no option bars on %s: no %d-day volatility before it", day, window)
            continue
        session = bars[dates == day]
        starts = session.index
        ends = starts + minute
        spot = session["close"].to_numpy(dtype=float)
        step = strike_interval(name, day)
        low = math.floor(float(session["low"].min()) / step) - strikes
        high = math.ceil(float(session["high"].max()) / step) + strikes
        lot = lot_size(name, day)
        freeze = _freeze(name, day, freeze_qty)
        for expiry in _session_expiries(name, day, weekly, expiries):
            for k in range(low, high + 1):
                strike = float(k * step)
                for kind in ("CE", "PE"):
                    iid = option_instrument_id(name, kind, expiry, strike)
                    pos = Position(kind, -1, strike, expiry, lot, 1, lot, 0.0)
                    frame, source = _contract_bars(
                        pos, session, starts, ends, spot, float(vols[i]), rate, tick_size,
                        option_bars, name,
                    )  # fmt: skip
                    pieces.setdefault(iid, []).append(frame)
                    rows.append({
                        "instrument_id": iid, "kind": kind, "strike": strike,
                        "expiry": expiry, "date": day, "sigma": float(vols[i]),
                        "price_source": source,
                    })  # fmt: skip
                    if iid not in instruments:
                        instruments[iid] = Instrument(
                            iid, exchange, iid.split(":", 1)[1], InstrumentKind(kind),
                            tick_size=tick_size, lot_size=lot, name=name, underlying=name,
                            expiry=expiry, strike=strike, freeze_qty=freeze,
                            segment=f"{exchange}-OPT",
                        )  # fmt: skip
    if not rows:
        raise DataError(f"no session between {first} and {last} could be priced")
    contracts = pd.DataFrame(rows)
    source = "model" if (contracts["price_source"] == "model").any() else "bars"
    contracts.attrs.update(price_source=source, model_priced=source == "model")
    out = {(iid, "1m"): pd.concat(parts) for iid, parts in pieces.items()}
    settings = {
        "underlying": name, "strikes": strikes, "expiries": expiries, "weekly": weekly,
        "sigma": sigma, "window": window, "rate": rate, "freeze_qty": freeze_qty,
    }  # fmt: skip
    return OptionFeed(out, instruments, contracts, source, settings)


def _contract_bars(
    pos: Position,
    session: pd.DataFrame,
    starts: pd.DatetimeIndex,
    ends: pd.DatetimeIndex,
    spot: np.ndarray,
    sigma: float,
    rate: float,
    tick: float,
    option_bars: Store | None,
    underlying: str,
) -> tuple[pd.DataFrame, str]:
    """Return one contract's 1-minute bars over one session, and where they came from."""
    import pandas as pd

    if option_bars is not None:
        iid = option_instrument_id(underlying, pos.kind, pos.expiry, pos.strike)
        stored = option_bars.read_bars(iid, "1m", starts[0], starts[-1])
        if not stored.empty:
            return stored, "bars"
    close, _, _, _ = _path_prices(
        pos, ends, spot, sigma, rate, tick, None, starts, underlying, "1m"
    )
    opening, _, _, _ = _path_prices(
        pos, starts[:1], session["open"].to_numpy(dtype=float)[:1], sigma, rate, tick, None,
        starts[:1], underlying, "1m",
    )  # fmt: skip
    open_ = np.concatenate([opening, close[:-1]])
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close),
            "low": np.minimum(open_, close),
            "close": close,
            "volume": 0.0,
        },
        index=starts,
    )
    return frame, "model"
