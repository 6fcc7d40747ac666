"""One numba step function per indicator: the single definition batch and streaming share.

Every step has the same shape::

    step(st, ring, o, h, l, c, v, t, commit) -> (new_st, outputs)

* ``st`` is a homogeneous tuple of float64 (parameters, counters and the recurrence's scalars).
  A tuple, not an array, so that in the batch loop LLVM keeps the whole state in registers: the
  loop-carried dependency never goes through memory, which is what makes the batch path as fast as
  TA-Lib's hand-written C while streaming runs literally the same function.
* ``ring`` is a 2-D float64 array holding the *committed* values of any rolling window the
  indicator needs (one row per windowed series). The step only reads it, and writes the current
  bar into it when ``commit`` is true. ``commit=False`` is the forming-candle preview: it returns
  the value the bar would produce if it closed now and leaves ``ring`` untouched; the returned
  state is simply discarded.
* ``o, h, l, c, v`` are the bar's prices and volume (single-input indicators read ``c``), ``t``
  a session key (the IST date number) used by session-anchored indicators (VWAP, pivots).
* ``count`` (a state slot) is the number of committed bars; warm-up outputs are NaN exactly where
  TA-Lib's lookback makes them NaN.

The arithmetic follows TA-Lib's C source operation by operation (running sums added and
subtracted in the same order, Wilder smoothing as ``(prev * (n - 1) + x) / n``), so results agree
to the last few bits, not just to a tolerance. Zero tests follow TA-Lib 0.8 (the version pinned
for tests): ``TA_IS_ZERO`` is ``|v| < 1e-14`` and differences of prices use the scale-aware
``|a − b| ≤ 1e-14 · (|a| + |b|)``, so a window that is flat but for float rounding reads as flat.

Note for developers: numba's on-disk cache of a runner in ``_runners.py`` is keyed on that file,
not on the steps it inlines, so after editing this file run ``python -m velox.indicators._codegen``
(it stamps this file's hash into ``_runners.py``; a test fails until you do). The bank kernels in
``streaming.py`` inline the EMA/RSI/ATR/Supertrend steps too: clear ``__pycache__`` after
changing those.
"""

from __future__ import annotations

import math

from numba import njit

NAN = math.nan
#: TA-Lib's ``TA_EPSILON`` (0.8.x).
_EPS = 1e-14


@njit(cache=True, inline="always")
def _is_zero(v: float) -> bool:
    return -_EPS < v < _EPS


@njit(cache=True, inline="always")
def _is_zero_scaled(v: float, scale: float) -> bool:
    """Return TA-Lib's ``TA_IS_ZERO_SCALED``: ``v`` is a rounding residue relative to ``scale``."""
    return abs(v) <= _EPS * scale


@njit(cache=True, inline="always")
def _next_pos(pos: float, width: float) -> float:
    p = pos + 1.0
    return 0.0 if p >= width else p


@njit(cache=True, inline="always")
def _ema_core(n, k, cnt, acc, prev, x):
    """Advance a TA-Lib EMA (seeded by the SMA of the first ``n`` inputs) by one input."""
    if cnt < n:
        acc = acc + x
        cnt = cnt + 1.0
        prev = acc / n if cnt == n else NAN
        return cnt, acc, prev
    return cnt + 1.0, acc, (x - prev) * k + prev


@njit(cache=True, inline="always")
def _sma_core(n, cnt, acc, ring, row, pos, x):
    """Advance a TA-Lib SMA by one input; ``acc`` is the sum of the last ``n - 1`` inputs.

    ``ring[row]`` has width ``n`` and ``pos`` is where input ``cnt`` goes. Returns
    ``(value, new_acc)``; the caller writes ``x`` into the ring on commit.
    """
    s = acc + x
    if cnt + 1.0 < n:
        return NAN, s
    value = s / n
    if n == 1.0:
        return value, acc
    oldest = ring[row, int(_next_pos(pos, n))]
    return value, s - oldest


