"""Validated import of bar files (CSV, CSV.gz, Parquet) into the store.

A file is checked as a whole *before* anything is written, and written in one transaction, so a
bad file never leaves half its rows behind. Rejections list the offending line numbers (the CSV
line, header = line 1; for Parquet the 1-based row). What is suspicious but legal — gaps,
bars outside the regular session, naive timestamps read as IST — is reported as a warning.

Examples
--------
>>> from velox.data import import_bars                                  # doctest: +SKIP
>>> result = import_bars("reliance_1d.csv", "NSE:RELIANCE", "1d")        # doctest: +SKIP
>>> result.rows, result.warnings                                         # doctest: +SKIP
(1277, [])
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from velox.calendar import (
    IST_NAME,
    bucket_start_ns,
    check_timeframe,
    timeframe_minutes,
)
from velox.errors import DataError, StoreError, VeloxError
from velox.types import check_instrument_id

if TYPE_CHECKING:
    from velox.store import Store

log = logging.getLogger(__name__)

PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = (*PRICE_COLUMNS, "volume")
_TIMESTAMP_ALIASES = ("timestamp", "ts", "datetime", "date", "time")
_MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Outcome of one file import.

    ``skipped``: these bytes were the last write to the series; ``replaced``: stored bars whose
    values the file changed (only with ``replace=True``); ``refused``: why the file was refused
    (one line; nothing of it was written), only from :func:`import_many` with ``keep_going``.
    """

    source: str
    instrument_id: str
    timeframe: str
    rows: int
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)
    replaced: int = 0
    refused: str = ""


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes (the key that makes re-imports no-ops)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CHUNK_ROWS = 200_000
_MAX_HEADER_BYTES = 64 * 1024


