"""Clocks: the engine's notion of *now*, the one thing that differs between replay and live.

:class:`ReplayClock` is the time of the last event (replay as fast as possible, deterministic);
:class:`WallClock` is real time, or N× real time when it paces a replay; :class:`FeedClock` is
the market's time as a live feed tells it (the latest tick's exchange time, running on at wall
speed between ticks). Feeds call ``advance_to(event_ns)`` before handing out each event.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from velox.calendar import IST_NAME
from velox.errors import ValidationError

__all__ = ["Clock", "FeedClock", "ReplayClock", "WallClock", "to_ns", "from_ns"]

_IST = ZoneInfo(IST_NAME)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_ns(ts: datetime) -> int:
    """Return the UTC epoch nanoseconds of a tz-aware datetime (exact, no float rounding)."""
    return (ts - _EPOCH) // _US * 1000


def from_ns(ns: int) -> datetime:
    """Return UTC epoch nanoseconds as an IST datetime (microsecond precision, like datetime)."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).astimezone(_IST)


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


class FeedClock:
    """The market's time as a live feed reports it: the latest tick's time, plus the wall time
    elapsed since that tick arrived.

    Why not the wall clock: the exchange's timestamps are the market's time (a broker's
    simulator replaying 2025 at 1000× is a live feed too), and candles must close on them.
    Between ticks the clock runs on at wall speed, so a quiet instrument's candle still closes
    on time in a real market; it never runs ahead of the next tick of a market replayed at
    ``speed ≥ 1``, whose ticks come sooner than that. Before the first tick there is no market
    time: it reads 0 (the engine keeps its own, e.g. a restored run's). :meth:`advance_to` is
    called (from the feed's thread) with each tick's time.

    Examples
    --------
    >>> clock = FeedClock(monotonic_ns=lambda: 0)
    >>> clock.advance_to(1_700_000_000_000_000_000)
    >>> clock.now_ns()
    1700000000000000000
    """

    def __init__(self, *, monotonic_ns: Callable[[], int] = _time.monotonic_ns) -> None:
        self._monotonic_ns = monotonic_ns
        self._last: tuple[int, int] | None = None  # (tick ns, monotonic ns when it arrived)

    def now_ns(self) -> int:
        """Return the latest tick's time plus the wall time since (0 before the first tick)."""
        last = self._last  # one read: the feed thread replaces the tuple whole
        if last is None:
            return 0
        return last[0] + (self._monotonic_ns() - last[1])

    def now(self) -> datetime:
        """Return :meth:`now_ns` as an IST datetime."""
        return from_ns(self.now_ns())

    def advance_to(self, ts_ns: int) -> None:
        """Take a tick's time (never moving the clock backwards)."""
        if self._last is None or ts_ns >= self.now_ns():
            self._last = (ts_ns, self._monotonic_ns())