@njit(cache=True, inline="always")
def _extreme(ring, row, width, n, cnt, pos, x, best, best_idx, is_max):
    """Return the (value, index) of the max/min over the window of ``n`` bars ending at ``cnt``.

    The window's earlier ``n - 1`` bars are in ``ring[row]`` (width ``width`` ≥ ``n``, bar ``cnt``
    at ``pos``); ``x`` is the current bar. Like TA-Lib, the previous extreme is reused while it is
    still inside the window, so the scan is amortised O(1).
    """
    start = cnt - n + 1.0
    if best_idx >= start and best_idx < cnt:
        if (x >= best) if is_max else (x <= best):
            return x, cnt
        return best, best_idx
    best = x
    best_idx = cnt
    if start < 0.0:
        start = 0.0
    j = int(start)
    w = int(width)
    p = int(pos) - int(cnt - start)
    if p < 0:
        p += w
    # Branch-free scan (selects, not jumps): the comparisons are unpredictable on real prices.
    for jj in range(j, int(cnt)):
        val = ring[row, p]
        better = (val > best) if is_max else (val < best)
        best_idx = float(jj) if better else best_idx
        best = val if better else best
        p = p + 1 if p + 1 < w else 0
    return best, best_idx


# ---------------------------------------------------------------- moving averages


@njit(cache=True, inline="always")
def sma_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pos, acc = st
    value, acc2 = _sma_core(n, cnt, acc, ring, 0, pos, c)
    if commit:
        ring[0, int(pos)] = c
    return (n, cnt + 1.0, _next_pos(pos, n), acc2), (value,)


@njit(cache=True, inline="always")
def ema_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, k, cnt, acc, prev = st
    cnt, acc, prev = _ema_core(n, k, cnt, acc, prev, c)
    return (n, k, cnt, acc, prev), (prev,)


@njit(cache=True, inline="always")
def wma_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pos, psum, psub, trailing = st
    divider = n * (n + 1.0) / 2.0
    if cnt + 1.0 < n:
        psub = psub + c
        psum = psum + c * (cnt + 1.0)
        value = NAN
    else:
        psub = psub + c
        psub = psub - trailing
        psum = psum + c * n
        trailing = c if n == 1.0 else ring[0, int(_next_pos(pos, n))]
        value = psum / divider
        psum = psum - psub
    if commit:
        ring[0, int(pos)] = c
    return (n, cnt + 1.0, _next_pos(pos, n), psum, psub, trailing), (value,)


@njit(cache=True, inline="always")
def dema_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, k, c1, a1, p1, c2, a2, p2 = st
    c1, a1, p1 = _ema_core(n, k, c1, a1, p1, c)
    value = NAN
    if c1 >= n:
        c2, a2, p2 = _ema_core(n, k, c2, a2, p2, p1)
        if c2 >= n:
            value = (2.0 * p1) - p2
    return (n, k, c1, a1, p1, c2, a2, p2), (value,)


@njit(cache=True, inline="always")
def tema_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, k, c1, a1, p1, c2, a2, p2, c3, a3, p3 = st
    c1, a1, p1 = _ema_core(n, k, c1, a1, p1, c)
    value = NAN
    if c1 >= n:
        c2, a2, p2 = _ema_core(n, k, c2, a2, p2, p1)
        if c2 >= n:
            c3, a3, p3 = _ema_core(n, k, c3, a3, p3, p2)
            if c3 >= n:
                value = p3 + ((3.0 * p1) - (3.0 * p2))
    return (n, k, c1, a1, p1, c2, a2, p2, c3, a3, p3), (value,)


# ---------------------------------------------------------------- momentum


@njit(cache=True, inline="always")
def rsi_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, prev, gain, loss = st
    value = NAN
    if cnt == 0.0:
        return (n, 1.0, c, 0.0, 0.0), (value,)
    diff = c - prev
    if cnt <= n:
        if diff < 0:
            loss = loss - diff
        else:
            gain = gain + diff
        if cnt == n:
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
        gain = gain * keep + up * inv
        loss = loss * keep + down * inv
    if cnt >= n:
        total = gain + loss
        value = 100.0 * (gain / total) if total != 0.0 else 0.0
    return (n, cnt + 1.0, c, gain, loss), (value,)


