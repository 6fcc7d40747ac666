"""One numba step function per indicator: the single definition batch and streaming share.

Every step has the same shape::

    step(st, ring, j, o, h, l, c, v, t, commit, steady) -> (new_st, outputs)

* ``st`` is a homogeneous tuple of float64 (parameters and the recurrence's scalars). A tuple, not
  an array, so that in the batch loop LLVM keeps the whole state in registers: the loop-carried
  dependency never goes through memory, which is what makes the batch path as fast as TA-Lib's
  hand-written C while streaming runs literally the same function.
* ``j`` is the bar's position in the series (the number of bars committed before it), an int.
  The batch runner passes its loop counter; a streaming object keeps the count in the slot after
  the state. Warm-up tests compare ``j`` with the windows, and rolling windows are addressed by
  it, so no counter or ring position is carried as a float through the loop (a float counter's
  add-compare-select would be the longest dependency chain of the cheap indicators).
* ``ring`` is a 2-D float64 array (width a power of two, more than the longest window) holding
  the *committed* values of the rolling windows: the value of series position ``p`` sits in
  column ``p & (width - 1)`` (:func:`_slot`); the windowed max/min rows are indexed by block
  position instead (:func:`_window_range`) and CCI keeps TA-Lib's buffer order (column
  ``j % n``). A step reads it and writes the current bar into it only when ``commit`` is true.
  ``commit=False`` is the forming-candle preview: it returns the value the bar would produce if
  it closed now and leaves ``ring`` untouched; the returned state is simply discarded.
* ``steady`` is a compile-time promise by the caller that ``j >= <name>_warmup(st)``: every
  warm-up branch is behind ``if not steady and …``, so the batch runner, which calls the step
  with ``steady=False`` for the first bars and ``True`` for the rest, runs a steady-state loop
  without them. The steady-state code is the same lines in both cases (the warm-up branches
  only return early), which is why streaming (always ``steady=False``) and batch agree to the
  bit; the property tests check it.
* ``o, h, l, c, v`` are the bar's prices and volume (single-input indicators read ``c``), ``t``
  a session key (the IST date number) used by session-anchored indicators (VWAP, pivots).

The arithmetic follows TA-Lib's C source (running sums added and subtracted in the same order,
TA-Lib's seeding), so results agree to ~1e-15 (1e-12 at worst), not just to a tolerance. Zero
tests follow TA-Lib 0.8 (the version pinned for tests): ``TA_IS_ZERO`` is ``|v| < 1e-14`` and
differences of prices use the scale-aware ``|a − b| ≤ 1e-14 · (|a| + |b|)``, so a window that
is flat but for float rounding reads as flat.

Notes for developers:

* numba's on-disk cache of a runner in ``_runners.py`` is keyed on that file, not on the steps
  it inlines, so after editing this file run ``python -m velox.indicators._codegen`` (it stamps
  this file's hash into ``_runners.py``; a test fails until you do). The bank kernels in
  ``streaming.py`` inline the EMA/RSI/ATR/Supertrend steps too: clear ``__pycache__`` after
  changing those.
* Write data-dependent choices as flat selects (``a if c else b`` of plain values, max/min):
  nested or ``and``/``or`` conditions compile to branches, mispredicted on real prices.
* Keep the last use of ``ring`` in a step outside any branch that contains a loop: numba
  reference-counts the array, and if it dies inside such a branch the count is taken on every
  bar (an out-of-line call per bar; see ``bbands_step``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

NAN = math.nan
#: TA-Lib's ``TA_EPSILON`` (0.8.x).
_EPS = 1e-14


@intrinsic
def _fma(typingctx, a, b, c):  # noqa: ANN001, ANN202
    """Return ``a * b + c`` rounded once (``llvm.fma``).

    The kernels compile without fast-math flags, so LLVM never fuses on its own: where a fused
    multiply-add is wanted (the EMA and Wilder recurrences, to keep one FMA per bar on the
    loop-carried chain) it is written out here. Had LLVM been allowed to contract, whether an
    expression got fused could differ between the batch runner's loops and the streaming entry
    point, and batch and streaming would no longer agree to the bit.
    """
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.fma(*args)

    return sig, codegen


@njit(cache=True, inline="always")
def _is_zero(v: float) -> bool:
    return -_EPS < v < _EPS


@njit(cache=True, inline="always")
def _is_zero_scaled(v: float, scale: float) -> bool:
    """Return TA-Lib's ``TA_IS_ZERO_SCALED``: ``v`` is a rounding residue relative to ``scale``."""
    return abs(v) <= _EPS * scale


