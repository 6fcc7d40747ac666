"""Tick → candle aggregation: per tick (:class:`CandleAggregator`) and on arrays (numba).

The rules (buckets, candle ends, volume, late/duplicate/bad ticks) are described in
:mod:`velox.feeds`; both paths here implement them and the tests hold them to the same output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import cache
from numbers import Real
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from velox.calendar import IST_NAME, IST_OFFSET_NS, SESSION_CLOSE, TIMEFRAMES, check_timeframe
from velox.errors import ValidationError
from velox.feeds.clock import from_ns, to_ns
from velox.types import Bar, Tick

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REASONS",
    "FeedStats",
    "CandleAggregator",
    "TickArrays",
    "CandleArrays",
    "aggregate_ticks",
]

log = logging.getLogger(__name__)

_MINUTE_NS = 60 * 1_000_000_000
_DAY_NS = 24 * 60 * _MINUTE_NS
_OPEN_NS = (9 * 60 + 15) * _MINUTE_NS
_NONE = np.iinfo(np.int64).min  # "no candle" sentinel in the int64 state arrays
_FAR = int(np.iinfo(np.int64).max)  # "no timer close pending" (np.iinfo costs µs per call)

#: Rejection reasons shared by both paths, in the order of the array path's counters.
REASONS = (
    "non_finite_price",
    "non_positive_price",
    "outside_band",
    "bad_volume",
    "bad_timestamp",
    "error",
)
_ACCEPTED, _LATE, _DUPLICATE = 0, 1, 2
_FIRST_REASON = 3


def _time_ns(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000_000 + t.microsecond * 1000


def _lengths_ns(timeframes: Sequence[str]) -> np.ndarray:
    """Return candle lengths in ns per timeframe, 0 meaning the daily (session) candle."""
    out = []
    for tf in timeframes:
        minutes = TIMEFRAMES[check_timeframe(tf)]
        out.append(0 if minutes is None else minutes * _MINUTE_NS)
    return np.asarray(out, dtype=np.int64)


def _bucket_start(ns: int, length: int) -> int:
    """Return the bucket start of ``ns``: the scalar twin of ``velox.calendar.bucket_start_ns``.

    Written out (instead of calling the numpy version) because the per-tick path runs it several
    times per tick; ``tests/test_feeds.py`` checks the two agree.
    """
    ist = ns + IST_OFFSET_NS
    day = ist - ist % _DAY_NS
    if length == 0:
        return day - IST_OFFSET_NS
    return day + _OPEN_NS + (ist - day - _OPEN_NS) // length * length - IST_OFFSET_NS


def _bucket_end(start: int, length: int, ts: int, close_offset: int) -> int:
    """Return when the candle starting at ``start`` closes on the timer (see module docstring)."""
    ist_day = (start + IST_OFFSET_NS) // _DAY_NS * _DAY_NS - IST_OFFSET_NS
    close = ist_day + close_offset
    if length == 0:
        return close if ts < close else ist_day + _DAY_NS
    end = start + length
    return close if start < close < end else end


@dataclass
class FeedStats:
    """Counters of what happened to every tick handed to an aggregator.

    ``rejected`` breaks ``rejected_bad`` down by reason (see ``REASONS``).
    """

    accepted: int = 0
    late_dropped: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    @property
    def rejected_bad(self) -> int:
        """Return the number of ticks rejected as malformed, whatever the reason."""
        return sum(self.rejected.values())

    @property
    def seen(self) -> int:
        """Return the number of ticks handed in."""
        return self.accepted + self.late_dropped + self.duplicates + self.rejected_bad


class _Candle:
    """One forming candle (mutable, private to the aggregator)."""

    __slots__ = ("start", "end", "label", "open", "high", "low", "close", "volume", "first", "last")

    def __init__(self, start: int, end: int, price: float, ts: int) -> None:
        self.start, self.end, self.label = start, end, from_ns(start)
        self.open = self.high = self.low = self.close = price
        self.volume = 0.0
        self.first = self.last = ts


class _Symbol:
    """Per-instrument state: its forming candles and the day's reference values."""

    __slots__ = ("id", "day", "reference", "cum", "last_key", "candles", "closed")

    def __init__(self, instrument_id: str, n: int) -> None:
        self.id = instrument_id
        self.day = _NONE
        self.reference = 0.0
        self.cum = 0.0
        self.last_key: tuple[int, float, float] | None = None
        self.candles: list[_Candle | None] = [None] * n
        self.closed: list[int] = [_NONE] * n  # start of the last closed candle per timeframe


