"""Options: prices, implied volatility, Greeks, the expiry calendar, option chains.

=============================  ==============================================================
:func:`black76_price`          Black-76 on a forward/future (:func:`bsm_price`: BSM on spot)
:func:`implied_volatility`     Black-76 IV, vectorised, NaN where none fits (``_bsm`` on spot)
:func:`greeks`                 delta, gamma, vega, theta, rho (:func:`bsm_greeks` on spot)
:func:`expiries`               weekly/monthly expiry dates of an index (dated rule table)
:func:`lot_size`               lot of an index's near contracts on a date
:func:`strike_interval`        near-money strike step of an index
:func:`chain`                  a chain of listed strikes: stored option bars or model prices
:func:`select_strike`          a chain row by OTM offset, delta or premium
=============================  ==============================================================

The tables behind the calendar are ``data/options/*.csv``, each row dated and sourced
(``docs/options.md``).

Indian index options (NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, SENSEX) are European and cash
settled, so Black-76 on the forward (the future of the same expiry, or spot carried at the
rate) is the natural model; Black-Scholes-Merton on spot with a continuous dividend yield is
here for stock options and for users who think in spot.

Conventions (every function)
----------------------------
* ``kind`` is ``"CE"`` (call) or ``"PE"`` (put), as the exchanges write it; an array of them
  works too.
* ``t`` is in years (ACT/365: calendar days / 365); ``rate`` and ``sigma`` are annual decimals
  (0.065, 0.14), ``rate`` continuously compounded.
* Inputs broadcast like numpy arrays; the result has the broadcast shape (a 0-d input gives a
  numpy scalar). ``t == 0`` prices at intrinsic value (undiscounted).
* Greeks (:class:`Greeks`) follow the practitioner's units, those of ``py_vollib``: **vega per
  1 volatility point** (σ + 0.01), **theta per calendar day** (the value change as one day of
  ``t`` passes, forward or spot held fixed; negative for a long option, mostly), **rho per 1
  percentage point of rate** (r + 0.01); delta and gamma per 1 rupee of the forward (Black-76)
  or spot (BSM).
* :func:`implied_volatility` returns NaN where no volatility fits (a price below intrinsic
  value, at or above its upper bound — the discounted forward for a call, the discounted strike
  for a put — or a NaN input) and exactly 0.0 for a price equal to intrinsic value.

The implied-volatility solver is vectorised numpy: a bracketed Newton iteration on the
logarithm of the normalised out-of-the-money Black price, written through ``erfcx`` so that
deep out-of-the-money and tiny-``t`` prices neither underflow nor cancel (the transformation
P. Jäckel uses in "Let's Be Rational", 2015). It is checked against ``py_lets_be_rational`` (the
reference implementation of Jäckel's method) in the tests and measured against it in
``bench/options.py``; that package is scalar pure Python, too slow for a chain, hence our own.
"""

from __future__ import annotations

import calendar
import csv
import functools
import logging
import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from velox.calendar import IST
from velox.errors import DataError, ValidationError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike, NDArray

    from velox.instruments import InstrumentMaster
    from velox.store import Store

__all__ = [
    "ExpiryRule",
    "Greeks",
    "black76_price",
    "bsm_greeks",
    "bsm_price",
    "chain",
    "expiries",
    "expiry_exceptions",
    "expiry_rules",
    "forward_price",
    "greeks",
    "implied_volatility",
    "implied_volatility_bsm",
    "lot_size",
    "realised_volatility",
    "select_strike",
    "strike_interval",
]

_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_DAYS_PER_YEAR = 365.0
_MAX_ITERATIONS = 60
#: Volatility × √t beyond which a price is indistinguishable from its upper bound.
_MAX_TOTAL_VOL = 60.0


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _is_call(kind: ArrayLike) -> NDArray[np.bool_]:
    """Return True where ``kind`` is "CE", False where "PE"; anything else is an error."""
    kinds = np.char.upper(np.asarray(kind, dtype=str))
    calls = kinds == "CE"
    bad = ~(calls | (kinds == "PE"))
    if bad.any():
        wrong = np.asarray(kind, dtype=str)[bad].ravel()[0]
        raise ValidationError(f"option kind {wrong!r} must be 'CE' (call) or 'PE' (put)")
    return calls


def _floats(**values: ArrayLike) -> list[NDArray[np.float64]]:
    return [np.asarray(v, dtype=np.float64) for v in values.values()]


def _check_positive(name: str, value: NDArray[np.float64], *, allow_zero: bool = False) -> None:
    """Raise ValidationError where ``value`` is negative (or zero); NaN passes through."""
    bad = value < 0 if allow_zero else value <= 0
    if np.any(bad):
        first = float(value[bad].ravel()[0]) if value.ndim else float(value)
        need = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{name}={first!r} must be {need}")


def _out(value: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return a 0-d result as a numpy scalar, anything else unchanged."""
    return value[()] if value.ndim == 0 else value


def forward_price(
    spot: ArrayLike, t: ArrayLike, rate: ArrayLike, dividend_yield: ArrayLike = 0.0
) -> NDArray[np.float64]:
    """Return the forward ``spot × exp((rate − dividend_yield) × t)`` implied by carry.

    Use it to price an index option off spot when no future of that expiry is at hand; a
    traded future's price is the better forward (it carries the market's dividend view).

    Examples
    --------
    >>> round(float(forward_price(24000.0, 30 / 365, 0.065)), 2)
    24128.56
    """
    spot_a, t_a, rate_a, q_a = _floats(spot=spot, t=t, rate=rate, q=dividend_yield)
    return _out(spot_a * np.exp((rate_a - q_a) * t_a))


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------


def _ndtr(x: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.special import ndtr

    return ndtr(x)


def _undiscounted_black(
    forward: NDArray[np.float64],
    strike: NDArray[np.float64],
    total_vol: NDArray[np.float64],
    calls: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Return the undiscounted Black price for total volatility ``σ√t`` (0 → intrinsic).

    Written as intrinsic value plus the out-of-the-money twin's price (put-call parity), the
    latter through :func:`_log_normalised_otm`, so prices far in the tails keep their digits
    instead of being the difference of two nearly equal terms.
    """
    sign = np.where(calls, 1.0, -1.0)
    intrinsic = np.maximum(sign * (forward - strike), 0.0)
    x = -np.abs(np.log(forward / strike))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        time_value = np.sqrt(forward * strike) * np.exp(_log_normalised_otm(x, total_vol))
    return np.where(total_vol > 0, intrinsic + time_value, intrinsic)


