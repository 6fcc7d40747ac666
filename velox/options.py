"""Options: Black-76 and Black-Scholes-Merton prices, implied volatility, Greeks, expiries.

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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import ValidationError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Greeks",
    "black76_price",
    "bsm_greeks",
    "bsm_price",
    "forward_price",
    "greeks",
    "implied_volatility",
    "implied_volatility_bsm",
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
    # Start at the inflection point √(2|x|) of b(s), or near ATM at the Brenner-Subrahmanyam
    # estimate √(2π)·β.
    s = np.maximum(np.sqrt(-2.0 * x), _SQRT_2PI * np.exp(log_beta))
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
        with np.errstate(divide="ignore", invalid="ignore"):
            step = ss - error / slope
        lo_a, hi_a = lo[active], hi[active]
        bisect = np.where(np.isfinite(hi_a), 0.5 * (lo_a + hi_a), 2.0 * lo_a)
        ok = np.isfinite(step) & (step > lo_a) & (step < hi_a)
        hit = np.abs(error) <= 1e-14
        new = np.where(hit, ss, np.where(ok, step, bisect))
        s[active] = new
        done = hit | (np.abs(new - ss) <= 1e-15 * ss)
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
    (Black-76: the forward held fixed, so ``rho = −t·price/100``).
    """

    delta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    vega: NDArray[np.float64]
    theta: NDArray[np.float64]
    rho: NDArray[np.float64]


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
