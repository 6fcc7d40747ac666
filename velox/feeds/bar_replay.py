"""Replays of stored bars for the engine: synthetic ticks and the bars' close events, as columns.

A :class:`BarReplay` is what :class:`velox.engine.Engine` replays in a backtest; it is also a
:class:`velox.feeds.Feed` of the same synthetic ticks (``run``/``__iter__``), so the one engine
can drive the same replay through its live tick loop (candles rebuilt by
:class:`velox.feeds.CandleAggregator`) — the loop paper and live trading use — and the two are
tested to give the same trades.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from velox.calendar import SESSION_CLOSE, TIMEFRAMES, bucket_end_ns, check_timeframe
from velox.errors import DataError, ValidationError
from velox.feeds.aggregate import TickArrays
from velox.feeds.clock import Clock, ReplayClock, from_ns
from velox.feeds.replay import TickReplayFeed, synthesize_ticks
from velox.types import Tick

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BarReplay", "BarReader", "index_ns"]


class BarReplay:
    """Return a replay of stored bars: synthetic ticks plus the bars' close events, in time order.

    Each instrument's ticks come from its finest timeframe's bars, four per bar on the path of
    :func:`velox.feeds.synthesize_ticks` (open, high, low, close for an up bar; open, low, high,
    close for a down bar). Every (instrument, timeframe) frame also yields a close event, placed
    just before the first tick at or after the bar's end (:func:`velox.calendar.bucket_end_ns`),
    exactly when ``velox.feeds.CandleAggregator`` would close it; the rest close at the end.
    The bars handed to strategies are the stored bars themselves (aggregating the synthetic
    ticks gives them back, see ``velox.feeds``), which is why no aggregator runs here.

    Parameters
    ----------
    bars
        ``{(instrument_id, timeframe): DataFrame}`` of OHLCV bars indexed by tz-aware bar start
        (as ``velox.store.Store.read_bars`` returns them).
    clock
        Paces the events (``velox.feeds.ReplayClock`` by default, ``WallClock(speed)`` for paper).
    session_close
        Where a day's last intraday candle ends (see :func:`velox.feeds.synthesize_ticks`).

    As a :class:`velox.brokers.base.MarketData` source (``run``/``__iter__``) it yields the same
    synthetic ticks as :class:`~velox.types.Tick` objects, advancing its clock before each one:
    what the engine's tick loop, a simulator server or an aggregator consumes.

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.DatetimeIndex(["2024-04-01 09:15", "2024-04-01 09:16"]).tz_localize("Asia/Kolkata")
    >>> frame = pd.DataFrame({"open": [100.0, 102.0], "high": [103.0, 102.5],
    ...                       "low": [99.0, 100.5], "close": [102.0, 101.0]}, index=idx)
    >>> replay = BarReplay({("NSE:SBIN", "1m"): frame})
    >>> len(replay), replay.close_positions.tolist()
    (8, [4, 8])
    >>> [t.ltp for t in replay]
    [100.0, 103.0, 99.0, 102.0, 102.0, 100.5, 102.5, 101.0]
    """

    name = "replay"

    def __init__(
        self,
        bars: Mapping[tuple[str, str], pd.DataFrame],
        clock: Clock | None = None,
        *,
        session_close: time = SESSION_CLOSE,
    ) -> None:
        if not bars:
            raise ValidationError("BarReplay needs at least one (instrument, timeframe) frame")
        self.clock: Clock = ReplayClock() if clock is None else clock
        self._stop = threading.Event()
        self._frames = {}
        for (iid, tf), frame in bars.items():
            check_timeframe(tf)
            if frame is None or len(frame) == 0:
                raise ValidationError(
                    f"no {tf} bars for {iid}: import them first (velox data import) or check "
                    "the --start/--end range"
                )
            self._frames[(iid, tf)] = frame
        order = {tf: i for i, tf in enumerate(TIMEFRAMES)}
        finest: dict[str, str] = {}
        for iid, tf in self._frames:
            if iid not in finest or order[tf] < order[finest[iid]]:
                finest[iid] = tf
        self.instrument_ids = tuple(sorted(finest))
        parts = [
            synthesize_ticks(
                self._frames[(iid, finest[iid])], finest[iid], session_close=session_close
            )
            for iid in self.instrument_ids
        ]
        sym = np.concatenate([np.full(len(p[0]), k, np.int64) for k, p in enumerate(parts)])
        ts = np.concatenate([p[0] for p in parts]).astype(np.int64)
        price = np.concatenate([p[1] for p in parts])
        volume = np.concatenate([p[2] for p in parts])
        perm = np.lexsort((sym, ts))
        self.symbol, self.ts_ns, self.price, self.volume = (
            sym[perm],
            ts[perm],
            price[perm],
            volume[perm],
        )
        # forming-candle high/low so far (for on_tick strategies): running extremes in each bar
        self.forming_high = np.empty_like(self.price)
        self.forming_low = np.empty_like(self.price)
        for k in range(len(self.instrument_ids)):
            idx = np.flatnonzero(self.symbol == k)
            p = self.price[idx].reshape(-1, 4)
            self.forming_high[idx] = np.maximum.accumulate(p, axis=1).ravel()
            self.forming_low[idx] = np.minimum.accumulate(p, axis=1).ravel()
        self._ticks_of = [np.flatnonzero(self.symbol == k) for k in range(len(self.instrument_ids))]
        # close events, sorted by (position in the tick stream, end time, instrument, timeframe)
        keys, pos, ends, rows = [], [], [], []
        for n_key, ((_, tf), frame) in enumerate(sorted(self._frames.items())):
            start = index_ns(frame)
            end = np.asarray(bucket_end_ns(start, tf), dtype=np.int64)
            pos.append(np.searchsorted(self.ts_ns, end, side="left"))
            ends.append(end)
            keys.append(np.full(len(start), n_key))
            rows.append(np.arange(len(start)))
        self.close_keys = sorted(self._frames)
        pos_a, end_a, key_a, row_a = (np.concatenate(x) for x in (pos, ends, keys, rows))
        perm = np.lexsort((row_a, key_a, end_a, pos_a))
        self.close_positions = pos_a[perm]
        self.close_key = key_a[perm]
        self.close_row = row_a[perm]

    @classmethod
    def from_store(
        cls,
        store: BarReader,
        subscriptions: Iterable[tuple[str, str]],
        start: date | datetime | str | None = None,
        end: date | datetime | str | None = None,
        clock: Clock | None = None,
    ) -> BarReplay:
        """Return a replay of stored bars, one frame per (instrument, timeframe) subscription.

        A subscription with no bars in the range raises :class:`velox.errors.DataError` naming
        what is stored for that instrument.
        """
        frames = {}
        for iid, tf in subscriptions:
            if (iid, tf) in frames:
                continue
            frame = store.read_bars(iid, tf, start, end)
            if frame.empty:
                raise DataError(_missing_bars(store, iid, tf, start, end))
            frames[(iid, tf)] = frame
        return cls(frames, clock)

    def __len__(self) -> int:
        return len(self.ts_ns)

    # -- MarketData ------------------------------------------------------------------------

    def subscribe(self, instrument_ids: Collection[str], mode: str = "quote") -> None:
        """Check that every instrument is replayed (a replay's instruments are fixed)."""
        missing = sorted(set(instrument_ids) - set(self.instrument_ids))
        if missing:
            raise DataError(
                f"this replay has bars of {', '.join(self.instrument_ids)}, not "
                f"{', '.join(missing)}"
            )

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        """Nothing to do: the replay's instruments are fixed."""

    def __iter__(self) -> Iterator[Tick]:
        ids, symbol, ts, price, volume = (
            self.instrument_ids, self.symbol.tolist(), self.ts_ns.tolist(), self.price.tolist(),
            self.volume.tolist(),
        )  # fmt: skip
        advance = self.clock.advance_to
        stop = self._stop
        for k in range(len(ts)):
            if stop.is_set():
                return
            t = ts[k]
            advance(t)
            v = volume[k]
            yield Tick(ids[symbol[k]], from_ns(t), price[k], None if v != v else int(v))

    def run(self, callback: Callable[[Tick], object]) -> None:
        """Call ``callback`` with every synthetic tick in time order until the end or stop."""
        for tick in self:
            callback(tick)

    def stop(self) -> None:
        """End :meth:`run` before its next tick (any thread)."""
        self._stop.set()

    def arrays(self) -> TickArrays:
        """Return the synthetic ticks as columns (for :func:`velox.feeds.aggregate_ticks`)."""
        return TickArrays(self.instrument_ids, self.symbol, self.ts_ns, self.price, self.volume)

    def ticks(self, clock: Clock | None = None) -> TickReplayFeed:
        """Return the same ticks as a plain tick feed, without the bars.

        Handed to the engine, it drives the tick loop that paper and live trading use (candles
        rebuilt from the ticks) instead of the bar loop: the parity test runs both.
        """
        return TickReplayFeed.from_arrays(self.arrays(), clock)

    # -- the engine's replay ---------------------------------------------------------------

    def bars(self, instrument_id: str, timeframe: str) -> pd.DataFrame | None:
        """Return the whole bar frame of a subscription (None if not replayed)."""
        return self._frames.get((instrument_id, timeframe))

    def frames(self) -> Mapping[tuple[str, str], pd.DataFrame]:
        """Return every replayed frame by (instrument, timeframe)."""
        return self._frames

    def last_tick_before(self, k: int, position: int) -> int:
        """Return the index of instrument ``k``'s last tick before ``position`` (or -1)."""
        ticks = self._ticks_of[k]
        j = int(np.searchsorted(ticks, position)) - 1
        return int(ticks[j]) if j >= 0 else -1


def index_ns(frame: pd.DataFrame) -> np.ndarray:
    """Return a bar frame's tz-aware index as UTC epoch ns."""
    import pandas as pd

    index = pd.DatetimeIndex(frame.index)
    if index.tz is None:
        raise ValidationError("bars need a tz-aware index (bar start times in Asia/Kolkata)")
    return index.tz_convert("UTC").as_unit("ns").asi8


def _missing_bars(store: BarReader, iid: str, tf: str, start: object, end: object) -> str:
    """Return the message for a subscription without bars: what is stored for the instrument."""
    span = f" between {start} and {end}" if start or end else ""
    summary = getattr(store, "bar_summary", None)
    stored = ""
    if summary is not None:
        table = summary()
        mine = table[table["instrument_id"] == iid]
        if mine.empty:
            known = ", ".join(sorted(table["instrument_id"].unique())[:12]) or "nothing"
            stored = f"; nothing is stored for {iid} (stored: {known})"
        else:
            stored = (
                "; stored for "
                + iid
                + ": "
                + ", ".join(
                    f"{row.timeframe} {row.first:%Y-%m-%d}…{row.last:%Y-%m-%d}"
                    for row in mine.itertuples()
                )
            )
    return (
        f"no {tf} bars of {iid}{span} (none finer to resample from){stored}; import them with "
        "`velox data import` (or `velox run` for the bundled set) or pick another symbol/timeframe"
    )


class BarReader(Protocol):
    """What :meth:`BarReplay.from_store` reads (``velox.store.Store``)."""

    def read_bars(
        self,
        instrument_id: str,
        timeframe: str,
        start: date | datetime | str | None,
        end: date | datetime | str | None,
    ) -> pd.DataFrame: ...
