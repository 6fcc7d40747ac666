"""Market data flow: tick → candle aggregation, replay feeds and the clocks that pace them.

Three pieces, shared by replay, paper and live trading so the engine never branches on the mode:

* :class:`CandleAggregator` turns :class:`~velox.types.Tick` objects into forming and closed
  :class:`~velox.types.Bar` candles for many instruments × timeframes, one tick at a time
  (``on_tick``), and closes quiet instruments' candles on a clock timer (``on_clock``).
  :func:`aggregate_ticks` applies the *same rules* to whole int/float arrays in one numba call,
  for replay and research at millions of ticks per second.
* :class:`BarReplayFeed` (synthetic ticks inside stored bars) and :class:`TickReplayFeed`
  (stored ticks) replay many instruments merged in time order, paced by a :class:`Clock`.
* :class:`ReplayClock` (time = the last event's time, no waiting) and :class:`WallClock`
  (real time, or N× real time when pacing a replay).

Conventions
-----------
* Candles are aligned to the 09:15 IST session open and labelled by their **start**, using
  :func:`velox.calendar.bucket_start_ns` (the store uses the same function). The daily candle is
  labelled 00:00 IST of the session date.
* A candle *ends* at ``min(start + length, 15:30 IST)`` (the session close; configurable); the
  daily candle ends at the session close. Candles that start at or after the close (Muhurat or
  extended sessions) keep their natural grid end, and the daily candle then ends at midnight.
* ``Tick.volume`` is the broker's cumulative day volume. A candle's volume is the growth of that
  number while the candle was forming. The count restarts from 0 at the first tick of each IST
  date, so the day's first candle holds everything traded up to its first tick (pre-open
  included) and the daily candle's volume equals the last cumulative volume of the day.
* Rules for imperfect input (live feeds are imperfect; the aggregator never raises):

  - bad ticks are rejected and counted by reason: a non-finite or non-positive price, a
    negative or non-finite volume, a naive or non-datetime timestamp, or a price further than
    ``band`` (default 20 %) from the day's first accepted price (a circuit-band sanity check);
  - a tick is *late* if, in any aggregated timeframe, it belongs to a candle that has already
    closed or to a bucket before the forming one; late ticks are dropped from every timeframe (so
    the timeframes stay consistent: a 5m candle is always its five 1m candles) and counted;
  - an out-of-order tick inside the forming candles merges: it can lower the low or raise the
    high, and it becomes the open (close) only if its timestamp is earlier (not earlier) than
    every tick merged so far;
  - a tick identical (timestamp, price, volume) to the instrument's previous accepted tick is a
    duplicate and ignored. Any other repeat inside the forming candle merges without effect.

Every accepted tick lands in exactly one counter: ``accepted + late_dropped + duplicates +
rejected_bad`` is the number of ticks seen.
"""

from __future__ import annotations

import logging
import math
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, NamedTuple, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from velox.calendar import IST_NAME, IST_OFFSET_NS, SESSION_CLOSE, TIMEFRAMES, check_timeframe
from velox.errors import ValidationError
from velox.types import Bar, Tick

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Clock",
    "ReplayClock",
    "WallClock",
    "FeedStats",
    "CandleAggregator",
    "CandleArrays",
    "TickArrays",
    "aggregate_ticks",
    "Feed",
    "TickReplayFeed",
    "BarReplayFeed",
    "synthesize_ticks",
]

log = logging.getLogger(__name__)

_IST = ZoneInfo(IST_NAME)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MINUTE_NS = 60 * 1_000_000_000
_DAY_NS = 24 * 60 * _MINUTE_NS
_OPEN_NS = (9 * 60 + 15) * _MINUTE_NS
_NONE = np.iinfo(np.int64).min  # "no candle" sentinel in the int64 state arrays

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


def to_ns(ts: datetime) -> int:
    """Return the UTC epoch nanoseconds of a tz-aware datetime (exact, no float rounding)."""
    return (ts - _EPOCH) // _US * 1000


