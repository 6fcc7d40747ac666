"""The Panel pages the web server serves; each is built per browser session from its context.

A page's first act is :meth:`~velox.web.server.PageContext.require` (the auth provider has
already refused a wrong role with 403; this is the second line). Every button's callback goes
through the context again, so a session that ends while the page is open can no longer act.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from velox.auth import PermissionDenied
from velox.errors import VeloxError

if TYPE_CHECKING:
    from velox.web.server import PageContext


def _header(ctx: PageContext, title: str) -> Any:
    import panel as pn

    session = ctx.session()
    return pn.Row(
        pn.pane.Markdown(f"## {title}", margin=(0, 10)),
        pn.layout.HSpacer(),
        pn.pane.HTML(
            f'<span id="velox-user">{session.username} ({session.role})</span>'
            ' &nbsp; <a href="/logout">log out</a>',
            margin=(18, 10),
        ),
        sizing_mode="stretch_width",
    )


def trading(ctx: PageContext) -> Any:
    """The trader console (:class:`velox.ui.TradingConsole` on this session's desk)."""
    from velox.ui import Desk, TradingConsole

    ctx.require("admin", "trader")
    return TradingConsole(Desk.web(ctx), header=_header(ctx, "Velox trader console"))


def admin(ctx: PageContext) -> Any:
    """Users: list, add (shows the TOTP enrolment once), disable, reset 2FA, link."""
    import pandas as pd
    import panel as pn

    ctx.require("admin")
    table = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, sizing_mode="stretch_width",
                                 name="users")  # fmt: skip
    username = pn.widgets.TextInput(name="username", placeholder="e.g. asha")
    role = pn.widgets.Select(name="role", options=["trader", "investor", "admin"])
    password = pn.widgets.PasswordInput(name="password")
    add = pn.widgets.Button(name="Add user", button_type="primary")
    target = pn.widgets.TextInput(name="user to change")
    accounts = pn.widgets.TextInput(name="accounts to link (comma separated)")
    link = pn.widgets.Button(name="Link")
    disable = pn.widgets.Button(name="Disable", button_type="danger")
    reset = pn.widgets.Button(name="Reset 2FA", button_type="warning")
    message = pn.pane.Markdown("", name="message")

    def refresh() -> None:
        rows = [u.to_json() for u in ctx.users.list()]
        frame = pd.DataFrame(rows, columns=["username", "role", "disabled", "has_totp",
                                            "accounts", "runs", "created_at"])  # fmt: skip
        for col in ("accounts", "runs"):
            frame[col] = frame[col].map(", ".join)
        table.value = frame

    def guarded(action: Any) -> Any:
        def run(_: object) -> None:
            try:
                session = ctx.require("admin")
                message.object = action(session)
            except (PermissionDenied, VeloxError) as exc:
                message.object = f"**Error:** {exc}"
            refresh()

        return run

    def on_add(session: Any) -> str:
        enrolment = ctx.users.add(username.value.strip(), role.value, password.value,
                                  by=session.username)  # fmt: skip
        password.value = ""
        return (
            f"Added **{enrolment.username}** ({enrolment.role}). TOTP secret: "
            f"`{enrolment.totp_secret}` (shown once) · `{enrolment.otpauth_uri}`"
        )

    def on_disable(session: Any) -> str:
        ctx.users.disable(target.value.strip(), by=session.username)
        return f"Disabled **{target.value.strip()}**; their sessions ended."

    def on_reset(session: Any) -> str:
        enrolment = ctx.users.reset_2fa(target.value.strip(), by=session.username)
        return f"New TOTP secret for **{enrolment.username}**: `{enrolment.totp_secret}`"

    def on_link(session: Any) -> str:
        names = [a.strip() for a in accounts.value.split(",") if a.strip()]
        user = ctx.users.link(target.value.strip(), accounts=names, by=session.username)
        return f"**{user.username}** linked to {', '.join(user.accounts) or 'nothing'}"

    add.on_click(guarded(on_add))
    disable.on_click(guarded(on_disable))
    reset.on_click(guarded(on_reset))
    link.on_click(guarded(on_link))
    refresh()
    return pn.Column(
        _header(ctx, "Velox users"),
        table,
        pn.Row(
            pn.Column("### Add a user", username, role, password, add),
            pn.Column("### Change a user", target, pn.Row(disable, reset), accounts, link),
        ),
        message,
        sizing_mode="stretch_width",
    )


def investor(ctx: PageContext) -> Any:
    """Performance of the runs the user may see, and a link to the investor report
    (``/report/``, :mod:`velox.web.voila`); no control of any kind."""
    import pandas as pd
    import panel as pn

    from velox.web.actions import visible_runs

    session = ctx.session()
    runs = visible_runs(ctx.store, session)
    rows = []
    for run in runs:
        summary = run.get("summary") or {}
        rows.append({
            "run": run["run_id"], "mode": run["mode"], "account": run["account"],
            "status": run["status"], "started": run["started_at"],
            "equity": summary.get("final_equity"), "return %": summary.get("total_return_pct"),
        })  # fmt: skip
    body: list[Any] = [
        _header(ctx, "Velox performance"),
        pn.pane.HTML('<a id="velox-report-link" href="/report/">Open the full report</a>'
                     " (equity curves; served by Voila, read-only)", margin=(0, 10)),
    ]  # fmt: skip
    if not rows:
        body.append(pn.pane.Markdown("No account or run is linked to you yet."))
    else:
        body.append(pn.pane.DataFrame(pd.DataFrame(rows), index=False, name="runs"))
        curves = []
        for run in runs[:5]:
            equity = ctx.store.run_equity(str(run["run_id"]))
            if not equity.empty:
                curves.append(_equity_figure(str(run["run_id"]), equity))
        body.extend(curves)
    return pn.Column(*body, sizing_mode="stretch_width")


def _equity_figure(run_id: str, equity: Any) -> Any:
    from bokeh.plotting import figure

    fig = figure(
        title=f"{run_id} equity", x_axis_type="datetime", height=260,
        sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,hover",
    )  # fmt: skip
    fig.line(equity.index.tz_localize(None), equity["equity"], line_width=2)
    return fig


PAGES = {"trading": trading, "admin": admin, "investor": investor}
