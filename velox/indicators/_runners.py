"""Batch runners and streaming entry points, one pair per step in ``_kernels``.

GENERATED from one template (the bodies differ only in the step called, the state size, the
number of outputs and the inputs checked for NaN, which numba needs as literals).

``run_<name>`` loops the step over arrays from ``start`` with ``commit=True``, stops at the first
NaN input (returning its row, else -1) and leaves the final state in ``st_arr``: that is how
streaming objects are seeded from history. ``stream_<name>`` applies the step once, committing
(``update``) or not (``preview``).
"""

from __future__ import annotations

from numba import njit
from numba.np.unsafe.ndarray import to_fixed_tuple

from velox.indicators._kernels import (
    adx_step,
    atr_step,
    bbands_step,
    cci_step,
    dema_step,
    donchian_step,
    ema_step,
    heikin_ashi_step,
    ichimoku_step,
    keltner_step,
    macd_step,
    mfi_step,
    natr_step,
    obv_step,
    pivots_step,
    psar_step,
    roc_step,
    rsi_step,
    sma_step,
    stoch_step,
    stochrsi_step,
    supertrend_step,
    tema_step,
    vwap_step,
    willr_step,
    wma_step,
)


@njit(cache=True)
def run_sma(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 4)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = sma_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(4):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_sma(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = sma_step(to_fixed_tuple(st_arr, 4), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(4):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_ema(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 5)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = ema_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(5):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_ema(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = ema_step(to_fixed_tuple(st_arr, 5), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(5):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_wma(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 6)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = wma_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(6):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_wma(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = wma_step(to_fixed_tuple(st_arr, 6), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(6):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_dema(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 8)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = dema_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(8):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_dema(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = dema_step(to_fixed_tuple(st_arr, 8), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(8):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_tema(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 11)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = tema_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(11):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_tema(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = tema_step(to_fixed_tuple(st_arr, 11), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(11):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_rsi(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 5)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = rsi_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(5):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_rsi(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = rsi_step(to_fixed_tuple(st_arr, 5), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(5):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_macd(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 14)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = macd_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
    for j in range(14):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_macd(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = macd_step(to_fixed_tuple(st_arr, 14), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(14):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]


@njit(cache=True)
def run_roc(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 3)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = roc_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(3):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_roc(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = roc_step(to_fixed_tuple(st_arr, 3), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(3):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_cci(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 3)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = cci_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(3):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_cci(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = cci_step(to_fixed_tuple(st_arr, 3), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(3):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_willr(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 7)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = willr_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(7):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_willr(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = willr_step(to_fixed_tuple(st_arr, 7), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(7):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_stoch(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 15)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = stoch_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
    for j in range(15):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_stoch(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = stoch_step(to_fixed_tuple(st_arr, 15), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(15):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]


@njit(cache=True)
def run_stochrsi(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 16)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = stochrsi_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
    for j in range(16):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_stochrsi(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = stochrsi_step(to_fixed_tuple(st_arr, 16), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(16):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]


@njit(cache=True)
def run_mfi(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 4)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i] + v[i]
        if probe != probe:
            bad = i
            break
        st, r = mfi_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(4):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_mfi(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = mfi_step(to_fixed_tuple(st_arr, 4), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(4):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_obv(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 3)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i] + v[i]
        if probe != probe:
            bad = i
            break
        st, r = obv_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(3):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_obv(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = obv_step(to_fixed_tuple(st_arr, 3), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(3):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_atr(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 5)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = atr_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(5):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_atr(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = atr_step(to_fixed_tuple(st_arr, 5), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(5):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_natr(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 5)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = natr_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(5):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_natr(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = natr_step(to_fixed_tuple(st_arr, 5), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(5):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_bbands(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 7)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = c[i]
        if probe != probe:
            bad = i
            break
        st, r = bbands_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
    for j in range(7):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_bbands(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = bbands_step(to_fixed_tuple(st_arr, 7), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(7):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]


@njit(cache=True)
def run_adx(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 10)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = adx_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(10):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_adx(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = adx_step(to_fixed_tuple(st_arr, 10), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(10):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_psar(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 9)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i]
        if probe != probe:
            bad = i
            break
        st, r = psar_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(9):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_psar(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = psar_step(to_fixed_tuple(st_arr, 9), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(9):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_supertrend(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 9)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = supertrend_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
    for j in range(9):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_supertrend(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = supertrend_step(to_fixed_tuple(st_arr, 9), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(9):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]


@njit(cache=True)
def run_vwap(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 3)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i] + v[i]
        if probe != probe:
            bad = i
            break
        st, r = vwap_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
    for j in range(3):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_vwap(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = vwap_step(to_fixed_tuple(st_arr, 3), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(3):
            st_arr[j] = st[j]
    out[0] = r[0]


@njit(cache=True)
def run_donchian(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 7)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i]
        if probe != probe:
            bad = i
            break
        st, r = donchian_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
    for j in range(7):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_donchian(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = donchian_step(to_fixed_tuple(st_arr, 7), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(7):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]


@njit(cache=True)
def run_keltner(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 11)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = keltner_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
    for j in range(11):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_keltner(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = keltner_step(to_fixed_tuple(st_arr, 11), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(11):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]


@njit(cache=True)
def run_heikin_ashi(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 3)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = o[i] + h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = heikin_ashi_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
        out[3, i] = r[3]
    for j in range(3):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_heikin_ashi(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = heikin_ashi_step(to_fixed_tuple(st_arr, 3), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(3):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]
    out[3] = r[3]


@njit(cache=True)
def run_ichimoku(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 19)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i]
        if probe != probe:
            bad = i
            break
        st, r = ichimoku_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
        out[3, i] = r[3]
    for j in range(19):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_ichimoku(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = ichimoku_step(to_fixed_tuple(st_arr, 19), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(19):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]
    out[3] = r[3]


@njit(cache=True)
def run_pivots(st_arr, ring, o, h, l, c, v, t, start, out):  # noqa: E741
    st = to_fixed_tuple(st_arr, 8)
    bad = -1
    for i in range(start, c.shape[0]):
        probe = h[i] + l[i] + c[i]
        if probe != probe:
            bad = i
            break
        st, r = pivots_step(st, ring, o[i], h[i], l[i], c[i], v[i], t[i], True)
        out[0, i] = r[0]
        out[1, i] = r[1]
        out[2, i] = r[2]
        out[3, i] = r[3]
        out[4, i] = r[4]
        out[5, i] = r[5]
        out[6, i] = r[6]
        out[7, i] = r[7]
    for j in range(8):
        st_arr[j] = st[j]
    return bad


@njit(cache=True)
def stream_pivots(st_arr, ring, o, h, l, c, v, t, commit, out):  # noqa: E741
    st, r = pivots_step(to_fixed_tuple(st_arr, 8), ring, o, h, l, c, v, t, commit)
    if commit:
        for j in range(8):
            st_arr[j] = st[j]
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]
    out[3] = r[3]
    out[4] = r[4]
    out[5] = r[5]
    out[6] = r[6]
    out[7] = r[7]
