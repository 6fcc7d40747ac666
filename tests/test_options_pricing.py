"""Tests for velox.options pricing, implied volatility and Greeks.

References, all independent of velox: ``vollib`` (Black-76 and BSM prices and analytical
Greeks, same units: vega per vol point, theta per calendar day, rho per rate point),
``lets_be_rational`` (Jäckel's reference implied-volatility solver and his accurate
``black`` for prices far in the tails), put-call parity, and finite differences of the price.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from velox.errors import ValidationError
from velox.options import (
    black76_price,
    bsm_greeks,
    bsm_price,
    forward_price,
    greeks,
    implied_volatility,
    implied_volatility_bsm,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import lets_be_rational
    from vollib.black import black as vollib_black
    from vollib.black.greeks import analytical as black_greeks
    from vollib.black_scholes_merton import black_scholes_merton as vollib_bsm
    from vollib.black_scholes_merton.greeks import analytical as bsm_analytical

FORWARD = 24_000.0
STRIKES = FORWARD * np.exp(np.linspace(-0.4, 0.4, 17))
TIMES = np.array([1 / 365, 7 / 365, 30 / 365, 0.5, 2.0])
VOLS = np.array([0.05, 0.13, 0.35, 0.9])
RATES = np.array([0.0, 0.065])


def _grid():
    k, t, v, r, call = np.meshgrid(STRIKES, TIMES, VOLS, RATES, [True, False], indexing="ij")
    return k.ravel(), t.ravel(), v.ravel(), r.ravel(), np.where(call.ravel(), "CE", "PE")


def _flag(kind: str) -> str:
    return "c" if kind == "CE" else "p"


def test_black76_matches_vollib_over_a_grid():
    k, t, v, r, kind = _grid()
    ours = black76_price(FORWARD, k, t, r, v, kind)
    ref = np.array(
        [
            vollib_black(_flag(c), FORWARD, *row)
            for c, row in zip(kind, zip(k, t, r, v, strict=True), strict=True)
        ]
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-9)


def test_bsm_matches_vollib_with_a_dividend_yield():
    k, t, v, r, kind = _grid()
    spot, q = 2_500.0, 0.012
    ours = bsm_price(spot, k / FORWARD * spot, t, r, v, kind, dividend_yield=q)
    ref = np.array(
        [
            vollib_bsm(_flag(c), spot, kk / FORWARD * spot, tt, rr, vv, q)
            for c, kk, tt, rr, vv in zip(kind, k, t, r, v, strict=True)
        ]
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-9)


def test_put_call_parity():
    k, t, v, r, _ = _grid()
    call = black76_price(FORWARD, k, t, r, v, "CE")
    put = black76_price(FORWARD, k, t, r, v, "PE")
    np.testing.assert_allclose(call - put, np.exp(-r * t) * (FORWARD - k), atol=1e-8)
    spot, q = 100.0, 0.02
    c = bsm_price(spot, 95.0, 0.75, 0.06, 0.3, "CE", q)
    p = bsm_price(spot, 95.0, 0.75, 0.06, 0.3, "PE", q)
    assert c - p == pytest.approx(spot * np.exp(-q * 0.75) - 95.0 * np.exp(-0.06 * 0.75))


def test_forward_price_is_carry():
    assert float(forward_price(100.0, 0.5, 0.06, 0.02)) == pytest.approx(100 * np.exp(0.02))


def test_greeks_match_vollib_analytical():
    k, t, v, r, kind = _grid()
    g = greeks(FORWARD, k, t, r, v, kind)
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        fn = getattr(black_greeks, name)
        ref = np.array(
            [
                fn(_flag(c), FORWARD, kk, tt, rr, vv)
                for c, kk, tt, rr, vv in zip(kind, k, t, r, v, strict=True)
            ]
        )
        np.testing.assert_allclose(getattr(g, name), ref, rtol=1e-9, atol=1e-12, err_msg=name)
    spot, q = 2_500.0, 0.012
    g = bsm_greeks(spot, k / FORWARD * spot, t, r, v, kind, q)
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        fn = getattr(bsm_analytical, name)
        ref = np.array(
            [
                fn(_flag(c), spot, kk / FORWARD * spot, tt, rr, vv, q)
                for c, kk, tt, rr, vv in zip(kind, k, t, r, v, strict=True)
            ]
        )
        np.testing.assert_allclose(getattr(g, name), ref, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", ["CE", "PE"])
def test_greeks_match_finite_differences(kind):
    f, k, t, r, v = 24_100.0, np.array([23_000.0, 24_000.0, 25_500.0]), 20 / 365, 0.065, 0.16

    def price(f=f, t=t, r=r, v=v):
        return black76_price(f, k, t, r, v, kind)

    g = greeks(f, k, t, r, v, kind)
    h = 0.5
    np.testing.assert_allclose(g.delta, (price(f=f + h) - price(f=f - h)) / (2 * h), rtol=1e-6)
    gamma = (price(f=f + h) - 2 * price() + price(f=f - h)) / h**2
    np.testing.assert_allclose(g.gamma, gamma, rtol=1e-4)
    np.testing.assert_allclose(g.vega, (price(v=v + 1e-4) - price(v=v - 1e-4)) / 2e-4 / 100, 1e-6)
    day = 1 / 365
    np.testing.assert_allclose(g.theta, -(price(t=t + 1e-3 * day) - price()) / 1e-3, rtol=1e-3)
    np.testing.assert_allclose(g.rho, (price(r=r + 1e-5) - price(r=r - 1e-5)) / 2e-5 / 100, 1e-6)
    # BSM: delta in spot, theta with spot fixed (the forward moves with the carry).
    s, q = 24_000.0, 0.01
    gb = bsm_greeks(s, k, t, r, v, kind, q)
    bump = (bsm_price(s + h, k, t, r, v, kind, q) - bsm_price(s - h, k, t, r, v, kind, q)) / 2 / h
    np.testing.assert_allclose(gb.delta, bump, rtol=1e-6)
    later = bsm_price(s, k, t - 1e-3 * day, r, v, kind, q) - bsm_price(s, k, t, r, v, kind, q)
    np.testing.assert_allclose(gb.theta, later / 1e-3, rtol=1e-3)


def test_iv_round_trip_over_a_wide_grid():
    """Moneyness e^±3, a minute to five years, 1% to 300% vol: back to the volatility.

    Where the time value is a tiny fraction of the premium (deep in the money) the price itself
    holds few digits of σ; there both our solver and Jäckel's recover what the price holds, and
    they must agree with each other."""
    f = 100.0
    k, t, v, call = np.meshgrid(
        f * np.exp(np.linspace(-3, 3, 41)),
        np.array([1 / (365 * 24 * 60), 1 / (365 * 24), 1 / 365, 7 / 365, 0.25, 1.0, 5.0]),
        np.array([0.01, 0.05, 0.2, 0.5, 1.0, 3.0]),
        [True, False],
        indexing="ij",
    )
    kind = np.where(call, "CE", "PE")
    price = black76_price(f, k, t, 0.0, v, kind)
    iv = implied_volatility(price, f, k, t, 0.0, kind)
    intrinsic = np.maximum(np.where(call, f - k, k - f), 0.0)
    time_value = price - intrinsic
    informative = (time_value > 1e-6 * price) & (time_value > 1e-250)
    assert informative.sum() > 1_000
    np.testing.assert_allclose(iv[informative], v[informative], rtol=1e-9)
    priced_back = black76_price(f, k, t, 0.0, np.nan_to_num(iv), kind)
    np.testing.assert_allclose(priced_back, price, rtol=1e-9, atol=1e-12)
    # Every price with any time value at all agrees with Jäckel's reference solver.
    # (Below a few ulps of the premium a time value is rounding noise: read as intrinsic, 0.)
    some = np.flatnonzero((time_value > 8 * np.finfo(float).eps * price).ravel())
    ref = np.array(
        [
            lets_be_rational.implied_volatility_from_a_transformed_rational_guess(
                price.flat[i], f, k.flat[i], t.flat[i], 1 if call.flat[i] else -1
            )
            for i in some
        ]
    )
    np.testing.assert_allclose(iv.flat[some], ref, rtol=1e-9)


def test_iv_in_the_far_tails_against_jaeckel_prices():
    """Prices down to 1e-200 of the forward (computed with Jäckel's accurate ``black``)."""
    cases = [
        (100.0, 25.0, 1 / 365, 0.8, -1),  # far OTM put, one day: 7.6e-242
        (100.0, 300.0, 0.02, 0.3, 1),  # far OTM call: 1.1e-148
        (100.0, 130.0, 7 / 365, 0.1, 1),  # 2e-81
        (100.0, 103.0, 1 / 365, 0.1, 1),  # 7e-10
        (100.0, 100.0, 1e-10, 0.2, -1),  # ATM, a moment before expiry
        (100.0, 100.0, 4.0, 2.5, 1),  # total volatility 5: near the upper bound
    ]
    for f, k, t, v, q in cases:
        price = lets_be_rational.black(f, k, v, t, q)
        ours = black76_price(f, k, t, 0.0, v, "CE" if q == 1 else "PE")
        assert float(ours) == pytest.approx(price, rel=1e-12)
        kind = "CE" if q == 1 else "PE"
        assert price > 0
        assert float(implied_volatility(price, f, k, t, 0.0, kind)) == pytest.approx(v, rel=1e-9)


def test_iv_edge_cases():
    f, t, r = 100.0, 0.1, 0.05
    df = np.exp(-r * t)
    # exactly intrinsic → 0.0; below intrinsic → NaN
    assert float(implied_volatility(df * 10.0, f, 90.0, t, r, "CE")) == 0.0
    assert float(implied_volatility(0.0, f, 110.0, t, r, "CE")) == 0.0
    assert np.isnan(implied_volatility(df * 9.0, f, 90.0, t, r, "CE"))
    assert np.isnan(implied_volatility(-1.0, f, 110.0, t, r, "CE"))
    # at or above the discounted forward (call) / discounted strike (put) → NaN
    assert np.isnan(implied_volatility(df * f, f, 90.0, t, r, "CE"))
    assert np.isnan(implied_volatility(df * f * 1.01, f, 90.0, t, r, "CE"))
    assert np.isnan(implied_volatility(df * 90.0, f, 90.0, t, r, "PE"))
    # expired with time value, or a NaN input → NaN
    assert np.isnan(implied_volatility(11.0, f, 90.0, 0.0, r, "CE"))
    assert np.isnan(implied_volatility(np.nan, f, 90.0, t, r, "CE"))
    # nearly at the upper bound still solves (very high vol)
    price = black76_price(f, 90.0, t, r, 20.0, "CE")
    assert float(implied_volatility(price, f, 90.0, t, r, "CE")) == pytest.approx(20.0, rel=1e-6)


def test_bsm_iv_round_trip():
    price = bsm_price(2_500.0, np.array([2_300.0, 2_500.0, 2_800.0]), 0.3, 0.065, 0.27, "PE", 0.01)
    iv = implied_volatility_bsm(price, 2_500.0, [2_300.0, 2_500.0, 2_800.0], 0.3, 0.065, "PE", 0.01)
    np.testing.assert_allclose(iv, 0.27, rtol=1e-10)


def test_broadcasting_shapes_and_scalars():
    strikes = np.array([[23_500.0], [24_000.0], [24_500.0]])
    kinds = np.array(["CE", "PE"])
    out = black76_price(24_000.0, strikes, 7 / 365, 0.065, 0.13, kinds)
    assert out.shape == (3, 2)
    assert np.ndim(black76_price(24_000.0, 24_000.0, 0.1, 0.0, 0.1, "CE")) == 0
    iv = implied_volatility(out, 24_000.0, strikes, 7 / 365, 0.065, kinds)
    assert iv.shape == (3, 2)
    np.testing.assert_allclose(iv, 0.13, rtol=1e-10)
    g = greeks(24_000.0, strikes, 7 / 365, 0.065, 0.13, kinds)
    assert g.delta.shape == (3, 2)
    # by name too: g["delta"] and dict(g), the same arrays
    assert g["vega"] is g.vega and list(dict(g)) == ["delta", "gamma", "vega", "theta", "rho"]
    with pytest.raises(KeyError, match="'vanna'"):
        g["vanna"]
    assert np.ndim(greeks(24_000.0, 24_000.0, 0.1, 0.0, 0.1, "PE").vega) == 0


def test_expiry_and_zero_vol_limits():
    assert float(black76_price(100.0, 90.0, 0.0, 0.05, 0.2, "CE")) == 10.0
    assert float(black76_price(100.0, 110.0, 0.5, 0.0, 0.0, "PE")) == 10.0
    g = greeks(100.0, np.array([90.0, 110.0]), 0.0, 0.05, 0.2, "CE")
    np.testing.assert_array_equal(g.delta, [1.0, 0.0])
    np.testing.assert_array_equal(g.gamma, [0.0, 0.0])


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValidationError, match="'C'.*'CE'"):
        black76_price(100.0, 100.0, 0.1, 0.0, 0.2, "C")
    with pytest.raises(ValidationError, match="strike=-5.0 must be > 0"):
        black76_price(100.0, [100.0, -5.0], 0.1, 0.0, 0.2, "CE")
    with pytest.raises(ValidationError, match="t=-0.1 must be >= 0"):
        implied_volatility(1.0, 100.0, 100.0, -0.1, 0.0, "PE")
    with pytest.raises(ValidationError, match="sigma"):
        greeks(100.0, 100.0, 0.1, 0.0, -0.2, "CE")