@njit(cache=True, inline="always")
def macd_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # TA-Lib seeds the fast EMA at bar slow-1 with the SMA of the `fast` inputs ending there (not
    # at bar fast-1), so the fast inputs of the warm-up are kept in the ring.
    (fast, slow, sig, kf, ks, kg, cnt, fprev, sc, sa, sp, gc, ga, gp) = st
    sc, sa, sp = _ema_core(slow, ks, sc, sa, sp, c)
    macd = NAN
    signal = NAN
    hist = NAN
    if cnt < slow - 1.0:
        if commit:
            ring[0, int(cnt % fast)] = c
    elif cnt == slow - 1.0:
        acc = 0.0
        for j in range(int(cnt - fast + 1.0), int(cnt)):
            acc += ring[0, j % int(fast)]
        acc += c
        fprev = acc / fast
    else:
        fprev = (c - fprev) * kf + fprev
    if cnt >= slow - 1.0:
        line = fprev - sp
        gc, ga, gp = _ema_core(sig, kg, gc, ga, gp, line)
        if gc >= sig:
            macd = line
            signal = gp
            hist = line - gp
    return (fast, slow, sig, kf, ks, kg, cnt + 1.0, fprev, sc, sa, sp, gc, ga, gp), (
        macd,
        signal,
        hist,
    )


@njit(cache=True, inline="always")
def roc_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pos = st
    value = NAN
    if cnt >= n:
        old = ring[0, int(pos)]
        value = ((c / old) - 1.0) * 100.0 if old != 0.0 else 0.0
    if commit:
        ring[0, int(pos)] = c
    return (n, cnt + 1.0, _next_pos(pos, n)), (value,)


@njit(cache=True, inline="always")
def cci_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pos = st
    tp = (h + l + c) / 3.0
    value = NAN
    if cnt + 1.0 >= n:
        ip = int(pos)
        nn = int(n)
        # buffer order 0…n−1 as TA-Lib sums it, the current bar sitting at `pos`
        avg = 0.0
        for j in range(ip):
            avg += ring[0, j]
        avg += tp
        for j in range(ip + 1, nn):
            avg += ring[0, j]
        avg /= n
        dev = 0.0
        for j in range(ip):
            dev += abs(ring[0, j] - avg)
        dev += abs(tp - avg)
        for j in range(ip + 1, nn):
            dev += abs(ring[0, j] - avg)
        num = tp - avg
        mean_dev = dev / n
        scale = abs(avg)
        flat = _is_zero_scaled(num, scale) or _is_zero_scaled(mean_dev, scale)
        value = 0.0 if flat else num / (0.015 * mean_dev)
    if commit:
        ring[0, int(pos)] = tp
    return (n, cnt + 1.0, _next_pos(pos, n)), (value,)


@njit(cache=True, inline="always")
def willr_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pos, hi, hi_idx, lo, lo_idx = st
    hi, hi_idx = _extreme(ring, 0, n, n, cnt, pos, h, hi, hi_idx, True)
    lo, lo_idx = _extreme(ring, 1, n, n, cnt, pos, l, lo, lo_idx, False)
    value = NAN
    if cnt + 1.0 >= n:
        flat = _is_zero_scaled(hi - lo, abs(hi) + abs(lo))
        value = 0.0 if flat else (hi - c) / ((hi - lo) / (-100.0))
    if commit:
        ring[0, int(pos)] = h
        ring[1, int(pos)] = l
    return (n, cnt + 1.0, _next_pos(pos, n), hi, hi_idx, lo, lo_idx), (value,)


