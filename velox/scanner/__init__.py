"""The scanner: which instruments of a universe meet a condition on one bar, ranked.

:func:`scan` (``velox.scan``) evaluates a **preset** (:data:`PRESETS`: RSI oversold, 52-week
high, volume spike, gap, Supertrend flip, moving-average cross, opening-range breakout …) or a
**custom condition** on the bar at ``at`` of every instrument of a universe, and returns one row
per instrument that meets it, with the values the condition used, ranked.

Custom conditions are pandas-style expressions over columns: the bar's ``open``, ``high``,
``low``, ``close``, ``volume``; indicators named ``<indicator>_<window>`` (``rsi_14``,
``sma_200``, ``atr_14`` …, :data:`INDICATORS`), a few without a window (``macd``, ``vwap`` …);
and ``prev_<column>``, any column one bar earlier (``prev_close``, ``prev_sma_50``). Only the
columns an expression names are computed, with :mod:`velox.indicators` (TA-Lib-exact, over the
instrument's whole history up to the bar). The expression is parsed with :mod:`ast` into a small
allowed subset — names, numbers, comparisons (chained too), ``and``/``or``/``not`` (or
``&``/``|``/``~``), ``+ - * /``, unary minus, parentheses — and evaluated over numpy arrays by
walking that tree: nothing is ever passed to ``eval``, so a condition cannot call a function,
read an attribute or run any other code. A row where a column the condition names is undefined
(an indicator's warm-up, no previous bar) never matches.

See ``docs/scanner.md``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import DataError, ValidationError
from velox.scanner._columns import BASE_COLUMNS, FIXED, INDICATORS, _Columns, opening_range
from velox.scanner._language import MAX_CONDITION_LENGTH, _compile, _evaluate
from velox.scanner._presets import _EXTRA, PRESETS, Preset, _Rule, _rule

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from velox.store import Store

__all__ = [
    "scan",
    "evaluate",
    "opening_range",
    "Preset",
    "PRESETS",
    "INDICATORS",
    "FIXED",
    "BASE_COLUMNS",
    "DASK_THRESHOLD",
    "CHUNK_SIZE",
    "PROGRESS_DELAY",
    "MAX_CONDITION_LENGTH",
]

logger = logging.getLogger(__name__)

#: A universe with more instruments than this runs through
#: :func:`velox.backtest.distributed.run_tasks` (Dask) in chunks of :data:`CHUNK_SIZE`.
DASK_THRESHOLD = 500
#: Instruments per Dask task: one task per instrument would cost more in scheduling than in work.
CHUNK_SIZE = 25
#: Seconds a scan runs before its progress bar appears (short scans show none).
PROGRESS_DELAY = 1.0


# ---- evaluation --------------------------------------------------------------------------------


def evaluate(
    condition_or_preset: str,
    bars: pd.DataFrame,
    timeframe: str = "1d",
    **preset_params: object,
) -> pd.DataFrame:
    """Return the condition's verdict on every bar of one instrument, beside the values it uses.

    The history behind :func:`scan`'s one-bar answer: a DataFrame on ``bars``' index with the
    columns the condition (or preset) reports and a boolean ``match`` column.

    Examples
    --------
    >>> import velox
    >>> out = velox.scanner.evaluate("rsi_14 < 30", df)           # doctest: +SKIP
    >>> out[out["match"]].index[-5:]          # the last five oversold days  # doctest: +SKIP
    """
    import pandas as pd

    from velox.calendar import check_timeframe

    check_timeframe(timeframe)
    rule = _rule(condition_or_preset, timeframe, preset_params, None, None)
    _check_bars("bars", bars)
    if not _on_grid(bars, timeframe):
        from velox import _check_grid

        _check_grid("bars", timeframe, bars)  # raises, naming the first bar off the grid
    columns = _frame_columns(rule, timeframe, bars)
    match, values = _apply(rule, columns)
    out = pd.DataFrame(values, index=bars.index)
    out["match"] = match
    return out


def _frame_columns(rule: _Rule, timeframe: str, frame: pd.DataFrame) -> _Columns:
    columns = _Columns(frame, timeframe)
    if rule.extra is not None:
        names, compute = _EXTRA[rule.extra[0]]
        extra = compute(columns, **dict(rule.extra[1]))
        columns = _Columns(frame, timeframe, {n: np.asarray(extra[n], dtype=np.float64)
                                              for n in names})  # fmt: skip
    return columns


def _apply(rule: _Rule, columns: _Columns) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the condition's verdict on every bar and the value columns."""
    condition = _compile(rule.condition)
    with np.errstate(all="ignore"):
        match = np.asarray(_evaluate(condition.tree, columns), dtype=bool)
        for name in condition.names:  # an undefined input (warm-up, no previous bar): no match
            match &= ~np.isnan(columns[name])
        values = {name: _evaluate(_compile(text).tree, columns) for name, text in rule.values}
    return match, values


