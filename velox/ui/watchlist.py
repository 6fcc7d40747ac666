"""The watchlist: LTP, change %, volume and the day's range of every instrument a run trades."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from velox.ui.base import LiveView, grouped
from velox.ui.grid import Grid

if TYPE_CHECKING:
    from velox.ui.live import RunSnapshot

COLUMNS = ["instrument", "ltp", "change_pct", "volume", "high", "low", "time"]


def watchlist_frame(quotes: pd.DataFrame) -> pd.DataFrame:
    """The watchlist's rows from ``Store.run_quotes``: change % against the previous close
    when the feed gave one, else against the day's open (the first price seen)."""
    if quotes.empty:
        return pd.DataFrame(columns=COLUMNS)
    reference = quotes["prev_close"].where(quotes["prev_close"] > 0, quotes["open"])
    ts = pd.to_datetime(quotes["ts"], utc=True).dt.tz_convert("Asia/Kolkata")
    return pd.DataFrame(
        {
            "instrument": quotes["instrument_id"].to_numpy(),
            "ltp": quotes["ltp"].to_numpy(dtype=float),
            "change_pct": ((quotes["ltp"] / reference - 1.0) * 100.0).round(2).to_numpy(),
            "volume": quotes["volume"].fillna(0).astype("int64").to_numpy(),
            "high": quotes["high"].to_numpy(dtype=float),
            "low": quotes["low"].to_numpy(dtype=float),
            "time": ts.dt.strftime("%H:%M:%S").to_numpy(),
        }
    )


def watchlist_text(frame: pd.DataFrame) -> np.ndarray:
    """The watchlist's cells as the screen shows them: prices with two decimals and volumes
    in Indian digit grouping, change % signed (an object array, one row per instrument)."""
    if frame.empty:
        return np.empty((0, len(COLUMNS)), dtype=object)
    return np.array(
        [
            frame["instrument"].tolist(),
            [grouped(x) for x in frame["ltp"]],
            [f"{x:+.2f}%" if x == x else "–" for x in frame["change_pct"]],
            [grouped(x, 0) for x in frame["volume"]],
            [grouped(x) for x in frame["high"]],
            [grouped(x) for x in frame["low"]],
            frame["time"].tolist(),
        ],
        dtype=object,
    ).T.copy()


class Watchlist(LiveView):
    """Live quotes of a run's instruments; clicking a row sets :attr:`selected`.

    The rows are a :class:`~velox.ui.grid.Grid`: each update sends the browser the text of the
    cells that changed and nothing else, formatted once per snapshot for every session.
    :attr:`frame` holds the numbers shown (a DataFrame of :data:`COLUMNS`).
    """

    selected = param.String(default=None, allow_None=True, doc="Instrument clicked last.")

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.grid = Grid(
            columns=COLUMNS, align=["left", "right", "right", "right", "right", "right", "left"],
            sign_column=COLUMNS.index("change_pct"), tick_column=COLUMNS.index("ltp"),
            height=320, sizing_mode="stretch_width", name="watchlist",
        )  # fmt: skip
        self.frame = pd.DataFrame(columns=COLUMNS)
        self.grid.param.watch(self._clicked, "selected")
        super().__init__(desk, **params)

    def _clicked(self, event: Any) -> None:
        if event.new:
            self.selected = event.new

    def clear(self) -> None:
        self.frame = pd.DataFrame(columns=COLUMNS)
        self.grid.show(watchlist_text(self.frame))

    def apply(self, snap: RunSnapshot) -> None:
        frame = snap.derived_frame("watchlist", lambda s: watchlist_frame(s.quotes))
        text = snap.derived_frame("watchlist_text", lambda s: watchlist_text(frame))
        self.frame = frame
        if self.grid.show(text) and self.selected is None and len(self.frame):
            self.selected = str(self.frame["instrument"].iloc[0])

    def layout(self) -> Any:
        return pn.Column("### Watchlist", self.grid, sizing_mode="stretch_width")