@njit(cache=True, inline="always")
def stoch_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # rings: 0 high, 1 low (width fk), 2 fast %K (width sk), 3 slow %K (width sd)
    (fk, sk, sd, cnt, pos, hi, hi_idx, lo, lo_idx, kc, kpos, kacc, dc, dpos, dacc) = st
    hi, hi_idx = _extreme(ring, 0, fk, fk, cnt, pos, h, hi, hi_idx, True)
    lo, lo_idx = _extreme(ring, 1, fk, fk, cnt, pos, l, lo, lo_idx, False)
    slowk = NAN
    slowd = NAN
    if cnt + 1.0 >= fk:
        flat = _is_zero_scaled(hi - lo, abs(hi) + abs(lo))
        fastk = 0.0 if flat else (c - lo) / ((hi - lo) / 100.0)
        kval, kacc2 = _sma_core(sk, kc, kacc, ring, 2, kpos, fastk)
        if commit:
            ring[2, int(kpos)] = fastk
        if kc + 1.0 >= sk:
            dval, dacc2 = _sma_core(sd, dc, dacc, ring, 3, dpos, kval)
            if commit:
                ring[3, int(dpos)] = kval
            if dc + 1.0 >= sd:
                slowk = kval
                slowd = dval
            dc, dpos, dacc = dc + 1.0, _next_pos(dpos, sd), dacc2
        kc, kpos, kacc = kc + 1.0, _next_pos(kpos, sk), kacc2
    if commit:
        ring[0, int(pos)] = h
        ring[1, int(pos)] = l
    return (
        fk,
        sk,
        sd,
        cnt + 1.0,
        _next_pos(pos, fk),
        hi,
        hi_idx,
        lo,
        lo_idx,
        kc,
        kpos,
        kacc,
        dc,
        dpos,
        dacc,
    ), (slowk, slowd)


@njit(cache=True, inline="always")
def stochrsi_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # rings: 0 RSI values (width fk), 1 fast %K (width fd)
    (n, rc, rprev, gain, loss, fk, fd, cnt, pos, hi, hi_idx, lo, lo_idx, dc, dpos, dacc) = st
    (n, rc, rprev, gain, loss), (r,) = rsi_step(
        (n, rc, rprev, gain, loss), ring, o, h, l, c, v, t, commit
    )
    fastk = NAN
    fastd = NAN
    if rc > n:
        hi, hi_idx = _extreme(ring, 0, fk, fk, cnt, pos, r, hi, hi_idx, True)
        lo, lo_idx = _extreme(ring, 0, fk, fk, cnt, pos, r, lo, lo_idx, False)
        if cnt + 1.0 >= fk:
            flat = _is_zero_scaled(hi - lo, abs(hi) + abs(lo))
            k = 0.0 if flat else (r - lo) / ((hi - lo) / 100.0)
            dval, dacc2 = _sma_core(fd, dc, dacc, ring, 1, dpos, k)
            if commit:
                ring[1, int(dpos)] = k
            if dc + 1.0 >= fd:
                fastk = k
                fastd = dval
            dc, dpos, dacc = dc + 1.0, _next_pos(dpos, fd), dacc2
        if commit:
            ring[0, int(pos)] = r
        cnt, pos = cnt + 1.0, _next_pos(pos, fk)
    return (n, rc, rprev, gain, loss, fk, fd, cnt, pos, hi, hi_idx, lo, lo_idx, dc, dpos, dacc), (
        fastk,
        fastd,
    )


