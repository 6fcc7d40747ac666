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

import csv
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import DataError, ValidationError

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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)

logger = logging.getLogger(__name__)

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


def as_ist(value: datetime | date | str, *, end_of_day: bool = False) -> datetime:
    """Return ``value`` as an aware IST datetime: naive times and dates read as IST, a date
    (or ``YYYY-MM-DD``) as its midnight, or its last second with ``end_of_day`` — how a
    user's history range reaches a broker's candle endpoint.

    Examples
    --------
    >>> as_ist("2024-04-01", end_of_day=True).isoformat()
    '2024-04-01T23:59:59+05:30'
    >>> as_ist(datetime(2024, 4, 1, 3, 45, tzinfo=UTC)).isoformat()
    '2024-04-01T09:15:00+05:30'
    """
    if isinstance(value, str):
        text = value.strip()
        value = datetime.fromisoformat(text) if len(text) > 10 else date.fromisoformat(text)
    if not isinstance(value, datetime):
        stamp = datetime.combine(value, datetime.min.time())
        if end_of_day:
            stamp += timedelta(days=1) - timedelta(seconds=1)
        return stamp.replace(tzinfo=IST)
    if value.tzinfo is None:
        return value.replace(tzinfo=IST)
    return value.astimezone(IST)


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
    out = np.asarray(bucket_start_ns(ns, timeframe), dtype=np.int64)
    # from datetime64 values, not pd.to_datetime of integers (an object round trip: 0.2 s
    # for a million bars on pandas 3)
    return pd.DatetimeIndex(out.view("datetime64[ns]")).tz_localize("UTC").tz_convert(IST_NAME)


# --------------------------------------------------------------------------------------------
# Sessions and holidays
# --------------------------------------------------------------------------------------------

#: The dated override file applied on top of pandas_market_calendars' NSE calendar.
OVERRIDES_PATH = Path(__file__).resolve().parent.parent / "data" / "calendar" / "nse_overrides.csv"

#: Years the cached schedule spans; asking outside them is an error, not a silent guess.
SCHEDULE_FIRST_YEAR = 2000
SCHEDULE_LAST_YEAR = 2030

#: Last date for which the holiday list is known (pandas_market_calendars 5.5 lists NSE holidays
#: through 2026). Later weekdays are assumed to be sessions, and asking for them logs a warning.
HOLIDAYS_KNOWN_THROUGH = date(2026, 12, 31)

_NO_BREAK = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class _Schedule:
    """All sessions in the cached span as sorted int64 UTC-ns arrays (one entry per session)."""

    days: np.ndarray  # 00:00 IST of the session date
    opens: np.ndarray
    closes: np.ndarray
    break_starts: np.ndarray  # _NO_BREAK where the session has no pause
    break_ends: np.ndarray
    special: np.ndarray  # bool
    notes: tuple[str, ...]
    reopen_times: np.ndarray  # sorted opens plus break ends: every instant trading (re)starts


def _parse_clock(text: str, path: Path, line: int, column: str) -> int:
    """Return ``HH:MM`` as ns after midnight, or raise a DataError naming the file and line."""
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError(text)
    except ValueError:
        raise DataError(f"{path}:{line}: {column}={text!r} is not an HH:MM time") from None
    return (hours * 60 + minutes) * _MINUTE_NS


def _read_overrides(path: Path) -> dict[int, tuple[int, int, int, int, str] | None]:
    """Return {day_ns: (open, close, break_start, break_end, note) or None for a holiday}."""
    out: dict[int, tuple[int, int, int, int, str] | None] = {}
    if not path.exists():
        raise DataError(f"calendar override file {path} is missing; restore it from git")
    header: list[str] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        cells = next(csv.reader([raw]))
        if header is None:
            header = cells
            continue
        row = dict(zip(header, cells, strict=False))
        try:
            day = date.fromisoformat(row.get("date", ""))
        except ValueError:
            raise DataError(
                f"{path}:{number}: date={row.get('date')!r} is not YYYY-MM-DD"
            ) from None
        day_ns = _date_to_day_ns(day)
        action = row.get("action", "")
        if action == "holiday":
            out[day_ns] = None
            continue
        if action != "session":
            raise DataError(f"{path}:{number}: action={action!r} must be 'session' or 'holiday'")
        open_ns = day_ns + _parse_clock(row.get("open", ""), path, number, "open")
        close_ns = day_ns + _parse_clock(row.get("close", ""), path, number, "close")
        if close_ns <= open_ns:
            raise DataError(f"{path}:{number}: close must be after open")
        break_start = break_end = _NO_BREAK
        if row.get("break_start") or row.get("break_end"):
            break_start = day_ns + _parse_clock(row["break_start"], path, number, "break_start")
            break_end = day_ns + _parse_clock(row["break_end"], path, number, "break_end")
            if not open_ns < break_start < break_end < close_ns:
                raise DataError(f"{path}:{number}: the break must lie inside the session")
        out[day_ns] = (open_ns, close_ns, break_start, break_end, row.get("description", ""))
    return out


