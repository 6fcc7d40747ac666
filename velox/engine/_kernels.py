"""Compiled inner loops of a bar replay: fast-forward over events nothing reacts to.

A bar replay spends most events where nothing can happen: no order is working, no intraday
position needs the simulator, no strategy wants ticks, and the next closed bar changes no
target. The engine still owes those events two things: the equity curve (sampled at every bar
close) and the risk engine's daily loss / drawdown watch (the day's P&L at every tick). The
kernel here does exactly that work over a whole stretch in one compiled call and stops *before*
the first tick whose P&L report would trip a loss guard, so the Python event loop handles that
tick itself: the kill switch still trips on the exact tick, through the same code.

Exactness: the arithmetic mirrors ``velox.engine.Engine`` operation by operation (same order of
floating-point operations, no fast-math, no contraction), so every P&L, watermark and equity
value is bit-identical to what the per-event Python path computes (``tests/engine`` checks it
by replaying with and without the fast path).

numba is imported when a replay first needs the kernel (``import velox`` stays light) and the
compiled code is cached on disk next to this module.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["forward", "next_change", "max_drawdown"]


@njit(cache=True, nogil=True)
def forward(  # flat arguments: what numba compiles and dispatches fastest
    price, ts, symbol, close_pos, close_live, k, stop, cp,
    held, qty, basis, u, e0, realised, charges, u0,
    watch, lo, hi, peak, loss_at, drawdown_at, killed,
    out_ns, out_val,
):  # fmt: skip
    """Return the state after replaying events ``k`` … ``stop - 1`` with nothing reacting.

    Event ``i`` is, in the engine's order: the bar closes placed at tick position ``i`` (close
    events ``cp`` … with ``close_pos == i``; each live one samples the equity curve at
    ``ts[i]`` as ``e0 + u``, overwriting a sample at the same time), then tick ``i``. A tick of
    symbol ``held`` marks the position: ``u = qty * price - basis``; its day P&L is
    ``(realised + (u - u0)) - charges``. With ``watch`` set, a P&L outside ``[lo, hi]`` is
    reported to the risk engine as in ``Engine._check_equity`` (a new high resets the low);
    unless ``killed``, a report that would trip a loss guard ends the stretch *before* event
    ``i``: ``velox.risk.LossGuard.trip`` compiled, with its ``loss_at``/``drawdown_at``
    (``pnl <= loss_at`` or ``max(peak, pnl) - pnl >= drawdown_at``).

    Returns ``(i, cp, n_out, u, lo, hi, i_max, u_max, i_last, u_last)``: the first event
    not replayed, the first close event not replayed, the number of equity samples written to
    ``out_ns``/``out_val``, the marked P&L and watermarks after the stretch, and the reports the
    risk engine must be told of (the highest and the last, by tick index, -1 for none, with the
    marked value ``u`` at each), which leave it in the same state as every report would.
    """
    nc = close_pos.shape[0]
    n_out = 0
    i_max = -1
    u_max = 0.0
    p_max = 0.0
    i_last = -1
    u_last = 0.0
    i = k
    while i < stop:
        mine = symbol[i] == held
        report = False
        u_new = u
        pnl = 0.0
        if mine:
            u_new = qty * price[i] - basis
            pnl = (realised + (u_new - u0)) - charges
            report = watch and not (lo <= pnl <= hi)
            if report and not killed:
                top = peak if peak >= pnl else pnl
                if pnl <= loss_at or top - pnl >= drawdown_at:  # LossGuard.trip
                    break
        while cp < nc and close_pos[cp] == i:
            if close_live[cp]:
                t = ts[i]
                value = e0 + u
                if n_out > 0 and out_ns[n_out - 1] == t:
                    out_val[n_out - 1] = value
                else:
                    out_ns[n_out] = t
                    out_val[n_out] = value
                    n_out += 1
            cp += 1
        if mine:
            u = u_new
            if report:
                if pnl > hi:
                    hi = pnl
                    lo = pnl
                else:
                    lo = pnl
                if pnl > peak:
                    peak = pnl
                if i_max < 0 or pnl > p_max:
                    i_max = i
                    u_max = u
                    p_max = pnl
                i_last = i
                u_last = u
        i += 1
    return i, cp, n_out, u, lo, hi, i_max, u_max, i_last, u_last


@njit(cache=True)  # not nogil: see below
def next_change(values, start, applied):
    """Return the first row ``>= start`` whose value is not NaN and differs from ``applied``.

    Called once per order in a replay, for a short scan: releasing the GIL here (``nogil``)
    cost ~15 µs per call whenever a second thread exists (the engine's watchdog), a quarter
    of an order's round trip; holding it costs nothing.

    The rows of a precomputed signal where the default ``Strategy.on_bar`` would act (``applied``
    is the weight last passed to ``target_weight``, NaN if none); ``len(values)`` if none.
    """
    n = values.shape[0]
    for r in range(start, n):
        v = values[r]
        if v == v and v != applied:
            return r
    return n


def empty_samples(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return scratch arrays for up to ``n`` equity samples (times, values)."""
    return np.empty(max(n, 1), np.int64), np.empty(max(n, 1), np.float64)


@njit(cache=True, nogil=True)
def max_drawdown(values, initial_cash):  # pragma: no cover - compiled
    """Return max((peak − v) / peak) over ``initial_cash`` followed by ``values``, the peak
    running: ``velox.engine.result._max_drawdown`` in one pass (the same divisions, so the
    same double; NaN if a value is NaN, as ``np.max`` says)."""
    peak = initial_cash
    worst = (peak - initial_cash) / peak
    for v in values:
        if v != v:
            return np.nan
        if v > peak:
            peak = v
        dd = (peak - v) / peak
        if dd > worst:
            worst = dd
    return worst