@njit(cache=True, inline="always")
def mfi_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # rings: 0 positive flow, 1 negative flow (width n); flow of bar cnt>=1 at (cnt-1) % n.
    # The window sums are re-added every bar (as TA-Lib 0.8 does) rather than kept as running
    # sums, so a window whose flows have all left reads exactly 0, not a rounding residue.
    n, cnt, pos, prev = st
    tp = (h + l + c) / 3.0
    if cnt == 0.0:
        return (n, 1.0, 0.0, tp), (NAN,)
    ip = int(pos)
    diff = tp - prev
    flow = tp * v
    pos_flow = 0.0
    neg_flow = 0.0
    if _is_zero_scaled(diff, abs(tp) + abs(prev)):
        pass
    elif diff < 0:
        neg_flow = flow
    else:
        pos_flow = flow
    value = NAN
    if cnt >= n:
        psum = 0.0
        nsum = 0.0
        for j in range(ip):
            psum += ring[0, j]
            nsum += ring[1, j]
        psum += pos_flow
        nsum += neg_flow
        for j in range(ip + 1, int(n)):
            psum += ring[0, j]
            nsum += ring[1, j]
        total = psum + nsum
        value = 0.0 if total == 0.0 else 100.0 * (psum / total)
    if commit:
        ring[0, ip] = pos_flow
        ring[1, ip] = neg_flow
    return (n, cnt + 1.0, _next_pos(pos, n), tp), (value,)


@njit(cache=True, inline="always")
def obv_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    cnt, prev, total = st
    if cnt == 0.0:
        total = v
    elif c > prev:
        total = total + v
    elif c < prev:
        total = total - v
    return (cnt + 1.0, c, total), (total,)


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
def _atr_core(n, cnt, pc, acc, atr, h, l, c):  # noqa: E741
    """Advance TA-Lib's ATR: SMA of the first ``n`` true ranges (from bar 1), then Wilder."""
    if cnt == 0.0:
        return 1.0, c, 0.0, NAN
    tr = _true_range(h, l, pc)
    if cnt < n:
        acc = acc + tr
    elif cnt == n:
        acc = acc + tr
        atr = acc / n
    else:
        atr = atr * ((n - 1.0) / n) + tr * (1.0 / n)  # Wilder, division off the chain
    return cnt + 1.0, c, acc, atr


@njit(cache=True, inline="always")
def atr_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pc, acc, atr = st
    cnt, pc, acc, atr = _atr_core(n, cnt, pc, acc, atr, h, l, c)
    return (n, cnt, pc, acc, atr), (atr,)


@njit(cache=True, inline="always")
def natr_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pc, acc, atr = st
    cnt, pc, acc, atr = _atr_core(n, cnt, pc, acc, atr, h, l, c)
    value = NAN
    if cnt > n:
        value = (atr / c) * 100.0 if not _is_zero(c) else 0.0
    return (n, cnt, pc, acc, atr), (value,)


@njit(cache=True, inline="always")
def _window_moments(ring, n, pos, c, shift):
    """Return exact Σ(x − shift) and Σ(x − shift)² over the window (bar ``c`` at ``pos``)."""
    s1 = c - shift
    s2 = s1 * s1
    ip = int(pos)
    for j in range(ip):
        e = ring[0, j] - shift
        s1 += e
        s2 += e * e
    for j in range(ip + 1, int(n)):
        e = ring[0, j] - shift
        s1 += e
        s2 += e * e
    return s1, s2


@njit(cache=True, inline="always")
def bbands_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # The middle band is TA-Lib's running-sum SMA. σ (population) comes from running sums of
    # (x − K) and (x − K)², with K re-based to the window mean by an exact O(n) recompute every
    # n bars (amortised O(1)) and whenever the running variance has lost six digits to
    # cancellation (a window gone quiet after a move). The textbook E[x²] − E[x]² on raw prices
    # loses ~8 digits on index levels such as NIFTY's; TA-Lib 0.8 is precise here.
    n, up, dn, cnt, pos, acc, shift, s1, s2 = st
    mid, new_acc = _sma_core(n, cnt, acc, ring, 0, pos, c)
    if cnt == 0.0:
        shift = c
    d = c - shift
    if cnt >= n:  # the bar leaving the window sits at `pos`
        old = ring[0, int(pos)] - shift
        s1 = s1 + d - old
        s2 = s2 + d * d - old * old
    else:
        s1 = s1 + d
        s2 = s2 + d * d
    upper = NAN
    lower = NAN
    if cnt + 1.0 >= n:
        m1 = s1 / n
        mean2 = s2 / n
        var = mean2 - m1 * m1
        if pos == n - 1.0 or var < 1e-6 * mean2:
            shift = mid
            s1, s2 = _window_moments(ring, n, pos, c, shift)
            m1 = s1 / n
            var = s2 / n - m1 * m1
        std = math.sqrt(var) if var > 0.0 else 0.0
        upper = mid + up * std
        lower = mid - dn * std
    if commit:
        ring[0, int(pos)] = c
    return (n, up, dn, cnt + 1.0, _next_pos(pos, n), new_acc, shift, s1, s2), (upper, mid, lower)