def _date_to_day_ns(day: date) -> int:
    """Return 00:00 IST of ``day`` as UTC epoch ns."""
    return (day - _EPOCH_DATE).days * _DAY_NS - IST_OFFSET_NS


@functools.cache
def _schedule() -> _Schedule:
    # pandas_market_calendars costs ~0.6 s to import, so it is loaded here, once, on first use.
    import pandas_market_calendars as mcal

    library = mcal.get_calendar("NSE").schedule(
        f"{SCHEDULE_FIRST_YEAR}-01-01", f"{SCHEDULE_LAST_YEAR}-12-31"
    )
    rows: dict[int, tuple[int, int, int, int, str]] = {}
    days = library.index.as_unit("ns").asi8 - IST_OFFSET_NS
    opens = library["market_open"].dt.as_unit("ns").astype("int64").to_numpy()
    closes = library["market_close"].dt.as_unit("ns").astype("int64").to_numpy()
    for day_ns, open_ns, close_ns in zip(
        days.tolist(), opens.tolist(), closes.tolist(), strict=True
    ):
        rows[day_ns] = (open_ns, close_ns, _NO_BREAK, _NO_BREAK, "")
    for day_ns, override in _read_overrides(OVERRIDES_PATH).items():
        if override is None:
            rows.pop(day_ns, None)
        else:
            rows[day_ns] = override
    ordered = sorted(rows.items())
    day_arr = np.array([k for k, _ in ordered], dtype=np.int64)
    cols = [np.array([v[i] for _, v in ordered], dtype=np.int64) for i in range(4)]
    standard_open = day_arr + _OPEN_NS
    standard_close = day_arr + (15 * 60 + 30) * _MINUTE_NS
    weekday = ((day_arr + IST_OFFSET_NS) // _DAY_NS + 3) % 7  # 1970-01-01 was a Thursday (3)
    special = (cols[0] != standard_open) | (cols[1] != standard_close) | (weekday >= 5)
    reopen = np.sort(np.concatenate([cols[0], cols[3][cols[3] != _NO_BREAK]]))
    logger.debug("NSE schedule cached: %d sessions, %d special", len(day_arr), special.sum())
    return _Schedule(
        days=day_arr,
        opens=cols[0],
        closes=cols[1],
        break_starts=cols[2],
        break_ends=cols[3],
        special=special,
        notes=tuple(v[4] for _, v in ordered),
        reopen_times=reopen,
    )


def _check_span(day_ns: int) -> None:
    year = (_EPOCH_DATE + timedelta(days=(day_ns + IST_OFFSET_NS) // _DAY_NS)).year
    if not SCHEDULE_FIRST_YEAR <= year <= SCHEDULE_LAST_YEAR:
        raise ValidationError(
            f"year {year} is outside the NSE schedule Velox knows "
            f"({SCHEDULE_FIRST_YEAR}-{SCHEDULE_LAST_YEAR}); widen SCHEDULE_*_YEAR in velox.calendar"
        )
    if year > HOLIDAYS_KNOWN_THROUGH.year:
        _warn_unknown_holidays(year)


@functools.cache
def _warn_unknown_holidays(year: int) -> None:
    logger.warning(
        "NSE holidays for %d are not known (list ends %s): every weekday is treated as a session; "
        "add the holidays to %s",
        year,
        HOLIDAYS_KNOWN_THROUGH,
        OVERRIDES_PATH,
    )


def _utc_ns(ts: datetime | str) -> int:
    """Return a tz-aware timestamp as UTC epoch ns; naive input is refused (ambiguous)."""
    if isinstance(ts, str):
        import pandas as pd

        ts = pd.Timestamp(ts)
    if not isinstance(ts, datetime):
        raise ValidationError(f"expected a tz-aware datetime, got {type(ts).__name__} {ts!r}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValidationError(f"timestamp {ts} is naive; localise it to {IST_NAME} first")
    value = getattr(ts, "value", None)  # pandas.Timestamp: exact UTC ns
    if isinstance(value, int):
        return value
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _day_ns(day: date | datetime | str) -> int:
    """Return 00:00 IST of a session date given as a date, ISO string or (IST) timestamp."""
    if isinstance(day, str):
        day = date.fromisoformat(day[:10]) if len(day) <= 10 else _ist_datetime(day)
    if isinstance(day, datetime):
        if day.tzinfo is not None:
            day = day.astimezone(IST)
        day = day.date()
    if not isinstance(day, date):
        raise ValidationError(f"expected a date, got {type(day).__name__} {day!r}")
    day_ns = _date_to_day_ns(day)
    _check_span(day_ns)
    return day_ns


def _ist_datetime(text: str) -> datetime:
    import pandas as pd

    return pd.Timestamp(text).to_pydatetime()


def _timestamp(ns: int) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(ns, tz="UTC").tz_convert(IST_NAME)


def _session_index(day_ns: int) -> int | None:
    schedule = _schedule()
    i = int(np.searchsorted(schedule.days, day_ns))
    if i < len(schedule.days) and schedule.days[i] == day_ns:
        return i
    return None


def _session_rows(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (schedule row, is a session) for each 00:00-IST date in ``days`` (vectorised).

    The row is clipped into range, so it can index the schedule's columns whatever the date;
    read it only where the second array is True.
    """
    schedule_days = _schedule().days
    i = np.searchsorted(schedule_days, days)
    safe = np.minimum(i, len(schedule_days) - 1)
    return safe, (i < len(schedule_days)) & (schedule_days[safe] == days)


def sessions(start: date | datetime | str, end: date | datetime | str) -> pd.DataFrame:
    """Return the NSE sessions from ``start`` to ``end`` (both session dates, inclusive).

    Regular sessions come from pandas_market_calendars' ``NSE`` calendar; special sessions it
    lacks (Muhurat evenings, Budget Saturdays, DR-site drills) and corrections come from the dated
    override file :data:`OVERRIDES_PATH` (see ``docs/calendar.md``).

    Returns
    -------
    pandas.DataFrame
        Indexed by the session date at 00:00 IST (the daily-bar label), with columns ``open``,
        ``close``, ``break_start``, ``break_end`` (NaT unless trading pauses inside the session),
        all tz-aware IST, ``special`` (hours differ from 09:15-15:30 or a weekend session) and
        ``note`` (what the special session was, where known).

    Examples
    --------
    >>> s = sessions("2022-10-22", "2022-10-26")  # weekend, Muhurat Monday, holiday on the 26th
    >>> [str(d.date()) for d in s.index]
    ['2022-10-24', '2022-10-25']
    >>> s.loc["2022-10-24", ["open", "close"]].dt.strftime("%H:%M").tolist()
    ['18:15', '19:15']
    """
    import pandas as pd

    first, last = _day_ns(start), _day_ns(end)
    schedule = _schedule()
    lo = int(np.searchsorted(schedule.days, first, side="left"))
    hi = int(np.searchsorted(schedule.days, last, side="right"))

    def column(values: np.ndarray) -> pd.DatetimeIndex:
        ns = values[lo:hi]
        stamps = pd.to_datetime(np.where(ns == _NO_BREAK, np.iinfo(np.int64).min, ns), utc=True)
        return pd.DatetimeIndex(stamps).tz_convert(IST_NAME)

    index = column(schedule.days)
    index.name = "session"
    return pd.DataFrame(
        {
            "open": column(schedule.opens),
            "close": column(schedule.closes),
            "break_start": column(schedule.break_starts),
            "break_end": column(schedule.break_ends),
            "special": schedule.special[lo:hi],
            "note": list(schedule.notes[lo:hi]),
        },
        index=index,
    )


def is_trading_day(day: date | datetime | str) -> bool:
    """Return True if NSE holds a session (regular or special) on ``day``.

    A tz-aware timestamp is read as its IST date.

    Examples
    --------
    >>> is_trading_day("2024-04-01"), is_trading_day("2024-04-14"), is_trading_day("2022-10-24")
    (True, False, True)
    """
    return _session_index(_day_ns(day)) is not None


def session_bounds(day: date | datetime | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the (open, close) IST timestamps of the session on ``day``.

    Raises :class:`~velox.errors.ValidationError` if ``day`` is not a session, naming the next one.

    Examples
    --------
    >>> op, cl = session_bounds("2021-02-24")
    >>> op.strftime("%H:%M"), cl.strftime("%H:%M")
    ('09:15', '17:00')
    """
    day_ns = _day_ns(day)
    i = _session_index(day_ns)
    if i is None:
        schedule = _schedule()
        j = int(np.searchsorted(schedule.days, day_ns))
        following = _timestamp(int(schedule.days[j])).date() if j < len(schedule.days) else None
        raise ValidationError(
            f"{_timestamp(day_ns).date()} is not an NSE session (holiday or weekend); "
            f"the next session is {following}"
        )
    schedule = _schedule()
    return _timestamp(int(schedule.opens[i])), _timestamp(int(schedule.closes[i]))


def trading_spans_ns(days_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (open, close, pause, resume) UTC epoch ns for each IST date in ``days_ns``.

    ``days_ns`` holds 00:00 IST of each date (the daily-bar label). Dates without a session
    (holidays, weekends, years outside the schedule) get the regular 09:15-15:30 hours, so a
    caller laying synthetic ticks over stored daily bars never fails on a date the exchange
    calendar disagrees with; ``pause == resume == close`` where trading does not pause. Vectorised
    because a bar replay asks for every date of a history at once.

    Examples
    --------
    >>> import pandas as pd
    >>> days = pd.DatetimeIndex(["2023-11-12", "2021-02-24"], tz=IST_NAME).as_unit("ns").asi8
    >>> spans = trading_spans_ns(days)  # Muhurat evening; the 2021 outage pause
    >>> [pd.to_datetime(col, utc=True).tz_convert(IST_NAME).strftime("%H:%M").tolist()
    ...  for col in spans]
    [['18:15', '09:15'], ['19:15', '17:00'], ['19:15', '11:40'], ['19:15', '15:45']]
    """
    days = np.asarray(days_ns, dtype=np.int64)
    schedule = _schedule()
    safe, known = _session_rows(days)
    opens = np.where(known, schedule.opens[safe], days + _OPEN_NS)
    closes = np.where(known, schedule.closes[safe], days + (15 * 60 + 30) * _MINUTE_NS)
    paused = known & (schedule.break_starts[safe] != _NO_BREAK)
    pauses = np.where(paused, schedule.break_starts[safe], closes)
    resumes = np.where(paused, schedule.break_ends[safe], closes)
    return opens, closes, pauses, resumes


def square_off_ns(days_ns: np.ndarray, regular: time) -> np.ndarray:
    """Return the MIS square-off instant (UTC epoch ns) of each IST date in ``days_ns``.

    ``regular`` is the square-off time of a regular 09:15-15:30 session (the
    ``mis_square_off`` setting). Why a rule and not the clock time: a special session closes
    at other hours (Muhurat trading 18:15-19:15, an outage day extended to 17:00, a DR drill
    ending 12:30), and a fixed 15:15 would square off before a Muhurat session opens or hours
    before an extended one closes. So every session squares off the same lead before its own
    close that ``regular`` keeps before 15:30 (15 minutes for 15:15, 40 for 14:50), and never
    before its open. Dates without a session get the regular hours (as
    :func:`trading_spans_ns`). ``days_ns`` holds 00:00 IST of each date.

    Examples
    --------
    >>> import pandas as pd
    >>> days = pd.DatetimeIndex(["2024-04-01", "2021-11-04", "2021-02-24"], tz=IST_NAME)
    >>> cuts = square_off_ns(days.as_unit("ns").asi8, time(15, 15))
    >>> pd.to_datetime(cuts, utc=True).tz_convert(IST_NAME).strftime("%H:%M").tolist()
    ['15:15', '19:00', '16:45']
    """
    lead = ((15 * 60 + 30) - (regular.hour * 60 + regular.minute)) * _MINUTE_NS
    opens, closes, _, _ = trading_spans_ns(days_ns)
    return np.maximum(opens, closes - lead)


def is_open(ts: datetime | str) -> bool:
    """Return True if ``ts`` (tz-aware) falls inside a session: ``open <= ts < close``.

    The close instant itself is outside (15:30:00 is closed, 15:29:59 is open), and so is a pause
    inside a special session. Pre-open (09:00-09:15) counts as closed.

    Examples
    --------
    >>> is_open("2024-04-01 09:15+05:30"), is_open("2024-04-01 15:30+05:30")
    (True, False)
    """
    ns = _utc_ns(ts)
    _check_span(ns)
    schedule = _schedule()
    i = int(np.searchsorted(schedule.opens, ns, side="right")) - 1
    if i < 0 or ns >= schedule.closes[i]:
        return False
    return not (
        schedule.break_starts[i] != _NO_BREAK
        and schedule.break_starts[i] <= ns < schedule.break_ends[i]
    )


def trading_hours_ns(day: date | datetime | str) -> tuple[tuple[int, int], ...]:
    """Return the ``[start, end)`` intervals (UTC epoch ns) in which NSE trades on ``day``.

    One interval for a normal session, two when the session pauses, none on a holiday or a
    weekend. ``is_open(ts)`` is True exactly when ``ts`` falls inside an interval of its IST
    date, so a caller asking about many instants of one day (the simulator checks every order)
    fetches the day once instead of calling :func:`is_open` each time.

    Examples
    --------
    >>> [(b - a) // 60_000_000_000 for a, b in trading_hours_ns("2024-04-01")]  # minutes
    [375]
    >>> trading_hours_ns("2024-04-14")  # a Sunday
    ()
    """
    i = _session_index(_day_ns(day))
    if i is None:
        return ()
    schedule = _schedule()
    start, end = int(schedule.opens[i]), int(schedule.closes[i])
    pause, resume = int(schedule.break_starts[i]), int(schedule.break_ends[i])
    if pause == _NO_BREAK:
        return ((start, end),)
    return ((start, pause), (resume, end))


def next_open(ts: datetime | str) -> pd.Timestamp:
    """Return the first instant strictly after ``ts`` at which trading (re)starts, in IST.

    Before 09:15 this is the same day's open; from 09:15 on it is the next session's open (or the
    end of a pause inside a special session). Weekends and holidays are skipped.

    Examples
    --------
    >>> next_open("2024-04-12 16:00+05:30")  # Friday evening; Mon 15 Apr is a session
    Timestamp('2024-04-15 09:15:00+0530', tz='Asia/Kolkata')
    """
    ns = _utc_ns(ts)
    _check_span(ns)
    reopen = _schedule().reopen_times
    i = int(np.searchsorted(reopen, ns, side="right"))
    if i >= len(reopen):
        raise ValidationError(f"no NSE session after {ts} within {SCHEDULE_LAST_YEAR}")
    return _timestamp(int(reopen[i]))


def previous_close(ts: datetime | str) -> pd.Timestamp:
    """Return the close of the last session that closed at or before ``ts``, in IST.

    During a session this is the previous session's close (the reference for "change since
    yesterday"); at exactly 15:30 it is that same session's close.

    Examples
    --------
    >>> previous_close("2024-04-15 10:00+05:30")
    Timestamp('2024-04-12 15:30:00+0530', tz='Asia/Kolkata')
    """
    ns = _utc_ns(ts)
    _check_span(ns)
    closes = _schedule().closes
    i = int(np.searchsorted(closes, ns, side="right")) - 1
    if i < 0:
        raise ValidationError(f"no NSE session closed before {ts} since {SCHEDULE_FIRST_YEAR}")
    return _timestamp(int(closes[i]))


def bucket_end_ns(ns: np.ndarray | int, timeframe: str) -> np.ndarray | int:
    """Return the end (UTC epoch ns) of the bucket holding each timestamp in ``ns``.

    The end is ``min(start + length, session close)`` so the hourly bar starting 15:15 ends at
    15:30 and a candle can be closed as soon as the session closes; ``1d`` ends at the session
    close. On a date without a session the end is simply ``start + length`` (``start + 1 day`` for
    ``1d``).
    """
    minutes = timeframe_minutes(timeframe)
    arr = np.asarray(ns, dtype=np.int64)
    start = np.asarray(bucket_start_ns(arr, timeframe), dtype=np.int64)
    day = ((arr + IST_OFFSET_NS) // _DAY_NS) * _DAY_NS - IST_OFFSET_NS
    schedule = _schedule()
    safe, has_session = _session_rows(day)
    close = np.where(has_session, schedule.closes[safe], np.iinfo(np.int64).max)
    if minutes is None:
        out = np.where(has_session, close, start + _DAY_NS)
    else:
        # only a bucket that starts before the close is cut short by it
        end = start + minutes * _MINUTE_NS
        out = np.where(start < close, np.minimum(end, close), end)
    return out if out.ndim else int(out)


def bucket_end(ts: pd.DatetimeIndex | pd.Timestamp, timeframe: str):  # noqa: ANN201
    """Return the end of the session-aligned bucket holding ``ts`` (Timestamp or index), in IST.

    Examples
    --------
    >>> import pandas as pd
    >>> bucket_end(pd.Timestamp("2024-04-01 15:20", tz=IST_NAME), "1h")
    Timestamp('2024-04-01 15:30:00+0530', tz='Asia/Kolkata')
    >>> bucket_end(pd.Timestamp("2024-04-01 10:17", tz=IST_NAME), "5m")
    Timestamp('2024-04-01 10:20:00+0530', tz='Asia/Kolkata')
    """
    import pandas as pd

    if isinstance(ts, pd.Timestamp):
        return _timestamp(int(bucket_end_ns(_utc_ns(ts), timeframe)))
    index = pd.DatetimeIndex(ts)
    if index.tz is None:
        raise ValidationError(f"timestamps are naive; localise them to {IST_NAME} first")
    out = bucket_end_ns(index.tz_convert("UTC").as_unit("ns").asi8, timeframe)
    return pd.DatetimeIndex(pd.to_datetime(out, utc=True)).tz_convert(IST_NAME)


def expected_bar_starts(day: date | datetime | str, timeframe: str) -> pd.DatetimeIndex:
    """Return the start labels of every bar a complete session on ``day`` has, in IST.

    The importer compares these with the bars it received to report gaps. Bars sit on the 09:15
    grid (so a Muhurat session 18:15-19:15 has 5-minute bars 18:15 … 19:10), the last bar may be
    short (hourly 15:15), and a bar falling wholly inside a pause is not expected. ``1d`` gives the
    single session-date label; a holiday gives an empty index.

    Examples
    --------
    >>> [t.strftime("%H:%M") for t in expected_bar_starts("2024-04-01", "1h")]
    ['09:15', '10:15', '11:15', '12:15', '13:15', '14:15', '15:15']
    """
    import pandas as pd

    minutes = timeframe_minutes(timeframe)
    day_ns = _day_ns(day)
    i = _session_index(day_ns)
    empty = pd.DatetimeIndex([], dtype=f"datetime64[ns, {IST_NAME}]")
    if i is None:
        return empty
    if minutes is None:
        return pd.DatetimeIndex([_timestamp(day_ns)])
    schedule = _schedule()
    open_ns, close_ns = int(schedule.opens[i]), int(schedule.closes[i])
    length = minutes * _MINUTE_NS
    starts = np.arange(int(bucket_start_ns(open_ns, timeframe)), close_ns, length, dtype=np.int64)
    if schedule.break_starts[i] != _NO_BREAK:
        pause_start, pause_end = int(schedule.break_starts[i]), int(schedule.break_ends[i])
        inside = (starts >= pause_start) & (starts + length <= pause_end)
        starts = starts[~inside]
    return pd.DatetimeIndex(pd.to_datetime(starts, utc=True)).tz_convert(IST_NAME)
