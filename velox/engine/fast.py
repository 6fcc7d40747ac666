"""The fast path of a bar replay: stretches of events nothing reacts to, replayed at once.

:class:`FastForward` is used by :meth:`velox.engine.core.Engine._replay` only; it reads and
updates the engine's marking and risk state directly, because it stands in for the event loop
over a stretch and must leave that state exactly as the loop would (tested bit for bit in
``tests/engine/test_fast_forward.py``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from velox.calendar import IST_OFFSET_NS
from velox.engine._time import DAY_NS as _DAY_NS
from velox.engine._time import dt as _dt
from velox.feeds.bar_replay import BarReplay

if TYPE_CHECKING:
    from velox.engine.core import Engine, _Sub

__all__ = ["FastForward"]

_SHORT_STRETCH = 16  # ticks FastForward marks in Python rather than in the compiled kernel


class FastForward:
    """The fast path of :meth:`Engine._run_bars`: replay stretches nothing reacts to at once.

    A stretch starts at an event where no order is working, no intraday position needs the
    simulator, no postback is pending, at most one instrument is held, and the engine's day is
    the tick's day. It ends before the first event where Python must act: a bar close that a
    strategy reacts to (any close for an event strategy; for a precomputed signal, the next row
    whose weight differs from the one applied), the first tick of a new day, the next timer, or
    a tick whose P&L report would trip a loss guard (``velox.engine._kernels.forward`` stops
    there so the kill switch trips through the ordinary path, on that exact tick). In between,
    the kernel does what those events would have done, in the same floating-point operations:
    equity samples at bar closes, marks of the held position, the risk watermarks; the engine
    then tells the risk engine of the reports that matter and sets the last prices and counts.
    """

    def __init__(
        self,
        engine: Engine,
        feed: BarReplay,
        subs: list[_Sub | None],
        close_pos: list[int],
    ) -> None:
        from velox.engine import _kernels

        self.engine = engine
        self.feed = feed
        self.kernel = _kernels.forward
        self.next_change = _kernels.next_change
        self.ids = feed.instrument_ids
        self.index_of = {iid: j for j, iid in enumerate(self.ids)}
        # numpy columns for the kernel, the same as lists for reading single values
        self.a_price, self.a_ts, self.a_symbol = feed.price, feed.ts_ns, feed.symbol
        self.a_close_pos, self.close_key = feed.close_positions, feed.close_key
        self.ts, self.price = feed.ts_ns.item, feed.price.item  # single values, as Python types
        self.volume = feed.volume.item
        self.close_pos = close_pos
        self.n = len(feed)
        self.close_live = np.array([sub is not None for sub in subs], dtype=bool)[self.close_key]
        self.subs = subs
        self.out_ns, self.out_val = _kernels.empty_samples(len(close_pos))
        day = (feed.ts_ns + IST_OFFSET_NS) // _DAY_NS
        self.day_starts = (np.flatnonzero(np.diff(day)) + 1).tolist()
        self.day_end = 0  # first tick of the next day after the last stretch's start
        self.timer_ns = -1  # the engine's next timer, and the first tick at or after it
        self.timer_pos = 0
        # per subscribed key: the global close-event index of each of its rows, and who reacts
        self.watched = []
        for n_key, sub in enumerate(subs):
            if sub is not None:
                rows = np.flatnonzero(self.close_key == n_key).tolist()
                self.watched.append((sub, feed.close_keys[n_key], rows))
        self.single = len(self.ids) == 1
        self.single_key = len(feed.close_keys) == 1
        # The only subscription, when every strategy on it is an event strategy: then every
        # close is a reaction, the next one is the next close event (no search needed).
        self.every_close: _Sub | None = None
        if self.single_key and len(self.watched) == 1:
            sub, key, _ = self.watched[0]
            if not any(r.plain and key in r.arrays for r in sub.runners):
                self.every_close = sub
        # One instrument, one frame: the ticks are the bars' four ticks each, so the stretch
        # before close event r (at tick 4r + 4) is bar r's ticks, on the path of
        # velox.feeds.synthesize_ticks (open, high, low, close; low before high for a down
        # bar), whose extremes with or without the open are the bar's high and low (checked:
        # stored bars could break it).
        self.bar_ticks = False
        if (
            self.single
            and self.single_key
            and self.n == 4 * len(close_pos)
            and np.array_equal(feed.close_positions, np.arange(4, self.n + 1, 4))
        ):
            frame = next(iter(feed.frames().values()))
            o, h, lo, c = (frame[x].to_numpy(np.float64) for x in ("open", "high", "low", "close"))
            t0, t1, t2, t3 = feed.price.reshape(-1, 4).T
            up = c >= o
            path = (t0 == o) & (t1 == np.where(up, h, lo)) & (t2 == np.where(up, lo, h)) & (t3 == c)
            inside = (lo <= o) & (lo <= c) & (o <= h) & (c <= h)  # so h, lo are the extremes
            self.bar_ticks = bool((path & inside).all())
        # objects that live as long as the engine, and the loss guards' trip points, computed
        # as RiskEngine.on_equity computes them
        self.account = engine.oms.account
        self.risk_state = engine.risk.state
        self.watch = engine._watch_equity
        self.advance = feed.clock.advance_to
        from velox.feeds import ReplayClock

        self.replay_clock = type(feed.clock) is ReplayClock
        self.guard = engine.risk.guard
        # reports noted for the risk engine, not told yet (see _report)
        self.pending: tuple[int, float, float, int, float, float, float, float] | None = None

    def _reaction(self, k: int) -> int:
        """Return the tick position of the first bar close from ``k`` on that a strategy reacts
        to (``n`` if none): every close for event strategies, changes of precomputed signals."""
        sub = self.every_close
        if sub is not None:
            row = sub.count  # the only key: its rows are the close events
            if row < len(self.close_pos) and any(r.alive for r in sub.runners):
                return self.close_pos[row]
            return self.n
        best = len(self.close_pos)
        for sub, key, rows in self.watched:
            row = sub.count  # the next row of this key to close
            if row >= len(rows):
                continue
            for runner in sub.runners:
                if not runner.alive:
                    continue
                values = runner.arrays.get(key) if runner.plain else None
                if values is None:
                    r = row
                else:
                    r = self.next_change(values, row, runner.ctx.applied_weight(key[0]))
                    if r >= len(rows):
                        continue
                g = rows[r]
                if g < best:
                    best = g
        return self.close_pos[best] if best < len(self.close_pos) else self.n

    def run(self, k: int, cp: int) -> tuple[int, int]:
        """Replay events ``k`` … up to where Python must act; return (next event, next close)."""
        self._flush()  # the kernel starts from the risk engine's state
        try:
            return self._run(k, cp)
        finally:
            self._flush()

    def _run(self, k: int, cp: int) -> tuple[int, int]:
        engine = self.engine
        mtm = engine._mtm
        if k >= self.day_end:
            d = bisect_right(self.day_starts, k)
            self.day_end = self.day_starts[d] if d < len(self.day_starts) else self.n
        if engine._next_timer != self.timer_ns:
            self.timer_ns = engine._next_timer
            self.timer_pos = int(np.searchsorted(self.a_ts, self.timer_ns, side="left"))
        stop = self._reaction(k)
        if self.day_end < stop:
            stop = self.day_end
        if self.timer_pos < stop:
            stop = self.timer_pos
        if stop <= k:
            return k, cp
        if mtm:
            if len(mtm) > 1:
                return k, cp
            ((held_id, (q, basis)),) = mtm.items()
            held, qty = self.index_of.get(held_id, -2), float(q)
            if (
                stop - k <= _SHORT_STRETCH
                and self.single
                and (cp >= len(self.close_pos) or self.close_pos[cp] >= stop)
                and self._mark_quietly(k, stop, held_id, qty, basis)
            ):
                self._settle(k, stop)
                return stop, cp
        elif cp >= len(self.close_pos) or self.close_pos[cp] >= stop:
            # flat and no bar closes on the way (an on_bar strategy between two bars): the
            # ticks only move the last prices and the clock, no P&L changes, nothing to sample
            self._settle(k, stop)
            return stop, cp
        else:
            held_id, held, qty, basis = None, -1, 0.0, 0.0
        acct = self.account
        r0, u0, c0 = engine._base
        realised, charges = acct.realised - r0, acct.charges - c0
        state = self.risk_state
        j, cp_end, n_out, u, lo, hi, i_max, u_max, i_last, u_last = self.kernel(
            self.a_price, self.a_ts, self.a_symbol, self.a_close_pos, self.close_live, k, stop, cp,
            held, qty, basis, engine._unrealised,
            engine.initial_cash + acct.realised - acct.charges, realised, charges, u0,
            self.watch, engine._risk_lo, engine._risk_hi, state.peak_equity,
            self.guard.loss_at, self.guard.drawdown_at, state.killed, self.out_ns, self.out_val,
        )  # fmt: skip
        if j == k:
            return k, cp
        if n_out:
            times = self.out_ns[:n_out].tolist()
            values = self.out_val[:n_out].tolist()
            if engine.equity_ns and engine.equity_ns[-1] == times[0]:
                engine.equity_values[-1] = values[0]
                times, values = times[1:], values[1:]
            engine.equity_ns.extend(times)
            engine.equity_values.extend(values)
        if cp_end > cp:
            if self.single_key:
                if self.watched:
                    self.watched[0][0].count += cp_end - cp
            else:
                counts = np.bincount(self.close_key[cp:cp_end], minlength=len(self.subs))
                for sub, count in zip(self.subs, counts.tolist(), strict=True):
                    if sub is not None:
                        sub.count += count
        if held >= 0:
            upnl = engine._upnl
            upnl[held_id] = u  # type: ignore[index]
            engine._unrealised = sum(upnl.values(), 0.0)
        engine._risk_lo, engine._risk_hi = lo, hi
        if i_last >= 0:
            p_max = (realised + (u_max - u0)) - charges  # the highest report's P&L
            self._report(i_max, u_max, p_max, i_last, u_last, realised, charges, u0)
        self._settle(k, j)
        return j, cp_end

    def bars(self, k: int, cp: int) -> tuple[int, int]:
        """Replay bar by bar from event ``k`` while event strategies react to every close.

        See :meth:`_bars`; the risk engine hears the reports of all its bars on the way out.
        """
        try:
            return self._bars(k, cp)
        finally:
            self._flush()
            self.advance(self.engine._now_ns)  # a replay clock catches up (see _bars)

    def _bars(self, k: int, cp: int) -> tuple[int, int]:
        """Replay bar by bar from event ``k`` (see :meth:`bars`).

        The loop of :meth:`Engine._replay` and :meth:`run` fused for the common event-driven
        backtest (one instrument, one subscription, ``on_bar`` on every close): the ticks up
        to the next close are settled here (flat) or marked here (one held instrument, a few
        ticks, no loss guard tripped), then the close event runs, and so on. An order a
        handler placed meets the next tick here through :meth:`Engine._price`, as in the event
        loop. Anything else (an order still working after that tick, a new day, a timer, a
        trip, a longer stretch) goes back to :meth:`run` or to the event loop, which resume at
        the returned event as if they had run all along; the closes at that event are done.

        A held position is marked over a whole bar from the bar alone when no report is due:
        the day's P&L is monotone in the price for a given position (each floating-point step
        is), so every tick's P&L lies between those at the bar's low and high; when both are
        inside the reported range, no tick reports (what the per-tick loop would find) and the
        mark is the close's. Only fills, a new day and reports change the figures that needs,
        and none happens here without leaving this loop or going through :meth:`_mark_quietly`.
        """
        engine = self.engine
        sub = self.every_close
        assert sub is not None
        runners = sub.runners
        close_pos, nc, n = self.close_pos, len(self.close_pos), self.n
        ts, advance = self.ts, self.advance
        # A replay clock only keeps the latest time, which nothing reads while this runs: it
        # moves on the way out. A pacing clock (paper) waits for each close's time.
        pace = None if self.replay_clock else advance
        iid = self.ids[0]
        unseen, last, mtm, upnl = engine._unseen, engine._last, engine._mtm, engine._upnl
        key = self.watched[0][1]
        close_event, halt = engine._close_event, engine._stop
        # bar r's four ticks are the stretch before close r: its high, low and close bound them
        bar_ticks = self.bar_ticks and sub.ohlcv is not None
        opens, highs, lows, closes = sub.ohlcv[:4] if bar_ticks else ((), (), (), ())  # type: ignore[index]
        if k >= self.day_end:
            d = bisect_right(self.day_starts, k)
            self.day_end = self.day_starts[d] if d < len(self.day_starts) else n
        if engine._next_timer != self.timer_ns:
            self.timer_ns = engine._next_timer
            self.timer_pos = int(np.searchsorted(self.a_ts, self.timer_ns, side="left"))
        # until this returns, no timer runs and the day does not change: the stretches end here
        day_end = self.day_end
        limit = min(day_end, self.timer_pos)
        watch = self.watch
        qty = basis = realised = charges = u0 = lo = hi = 0.0
        known = False  # the held position and the day's figures are in the locals above
        while True:
            if engine._watch or engine._postbacks:
                if not (bar_ticks and k == 4 * cp and k < limit):
                    return k, cp
                # An order the close's handler placed meets this tick (bar cp's open), which
                # the event loop would hand to _price next: so does this loop.
                self._flush()  # _price may report to the risk engine itself
                engine._price(iid, ts(k), self.price(k), self.volume(k), None)
                known = False
                k += 1
                if engine._watch or engine._postbacks:
                    return k, cp
            stop = close_pos[cp] if cp < nc else n
            if stop > limit or stop - k > _SHORT_STRETCH:
                return self.run(k, cp)
            # the stretch is bar cp's ticks, or all but its open: its high and low are there
            whole = bar_ticks and 0 <= k - 4 * cp <= 1
            if mtm:
                if not known:
                    if len(mtm) > 1 or iid not in mtm:
                        return self.run(k, cp)
                    q, basis = mtm[iid]
                    qty = float(q)
                    r0, u0, c0 = engine._base
                    realised, charges = self.account.realised - r0, self.account.charges - c0
                    lo, hi = engine._risk_lo, engine._risk_hi
                    known = True
                if whole:
                    high, low = (highs[cp], lows[cp]) if qty > 0 else (lows[cp], highs[cp])
                    whole = not watch or (
                        lo <= (realised + ((qty * low - basis) - u0)) - charges
                        and (realised + ((qty * high - basis) - u0)) - charges <= hi
                    )
                if whole:  # no report: the mark is the close's
                    upnl[iid] = qty * closes[cp] - basis
                    engine._unrealised = sum(upnl.values(), 0.0)
                else:
                    known = False  # reports move the reported range
                    path = None  # the stretch's tick prices: bar cp's path (see BarReplay)
                    if bar_ticks and 0 <= k - 4 * cp <= 1:
                        bo, bh, bl, bc = opens[cp], highs[cp], lows[cp], closes[cp]
                        path = ((bo, bh, bl, bc) if bc >= bo else (bo, bl, bh, bc))[k - 4 * cp :]
                    if not self._mark_quietly(k, stop, iid, qty, basis, path):
                        j, cp = self.run(k, cp)  # a loss guard trips: the kernel stops before
                        if j != stop:
                            return j, cp
            unseen[iid] = stop - 1  # settle the stretch (see _settle)
            last[iid] = closes[cp] if whole else self.price(stop - 1)
            k = stop
            if k >= n:
                ns = ts(n - 1)  # the clock and the engine time at the last tick
                advance(ns)
                engine._now_ns = ns
                return k, cp
            if not cp & 255 and halt.is_set():  # Engine.stop, looked for every 256 bars
                return k, cp
            for runner in runners:
                if runner.alive:
                    break
            else:
                return k, cp
            ns = ts(k)
            if pace is not None:
                pace(ns)
            engine._now_ns = ns
            while cp < nc and close_pos[cp] == k:
                close_event(sub, key, cp)  # one key: close event cp is its row cp
                cp += 1
            if k == day_end:  # a new day's first tick: the event loop starts the day
                return k, cp

    def _mark_quietly(
        self,
        k: int,
        stop: int,
        held_id: str,
        qty: float,
        basis: float,
        prices: Sequence[float] | None = None,
    ) -> bool:
        """Mark the held instrument over ticks ``k`` … ``stop - 1`` of a one-instrument replay
        with no bar close among them, as the kernel would; return False, changing nothing, if
        a tick would trip a loss guard (the kernel then stops before it, see :meth:`run`).

        For stretches of a few ticks (an event strategy's next bar), where calling the kernel
        costs more than the work: this is ``velox.engine._kernels.forward`` for such a
        stretch, line for line, so the same operations in the same order give the same bits.
        ``prices`` are the stretch's tick prices when the caller has them (a bar's path).
        """
        engine = self.engine
        if prices is None:
            prices = [self.price(i) for i in range(k, stop)]
        if not self.watch:
            u = qty * prices[-1] - basis
        else:
            acct = self.account
            r0, u0, c0 = engine._base
            realised, charges = acct.realised - r0, acct.charges - c0
            lo, hi = engine._risk_lo, engine._risk_hi
            state = self.risk_state
            killed, peak = state.killed, state.peak_equity
            pending = self.pending
            if pending is not None and pending[2] > peak:
                peak = pending[2]  # the peak once the risk engine hears the deferred reports
            trip = self.guard.trip
            i_max = i_last = -1
            u_max = p_max = u_last = 0.0
            for i, p in zip(range(k, stop), prices, strict=True):
                u = qty * p - basis
                pnl = (realised + (u - u0)) - charges
                if lo <= pnl <= hi:
                    continue
                if not killed and trip(pnl, peak if peak >= pnl else pnl) is not None:
                    return False
                if pnl > hi:
                    hi = lo = pnl
                else:
                    lo = pnl
                if pnl > peak:
                    peak = pnl
                if i_max < 0 or pnl > p_max:
                    i_max, u_max, p_max = i, u, pnl
                i_last, u_last = i, u
            engine._risk_lo, engine._risk_hi = lo, hi
            if i_last >= 0:
                self._report(i_max, u_max, p_max, i_last, u_last, realised, charges, u0)
        upnl = engine._upnl
        upnl[held_id] = u
        engine._unrealised = sum(upnl.values(), 0.0)
        return True

    def _report(
        self,
        i_max: int,
        u_max: float,
        p_max: float,
        i_last: int,
        u_last: float,
        realised: float,
        charges: float,
        u0: float,
    ) -> None:
        """Note the reports of a stretch that matter for the risk engine: the highest (P&L
        ``p_max``, mark ``u_max`` at tick ``i_max``) and the last. Told the highest and the
        last, it stands as if told each one (none of them trips a guard: a trip goes through
        the ordinary path). Reports of consecutive stretches with the same day's figures
        merge, and :meth:`_flush` tells them, before anything reads or moves the risk state.
        """
        pending = self.pending
        if pending is not None and pending[5:] == (realised, charges, u0):
            if pending[2] >= p_max:
                i_max, u_max, p_max = pending[0], pending[1], pending[2]
        else:
            self._flush()
        self.pending = (i_max, u_max, p_max, i_last, u_last, realised, charges, u0)

    def _flush(self) -> None:
        """Tell the risk engine the noted reports (see :meth:`_report`)."""
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        i_max, u_max, _, i_last, u_last, realised, charges, u0 = pending
        risk, ts = self.engine.risk, self.ts
        if i_max != i_last:
            risk.on_equity(_dt(ts(i_max)), realised, u_max - u0, charges)
        risk.on_equity(_dt(ts(i_last)), realised, u_last - u0, charges)

    def _settle(self, k: int, j: int) -> None:
        """Leave the engine as ticks ``k`` … ``j - 1`` would: each instrument's last price and
        pending catch-up tick, the clock and the engine time at the last one.

        Before the replay's end the event loop moves the clock and the engine time on to
        event ``j`` at once, so only the last stretch sets them here.
        """
        engine = self.engine
        ts, price = self.ts, self.price
        if self.single:
            p = price(j - 1)
            iid = self.ids[0]
            engine._unseen[iid] = j - 1
            engine._last[iid] = p
        else:
            for m, iid in enumerate(self.ids):
                t = self.feed.last_tick_before(m, j)
                if t >= k:
                    p = price(t)
                    engine._unseen[iid] = t
                    engine._last[iid] = p
        if j == self.n:
            last_ns = ts(j - 1)
            self.advance(last_ns)
            engine._now_ns = last_ns