@njit(cache=True, inline="always")
def adx_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, ph, pl, pc, pdm, mdm, tr, sum_dx, adx = st
    if cnt == 0.0:
        return (n, 1.0, h, l, c, 0.0, 0.0, 0.0, 0.0, NAN), (NAN,)
    diff_p = h - ph
    diff_m = pl - l
    if cnt >= n:
        mdm = mdm - mdm / n
        pdm = pdm - pdm / n
    if diff_m > 0 and diff_p < diff_m:
        mdm = mdm + diff_m
    elif diff_p > 0 and diff_p > diff_m:
        pdm = pdm + diff_p
    tr_now = _true_range(h, l, pc)
    tr = tr + tr_now if cnt < n else tr - (tr / n) + tr_now
    value = NAN
    if cnt >= n and not _is_zero(tr):
        minus_di = 100.0 * (mdm / tr)
        plus_di = 100.0 * (pdm / tr)
        total = minus_di + plus_di
        if not _is_zero(total):
            dx = 100.0 * (abs(minus_di - plus_di) / total)
            if cnt < 2.0 * n - 1.0 or cnt == 2.0 * n - 1.0:
                sum_dx = sum_dx + dx
            else:
                adx = ((adx * (n - 1.0)) + dx) / n
    if cnt == 2.0 * n - 1.0:
        adx = sum_dx / n
    if cnt >= 2.0 * n - 1.0:
        value = adx
    return (n, cnt + 1.0, h, l, c, pdm, mdm, tr, sum_dx, adx), (value,)


@njit(cache=True, inline="always")
def psar_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # TA-Lib's SAR: the first trend comes from the -DM of bars 0 and 1; the value reported for a
    # bar is the SAR that bar was tested against (the stop in force during the bar).
    acc, mx, cnt, is_long, sar, ep, af, ph, pl = st
    if cnt == 0.0:
        return (acc, mx, 1.0, 0.0, 0.0, 0.0, acc, h, l), (NAN,)
    if cnt == 1.0:
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
    return (acc, mx, cnt + 1.0, is_long, sar, ep, af, h, l), (out,)


# ---------------------------------------------------------------- indicators TA-Lib lacks


@njit(cache=True, inline="always")
def supertrend_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, m, cnt, pc, acc, atr, fu, fl, direction = st
    prev_close = pc
    cnt, pc, acc, atr = _atr_core(n, cnt, pc, acc, atr, h, l, c)
    line = NAN
    out_dir = NAN
    if cnt > n:
        mid = (h + l) / 2.0
        bu = mid + m * atr
        bl = mid - m * atr
        if cnt == n + 1.0:
            fu, fl, direction = bu, bl, -1.0
        else:
            fu = bu if (bu < fu or prev_close > fu) else fu
            fl = bl if (bl > fl or prev_close < fl) else fl
            if direction == -1.0:  # noqa: SIM108 (reads as the published rule)
                direction = 1.0 if c > fu else -1.0
            else:
                direction = -1.0 if c < fl else 1.0
        line = fl if direction == 1.0 else fu
        out_dir = direction
    return (n, m, cnt, pc, acc, atr, fu, fl, direction), (line, out_dir)


@njit(cache=True, inline="always")
def vwap_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    session, pv, vol = st
    if t != session:
        session, pv, vol = t, 0.0, 0.0
    pv = pv + ((h + l + c) / 3.0) * v
    vol = vol + v
    value = pv / vol if vol > 0.0 else NAN
    return (session, pv, vol), (value,)


