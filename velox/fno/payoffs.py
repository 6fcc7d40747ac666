"""Payoff diagrams of resolved option positions: P&L over a range of spot prices."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import ValidationError
from velox.fno.legs import Position

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike, NDArray

__all__ = ["payoff", "payoff_plot", "position_value"]

_YEAR_SECONDS = 365.0 * 86_400.0


def _years(start: pd.Timestamp, expiry: object) -> float:
    import pandas as pd

    from velox.calendar import SESSION_CLOSE

    close = pd.Timestamp(datetime.combine(expiry, SESSION_CLOSE)).tz_localize(start.tz)
    return max((close - start).total_seconds() / _YEAR_SECONDS, 0.0)


def position_value(
    position: Position,
    spot: NDArray[np.float64],
    t: float,
    rate: float,
    sigma: float | NDArray[np.float64],
) -> NDArray[np.float64]:
    """Return the signed value (rupees) of one position at ``spot`` with ``t`` years left.

    An option is Black-76 on the carried forward (intrinsic value at ``t == 0``); a future is
    worth its forward. Long positive, short negative.
    """
    from velox.options import black76_price

    forward = spot * np.exp(rate * t)
    if position.kind == "FUT":
        unit = forward
    else:
        unit = np.asarray(black76_price(forward, position.strike, t, rate, sigma, position.kind))
    return position.sign * position.qty * unit


def payoff(
    positions: list[Position],
    spot_range: ArrayLike,
    *,
    at: pd.Timestamp | None = None,
    sigma: float | None = None,
    rate: float = 0.065,
) -> pd.DataFrame:
    """Return the strategy's P&L (rupees, gross of charges) over ``spot_range``.

    ``at_expiry``: on the nearest leg expiry, legs of that expiry at intrinsic value, later
    legs (a calendar's far leg) at the model value of their remaining time (needs ``at`` and
    ``sigma``). ``at_entry`` (when ``at`` and ``sigma`` are given): the model value at the
    entry moment. Both minus what the legs cost at entry (``Position.entry_price``).

    Examples
    --------
    >>> from datetime import date
    >>> from velox.fno import Position
    >>> short_put = Position("PE", -1, 17_000.0, date(2022, 6, 16), 50, 1, 50, 40.0)
    >>> payoff([short_put], [16_900, 17_000, 17_100])["at_expiry"].tolist()
    [-3000.0, 2000.0, 2000.0]
    """
    import pandas as pd

    if not positions:
        raise ValidationError("positions is empty: resolve some legs first (resolve_legs)")
    spots = np.asarray(spot_range, dtype=float)
    if spots.ndim != 1 or spots.size == 0 or np.any(spots <= 0):
        raise ValidationError("spot_range must be a non-empty 1-d range of prices > 0")
    cost = sum(p.sign * p.qty * p.entry_price for p in positions)
    nearest = min(p.expiry for p in positions)
    later = [p for p in positions if p.expiry != nearest]
    if later and (at is None or sigma is None):
        raise ValidationError(
            "legs expire on different dates: give at= and sigma= to value the later legs"
        )
    at_expiry = np.zeros_like(spots)
    for p in positions:
        if p.expiry == nearest:
            at_expiry += position_value(p, spots, 0.0, rate, 0.0)
        else:
            left = _years(at, p.expiry) - _years(at, nearest)
            at_expiry += position_value(p, spots, left, rate, sigma)
    frame = pd.DataFrame({"at_expiry": np.round(at_expiry - cost, 2)}, index=spots)
    if at is not None and sigma is not None:
        now = sum(position_value(p, spots, _years(at, p.expiry), rate, sigma) for p in positions)
        frame["at_entry"] = np.round(now - cost, 2)
    frame.index.name = "spot"
    frame.attrs.update(price_source=positions[0].price_source, expiry=nearest)
    return frame


def payoff_plot(frame: pd.DataFrame):  # noqa: ANN201 - an hvplot/HoloViews object
    """Return an hvplot line chart of a :func:`payoff` frame (P&L against spot, zero line)."""
    import holoviews as hv
    import hvplot.pandas  # noqa: F401 - registers .hvplot

    source = frame.attrs.get("price_source", "model")
    lines = frame.hvplot.line(
        xlabel="spot", ylabel="P&L (₹)", title=f"payoff (entry premiums: {source})", grid=True
    )
    return lines * hv.HLine(0).opts(color="gray", line_dash="dashed")