@njit(cache=True, inline="always")
def _slot(ring, p):
    """Return the ring column of series position ``p`` (ring widths are powers of two)."""
    return np.uintp(p & (ring.shape[1] - 1))


@njit(cache=True, inline="always")
def _next_block_pos(r, n):
    """Return the block position after ``r`` in blocks of ``n`` (see :func:`_window_range`)."""
    r = r + 1.0
    return 0.0 if r == n else r


@njit(cache=True, inline="always")
def _window_range(ring, rows, n, p, r, high, low, top, bottom, commit):
    """Return the max of ``high`` and the min of ``low`` over the ``n`` bars ending at ``p``.

    Van Herk / Gil-Werman: the series are cut into blocks of ``n`` bars; ``r`` is the bar's
    position in its block and ``top``/``bottom`` the extremes of the block's earlier bars (∓inf
    at a block's first bar). A window of ``n`` bars ending here is the block's prefix up to this
    bar plus a suffix of the previous block, whose suffix extremes were written when that block
    closed. ``rows`` names the ring rows: the two series (by :func:`_slot`; the caller writes
    them on commit; they may be one row) and their suffix max and min (by block position;
    column ``n``, and the whole row until the first block closes, hold the ∓inf sentinel).
    Cost: four max/min per bar, plus one backward pass over a block when its last bar is
    committed, so O(1) amortised with no data-dependent branch; exact, as max and min round
    nothing. (The block restart is a reset of ``top``/``bottom`` to ∓inf after its last bar,
    not a select on the first bar, which LLVM would turn into an unpredictable branch.)

    Returns ``(window max, window min, new top, new bottom)``.
    """
    raw_high, raw_low, suf_high, suf_low = rows
    ri = int(r)
    top = high if high > top else top
    bottom = low if low < bottom else bottom
    older = ring[suf_high, np.uintp(ri + 1)]
    hi = older if older > top else top
    older = ring[suf_low, np.uintp(ri + 1)]
    lo = older if older < bottom else bottom
    last = r == n - 1.0
    if commit and last:
        up = high
        down = low
        ring[suf_high, np.uintp(ri)] = up
        ring[suf_low, np.uintp(ri)] = down
        for q in range(1, ri + 1):
            here = _slot(ring, p - q)
            x = ring[raw_high, here]
            up = x if x > up else up
            ring[suf_high, np.uintp(ri - q)] = up
            x = ring[raw_low, here]
            down = x if x < down else down
            ring[suf_low, np.uintp(ri - q)] = down
    return hi, lo, (-math.inf if last else top), (math.inf if last else bottom)


@njit(cache=True, inline="always")
def _ema_core(n, k, p, acc, prev, x, steady):
    """Advance a TA-Lib EMA (seeded by the SMA of its first ``n`` inputs); ``p`` = x's position.

    ``steady`` promises ``p >= n``.
    """
    if not steady and p < n:
        acc = acc + x
        return acc, (acc / n if p == n - 1.0 else NAN)
    return acc, _fma(x - prev, k, prev)


@njit(cache=True, inline="always")
def _sma_core(n, p, acc, ring, row, x, commit, steady):
    """Advance a TA-Lib SMA over series ``ring[row]``; ``acc`` is the sum of the last ``n - 1``.

    ``p`` is ``x``'s position in the series; ``steady`` promises ``p >= n - 1``. Returns
    ``(value, new_acc)`` and writes ``x`` into the ring on commit (before reading the value that
    leaves, which for ``n == 1`` is ``x`` itself).
    """
    s = acc + x
    if commit:
        ring[row, _slot(ring, p)] = x
    if not steady and p < n - 1.0:
        return NAN, s
    oldest = ring[row, _slot(ring, p - int(n) + 1)]
    return s / n, s - oldest


# ---------------------------------------------------------------- moving averages


@njit(cache=True, inline="always")
def sma_warmup(st):
    return int(st[0]) - 1


@njit(cache=True, inline="always")
def sma_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, acc = st
    value, acc = _sma_core(n, j, acc, ring, 0, c, commit, steady)
    return (n, acc), (value,)


@njit(cache=True, inline="always")
def ema_warmup(st):
    return int(st[0])


@njit(cache=True, inline="always")
def ema_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, k, acc, prev = st
    acc, prev = _ema_core(n, k, j, acc, prev, c, steady)
    return (n, k, acc, prev), (prev,)


@njit(cache=True, inline="always")
def wma_warmup(st):
    return int(st[0]) - 1