def black76_price(
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    sigma: ArrayLike,
    kind: ArrayLike,
) -> NDArray[np.float64]:
    """Return the Black-76 price of European options on a forward or future.

    ``exp(−rate·t) × [F·N(d1) − K·N(d2)]`` for a call, the mirror for a put, with
    ``d1 = (ln(F/K) + σ²t/2) / (σ√t)``. Arguments broadcast (a chain: arrays of strikes and
    kinds, scalars for the rest); see the module docstring for units.

    Raises
    ------
    velox.errors.ValidationError
        For a forward or strike <= 0, a negative ``t`` or ``sigma``, or a kind not "CE"/"PE".

    Examples
    --------
    >>> import numpy as np
    >>> black76_price(24000.0, np.array([23500.0, 24000.0, 24500.0]), 7 / 365, 0.065, 0.13,
    ...               "CE").round(2)
    array([524.87, 172.16,  27.33])
    """
    forward_a, strike_a, t_a, rate_a, sigma_a = _floats(
        forward=forward, strike=strike, t=t, rate=rate, sigma=sigma
    )
    _check_positive("forward", forward_a)
    _check_positive("strike", strike_a)
    _check_positive("t", t_a, allow_zero=True)
    _check_positive("sigma", sigma_a, allow_zero=True)
    calls = _is_call(kind)
    value = _undiscounted_black(forward_a, strike_a, sigma_a * np.sqrt(t_a), calls)
    return _out(np.exp(-rate_a * t_a) * value)


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    sigma: ArrayLike,
    kind: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """Return the Black-Scholes-Merton price of European options on spot.

    The carry is ``rate − dividend_yield`` (continuous), so this is Black-76 on the forward
    ``spot·exp((rate − dividend_yield)·t)``: one formula, two ways in.

    Examples
    --------
    >>> round(float(bsm_price(100.0, 100.0, 1.0, 0.05, 0.2, "CE")), 6)
    10.450584
    """
    spot_a, t_a, rate_a, q_a = _floats(spot=spot, t=t, rate=rate, q=dividend_yield)
    _check_positive("spot", spot_a)
    return black76_price(forward_price(spot_a, t_a, rate_a, q_a), strike, t_a, rate_a, sigma, kind)


# --------------------------------------------------------------------------------------------
# Implied volatility
# --------------------------------------------------------------------------------------------


