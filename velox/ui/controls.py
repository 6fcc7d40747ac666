"""The controls: risk panel with the kill switch, the manual order ticket, the mode switch.

Each button stores a command row (:meth:`velox.ui.desk.Desk.submit`); the run's engine carries
it out through its risk engine and audits it, and the panels show the outcome when the engine
has recorded it. Nothing here talks to a broker. On the web, the server checks the user's role
and accounts for every command whatever the page shows (:mod:`velox.web.actions`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn

from velox.errors import VeloxError
from velox.ui.base import LiveView, table
from velox.ui.tables import _OPEN, marked_positions

if TYPE_CHECKING:
    from velox.ui.live import RunSnapshot

#: Limits the risk panel shows with their usage, and how usage is measured.
_USAGE = {
    "daily_loss_limit": "day loss (₹)",
    "max_gross_exposure": "gross exposure (₹)",
    "max_position_qty": "largest position (qty)",
    "max_open_orders": "working orders",
}


def risk_usage(snap: RunSnapshot) -> pd.DataFrame:
    """Each limit the run's engine enforces (from its ``runs`` row) with the usage now."""
    limits = dict((snap.run.get("params") or {}).get("risk_limits") or {})
    positions = marked_positions(snap)
    net = float(positions["net_pnl"].sum()) if len(positions) else 0.0
    used = {
        "daily_loss_limit": max(0.0, -net),
        "max_gross_exposure": float((positions["qty"].abs() * positions["ltp"]).sum())
        if len(positions) else 0.0,
        "max_position_qty": float(positions["qty"].abs().max()) if len(positions) else 0.0,
        "max_open_orders": float(snap.orders["status"].isin(list(_OPEN)).sum())
        if len(snap.orders) else 0.0,
    }  # fmt: skip
    rows = []
    for name, value in limits.items():
        limit = None if value in (None, "off") else value
        if limit is None and name not in _USAGE:
            continue  # an optional limit that is off and has no usage to show
        usage = used.get(name)
        pct = None
        if usage is not None and isinstance(limit, int | float) and limit > 0:
            pct = round(100.0 * usage / float(limit), 1)
        rows.append({"limit": name, "value": "off" if limit is None else str(limit),
                     "usage": _USAGE.get(name, ""),
                     "used": None if usage is None else round(usage, 2),
                     "used_pct": pct})  # fmt: skip
    return pd.DataFrame(rows, columns=["limit", "value", "usage", "used", "used_pct"])


def recent_risk_events(snap: RunSnapshot) -> pd.DataFrame:
    """The run's last 8 risk events, newest first, times as IST wall clock."""
    events = snap.risk_events.tail(8).iloc[::-1]
    if len(events):
        ts = pd.to_datetime(events["ts"], utc=True).dt.tz_convert("Asia/Kolkata")
        events = events.assign(ts=ts.dt.strftime("%H:%M:%S"))
    events = events[[c for c in ("ts", "kind", "limit", "message") if c in events]]
    return events.reset_index(drop=True)