@njit(cache=True, inline="always")
def wma_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # TA-Lib's WMA: psum is the weighted sum, psub the plain sum of the window, `trailing` the
    # value leaving next; the oldest value is read after the current one is written (n == 1).
    n, psum, psub, trailing = st
    if commit:
        ring[0, _slot(ring, j)] = c
    if not steady and j < n - 1.0:
        return (n, psum + c * (j + 1.0), psub + c, trailing), (NAN,)
    psub = psub + c
    psub = psub - trailing
    psum = psum + c * n
    trailing = ring[0, _slot(ring, j - int(n) + 1)]
    value = psum / (n * (n + 1.0) / 2.0)
    psum = psum - psub
    return (n, psum, psub, trailing), (value,)


@njit(cache=True, inline="always")
def dema_warmup(st):
    return 2 * int(st[0]) - 1


@njit(cache=True, inline="always")
def dema_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, k, a1, p1, a2, p2 = st
    a1, p1 = _ema_core(n, k, j, a1, p1, c, steady)
    j2 = j - (n - 1.0)  # position of p1 in the second EMA's input
    if not steady and j2 < 0.0:
        return (n, k, a1, p1, a2, p2), (NAN,)
    a2, p2 = _ema_core(n, k, j2, a2, p2, p1, steady)
    value = (2.0 * p1) - p2 if (steady or j2 >= n - 1.0) else NAN
    return (n, k, a1, p1, a2, p2), (value,)


@njit(cache=True, inline="always")
def tema_warmup(st):
    return 3 * int(st[0]) - 2


@njit(cache=True, inline="always")
def tema_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, k, a1, p1, a2, p2, a3, p3 = st
    a1, p1 = _ema_core(n, k, j, a1, p1, c, steady)
    j2 = j - (n - 1.0)
    if not steady and j2 < 0.0:
        return (n, k, a1, p1, a2, p2, a3, p3), (NAN,)
    a2, p2 = _ema_core(n, k, j2, a2, p2, p1, steady)
    j3 = j2 - (n - 1.0)
    if not steady and j3 < 0.0:
        return (n, k, a1, p1, a2, p2, a3, p3), (NAN,)
    a3, p3 = _ema_core(n, k, j3, a3, p3, p2, steady)
    value = p3 + ((3.0 * p1) - (3.0 * p2)) if (steady or j3 >= n - 1.0) else NAN
    return (n, k, a1, p1, a2, p2, a3, p3), (value,)


# ---------------------------------------------------------------- momentum


@njit(cache=True, inline="always")
def rsi_warmup(st):
    return int(st[0]) + 1


@njit(cache=True, inline="always")
def rsi_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, prev, gain, loss = st
    if not steady and j == 0:
        return (n, c, 0.0, 0.0), (NAN,)
    diff = c - prev
    if not steady and j <= n:
        if diff < 0:
            loss = loss - diff
        else:
            gain = gain + diff
        if j < n:
            return (n, c, gain, loss), (NAN,)
        loss = loss / n
        gain = gain / n
    else:
        # Wilder smoothing as one multiply-add per chain, (n-1)/n and 1/n being loop constants:
        # TA-Lib's (avg·(n−1) + x)/n puts a division on the loop-carried path (~4× slower); the
        # results agree to ~1e-16 relative.
        keep = (n - 1.0) / n
        inv = 1.0 / n
        up = diff if diff > 0 else 0.0
        down = -diff if diff < 0 else 0.0
        gain = _fma(gain, keep, up * inv)
        loss = _fma(loss, keep, down * inv)
    total = gain + loss
    value = 100.0 * (gain / total) if total != 0.0 else 0.0
    return (n, c, gain, loss), (value,)


@njit(cache=True, inline="always")
def macd_warmup(st):
    return int(st[1]) + int(st[2]) - 1


@njit(cache=True, inline="always")
def macd_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # TA-Lib seeds the fast EMA at bar slow-1 with the SMA of the `fast` inputs ending there (not
    # at bar fast-1): those inputs are summed as they arrive, in the order TA-Lib adds them.
    (fast, slow, sig, kf, ks, kg, facc, fprev, sacc, sprev, gacc, gprev) = st
    sacc, sprev = _ema_core(slow, ks, j, sacc, sprev, c, steady)
    if not steady and j <= slow - 1.0:
        if j >= slow - fast:
            facc = facc + c
        if j < slow - 1.0:
            st = (fast, slow, sig, kf, ks, kg, facc, fprev, sacc, sprev, gacc, gprev)
            return st, (NAN, NAN, NAN)
        fprev = facc / fast
    else:
        fprev = _fma(c - fprev, kf, fprev)
    line = fprev - sprev
    jg = j - (slow - 1.0)  # position of `line` in the signal EMA's input
    gacc, gprev = _ema_core(sig, kg, jg, gacc, gprev, line, steady)
    macd = NAN
    signal = NAN
    hist = NAN
    if steady or jg >= sig - 1.0:
        macd = line
        signal = gprev
        hist = line - gprev
    return (fast, slow, sig, kf, ks, kg, facc, fprev, sacc, sprev, gacc, gprev), (
        macd,
        signal,
        hist,
    )


