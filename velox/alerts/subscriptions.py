"""Per-user subscriptions: which users' chats, addresses and URLs get which alerts.

A subscription names a user (``velox.auth``), a channel and its target (a Telegram chat id, an
email address, a webhook URL), the lowest severity and optionally the kinds. A user linked to
accounts gets only those accounts' alerts; a disabled user gets none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from velox.errors import ValidationError
from velox.store._values import choice, text
from velox.store.alerts import ALERT_KINDS, ALERT_SEVERITIES

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store

CHANNEL_NAMES = ("telegram", "email", "webhook")
SUBSCRIPTION_COLUMNS = ("id", "username", "channel", "target", "min_severity", "kinds")


def subscribe(
    store: Store,
    username: str,
    channel: str,
    target: str,
    *,
    min_severity: str = "info",
    kinds: Iterable[str] | None = None,
) -> int:
    """Subscribe ``username``'s ``target`` on ``channel``; return the subscription id.

    Subscribing the same (user, channel, target) again replaces its severity and kinds.

    Raises
    ------
    ValidationError
        An unknown user, channel, severity or kind, or an empty target.

    Examples
    --------
    >>> subscribe(store, "trader", "telegram", "-100123", min_severity="critical",
    ...           kinds=["kill_switch"])                               # doctest: +SKIP
    1
    """
    channel = choice("channel", channel, CHANNEL_NAMES)
    severity = choice("min_severity", min_severity, ALERT_SEVERITIES)
    target = text("target", target)
    chosen = None if kinds is None else sorted({choice("kind", k, ALERT_KINDS) for k in kinds})
    with store.connect() as conn:
        if conn.execute("SELECT 1 FROM users WHERE username = %s", (username,)).fetchone() is None:
            raise ValidationError(f"no user {username!r}; add it with `velox users add` first")
        (subscription_id,) = conn.execute(
            "INSERT INTO alert_subscriptions (username, channel, target, min_severity, kinds)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (username, channel, target) DO UPDATE"
            " SET min_severity = EXCLUDED.min_severity, kinds = EXCLUDED.kinds RETURNING id",
            (username, channel, target, severity, chosen),
        ).fetchone()
    return int(subscription_id)


def unsubscribe(store: Store, subscription_id: int) -> bool:
    """Remove a subscription; return whether it existed."""
    with store.connect() as conn:
        cur = conn.execute("DELETE FROM alert_subscriptions WHERE id = %s", (subscription_id,))
    return cur.rowcount == 1


def subscriptions(store: Store) -> pd.DataFrame:
    """Return every subscription (columns :data:`SUBSCRIPTION_COLUMNS`), by id."""
    import pandas as pd

    with store.connect() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(SUBSCRIPTION_COLUMNS)} FROM alert_subscriptions ORDER BY id"
        ).fetchall()
    return pd.DataFrame(rows, columns=list(SUBSCRIPTION_COLUMNS))


__all__ = ["CHANNEL_NAMES", "subscribe", "subscriptions", "unsubscribe"]