def _log_normalised_otm(x: NDArray[np.float64], s: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ln b(x, s): the normalised out-of-the-money Black price, ``x = −|ln(F/K)| ≤ 0``.

    ``b = e^{x/2} N(x/s + s/2) − e^{−x/2} N(x/s − s/2)``. Where ``d1 = x/s + s/2 ≤ 0`` both
    terms are tiny and nearly equal; written through ``erfcx`` it is
    ``½ e^{−x/2 − d2²/2} [erfcx(−d1/√2) − erfcx(−d2/√2)]``, whose logarithm is finite however
    deep out of the money the option is.
    """
    from scipy.special import erfcx

    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = x / s + 0.5 * s
        d2 = d1 - s
        gap = erfcx(-d1 / _SQRT_2) - erfcx(-d2 / _SQRT_2)
        low = -0.5 * x - 0.5 * d2 * d2 + np.log(0.5 * gap)
        high = np.log(np.exp(0.5 * x) * _ndtr(d1) - np.exp(-0.5 * x) * _ndtr(d2))
    return np.where(d1 <= 0, low, high)


def _dlog_normalised_otm(
    x: NDArray[np.float64], s: NDArray[np.float64], log_b: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Return ∂ ln b / ∂s = normalised vega / b = exp(−d2²/2 − x/2) / (√(2π) b)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d2 = x / s - 0.5 * s
        return np.exp(-0.5 * d2 * d2 - 0.5 * x - log_b) / _SQRT_2PI


def _solve_total_vol(x: NDArray[np.float64], log_beta: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return s = σ√t with ln b(x, s) = ln β, for 1-d arrays with 0 < β < e^{x/2}.

    b is increasing in s from 0 to e^{x/2}, so [lo, hi] brackets the root; a Newton step on
    ln b that leaves the bracket is replaced by bisection (doubling while hi is unbounded).
    """
    n = x.size
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    # ln b is increasing and concave in s, so Newton started below the root climbs to it
    # monotonically. Two lower estimates: Brenner-Subrahmanyam √(2π)·β (b ≤ s/√(2π)), and far
    # from the money the root of the exponent of b alone, −x²/(2s²) − s²/8 = ln β.
    with np.errstate(invalid="ignore"):
        far = 4.0 * (-log_beta - np.sqrt(log_beta * log_beta - 0.25 * x * x))
    s = np.fmax(_SQRT_2PI * np.exp(log_beta), np.sqrt(np.where(far > 0, far, 0.0)))
    s = np.clip(s, 1e-8, _MAX_TOTAL_VOL)
    active = np.arange(n)
    for _ in range(_MAX_ITERATIONS):
        xs, ss, target = x[active], s[active], log_beta[active]
        log_b = _log_normalised_otm(xs, ss)
        error = log_b - target
        below = error < 0
        lo[active] = np.where(below, ss, lo[active])
        hi[active] = np.where(below, hi[active], ss)
        slope = _dlog_normalised_otm(xs, ss, log_b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # Far from the money ln b ≈ −x²/(2s²): 1/ln b is nearly linear in s², so Newton
            # on it (Jäckel's lower map) lands close in one or two steps.
            reciprocal = (1.0 / target - 1.0 / log_b) * log_b * log_b / slope
            step = ss - np.where(target < -1.0, reciprocal, error / slope)
        lo_a, hi_a = lo[active], hi[active]
        bisect = np.where(np.isfinite(hi_a), 0.5 * (lo_a + hi_a), 2.0 * lo_a)
        ok = np.isfinite(step) & (step > lo_a) & (step < hi_a)
        hit = np.abs(error) <= 1e-14
        new = np.where(hit, ss, np.where(ok, step, bisect))
        s[active] = new
        # A Newton step of 1e-12·s leaves an error of order 1e-24·s: converged.
        done = hit | (ok & (np.abs(new - ss) <= 1e-12 * ss))
        done |= np.isfinite(hi_a) & ((hi_a - lo_a) <= 4e-16 * hi_a)
        done |= new >= _MAX_TOTAL_VOL
        active = active[~done]
        if active.size == 0:
            break
    return s


def implied_volatility(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    kind: ArrayLike,
) -> NDArray[np.float64]:
    """Return the Black-76 implied volatility of option prices; NaN where none fits.

    ``price`` is the (discounted) option premium. A price equal to intrinsic value gives 0.0;
    below it, at or above the upper bound (``exp(−rate·t)·F`` for a call, ``exp(−rate·t)·K``
    for a put), with ``t == 0`` above intrinsic, or where an input is NaN the result is NaN.
    In-the-money prices are solved through their out-of-the-money twin (put-call parity),
    whose time value carries all the information.

    Raises
    ------
    velox.errors.ValidationError
        For a forward or strike <= 0, a negative ``t``, or a kind not "CE"/"PE".

    Examples
    --------
    >>> import numpy as np
    >>> strikes = np.array([23500.0, 24000.0, 24500.0])
    >>> prices = black76_price(24000.0, strikes, 7 / 365, 0.065, 0.13, "CE")
    >>> implied_volatility(prices, 24000.0, strikes, 7 / 365, 0.065, "CE").round(10)
    array([0.13, 0.13, 0.13])
    """
    price_a, forward_a, strike_a, t_a, rate_a = _floats(
        price=price, forward=forward, strike=strike, t=t, rate=rate
    )
    _check_positive("forward", forward_a)
    _check_positive("strike", strike_a)
    _check_positive("t", t_a, allow_zero=True)
    calls = _is_call(kind)
    price_a, forward_a, strike_a, t_a, rate_a, calls = np.broadcast_arrays(
        price_a, forward_a, strike_a, t_a, rate_a, calls
    )
    shape = price_a.shape
    price_a, forward_a, strike_a, t_a, rate_a, calls = (
        a.ravel() for a in (price_a, forward_a, strike_a, t_a, rate_a, calls)
    )
    undiscounted = price_a * np.exp(rate_a * t_a)
    sign = np.where(calls, 1.0, -1.0)
    intrinsic = np.maximum(sign * (forward_a - strike_a), 0.0)
    upper = np.where(calls, forward_a, strike_a)
    time_value = undiscounted - intrinsic
    root_fk = np.sqrt(forward_a * strike_a)
    x = -np.abs(np.log(forward_a / strike_a))
    out = np.full(price_a.shape, np.nan)
    # A price within a few ulps of intrinsic is intrinsic (it cannot be told apart).
    tolerance = 4 * np.finfo(np.float64).eps * np.maximum(undiscounted, intrinsic)
    at_intrinsic = (np.abs(time_value) <= tolerance) & (undiscounted < upper)
    out[at_intrinsic] = 0.0
    solve = (time_value > tolerance) & (undiscounted < upper) & (t_a > 0)
    if solve.any():
        beta = time_value[solve] / root_fk[solve]
        solvable = beta < np.exp(0.5 * x[solve])
        index = np.flatnonzero(solve)[solvable]
        total_vol = _solve_total_vol(x[index], np.log(beta[solvable]))
        total_vol[total_vol >= _MAX_TOTAL_VOL] = np.nan
        out[index] = total_vol / np.sqrt(t_a[index])
    return _out(out.reshape(shape))


def implied_volatility_bsm(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    kind: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """Return the Black-Scholes-Merton implied volatility (on spot with a dividend yield).

    :func:`implied_volatility` on the carried forward; the same NaN and 0.0 rules apply.

    Examples
    --------
    >>> price = bsm_price(100.0, 100.0, 1.0, 0.05, 0.2, "CE", dividend_yield=0.01)
    >>> round(float(implied_volatility_bsm(price, 100.0, 100.0, 1.0, 0.05, "CE", 0.01)), 12)
    0.2
    """
    spot_a, t_a, rate_a, q_a = _floats(spot=spot, t=t, rate=rate, q=dividend_yield)
    _check_positive("spot", spot_a)
    forward = forward_price(spot_a, t_a, rate_a, q_a)
    return implied_volatility(price, forward, strike, t_a, rate_a, kind)


# --------------------------------------------------------------------------------------------
# Greeks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeks:
    """Option sensitivities, arrays of the broadcast input shape.

    Units: ``delta`` per ₹1 of the underlying (forward for Black-76, spot for BSM), ``gamma``
    per ₹1² of it, ``vega`` per 1 volatility point (σ + 0.01), ``theta`` per calendar day
    (one day of ``t`` passing, the underlying fixed), ``rho`` per 1 percentage point of rate
    (Black-76: the forward held fixed, so ``rho = −t·price/100``). Read them as attributes
    (``g.delta``) or by name (``g["delta"]``, ``dict(g)``).
    """

    delta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    vega: NDArray[np.float64]
    theta: NDArray[np.float64]
    rho: NDArray[np.float64]

    def keys(self) -> tuple[str, ...]:
        """Return the Greeks' names, so ``dict(g)`` and ``g["delta"]`` work as on a mapping."""
        return ("delta", "gamma", "vega", "theta", "rho")

    def __getitem__(self, name: str) -> NDArray[np.float64]:
        if name not in self.keys():
            raise KeyError(f"{name!r}: the Greeks are {', '.join(self.keys())}")
        return getattr(self, name)


def _pdf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _carry_greeks(
    underlying: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    sigma: ArrayLike,
    kind: ArrayLike,
    carry: ArrayLike | None,
) -> Greeks:
    """Greeks of the generalised Black-Scholes model (Haug): carry None means Black-76."""
    s, k, t_a, r, v = _floats(underlying=underlying, strike=strike, t=t, rate=rate, sigma=sigma)
    _check_positive("underlying", s)
    _check_positive("strike", k)
    _check_positive("t", t_a, allow_zero=True)
    _check_positive("sigma", v, allow_zero=True)
    calls = _is_call(kind)
    b = np.float64(0.0) if carry is None else np.asarray(carry, dtype=np.float64)
    sign = np.where(calls, 1.0, -1.0)
    root_t = np.sqrt(t_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(s / k) + (b + 0.5 * v * v) * t_a) / (v * root_t)
        d2 = d1 - v * root_t
        carry_df = np.exp((b - r) * t_a)  # e^{-q t} for BSM, e^{-r t} for Black-76
        df = np.exp(-r * t_a)
        nd1, nd2 = _ndtr(sign * d1), _ndtr(sign * d2)
        delta = sign * carry_df * nd1
        gamma = carry_df * _pdf(d1) / (s * v * root_t)
        vega = s * carry_df * _pdf(d1) * root_t
        decay = -s * carry_df * _pdf(d1) * v / (2 * root_t)
        theta = decay - sign * (b - r) * s * carry_df * nd1 - sign * r * k * df * nd2
        if carry is None:
            price = sign * (s * nd1 - k * nd2) * df
            rho = -t_a * price
        else:
            rho = sign * t_a * k * df * nd2
    degenerate = ~((v > 0) & (t_a > 0))
    if np.any(degenerate):
        # Expired or zero-vol: intrinsic-like step delta, no curvature or time value.
        forward = s if carry is None else s * np.exp(b * t_a)
        itm = sign * (forward - k) > 0
        delta = np.where(degenerate, np.where(itm, sign * carry_df, 0.0), delta)
        gamma = np.where(degenerate, 0.0, gamma)
        vega = np.where(degenerate, 0.0, vega)
        theta = np.where(degenerate, 0.0, theta)
        rho = np.where(degenerate, 0.0, rho)
    return Greeks(
        delta=_out(np.asarray(delta)),
        gamma=_out(np.asarray(gamma)),
        vega=_out(np.asarray(vega) / 100.0),
        theta=_out(np.asarray(theta) / _DAYS_PER_YEAR),
        rho=_out(np.asarray(rho) / 100.0),
    )


def greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    sigma: ArrayLike,
    kind: ArrayLike,
) -> Greeks:
    """Return the Black-76 Greeks (delta, gamma, vega, theta, rho) of options on a forward.

    Units as in :class:`Greeks`: vega per vol point, theta per calendar day, rho per rate
    point (forward fixed), delta and gamma in the forward. At ``t == 0`` or ``sigma == 0``
    delta is the discounted step (±e^{−rt} in the money, 0 out) and the rest are 0.

    Examples
    --------
    >>> g = greeks(24000.0, 24000.0, 7 / 365, 0.065, 0.13, "CE")
    >>> round(float(g.delta), 4), round(float(g.vega), 3), round(float(g.theta), 3)
    (0.503, 13.242, -12.266)
    """
    return _carry_greeks(forward, strike, t, rate, sigma, kind, None)


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    sigma: ArrayLike,
    kind: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
) -> Greeks:
    """Return the Black-Scholes-Merton Greeks on spot with a continuous dividend yield.

    Delta and gamma are in spot; theta holds spot fixed; rho moves the rate with the dividend
    yield fixed. Units as in :class:`Greeks`.

    Examples
    --------
    >>> g = bsm_greeks(100.0, 100.0, 1.0, 0.05, 0.2, "CE")
    >>> round(float(g.delta), 6), round(float(g.rho), 6)
    (0.636831, 0.532325)
    """
    rate_a, q_a = _floats(rate=rate, q=dividend_yield)
    return _carry_greeks(spot, strike, t, rate_a, sigma, kind, rate_a - q_a)


# --------------------------------------------------------------------------------------------
# Expiry calendar, lot sizes, strike intervals (dated tables in data/options/)
# --------------------------------------------------------------------------------------------

#: The dated, sourced tables behind :func:`expiries`, :func:`lot_size` and :func:`strike_interval`.
OPTIONS_DATA = Path(__file__).resolve().parent.parent / "data" / "options"

#: Index underlyings the tables cover.
UNDERLYINGS = ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX")

_WEEKDAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4}


@dataclass(frozen=True, slots=True)
class ExpiryRule:
    """One row of ``data/options/expiry_rules.csv``: the weekdays in force from a date."""

    underlying: str
    exchange: str
    effective_from: date
    weekly_day: int | None  # 0 = Monday; None: no weekly contracts
    monthly_day: int  # the monthly contract expires on the last such weekday
    source: str
    verified: str