@njit(cache=True, inline="always")
def roc_warmup(st):
    return int(st[0])


@njit(cache=True, inline="always")
def roc_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    (n,) = st
    value = NAN
    if steady or j >= n:
        old = ring[0, _slot(ring, j - int(n))]
        value = ((c / old) - 1.0) * 100.0 if old != 0.0 else 0.0
    if commit:
        ring[0, _slot(ring, j)] = c
    return (n,), (value,)


@njit(cache=True, inline="always")
def cci_warmup(st):
    return int(st[0]) - 1


@njit(cache=True, inline="always")
def cci_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # TA-Lib's circular buffer of n typical prices, bar j at column j % n, summed in column order
    # (the current bar in its column, as it is not in the ring on a preview): the same additions
    # in the same order as TA-Lib, so the result is TA-Lib's to the bit. The modulo is cheap next
    # to the two O(n) passes.
    (n,) = st
    tp = (h + l + c) / 3.0
    here = j % int(n)
    value = NAN
    if steady or j >= n - 1.0:
        avg = 0.0
        for q in range(here):
            avg += ring[0, q]
        avg += tp
        for q in range(here + 1, int(n)):
            avg += ring[0, q]
        avg /= n
        dev = 0.0
        for q in range(here):
            dev += abs(ring[0, q] - avg)
        dev += abs(tp - avg)
        for q in range(here + 1, int(n)):
            dev += abs(ring[0, q] - avg)
        num = tp - avg
        mean_dev = dev / n
        scale = abs(avg)
        flat = _is_zero_scaled(num, scale) or _is_zero_scaled(mean_dev, scale)
        value = 0.0 if flat else num / (0.015 * mean_dev)
    if commit:
        ring[0, here] = tp
    return (n,), (value,)


@njit(cache=True, inline="always")
def willr_warmup(st):
    return int(st[0]) - 1


@njit(cache=True, inline="always")
def willr_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # rings: 0 high, 1 low (by position); 2, 3 suffix max/min of the last block of n bars
    n, r, ph, pl = st
    hi, lo, ph, pl = _window_range(ring, (0, 1, 2, 3), n, j, r, h, l, ph, pl, commit)
    if commit:
        ring[0, _slot(ring, j)] = h
        ring[1, _slot(ring, j)] = l
    value = NAN
    if steady or j >= n - 1.0:
        flat = _is_zero_scaled(hi - lo, abs(hi) + abs(lo))
        value = 0.0 if flat else ((hi - c) * -100.0) / (hi - lo)
    return (n, _next_block_pos(r, n), ph, pl), (value,)


@njit(cache=True, inline="always")
def stoch_warmup(st):
    return int(st[0]) + int(st[1]) + int(st[2]) - 3


@njit(cache=True, inline="always")
def stoch_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # rings: 0 high, 1 low, 2/3 suffix max/min (window fk), 4 fast %K, 5 slow %K
    fk, sk, sd, r, ph, pl, kacc, dacc = st
    hi, lo, ph, pl = _window_range(ring, (0, 1, 2, 3), fk, j, r, h, l, ph, pl, commit)
    if commit:
        ring[0, _slot(ring, j)] = h
        ring[1, _slot(ring, j)] = l
    r = _next_block_pos(r, fk)
    slowk = NAN
    slowd = NAN
    jk = j - int(fk) + 1  # position of this bar's fast %K
    if steady or jk >= 0:
        flat = _is_zero_scaled(hi - lo, abs(hi) + abs(lo))
        fastk = 0.0 if flat else ((c - lo) * 100.0) / (hi - lo)
        kval, kacc = _sma_core(sk, jk, kacc, ring, 4, fastk, commit, steady)
        jd = jk - int(sk) + 1  # position of this bar's slow %K
        if steady or jd >= 0:
            dval, dacc = _sma_core(sd, jd, dacc, ring, 5, kval, commit, steady)
            if steady or jd >= sd - 1.0:
                slowk = kval
                slowd = dval
    return (fk, sk, sd, r, ph, pl, kacc, dacc), (slowk, slowd)


@njit(cache=True, inline="always")
def stochrsi_warmup(st):
    n = int(st[0])
    return max(n + 1, n + int(st[4]) + int(st[5]) - 2)