class CandleAggregator:
    """Return forming and closed candles for many instruments × timeframes, tick by tick.

    Parameters
    ----------
    timeframes
        Timeframes to build for every instrument (keys of ``velox.calendar.TIMEFRAMES``).
    band
        Reject a tick whose price is further than this fraction from the day's first accepted
        price: a sanity check at NSE's widest equity price band (20 %). F&O stocks have no
        fixed band and can move further in a day; widen it for them, or ``None`` disables it.
    session_close
        When the last candle of the session and the daily candle close on the timer.
    emit_forming
        Hand out a forming (``closed=False``) bar per timeframe on every accepted tick. Turn it
        off when only closed candles matter (it is about half of the per-tick cost).

    Notes
    -----
    The aggregator is single-threaded by design: the engine's one thread calls
    :meth:`on_tick` and :meth:`on_clock` and gets the events back as return values, so a replay
    is deterministic. Returned lists hold closed candles first (timeframes in the order given),
    then the forming updates; :meth:`on_clock` orders by instrument first-seen, then timeframe.

    Examples
    --------
    >>> from datetime import datetime
    >>> from velox.calendar import IST
    >>> agg = CandleAggregator(["1m", "5m"])
    >>> t = datetime(2024, 4, 1, 9, 15, 5, tzinfo=IST)
    >>> [b.timeframe for b in agg.on_tick(Tick("NSE:SBIN", t, 770.0, volume=100))]
    ['1m', '5m']
    >>> bars = agg.on_tick(Tick("NSE:SBIN", t.replace(minute=16), 771.0, volume=250))
    >>> [(b.timeframe, b.closed, b.close, b.volume) for b in bars]
    [('1m', True, 770.0, 100.0), ('1m', False, 771.0, 150.0), ('5m', False, 771.0, 250.0)]
    >>> [b.ts.strftime("%H:%M") for b in agg.on_clock(t.replace(minute=20))]
    ['09:16', '09:15']
    """

    def __init__(
        self,
        timeframes: Sequence[str] = ("1m",),
        *,
        band: float | None = 0.20,
        session_close: time = SESSION_CLOSE,
        emit_forming: bool = True,
    ) -> None:
        if isinstance(timeframes, str):
            timeframes = (timeframes,)
        if not timeframes:
            raise ValidationError("CandleAggregator needs at least one timeframe, e.g. ['1m']")
        if band is not None and not (math.isfinite(band) and band > 0):
            raise ValidationError(f"band={band!r} must be a fraction > 0 (e.g. 0.2) or None")
        self.timeframes = tuple(timeframes)
        self._lengths = [int(x) for x in _lengths_ns(self.timeframes)]
        self.band = band
        self._close_offset = _time_ns(session_close)
        self.emit_forming = emit_forming
        self.stats = FeedStats()
        self._symbols: dict[str, _Symbol] = {}
        self._next_end = _FAR  # earliest timer close among forming candles

    def on_tick(self, tick: Tick) -> list[Bar]:
        """Return the candles closed by ``tick`` followed by the forming updates it causes.

        Never raises: a tick that cannot be used is counted in :attr:`stats` and yields ``[]``.
        """
        try:
            return self._on_tick(tick)
        except Exception:  # a feed must survive anything the market or a bug throws at it
            log.exception("tick dropped after an unexpected error: %r", tick)
            self.stats.rejected["error"] += 1
            return []

    def _on_tick(self, tick: Tick) -> list[Bar]:
        stats = self.stats
        price = tick.ltp
        if not (type(price) is float or isinstance(price, Real)) or not math.isfinite(price):
            stats.rejected["non_finite_price"] += 1
            return []
        if price <= 0:
            stats.rejected["non_positive_price"] += 1
            return []
        price = float(price)  # numpy scalars and ints become plain floats in the Bars
        volume = tick.volume
        if volume is not None and not (
            isinstance(volume, Real) and math.isfinite(volume) and volume >= 0
        ):
            stats.rejected["bad_volume"] += 1
            return []
        if not _aware(tick):
            stats.rejected["bad_timestamp"] += 1
            return []
        ns = to_ns(tick.ts)
        sym = self._symbols.get(tick.instrument_id)
        if sym is None:
            sym = self._symbols[tick.instrument_id] = _Symbol(
                tick.instrument_id, len(self._lengths)
            )
        starts = [_bucket_start(ns, length) for length in self._lengths]
        for i, start in enumerate(starts):
            candle = sym.candles[i]
            if start <= sym.closed[i] or (candle is not None and start < candle.start):
                stats.late_dropped += 1
                return []
        day = (ns + IST_OFFSET_NS) // _DAY_NS
        new_day = day != sym.day
        reference = price if new_day else sym.reference
        if self.band is not None and abs(price - reference) > self.band * reference:
            stats.rejected["outside_band"] += 1
            return []
        key = (ns, float(price), -1.0 if volume is None else float(volume))
        if key == sym.last_key:
            stats.duplicates += 1
            return []
        stats.accepted += 1
        sym.last_key = key

        out: list[Bar] = []
        for i, start in enumerate(starts):  # close first: it uses the previous day's volume
            candle = sym.candles[i]
            if candle is not None and start > candle.start:
                out.append(self._bar(sym.id, i, candle, True))
                sym.closed[i] = candle.start
                sym.candles[i] = None
        if new_day:
            sym.day, sym.reference, sym.cum = day, price, 0.0
        delta = 0.0
        if volume is not None and volume > sym.cum:
            delta = volume - sym.cum
            sym.cum = float(volume)
        for i, start in enumerate(starts):
            candle = sym.candles[i]
            if candle is None:
                end = _bucket_end(start, self._lengths[i], ns, self._close_offset)
                candle = sym.candles[i] = _Candle(start, end, price, ns)
                if end < self._next_end:
                    self._next_end = end
            else:
                if price > candle.high:
                    candle.high = price
                elif price < candle.low:
                    candle.low = price
                if ns < candle.first:
                    candle.first, candle.open = ns, price
                if ns >= candle.last:
                    candle.last, candle.close = ns, price
            candle.volume += delta
            if self.emit_forming:
                out.append(self._bar(sym.id, i, candle, False))
        return out

    def on_clock(self, now: datetime | int) -> list[Bar]:
        """Return the candles whose end is at or before ``now`` (datetime or UTC epoch ns), closed.

        This is how a quiet instrument's candle closes on time. Call it from the engine's timer
        (live) or with each event's time (replay; time = the last event's time).
        """
        now_ns = to_ns(now) if isinstance(now, datetime) else int(now)
        if now_ns < self._next_end:
            return []
        out: list[Bar] = []
        next_end = _FAR
        for sym in self._symbols.values():
            for i, candle in enumerate(sym.candles):
                if candle is None:
                    continue
                if candle.end <= now_ns:
                    out.append(self._bar(sym.id, i, candle, True))
                    sym.closed[i] = candle.start
                    sym.candles[i] = None
                elif candle.end < next_end:
                    next_end = candle.end
        self._next_end = next_end
        return out

    def flush(self) -> list[Bar]:
        """Return every forming candle, closed: the end of a replay or of a session's data."""
        out = []
        for sym in self._symbols.values():
            for i, candle in enumerate(sym.candles):
                if candle is not None:
                    out.append(self._bar(sym.id, i, candle, True))
                    sym.closed[i] = candle.start
                    sym.candles[i] = None
        self._next_end = _FAR
        return out

    def forming(self, instrument_id: str, timeframe: str) -> Bar | None:
        """Return the forming candle of ``instrument_id`` at ``timeframe``, if one is open."""
        sym = self._symbols.get(instrument_id)
        i = self.timeframes.index(check_timeframe(timeframe))
        candle = None if sym is None else sym.candles[i]
        return None if candle is None else self._bar(sym.id, i, candle, False)  # type: ignore[union-attr]

    def _bar(self, instrument_id: str, i: int, c: _Candle, closed: bool) -> Bar:
        # Bar.__post_init__ re-checks what holds here by construction (finite prices > 0 that
        # passed the tick checks, low <= open/close <= high, volume >= 0, aware label) and is
        # most of the per-tick cost, so the aggregator fills the frozen slots directly.
        bar = _new_bar(Bar)
        _set(bar, "instrument_id", instrument_id)
        _set(bar, "timeframe", self.timeframes[i])
        _set(bar, "ts", c.label)
        _set(bar, "open", c.open)
        _set(bar, "high", c.high)
        _set(bar, "low", c.low)
        _set(bar, "close", c.close)
        _set(bar, "volume", c.volume)
        _set(bar, "closed", closed)
        return bar


