"""Replay feeds: stored ticks or bars of many instruments, merged in time order, clock-paced."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from velox.calendar import (
    IST_NAME,
    IST_OFFSET_NS,
    SESSION_CLOSE,
    bucket_start_ns,
    trading_spans_ns,
)
from velox.errors import DataError, ValidationError
from velox.feeds.aggregate import _DAY_NS, TickArrays, _lengths_ns, _time_ns
from velox.feeds.clock import Clock, ReplayClock, from_ns
from velox.types import Tick

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Feed", "TickReplayFeed", "synthesize_ticks"]


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
    """Replay of time-ordered tick columns, paced by a clock (a MarketData source)."""

    name = "replay"

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

    def subscribe(self, instrument_ids: Collection[str], mode: str = "quote") -> None:
        """Check that every instrument is replayed (a replay's instruments are fixed)."""
        missing = sorted(set(instrument_ids) - set(self.instrument_ids))
        if missing:
            raise DataError(
                f"this replay has ticks of {', '.join(self.instrument_ids)}, not "
                f"{', '.join(missing)}"
            )

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        """Nothing to do: the replay's instruments are fixed."""

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

    @classmethod
    def from_arrays(cls, ticks: TickArrays, clock: Clock | None = None) -> TickReplayFeed:
        """Return a replay of tick columns already merged in time order."""
        feed = cls.__new__(cls)
        _ArrayFeed.__init__(feed, ticks, clock)
        return feed


def synthesize_ticks(
    bars: pd.DataFrame, timeframe: str, *, session_close: time = SESSION_CLOSE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return four synthetic ticks per bar as (ts_ns, price, cumulative day volume) arrays.

    The path is deterministic: open, then high, then low, then close when the bar closed at or
    above its open; open, low, high, close when it closed below. The ticks sit at 0, ¼, ½ and ¾
    of the bar's span: its start to its end, the session close capping the last candle; a daily
    bar spans its date's trading hours from the calendar, skipping a pause. So every tick stays
    inside its own bar at any coarser timeframe too. The bar's volume, rounded to whole units,
    is split evenly over its four ticks (the remainder going to the earliest ones) and
    accumulated per IST date, like a broker's cumulative day volume. Aggregating the ticks back
    at ``timeframe`` returns the bars.

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
    aligned = np.asarray(bucket_start_ns(start, timeframe))
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
    if length == 0:
        ts = _daily_tick_times(ist_day)
    else:
        close = ist_day + _time_ns(session_close)
        span = np.where((start < close) & (close < start + length), close - start, length)
        ts = (start[:, None] + span[:, None] * np.arange(4)[None, :] // 4).ravel()
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


def _daily_tick_times(ist_day: np.ndarray) -> np.ndarray:
    """Return four tick times per daily bar at 0, ¼, ½, ¾ of that date's trading time.

    The hours come from the calendar, so a Muhurat evening's ticks fall in 18:15-19:15 (an order
    decided at the previous close fills there, as a real after-market order would) and a session
    that paused (2021-02-24) has no tick inside the pause.
    """
    opens, closes, pauses, resumes = trading_spans_ns(ist_day)
    trading = (pauses - opens) + (closes - resumes)
    offset = trading[:, None] * np.arange(4)[None, :] // 4
    ts = opens[:, None] + offset
    return np.where(ts >= pauses[:, None], ts + (resumes - pauses)[:, None], ts).ravel()