@njit(cache=True, inline="always")
def stochrsi_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # rings: 0 RSI values, 1/2 suffix max/min (window fk), 3 fast %K
    (n, rprev, gain, loss, fk, fd, r, ph, pl, dacc) = st
    (n, rprev, gain, loss), (x,) = rsi_step(
        (n, rprev, gain, loss), ring, j, o, h, l, c, v, t, commit, steady
    )
    fastk = NAN
    fastd = NAN
    jr = j - int(n)  # position of this bar's RSI
    if steady or jr >= 0:
        hi, lo, ph, pl = _window_range(ring, (0, 0, 1, 2), fk, jr, r, x, x, ph, pl, commit)
        if commit:
            ring[0, _slot(ring, jr)] = x
        r = _next_block_pos(r, fk)
        jk = jr - int(fk) + 1  # position of this bar's fast %K
        if steady or jk >= 0:
            flat = _is_zero_scaled(hi - lo, abs(hi) + abs(lo))
            k = 0.0 if flat else ((x - lo) * 100.0) / (hi - lo)
            dval, dacc = _sma_core(fd, jk, dacc, ring, 3, k, commit, steady)
            if steady or jk >= fd - 1.0:
                fastk = k
                fastd = dval
    return (n, rprev, gain, loss, fk, fd, r, ph, pl, dacc), (fastk, fastd)


@njit(cache=True, inline="always")
def mfi_warmup(st):
    return int(st[0])


@njit(cache=True, inline="always")
def mfi_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # rings: 0 positive flow, 1 negative flow of bar j (j >= 1). The window sums are re-added
    # every bar (as TA-Lib 0.8 does) rather than kept as running sums, so a window whose flows
    # have all left reads exactly 0, not a rounding residue.
    n, prev = st
    tp = (h + l + c) / 3.0
    if not steady and j == 0:
        return (n, tp), (NAN,)
    diff = tp - prev
    flow = tp * v
    flat = _is_zero_scaled(diff, abs(tp) + abs(prev))
    pos_flow = flow if (diff > 0 and not flat) else 0.0
    neg_flow = flow if (diff < 0 and not flat) else 0.0
    if commit:
        ring[0, _slot(ring, j)] = pos_flow
        ring[1, _slot(ring, j)] = neg_flow
    value = NAN
    if steady or j >= n:
        psum = 0.0
        nsum = 0.0
        for q in range(j - int(n) + 1, j):
            psum += ring[0, _slot(ring, q)]
            nsum += ring[1, _slot(ring, q)]
        psum += pos_flow
        nsum += neg_flow
        total = psum + nsum
        value = 0.0 if total == 0.0 else 100.0 * (psum / total)
    return (n, tp), (value,)


@njit(cache=True, inline="always")
def obv_warmup(st):
    return 1


@njit(cache=True, inline="always")
def obv_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    prev, total = st
    if not steady and j == 0:
        return (c, v), (v,)
    # total ± v or total + 0 as two flat selects and one add on the chain: a nested conditional
    # would compile to branches, mispredicted on every other bar of a real price series
    up = v if c > prev else 0.0
    down = v if c < prev else 0.0
    total = total + (up - down)
    return (c, total), (total,)


# ---------------------------------------------------------------- volatility / trend


@njit(cache=True, inline="always")
def _true_range(h, l, pc):  # noqa: E741
    out = h - l
    a = abs(h - pc)
    if a > out:
        out = a
    b = abs(l - pc)
    if b > out:
        out = b
    return out


@njit(cache=True, inline="always")
def _atr_core(n, j, pc, acc, atr, h, l, c, steady):  # noqa: E741
    """Advance TA-Lib's ATR: SMA of the first ``n`` true ranges (from bar 1), then Wilder.

    Returns ``(prev_close, acc, atr)``; ``steady`` promises ``j > n``.
    """
    if not steady and j == 0:
        return c, 0.0, NAN
    tr = _true_range(h, l, pc)
    if not steady and j <= n:
        acc = acc + tr
        return c, acc, (acc / n if j == n else atr)
    atr = _fma(atr, (n - 1.0) / n, tr * (1.0 / n))  # Wilder, division off the chain
    return c, acc, atr


@njit(cache=True, inline="always")
def atr_warmup(st):
    return int(st[0]) + 1


@njit(cache=True, inline="always")
def atr_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, pc, acc, atr = st
    pc, acc, atr = _atr_core(n, j, pc, acc, atr, h, l, c, steady)
    return (n, pc, acc, atr), (atr,)


@njit(cache=True, inline="always")
def natr_warmup(st):
    return int(st[0]) + 1


