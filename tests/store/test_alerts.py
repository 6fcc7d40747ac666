"""Alerts: stored for delivery, folded by dedup key while undelivered, filtered on read."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from velox.calendar import IST
from velox.errors import ValidationError
from velox.store import ALERT_KINDS, Store

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 4, 1, 10, 0, tzinfo=IST)


def test_a_repeated_alert_counts_occurrences_until_delivered(store: Store) -> None:
    raise_breach = {"kind": "risk_breach", "run_id": "P1", "account": "ZX1234",
                    "dedup_key": "P1:daily_loss", "message": "daily loss 2.1% > 2%"}  # fmt: skip
    first = store.raise_alert(severity="warning", ts=T0, payload={"loss": 0.021}, **raise_breach)
    again = store.raise_alert(severity="critical", ts=T0 + timedelta(minutes=5), **raise_breach)
    assert again == first
    row = store.alerts().iloc[0]
    assert row["occurrences"] == 2 and row["severity"] == "critical"  # escalated
    assert row["ts"] == pd.Timestamp(T0) and row["last_seen_at"] == pd.Timestamp(
        T0 + timedelta(minutes=5)
    )
    assert row["payload"] == {"loss": 0.021} and row["message"] == "daily loss 2.1% > 2%"
    assert pd.isna(row["delivered_at"])
    store.raise_alert(severity="info", ts=T0 + timedelta(minutes=1), **raise_breach)
    row = store.alerts().iloc[0]
    assert row["occurrences"] == 3 and row["severity"] == "critical"
    assert row["last_seen_at"] == pd.Timestamp(T0 + timedelta(minutes=5))

    with store.connect() as conn:  # what the delivery worker will do
        conn.execute("UPDATE alerts SET delivered_at = now() WHERE id = %s", (first,))
    after = store.raise_alert(severity="warning", **raise_breach)
    assert after != first
    assert store.alerts(undelivered=True)["id"].tolist() == [after]
    assert store.alerts(undelivered=False)["id"].tolist() == [first]


def test_alerts_without_a_key_are_all_kept_and_filters_select(store: Store) -> None:
    a = store.raise_alert(kind="order_rejected", severity="warning", message="RMS", run_id="P1",
                          ts=T0)  # fmt: skip
    b = store.raise_alert(kind="order_rejected", severity="warning", message="RMS", run_id="P2",
                          ts=T0 + timedelta(hours=1))  # fmt: skip
    c = store.raise_alert(kind="pipeline_failed", severity="critical", message="import failed")
    assert store.alerts()["id"].tolist() == [c, b, a]
    assert store.alerts(kind="order_rejected")["id"].tolist() == [b, a]
    assert store.alerts(run_id="P1")["id"].tolist() == [a]
    assert store.alerts(since="2024-04-01 10:30")["id"].tolist() == [c, b]
    assert store.alerts(since=T0 + timedelta(hours=1), kind="order_rejected")["id"].tolist() == [b]
    assert store.alerts(limit=1)["id"].tolist() == [c]
    frame = store.alerts()
    assert str(frame["ts"].dtype) == "datetime64[ns, Asia/Kolkata]"
    assert frame["account"].tolist() == [None, None, None]


def test_raise_alert_notifies_velox_alerts(store: Store) -> None:
    with store.listen("velox_alerts") as listener:
        alert_id = store.raise_alert(kind="kill_switch", severity="critical", message="killed")
        assert listener.wait(5.0) == [("velox_alerts", str(alert_id))]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"kind": "risk_breech"}, "kind='risk_breech' is not one of .*did you mean 'risk_breach'"),
        ({"severity": "error"}, "severity='error' is not one of info, warning, critical"),
        ({"message": ""}, "message='' must be a non-empty string"),
        ({"ts": datetime(2024, 4, 1)}, "ts=2024-04-01 00:00:00 is naive"),
        ({"payload": {"x": {1, object()}}}, "holds a object"),
    ],
)
def test_bad_alerts_are_refused(store: Store, overrides, match) -> None:
    values = {"kind": "user_alert", "severity": "info", "message": "hello", **overrides}
    with pytest.raises(ValidationError, match=match):
        store.raise_alert(**values)
    assert store.alerts().empty
    with pytest.raises(ValidationError, match="did you mean 'session_expired'"):
        store.alerts(kind="session_expire")


def test_alert_kinds() -> None:
    assert "user_alert" in ALERT_KINDS and "risk_breach" in ALERT_KINDS
