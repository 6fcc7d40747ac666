"""The compiled hot loop of a vectorised backtest: target weights → orders → fills → equity.

:func:`simulate` walks the bars of a whole universe once (rows = bar times, columns =
instruments sharing one cash pool) and does what the event-driven engine and its simulated
broker do for a vectorisable strategy, operation by operation:

* **close event of row r** (at the first tick after the bar, the next row's open): marks at the
  closes, samples the account equity (``initial + realised − charges + unrealised``), then for
  each instrument, in column order, whose weight changed from the one last applied: the
  quantity ``int(weight × strategy equity / close)`` rounded towards zero to whole lots (the
  engine's ``Context.target_weight`` → ``target_qty``), less the position; the simulator's RMS
  checks it (funds and margin against the caller's cash, CNC holdings, MIS blocked after the
  square-off time); a refused order forgets the applied weight, so the next bar tries again;
* **the next row's open tick**: the order fills at ``slippage(open)``; the fill's charges are
  ``velox.costs.CostModel.fill_charges`` (brokerage with its per-order cap, STT and stamp duty
  on their side only, exchange, SEBI, GST), summed as ``ChargeBreakdown.total`` sums them
  (whole paise exactly, else ``math.fsum``; both re-implemented here bit for bit);
* **MIS square-off**: at the first tick at or after the square-off time each day (tick ``q`` of
  a row, given by the caller), every MIS position is closed at ``slippage(tick price)``.

Floating-point operations follow the Python code they mirror in the same order (no fast-math),
so positions, cash and charges match the engine's to the bit; tests compare them.

A sweep calls :func:`simulate` once per parameter combination with that combination's weights
and the same prices and rates: no Python runs per bar. numba is imported with this module, which
only ``velox.backtest`` imports, on first use; compiled code is cached on disk.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["simulate", "fsum", "charges_total", "snap", "slipped", "FILL_FIELDS", "ORDER_FIELDS"]

#: Columns of the fill records (float64 matrix) returned by :func:`simulate`.
FILL_FIELDS = (
    "row", "tick", "col", "side", "qty", "price", "charges", "brokerage", "stt", "exchange",
    "sebi", "stamp", "gst", "order",
)  # fmt: skip
#: Columns of the order records: placed at the close event of ``row`` (``row = -1``: the
#: square-off order of the row in ``fill_row``), ``status`` 0 filled, 1 refused, 2 left working
#: at the end, ``reason`` 0 none, 1 funds, 2 CNC holdings, 3 MIS after square-off, 4 the risk
#: engine's order throttle.
ORDER_FIELDS = ("row", "col", "side", "qty", "status", "reason", "squareoff", "fill_row")

_PAISE_LIMIT = 1e13
_EPS = 1e-9

# slippage kinds
NO_SLIPPAGE, TICK_SLIPPAGE, BPS_SLIPPAGE = 0, 1, 2


@njit(cache=True)
def fsum(values):  # pragma: no cover - compiled
    """Return ``math.fsum(values)``: CPython's exactly rounded sum (Shewchuk's partials)."""
    partials = np.empty(len(values) + 2)
    n = 0
    for v in values:
        x = v
        i = 0
        for j in range(n):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        n = i
        partials[n] = x
        n += 1
    hi = 0.0
    if n > 0:
        n -= 1
        hi = partials[n]
        lo = 0.0
        while n > 0:
            x = hi
            n -= 1
            y = partials[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@njit(cache=True)
def charges_total(values):  # pragma: no cover - compiled
    """Return ``velox.costs._sum(values)``: whole paise added exactly, else :func:`fsum`."""
    paise = 0
    for v in values:
        if not (-_PAISE_LIMIT < v < _PAISE_LIMIT):
            return fsum(values)
        k = np.rint(v * 100.0)  # Python's round(): half to even
        if k / 100.0 != v:
            return fsum(values)
        paise += np.int64(k)
    return paise / 100.0


@njit(cache=True)
def snap(price, tick, pow10, mode):  # pragma: no cover - compiled
    """Return ``velox.types.snap_to_tick(price, tick, mode)``; mode 0 nearest, 1 down, 2 up.

    ``pow10`` is 10 ** ``velox.types._decimals(tick)``. Python's ``round(k * tick, d)`` is the
    double nearest the decimal rounding; ``k * tick`` lies within float noise of a multiple of
    the tick (at most ``d - 2`` decimals), so ``rint(k * tick * 10**d) / 10**d`` — an exact
    integer over an exact power of ten, divided with one correct rounding — is that double.
    """
    if tick <= 0.0:
        return price
    n = price / tick
    nearest = np.rint(n)
    if abs(n - nearest) < 1e-6 or mode == 0:
        k = nearest
    elif mode == 1:
        k = math.floor(n)
    else:
        k = math.ceil(n)
    return np.rint(k * tick * pow10) / pow10


@njit(cache=True)
def slipped(side, price, tick, pow10, kind, amount):  # pragma: no cover - compiled
    """Return the fill price of a market order (``velox.costs`` NoSlippage/TickSlippage/
    BpsSlippage ``adjust``): ``side`` +1 buy, −1 sell."""
    adverse = 2 if side > 0 else 1
    if kind == NO_SLIPPAGE:
        return snap(price, tick, pow10, adverse)
    if kind == TICK_SLIPPAGE:
        base = snap(price, tick, pow10, adverse)
        moved = snap(base + amount * tick * side, tick, pow10, 0)
    else:
        moved = price * (1.0 + side * amount / 10_000.0)
        moved = snap(max(moved, 1e-12), tick, pow10, adverse)
    if moved > 0:
        return moved
    return tick if tick > 0 else moved


@njit(cache=True)
def _fill_charges(side, qty, price, rates, broker, out):  # pragma: no cover - compiled
    """Write ``CostModel.fill_charges`` (brokerage, stt, exchange, sebi, stamp, gst) to ``out``
    and return its total; ``rates`` as ``CostModel._rates``, ``broker`` (flat, percent, cap,
    order cap) with ``inf`` for none."""
    value = qty * price
    if value <= 0:
        brokerage = 0.0
    else:
        brokerage = broker[0] + broker[1] * value / 100.0
        if broker[2] < np.inf:
            brokerage = min(brokerage, broker[2])
    if broker[3] < np.inf:
        brokerage = max(0.0, min(brokerage, broker[3] - 0.0))
    buying = side > 0
    exchange = value * rates[2]
    sebi = value * rates[3]
    out[0] = brokerage
    out[1] = value * (rates[0] if buying else rates[1])
    out[2] = exchange
    out[3] = sebi
    out[4] = value * (rates[4] if buying else rates[5])
    out[5] = (brokerage + exchange) * rates[6] + sebi * rates[7]
    return charges_total(out)


@njit(cache=True)
def simulate(  # pragma: no cover - compiled
    opens, closes, tick_prices, weights, day, rates, broker, lot, tick, pow10, mis,
    slip_kind, slip_amount, capital, initial_cash, mis_margin, square_off_charge,
    square_tick, mis_blocked, place_ns, exchange_id, throttle_allowed, throttle_window,
    capacity,
):  # fmt: skip
    """Return (fills, orders, equity, n_fills, n_orders) of a vectorised backtest.

    Parameters (``n`` rows, ``m`` columns)
    ----------
    opens, closes : (n, m)
        Each bar's open (the fill reference of orders decided at the previous close) and close
        (marks and sizing); NaN where an instrument has no bar at that time.
    tick_prices : (n, m)
        Price of the tick at which the day's square-off happens (``square_tick``).
    weights : (n, m)
        Target weights decided at each row's close; NaN: no opinion, nothing changes.
    day : (n,) int
        Row → index into ``rates`` of the row's trade date.
    rates : (days, m, 8)
        ``CostModel._rates`` of each column's segment and exchange on each date.
    broker : (m, 4)
        Brokerage rule per column: flat, percent, cap, order cap (``inf`` for none).
    lot, tick, pow10, mis : (m,)
        Lot size, tick size, 10 ** price decimals, whether the column trades MIS (else CNC).
    slip_kind, slip_amount
        0 none, 1 ticks (``amount`` ticks), 2 basis points (``amount`` bps).
    capital, initial_cash
        The strategy's capital (sizing) and the account's cash (equity curve, funds).
    mis_margin, square_off_charge
        ``SimConfig.mis_margin``; rupees (GST included) added to each square-off fill.
    square_tick : (n, m) int8
        Tick (0–3) of the row at which that column's MIS position is squared off, −1 none.
    mis_blocked : (n + 1,) bool
        Whether an MIS order decided at the close of row ``r - 1`` (placed at row ``r``'s first
        tick; the last row's at its last tick) comes at or after that day's square-off time
        (the simulator refuses it).
    place_ns : (n,) int, exchange_id : (m,) int, throttle_allowed, throttle_window
        The risk engine's order throttle (``max_orders_per_second``): at most
        ``throttle_allowed`` orders sent per exchange in any ``throttle_window`` ns, an order
        decided at row ``r``'s close being sent at ``place_ns[r]``. A throttled order is
        refused before the broker sees it and, as in the engine, not retried (the weight counts
        as applied).
    capacity
        Room for this many orders (and so fills); when a backtest needs more, it stops and
        returns ``n_orders = -1``: call again with more (``n * m`` + square-offs always fits).
    """
    n, m = weights.shape
    fills = np.empty((capacity, 14))
    orders = np.empty((capacity, 8))
    equity = np.empty(n)
    n_fills = 0
    n_orders = 0
    pos = np.zeros(m, np.int64)
    avg = np.zeros(m)
    pos_realised = np.zeros(m)
    last = np.full(m, np.nan)
    applied = np.full(m, np.nan)
    pending = np.zeros(m, np.int64)  # signed quantity of the working order (0: none)
    pending_id = np.full(m, -1, np.int64)
    pending_block = np.zeros(m)
    blocked = 0.0
    realised = 0.0  # account (= the strategy's book: one strategy)
    charges = 0.0
    cash = initial_cash  # the simulator's cash
    parts = np.empty(6)
    n_exchanges = 1
    for j in range(m):
        n_exchanges = max(n_exchanges, exchange_id[j] + 1)
    sent = np.full((n_exchanges, max(throttle_allowed, 1)), np.iinfo(np.int64).min)
    sent_next = np.zeros(n_exchanges, np.int64)  # ring position of the oldest kept send
    for r in range(n):
        # -- the row's ticks: pending orders fill at the open, the square-off at its tick ----
        for q in range(4):
            for j in range(m):
                if q == 0 and pending[j] != 0 and opens[r, j] == opens[r, j]:
                    signed = pending[j]
                    ref = opens[r, j]
                    extra = 0.0
                    oid = pending_id[j]
                    pending[j] = 0
                    blocked -= pending_block[j]
                    pending_block[j] = 0.0
                    if abs(blocked) < 1e-6:
                        blocked = 0.0
                elif square_tick[r, j] == q and mis[j] and pos[j] != 0:
                    if n_orders == capacity:
                        return fills[:0], orders[:0], equity, 0, -1
                    signed = -pos[j]
                    ref = tick_prices[r, j]
                    extra = square_off_charge
                    orders[n_orders, 0] = -1.0
                    orders[n_orders, 1] = j
                    orders[n_orders, 2] = 1.0 if signed > 0 else -1.0
                    orders[n_orders, 3] = abs(signed)
                    orders[n_orders, 4] = 0.0
                    orders[n_orders, 5] = 0.0
                    orders[n_orders, 6] = 1.0
                    orders[n_orders, 7] = r
                    oid = n_orders
                    n_orders += 1
                else:
                    continue
                side = 1 if signed > 0 else -1
                qty = abs(signed)
                price = slipped(side, ref, tick[j], pow10[j], slip_kind, slip_amount)
                total = _fill_charges(side, float(qty), price, rates[day[r], j], broker[j], parts)
                total = total + extra
                # apply_fill: average price on adds, realised P&L on reductions
                p0 = pos[j]
                a0 = avg[j]
                rz = pos_realised[j]
                if p0 == 0 or (p0 > 0) == (signed > 0):
                    p1 = p0 + signed
                    a1 = (a0 * abs(p0) + price * qty) / abs(p1)
                else:
                    closed_qty = min(abs(p0), qty)
                    rz = rz + closed_qty * (price - a0) * (1 if p0 > 0 else -1)
                    p1 = p0 + signed
                    if p1 == 0:
                        a1 = 0.0
                    elif (p1 > 0) != (p0 > 0):
                        a1 = price
                    else:
                        a1 = a0
                delta_realised = rz - pos_realised[j]
                realised += delta_realised
                charges += total
                if mis[j]:
                    cash += delta_realised
                else:
                    cash -= side * qty * price
                cash -= total
                pos[j], avg[j], pos_realised[j] = p1, a1, rz
                orders[oid, 4] = 0.0
                orders[oid, 7] = r
                f = fills[n_fills]
                f[0] = r
                f[1] = q
                f[2] = j
                f[3] = side
                f[4] = qty
                f[5] = price
                f[6] = total
                f[7] = parts[0]
                f[8] = parts[1]
                f[9] = parts[2]
                f[10] = parts[3]
                f[11] = parts[4]
                f[12] = parts[5]
                f[13] = oid
                n_fills += 1
        # -- the close event: marks, the equity sample, then the strategy's orders ----------
        unrealised = 0.0
        for j in range(m):
            c = closes[r, j]
            if c == c:
                last[j] = c
            if pos[j] != 0 and last[j] == last[j]:
                unrealised += pos[j] * last[j] - pos[j] * avg[j]
        equity[r] = initial_cash + realised - charges + unrealised
        # (an order decided at the last close is placed, and never fills: left working)
        for j in range(m):
            w = weights[r, j]
            if w != w or w == applied[j] or closes[r, j] != closes[r, j]:
                continue
            price = last[j]
            applied[j] = w
            book_u = 0.0
            for k in range(m):
                if pos[k] != 0 and last[k] == last[k]:
                    book_u += pos[k] * (last[k] - avg[k])
            strategy_equity = capital + realised - charges + book_u
            raw = int(w * strategy_equity / price)
            lt = lot[j]
            target = raw // lt * lt if raw >= 0 else -((-raw) // lt * lt)
            delta = target - pos[j]
            if delta == 0:
                continue
            if n_orders == capacity:
                return fills[:0], orders[:0], equity, 0, -1
            qty = abs(delta)
            side = 1 if delta > 0 else -1
            reason = 0
            required = 0.0
            x = exchange_id[j]
            now = place_ns[r]
            if throttle_allowed > 0:
                # the oldest of the last ``allowed`` sends still inside (now - window, now]
                if sent[x, sent_next[x]] > now - throttle_window:
                    reason = 4
                else:
                    sent[x, sent_next[x]] = now
                    sent_next[x] = (sent_next[x] + 1) % throttle_allowed
            if reason:
                pass
            elif mis[j]:
                if mis_blocked[r + 1]:
                    reason = 3
                else:
                    current = pos[j]
                    after = current + delta
                    if current == 0 or (after > 0) != (current > 0):
                        opening = after
                    elif abs(after) > abs(current):
                        opening = after - current
                    else:
                        opening = 0
                    required = abs(opening) * price * mis_margin if opening != 0 else 0.0
            elif side < 0:
                if qty > pos[j]:
                    reason = 2
            else:
                required = qty * price
            if reason == 0:  # even a free order: the RMS refuses all once cash is below margin
                used = blocked
                for k in range(m):
                    if mis[k] and pos[k] != 0:
                        used += abs(pos[k]) * avg[k] * mis_margin
                if required > cash - used + _EPS:
                    reason = 1
            o = orders[n_orders]
            o[0] = r
            o[1] = j
            o[2] = side
            o[3] = qty
            o[4] = 1.0 if reason else 2.0
            o[5] = reason
            o[6] = 0.0
            o[7] = -1.0
            if reason == 4:
                pass  # refused by the risk engine: the weight stays applied (not retried)
            elif reason:
                applied[j] = np.nan  # refused by the broker: the next bar tries again
            else:
                pending[j] = delta
                pending_id[j] = n_orders
                pending_block[j] = required
                blocked += required
            n_orders += 1
    return fills[:n_fills].copy(), orders[:n_orders].copy(), equity, n_fills, n_orders