@njit(cache=True, inline="always")
def natr_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, pc, acc, atr = st
    pc, acc, atr = _atr_core(n, j, pc, acc, atr, h, l, c, steady)
    value = NAN
    if steady or j >= n:
        # atr · (100 / c), not TA-Lib's (atr / c) · 100: the division then waits for the close
        # only, not for the Wilder chain (~2 ulp apart)
        value = atr * (100.0 / c) if not _is_zero(c) else 0.0
    return (n, pc, acc, atr), (value,)


@njit(cache=True, inline="always")
def bbands_warmup(st):
    return int(st[0])


@njit(cache=True, inline="always")
def bbands_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # The middle band is TA-Lib's running-sum SMA. σ (population) comes from running sums of
    # (x − K) and (x − K)², K re-based to the window mean by an exact O(n) recompute once per
    # ring width (amortised O(1)) and whenever the running variance has lost six digits to
    # cancellation (a window gone quiet after a move). The textbook E[x²] − E[x]² on raw prices
    # loses ~8 digits on index levels such as NIFTY's; TA-Lib 0.8 is precise here.
    n, up, dn, acc, shift, s1, s2 = st
    if not steady and j == 0:
        shift = c
    d = c - shift
    if steady or j >= n:  # the value leaving the window
        old = ring[0, _slot(ring, j - int(n))]
        u = c - old
        s1 = s1 + u
        s2 = s2 + u * (d + (old - shift))
    else:
        s1 = s1 + d
        s2 = s2 + d * d
    total = acc + c  # the SMA's window sum (see _sma_core)
    upper = NAN
    mid = NAN
    lower = NAN
    if steady or j >= n - 1.0:
        mid = total / n
        inv = 1.0 / n
        m1 = s1 * inv
        mean2 = s2 * inv
        var = mean2 - m1 * m1
        if _slot(ring, j + 1) == 0 or var < 1e-6 * mean2:
            # exact sums around K = the mean, as even and odd partial sums (not one long chain)
            shift = mid
            e = c - shift
            s1 = e
            s2 = e * e
            odd1 = 0.0
            odd2 = 0.0
            q = j - int(n) + 1
            while q + 1 < j:
                e = ring[0, _slot(ring, q)] - shift
                s1 += e
                s2 += e * e
                e = ring[0, _slot(ring, q + 1)] - shift
                odd1 += e
                odd2 += e * e
                q += 2
            if q < j:
                e = ring[0, _slot(ring, q)] - shift
                s1 += e
                s2 += e * e
            s1 += odd1
            s2 += odd2
            m1 = s1 * inv
            var = s2 * inv - m1 * m1
        std = math.sqrt(var) if var > 0.0 else 0.0
        upper = mid + up * std
        lower = mid - dn * std
    # The ring is used last here, outside the branch above: were its last use inside that
    # branch's loop, numba would reference-count it on every bar (a call on the hot path).
    if commit:
        ring[0, _slot(ring, j)] = c
    acc = total - ring[0, _slot(ring, j - int(n) + 1)] if (steady or j >= n - 1.0) else total
    return (n, up, dn, acc, shift, s1, s2), (upper, mid, lower)


@njit(cache=True, inline="always")
def adx_warmup(st):
    return 2 * int(st[0])


@njit(cache=True, inline="always")
def adx_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, ph, pl, pc, pdm, mdm, tr, sum_dx, adx = st
    if not steady and j == 0:
        return (n, h, l, c, 0.0, 0.0, 0.0, 0.0, NAN), (NAN,)
    diff_p = h - ph
    diff_m = pl - l
    if steady or j >= n:
        mdm = mdm - mdm / n
        pdm = pdm - pdm / n
    # TA-Lib's "-DM if diff_m > 0 and diff_m > diff_p, else +DM if diff_p > 0 and diff_p >
    # diff_m" as flat selects (x > max(y, 0)); adding 0.0 leaves a sum unchanged
    mdm = mdm + (diff_m if diff_m > (diff_p if diff_p > 0.0 else 0.0) else 0.0)
    pdm = pdm + (diff_p if diff_p > (diff_m if diff_m > 0.0 else 0.0) else 0.0)
    tr_now = _true_range(h, l, pc)
    tr = tr - (tr / n) + tr_now if (steady or j >= n) else tr + tr_now
    if (steady or j >= n) and not _is_zero(tr):
        minus_di = 100.0 * (mdm / tr)
        plus_di = 100.0 * (pdm / tr)
        total = minus_di + plus_di
        if not _is_zero(total):
            dx = 100.0 * (abs(minus_di - plus_di) / total)
            if not steady and j <= 2.0 * n - 1.0:
                sum_dx = sum_dx + dx
            else:
                adx = ((adx * (n - 1.0)) + dx) / n
    if not steady and j == 2.0 * n - 1.0:
        adx = sum_dx / n
    value = adx if (steady or j >= 2.0 * n - 1.0) else NAN
    return (n, h, l, c, pdm, mdm, tr, sum_dx, adx), (value,)


