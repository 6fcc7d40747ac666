"""The watchlist: LTP, change %, volume and the day's range of every instrument a run trades."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from velox.ui.base import LiveView, show, table

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


class Watchlist(LiveView):
    """Live quotes of a run's instruments; clicking a row sets :attr:`selected`.

    Only the cells that changed are sent to the browser (Tabulator ``patch``), so a hundred
    symbols ticking several times a second cost a few hundred bytes per update.
    """

    selected = param.String(default=None, allow_None=True, doc="Instrument clicked last.")

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.table = table(
            pd.DataFrame(columns=COLUMNS), selectable=1, height=320, name="watchlist",
            formatters={"change_pct": {"type": "money", "precision": 2, "symbol": "%",
                                       "symbolAfter": True},
                        "ltp": {"type": "money", "precision": 2}},
            text_align={"ltp": "right", "change_pct": "right", "volume": "right"},
        )  # fmt: skip
        self.table.param.watch(self._clicked, "selection")
        super().__init__(desk, **params)

    def _clicked(self, event: Any) -> None:
        if event.new:
            frame = self.table.value
            row = event.new[0]
            if row < len(frame):
                self.selected = str(frame["instrument"].iloc[row])

    def clear(self) -> None:
        self.table.value = pd.DataFrame(columns=COLUMNS)

    def apply(self, snap: RunSnapshot) -> None:
        frame = snap.derived_frame("watchlist", lambda s: watchlist_frame(s.quotes))
        if show(self.table, frame, ("instrument",)) and self.selected is None and len(frame):
            self.selected = str(frame["instrument"].iloc[0])

    def layout(self) -> Any:
        return pn.Column("### Watchlist", self.table, sizing_mode="stretch_width")