def _last_bar(rule: _Rule, timeframe: str, frame: pd.DataFrame) -> dict[str, object] | None:
    """Return the scan row of one instrument's bars (ending at the bar scanned), or None."""
    if frame.empty:
        return None
    match, values = _apply(rule, _frame_columns(rule, timeframe, frame))
    if not match[-1]:
        return None
    row: dict[str, object] = {"ts": frame.index[-1]}
    row.update({name: float(column[-1]) for name, column in values.items()})
    return row


# ---- sources -----------------------------------------------------------------------------------


class _StoreSource:
    """Bars read from a store; pickled (for a Dask worker) as its URL, reopened there."""

    def __init__(self, store: Store) -> None:
        self.store: Store | None = store
        self.url = store.url

    def __getstate__(self) -> dict[str, object]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.url = str(state["url"])
        self.store = None

    def read(self, instrument_id: str, timeframe: str, at: object) -> pd.DataFrame:
        if self.store is None:
            from velox.store import open_store

            self.store = open_store(self.url)
        return self.store.read_bars(instrument_id, timeframe, end=at)


class _MappingSource:
    """Bars handed in as {instrument id: DataFrame}."""

    def __init__(self, bars: Mapping[str, pd.DataFrame]) -> None:
        self.bars = bars

    def read(self, instrument_id: str, timeframe: str, at: object) -> pd.DataFrame:
        import pandas as pd

        from velox import _cut

        frame = self.bars.get(instrument_id)
        if frame is None:
            return pd.DataFrame(columns=list(BASE_COLUMNS))
        return frame if at is None else _cut(frame, None, at)


def _scan_chunk(
    instrument_ids: Sequence[str],
    rule: _Rule,
    timeframe: str,
    at: object,
    source: _StoreSource | _MappingSource,
) -> list[tuple[str, dict[str, object] | None, bool]]:
    """Return (id, row or None, whether it had a bar) for each instrument of one chunk."""
    out = []
    for instrument_id in instrument_ids:
        frame = source.read(instrument_id, timeframe, at)
        try:
            row = _last_bar(rule, timeframe, frame)
        except ValidationError as exc:  # e.g. a NaN inside the bars an indicator reads
            raise DataError(f"{instrument_id} {timeframe}: {exc}") from None
        out.append((instrument_id, row, not frame.empty))
    return out


def _on_grid(frame: pd.DataFrame, timeframe: str) -> bool:
    """Return whether every bar of ``frame`` starts on ``timeframe``'s grid (a fast check; the
    slow one, ``velox._check_grid``, explains a failure)."""
    import pandas as pd

    from velox.calendar import bucket_start_ns

    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        return False
    ns = index.as_unit("ns").asi8
    return bool((np.asarray(bucket_start_ns(ns, timeframe)) == ns).all())


def _check_bars(key: object, frame: object) -> None:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"bars[{key!r}] must be a DataFrame, not {type(frame).__name__}")
    missing = [c for c in BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"bars[{key!r}] has no {', '.join(missing)} column(s); it needs OHLCV")


# ---- universes ---------------------------------------------------------------------------------


def _universe(
    universe: str | Sequence[str] | None,
    timeframe: str,
    bars: Mapping[str, pd.DataFrame] | None,
    store: Store | None,
) -> tuple[list[str], bool]:
    """Return the instrument ids to scan and whether they were listed explicitly."""
    from velox.universes import ALL, resolve

    if universe is None:
        universe = ALL
    if isinstance(universe, str) and universe.strip().lower() == ALL:
        return _all_instruments(timeframe, bars, store), False
    listed = not isinstance(universe, str) or ":" in universe
    return list(resolve(universe)), listed


def _check_universe_name(universe: object) -> None:
    """Refuse an unknown universe name before any store is opened."""
    from velox.universes import ALL
    from velox.universes import universe as named

    if isinstance(universe, str) and ":" not in universe and universe.strip().lower() != ALL:
        named(universe)


def _all_instruments(
    timeframe: str, bars: Mapping[str, pd.DataFrame] | None, store: Store | None
) -> list[str]:
    from velox.calendar import TIMEFRAMES

    if bars is not None:
        return sorted(bars)
    summary = store.bar_summary()  # type: ignore[union-attr]
    target = TIMEFRAMES[timeframe]

    def serves(tf: str) -> bool:  # stored at the timeframe, or finer bars it resamples from
        minutes = TIMEFRAMES.get(tf)
        if tf == timeframe:
            return True
        if minutes is None:
            return False
        return target is None or (target > minutes and target % minutes == 0)

    return sorted(set(summary.loc[summary["timeframe"].map(serves), "instrument_id"]))