@njit(cache=True, inline="always")
def psar_warmup(st):
    return 2


@njit(cache=True, inline="always")
def psar_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # TA-Lib's SAR: the first trend comes from the -DM of bars 0 and 1; the value reported for a
    # bar is the SAR that bar was tested against (the stop in force during the bar).
    acc, mx, is_long, sar, ep, af, ph, pl = st
    if not steady and j == 0:
        return (acc, mx, 0.0, 0.0, 0.0, acc, h, l), (NAN,)
    if not steady and j == 1:
        diff_p = h - ph
        diff_m = pl - l
        minus_dm = diff_m if (diff_m > 0 and diff_p < diff_m) else 0.0
        is_long = 0.0 if minus_dm > 0 else 1.0
        if is_long == 1.0:
            ep = h
            sar = pl
        else:
            ep = l
            sar = ph
        ph = h
        pl = l
    if is_long == 1.0:
        if l <= sar:
            is_long = 0.0
            sar = ep
            sar = max(sar, ph, h)
            out = sar
            af = acc
            ep = l
            sar = sar + af * (ep - sar)
            sar = max(sar, ph, h)
        else:
            out = sar
            if h > ep:
                ep = h
                af = min(af + acc, mx)
            sar = sar + af * (ep - sar)
            sar = min(sar, pl, l)
    elif h >= sar:
        is_long = 1.0
        sar = ep
        sar = min(sar, pl, l)
        out = sar
        af = acc
        ep = h
        sar = sar + af * (ep - sar)
        sar = min(sar, pl, l)
    else:
        out = sar
        if l < ep:
            ep = l
            af = min(af + acc, mx)
        sar = sar + af * (ep - sar)
        sar = max(sar, ph, h)
    return (acc, mx, is_long, sar, ep, af, h, l), (out,)


# ---------------------------------------------------------------- indicators TA-Lib lacks


@njit(cache=True, inline="always")
def supertrend_warmup(st):
    return int(st[0]) + 1


@njit(cache=True, inline="always")
def supertrend_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, m, pc, acc, atr, fu, fl, direction = st
    prev_close = pc
    pc, acc, atr = _atr_core(n, j, pc, acc, atr, h, l, c, steady)
    if not steady and j < n:
        return (n, m, pc, acc, atr, fu, fl, direction), (NAN, NAN)
    mid = (h + l) / 2.0
    bu = mid + m * atr
    bl = mid - m * atr
    if not steady and j == n:
        fu, fl, direction = bu, bl, -1.0
    else:
        fu = bu if (bu < fu or prev_close > fu) else fu
        fl = bl if (bl > fl or prev_close < fl) else fl
        if direction == -1.0:  # noqa: SIM108 (reads as the published rule)
            direction = 1.0 if c > fu else -1.0
        else:
            direction = -1.0 if c < fl else 1.0
    line = fl if direction == 1.0 else fu
    return (n, m, pc, acc, atr, fu, fl, direction), (line, direction)


@njit(cache=True, inline="always")
def vwap_warmup(st):
    return 0


@njit(cache=True, inline="always")
def vwap_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    session, pv, vol = st
    if t != session:
        session, pv, vol = t, 0.0, 0.0
    pv = pv + ((h + l + c) / 3.0) * v
    vol = vol + v
    value = pv / vol if vol > 0.0 else NAN
    return (session, pv, vol), (value,)


@njit(cache=True, inline="always")
def donchian_warmup(st):
    return int(st[0]) - 1


@njit(cache=True, inline="always")
def donchian_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # rings as in willr_step
    n, r, ph, pl = st
    hi, lo, ph, pl = _window_range(ring, (0, 1, 2, 3), n, j, r, h, l, ph, pl, commit)
    if commit:
        ring[0, _slot(ring, j)] = h
        ring[1, _slot(ring, j)] = l
    upper = NAN
    middle = NAN
    lower = NAN
    if steady or j >= n - 1.0:
        upper, lower = hi, lo
        middle = (hi + lo) / 2.0
    return (n, _next_block_pos(r, n), ph, pl), (upper, middle, lower)


@njit(cache=True, inline="always")
def keltner_warmup(st):
    return max(int(st[0]), int(st[5]) + 1)


