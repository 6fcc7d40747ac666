"""Positions with live P&L net of charges, and the orders and trades blotter (with cancel)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn

from velox.types import TERMINAL_STATUSES, OrderStatus
from velox.ui.base import LiveView, money, show, table

if TYPE_CHECKING:
    from velox.ui.live import RunSnapshot

POSITION_COLUMNS = ["instrument", "product", "qty", "avg_price", "ltp", "unrealised",
                    "realised", "charges", "net_pnl"]  # fmt: skip
ORDER_COLUMNS = ["client_id", "time", "instrument_id", "side", "qty", "order_type",
                 "limit_price", "status", "filled_qty", "average_price", "strategy",
                 "status_message"]  # fmt: skip
TRADE_COLUMNS = ["time", "instrument_id", "side", "qty", "price", "charges", "client_id",
                 "strategy"]  # fmt: skip
_OPEN = frozenset(s.value for s in OrderStatus if s not in TERMINAL_STATUSES)


def position_frame(positions: pd.DataFrame, quotes: pd.DataFrame) -> pd.DataFrame:
    """The account's positions marked to the last traded price.

    Net P&L per row = realised + qty × (LTP − average price) − charges: the same day P&L the
    risk engine holds against ``daily_loss_limit`` (the account's own rows, strategy ``''``;
    where no quote arrived yet the position is marked at its average price).
    """
    own = positions[positions["strategy"] == ""]
    if own.empty:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    ltp = own["instrument_id"].map(dict(zip(quotes["instrument_id"], quotes["ltp"], strict=True)))
    ltp = ltp.astype(float).where(ltp.notna(), own["average_price"])
    qty = own["qty"].to_numpy("int64")
    unrealised = np.where(qty != 0, qty * (ltp.to_numpy(float) - own["average_price"]), 0.0)
    frame = pd.DataFrame(
        {
            "instrument": own["instrument_id"].to_numpy(),
            "product": own["product"].to_numpy(),
            "qty": qty,
            "avg_price": own["average_price"].round(2).to_numpy(),
            "ltp": ltp.to_numpy(float),
            "unrealised": np.round(unrealised, 2),
            "realised": own["realised_pnl"].round(2).to_numpy(),
            "charges": own["charges"].round(2).to_numpy(),
        }
    )
    frame["net_pnl"] = (frame["realised"] + frame["unrealised"] - frame["charges"]).round(2)
    return frame


def marked_positions(snap: RunSnapshot) -> pd.DataFrame:
    """:func:`position_frame` of a snapshot, built once per snapshot for every component."""
    return snap.derived_frame("positions", lambda s: position_frame(s.positions, s.quotes))


class PositionsTable(LiveView):
    """The run's account positions with live P&L (net of charges) and the day's total."""

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.table = table(pd.DataFrame(columns=POSITION_COLUMNS), height=200, name="positions")
        self.total = pn.pane.HTML("", name="net-pnl", margin=(0, 10))
        self.net_pnl = float("nan")
        super().__init__(desk, **params)

    def clear(self) -> None:
        self.table.value = pd.DataFrame(columns=POSITION_COLUMNS)
        self.total.object = ""

    def apply(self, snap: RunSnapshot) -> None:
        frame = marked_positions(snap)
        show(self.table, frame, ("instrument", "product"))
        self.net_pnl = float(frame["net_pnl"].sum()) if len(frame) else 0.0
        colour = "#16a34a" if self.net_pnl >= 0 else "#dc2626"
        open_qty = int((frame["qty"] != 0).sum()) if len(frame) else 0
        self.total.object = (
            f'<b>Net P&amp;L</b> <span id="velox-net-pnl" style="color:{colour}">'
            f"{money(self.net_pnl)}</span> · open positions "
            f'<span id="velox-open-positions">{open_qty}</span>'
        )

    def layout(self) -> Any:
        return pn.Column("### Positions", self.total, self.table, sizing_mode="stretch_width")


def order_frame(orders: pd.DataFrame) -> pd.DataFrame:
    """The blotter's orders, newest first, times in IST."""
    if orders.empty:
        return pd.DataFrame(columns=ORDER_COLUMNS)
    frame = orders.iloc[::-1].reset_index(drop=True)
    frame["time"] = pd.to_datetime(frame["created_at"]).dt.strftime("%H:%M:%S")
    return frame[ORDER_COLUMNS]


def trade_frame(fills: pd.DataFrame) -> pd.DataFrame:
    """The blotter's trades, newest first, times in IST."""
    if fills.empty:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    frame = fills.iloc[::-1].reset_index(drop=True)
    frame["time"] = pd.to_datetime(frame["ts"]).dt.strftime("%H:%M:%S")
    return frame[TRADE_COLUMNS]


class Blotter(LiveView):
    """Orders (select a working one and cancel it) and trades of the run."""

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.orders = table(pd.DataFrame(columns=ORDER_COLUMNS), selectable=1, height=240,
                            name="orders")  # fmt: skip
        self.trades = table(pd.DataFrame(columns=TRADE_COLUMNS), height=240, name="trades")
        self.cancel = pn.widgets.Button(name="Cancel selected order", width=200)
        self.cancel.on_click(self.act(self._cancel))
        self._shown: tuple[object, object] = (None, None)  # the frames last applied
        super().__init__(desk, **params)

    def _cancel(self) -> Any:
        from velox.errors import VeloxError

        chosen = self.orders.selection
        frame = self.orders.value
        if not chosen or chosen[0] >= len(frame):
            raise VeloxError("select a working order in the table first")
        row = frame.iloc[chosen[0]]
        if row["status"] not in _OPEN:
            raise VeloxError(f"order {row['client_id']} is {row['status']}: nothing to cancel")
        return self.desk.submit("cancel-order", run_id=self.run_id,
                                args={"client_id": str(row["client_id"])})  # fmt: skip

    def clear(self) -> None:
        self.orders.value = pd.DataFrame(columns=ORDER_COLUMNS)
        self.trades.value = pd.DataFrame(columns=TRADE_COLUMNS)
        self._shown = (None, None)

    def apply(self, snap: RunSnapshot) -> None:
        # the live reader hands over the same frame while a table is unchanged: skip it
        if snap.orders is not self._shown[0]:
            self._show_orders(order_frame(snap.orders))
        if snap.fills is not self._shown[1]:
            trades = trade_frame(snap.fills)
            if not trades.equals(self.trades.value):
                self.trades.value = trades
        self._shown = (snap.orders, snap.fills)

    def _show_orders(self, orders: pd.DataFrame) -> None:
        if not orders.equals(self.orders.value):
            selected = None
            if self.orders.selection and self.orders.selection[0] < len(self.orders.value):
                selected = self.orders.value["client_id"].iloc[self.orders.selection[0]]
            self.orders.value = orders
            if selected is not None:  # keep the selection on the same order as rows arrive
                where = np.flatnonzero(orders["client_id"].to_numpy() == selected)
                self.orders.selection = [int(where[0])] if len(where) else []

    def layout(self) -> Any:
        controls = [pn.Row(self.cancel, self.message)] if self.desk.may_trade else []
        # dynamic: the trades table is sent to the browser when its tab is first shown, not
        # with the page (one Tabulator fewer before the first paint)
        return pn.Column(
            pn.Tabs(("Orders", pn.Column(*controls, self.orders)), ("Trades", self.trades),
                    dynamic=True),
            sizing_mode="stretch_width",
        )  # fmt: skip