_new_bar = Bar.__new__
_set = object.__setattr__


def _aware(tick: Tick) -> bool:
    ts = tick.ts
    return isinstance(ts, datetime) and ts.tzinfo is not None and ts.utcoffset() is not None


# --------------------------------------------------------------------------------------------
# Array path (numba): the same rules on whole arrays
# --------------------------------------------------------------------------------------------


class TickArrays(NamedTuple):
    """Ticks as columns: the array path's input and what replay feeds hold internally.

    ``symbol`` indexes ``instrument_ids``; ``ts_ns`` is UTC epoch ns; ``volume`` is the
    cumulative day volume as float64 with NaN where the tick carried none.
    """

    instrument_ids: tuple[str, ...]
    symbol: np.ndarray
    ts_ns: np.ndarray
    price: np.ndarray
    volume: np.ndarray


class CandleArrays(NamedTuple):
    """Closed candles as columns, in the order they closed.

    ``timeframe`` indexes ``timeframes``; ``start_ns`` is the label (bucket start, UTC epoch ns).
    """

    timeframes: tuple[str, ...]
    symbol: np.ndarray
    timeframe: np.ndarray
    start_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    stats: FeedStats

    def to_frame(self, instrument_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Return the candles as a DataFrame with an IST ``ts`` column (bar start)."""
        import pandas as pd

        symbols = self.symbol if instrument_ids is None else np.asarray(instrument_ids)[self.symbol]
        return pd.DataFrame(
            {
                "symbol": symbols,
                "timeframe": np.asarray(self.timeframes)[self.timeframe],
                "ts": pd.to_datetime(self.start_ns, utc=True).tz_convert(IST_NAME),
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
            }
        )


@cache
def _kernel() -> Callable[..., tuple[int, int]]:
    """Return the compiled aggregation kernel (numba is imported on first use only)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(  # flat arrays: what numba compiles well
        sym, ts, px, vol, i0, lengths, band,
        s_day, s_ref, s_cum, s_key_ts, s_key_px, s_key_vol,
        c_start, c_closed, c_open, c_high, c_low, c_close, c_vol, c_first, c_last,
        o_sym, o_tf, o_start, o_open, o_high, o_low, o_close, o_vol, counts,
    ):  # fmt: skip
        none = np.iinfo(np.int64).min
        n_tf = lengths.shape[0]
        cap = o_sym.shape[0]
        starts = np.empty(n_tf, np.int64)
        n_out = 0
        i = i0
        n = ts.shape[0]
        while i < n and n_out + n_tf <= cap:
            s = sym[i]
            t = ts[i]
            p = px[i]
            v = vol[i]
            i += 1
            if not np.isfinite(p):
                counts[3] += 1
                continue
            if p <= 0:
                counts[4] += 1
                continue
            if v < 0 or np.isinf(v):
                counts[6] += 1
                continue
            ist = t + 19_800_000_000_000
            day_ns = ist - ist % 86_400_000_000_000
            late = False
            for k in range(n_tf):
                length = lengths[k]
                if length == 0:
                    b = day_ns - 19_800_000_000_000
                else:
                    off = ist - day_ns - 33_300_000_000_000
                    b = day_ns + 33_300_000_000_000 + (off // length) * length
                    b -= 19_800_000_000_000
                starts[k] = b
                if b <= c_closed[s, k] or (c_start[s, k] != none and b < c_start[s, k]):
                    late = True
                    break
            if late:
                counts[1] += 1
                continue
            day = ist // 86_400_000_000_000
            new_day = day != s_day[s]
            ref = p if new_day else s_ref[s]
            if band > 0 and abs(p - ref) > band * ref:
                counts[5] += 1
                continue
            vkey = -1.0 if np.isnan(v) else v
            if t == s_key_ts[s] and p == s_key_px[s] and vkey == s_key_vol[s]:
                counts[2] += 1
                continue
            counts[0] += 1
            s_key_ts[s] = t
            s_key_px[s] = p
            s_key_vol[s] = vkey
            for k in range(n_tf):
                if c_start[s, k] != none and starts[k] > c_start[s, k]:
                    o_sym[n_out] = s
                    o_tf[n_out] = k
                    o_start[n_out] = c_start[s, k]
                    o_open[n_out] = c_open[s, k]
                    o_high[n_out] = c_high[s, k]
                    o_low[n_out] = c_low[s, k]
                    o_close[n_out] = c_close[s, k]
                    o_vol[n_out] = c_vol[s, k]
                    n_out += 1
                    c_closed[s, k] = c_start[s, k]
                    c_start[s, k] = none
            if new_day:
                s_day[s] = day
                s_ref[s] = p
                s_cum[s] = 0.0
            delta = 0.0
            if not np.isnan(v) and v > s_cum[s]:
                delta = v - s_cum[s]
                s_cum[s] = v
            for k in range(n_tf):
                if c_start[s, k] == none:
                    c_start[s, k] = starts[k]
                    c_open[s, k] = p
                    c_high[s, k] = p
                    c_low[s, k] = p
                    c_close[s, k] = p
                    c_vol[s, k] = 0.0
                    c_first[s, k] = t
                    c_last[s, k] = t
                else:
                    if p > c_high[s, k]:
                        c_high[s, k] = p
                    elif p < c_low[s, k]:
                        c_low[s, k] = p
                    if t < c_first[s, k]:
                        c_first[s, k] = t
                        c_open[s, k] = p
                    if t >= c_last[s, k]:
                        c_last[s, k] = t
                        c_close[s, k] = p
                c_vol[s, k] += delta
        return i, n_out

    return kernel


def aggregate_ticks(
    ticks: TickArrays,
    timeframes: Sequence[str] = ("1m",),
    *,
    band: float | None = 0.20,
    flush: bool = True,
) -> CandleArrays:
    """Return the closed candles of whole tick arrays for every instrument × timeframe.

    The array twin of :class:`CandleAggregator` for replay and research: the same bucket,
    volume, late/duplicate/bad-tick rules (see the module docstring) in one numba loop, so
    ``aggregate_ticks`` and feeding the same ticks one by one to ``CandleAggregator`` give the
    same candles (the tests hold them to it). Ticks are processed in array order, as a live
    feed would deliver them. There is no timer here: with ``flush`` the candles still forming at
    the end of the data are closed and appended (ordered by symbol, then timeframe).

    Examples
    --------
    >>> import numpy as np
    >>> ns = np.array([0, 30, 60, 61], dtype=np.int64) * 60 * 10**9 + 1_711_943_100 * 10**9
    >>> ticks = TickArrays(("NSE:SBIN",), np.zeros(4, np.int64), ns,
    ...                    np.array([770.0, 772.0, 769.0, 771.0]), np.array([10., 20., 35., 50.]))
    >>> out = aggregate_ticks(ticks, ["1h"])
    >>> [from_ns(int(t)).strftime("%H:%M") for t in out.start_ns]
    ['09:15', '10:15']
    >>> out.open.tolist(), out.high.tolist(), out.low.tolist(), out.close.tolist()
    ([770.0, 769.0], [772.0, 771.0], [770.0, 769.0], [772.0, 771.0])
    >>> out.volume.tolist()
    [20.0, 30.0]
    """
    timeframes = tuple([timeframes] if isinstance(timeframes, str) else timeframes)
    lengths = _lengths_ns(timeframes)
    sym = np.ascontiguousarray(ticks.symbol, dtype=np.int64)
    ts = np.ascontiguousarray(ticks.ts_ns, dtype=np.int64)
    px = np.ascontiguousarray(ticks.price, dtype=np.float64)
    vol = np.ascontiguousarray(ticks.volume, dtype=np.float64)
    n = len(ts)
    if not (len(sym) == len(px) == len(vol) == n):
        raise ValidationError(
            f"tick arrays differ in length: symbol {len(sym)}, ts_ns {n}, price {len(px)}, "
            f"volume {len(vol)}"
        )
    n_sym = max(len(ticks.instrument_ids), int(sym.max()) + 1 if n else 0)
    if n and sym.min() < 0:
        raise ValidationError("TickArrays.symbol must index instrument_ids (values >= 0)")
    n_tf = len(lengths)
    shape = (n_sym, n_tf)
    s_day = np.full(n_sym, _NONE, np.int64)
    s_ref, s_cum = np.zeros(n_sym), np.zeros(n_sym)
    s_key_ts, s_key_px, s_key_vol = (
        np.full(n_sym, _NONE, np.int64),
        np.zeros(n_sym),
        np.zeros(n_sym),
    )
    c_start, c_closed = np.full(shape, _NONE, np.int64), np.full(shape, _NONE, np.int64)
    c_ohlcv = [np.zeros(shape) for _ in range(5)]
    c_first, c_last = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    counts = np.zeros(_FIRST_REASON + len(REASONS), np.int64)
    # Bounded output buffers: the kernel returns early when one fills, and is resumed.
    cap = max(n_tf, min(n * n_tf, 1 << 20))
    kernel = _kernel()
    chunks: list[tuple[np.ndarray, ...]] = []
    i = 0
    while True:
        out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)) + tuple(
            np.empty(cap) for _ in range(5)
        )
        i, n_out = kernel(
            sym, ts, px, vol, i, lengths, 0.0 if band is None else float(band),
            s_day, s_ref, s_cum, s_key_ts, s_key_px, s_key_vol,
            c_start, c_closed, *c_ohlcv, c_first, c_last, *out, counts,
        )  # fmt: skip
        chunks.append(tuple(a[:n_out] for a in out))
        if i >= n:
            break
    if flush:
        s_idx, k_idx = np.nonzero(c_start != _NONE)
        chunks.append(
            (s_idx.astype(np.int64), k_idx.astype(np.int64), c_start[s_idx, k_idx])
            + tuple(a[s_idx, k_idx] for a in c_ohlcv)
        )
    cols = [np.concatenate([c[j] for c in chunks]) for j in range(8)]
    stats = FeedStats(
        accepted=int(counts[_ACCEPTED]),
        late_dropped=int(counts[_LATE]),
        duplicates=int(counts[_DUPLICATE]),
        rejected={r: int(counts[_FIRST_REASON + j]) for j, r in enumerate(REASONS)},
    )
    return CandleArrays(timeframes, *cols, stats)