@njit(cache=True, inline="always")
def keltner_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    n, k, m, ea, ep, an, apc, aacc, atr = st
    ea, ep = _ema_core(n, k, j, ea, ep, c, steady)
    apc, aacc, atr = _atr_core(an, j, apc, aacc, atr, h, l, c, steady)
    upper = NAN
    middle = NAN
    lower = NAN
    if steady or (j >= n - 1.0 and j >= an):
        middle = ep
        upper = ep + m * atr
        lower = ep - m * atr
    return (n, k, m, ea, ep, an, apc, aacc, atr), (upper, middle, lower)


@njit(cache=True, inline="always")
def heikin_ashi_warmup(st):
    return 1


@njit(cache=True, inline="always")
def heikin_ashi_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    ha_open, ha_close = st
    new_close = (o + h + l + c) / 4.0
    new_open = (o + c) / 2.0 if (not steady and j == 0) else (ha_open + ha_close) / 2.0
    new_high = max(h, new_open, new_close)
    new_low = min(l, new_open, new_close)
    return (new_open, new_close), (new_open, new_high, new_low, new_close)


@njit(cache=True, inline="always")
def ichimoku_warmup(st):
    return max(int(st[0]), int(st[1]), int(st[2]), int(st[3]))


@njit(cache=True, inline="always")
def ichimoku_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    # rings: 0 high, 1 low, 2/3 suffix max/min for the tenkan window, 4/5 kijun, 6/7 senkou B,
    # 8 raw span A, 9 raw span B (by position, read back `disp` bars later)
    (nt, nk, nb, disp, rt, rk, rb, th, tl, kh, kl, bh, bl) = st
    tenkan_hi, tenkan_lo, th, tl = _window_range(
        ring, (0, 1, 2, 3), nt, j, rt, h, l, th, tl, commit
    )
    kijun_hi, kijun_lo, kh, kl = _window_range(ring, (0, 1, 4, 5), nk, j, rk, h, l, kh, kl, commit)
    span_hi, span_lo, bh, bl = _window_range(ring, (0, 1, 6, 7), nb, j, rb, h, l, bh, bl, commit)
    tenkan = (tenkan_hi + tenkan_lo) / 2.0 if (steady or j >= nt - 1.0) else NAN
    kijun = (kijun_hi + kijun_lo) / 2.0 if (steady or j >= nk - 1.0) else NAN
    span_a_raw = (tenkan + kijun) / 2.0
    span_b_raw = (span_hi + span_lo) / 2.0 if (steady or j >= nb - 1.0) else NAN
    span_a = NAN
    span_b = NAN
    if steady or j >= disp:
        back = _slot(ring, j - int(disp))
        span_a = ring[8, back]
        span_b = ring[9, back]
    if commit:
        here = _slot(ring, j)
        ring[0, here] = h
        ring[1, here] = l
        ring[8, here] = span_a_raw
        ring[9, here] = span_b_raw
    st = (
        nt,
        nk,
        nb,
        disp,
        _next_block_pos(rt, nt),
        _next_block_pos(rk, nk),
        _next_block_pos(rb, nb),
        th,
        tl,
        kh,
        kl,
        bh,
        bl,
    )
    return st, (tenkan, kijun, span_a, span_b)


@njit(cache=True, inline="always")
def _pivot_levels(method, ph, pl, pc):
    rng = ph - pl
    if method == 0.0:
        p = (ph + pl + pc) / 3.0
        return (p, 2.0 * p - pl, p + rng, ph + 2.0 * (p - pl), 2.0 * p - ph, p - rng,
                pl - 2.0 * (ph - p), NAN)  # fmt: skip
    return (pc + rng * 1.1 / 12.0, pc + rng * 1.1 / 6.0, pc + rng * 1.1 / 4.0,
            pc + rng * 1.1 / 2.0, pc - rng * 1.1 / 12.0, pc - rng * 1.1 / 6.0,
            pc - rng * 1.1 / 4.0, pc - rng * 1.1 / 2.0)  # fmt: skip


@njit(cache=True, inline="always")
def pivots_warmup(st):
    return 0


@njit(cache=True, inline="always")
def pivots_step(st, ring, j, o, h, l, c, v, t, commit, steady):  # noqa: E741
    method, session, sh, sl, sc, ph, pl, pc = st
    if t != session:
        if session == session:  # a previous session exists (not NaN)
            ph, pl, pc = sh, sl, sc
        session, sh, sl = t, h, l
    else:
        sh = max(sh, h)
        sl = min(sl, l)
    sc = c
    levels = _pivot_levels(method, ph, pl, pc)
    return (method, session, sh, sl, sc, ph, pl, pc), levels
