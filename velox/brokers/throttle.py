"""Token-bucket throttles that make a caller wait rather than exceed a broker's rate limits.

Brokers publish limits per second, per minute and per day (Kite: 10 orders/s, 400/min,
5,000/day; 1 quote request/s; 3 historical requests/s; 10/s for everything else). Exceeding one
costs an HTTP 429 at best and a suspended app key at worst, so a request *waits* for its turn
instead: :meth:`Throttle.acquire` blocks the calling thread until every window has room.

The core is clock-agnostic: a :class:`RateLimit` set is checked against a sliding log of
grant times, with ``clock`` and ``sleep`` injected, so a test drives it with a fake clock and
proves that no window is ever exceeded over a burst (no real sleeping, no timed assertions).

Why a sliding log and not a refilling bucket: a refilling bucket of capacity ``n`` per second
can grant ``2n - 1`` requests within one second around a refill boundary; the venue counts
requests in windows, so the log (at most ``n`` grants in any window of ``period``) is the rule
that can never be broken. The log is bounded by the largest window's count (5,000 entries).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from velox.errors import ConfigError

__all__ = ["RateLimit", "Throttle", "ThrottleSet"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` requests in any window of ``period`` seconds."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1):
            raise ConfigError(f"RateLimit.count={self.count!r} must be a whole number >= 1")
        if not self.period > 0:
            raise ConfigError(f"RateLimit.period={self.period!r} must be seconds > 0")

    @classmethod
    def per_second(cls, count: int) -> RateLimit:
        return cls(count, 1.0)

    @classmethod
    def per_minute(cls, count: int) -> RateLimit:
        return cls(count, 60.0)

    @classmethod
    def per_day(cls, count: int) -> RateLimit:
        return cls(count, 86_400.0)


class Throttle:
    """A blocking limiter honouring several :class:`RateLimit` windows at once.

    Parameters
    ----------
    limits
        The windows; a grant is made only when every window has room.
    name
        What is throttled (for logs and ``repr``).
    clock, sleep
        Monotonic seconds and a sleep function; a test passes a fake pair.
    margin
        Seconds added to every window: requests spaced exactly ``period`` apart when sent may
        arrive closer together (network jitter) and be counted in one window by the venue.

    Examples
    --------
    >>> now = [0.0]
    >>> t = Throttle([RateLimit.per_second(2)], clock=lambda: now[0],
    ...              sleep=lambda s: now.__setitem__(0, now[0] + s))
    >>> [t.acquire() for _ in range(3)], now[0]
    ([0.0, 0.0, 1.0], 1.0)
    """

    def __init__(
        self,
        limits: Iterable[RateLimit],
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 0.0,
    ) -> None:
        self.limits = tuple(limits)
        if not margin >= 0:
            raise ConfigError(f"throttle margin={margin!r} must be seconds >= 0")
        self.margin = float(margin)
        if not self.limits:
            raise ConfigError(f"throttle {name!r} needs at least one RateLimit")
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._keep = max(limit.count for limit in self.limits)
        self._granted: deque[float] = deque(maxlen=self._keep)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        shown = ", ".join(f"{lim.count}/{lim.period:g}s" for lim in self.limits)
        return f"Throttle({self.name!r}: {shown})"

    def delay(self, now: float) -> float:
        """Return how long a request at ``now`` must wait (0 when every window has room)."""
        wait = 0.0
        granted = self._granted
        for limit in self.limits:
            if len(granted) >= limit.count:
                # the count-th most recent grant must have left the window
                oldest = granted[len(granted) - limit.count]
                wait = max(wait, oldest + limit.period + self.margin - now)
        return wait

    def acquire(self) -> float:
        """Wait until a request may go, record it, and return the grant time (clock seconds).

        Callers from several threads are served one at a time; the lock is held while
        waiting so that grants stay in order and every window stays honoured.
        """
        with self._lock:
            while True:
                now = self._clock()
                wait = self.delay(now)
                if wait <= 0:
                    self._granted.append(now)
                    return now
                self._sleep(wait)


class ThrottleSet:
    """Named throttles (one per endpoint group) sharing one clock.

    ``throttle(group)`` returns the group's :class:`Throttle`; an unknown group falls back to
    ``default`` (Kite's "all other endpoints" limit).
    """

    def __init__(
        self,
        groups: Mapping[str, Iterable[RateLimit]],
        *,
        default: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 0.0,
    ) -> None:
        if default not in groups:
            raise ConfigError(f"ThrottleSet default group {default!r} is not among {list(groups)}")
        self._throttles = {
            name: Throttle(limits, name=name, clock=clock, sleep=sleep, margin=margin)
            for name, limits in groups.items()
        }
        self.default = default

    def throttle(self, group: str) -> Throttle:
        return self._throttles.get(group, self._throttles[self.default])

    def acquire(self, group: str) -> float:
        """Wait for a turn in ``group`` (see :meth:`Throttle.acquire`)."""
        return self.throttle(group).acquire()

    def __repr__(self) -> str:
        return "ThrottleSet(" + ", ".join(map(repr, self._throttles.values())) + ")"
