"""The trader console: run state read from the store, every action a stored command.

It never holds broker credentials and never calls a broker: positions, orders and the kill
state are read from the store (refreshed on the store's NOTIFY and at 1 Hz as a floor), and
every button issues a command row through :meth:`PageContext.submit`, which the engines
execute through their risk engine and audit. ``dashboards/trading.py`` serves the same
console on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from velox.auth import PermissionDenied
from velox.errors import VeloxError

if TYPE_CHECKING:
    from velox.web.server import PageContext

#: Milliseconds between refreshes of the tables from the store.
REFRESH_MS = 1000


def _running(ctx: PageContext) -> list[dict[str, Any]]:
    from velox.web.actions import visible_runs

    return [
        r for r in visible_runs(ctx.store, ctx.session())
        if r["status"] == "running" and r["mode"] in ("paper", "live")
    ]  # fmt: skip


def trading_console(ctx: PageContext, *, header: Any = None) -> Any:
    """Build the console for one browser session."""
    import pandas as pd
    import panel as pn

    runs = pn.widgets.Select(name="run", options=[], width=220)
    mode = pn.pane.HTML("", name="mode")
    positions = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, name="positions",
                                     sizing_mode="stretch_width", height=220)  # fmt: skip
    orders = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, name="orders",
                                  sizing_mode="stretch_width", height=220)  # fmt: skip
    message = pn.pane.Markdown("", name="message")

    kill = pn.widgets.Button(name="KILL SWITCH", button_type="danger", width=160)
    reset_kill = pn.widgets.Button(name="Reset kill", width=120)
    flatten = pn.widgets.Button(name="Flatten", button_type="warning", width=120)

    instrument = pn.widgets.TextInput(name="instrument", placeholder="NSE:RELIANCE", width=160)
    side = pn.widgets.Select(name="side", options=["BUY", "SELL"], width=90)
    qty = pn.widgets.IntInput(name="qty", value=1, start=1, width=90)
    order_type = pn.widgets.Select(name="type", options=["LIMIT", "MARKET"], width=100)
    price = pn.widgets.FloatInput(name="limit price", value=None, width=120)
    product = pn.widgets.Select(name="product", options=["MIS", "CNC", "NRML"], width=90)
    place = pn.widgets.Button(name="Place order", button_type="primary", width=120)
    client_id = pn.widgets.TextInput(name="client id to cancel", width=160)
    cancel = pn.widgets.Button(name="Cancel order", width=120)

    def selected() -> str | None:
        return runs.value or None

    def refresh() -> None:
        try:
            running = _running(ctx)
        except PermissionDenied:
            message.object = "**Your session ended.** [Log in again](/login)"
            return
        ids = [str(r["run_id"]) for r in running]
        if runs.options != ids:
            runs.options = ids
        if ids and runs.value not in ids:
            runs.value = ids[0]
        run_id = selected()
        if run_id is None:
            mode.object = '<span class="velox-mode">no paper or live run</span>'
            positions.value = pd.DataFrame()
            orders.value = pd.DataFrame()
            return
        run = next(r for r in running if r["run_id"] == run_id)
        mode.object = (
            f'<span class="velox-mode" style="padding:4px 10px;border-radius:4px;'
            f'background:{"#b91c1c" if run["mode"] == "live" else "#1d4ed8"};color:white">'
            f"{str(run['mode']).upper()} · {run['account']}</span>"
        )
        positions.value = ctx.store.run_positions(run_id)
        frame = ctx.store.run_orders(run_id)
        keep = ["client_id", "instrument_id", "side", "qty", "order_type", "limit_price",
                "status", "filled_qty", "average_price", "strategy", "status_message"]  # fmt: skip
        orders.value = frame[[c for c in keep if c in frame]].iloc[::-1]

    def act(build: Any) -> Any:
        def run(_: object) -> None:
            try:
                command = build()
                message.object = (
                    f"Command {command.id} **{command.verb}** sent to "
                    f"{', '.join(command.targets) or 'no running engine'}"
                )
            except (PermissionDenied, VeloxError) as exc:
                message.object = f"**Error:** {exc}"
            refresh()

        return run

    kill.on_click(act(lambda: ctx.submit("kill", run_id=selected())))
    reset_kill.on_click(act(lambda: ctx.submit("reset-kill", run_id=selected())))
    flatten.on_click(act(lambda: ctx.submit("flatten", run_id=selected())))

    def order() -> Any:
        args: dict[str, Any] = {
            "instrument_id": instrument.value.strip(), "side": side.value, "qty": qty.value,
            "order_type": order_type.value, "product": product.value,
        }  # fmt: skip
        if order_type.value == "LIMIT":
            if price.value is None:
                raise VeloxError("a LIMIT order needs a limit price")
            args["limit_price"] = price.value
        return ctx.submit("order", run_id=selected(), args=args)

    place.on_click(act(order))
    cancel.on_click(
        act(
            lambda: ctx.submit(
                "cancel-order", run_id=selected(), args={"client_id": client_id.value.strip()}
            )
        )  # fmt: skip
    )
    refresh()
    pn.state.add_periodic_callback(refresh, period=REFRESH_MS)
    return pn.Column(
        *([header] if header is not None else []),
        pn.Row(runs, mode, pn.layout.HSpacer(), kill, flatten, reset_kill),
        pn.Row(instrument, side, qty, order_type, price, product, place),
        pn.Row(client_id, cancel),
        message,
        "### Positions",
        positions,
        "### Orders",
        orders,
        sizing_mode="stretch_width",
    )