def _read_table(name: str) -> list[dict[str, str]]:
    """Return the rows of a ``data/options`` CSV (``#`` lines are its provenance notes)."""
    path = OPTIONS_DATA / name
    if not path.exists():
        raise DataError(f"options table {path} is missing; restore it from git")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and ln[0] != "#"]
    return list(csv.DictReader(lines))


def _weekday(text: str, where: str) -> int | None:
    if not text:
        return None
    try:
        return _WEEKDAYS[text.strip().upper()]
    except KeyError:
        known = ", ".join(_WEEKDAYS)
        raise DataError(f"{where}: weekday {text!r} must be one of {known}") from None


@functools.cache
def expiry_rules() -> dict[str, tuple[ExpiryRule, ...]]:
    """Return the expiry rules by underlying, oldest first (from ``expiry_rules.csv``)."""
    out: dict[str, list[ExpiryRule]] = {}
    for number, row in enumerate(_read_table("expiry_rules.csv"), start=1):
        where = f"expiry_rules.csv row {number}"
        monthly = _weekday(row["monthly_day"], where)
        if monthly is None:
            raise DataError(f"{where}: monthly_day is required")
        rule = ExpiryRule(
            underlying=row["underlying"],
            exchange=row["exchange"],
            effective_from=date.fromisoformat(row["effective_from"]),
            weekly_day=_weekday(row["weekly_day"], where),
            monthly_day=monthly,
            source=row["source"],
            verified=row["verified"],
        )
        out.setdefault(rule.underlying, []).append(rule)
    return {k: tuple(sorted(v, key=lambda r: r.effective_from)) for k, v in out.items()}


