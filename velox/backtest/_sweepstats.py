"""A sweep's statistics straight from the kernel's records: no Fill or Trade objects.

:func:`sweep_stats` is ``ResearchResult(…).stats`` of one kernel run, bit for bit: the fill
records go through :func:`_trade_pass`, a compiled copy of
:func:`velox.engine.result.trades_from_fills`' arithmetic (the same floating-point operations in
the same order), and then :func:`velox.engine.result.summary_stats_arrays`, the one
implementation of the statistics, which ``summary_stats`` itself calls. Tests compare every
field with ``velox.research`` for long-only, long/short MIS (reversals in one fill, square-offs,
slippage), universes and cross-sectional strategies. numba is imported with this module, which
only :mod:`velox.backtest.optimize` imports; compiled code is cached on disk.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

if TYPE_CHECKING:
    from velox.backtest.research import Universe

__all__ = ["sweep_stats"]

#: The exit time of a trade still open at the end (as ``summary_stats`` marks it).
_OPEN = 2**62


@njit(cache=True)
def _trade_pass(rec, ns, columns):  # pragma: no cover - compiled
    """Return the round trips of fill records as ``trades_from_fills`` builds them.

    The same floating-point operations in the same order (per instrument column: a fill against
    the open trade closes it, partly or fully, the remainder opens the next; a fill with it adds
    to it), on the kernel's records instead of Fill objects. Returns per trade (opening order):
    qty, entry_price, pnl, charges, entry_ns, exit_ns (``2**62`` while open), and the total of
    every fill's charges summed in booking order.
    """
    n = rec.shape[0]
    qty = np.zeros(n, np.int64)
    entry_price = np.zeros(n)
    pnl = np.zeros(n)
    charges = np.zeros(n)
    entry_ns = np.zeros(n, np.int64)
    exit_ns = np.full(n, _OPEN, np.int64)
    open_trade = np.full(columns, -1, np.int64)
    open_qty = np.zeros(columns, np.int64)
    entry_value = np.zeros(columns)
    exit_qty = np.zeros(columns, np.int64)
    exit_value = np.zeros(columns)
    count = 0
    total = 0.0
    for k in range(n):
        col = np.int64(rec[k, 2])
        sign = 1 if rec[k, 3] > 0 else -1
        fill_qty = np.int64(rec[k, 4])
        price = rec[k, 5]
        fill_charges = rec[k, 6]
        total += fill_charges
        signed = sign * fill_qty
        remaining = fill_qty
        charge_rate = fill_charges / fill_qty
        t = open_trade[col]
        if t >= 0 and (open_qty[col] > 0) != (signed > 0):
            closing = min(abs(open_qty[col]), remaining)
            charges[t] += charge_rate * closing
            exit_qty[col] += closing
            exit_value[col] += closing * price
            entry_avg = entry_value[col] / qty[t]
            pnl[t] += closing * (price - entry_avg) * (1 if open_qty[col] > 0 else -1)
            open_qty[col] += closing if open_qty[col] < 0 else -closing
            remaining -= closing
            if open_qty[col] == 0:
                exit_ns[t] = ns[k]
                open_trade[col] = -1
                t = -1
        if remaining:
            if t < 0:
                t = count
                count += 1
                qty[t] = remaining
                entry_ns[t] = ns[k]
                entry_price[t] = price
                pnl[t] = 0.0
                charges[t] = charge_rate * remaining
                open_trade[col] = t
                open_qty[col] = sign * remaining
                entry_value[col] = remaining * price
                exit_qty[col] = 0
                exit_value[col] = 0.0
            else:
                entry_value[col] += remaining * price
                qty[t] += remaining
                entry_price[t] = entry_value[col] / qty[t]
                charges[t] += charge_rate * remaining
                open_qty[col] += sign * remaining
    return (qty[:count], entry_price[:count], pnl[:count], charges[:count], entry_ns[:count],
            exit_ns[:count], total)  # fmt: skip


#: Each universe's synthetic tick times (UTC ns, rows × 4 per instrument), made once.
_TICKS: weakref.WeakKeyDictionary[Universe, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()


def _fill_ns(universe: Universe, rec: np.ndarray) -> np.ndarray:
    """Return each fill's time as the Fill record holds it: UTC ns of its synthetic tick, cut
    to the microsecond (``datetime`` precision)."""
    out = np.empty(len(rec), np.int64)
    if not len(rec):
        return out
    ticks = _TICKS.get(universe)
    if ticks is None:
        ticks = {iid: universe.tick_times(iid, universe.rows[iid])
                 for iid in universe.instrument_ids}  # fmt: skip
        _TICKS[universe] = ticks
    cols = rec[:, 2].astype(np.int64)
    rows = rec[:, 0].astype(np.int64)
    tick = rec[:, 1].astype(np.int64)
    for j, iid in enumerate(universe.instrument_ids):
        mine = np.flatnonzero(cols == j) if len(universe.instrument_ids) > 1 else slice(None)
        local = rows[mine]
        if len(local):
            if len(universe.instrument_ids) > 1:  # universe rows → the instrument's own bars
                local = np.searchsorted(universe.rows[iid], local)
            out[mine] = ticks[iid][local, tick[mine]]
    return out // 1000 * 1000


def sweep_stats(universe: Universe, fills: np.ndarray, equity: np.ndarray) -> dict[str, float]:
    """Return ``ResearchResult(…).stats`` of one kernel run, without Fill or Trade objects.

    The kernel's fill records go through a compiled copy of ``trades_from_fills``'s arithmetic
    and then :func:`velox.engine.result.summary_stats_arrays`, which ``summary_stats`` itself
    calls: the same numbers, bit for bit (tested).
    """
    from velox.engine.result import summary_stats_arrays

    qty, entry_price, pnl, charges, entry_ns, exit_ns, total = _trade_pass(
        np.ascontiguousarray(fills, dtype=np.float64),
        _fill_ns(universe, fills),
        len(universe.instrument_ids),
    )
    closed = exit_ns != _OPEN
    return summary_stats_arrays(
        universe.close_event_ns(), equity, universe.initial_cash,
        (pnl - charges)[closed], (qty * entry_price)[closed], entry_ns, exit_ns, total,
    )  # fmt: skip