def _check_at(at: object) -> None:
    import pandas as pd

    if at is None:
        return
    if not isinstance(at, str | date | datetime | pd.Timestamp):
        raise ValidationError(f"at={at!r} must be a date or time (e.g. '2022-06-30'), or None")
    try:
        stamp = pd.Timestamp(at)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ValidationError(f"at={at!r} is not a date or time; write e.g. '2022-06-30'")


# ---- the scan ----------------------------------------------------------------------------------


def scan(
    condition_or_preset: str,
    universe: str | Sequence[str] | None = None,
    timeframe: str = "1d",
    at: date | datetime | str | None = None,
    store: Store | None = None,
    bars: Mapping[str, pd.DataFrame] | None = None,
    *,
    rank_by: str | None = None,
    ascending: bool | None = None,
    progress: bool | None = None,
    scheduler: str | Client | None = None,
    **preset_params: object,
) -> pd.DataFrame:
    """Return the instruments of a universe that meet a condition on one bar, ranked.

    One row per instrument whose bar at ``at`` meets the condition, indexed by instrument id:
    ``ts`` (that bar's start, IST) and the values the condition used as columns, in rank order.
    Indicators are computed over each instrument's whole history up to that bar, so the values
    equal TA-Lib's on the same bars.

    Parameters
    ----------
    condition_or_preset
        A preset name (:data:`PRESETS`: ``"rsi_oversold"``, ``"52w_high"``, ``"volume_spike"``,
        ``"gap_up"``, ``"supertrend_flip"``, ``"ma_cross"``, ``"orb"`` …) or a custom condition
        over columns, e.g. ``"rsi_14 < 30 and close > sma_200"``, ``"ema_20 > ema_50"``,
        ``"close > 1.02 * prev_close"`` (the module documentation lists the language).
    universe
        Instrument ids (``["NSE:RELIANCE", "NSE:TCS"]``, or one string ``"NSE:A,NSE:B"``), a
        named universe (``"nifty50"``, :mod:`velox.universes`) or ``"all"``: every instrument
        with bars at ``timeframe`` (stored, or finer bars to resample from; with ``bars``, every
        key). Default ``"all"``.
    timeframe
        Any stored or resampled timeframe (``"1d"``, ``"15m"``, ``"1h"`` …).
    at
        The bar to test: None, each instrument's last bar; a date or time, the last bar starting
        at or before it (a date alone covers that whole day, so ``at="2025-06-10"`` on 5m bars
        is that session's last bar; naive values are IST). Bars are labelled by their start.
    store
        The store to read from (default: :func:`velox.store.open_store`), unless ``bars``.
    bars
        {instrument id: DataFrame of OHLCV bars at ``timeframe``, tz-aware index} to scan
        instead of the store (notebooks, tests).
    rank_by, ascending
        Rank by this column or numeric expression (added to the result when new), lowest first
        if ``ascending``; presets have their own ranking (:attr:`Preset.ranking`), custom
        conditions without ``rank_by`` are sorted by instrument id.
    progress
        Show a tqdm progress bar: None (default) shows one only once a scan has run for
        :data:`PROGRESS_DELAY` seconds; False never.
    scheduler
        Where a Dask run goes (see :func:`velox.backtest.distributed.run_tasks`). A universe of
        more than :data:`DASK_THRESHOLD` instruments, or any universe with ``scheduler`` given,
        is scanned through ``run_tasks`` in chunks of :data:`CHUNK_SIZE` instruments.
    **preset_params
        The preset's parameters (``window=14, threshold=25``); see :data:`PRESETS`.

    Returns
    -------
    pandas.DataFrame
        ``attrs`` holds the ``condition``, ``timeframe``, ``at``, how many instruments were
        ``scanned`` (had a bar) and the ids with no bar (``missing``).

    Raises
    ------
    velox.errors.ValidationError
        For an unknown preset, parameter or column (named, with a close match), a construct the
        condition language does not allow, an unknown universe or timeframe, or a bad ``at``.
    velox.errors.DataError
        If an instrument listed by id has no bar at or before ``at``, or none of a named
        universe has.

    Examples
    --------
    >>> import velox
    >>> velox.scan("rsi_oversold", universe="nifty50", at="2020-03-23").head(3)  # doctest: +SKIP
                                          ts   close     rsi_14
    instrument_id
    NSE:INDUSINDBK 2020-03-23 00:00:00+05:30  336.45   8.479...
    NSE:AXISBANK   2020-03-23 00:00:00+05:30  308.65   8.851...
    NSE:UPL        2020-03-23 00:00:00+05:30  254.60   9.198...
    >>> velox.scan("rsi_14 < 35 and close > sma_200", universe="nifty50",
    ...            rank_by="rsi_14", ascending=True)                          # doctest: +SKIP
    >>> velox.scan("orb", universe="NSE:RELIANCE", timeframe="5m", minutes=30)  # doctest: +SKIP
    """
    from velox.calendar import check_timeframe

    check_timeframe(timeframe)
    _check_at(at)
    if not isinstance(condition_or_preset, str):
        raise ValidationError(
            "condition_or_preset must be a preset name or a condition string, not "
            f"{type(condition_or_preset).__name__}"
        )
    rule = _rule(condition_or_preset, timeframe, preset_params, rank_by, ascending)
    _check_universe_name(universe)
    if bars is not None:
        if not isinstance(bars, Mapping):
            raise ValidationError(
                f"bars= must be a mapping {{instrument_id: DataFrame}}, not {type(bars).__name__}"
            )
        from velox import _check_grid

        for key, frame in bars.items():
            _check_bars(key, frame)
            if not _on_grid(frame, timeframe):
                _check_grid(key, timeframe, frame)  # raises, naming the first bar off it
        source: _StoreSource | _MappingSource = _MappingSource(bars)
    else:
        if store is None:
            from velox.store import open_store

            store = open_store(create=False)
        source = _StoreSource(store)
    ids, listed = _universe(universe, timeframe, bars, store)
    results = _run(rule, ids, timeframe, at, source, progress, scheduler)
    rows = {iid: row for iid, row, _ in results if row is not None}
    missing = tuple(iid for iid, _, had in results if not had)
    if missing and (listed or len(missing) == len(ids)):
        where = "in bars=" if bars is not None else "stored (or resampled)"
        when = f" at or before {at}" if at is not None else ""
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise DataError(
            f"no {timeframe} bars{when} {where} for {shown}; import them (velox data import) or "
            "drop them from the universe"
        )
    if missing:
        logger.warning("scan: no %s bars for %d of %d instruments: %s", timeframe, len(missing),
                       len(ids), ", ".join(missing[:10]))  # fmt: skip
    return _result(rule, rows, timeframe, at, len(ids) - len(missing), missing)