def _check_readable(path: Path) -> None:
    """Refuse, in one line, a path that is not a non-empty regular file of a known type."""
    import os
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        kind = "a broken symlink" if path.is_symlink() else "no such file"
        raise DataError(f"{path}: {kind}") from None
    except OSError as exc:  # a symlink loop, a permission problem …
        raise DataError(f"{path}: cannot be opened: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: is a directory, not a bar file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: is not a regular file")
    if not path.name.lower().endswith(_CSV_SUFFIXES + _PARQUET_SUFFIXES):
        raise DataError(f"{path}: unsupported file type; use .csv, .csv.gz or .parquet")
    if info.st_size == 0:
        raise DataError(f"{path}: is empty")


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Turn what reading a bar file can raise into one ``DataError`` naming the file (a
    ``DataError`` of the body passes through unchanged)."""
    try:
        yield
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: has no header line (empty after decompression)") from None
    except (OSError, ValueError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: cannot be read as a bar file: {reason}") from None


def read_bar_file(path: Path | str) -> pd.DataFrame:
    """Return the raw table in a CSV, gzip-compressed CSV or Parquet file (no validation).

    CSV text is read in chunks, and each chunk is checked for bytes that are not UTF-8 (named
    with their line) before the next is read. (Imports stream CSVs through
    :func:`read_csv_bars` instead, which validates each chunk and keeps only numbers.) A
    Parquet file whose timestamps are its index
    (pandas' default ``to_parquet`` of a DatetimeIndex frame) gets that index back as a
    ``timestamp`` column.
    """
    path = Path(path)
    _check_readable(path)
    with _read_errors(path):
        if path.name.lower().endswith(_PARQUET_SUFFIXES):
            table = pd.read_parquet(path)
            names = {str(c).strip().lower() for c in table.columns}
            if isinstance(table.index, pd.DatetimeIndex) and not names & set(_TIMESTAMP_ALIASES):
                table = table.rename_axis("timestamp").reset_index()
            return table
        _check_first_line(path)
        chunks = []
        reader = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            encoding_errors="replace",
            chunksize=_CHUNK_ROWS,
        )
        with reader:
            for chunk in reader:
                _check_utf8(path, chunk)
                chunks.append(chunk)
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def _check_first_line(path: Path) -> None:
    """Refuse a CSV whose header is not a short line: a bar file's header is a few names."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(_MAX_HEADER_BYTES)
    if b"\n" not in head and len(head) == _MAX_HEADER_BYTES:
        raise DataError(
            f"{path}: line 1 is longer than {_MAX_HEADER_BYTES // 1024} KiB; not a bar CSV "
            "(expected a header such as timestamp,open,high,low,close,volume)"
        )


def _check_utf8(path: Path, chunk: pd.DataFrame) -> None:
    """Refuse a chunk that held bytes which are not UTF-8 (read as U+FFFD), naming the line."""
    bad_header = [c for c in chunk.columns if "\ufffd" in str(c)]
    if bad_header:
        raise DataError(f"{path}: line 1 is not UTF-8 text")
    if chunk.empty:
        return
    hits = np.zeros(len(chunk), dtype=bool)
    for column in chunk.columns:
        hits |= chunk[column].str.contains("\ufffd", regex=False).to_numpy(dtype=bool)
    if hits.any():
        line = int(chunk.index[np.flatnonzero(hits)[0]]) + 2
        raise DataError(f"{path}: line {line} is not UTF-8 text (save the file as UTF-8)")


def _where(rows: np.ndarray, offset: int, unit: str) -> str:
    shown = ", ".join(str(int(r) + offset) for r in rows[:_MAX_LISTED])
    more = f" (+{len(rows) - _MAX_LISTED} more)" if len(rows) > _MAX_LISTED else ""
    return f"{unit} {shown}{more}"


_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


_TIME_ONLY = r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$"
#: Day and month first (01/02/2024, 1-2-24): which one comes first cannot be told from the text.
_DAY_MONTH = r"^\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?:\D|$)"
_YEAR = r"^(\d{4})"
#: Years a bar may carry: wider than any market data, inside pandas' nanosecond range.
_YEARS = (1900, 2200)


def timestamp_problem(value: object) -> str | None:
    """Return why one timestamp a user typed (a read's ``start``/``end``) is refused, or None.

    The rules a file's timestamps follow (:func:`_parse_timestamps`), for a single value: a
    time without a date (never given today's date), a day/month order that cannot be told
    (``01/02/2024``: write ``2024-02-01``) and a year outside 1900–2200 (pandas cannot hold it).
    """
    if isinstance(value, str):
        text = value.strip()
        if re.match(_TIME_ONLY, text):
            return "a time without a date (give the full date and time)"
        if re.match(_DAY_MONTH, text):
            return "ambiguous day/month order (write the date as YYYY-MM-DD)"
        year_text = re.match(_YEAR, text)
        year = int(year_text.group(1)) if year_text else None
    else:
        year = getattr(value, "year", None)
    if isinstance(year, int) and not _YEARS[0] <= year <= _YEARS[1]:
        return f"year outside {_YEARS[0]}-{_YEARS[1]}"
    return None


def _parse_timestamps(
    column: pd.Series, line_offset: int, line_unit: str, date_format: str | None = None
) -> tuple[pd.DatetimeIndex, list[str], bool]:
    """Return (IST index, problems, was_naive) for a timestamp column.

    A file must use one convention: all timestamps with a UTC offset (any offsets, converted) or
    all naive (read as IST). Mixing the two is refused rather than guessed at, and so are a
    time without a date (never given today's date), a day/month order that cannot be told
    (``01/02/2024``) unless ``date_format`` (strftime) says it, and years outside 1900–2200.
    """
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(column).tz_convert(IST_NAME), [], False
    if pd.api.types.is_datetime64_dtype(column.dtype):
        return pd.DatetimeIndex(column).tz_localize(IST_NAME), [], True
    text = column.astype(str).str.strip()
    problems: list[str] = []
    refused = np.zeros(len(text), dtype=bool)
    time_only = text.str.match(_TIME_ONLY).to_numpy(dtype=bool)
    if time_only.any():
        problems.append(
            "time without a date (give the full date and time) at "
            f"{_where(np.flatnonzero(time_only), line_offset, line_unit)}"
        )
        refused |= time_only
    year = pd.to_numeric(text.str.extract(_YEAR, expand=False), errors="coerce").to_numpy()
    with np.errstate(invalid="ignore"):
        out_of_range = (year < _YEARS[0]) | (year > _YEARS[1])
    if out_of_range.any():
        problems.append(
            f"year outside {_YEARS[0]}-{_YEARS[1]} at "
            f"{_where(np.flatnonzero(out_of_range), line_offset, line_unit)}"
        )
        refused |= out_of_range
    if date_format is None:
        day_month = text.str.match(_DAY_MONTH).to_numpy(dtype=bool)
        if day_month.any():
            problems.append(
                f"ambiguous day/month order (e.g. {text.iloc[np.flatnonzero(day_month)[0]]!r}); "
                "pass --date-format / date_format='%d/%m/%Y' (or '%m/%d/%Y') at "
                f"{_where(np.flatnonzero(day_month), line_offset, line_unit)}"
            )
            refused |= day_month
    text = text.where(~refused)
    if date_format is not None:
        aware = np.full(len(text), "%z" in date_format)
        fmt = date_format
    else:
        aware = text.str.contains(_OFFSET, regex=True).to_numpy(dtype=bool)
        fmt = "mixed"
    parsed_aware = pd.to_datetime(text.where(aware), errors="coerce", utc=True, format=fmt)
    parsed_naive = pd.to_datetime(text.where(~aware), errors="coerce", format=fmt)
    ok_aware = aware & parsed_aware.notna().to_numpy()
    ok_naive = ~aware & parsed_naive.notna().to_numpy()
    bad = np.flatnonzero(~(ok_aware | ok_naive) & ~refused)
    if len(bad):
        problems.append(
            f"unparseable timestamp{f' (format {date_format!r})' if date_format else ''} at "
            f"{_where(bad, line_offset, line_unit)}"
        )
    if ok_aware.any() and ok_naive.any():
        odd = ok_naive if ok_aware.sum() >= ok_naive.sum() else ok_aware
        problems.append(
            "timestamps mix time zones or naive and aware values (use one convention); "
            f"odd ones at {_where(np.flatnonzero(odd), line_offset, line_unit)}"
        )
    naive = not ok_aware.any()
    if naive:
        index = pd.DatetimeIndex(parsed_naive).tz_localize(IST_NAME)
    else:
        index = pd.DatetimeIndex(parsed_aware).tz_convert(IST_NAME)
    return index, problems, naive


def validate_bars(
    raw: pd.DataFrame,
    *,
    timeframe: str,
    source: str = "<frame>",
    label: str = "start",
    line_offset: int = 2,
    line_unit: str = "line",
    date_format: str | None = None,
    whole_file: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """Return ``(bars, warnings)``: a clean OHLCV frame indexed by IST bar start, or raise.

    Parameters
    ----------
    raw
        Table with a timestamp column (``timestamp``/``ts``/``datetime``/``date``/``time``, any
        case) and ``open, high, low, close`` (+ optional ``volume``), as read from a file.
    timeframe
        The file's candle length; every timestamp must lie on that timeframe's session grid.
    label
        ``"start"`` (Velox's convention) or ``"end"`` for vendors that label a bar by its last
        minute; end labels are moved back by one bar length.
    line_offset, line_unit
        How row positions are reported: CSV lines are ``index + 2`` (header is line 1).
    date_format
        strftime format of text timestamps (e.g. ``"%d/%m/%Y %H:%M"``); needed for day/month
        dates such as ``01/02/2024``, which are refused without it. Include ``%z`` for offsets.
    whole_file
        False when ``raw`` is one chunk of a file (:func:`read_csv_bars`): its rows stay in file
        order and the checks that need every row (order, sessions) are left to the caller.

    Raises
    ------
    DataError
        Naming every rule broken with the offending line numbers: missing columns, unparseable
        or mixed timestamps, non-numeric/NaN/non-positive prices, negative volume,
        low > open/close > high, duplicate timestamps, timestamps off the timeframe grid.
    """
    check_timeframe(timeframe)
    if label not in ("start", "end"):
        raise DataError(f"label must be 'start' or 'end', got {label!r}")
    warnings: list[str] = []
    problems: list[str] = []
    columns = {str(c).strip().lower(): c for c in raw.columns}
    ts_col = next((columns[a] for a in _TIMESTAMP_ALIASES if a in columns), None)
    missing = [c for c in PRICE_COLUMNS if c not in columns]
    if ts_col is None:
        missing.insert(0, "timestamp")
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)}; found "
            f"{', '.join(map(str, raw.columns)) or 'none'}"
        )
    if len(raw) == 0:
        raise DataError(f"{source}: no rows")

    index, ts_problems, naive = _parse_timestamps(raw[ts_col], line_offset, line_unit, date_format)
    problems.extend(ts_problems)
    if naive:
        warnings.append("timestamps had no time zone and were read as IST (Asia/Kolkata)")

    values = {}
    for name in PRICE_COLUMNS:
        col = pd.to_numeric(raw[columns[name]], errors="coerce").astype("float64").to_numpy()
        nan_rows = np.flatnonzero(~np.isfinite(col))
        if len(nan_rows):
            problems.append(
                f"{name} is missing or not a number at {_where(nan_rows, line_offset, line_unit)}"
            )
        bad = np.flatnonzero(np.isfinite(col) & (col <= 0))
        if len(bad):
            problems.append(f"{name} is not positive at {_where(bad, line_offset, line_unit)}")
        values[name] = col
    if "volume" in columns:
        vol = pd.to_numeric(raw[columns["volume"]], errors="coerce").astype("float64").to_numpy()
        bad = np.flatnonzero(~np.isfinite(vol) | (vol < 0))
        if len(bad):
            problems.append(
                f"volume is missing, negative or not a number at "
                f"{_where(bad, line_offset, line_unit)}"
            )
    else:
        vol = np.zeros(len(raw))
        warnings.append("no volume column; volume set to 0")
    values["volume"] = vol

    o, h, l, c = (values[n] for n in PRICE_COLUMNS)  # noqa: E741
    with np.errstate(invalid="ignore"):
        inconsistent = np.flatnonzero((l > np.minimum(o, c)) | (h < np.maximum(o, c)) | (l > h))
    if len(inconsistent):
        problems.append(
            "OHLC inconsistent (needs low <= open, close <= high) at "
            f"{_where(inconsistent, line_offset, line_unit)}"
        )

    minutes = timeframe_minutes(timeframe)
    if label == "end":
        index = index - (pd.Timedelta(days=1) if minutes is None else pd.Timedelta(minutes=minutes))
    ns = index.tz_convert("UTC").as_unit("ns").asi8
    off_grid = np.flatnonzero(bucket_start_ns(ns, timeframe) != ns)
    if len(off_grid) and not ts_problems:
        example = index[off_grid[0]]
        problems.append(
            f"timestamp not on the {timeframe} session grid (bars start at 09:15 IST"
            f"{'' if minutes else ', daily bars at 00:00 IST'}; e.g. {example}) at "
            f"{_where(off_grid, line_offset, line_unit)}"
            + (
                " — if the file labels bars by their end, import with label='end'"
                if label == "start"
                else ""
            )
        )

    dup = np.flatnonzero(pd.Index(ns).duplicated(keep=False))
    if len(dup) and not ts_problems:
        problems.append(f"duplicate timestamp at {_where(dup, line_offset, line_unit)}")

    if problems:
        raise DataError(f"{source}: rejected, nothing written:\n  " + "\n  ".join(problems))

    bars = pd.DataFrame(values, index=index.rename("ts"))
    if not whole_file:
        return bars, warnings
    return _whole_file_checks(bars, warnings, timeframe)


