"""Engine time: UTC epoch nanoseconds in, IST datetimes out, exact to the microsecond.

The engine keeps time as int64 UTC epoch ns (what the replay columns and the calendar use) and
builds a datetime only when something reads it. These helpers are shared by the event loop and
its fast path so both turn a tick time into the same datetime and the same epoch float.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from velox.calendar import IST

DAY_NS = 86_400_000_000_000
EPOCH_IST = datetime(1970, 1, 1, tzinfo=UTC).astimezone(IST)
_US = timedelta(microseconds=1)


def dt(ns: int) -> datetime:
    """Return UTC epoch ns as an IST datetime (exact to the microsecond)."""
    return EPOCH_IST + _US * (ns // 1000)


def epoch(ns: int) -> float:
    """Return UTC epoch ns as ``dt(ns).timestamp()`` (the same bits, without the datetime)."""
    return (ns // 1000) / 1_000_000  # whole microseconds over 10**6, as datetime rounds them


def ns(ts: datetime) -> int:
    """Return a tz-aware datetime as UTC epoch ns (``velox.feeds.to_ns``, without its import)."""
    return (ts - EPOCH_IST) // _US * 1000