def _check_underlying(underlying: str) -> str:
    name = underlying.strip().upper()
    if name.startswith(("NSE:", "BSE:", "NFO:", "BFO:")):
        name = name.split(":", 1)[1]
    name = {"NIFTY 50": "NIFTY", "NIFTY50": "NIFTY", "NIFTY BANK": "BANKNIFTY"}.get(name, name)
    if name not in UNDERLYINGS:
        import difflib

        close = difflib.get_close_matches(name, UNDERLYINGS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(
            f"no expiry calendar for {underlying!r}: known are {', '.join(UNDERLYINGS)}{hint}"
        )
    return name


def _as_date(value: date | datetime | str, name: str) -> date:
    if isinstance(value, datetime):
        return value.astimezone(IST).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValidationError(f"{name}={value!r} is not a date (YYYY-MM-DD)") from None


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _previous_trading_day(day: date, sessions: frozenset[date]) -> date:
    """Return ``day`` or the closest earlier trading day (an expiry on a holiday moves back)."""
    for back in range(15):
        candidate = day - timedelta(days=back)
        if candidate in sessions:
            return candidate
    raise DataError(f"no trading day in the fortnight before {day}; check the NSE calendar")


def _session_dates(start: date, end: date) -> frozenset[date]:
    """Return the dates with a full day session from ``start`` through ``end``: opening at
    09:15 IST and closing at or after 15:30 IST.

    A Muhurat evening session is not an expiry day: NSE moves an expiry that falls on Diwali
    to the previous full session. Nor is a shortened special session such as the Saturday
    DR-site drills of 2024 (closing 12:30): NSE moved the MIDCPNIFTY expiry of the 2024-05-20
    election holiday to Friday 05-17, not to the drill of Saturday 05-18.
    """
    from velox.calendar import SESSION_CLOSE, SESSION_OPEN, sessions

    frame = sessions(start, end)
    opens = frame["open"].dt.tz_convert("Asia/Kolkata").dt.time
    closes = frame["close"].dt.tz_convert("Asia/Kolkata").dt.time
    return frozenset(
        ts.date()
        for ts, at, until in zip(frame.index, opens, closes, strict=True)
        if at == SESSION_OPEN and until >= SESSION_CLOSE
    )


@functools.cache
def expiry_exceptions() -> dict[tuple[str, date], date]:
    """Return the exchange's re-dated expiries, ``(underlying, scheduled) → expiry``.

    From ``data/options/expiry_exceptions.csv``: the dates an exchange circular set, which win
    over the general rule (previous full trading day), e.g. MIDCPNIFTY's 2024-01-22 contracts
    expiring on the full Saturday session of 2024-01-20 (which the rule now gives as well).
    """
    out: dict[tuple[str, date], date] = {}
    for number, row in enumerate(_read_table("expiry_exceptions.csv"), start=1):
        where = f"expiry_exceptions.csv row {number}"
        if not row["source"] or row["verified"] not in {"data", "circular"}:
            raise DataError(f"{where}: every exception needs a source and verified data/circular")
        scheduled = date.fromisoformat(row["scheduled"])
        out[(row["underlying"], scheduled)] = date.fromisoformat(row["expiry"])
    return out


def expiries(
    underlying: str,
    start: date | datetime | str,
    end: date | datetime | str,
    weekly: bool = True,
    *,
    as_of: date | datetime | str | None = None,
) -> list[date]:
    """Return the option expiry dates of an index from ``start`` through ``end`` (inclusive).

    Monthly expiries (the last ``monthly_day`` of each month; quarterly and half-yearly
    contracts are monthly expiries of their months) and, with ``weekly=True``, the weekly ones
    — one per week on ``weekly_day`` where the rule in force has weeklies, none in a monthly
    expiry's week. A day that is not a full NSE trading day (09:15 to 15:30 IST: no Muhurat
    evening, no shortened special session) moves to the previous full trading day, except where
    the exchange set another date (``data/options/expiry_exceptions.csv``). Rules come from
    ``data/options/expiry_rules.csv`` (dated, with the circular behind each change:
    docs/options.md).

    Parameters
    ----------
    underlying
        ``"NIFTY"``, ``"BANKNIFTY"``, ``"FINNIFTY"``, ``"MIDCPNIFTY"``, ``"NIFTYNXT50"`` or
        ``"SENSEX"`` (an ``"NSE:"``/``"NFO:"`` prefix is accepted).
    start, end
        The date span (dates, ISO strings or aware timestamps read in IST).
    weekly
        Include weekly expiries; False gives monthly expiries only.
    as_of
        Schedule the dates as the rules known on this day would (the rule in force on
        ``as_of`` continues for later dates): what an instrument master downloaded that day
        lists, e.g. far NIFTY contracts on Thursdays before the 2025 move to Tuesday. None:
        every date by the rule actually in force for it.

    Raises
    ------
    velox.errors.ValidationError
        For an unknown underlying, ``end`` before ``start``, or a ``start`` before the table's
        first rule for that underlying (the message names it).

    Examples
    --------
    >>> [str(d) for d in expiries("NIFTY", "2024-04-01", "2024-04-30")]
    ['2024-04-04', '2024-04-10', '2024-04-18', '2024-04-25']
    >>> [str(d) for d in expiries("BANKNIFTY", "2025-06-01", "2025-12-31", weekly=False)][:2]
    ['2025-06-26', '2025-07-31']
    """
    name = _check_underlying(underlying)
    first, last = _as_date(start, "start"), _as_date(end, "end")
    if last < first:
        raise ValidationError(f"end={last} is before start={first}")
    rules = list(expiry_rules()[name])
    if first < rules[0].effective_from:
        raise ValidationError(
            f"the expiry table for {name} starts {rules[0].effective_from}; start={first} is "
            f"earlier (add the older rule to {OPTIONS_DATA / 'expiry_rules.csv'})"
        )
    if as_of is not None:
        known = _as_date(as_of, "as_of")
        rules = [r for r in rules if r.effective_from <= known] or rules[:1]
    starts = [r.effective_from for r in rules]

    def rule_for(day: date) -> ExpiryRule:
        """The rule whose span holds the nominal date ``day``."""
        return rules[max(bisect_right(starts, day) - 1, 0)]

    # Nominal dates from a week before ``start`` to five weeks after ``end``, so that holiday
    # shifts and monthly-week exclusions at the edges see their neighbours.
    lo = date(first.year, first.month, 1) - timedelta(days=7)
    hi = last + timedelta(days=38)
    monthly: list[date] = []
    year, month = lo.year, lo.month
    while date(year, month, 1) <= hi:
        month_end = date(year, month, calendar.monthrange(year, month)[1])
        # A month's last week may straddle a rule change: take the weekday of the rule whose
        # span holds its own last-weekday date.
        rules_of_week = sorted(
            {rule_for(month_end - timedelta(days=k)) for k in range(7)},
            key=lambda r: r.effective_from,
        )
        dates = [_last_weekday(year, month, r.monthly_day) for r in rules_of_week]
        fitting = [d for d, r in zip(dates, rules_of_week, strict=True) if rule_for(d) is r]
        monthly.append(fitting[0] if fitting else dates[-1])
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    monthly_weeks = {d - timedelta(days=d.weekday()) for d in monthly}
    nominal_dates = set(monthly)
    if weekly:
        monday = lo - timedelta(days=lo.weekday())
        while monday <= hi:
            if monday not in monthly_weeks:
                for rule in {rule_for(monday + timedelta(days=k)) for k in range(7)}:
                    if rule.weekly_day is None:
                        continue
                    day = monday + timedelta(days=rule.weekly_day)
                    if rule_for(day) is rule and day >= starts[0]:
                        nominal_dates.add(day)
            monday += timedelta(days=7)
    sessions = _session_dates(min(nominal_dates) - timedelta(days=15), max(nominal_dates))
    redated = expiry_exceptions()
    shifted = {redated.get((name, d)) or _previous_trading_day(d, sessions) for d in nominal_dates}
    return sorted(d for d in shifted if first <= d <= last)


@dataclass(frozen=True, slots=True)
class _DatedValue:
    effective_from: date
    value: float
    source: str
    verified: str


@functools.cache
def _dated_table(name: str, column: str) -> dict[str, tuple[_DatedValue, ...]]:
    out: dict[str, list[_DatedValue]] = {}
    for row in _read_table(name):
        item = _DatedValue(
            date.fromisoformat(row["effective_from"]), float(row[column]), row["source"],
            row["verified"],
        )  # fmt: skip
        out.setdefault(row["underlying"], []).append(item)
    return {k: tuple(sorted(v, key=lambda r: r.effective_from)) for k, v in out.items()}


@functools.cache
def _warn_unverified(table: str, underlying: str, since: date) -> None:
    logger.warning(
        "%s for %s from %s is unverified (best recollection, date approximate): check it "
        "against the instrument master; see data/options/%s",
        table.removesuffix(".csv").replace("_", " "),
        underlying,
        since,
        table,
    )


def _dated_lookup(table: str, column: str, underlying: str, on: date | datetime | str) -> float:
    name = _check_underlying(underlying)
    day = _as_date(on, "on")
    rows = _dated_table(table, column).get(name, ())
    index = bisect_right([r.effective_from for r in rows], day) - 1
    if index < 0:
        first = rows[0].effective_from if rows else "never"
        raise ValidationError(
            f"data/options/{table} has no {column} for {name} on {day} (its first row is "
            f"{first}); add the older row"
        )
    row = rows[index]
    if row.verified == "no":
        _warn_unverified(table, name, row.effective_from)
    return row.value


def lot_size(underlying: str, on: date | datetime | str) -> int:
    """Return the lot size (units per lot) of an index's near contracts on a trade date.

    From ``data/options/lot_sizes.csv``. Exchanges let existing contracts keep their lot until
    they expire, so for one listed contract its instrument-master row is authoritative; this
    is for research on dates no master covers. Rows marked unverified log a warning.

    Examples
    --------
    >>> lot_size("NIFTY", "2025-04-08"), lot_size("BANKNIFTY", "2024-04-01")
    (75, 15)
    """
    return int(_dated_lookup("lot_sizes.csv", "lot_size", underlying, on))


def strike_interval(underlying: str, on: date | datetime | str) -> float:
    """Return the strike step of an index's near contracts (NIFTY 50, BANKNIFTY 100 …).

    The finest step listed near the money (``data/options/strike_intervals.csv``): far
    strikes and far expiries are listed at wider steps.

    Examples
    --------
    >>> strike_interval("NIFTY", "2025-04-08"), strike_interval("MIDCPNIFTY", "2025-04-08")
    (50.0, 25.0)
    """
    return _dated_lookup("strike_intervals.csv", "strike_interval", underlying, on)


# --------------------------------------------------------------------------------------------
# Option chains: listed contracts, traded or model prices
# --------------------------------------------------------------------------------------------

#: The label every model-priced chain row carries in ``price_source`` (and ``attrs``).
MODEL_PRICED = "model"
#: The label of a chain row priced from a stored option bar's close.
TRADED = "bars"
_SOURCES = frozenset({"auto", "bars", "model"})

#: India VIX is the 30-day implied volatility of NIFTY options; other indices use realised vol.
_VIX_UNDERLYINGS = frozenset({"NIFTY"})


def _moment(at: date | datetime | str) -> pd.Timestamp:
    """Return ``at`` as an IST timestamp; a bare date means that session's close (15:30 IST)."""
    import pandas as pd

    from velox.calendar import IST_NAME, SESSION_CLOSE

    if isinstance(at, str) and len(at.strip()) == 10:
        at = date.fromisoformat(at.strip())
    if isinstance(at, date) and not isinstance(at, datetime):
        return pd.Timestamp(datetime.combine(at, SESSION_CLOSE)).tz_localize(IST_NAME)
    ts = pd.Timestamp(at)
    if ts.tzinfo is None:
        raise ValidationError(f"as_of={at!r} is naive; give a date or an aware timestamp (IST)")
    return ts.tz_convert(IST_NAME)


def _closed_bars(frame: pd.DataFrame, timeframe: str, at: pd.Timestamp, what: str) -> pd.Series:
    """Return the closes of the bars that had ended by ``at`` (no peeking into a forming bar)."""
    from velox.calendar import bucket_end
    from velox.errors import DataError

    if frame.empty:
        raise DataError(f"no {what} bars given")
    ends = bucket_end(frame.index, timeframe)
    closes = frame["close"][ends <= at]
    if closes.empty:
        raise DataError(f"no {what} bar had closed by {at} (first bar {frame.index[0]})")
    return closes.astype(float)


def realised_volatility(closes: pd.Series, window: int = 20) -> float:
    """Return the annualised close-to-close volatility of the last ``window`` daily returns.

    ``std(ln(close_t / close_{t−1}), ddof=1) × √252`` over one close per IST date (intraday
    closes are reduced to each date's last).
    """
    from velox.errors import DataError

    daily = closes.groupby(closes.index.tz_convert("Asia/Kolkata").date).last()
    returns = np.diff(np.log(daily.to_numpy(dtype=float)))[-window:]
    if len(returns) < window:
        raise DataError(
            f"realised volatility needs {window + 1} daily closes, have {len(daily)}: give more "
            "history or a smaller window="
        )
    return float(np.std(returns, ddof=1) * math.sqrt(252.0))


def chain(
    underlying: str,
    as_of: date | datetime | str,
    *,
    expiry: date | str | int | None = None,
    source: str = "auto",
    bars: pd.DataFrame | None = None,
    timeframe: str = "1d",
    vix: pd.DataFrame | None = None,
    volatility: str = "auto",
    sigma: float | None = None,
    window: int = 20,
    strikes: int | None = 10,
    rate: float = 0.065,
    dividend_yield: float = 0.0,
    skew: float = 0.0,
    smile: float = 0.0,
    master: InstrumentMaster | None = None,
    store: Store | None = None,
) -> pd.DataFrame:
    """Return the option chain of an index at a moment, priced from stored option bars or a model.

    The strikes are the contracts the instrument master lists for that expiry (``master``,
    default the bundled one); where it lists none, a grid of the index's strike step around
    the money. Each row's premium is, with ``source``:

    * ``"bars"``: the close of the contract's last stored bar (at ``timeframe``, looked up by
      its id, e.g. ``NFO:NIFTY25MAY24500CE``) that had ended by ``as_of``, on the same session
      as the underlying's last bar; ``sigma`` and the Greeks are then implied from that traded
      price (Black-76 on the chain's forward). Rows without such a bar are left out.
    * ``"model"``: Black-76 on the forward at a volatility from India VIX (NIFTY), the
      underlying's realised volatility, or ``sigma=``; no traded price is used.
    * ``"auto"`` (default): ``"bars"`` where a row has one, ``"model"`` for the rest.

    Every row says which in ``price_source`` (``"bars"`` or ``"model"``) and ``price_note``;
    ``attrs["price_source"]`` is ``"bars"``, ``"model"`` or ``"mixed"``, ``attrs["model_priced"]``
    is True when any row is model-priced, and ``attrs["rows_from_bars"]`` /
    ``attrs["rows_model"]`` count them.

    Parameters
    ----------
    underlying
        An index of :data:`UNDERLYINGS`.
    as_of
        The moment: an aware timestamp, or a date for that session's close (15:30 IST). Only
        bars (underlying and options) that had ended by then are used.
    expiry
        A date, ``n`` for the n-th expiry after ``as_of`` by the expiry calendar (0 = the next,
        weekly where listed), or None for the next.
    source
        ``"auto"``, ``"bars"`` or ``"model"``, as above. ``"bars"`` needs the master to list the
        expiry and a store holding bars of at least one of its contracts.
    bars, timeframe
        The underlying's OHLC bars (IST bar-start index) at ``timeframe``; None reads
        ``NSE:<underlying>`` from ``store`` (default: the configured store). Option bars are
        read at the same ``timeframe``.
    vix
        India VIX daily bars (close in percent); None reads ``NSE:INDIAVIX`` from ``store``
        when VIX is wanted for model rows.
    volatility
        For model rows: ``"vix"``, ``"realised"`` (``window`` daily closes), or ``"auto"``: VIX
        for NIFTY when a VIX close exists by ``as_of``, realised otherwise. ``sigma=``
        overrides all.
    strikes
        Strikes either side of the ATM strike (the strike nearest spot), so ``2 × strikes + 1``
        strikes, each as a CE and a PE row where listed; None for every listed strike.
        ``offset`` counts strikes of the chain, so on a master's list it steps over the listed
        strikes, whatever their spacing.
    rate, dividend_yield
        Continuous annual rate for carry and discounting (default 6.5 %, about the 91-day
        T-bill) and the index's dividend yield (default 0). The forward is the close of the
        expiry's future when the master lists it and its bar is stored like the options'
        (never with ``source="model"``, which reads no F&O bars), else spot carried at
        ``rate − dividend_yield``.
    skew, smile
        The documented smile of model rows: ``σ(K) = σ_ATM × (1 + skew·m + smile·m²)`` with
        ``m = ln(K / F)``, floored at 1 % of ``σ_ATM``. ``skew < 0`` lifts downside strikes
        (the usual index put skew); both 0 gives a flat smile.
    master
        The instrument master whose listed contracts make the chain (an
        :class:`~velox.instruments.InstrumentMaster`, e.g. a broker's full download); None is
        :func:`~velox.instruments.load_bundled_master`.
    store
        Where the underlying's bars (when ``bars`` is None), VIX and option bars are read.
        With ``bars`` given and no ``store``, ``"auto"`` reads no option bars (model prices);
        ``"bars"`` then reads them from the configured store.

    Returns
    -------
    pandas.DataFrame
        One row per (strike, kind): ``underlying, expiry, strike, kind, offset`` (strike steps
        from ATM), ``moneyness`` (ATM/ITM/OTM against spot), ``spot, forward, t, sigma, price,
        delta, gamma, vega, theta, rho, lot_size, instrument_id`` (None off the master),
        ``price_at`` (bar start of the close used; NaT for model rows), ``price_source,
        price_note``.

    Examples
    --------
    >>> import pandas as pd
    >>> nifty = pd.read_csv("data/bars/NIFTY_1d_2024_2026.csv", index_col=0, parse_dates=True)
    >>> vix = pd.read_csv("data/bars/INDIAVIX_1d_2025_2026.csv", index_col=0, parse_dates=True)
    >>> c = chain("NIFTY", "2025-09-01", bars=nifty, vix=vix, strikes=2)
    >>> c[["strike", "kind", "moneyness", "price_source"]].head(2).to_dict("records")
    [{'strike': 24550.0, 'kind': 'CE', 'moneyness': 'ITM', 'price_source': 'model'}, \
{'strike': 24550.0, 'kind': 'PE', 'moneyness': 'OTM', 'price_source': 'model'}]
    >>> listed = chain("NIFTY", "2025-05-02", expiry="2025-05-29", bars=nifty, sigma=0.15,
    ...                strikes=1)
    >>> listed[["instrument_id", "price_source"]].head(2).to_dict("records")
    [{'instrument_id': 'NFO:NIFTY25MAY24300CE', 'price_source': 'model'}, \
{'instrument_id': 'NFO:NIFTY25MAY24300PE', 'price_source': 'model'}]
    """
    import pandas as pd

    name = _check_underlying(underlying)
    if source not in _SOURCES:
        raise ValidationError(f"source={source!r} must be 'auto', 'bars' or 'model'")
    moment = _moment(as_of)
    if strikes is not None and strikes < 0:
        raise ValidationError(f"strikes={strikes} must be >= 0 (or None for every listed strike)")
    underlying_given = bars is not None
    if bars is None:
        bars = _stored_bars(f"NSE:{name}", timeframe, moment, store)
    closes = _closed_bars(bars, timeframe, moment, name)
    spot = float(closes.iloc[-1])
    session = closes.index[-1].tz_convert(moment.tz).date()
    expiry_day = _chain_expiry(name, moment, expiry)
    t = _years_to_expiry(expiry_day, moment)

    listed = _listed_contracts(master, name, expiry_day, ("CE", "PE"))
    if listed.empty and (source == "bars" or strikes is None):
        asked = "source='bars'" if source == "bars" else "strikes=None"
        raise DataError(
            f"{asked} needs listed contracts, and the instrument master lists no {name} options "
            f"expiring {expiry_day}; pass master= with a master that does"
        )
    option_store = None
    if source != "model" and not listed.empty:
        option_store = store
        if store is None and (source == "bars" or not underlying_given):
            from velox.store import open_store

            option_store = open_store()

    if listed.empty:
        k, kinds, offsets, ids, lots = _grid_rows(name, spot, strikes, moment.date())
    else:
        k, kinds, offsets, ids, lots = _listed_rows(listed, spot, strikes)

    forward, forward_note = _chain_forward(
        name, expiry_day, spot, t, rate, dividend_yield, master, option_store, timeframe, moment,
        session,
    )  # fmt: skip
    traded, traded_at = _traded_closes(ids, option_store, timeframe, moment, session)
    from_bars = np.isfinite(traded)
    if source == "bars":
        if not from_bars.any():
            raise DataError(
                f"no stored {timeframe} bars of the {len(ids)} listed {name} {expiry_day} "
                f"contracts (e.g. {ids[0]}) had closed by {moment} on {session}; import them "
                f"with `velox data import FILE --symbol {ids[0]} --timeframe {timeframe}`"
            )
        keep = from_bars
        k, kinds, offsets, ids, lots = k[keep], kinds[keep], offsets[keep], ids[keep], lots[keep]
        traded, traded_at, from_bars = traded[keep], traded_at[keep], from_bars[keep]

    vols = np.full(len(k), np.nan)
    prices = np.full(len(k), np.nan)
    model_note = ""
    if not from_bars.all():
        if sigma is not None:
            atm_vol, vol_note = float(sigma), f"σ given: {float(sigma):.4f}"
        else:
            atm_vol, vol_note = _chain_volatility(
                name, moment, closes, vix, volatility, window, store
            )
        m = np.log(k / forward)
        smiled = np.maximum(atm_vol * (1.0 + skew * m + smile * m * m), 0.01 * atm_vol)
        model = ~from_bars
        vols[model] = smiled[model]
        prices[model] = black76_price(forward, k[model], t, rate, vols[model], kinds[model])
        model_note = (
            f"model price (Black-76, {vol_note}, rate {rate:.4f}, dividend yield "
            f"{dividend_yield:.4f}{f', skew {skew}, smile {smile}' if skew or smile else ''}"
            f"{f', {forward_note}' if forward_note else ''}), not a traded price"
        )
    if from_bars.any():
        prices[from_bars] = traded[from_bars]
        vols[from_bars] = implied_volatility(
            traded[from_bars], forward, k[from_bars], t, rate, kinds[from_bars]
        )
    g = greeks(forward, k, t, rate, vols, kinds)
    sign = np.where(kinds == "CE", 1.0, -1.0)
    moneyness = np.where(offsets == 0, "ATM", np.where(sign * (spot - k) > 0, "ITM", "OTM"))
    traded_at = pd.DatetimeIndex(traded_at).tz_localize("UTC").tz_convert(moment.tz)
    bar_note = (
        f"traded price: close of the {timeframe} bar starting "
        + pd.Series(traded_at.strftime("%Y-%m-%d %H:%M IST"), dtype=object)
        + f"; σ and Greeks implied (Black-76, rate {rate:.4f}, "
        + (forward_note or f"forward = spot carried, dividend yield {dividend_yield:.4f}")
        + ")"
    )
    labels = np.where(from_bars, TRADED, MODEL_PRICED)
    frame = pd.DataFrame(
        {
            "underlying": name,
            "expiry": expiry_day,
            "strike": k,
            "kind": kinds,
            "offset": offsets,
            "moneyness": moneyness,
            "spot": spot,
            "forward": forward,
            "t": t,
            "sigma": vols,
            "price": prices,
            "delta": g.delta,
            "gamma": g.gamma,
            "vega": g.vega,
            "theta": g.theta,
            "rho": g.rho,
            "lot_size": lots.astype(int),
            "instrument_id": ids,
            "price_at": traded_at,
            "price_source": labels,
            "price_note": np.where(from_bars, bar_note.to_numpy(dtype=object), model_note),
        }
    )
    n_bars = int(from_bars.sum())
    overall = TRADED if n_bars == len(frame) else MODEL_PRICED if n_bars == 0 else "mixed"
    summary = (
        f"{name} {expiry_day} chain at {moment}: {n_bars} of {len(frame)} rows priced from "
        f"stored {timeframe} option bars, {len(frame) - n_bars} model-priced"
        f"{'' if listed.empty else ' (strikes listed in the instrument master)'}"
    )
    frame.attrs.update(
        model_priced=n_bars < len(frame),
        price_source=overall,
        rows_from_bars=n_bars,
        rows_model=len(frame) - n_bars,
        listed=not listed.empty,
        at=moment,
        note=model_note if n_bars == 0 else summary,
    )
    return frame


def _chain_expiry(name: str, moment: pd.Timestamp, expiry: date | str | int | None) -> date:
    """Return the expiry date :func:`chain` asked for: a date, or the n-th after ``moment``."""
    import pandas as pd

    from velox.calendar import SESSION_CLOSE

    if not (isinstance(expiry, int) or expiry is None):
        return _as_date(expiry, "expiry")
    nth = 0 if expiry is None else expiry
    when = moment.date()
    ahead = [
        d
        for d in expiries(name, when, when + timedelta(days=120 + 35 * nth))
        if pd.Timestamp(datetime.combine(d, SESSION_CLOSE)).tz_localize(moment.tz) > moment
    ]
    if len(ahead) <= nth:
        raise DataError(f"no expiry #{nth} of {name} within the table after {when}")
    return ahead[nth]


def _years_to_expiry(expiry_day: date, moment: pd.Timestamp) -> float:
    """Return ACT/365 years from ``moment`` to the expiry session's close (15:30 IST)."""
    import pandas as pd

    from velox.calendar import SESSION_CLOSE

    expiry_at = pd.Timestamp(datetime.combine(expiry_day, SESSION_CLOSE)).tz_localize(moment.tz)
    seconds = (expiry_at - moment).total_seconds()
    if seconds <= 0:
        raise ValidationError(f"expiry {expiry_day} is not after as_of={moment}")
    return seconds / (_DAYS_PER_YEAR * 86_400.0)


@functools.lru_cache(maxsize=1)
def _bundled_derivatives() -> pd.DataFrame:
    """Return the bundled master's options and futures, built once per process.

    The bundled files do not change while Velox runs, and a backtest asks for a chain per
    entry: rebuilding the master each time would cost more than pricing the chain.
    """
    from velox.instruments import load_bundled_master

    table = load_bundled_master().table
    return table[table["kind"].isin(["CE", "PE", "FUT"])].reset_index(drop=True)


def _listed_contracts(
    master: InstrumentMaster | None, name: str, expiry_day: date, kinds: tuple[str, ...]
) -> pd.DataFrame:
    """Return the master's rows of ``name``'s contracts of ``kinds`` expiring on ``expiry_day``."""
    import pandas as pd

    table = master.table if master is not None else _bundled_derivatives()
    rows = table[
        (table["underlying"] == name)
        & table["kind"].isin(kinds)
        & (table["expiry"] == pd.Timestamp(expiry_day))
    ]
    return rows.sort_values(["strike", "kind"]).reset_index(drop=True)


def _listed_rows(
    listed: pd.DataFrame, spot: float, strikes: int | None
) -> tuple[NDArray[np.float64], NDArray[np.str_], NDArray[np.int_], NDArray[np.object_], NDArray]:
    """Return (strikes, kinds, offsets, ids, lots) of the listed rows around the money.

    ATM is the listed strike nearest spot; ``offset`` is a row's position in the listed
    strikes relative to it, so it steps over the listed strikes whatever their spacing.
    """
    levels = np.unique(listed["strike"].to_numpy(dtype=float))
    atm = int(np.argmin(np.abs(levels - spot)))
    if strikes is not None:
        levels = levels[max(atm - strikes, 0) : atm + strikes + 1]
        atm = min(atm, strikes)
    rows = listed[listed["strike"].isin(levels)]
    k = rows["strike"].to_numpy(dtype=float)
    offsets = np.searchsorted(levels, k) - atm
    return (
        k,
        rows["kind"].to_numpy(dtype=str),
        offsets,
        rows["id"].to_numpy(dtype=object),
        rows["lot_size"].to_numpy(dtype=int),
    )


def _grid_rows(
    name: str, spot: float, strikes: int, day: date
) -> tuple[NDArray[np.float64], NDArray[np.str_], NDArray[np.int_], NDArray[np.object_], NDArray]:
    """Return (strikes, kinds, offsets, ids, lots) of a strike-step grid around the money.

    For expiries no master lists: ATM is the step nearest spot, ids are unknown (None) and
    the lot comes from the dated table.
    """
    step = strike_interval(name, day)
    atm = round(spot / step) * step
    grid = atm + np.arange(-strikes, strikes + 1) * step
    grid = grid[grid > 0]
    k = np.repeat(grid, 2)
    return (
        k,
        np.tile(np.array(["CE", "PE"]), len(grid)),
        np.repeat(np.round((grid - atm) / step).astype(int), 2),
        np.full(len(k), None, dtype=object),
        np.full(len(k), lot_size(name, day)),
    )


def _session_close(
    store: Store, instrument_id: str, timeframe: str, moment: pd.Timestamp, session: date
) -> tuple[float, np.datetime64] | None:
    """Return (close, bar start as UTC datetime64) of the last bar of ``instrument_id`` that had
    ended by ``moment`` on ``session``, or None: a close from an earlier session than the
    underlying's is stale against its spot, so it is not used."""
    import pandas as pd

    from velox.calendar import bucket_end

    start = pd.Timestamp(session).tz_localize(moment.tz)
    frame = store.read_bars(instrument_id, timeframe, start=start, end=moment)
    if frame.empty:
        return None
    ended = (bucket_end(frame.index, timeframe) <= moment) & (frame.index.date == session)
    frame = frame[ended]
    if frame.empty:
        return None
    stamp = frame.index[-1].tz_convert("UTC").tz_localize(None).to_datetime64()
    return float(frame["close"].iloc[-1]), stamp


def _traded_closes(
    ids: NDArray[np.object_],
    store: Store | None,
    timeframe: str,
    moment: pd.Timestamp,
    session: date,
) -> tuple[NDArray[np.float64], NDArray[np.datetime64]]:
    """Return each contract's stored close at ``moment`` (NaN without one) and its bar start."""
    closes = np.full(len(ids), np.nan)
    starts = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    if store is None:
        return closes, starts
    for i, instrument_id in enumerate(ids):
        if instrument_id is None:
            continue
        found = _session_close(store, instrument_id, timeframe, moment, session)
        if found is not None:
            closes[i], starts[i] = found
    return closes, starts


def _chain_forward(
    name: str,
    expiry_day: date,
    spot: float,
    t: float,
    rate: float,
    dividend_yield: float,
    master: InstrumentMaster | None,
    store: Store | None,
    timeframe: str,
    moment: pd.Timestamp,
    session: date,
) -> tuple[float, str]:
    """Return (forward, note): the expiry's future close when stored, else spot carried ("")."""
    if store is not None:
        futures = _listed_contracts(master, name, expiry_day, ("FUT",))
        for instrument_id in futures["id"]:
            found = _session_close(store, instrument_id, timeframe, moment, session)
            if found is not None:
                return found[0], f"forward = {instrument_id} close {found[0]:g}"
    return float(forward_price(spot, t, rate, dividend_yield)), ""


def _stored_bars(
    instrument_id: str, timeframe: str, end: pd.Timestamp, store: Store | None
) -> pd.DataFrame:
    """Return stored bars through ``end`` (``velox.bars`` on the default store)."""
    if store is None:
        import velox

        return velox.bars(instrument_id, timeframe, end=end)
    from velox.errors import DataError

    frame = store.read_bars(instrument_id, timeframe, end=end)
    if frame.empty:
        raise DataError(f"no {timeframe} bars of {instrument_id} stored through {end}")
    return frame


def _chain_volatility(
    name: str,
    moment: pd.Timestamp,
    closes: pd.Series,
    vix: pd.DataFrame | None,
    volatility: str,
    window: int,
    store: Store | None,
) -> tuple[float, str]:
    """Return (ATM volatility, where it came from) for :func:`chain`."""
    from velox.errors import DataError, VeloxError

    if volatility not in {"auto", "vix", "realised"}:
        raise ValidationError(f"volatility={volatility!r} must be 'auto', 'vix' or 'realised'")
    want_vix = volatility == "vix" or (volatility == "auto" and name in _VIX_UNDERLYINGS)
    if want_vix:
        if vix is None:
            try:
                vix = _stored_bars("NSE:INDIAVIX", "1d", moment, store)
            except VeloxError:  # nothing stored (or no store): realised volatility for auto
                if volatility == "vix":
                    raise
                vix = None
        if vix is not None:
            try:
                level = _closed_bars(vix, "1d", moment, "India VIX")
            except DataError:
                if volatility == "vix":
                    raise
            else:
                day = level.index[-1].tz_convert("Asia/Kolkata").date()
                return float(
                    level.iloc[-1]
                ) / 100.0, f"σ from India VIX {level.iloc[-1]:.2f} of {day}"
    daily = realised_volatility(closes, window)
    return daily, f"σ = {window}-day realised volatility {daily:.4f}"


def select_strike(
    chain_frame: pd.DataFrame,
    kind: str,
    *,
    offset: int | None = None,
    delta: float | None = None,
    premium: float | None = None,
) -> pd.Series:
    """Return the chain row of ``kind`` picked by moneyness offset, delta or premium.

    Exactly one of: ``offset`` — strike steps **out of the money** (0 = ATM, 2 = two steps
    OTM: ATM + 2 steps for a CE, ATM − 2 steps for a PE; negative = in the money);
    ``delta`` — the row whose |delta| is nearest (0.25 for a "25-delta" option); ``premium``
    — the row whose price is nearest. The row keeps the chain's ``price_source``.

    Examples
    --------
    >>> import pandas as pd
    >>> nifty = pd.read_csv("data/bars/NIFTY_1d_2024_2026.csv", index_col=0, parse_dates=True)
    >>> c = chain("NIFTY", "2025-09-01", bars=nifty, sigma=0.12, strikes=5)
    >>> float(select_strike(c, "PE", offset=2)["strike"])
    24550.0
    """
    chosen = [x is not None for x in (offset, delta, premium)]
    if sum(chosen) != 1:
        raise ValidationError("select_strike takes exactly one of offset=, delta=, premium=")
    rows = chain_frame[chain_frame["kind"] == str(kind).upper()]
    if rows.empty:
        raise ValidationError(f"the chain has no {kind!r} rows; kind must be 'CE' or 'PE'")
    if offset is not None:
        steps = rows["offset"] if str(kind).upper() == "CE" else -rows["offset"]
        hit = rows[steps == offset]
        if hit.empty and steps.min() < offset < steps.max():
            raise ValidationError(
                f"the chain has no {str(kind).upper()} row at offset {offset}: not listed, or "
                "(source='bars') no stored bar priced it; pick another offset or source='auto'"
            )
        if hit.empty:
            raise ValidationError(
                f"offset {offset} is outside the chain (offsets {int(steps.min())}.."
                f"{int(steps.max())}); build it with more strikes="
            )
        return hit.iloc[0]
    if delta is not None:
        return rows.loc[(rows["delta"].abs() - abs(delta)).abs().idxmin()]
    return rows.loc[(rows["price"] - float(premium)).abs().idxmin()]