def _whole_file_checks(
    bars: pd.DataFrame, warnings: list[str], timeframe: str
) -> tuple[pd.DataFrame, list[str]]:
    """Sort out-of-order rows (with a warning) and add the session warnings."""
    if not bars.index.is_monotonic_increasing:
        bars = bars.sort_index()
        warnings.append("rows were not in time order; sorted")
    warnings.extend(_session_warnings(bars.index, timeframe))
    return bars, warnings


def read_csv_bars(
    path: Path | str,
    *,
    timeframe: str,
    label: str = "start",
    date_format: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Return ``(bars, warnings)`` of a CSV (or .csv.gz) bar file, validated as it streams.

    Why: a file can be far larger than memory as text, and garbage may start anywhere. Each
    chunk of :data:`_CHUNK_ROWS` lines is checked (UTF-8, then every rule of
    :func:`validate_bars`, its lines numbered as in the file) and only its numeric bars are
    kept, so memory holds the numbers, never the text, and the first bad chunk stops the read
    with the file's line numbers (nothing later is read). Then the checks across chunks:
    duplicate timestamps (with both lines), order and sessions. The options are
    :func:`validate_bars`'s.
    """
    path = Path(path)
    _check_readable(path)
    parts: list[pd.DataFrame] = []
    lines: list[np.ndarray] = []
    warnings: list[str] = []
    with _read_errors(path):
        _check_first_line(path)
        reader = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding_errors="replace",
            chunksize=_CHUNK_ROWS,
        )  # fmt: skip
        with reader:
            for chunk in reader:
                _check_utf8(path, chunk)
                first = int(chunk.index[0]) + 2 if len(chunk) else 2  # header is line 1
                bars, chunk_warnings = validate_bars(
                    chunk.reset_index(drop=True), timeframe=timeframe, source=str(path),
                    label=label, line_offset=first, date_format=date_format, whole_file=False,
                )  # fmt: skip
                if not parts:  # per-file facts (no volume column, naive times): said once
                    warnings.extend(chunk_warnings)
                parts.append(bars)
                lines.append(np.arange(first, first + len(bars)))
    if not parts:
        raise DataError(f"{path}: no rows")
    bars = pd.concat(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        dup = np.flatnonzero(bars.index.duplicated(keep=False))
        if len(dup):
            at = ", ".join(str(n) for n in np.concatenate(lines)[dup][:_MAX_LISTED])
            raise DataError(f"{path}: rejected, nothing written: duplicate timestamp at line {at}")
    return _whole_file_checks(bars, warnings, timeframe)


def _session_warnings(index: pd.DatetimeIndex, timeframe: str) -> list[str]:
    """Return warnings for bars outside NSE sessions and for missing bars (gaps).

    Sessions come from :func:`velox.calendar.sessions`, so Muhurat evenings and extended
    sessions count as sessions and holidays are not gaps.
    """
    from velox.calendar import expected_bar_starts, sessions

    dates = pd.DatetimeIndex(index.date).tz_localize(IST_NAME)
    calendar = sessions(dates[0], dates[-1])
    if timeframe_minutes(timeframe) is None:
        missing = calendar.index.difference(dates)
        extra = dates.difference(calendar.index)
        out = []
        if len(missing):
            out.append(
                f"gaps: {len(missing)} of {len(calendar)} NSE sessions between "
                f"{dates[0].date()} and {dates[-1].date()} have no bar (first "
                f"{missing[0].date()})"
            )
        if len(extra):
            out.append(
                f"{len(extra)} bar(s) on days that are not NSE sessions (first {extra[0].date()}); "
                "kept"
            )
        return out
    opens = calendar["open"].reindex(dates).to_numpy()
    closes = calendar["close"].reindex(dates).to_numpy()
    stamps = index.to_numpy()
    with np.errstate(invalid="ignore"):
        inside = (stamps >= opens) & (stamps < closes)
    out = []
    if (~inside).any():
        days = sorted({str(d) for d in index[~inside].date})
        out.append(
            f"{int((~inside).sum())} bar(s) outside NSE session hours on {len(days)} day(s) "
            f"(first {days[0]}); kept"
        )
    present = pd.Series(1, index=index[inside]).groupby(dates[inside]).size()
    missing_total, short_days = 0, []
    for day in calendar.index:
        expected = len(expected_bar_starts(day, timeframe))
        have = int(present.get(day, 0))
        if have < expected:
            missing_total += expected - have
            short_days.append((day.date(), have, expected))
    if short_days:
        day, have, expected = short_days[0]
        out.append(
            f"gaps: {missing_total} missing {timeframe} bar(s) on {len(short_days)} of "
            f"{len(calendar)} session(s) (first {day}: {have}/{expected} bars)"
        )
    return out


def import_bars(
    path: Path | str,
    instrument_id: str,
    timeframe: str,
    *,
    store: Store | None = None,
    label: str = "start",
    force: bool = False,
    replace: bool = False,
    date_format: str | None = None,
) -> ImportResult:
    """Validate a bar file and write it to the store in one transaction.

    A file never silently overwrites: bars it shares with the stored series must hold the same
    values (re-importing identical rows is fine), else the import is refused naming the first
    differing bar, unless ``replace`` — which is audited in ``import_log`` like every import.
    Rows at other timestamps merge with what is stored.

    The same bytes imported into the same series, with nothing written there since, are a no-op
    (``skipped``) unless ``force``. The shortcut is keyed by content (sha256) and series, never
    by path, so re-importing an original after another file replaced it restores it.

    An F&O contract (an ``NFO:``/``BFO:`` id such as ``NFO:NIFTY25MAY24500CE``, Kite's trading
    symbol) must be listed in the store's instrument master or the bundled one; a bundled row
    is written to the store's ``instruments`` table with the bars, so the store knows the
    contract's strike, expiry, kind, lot and tick. Bars after its expiry are refused; prices
    off its tick grid are a warning.

    Raises
    ------
    DataError
        If the file fails validation or would change stored bars; nothing is written.
    ValidationError
        If ``instrument_id`` breaks the id grammar (:func:`velox.types.check_instrument_id`).
    UnknownInstrument
        If an F&O id is in no instrument master (the closest listed ids are named).
    """
    from velox.store import open_store

    path = Path(path)
    check_instrument_id(instrument_id)
    check_timeframe(timeframe)
    _check_readable(path)
    store = store or open_store()
    contract, listed_in = _contract(store, instrument_id)
    digest = file_sha256(path)
    key = f"{instrument_id}|{timeframe}"
    if not force and store.import_is_current(key, digest):
        return ImportResult(str(path), instrument_id, timeframe, 0, skipped=True)
    parquet = path.name.lower().endswith(_PARQUET_SUFFIXES)
    validate = partial(
        validate_bars,
        timeframe=timeframe,
        source=str(path),
        label=label,
        line_offset=1 if parquet else 2,
        line_unit="row" if parquet else "line",
        date_format=date_format,
    )
    if parquet:
        bars, warnings = validate(read_bar_file(path))
    else:  # streamed: checked chunk by chunk, only numbers kept
        bars, warnings = read_csv_bars(
            path, timeframe=timeframe, label=label, date_format=date_format
        )
    if contract is not None:
        warnings.extend(_check_contract_bars(bars, contract, path))
    from velox.store.core import ImportLogEntry

    with store.connect() as conn, conn.transaction():
        if listed_in == "bundled":  # the store learns the contract its bars belong to
            store.write_instruments(contract.to_frame().T, conn=conn)
        stored, new = store.differing_bars(instrument_id, timeframe, bars, conn=conn)
        if len(stored) and not replace:
            raise DataError(_overwrite_message(path, instrument_id, timeframe, stored, new))
        rows = store.write_bars(instrument_id, timeframe, bars, conn=conn)
        store.record_import(key, digest, instrument_id, timeframe, rows, conn=conn)
        store.log_import(
            ImportLogEntry(
                imported_by=_user(),
                source=str(path.resolve()),
                sha256=digest,
                instrument_id=instrument_id,
                timeframe=timeframe,
                rows=rows,
                replaced_rows=len(stored),
                replace=replace,
            ),
            conn=conn,
        )
    for warning in warnings:
        log.warning("%s: %s", path.name, warning)
    if len(stored):
        log.warning(
            "replaced %d stored %s bars of %s with %s (audited in import_log)",
            len(stored),
            timeframe,
            instrument_id,
            path,
        )
    log.info("imported %d %s bars of %s from %s", rows, timeframe, instrument_id, path)
    return ImportResult(
        str(path), instrument_id, timeframe, rows, warnings=warnings, replaced=len(stored)
    )


#: Exchanges whose instruments are contracts (options, futures): their bars mean something only
#: with the contract's strike, expiry, lot and tick, so importing them needs the contract listed.
DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO"})


def _contract(store: Store, instrument_id: str) -> tuple[pd.Series | None, str]:
    """Return (master row, where it was found) of an F&O contract; (None, "") for cash ids.

    The store's ``instruments`` table (a broker's full master, downloaded into it) is asked
    first, then the bundled master (``data/instruments``); an id neither lists is refused with
    the closest listed ids, since bars of a contract whose strike and expiry nobody knows
    cannot be priced, charged or expired.
    """
    from velox.errors import UnknownInstrument
    from velox.instruments import COLUMNS, load_bundled_master

    if instrument_id.partition(":")[0] not in DERIVATIVE_EXCHANGES:
        return None, ""
    from psycopg import sql

    query = sql.SQL("SELECT {} FROM instruments WHERE id = %s").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with store.connect() as conn:
        found = conn.execute(query, (instrument_id,)).fetchone()
    if found is not None:
        return pd.Series(found, index=list(COLUMNS), dtype=object), "store"
    try:
        return load_bundled_master().row(instrument_id), "bundled"
    except UnknownInstrument as exc:
        raise UnknownInstrument(
            f"{exc}. Neither the store's instrument master nor the bundled one lists it: load "
            "a master that does (e.g. the broker's download into the store) before importing "
            "its bars"
        ) from None


def _check_contract_bars(bars: pd.DataFrame, contract: pd.Series, path: Path) -> list[str]:
    """Refuse bars after a contract's expiry; return a warning for prices off its tick grid."""
    expiry = contract["expiry"]
    if expiry is not None and not pd.isna(expiry):
        last_day = pd.Timestamp(expiry).date()
        late = bars.index[bars.index.date > last_day]
        if len(late):
            raise DataError(
                f"{path}: rejected, nothing written: {len(late)} bar(s) after {contract['id']} "
                f"expired on {last_day} (first {late[0].strftime('%Y-%m-%d %H:%M IST')}); is "
                "the instrument id right?"
            )
    tick = float(contract["tick_size"])
    prices = bars[list(PRICE_COLUMNS)].to_numpy(dtype=float) / tick
    off = np.abs(prices - np.round(prices)) > 1e-6
    if tick > 0 and off.any():
        rows = int(off.any(axis=1).sum())
        return [f"{rows} bar(s) have prices off {contract['id']}'s tick grid of {tick:g}"]
    return []