def _run(
    rule: _Rule,
    ids: list[str],
    timeframe: str,
    at: object,
    source: _StoreSource | _MappingSource,
    progress: bool | None,
    scheduler: str | Client | None,
) -> list[tuple[str, dict[str, object] | None, bool]]:
    if scheduler is not None or len(ids) > DASK_THRESHOLD:
        from velox.backtest.distributed import run_tasks

        chunks = [tuple(ids[i : i + CHUNK_SIZE]) for i in range(0, len(ids), CHUNK_SIZE)]
        task = functools.partial(_scan_chunk, rule=rule, timeframe=timeframe, at=at,
                                 source=source)  # fmt: skip
        names = [f"{c[0]}…{c[-1]}" if len(c) > 1 else c[0] for c in chunks]
        done = run_tasks(task, chunks, progress=progress is not False, scheduler=scheduler,
                         names=names)  # fmt: skip
        return [item for chunk in done for item in chunk]
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(ids), desc=f"scan {rule.label}"[:40], unit="instrument",
              disable=progress is False, delay=0 if progress else PROGRESS_DELAY,
              leave=False) as bar:  # fmt: skip
        for instrument_id in ids:
            out.extend(_scan_chunk((instrument_id,), rule, timeframe, at, source))
            bar.update()
    return out


def _result(
    rule: _Rule,
    rows: Mapping[str, Mapping[str, object]],
    timeframe: str,
    at: object,
    scanned: int,
    missing: tuple[str, ...],
) -> pd.DataFrame:
    import pandas as pd

    from velox.calendar import IST_NAME

    columns = dict.fromkeys(name for name, _ in rule.values)
    ids = list(rows)
    stamps = [pd.Timestamp(rows[i]["ts"]).as_unit("ns") for i in ids]
    data: dict[str, object] = {"ts": pd.DatetimeIndex(stamps, dtype=f"datetime64[ns, {IST_NAME}]")}
    for column in columns:
        data[column] = np.array([rows[i][column] for i in ids], dtype=np.float64)
    frame = pd.DataFrame(data, index=pd.Index(ids, name="instrument_id"))
    if rule.rank_by is not None:
        frame = frame.sort_values(
            [rule.rank_by, "instrument_id"], ascending=[rule.ascending, True],
            na_position="last", kind="mergesort",
        )  # fmt: skip
    else:
        frame = frame.sort_index()
    frame.attrs.update(
        {"condition": rule.condition, "preset": rule.label if rule.label in PRESETS else None,
         "timeframe": timeframe, "at": None if at is None else str(at), "scanned": scanned,
         "missing": missing}
    )  # fmt: skip
    return frame
