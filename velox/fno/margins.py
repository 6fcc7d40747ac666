"""A SPAN-like margin estimate for a portfolio of index option and future positions.

Not the exchange's SPAN: NSE's clearing corporation publishes risk-parameter files (price scan
ranges, volatility scan ranges, the short-option minimum, calendar-spread charges) and brokers
add exposure margin on top; this module reproduces the *shape* of that computation with a few
documented parameters so research can size positions and compare structures, e.g. a short
straddle against the same strikes hedged into an iron condor (docs/options.md, "Margin").

1. **Scanning risk**: revalue the whole portfolio (Black-76, same time to expiry) on a grid of
   underlying moves (7 steps across ± ``price_move``) × volatility moves (−, 0, + ``vol_move``
   in absolute vol points), plus two extreme moves (± 2 × ``price_move``) of which
   ``extreme_weight`` (35 %, as SPAN) counts. The worst loss is the scanning risk; since the
   portfolio is revalued as a whole, a bought wing offsets its sold neighbour (hedge benefit).
2. **Exposure margin**: ``exposure_rate`` × spot × the net short option quantity of each
   kind and expiry (bought options of the same kind and expiry offset sold ones), plus
   ``exposure_rate`` × forward × the absolute net future quantity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import ValidationError
from velox.fno.legs import Position
from velox.fno.payoffs import _years, position_value

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MarginEstimate", "margin"]


@dataclass(frozen=True)
class MarginEstimate:
    """A margin estimate (rupees): ``span`` (scanning risk) + ``exposure`` = ``total``.

    ``scenarios`` holds every scenario (price move, vol move, weight, weighted loss); the
    worst row is the one behind ``span``.
    """

    span: float
    exposure: float
    scenarios: pd.DataFrame

    @property
    def total(self) -> float:
        """Return span + exposure margin."""
        return round(self.span + self.exposure, 2)


def margin(
    positions: list[Position],
    spot: float,
    *,
    at: pd.Timestamp,
    sigma: float,
    rate: float = 0.065,
    price_move: float = 0.08,
    vol_move: float = 0.04,
    extreme_weight: float = 0.35,
    exposure_rate: float = 0.02,
) -> MarginEstimate:
    """Return a SPAN-like margin estimate of ``positions`` with the index at ``spot``.

    Parameters
    ----------
    positions
        Resolved legs (:func:`velox.fno.resolve_legs`, or built by hand).
    spot, at, sigma, rate
        The market the portfolio is revalued from: index level, moment (for time to each
        expiry), the model volatility and rate.
    price_move, vol_move
        Scan ranges: the underlying moves by up to ± ``price_move`` (fraction), volatility by
        ± ``vol_move`` (absolute: 0.04 = 4 vol points).
    extreme_weight
        The share of the ± 2 × ``price_move`` scenarios' loss that counts.
    exposure_rate
        Exposure margin as a fraction of notional (spot × net short quantity).

    Examples
    --------
    >>> import pandas as pd
    >>> from datetime import date
    >>> from velox.fno import Position, margin
    >>> at = pd.Timestamp("2022-06-13 09:20", tz="Asia/Kolkata")
    >>> short = [Position(k, -1, 15_800.0, date(2022, 6, 16), 50, 1, 50, 100.0)
    ...          for k in ("CE", "PE")]
    >>> m = margin(short, 15_800.0, at=at, sigma=0.2)
    >>> m.span > 0, m.exposure
    (True, 31600.0)
    """
    import pandas as pd

    if not positions:
        raise ValidationError("positions is empty: nothing to margin")
    for name, value in (("spot", spot), ("sigma", sigma), ("price_move", price_move)):
        if not value > 0:
            raise ValidationError(f"{name}={value!r} must be > 0")
    if vol_move < 0 or not 0 <= extreme_weight <= 1 or exposure_rate < 0:
        raise ValidationError("vol_move and exposure_rate must be >= 0, extreme_weight in [0, 1]")
    times = [_years(at, p.expiry) for p in positions]
    moves = [(m, v, 1.0) for m in np.linspace(-price_move, price_move, 7) for v in (-1, 0, 1)]
    moves += [(-2 * price_move, 0, extreme_weight), (2 * price_move, 0, extreme_weight)]
    base = sum(
        float(position_value(p, np.array(spot), t, rate, sigma))
        for p, t in zip(positions, times, strict=True)
    )
    rows = []
    for move, vol_step, weight in moves:
        shocked_sigma = max(sigma + vol_step * vol_move, 1e-4)
        value = sum(
            float(position_value(p, np.array(spot * (1 + move)), t, rate, shocked_sigma))
            for p, t in zip(positions, times, strict=True)
        )
        rows.append(
            {
                "price_move": float(move),
                "vol_move": vol_step * vol_move,
                "weight": weight,
                "loss": round(weight * (base - value), 2),
            }
        )
    scenarios = pd.DataFrame(rows)
    span = max(0.0, float(scenarios["loss"].max()))

    exposure = 0.0
    groups: dict[tuple[str, object], int] = {}
    for p in positions:
        groups[(p.kind, p.expiry)] = groups.get((p.kind, p.expiry), 0) + p.sign * p.qty
    for (kind, expiry), net in groups.items():
        if kind == "FUT":
            forward = spot * np.exp(rate * _years(at, expiry))
            exposure += exposure_rate * forward * abs(net)
        elif net < 0:
            exposure += exposure_rate * spot * -net
    return MarginEstimate(round(span, 2), round(exposure, 2), scenarios)