def from_ns(ns: int) -> datetime:
    """Return UTC epoch nanoseconds as an IST datetime (microsecond precision, like datetime)."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).astimezone(_IST)


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


# --------------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    """The engine's notion of *now*; the only difference between replay and live timekeeping.

    A feed calls :meth:`advance_to` with each event's time before handing the event out; a
    replay clock jumps there, a wall clock paced at N× waits until that moment is due.
    """

    def now_ns(self) -> int:
        """Return the current time as UTC epoch nanoseconds."""
        ...

    def now(self) -> datetime:
        """Return the current time as an IST datetime."""
        ...

    def advance_to(self, ts_ns: int) -> None:
        """Move to (or wait for) the event time ``ts_ns``."""
        ...


class ReplayClock:
    """A clock whose time is the last event's time: replay as fast as possible, deterministic.

    Time never goes backwards: advancing to an earlier time keeps the later one.

    Examples
    --------
    >>> clock = ReplayClock()
    >>> clock.advance_to(1_700_000_000_000_000_000)
    >>> clock.now()
    datetime.datetime(2023, 11, 15, 3, 43, 20, tzinfo=zoneinfo.ZoneInfo(key='Asia/Kolkata'))
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        """Return the time of the last event seen (UTC epoch ns)."""
        return self._now

    def now(self) -> datetime:
        """Return the time of the last event seen, in IST."""
        return from_ns(self._now)

    def advance_to(self, ts_ns: int) -> None:
        """Jump to ``ts_ns`` without waiting (ignored if it is in the past)."""
        if ts_ns > self._now:
            self._now = ts_ns