@njit(cache=True, inline="always")
def donchian_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, cnt, pos, hi, hi_idx, lo, lo_idx = st
    hi, hi_idx = _extreme(ring, 0, n, n, cnt, pos, h, hi, hi_idx, True)
    lo, lo_idx = _extreme(ring, 1, n, n, cnt, pos, l, lo, lo_idx, False)
    upper = NAN
    middle = NAN
    lower = NAN
    if cnt + 1.0 >= n:
        upper, lower = hi, lo
        middle = (hi + lo) / 2.0
    if commit:
        ring[0, int(pos)] = h
        ring[1, int(pos)] = l
    return (n, cnt + 1.0, _next_pos(pos, n), hi, hi_idx, lo, lo_idx), (upper, middle, lower)


@njit(cache=True, inline="always")
def keltner_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    n, k, m, ec, ea, ep, an, acnt, apc, aacc, atr = st
    ec, ea, ep = _ema_core(n, k, ec, ea, ep, c)
    acnt, apc, aacc, atr = _atr_core(an, acnt, apc, aacc, atr, h, l, c)
    upper = NAN
    middle = NAN
    lower = NAN
    if ec >= n and acnt > an:
        middle = ep
        upper = ep + m * atr
        lower = ep - m * atr
    return (n, k, m, ec, ea, ep, an, acnt, apc, aacc, atr), (upper, middle, lower)


@njit(cache=True, inline="always")
def heikin_ashi_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    cnt, ha_open, ha_close = st
    new_close = (o + h + l + c) / 4.0
    new_open = (o + c) / 2.0 if cnt == 0.0 else (ha_open + ha_close) / 2.0
    new_high = max(h, new_open, new_close)
    new_low = min(l, new_open, new_close)
    return (cnt + 1.0, new_open, new_close), (new_open, new_high, new_low, new_close)


@njit(cache=True, inline="always")
def ichimoku_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
    # rings (width w): 0 high, 1 low, 2 raw span A, 3 raw span B
    (nt, nk, nb, disp, w, cnt, pos, th, thi, tl, tli, kh, khi, kl, kli, bh, bhi, bl, bli) = st
    th, thi = _extreme(ring, 0, w, nt, cnt, pos, h, th, thi, True)
    tl, tli = _extreme(ring, 1, w, nt, cnt, pos, l, tl, tli, False)
    kh, khi = _extreme(ring, 0, w, nk, cnt, pos, h, kh, khi, True)
    kl, kli = _extreme(ring, 1, w, nk, cnt, pos, l, kl, kli, False)
    bh, bhi = _extreme(ring, 0, w, nb, cnt, pos, h, bh, bhi, True)
    bl, bli = _extreme(ring, 1, w, nb, cnt, pos, l, bl, bli, False)
    tenkan = (th + tl) / 2.0 if cnt + 1.0 >= nt else NAN
    kijun = (kh + kl) / 2.0 if cnt + 1.0 >= nk else NAN
    span_a_raw = (tenkan + kijun) / 2.0
    span_b_raw = (bh + bl) / 2.0 if cnt + 1.0 >= nb else NAN
    span_a = NAN
    span_b = NAN
    if cnt >= disp:
        back = int(pos - disp)
        if back < 0:
            back += int(w)
        span_a = ring[2, back]
        span_b = ring[3, back]
    if commit:
        ip = int(pos)
        ring[0, ip] = h
        ring[1, ip] = l
        ring[2, ip] = span_a_raw
        ring[3, ip] = span_b_raw
    return (
        nt,
        nk,
        nb,
        disp,
        w,
        cnt + 1.0,
        _next_pos(pos, w),
        th,
        thi,
        tl,
        tli,
        kh,
        khi,
        kl,
        kli,
        bh,
        bhi,
        bl,
        bli,
    ), (tenkan, kijun, span_a, span_b)


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
def pivots_step(st, ring, o, h, l, c, v, t, commit):  # noqa: E741
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