def _overwrite_message(
    path: Path, instrument_id: str, timeframe: str, stored: pd.DataFrame, new: pd.DataFrame
) -> str:
    """Return the one-line refusal naming the first stored bar the file would change."""

    def ohlcv(row: pd.Series) -> str:
        return "/".join(f"{row[c]:g}" for c in BAR_COLUMNS)

    when = stored.index[0].tz_convert(IST_NAME).strftime("%Y-%m-%d %H:%M IST")
    return (
        f"{path}: would overwrite {len(stored)} stored {timeframe} bar(s) of {instrument_id} "
        f"with different values; first at {when}: stored O/H/L/C/V {ohlcv(stored.iloc[0])}, "
        f"file {ohlcv(new.iloc[0])}; nothing written (use --replace / replace=True to "
        "overwrite, which is audited)"
    )


def _user() -> str:
    """Return the OS user name for the import audit (``unknown`` where none is set)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def bundled_files(data_dir: Path | None = None) -> list[tuple[Path, str, str]]:
    """Return ``(path, instrument_id, timeframe)`` for every bar file shipped in ``data/bars``."""
    from velox.config import get_settings

    folder = (data_dir or get_settings().data_dir) / "bars"
    manifest = folder / "MANIFEST.csv"
    if not manifest.exists():
        raise DataError(f"{manifest} is missing; the bundled data set is incomplete")
    table = pd.read_csv(manifest, dtype=str)
    return [(folder / row.file, row.instrument_id, row.timeframe) for row in table.itertuples()]


def ensure_bundled(
    instrument_ids: Iterable[str] | str | None = None,
    timeframe: str | None = None,
    *,
    store: Store | None = None,
    progress: bool = False,
) -> list[ImportResult]:
    """Import the bundled bar files of ``instrument_ids`` (all when None) at ``timeframe`` (all
    when None) unless already stored: what a notebook runs first, so it works on a fresh store
    and costs nothing after ``make run`` (a file already imported is skipped by its content).

    Raises
    ------
    DataError
        An instrument (or timeframe) has no bundled file; the message lists what is bundled.

    Examples
    --------
    >>> ensure_bundled(["NSE:RELIANCE", "NSE:INFY"], "1d")            # doctest: +SKIP
    """
    files = bundled_files()
    wanted = [instrument_ids] if isinstance(instrument_ids, str) else instrument_ids
    chosen = [
        item
        for item in files
        if (wanted is None or item[1] in wanted) and (timeframe is None or item[2] == timeframe)
    ]
    have = {item[1] for item in chosen}
    missing = sorted(set(wanted or ()) - have)
    if missing or not chosen:
        shown = ", ".join(sorted({f"{iid} {tf}" for _, iid, tf in files})[:8])
        raise DataError(
            f"no bundled {timeframe or ''} bars of {', '.join(missing) or 'that selection'}; "
            f"bundled: {shown} … (data/bars/MANIFEST.csv)"
        )
    return import_many(chosen, store=store, progress=progress)


def import_many(
    items: Iterable[tuple[Path, str, str]],
    *,
    store: Store | None = None,
    progress: bool = True,
    replace: bool = False,
    keep_going: bool = False,
) -> list[ImportResult]:
    """Import several files, with a progress bar; each file is its own transaction.

    By default the first refused file raises (the files before it stay imported). With
    ``keep_going`` every file that can be imported is, and a refused one (a
    :class:`~velox.errors.VeloxError` such as a failed validation or an overwrite of different
    bars) comes back as a result whose ``refused`` is the one-line reason; nothing of it was
    written. A store that cannot be reached (:class:`~velox.errors.StoreError`) still raises:
    it is no fault of the file, and every later file would fail the same way.

    Examples
    --------
    >>> results = import_many(bundled_files(), keep_going=True)      # doctest: +SKIP
    >>> [(r.source, r.refused) for r in results if r.refused]        # doctest: +SKIP
    []
    """
    from tqdm.auto import tqdm

    from velox.store import open_store

    store = store or open_store()
    items = list(items)
    results = []
    bar = tqdm(items, desc="importing bars", unit="file", disable=not progress, leave=False)
    for path, instrument_id, timeframe in bar:
        try:
            result = import_bars(path, instrument_id, timeframe, store=store, replace=replace)
        except StoreError:
            raise
        except VeloxError as exc:
            if not keep_going:
                raise
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            log.info("refused %s (%s %s): %s", path, instrument_id, timeframe, reason)
            result = ImportResult(str(path), instrument_id, timeframe, 0, refused=reason)
        results.append(result)
    return results