class WallClock:
    """Real time, or N× real time for a paced replay.

    Live feeds never call :meth:`advance_to`, so :meth:`now_ns` is the system time. A replay feed
    calls it with each event time: the first call anchors event time to wall time, and each later
    event is held back until ``(event - first_event) / speed`` seconds of wall time have passed;
    from then on :meth:`now_ns` reads the *replayed* time, running ``speed`` times faster than
    the wall. The time functions are parameters so tests can run without sleeping.

    Examples
    --------
    >>> clock = WallClock(speed=60.0)  # one replayed minute per wall second
    """

    def __init__(
        self,
        speed: float = 1.0,
        *,
        sleep: Callable[[float], None] = _time.sleep,
        monotonic_ns: Callable[[], int] = _time.monotonic_ns,
        time_ns: Callable[[], int] = _time.time_ns,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValidationError(f"WallClock speed={speed!r} must be a finite number > 0")
        self.speed = float(speed)
        self._sleep, self._monotonic_ns, self._time_ns = sleep, monotonic_ns, time_ns
        self._anchor: tuple[int, int] | None = None  # (event ns, monotonic ns)

    def now_ns(self) -> int:
        """Return the system time, or the replayed time once a replay has anchored the clock."""
        if self._anchor is None:
            return self._time_ns()
        event0, wall0 = self._anchor
        return event0 + int((self._monotonic_ns() - wall0) * self.speed)

    def now(self) -> datetime:
        """Return :meth:`now_ns` as an IST datetime."""
        return from_ns(self.now_ns())

    def advance_to(self, ts_ns: int) -> None:
        """Sleep until the event at ``ts_ns`` is due at this clock's speed."""
        if self._anchor is None:
            self._anchor = (ts_ns, self._monotonic_ns())
            return
        event0, wall0 = self._anchor
        due = wall0 + (ts_ns - event0) / self.speed
        wait = due - self._monotonic_ns()
        if wait > 0:
            self._sleep(wait / 1e9)


# --------------------------------------------------------------------------------------------
# Per-tick aggregation
# --------------------------------------------------------------------------------------------


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
        price (a sanity check well outside NSE's widest circuit band); ``None`` disables it.
    session_close
        When the last candle of the session and the daily candle close on the timer.
    emit_forming
        Hand out a forming (``closed=False``) bar per timeframe on every accepted tick. Turn it
        off when only closed candles matter (it is most of the per-tick cost).

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
        self._next_end = np.iinfo(np.int64).max  # earliest timer close among forming candles

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
        if not isinstance(price, (int, float)) or not math.isfinite(price):
            stats.rejected["non_finite_price"] += 1
            return []
        if price <= 0:
            stats.rejected["non_positive_price"] += 1
            return []
        volume = tick.volume
        if volume is not None and not (math.isfinite(volume) and volume >= 0):
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
        now_ns = now if isinstance(now, int) else to_ns(now)
        if now_ns < self._next_end:
            return []
        out: list[Bar] = []
        next_end = np.iinfo(np.int64).max
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
        self._next_end = np.iinfo(np.int64).max
        return out

    def forming(self, instrument_id: str, timeframe: str) -> Bar | None:
        """Return the forming candle of ``instrument_id`` at ``timeframe``, if one is open."""
        sym = self._symbols.get(instrument_id)
        i = self.timeframes.index(check_timeframe(timeframe))
        candle = None if sym is None else sym.candles[i]
        return None if candle is None else self._bar(sym.id, i, candle, False)  # type: ignore[union-attr]

    def _bar(self, instrument_id: str, i: int, c: _Candle, closed: bool) -> Bar:
        return Bar(
            instrument_id,
            self.timeframes[i],
            c.label,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            closed,
        )


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


# --------------------------------------------------------------------------------------------
# Replay feeds
# --------------------------------------------------------------------------------------------


class Feed(Protocol):
    """A source of market events for the engine: iterate it, or let it push to a callback.

    Replay feeds yield :class:`~velox.types.Tick` objects in time order, advancing their clock
    before each one; a live feed's ``run`` is called from its own thread and its callback only
    puts events on the engine's queue. ``stop`` may be called from any thread and ends the
    iteration (or ``run``) before the next event.
    """

    def __iter__(self) -> Iterator[Tick]:
        """Yield the feed's ticks in time order."""
        ...

    def run(self, callback: Callable[[Tick], object]) -> None:
        """Call ``callback`` with every tick until the feed ends or is stopped."""
        ...

    def stop(self) -> None:
        """End the feed before its next event."""
        ...


def _merge(parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> TickArrays:
    """Return per-instrument (ts_ns, price, volume) columns merged into one time-ordered stream.

    Ties on the timestamp go to the instrument id that sorts first, then to the original order
    (a stable sort), so a replay is the same on every run whatever the mapping's order.
    """
    ids = tuple(sorted(parts))
    if not ids:
        raise ValidationError("a replay feed needs at least one instrument")
    symbol = np.concatenate([np.full(len(parts[i][0]), k, np.int64) for k, i in enumerate(ids)])
    ts = np.concatenate([np.asarray(parts[i][0], np.int64) for i in ids])
    price = np.concatenate([np.asarray(parts[i][1], np.float64) for i in ids])
    volume = np.concatenate([np.asarray(parts[i][2], np.float64) for i in ids])
    order = np.lexsort((symbol, ts))
    return TickArrays(ids, symbol[order], ts[order], price[order], volume[order])


def _index_ns(frame: pd.DataFrame, what: str) -> np.ndarray:
    """Return a frame's tz-aware DatetimeIndex (or ``ts`` column) as UTC epoch ns."""
    import pandas as pd

    stamps = frame["ts"] if "ts" in frame.columns else frame.index
    index = pd.DatetimeIndex(stamps)
    if index.tz is None:
        raise ValidationError(
            f"{what}: timestamps are naive; localise them to {IST_NAME} "
            "(e.g. df.index.tz_localize('Asia/Kolkata'))"
        )
    return index.tz_convert("UTC").as_unit("ns").asi8


class _ArrayFeed:
    """Replay of time-ordered tick columns, paced by a clock (shared by both replay feeds)."""

    def __init__(self, ticks: TickArrays, clock: Clock | None) -> None:
        self._ticks = ticks
        self.clock: Clock = ReplayClock() if clock is None else clock
        self._stop = threading.Event()

    @property
    def instrument_ids(self) -> tuple[str, ...]:
        """Return the replayed instrument ids (sorted; ``TickArrays.symbol`` indexes them)."""
        return self._ticks.instrument_ids

    def arrays(self) -> TickArrays:
        """Return all the feed's ticks as columns, for :func:`aggregate_ticks` or analysis."""
        return self._ticks

    def __len__(self) -> int:
        return len(self._ticks.ts_ns)

    def __iter__(self) -> Iterator[Tick]:
        ids, symbol, ts, price, volume = self._ticks
        advance = self.clock.advance_to
        for k in range(len(ts)):
            if self._stop.is_set():
                return
            t = int(ts[k])
            advance(t)
            v = volume[k]
            yield Tick(ids[symbol[k]], from_ns(t), float(price[k]), None if v != v else int(v))

    def run(self, callback: Callable[[Tick], object]) -> None:
        """Call ``callback`` with every tick in time order until the end or :meth:`stop`."""
        for tick in self:
            callback(tick)

    def stop(self) -> None:
        """End the replay before its next tick (safe to call from another thread)."""
        self._stop.set()


class TickReplayFeed(_ArrayFeed):
    """Replay stored ticks of many instruments, merged in time order.

    Parameters
    ----------
    ticks
        One DataFrame per instrument id, indexed by tz-aware timestamps (or with a ``ts``
        column), with the price in ``ltp`` (or ``price``) and, optionally, the cumulative day
        ``volume``. Ticks are replayed as stored, bad ones included: rejecting them is the
        aggregator's job, exactly as with a live feed.
    clock
        :class:`ReplayClock` (default: as fast as possible) or ``WallClock(speed=N)``.

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.to_datetime(["2024-04-01 09:15:01", "2024-04-01 09:15:02"]).tz_localize(IST_NAME)
    >>> feed = TickReplayFeed({"NSE:SBIN": pd.DataFrame({"ltp": [770.0, 770.5]}, index=idx)})
    >>> [(t.ts.strftime("%H:%M:%S"), t.ltp) for t in feed]
    [('09:15:01', 770.0), ('09:15:02', 770.5)]
    """

    def __init__(self, ticks: Mapping[str, pd.DataFrame], clock: Clock | None = None) -> None:
        parts = {}
        for instrument_id, frame in ticks.items():
            column = "ltp" if "ltp" in frame.columns else "price"
            if column not in frame.columns:
                raise ValidationError(
                    f"ticks for {instrument_id} need an 'ltp' (or 'price') column, "
                    f"got {list(frame.columns)}"
                )
            volume = (
                frame["volume"].to_numpy(np.float64, na_value=np.nan)
                if "volume" in frame.columns
                else np.full(len(frame), np.nan)
            )
            parts[instrument_id] = (
                _index_ns(frame, f"ticks for {instrument_id}"),
                frame[column].to_numpy(np.float64, na_value=np.nan),
                volume,
            )
        super().__init__(_merge(parts), clock)


def synthesize_ticks(
    bars: pd.DataFrame, timeframe: str, *, session_close: time = SESSION_CLOSE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return four synthetic ticks per bar as (ts_ns, price, cumulative day volume) arrays.

    The path is deterministic: open, then high, then low, then close when the bar closed at or
    above its open; open, low, high, close when it closed below. The ticks sit at 0, ¼, ½ and ¾
    of the bar's span (its start to its end, the session close capping the last candle; the
    daily bar spans 09:15–15:30), so every tick stays inside its own bar at any coarser
    timeframe too. The bar's volume, rounded to whole units, is split evenly over its four
    ticks (the remainder going to the earliest ones) and accumulated per IST date, like a
    broker's cumulative day volume. Aggregating the ticks back at ``timeframe`` returns the bars.

    Examples
    --------
    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": [100.0], "high": [103.0], "low": [99.0], "close": [102.0],
    ...                      "volume": [10]},
    ...                     index=pd.DatetimeIndex(["2024-04-01 09:15"]).tz_localize(IST_NAME))
    >>> ts, price, volume = synthesize_ticks(bars, "1m")
    >>> [from_ns(int(t)).strftime("%M:%S") for t in ts], price.tolist(), volume.tolist()
    (['15:00', '15:15', '15:30', '15:45'], [100.0, 103.0, 99.0, 102.0], [3.0, 6.0, 8.0, 10.0])
    """
    length = int(_lengths_ns([timeframe])[0])
    start = _index_ns(bars, f"{timeframe} bars")
    aligned = np.asarray(_bucket_starts(start, length))
    if (aligned != start).any():
        bad = from_ns(int(start[np.argmax(aligned != start)]))
        raise ValidationError(
            f"bar labelled {bad} is not a {timeframe} bar start on the 09:15 IST grid; "
            "label bars by their start (shift bar-end labels back by one bar)"
        )
    missing = [c for c in ("open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise ValidationError(f"{timeframe} bars lack columns {missing}; need open/high/low/close")
    o, h, lo, c = (bars[x].to_numpy(np.float64) for x in ("open", "high", "low", "close"))
    ist_day = (start + IST_OFFSET_NS) // _DAY_NS * _DAY_NS - IST_OFFSET_NS
    close = ist_day + _time_ns(session_close)
    if length == 0:
        first, span = ist_day + _OPEN_NS, close - (ist_day + _OPEN_NS)
    else:
        first = start
        span = np.where((start < close) & (close < start + length), close - start, length)
    ts = (first[:, None] + span[:, None] * np.arange(4)[None, :] // 4).ravel()
    up = c >= o
    price = np.column_stack([o, np.where(up, h, lo), np.where(up, lo, h), c]).ravel()
    raw = (
        bars["volume"].to_numpy(np.float64, na_value=0.0) if "volume" in bars else np.zeros(len(o))
    )
    units = np.rint(np.nan_to_num(raw)).astype(np.int64)
    share, rest = np.divmod(units, 4)
    steps = (share[:, None] + (np.arange(4)[None, :] < rest[:, None])).ravel()
    total = np.cumsum(steps)
    day = np.repeat(ist_day, 4)
    new_day = np.r_[True, day[1:] != day[:-1]]
    before = (total - steps)[new_day]  # running total before each day's first tick
    volume = total - np.repeat(before, np.diff(np.r_[np.flatnonzero(new_day), len(day)]))
    return ts, price, volume.astype(np.float64)


def _bucket_starts(ns: np.ndarray, length: int) -> np.ndarray:
    """Return bucket starts for an array (via the calendar's shared definition)."""
    from velox.calendar import bucket_start_ns

    tf = next(k for k, v in TIMEFRAMES.items() if (v or 0) * _MINUTE_NS == length)
    return np.asarray(bucket_start_ns(ns, tf))


class BarReplayFeed(_ArrayFeed):
    """Replay stored bars of many instruments as synthetic ticks, merged in time order.

    Each bar becomes four ticks along the path described in :func:`synthesize_ticks`
    (open → high → low → close for an up bar, open → low → high → close for a down bar) with its
    volume split into a cumulative day volume, so bar-driven replay goes through the same
    aggregator, simulator and strategy callbacks as a live tick stream.

    Parameters
    ----------
    bars
        One OHLCV DataFrame per instrument id, indexed by tz-aware bar *start* times, as
        ``velox.store`` returns them (``open_store().read_bars(id, timeframe, start, end)``).
    timeframe
        The bars' timeframe (it sets where the synthetic ticks fall).
    clock
        :class:`ReplayClock` (default: as fast as possible) or ``WallClock(speed=N)``.

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.DatetimeIndex(["2024-04-01 09:15", "2024-04-01 09:16"]).tz_localize(IST_NAME)
    >>> bars = pd.DataFrame({"open": [100.0, 102.0], "high": [103.0, 102.5],
    ...                      "low": [99.0, 100.5], "close": [102.0, 101.0]}, index=idx)
    >>> [t.ltp for t in BarReplayFeed({"NSE:SBIN": bars}, "1m")]
    [100.0, 103.0, 99.0, 102.0, 102.0, 100.5, 102.5, 101.0]
    """

    def __init__(
        self,
        bars: Mapping[str, pd.DataFrame],
        timeframe: str,
        clock: Clock | None = None,
        *,
        session_close: time = SESSION_CLOSE,
    ) -> None:
        self.timeframe = check_timeframe(timeframe)
        parts = {
            instrument_id: synthesize_ticks(frame, timeframe, session_close=session_close)
            for instrument_id, frame in bars.items()
        }
        super().__init__(_merge(parts), clock)

    @classmethod
    def from_store(
        cls,
        store: _BarReader,
        instrument_ids: Iterable[str],
        timeframe: str,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        clock: Clock | None = None,
    ) -> BarReplayFeed:
        """Return a feed over bars read from the store (``velox.store.open_store()``)."""
        bars = {i: store.read_bars(i, timeframe, start, end) for i in instrument_ids}
        return cls(bars, timeframe, clock)


class _BarReader(Protocol):
    def read_bars(
        self,
        instrument_id: str,
        timeframe: str,
        start: date | datetime | None,
        end: date | datetime | None,
    ) -> pd.DataFrame: ...
