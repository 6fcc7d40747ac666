"""Velox: a Jupyter-first research and live-trading workbench for Indian markets.

``import velox`` is deliberately cheap: it imports no pandas, numba, vectorbt, panel or broker
SDK. Submodules load on first attribute access (``velox.indicators``, ``velox.costs`` …), and
:func:`bars` opens the store only when called.

Examples
--------
>>> import velox
>>> df = velox.bars("NSE:RELIANCE", "1d", start="2020-01-01")     # doctest: +SKIP
>>> df.columns.tolist()                                             # doctest: +SKIP
['open', 'high', 'low', 'close', 'volume']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBMODULES = frozenset(
    {
        "brokers",
        "calendar",
        "config",
        "costs",
        "data",
        "errors",
        "feeds",
        "indicators",
        "instruments",
        "store",
        "types",
    }
)

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd


def bars(
    instrument_id: str,
    timeframe: str = "1d",
    start: str | datetime | None = None,
    end: str | datetime | None = None,
) -> pd.DataFrame:
    """Return stored OHLCV bars for one instrument as a DataFrame indexed by IST bar start.

    Higher timeframes not stored directly are resampled from finer stored bars, aligned to the
    09:15 IST session open (daily bars are labelled by session date, 00:00 IST). ``start`` and
    ``end`` are inclusive; naive strings/datetimes are read as IST.

    Raises
    ------
    velox.errors.DataError
        If nothing is stored for that instrument and timeframe (the message lists what is).

    Examples
    --------
    >>> import velox
    >>> velox.bars("NSE:NIFTY", "15m", start="2022-09-01", end="2022-09-30")  # doctest: +SKIP
    """
    from velox.calendar import check_timeframe
    from velox.errors import DataError
    from velox.store import open_store

    check_timeframe(timeframe)
    store = open_store()
    frame = store.read_bars(instrument_id, timeframe, start=start, end=end)
    if frame.empty:
        summary = store.bar_summary()
        mine = summary[summary["instrument_id"] == instrument_id]
        if mine.empty:
            known = ", ".join(sorted(summary["instrument_id"].unique())[:12])
            raise DataError(
                f"no bars stored for {instrument_id!r}; stored instruments include: "
                f"{known or 'none — run `velox data import` or `make run`'}"
            )
        if start is None and end is None:
            have = ", ".join(sorted(mine["timeframe"]))
            raise DataError(
                f"no {timeframe} bars for {instrument_id} and none finer to resample from; "
                f"stored timeframes: {have}"
            )
    return frame


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"velox.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'velox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES})
