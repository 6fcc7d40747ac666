"""Market data flow: tick → candle aggregation, replay feeds and the clocks that pace them.

Three pieces, shared by replay, paper and live trading so the engine never branches on the mode:

* :class:`CandleAggregator` turns :class:`~velox.types.Tick` objects into forming and closed
  :class:`~velox.types.Bar` candles for many instruments × timeframes, one tick at a time
  (``on_tick``), and closes quiet instruments' candles on a clock timer (``on_clock``).
  :func:`aggregate_ticks` applies the *same rules* to whole int/float arrays in one numba call,
  for replay and research at millions of ticks per second.
* :class:`BarReplay` (stored bars of many instruments and timeframes: synthetic ticks inside
  them and the bars' close events) and :class:`TickReplayFeed` (stored ticks) replay many
  instruments merged in time order, paced by a :class:`Clock`.
* :class:`ReplayClock` (time = the last event's time, no waiting) and :class:`WallClock`
  (real time, or N× real time when pacing a replay).

Conventions
-----------
* Candles are aligned to the 09:15 IST session open and labelled by their **start**, using
  :func:`velox.calendar.bucket_start_ns`, the grid the store resamples on too (a test holds the
  two equal). The daily candle is labelled 00:00 IST of the session date.
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

from velox.feeds.aggregate import (
    REASONS,
    CandleAggregator,
    CandleArrays,
    FeedStats,
    TickArrays,
    aggregate_ticks,
)
from velox.feeds.bar_replay import BarReplay
from velox.feeds.clock import Clock, FeedClock, ReplayClock, WallClock, from_ns, to_ns
from velox.feeds.replay import Feed, TickReplayFeed, synthesize_ticks

__all__ = [
    "Clock",
    "FeedClock",
    "ReplayClock",
    "WallClock",
    "to_ns",
    "from_ns",
    "REASONS",
    "FeedStats",
    "CandleAggregator",
    "CandleArrays",
    "TickArrays",
    "aggregate_ticks",
    "Feed",
    "TickReplayFeed",
    "BarReplay",
    "synthesize_ticks",
]
