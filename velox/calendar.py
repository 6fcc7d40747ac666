"""NSE sessions, IST helpers and session-aligned candle buckets.

Candles are aligned to the 09:15 IST session open and labelled by their start: 1-minute bars are
09:15, 09:16, …; 5-minute 09:15, 09:20, …; hourly 09:15, 10:15, …, 15:15 (a short last hour).
The daily bar is the session and is labelled by the session *date* (00:00 IST), the convention of
Kite's historical API and of every daily file we ship.

The bucket arithmetic works on int64 nanoseconds since the epoch (UTC) so the store, the tick
aggregator and the replay feed share one definition and it vectorises. IST has no DST, which is
what makes the fixed +05:30 offset exact.
"""

from __future__ import annotations

from datetime import time, timedelta, timezone
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

IST_NAME = "Asia/Kolkata"
IST = timezone(timedelta(hours=5, minutes=30), "IST")
IST_OFFSET_NS = (5 * 60 + 30) * 60 * 1_000_000_000
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)

_MINUTE_NS = 60 * 1_000_000_000
_DAY_NS = 24 * 60 * _MINUTE_NS
_OPEN_NS = (9 * 60 + 15) * _MINUTE_NS

#: Supported candle timeframes and their length in minutes (``None`` = one session).
TIMEFRAMES: dict[str, int | None] = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "10m": 10,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "1d": None,
}


def check_timeframe(timeframe: str) -> str:
    """Return ``timeframe`` if Velox supports it, else raise naming the supported ones."""
    if timeframe not in TIMEFRAMES:
        raise ValidationError(
            f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}"
        )
    return timeframe


def timeframe_minutes(timeframe: str) -> int | None:
    """Return the candle length in minutes, or None for the daily (session) candle."""
    return TIMEFRAMES[check_timeframe(timeframe)]


def bucket_start_ns(ns: np.ndarray | int, timeframe: str) -> np.ndarray | int:
    """Return the bucket start (UTC epoch ns) of each UTC epoch-ns timestamp in ``ns``.

    Works on scalars and int64 arrays. Intraday buckets are ``09:15 + k × length`` IST on the
    timestamp's IST date (timestamps before 09:15, e.g. a pre-open print, fall into negative
    ``k`` buckets rather than being silently merged into 09:15). ``1d`` maps to 00:00 IST of the
    date. Muhurat and extended sessions fall on the same grid.
    """
    minutes = timeframe_minutes(timeframe)
    ist = np.asarray(ns, dtype=np.int64) + IST_OFFSET_NS
    day = (ist // _DAY_NS) * _DAY_NS
    if minutes is None:
        out = day - IST_OFFSET_NS
    else:
        length = minutes * _MINUTE_NS
        offset = ist - day - _OPEN_NS
        out = day + _OPEN_NS + (offset // length) * length - IST_OFFSET_NS
    return out if out.ndim else int(out)


def bucket_start(ts: pd.DatetimeIndex | pd.Timestamp, timeframe: str):  # noqa: ANN201
    """Return the session-aligned bucket start of ``ts`` (a tz-aware Timestamp or index), in IST.

    Examples
    --------
    >>> import pandas as pd
    >>> bucket_start(pd.Timestamp("2024-04-01 10:17", tz=IST_NAME), "5m")
    Timestamp('2024-04-01 10:15:00+0530', tz='Asia/Kolkata')
    >>> bucket_start(pd.Timestamp("2024-04-01 10:14", tz=IST_NAME), "1h")
    Timestamp('2024-04-01 09:15:00+0530', tz='Asia/Kolkata')
    """
    import pandas as pd

    if isinstance(ts, pd.Timestamp):
        if ts.tzinfo is None:
            raise ValidationError(f"timestamp {ts} is naive; localise it to {IST_NAME} first")
        ns = int(ts.tz_convert("UTC").value)
        return pd.Timestamp(bucket_start_ns(ns, timeframe), tz="UTC").tz_convert(IST_NAME)
    index = pd.DatetimeIndex(ts)
    if index.tz is None:
        raise ValidationError(f"timestamps are naive; localise them to {IST_NAME} first")
    ns = index.tz_convert("UTC").as_unit("ns").asi8
    out = bucket_start_ns(ns, timeframe)
    return pd.DatetimeIndex(pd.to_datetime(out, utc=True)).tz_convert(IST_NAME)