class RiskPanel(LiveView):
    """Kill-switch state, limits and their usage, recent risk events; the kill switch,
    reset, flatten and per-strategy stop and start."""

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.state = pn.pane.HTML("", name="kill-state", margin=(0, 10))
        self.limits = table(None)
        self.events = table(None, height=180)
        self.kill = pn.widgets.Button(name="KILL SWITCH", button_type="danger", width=150)
        self.reset = pn.widgets.Button(name="Reset kill", width=110)
        self.flatten = pn.widgets.Button(name="Flatten all", button_type="warning", width=110)
        self.strategy = pn.widgets.Select(name="strategy", options=[], width=180)
        self.stop = pn.widgets.Button(name="Stop strategy", width=120)
        self.start = pn.widgets.Button(name="Start strategy", width=120)
        self.flatten_one = pn.widgets.Button(name="Flatten strategy", width=130)
        self.kill.on_click(self.act(lambda: self.desk.submit("kill", run_id=self.run_id)))
        self.reset.on_click(self.act(lambda: self.desk.submit("reset-kill", run_id=self.run_id)))
        self.flatten.on_click(self.act(lambda: self.desk.submit("flatten", run_id=self.run_id)))
        self.stop.on_click(self.act(lambda: self._for_strategy("stop-strategy")))
        self.start.on_click(self.act(lambda: self._for_strategy("start-strategy")))
        self.flatten_one.on_click(self.act(lambda: self._for_strategy("flatten")))
        self.killed: bool | None = None
        super().__init__(desk, **params)

    def _for_strategy(self, verb: str) -> Any:
        if not self.strategy.value:
            raise VeloxError("choose a strategy first")
        return self.desk.submit(verb, run_id=self.run_id, strategy=self.strategy.value)

    def clear(self) -> None:
        self.state.object = '<span id="velox-kill-state">no run</span>'

    def apply(self, snap: RunSnapshot) -> None:
        self.killed = snap.killed
        if snap.killed:
            badge = (
                '<span id="velox-kill-state" data-state="engaged" style="background:#b91c1c;'
                'color:white;padding:4px 10px;border-radius:4px">KILL SWITCH ENGAGED</span>'
            )
        else:
            badge = ('<span id="velox-kill-state" data-state="armed" style="background:#15803d;'
                     'color:white;padding:4px 10px;border-radius:4px">trading · kill switch '
                     "armed</span>")  # fmt: skip
        self.state.object = badge
        # both computed once per snapshot for every session
        usage = snap.derived_frame("risk_usage", risk_usage)
        if usage is not self.limits.value and not usage.equals(self.limits.value):
            self.limits.value = usage
        events = snap.derived_frame("risk_events_shown", recent_risk_events)
        if events is not self.events.value and not events.equals(self.events.value):
            self.events.value = events
        names = [str(s.get("name")) for s in snap.run.get("strategies") or []]
        if self.strategy.options != names:
            keep = self.strategy.value
            self.strategy.options = names
            self.strategy.value = keep if keep in names else (names[0] if names else None)

    def layout(self) -> Any:
        rows: list[Any] = [pn.Row(self.state)]
        if self.desk.may_trade:
            rows += [pn.Row(self.kill, self.flatten, self.reset),
                     pn.Row(self.strategy, self.stop, self.start, self.flatten_one),
                     self.message]  # fmt: skip
        return pn.Column("### Risk", *rows, "Limits", self.limits, "Risk events", self.events,
                         sizing_mode="stretch_width")  # fmt: skip


def on_tick_grid(price: float, tick: float) -> bool:
    """Whether ``price`` is a whole number of ticks (to 1e-6 of a tick, float noise)."""
    steps = price / tick
    return abs(steps - round(steps)) < 1e-6


