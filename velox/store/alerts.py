"""Alerts in the store: raised by engines and pipelines, delivered later by a worker.

An alert is stored first (so nothing is lost if Telegram or mail is down) and NOTIFY
``velox_alerts`` wakes the delivery worker, which sends it and sets ``delivered_at``. A
``dedup_key`` folds repeats: while an alert with that key is undelivered, raising it again adds
an occurrence to that row instead of a new one (a breach re-checked on every tick alerts once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from velox.errors import ValidationError
from velox.store._values import (
    StoreLike,
    aware,
    choice,
    identifiers,
    ist_column,
    jsonb_text,
    mapping,
    optional_text,
    positive_limit,
    text,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ALERT_SEVERITIES = ("info", "warning", "critical")
#: The kinds of alert; delivery rules select on them, so a misspelt kind is an error.
ALERT_KINDS = (
    "risk_breach",
    "kill_switch",
    "order_rejected",
    "reconciliation",
    "strategy_error",
    "broker_disconnect",
    "session_expired",
    "pipeline_failed",
    "user_alert",
)
ALERT_COLUMNS = (
    "id", "created_at", "ts", "severity", "kind", "dedup_key", "run_id", "account", "message",
    "payload", "occurrences", "last_seen_at", "delivered_at",
)  # fmt: skip

# The partial unique index alerts_open_dedup_idx makes the fold race-free; a repeat keeps the
# first message and payload, counts the occurrence and raises the severity to the highest seen.
RAISE_SQL = """
INSERT INTO alerts (ts, severity, kind, dedup_key, run_id, account, message, payload,
                    last_seen_at)
VALUES (coalesce(%(ts)s, now()), %(severity)s, %(kind)s, %(dedup_key)s, %(run_id)s, %(account)s,
        %(message)s, %(payload)s::jsonb, coalesce(%(ts)s, now()))
ON CONFLICT (dedup_key) WHERE delivered_at IS NULL AND dedup_key IS NOT NULL DO UPDATE SET
    occurrences = alerts.occurrences + 1,
    last_seen_at = greatest(alerts.last_seen_at, EXCLUDED.last_seen_at),
    severity = CASE WHEN array_position(ARRAY['info', 'warning', 'critical'], EXCLUDED.severity)
                       > array_position(ARRAY['info', 'warning', 'critical'], alerts.severity)
                    THEN EXCLUDED.severity ELSE alerts.severity END
RETURNING id, occurrences
"""


class AlertsMixin(StoreLike):
    """Alerts: :meth:`raise_alert` and :meth:`alerts`."""

    def raise_alert(
        self,
        *,
        kind: str,
        severity: str,
        message: str,
        dedup_key: str | None = None,
        run_id: str | None = None,
        account: str | None = None,
        payload: Mapping[str, object] | None = None,
        ts: datetime | None = None,
    ) -> int:
        """Store an alert for delivery and return its id; NOTIFY ``velox_alerts`` with the id.

        ``ts`` is when it happened (default now). With ``dedup_key``, while an undelivered
        alert has the same key no row is added: that alert's ``occurrences`` grows by one,
        its ``last_seen_at`` moves to ``ts`` and its severity rises to this one if higher;
        its id is returned. Once delivered, the same key starts a new alert.

        Raises
        ------
        ValidationError
            Unknown ``kind`` or ``severity`` (did you mean …?), an empty message, a naive
            ``ts`` or a payload that is not JSON.

        Examples
        --------
        >>> store.raise_alert(kind="risk_breach", severity="critical", run_id="P3",
        ...                   message="daily loss limit hit", dedup_key="P3:daily_loss")
        ... # doctest: +SKIP
        17
        """
        values = {
            "kind": choice("kind", kind, ALERT_KINDS),
            "severity": choice("severity", severity, ALERT_SEVERITIES),
            "message": text("message", message),
            "dedup_key": optional_text("dedup_key", dedup_key),
            "run_id": optional_text("run_id", run_id),
            "account": optional_text("account", account),
            "payload": jsonb_text("payload", mapping("payload", payload)),
            "ts": None if ts is None else aware("ts", ts),
        }
        with self._atomic() as conn:
            alert_id, occurrences = conn.execute(RAISE_SQL, values).fetchone()
            conn.execute("SELECT pg_notify('velox_alerts', %s)", (str(alert_id),))
        if occurrences == 1:
            log.info("alert %d [%s] %s: %s", alert_id, severity, kind, message)
        return int(alert_id)

    def alerts(
        self,
        *,
        since: object = None,
        kind: str | None = None,
        run_id: str | None = None,
        undelivered: bool | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Return alerts, newest first (columns :data:`ALERT_COLUMNS`, IST times).

        ``since`` keeps alerts last seen at or after it (a datetime or string; naive is IST);
        ``undelivered=True`` only those not delivered yet, ``False`` only delivered ones.
        """
        import pandas as pd
        from psycopg import sql

        from velox.store.core import _to_ns

        conditions, values = [], []
        if since is not None:
            conditions.append(
                "last_seen_at >= timestamptz 'epoch' + %s::bigint * interval '1 microsecond'"
            )
            values.append(_to_ns(since)[0] // 1000)
        if kind is not None:
            conditions.append("kind = %s")
            values.append(choice("kind", kind, ALERT_KINDS))
        if run_id is not None:
            conditions.append("run_id = %s")
            values.append(run_id)
        if undelivered is not None:
            if not isinstance(undelivered, bool):
                raise ValidationError(f"undelivered={undelivered!r} must be True, False or None")
            conditions.append("delivered_at IS NULL" if undelivered else "delivered_at IS NOT NULL")
        query = sql.SQL("SELECT {} FROM alerts").format(identifiers(ALERT_COLUMNS))
        if conditions:
            query += sql.SQL(" WHERE " + " AND ".join(conditions))
        query += sql.SQL(" ORDER BY id DESC")
        if limit is not None:
            query += sql.SQL(" LIMIT {}").format(sql.Literal(positive_limit(limit)))
        with self._shared() as conn:
            rows = conn.execute(query, values).fetchall()
        frame = pd.DataFrame(rows, columns=list(ALERT_COLUMNS))
        for col in ("id", "occurrences"):
            frame[col] = frame[col].astype("int64")
        for col in ("created_at", "ts", "last_seen_at", "delivered_at"):
            ist_column(frame, col)
        return frame


__all__ = ["ALERT_COLUMNS", "ALERT_KINDS", "ALERT_SEVERITIES", "AlertsMixin"]
