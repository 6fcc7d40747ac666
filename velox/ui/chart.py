"""The candle chart: 1-minute candles of a run's instrument, the forming one moving live, with
a streaming EMA on top.

Updates are Bokeh data events, never redraws: a new candle is ``stream``-ed onto the
``ColumnDataSource`` (the oldest rolled off past :data:`KEEP`), the forming candle is
``patch``-ed in place. The EMA is :class:`velox.indicators.streaming.EMA` — ``update`` when a
candle closes, ``preview`` on the forming one — so the line on screen is the value a strategy
sees (TA-Lib-exact), not a recomputation.

Times: Bokeh's datetime axis has no time zones, so x is the candle's start as IST wall-clock
milliseconds (UTC + 5:30): the axis reads in exchange time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from velox.ui.base import LiveView, grouped

if TYPE_CHECKING:
    from velox.ui.live import RunSnapshot

#: Candles kept on the chart (older ones roll off).
KEEP = 300
#: Candles of history read when a chart opens on an instrument.
HISTORY = 300
#: The EMA window drawn over the candles.
EMA_WINDOW = 20
_IST_MS = 19_800_000  # 5 h 30 min
_UP, _DOWN = "#16a34a", "#dc2626"
_FIELDS = ("x", "open", "high", "low", "close", "volume", "color", "ema")


def _x(start: pd.Series) -> np.ndarray:
    """Candle starts (tz-aware) as IST wall-clock epoch milliseconds."""
    ns = pd.to_datetime(start, utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    return ns // 1_000_000 + _IST_MS


class CandleChart(LiveView):
    """1-minute candles of :attr:`instrument_id` in the chosen run, with EMA(20)."""

    instrument_id = param.String(default=None, allow_None=True, doc="The instrument charted.")

    def __init__(self, desk: Any = None, **params: Any) -> None:
        from bokeh.models import ColumnDataSource, HoverTool
        from bokeh.plotting import figure

        self.source = ColumnDataSource({k: [] for k in _FIELDS})
        fig = figure(x_axis_type="datetime", height=360, sizing_mode="stretch_width",
                     tools="xpan,xwheel_zoom,reset,crosshair", active_scroll="xwheel_zoom",
                     toolbar_location="above", name="candles")  # fmt: skip
        fig.segment("x", "high", "x", "low", color="color", source=self.source)
        fig.vbar("x", 45_000, "open", "close", fill_color="color", line_color="color",
                 source=self.source)  # fmt: skip
        fig.line("x", "ema", color="#7c3aed", line_width=1.5, source=self.source,
                 legend_label=f"EMA({EMA_WINDOW})")  # fmt: skip
        fig.legend.location = "top_left"
        fig.add_tools(HoverTool(tooltips=[("time", "@x{%H:%M}"), ("open", "@open{0.00}"),
                                          ("high", "@high{0.00}"), ("low", "@low{0.00}"),
                                          ("close", "@close{0.00}"), ("volume", "@volume"),
                                          ("EMA", "@ema{0.00}")],
                                formatters={"@x": "datetime"}, mode="vline"))  # fmt: skip
        self.figure = fig
        self.title = pn.pane.Markdown("### Chart", margin=(0, 10))
        self.pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width")
        self._ema: Any = None
        self._committed = -1  # x of the last candle folded into the EMA
        self._loaded: tuple[str | None, str | None] = (None, None)
        self.updates = 0  # data events sent (stream or patch): the benchmark reads it
        super().__init__(desk, **params)

    @param.depends("instrument_id", watch=True)
    def _instrument_changed(self) -> None:
        self._seen = (None, -1)
        self.update()

    def clear(self) -> None:
        self.source.data = {k: [] for k in _FIELDS}
        self._loaded = (None, None)

    def _load(self, snap: RunSnapshot) -> None:
        """Read the history of a newly charted instrument and seed the EMA from it."""
        from velox.indicators.streaming import EMA

        frame = self.desk.store.run_candles(snap.run_id, self.instrument_id, limit=HISTORY)
        closed = frame[frame["closed"]]
        self._ema = EMA(window=EMA_WINDOW).from_history(closed["close"].to_numpy(float))
        self._committed = int(_x(closed["start"])[-1]) if len(closed) else -1
        ema = self._ema_history(closed["close"].to_numpy(float))
        data = self._columns(frame)
        data["ema"] = np.r_[ema, [self._ema.preview(c) for c in frame["close"][len(closed) :]]]
        # writable copies: pandas' arrays are read-only (copy-on-write), and Bokeh would copy
        # a whole column, with a warning, on every patch of the forming candle
        self.source.data = {k: np.array(v) for k, v in data.items()}
        self._loaded = (snap.run_id, self.instrument_id)

    @staticmethod
    def _ema_history(closes: np.ndarray) -> np.ndarray:
        from velox.indicators import ema

        return ema(closes, EMA_WINDOW) if len(closes) else np.empty(0)

    @staticmethod
    def _columns(frame: pd.DataFrame) -> dict[str, Any]:
        up = frame["close"].to_numpy(float) >= frame["open"].to_numpy(float)
        return {
            "x": _x(frame["start"]),
            "open": frame["open"].to_numpy(float),
            "high": frame["high"].to_numpy(float),
            "low": frame["low"].to_numpy(float),
            "close": frame["close"].to_numpy(float),
            "volume": frame["volume"].fillna(0).to_numpy("int64"),
            "color": np.where(up, _UP, _DOWN),
            "ema": np.full(len(frame), np.nan),
        }

    def apply(self, snap: RunSnapshot) -> None:
        if self.instrument_id is None:
            if snap.quotes.empty:
                return
            self.instrument_id = str(snap.quotes["instrument_id"].iloc[0])
            return  # the watcher above applied it
        self.desk.live.watch_candles(snap.run_id, self.instrument_id)
        if self._loaded != (snap.run_id, self.instrument_id):
            self._load(snap)
        # the LTPs and the newest candles' columns are built once per snapshot for all charts
        ltps = snap.derived_frame("ltp_by_instrument", _ltps)
        ltp = ltps.get(self.instrument_id)
        shown = f" · LTP {grouped(ltp)}" if ltp is not None else ""
        self.title.object = f"### {self.instrument_id} · 1m{shown}"
        newest = snap.candles.get(self.instrument_id)
        if newest is None or newest.empty:
            return
        data = snap.derived_frame(f"candles:{self.instrument_id}", lambda s: self._columns(newest))
        self._merge(newest, data)

    def _merge(self, newest: pd.DataFrame, data: dict[str, Any] | None = None) -> None:
        """Patch candles already on the chart, stream the new ones (never a redraw);
        ``data`` is :meth:`_columns` of ``newest`` if already built (shared: not modified)."""
        if data is None:
            data = self._columns(newest)
        xs = list(self.source.data["x"])
        first = max(0, len(xs) - len(newest) - 2)  # the rows the newest candles can touch
        known = {x: i for i, x in enumerate(xs[first:], start=first)}
        closed = newest["closed"].to_numpy(bool)
        patches: dict[str, list[tuple[int, Any]]] = {}
        new_rows: dict[str, list[Any]] = {k: [] for k in _FIELDS}
        last = xs[-1] if xs else -1
        for j, x in enumerate(data["x"]):
            x = int(x)
            if x < last and x not in known:
                continue  # older than what the chart shows: nothing to change
            close = float(data["close"][j])
            if closed[j] and x > self._committed:
                value = self._ema.update(close)
                self._committed = x
            elif closed[j]:
                value = float("nan") if x not in known else self.source.data["ema"][known[x]]
            else:
                value = self._ema.preview(close)
            row = {k: data[k][j] for k in _FIELDS if k != "ema"} | {"ema": value}
            if x in known:
                for k in _FIELDS[1:]:
                    patches.setdefault(k, []).append((known[x], _plain(row[k])))
            else:
                for k in _FIELDS:
                    new_rows[k].append(_plain(row[k]))
        if patches:
            self.source.patch(patches)
            self.updates += 1
        if new_rows["x"]:
            self.source.stream(new_rows, rollover=KEEP)
            self.updates += 1

    def layout(self) -> Any:
        return pn.Column(self.title, self.pane, sizing_mode="stretch_width")


def _ltps(snap: RunSnapshot) -> dict[str, float]:
    quotes = snap.quotes
    return dict(zip(quotes["instrument_id"], quotes["ltp"], strict=True))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