class OrderTicket(LiveView):
    """A manual order: instrument, side, lots (× the lot size), type, price on the tick grid,
    product. It goes to the engine as an ``order`` command, through its risk engine like any
    strategy's order (a breach comes back as REJECTED in the blotter)."""

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.instrument = pn.widgets.Select(name="instrument", options=[], width=170)
        self.side = pn.widgets.RadioButtonGroup(name="side", options=["BUY", "SELL"],
                                                value="BUY", button_type="primary")  # fmt: skip
        self.lots = pn.widgets.IntInput(name="lots", value=1, start=1, width=80)
        self.order_type = pn.widgets.Select(name="type", options=["LIMIT", "MARKET"], width=100)
        self.price = pn.widgets.FloatInput(name="limit price", value=None, width=120)
        self.product = pn.widgets.Select(name="product", options=["MIS", "CNC", "NRML"],
                                         width=90)  # fmt: skip
        self.info = pn.pane.Markdown("", margin=(0, 10))
        self.place = pn.widgets.Button(name="Place order", button_type="primary", width=120)
        self.place.on_click(self.act(self._order))
        for widget in (self.instrument, self.lots):
            widget.param.watch(lambda _e: self._describe(), "value")
        super().__init__(desk, **params)

    def _spec(self) -> tuple[int, float]:
        """(lot size, tick size) of the chosen instrument, from the instrument master."""
        row = self.desk.live.instrument(self.instrument.value) if self.instrument.value else None
        if row is None:
            raise VeloxError(f"unknown instrument {self.instrument.value!r}")
        tick = float(row.get("tick_size") or 0.05)
        return int(row.get("lot_size") or 1), tick if tick > 0 else 0.05

    def _describe(self) -> None:
        try:
            lot, tick = self._spec()
        except VeloxError:
            self.info.object = ""
            return
        self.price.step = tick
        self.info.object = f"qty **{lot * (self.lots.value or 0)}** (lot {lot}, tick {tick:g})"

    def _order(self) -> Any:
        lot, tick = self._spec()
        lots = self.lots.value
        if not isinstance(lots, int) or lots < 1:
            raise VeloxError("lots must be a whole number ≥ 1")
        args: dict[str, Any] = {"instrument_id": self.instrument.value, "side": self.side.value,
                                "qty": lots * lot, "order_type": self.order_type.value,
                                "product": self.product.value}  # fmt: skip
        if self.order_type.value == "LIMIT":
            price = self.price.value
            if price is None or not math.isfinite(price) or price <= 0:
                raise VeloxError("a LIMIT order needs a limit price > 0")
            if not on_tick_grid(price, tick):
                below = math.floor(price / tick + 1e-9) * tick
                raise VeloxError(f"limit price {price:g} is not on the tick grid of "
                                 f"{self.instrument.value} (tick {tick:g}): try {below:.2f} "
                                 f"or {below + tick:.2f}")  # fmt: skip
            args["limit_price"] = round(price, 2)
        return self.desk.submit("order", run_id=self.run_id, args=args)

    def apply(self, snap: RunSnapshot) -> None:
        traded = [i for s in snap.run.get("strategies") or [] for i in s.get("instruments") or []]
        names = sorted({*snap.quotes["instrument_id"], *traded})
        if self.instrument.options != names:
            keep = self.instrument.value
            self.instrument.options = names
            self.instrument.value = keep if keep in names else (names[0] if names else None)
            self._describe()
        if self.price.value is None and self.instrument.value is not None:
            quote = snap.quotes[snap.quotes["instrument_id"] == self.instrument.value]
            if len(quote) and np.isfinite(quote["ltp"].iloc[0]):
                self.price.value = float(quote["ltp"].iloc[0])

    def layout(self) -> Any:
        if not self.desk.may_trade:
            return pn.Column()
        return pn.Column(
            "### Order ticket",
            pn.Row(self.instrument, self.side, self.lots, self.order_type, self.price,
                   self.product, self.place),
            pn.Row(self.info, self.message),
            sizing_mode="stretch_width",
        )  # fmt: skip


class ModeSwitch(LiveView):
    """The mode badge (LIVE red, DRY-RUN blue) and the live ⇄ dry-run switch.

    Switching asks for confirmation first (a second button naming the target); the engine
    switches only with a flat book and says why not otherwise, which shows here.
    """

    def __init__(self, desk: Any = None, **params: Any) -> None:
        self.badge = pn.pane.HTML("", name="mode", margin=(5, 10))
        self.switch = pn.widgets.Button(name="Switch mode", width=150)
        self.confirm = pn.widgets.Button(name="Confirm", button_type="danger", width=190,
                                         visible=False)  # fmt: skip
        self.back = pn.widgets.Button(name="Keep mode", width=100, visible=False)
        self.venue: str | None = None
        self.switch.on_click(lambda _e: self._ask())
        self.back.on_click(lambda _e: self._done())
        self.confirm.on_click(self.act(self._switch))
        super().__init__(desk, **params)

    def _target(self) -> str:
        return "dry-run" if self.venue == "live" else "live"

    def _ask(self) -> None:
        self.confirm.name = f"Confirm: switch to {self._target().upper()}"
        self.confirm.visible = self.back.visible = True

    def _done(self) -> None:
        self.confirm.visible = self.back.visible = False

    def _switch(self) -> Any:
        self._done()
        return self.desk.submit("switch-mode", run_id=self.run_id, args={"mode": self._target()})

    def clear(self) -> None:
        self.badge.object = '<span id="velox-mode">no paper or live run</span>'

    def apply(self, snap: RunSnapshot) -> None:
        self.venue = snap.venue
        colour = "#b91c1c" if snap.venue == "live" else "#1d4ed8"
        self.badge.object = (
            f'<span id="velox-mode" data-mode="{snap.venue}" style="padding:4px 10px;'
            f'border-radius:4px;background:{colour};color:white">{snap.venue.upper()} · '
            f"{snap.run.get('account')} · {snap.run_id}</span>"
        )
        self.switch.name = f"Switch to {self._target()}"

    def layout(self) -> Any:
        if not self.desk.may_trade:
            return pn.Row(self.badge)
        return pn.Row(self.badge, self.switch, self.confirm, self.back, self.message)
