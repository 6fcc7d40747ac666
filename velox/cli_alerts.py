"""``velox alerts …``: delivering stored alerts and managing users' alert rules (issue 17).

Registered on the main group by ``velox.cli`` (``register(main)``). Heavy modules are imported
inside the verbs so ``velox --help`` stays instant. See ``docs/alerts.md``.
"""

from __future__ import annotations

import click

__all__ = ["register"]


@click.group()
def alerts() -> None:
    """Deliver stored alerts (Telegram, email, webhook) and manage price/indicator alert rules."""


# ---- delivery (issue 17 part A: velox.alerts.worker) -----------------------------------------


@alerts.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is pending and due, then exit.")
@click.option(
    "--poll",
    default=5.0,
    show_default=True,
    help="Seconds between passes for retries that fall due (NOTIFY wakes it at once).",
)
def deliver(once: bool, poll: float) -> None:
    """Deliver stored alerts through the configured channels (Telegram, email, webhook).

    Runs until Ctrl-C (or SIGTERM), woken by every new alert. With --once it delivers what
    is due and exits: status 1 if a delivery failed permanently in this pass (each is
    printed), 0 otherwise. Failed deliveries stay in the store (status 'failed').
    """
    import signal
    import threading

    from velox.alerts.channels import default_targets
    from velox.alerts.worker import Deliverer, deliveries
    from velox.config import get_settings
    from velox.store import open_store

    settings = get_settings()
    store = open_store()
    deliverer = Deliverer.from_settings(store, settings)
    channels = sorted(set(deliverer.channels) - {"webhook"} | set(default_targets(settings)))
    click.echo(f"alert channels: {', '.join(channels) or 'none configured (see docs/alerts.md)'}")
    if once:
        report = deliverer.run_once()
        for line in report.failed:
            click.echo(f"FAILED {line}", err=True)
        earlier = len(deliveries(store, status="failed")) - len(report.failed)
        click.echo(f"sent {report.sent}, suppressed {report.suppressed}, retrying "
                   f"{report.retried}, failed {len(report.failed)}, "
                   f"pending {report.pending}")  # fmt: skip
        if earlier > 0:
            click.echo(f"{earlier} delivery(ies) failed in earlier passes; see "
                       "velox.alerts.deliveries(store, status='failed')", err=True)  # fmt: skip
        if report.failed:
            raise SystemExit(1)
        return
    stop = threading.Event()

    def on_signal(*_: object) -> None:  # the pass in flight finishes; it stops within --poll s
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    click.echo("delivering alerts; Ctrl-C stops")
    deliverer.run_forever(stop, poll=poll)
    click.echo("alert delivery stopped")


@alerts.command("subscribe")
@click.argument("username")
@click.argument("channel", type=click.Choice(["telegram", "email", "webhook"]))
@click.argument("target")
@click.option("--min-severity", default="info", show_default=True, help="Lowest severity sent.",
              type=click.Choice(["info", "warning", "critical"]))  # fmt: skip
@click.option("--kind", "kinds", multiple=True, help="Only these kinds (repeat; default all).")
def subscribe(username: str, channel: str, target: str, min_severity: str, kinds: tuple) -> None:
    """Send a user's alerts to their chat id, email address or webhook URL (TARGET).

    Subscribing the same user, channel and target again replaces its severity and kinds. A
    user linked to accounts gets only those accounts' alerts.
    """
    from velox.alerts.subscriptions import subscribe as add
    from velox.store import open_store

    number = add(open_store(create=False), username, channel, target,
                 min_severity=min_severity, kinds=kinds or None)  # fmt: skip
    click.echo(f"subscription {number}: {username} {channel} {min_severity}+ "
               f"{', '.join(kinds) if kinds else 'every kind'}")  # fmt: skip


@alerts.command("unsubscribe")
@click.argument("subscription_id", type=int)
def unsubscribe(subscription_id: int) -> None:
    """Remove a subscription (its id from ``velox alerts subscriptions``)."""
    from velox.alerts.subscriptions import unsubscribe as remove
    from velox.errors import ValidationError
    from velox.store import open_store

    if not remove(open_store(create=False), subscription_id):
        raise ValidationError(f"no subscription {subscription_id}; see velox alerts subscriptions")
    click.echo(f"subscription {subscription_id} removed")


@alerts.command("subscriptions")
def subscriptions() -> None:
    """List the users' alert subscriptions."""
    from velox.alerts.subscriptions import subscriptions as read
    from velox.store import open_store

    frame = read(open_store(create=False))
    if frame.empty:
        click.echo("(no subscriptions)")
        return
    for row in frame.itertuples():
        kinds = ", ".join(row.kinds) if row.kinds else "every kind"
        click.echo(f"{row.id:>4}  {row.username:<16} {row.channel:<8} {row.min_severity:<8} "
                   f"{kinds}  {row.target}")  # fmt: skip


# ---- end of delivery --------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Add the ``alerts`` group to the ``velox`` command."""
    main.add_command(alerts)


# -- alert rules: velox alerts add | list | remove (issue 17 part B, velox/alerts/rules.py) --


@alerts.command("add")
@click.argument("rule")
@click.option(
    "--severity",
    type=click.Choice(["info", "warning", "critical"]),
    default="info",
    show_default=True,
    help="Severity of the alerts the rule raises.",
)
@click.option("--user", default=None, help="Owner of the rule (default: your login name).")
@click.option(
    "--instrument",
    default=None,
    help="Instrument of a rule that names none, e.g. --instrument NSE:SBIN 'RSI(14) < 30 on 15m'.",
)
def add_rule_command(rule: str, severity: str, user: str | None, instrument: str | None) -> None:
    """Store a price/indicator alert rule, e.g. "NSE:SBIN RSI(14) < 30 on 15m".

    Paper and live engines evaluate enabled rules on their closed candles and raise a
    user_alert once per crossing (docs/alert-rules.md has the grammar).
    """
    from velox.alerts.rules import add_rule, parse_rule
    from velox.store import open_store

    rule_id = add_rule(
        open_store(create=False), rule, severity=severity, owner=user, instrument=instrument
    )
    click.echo(f"alert rule {rule_id}: {parse_rule(rule, instrument)} ({severity})")


@alerts.command("list")
@click.option("--user", default=None, help="Only this owner's rules.")
def list_rules_command(user: str | None) -> None:
    """List the stored alert rules: id, owner, severity, enabled, last fired, rule."""
    import pandas as pd

    from velox.alerts.rules import list_rules
    from velox.store import open_store

    rules = list_rules(open_store(create=False), owner=user)
    if rules.empty:
        click.echo("(no alert rules)")
        return
    for row in rules.itertuples():
        fired = "never" if pd.isna(row.last_fired_at) else (
            row.last_fired_at.strftime("%Y-%m-%d %H:%M IST"))  # fmt: skip
        state = "enabled" if row.enabled else "disabled"
        click.echo(f"{row.id:>4}  {row.owner:<12} {row.severity:<8} {state:<8} "
                   f"last fired {fired:<20} {row.rule}")  # fmt: skip


@alerts.command("remove")
@click.argument("rule_id", type=int)
def remove_rule_command(rule_id: int) -> None:
    """Delete alert rule RULE_ID (ids from `velox alerts list`)."""
    from velox.alerts.rules import remove_rule
    from velox.store import open_store

    remove_rule(open_store(create=False), rule_id)
    click.echo(f"alert rule {rule_id} removed")
