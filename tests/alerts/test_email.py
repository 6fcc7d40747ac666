"""Email delivery to a real SMTP server: STARTTLS on a self-signed certificate, AUTH, the
exact email, and SMTP going down and coming back without losing or doubling an alert."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.alerts.conftest import (
    PASSWORD,
    Clock,
    SmtpServer,
    _free_port,
    email_channel,
    self_signed,
)
from velox.alerts.policy import Policy
from velox.alerts.worker import Deliverer, deliveries, delivery_attempts

TS = dt.datetime(2025, 5, 22, 4, 45, tzinfo=dt.UTC)  # 10:15 IST


def _raise(store, **changes):  # noqa: ANN001, ANN202
    values = {"kind": "kill_switch", "severity": "critical", "run_id": "P3", "account": "T1",
              "message": "kill switch engaged: daily loss -3,120.50 <= -3,000",
              "dedup_key": "P3:kill_switch:kill", "payload": {"limit": "daily_loss_limit"},
              "ts": TS}  # fmt: skip
    values.update(changes)
    return store.raise_alert(**values)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_email_arrives_over_starttls_with_auth_exactly(store, tmp_path, mechanism) -> None:  # noqa: ANN001
    cert, key = self_signed(tmp_path)
    # offer only the mechanism under test, so the client must speak it
    server = SmtpServer(_free_port(), cert, key, exclude=tuple({"PLAIN", "LOGIN"} - {mechanism}))
    server.start()
    try:
        alert_id = _raise(store)
        deliverer = Deliverer(store, channels={"email": email_channel(server)},
                              targets={"email": "ops@desk.example, risk@desk.example"})  # fmt: skip
        report = deliverer.run_once()
        (got,) = server.wait_for(1)
    finally:
        server.stop()
    assert report.sent == 1 and not report.failed
    assert got.tls and got.auth_mechanism == mechanism
    assert got.mail_from == "velox@desk.example"
    assert got.rcpt_tos == ["ops@desk.example", "risk@desk.example"]
    mail = got.message
    assert mail["Subject"] == (
        "[Velox CRITICAL] kill_switch: kill switch engaged: daily loss -3,120.50 <= -3,000"
    )
    assert mail["To"] == "ops@desk.example, risk@desk.example"
    assert mail.get_content().replace("\r\n", "\n") == (  # SMTP lines end in CRLF
        "kill switch engaged: daily loss -3,120.50 <= -3,000\n"
        "\n"
        "time: 2025-05-22 10:15:00 IST\n"
        "run: P3\n"
        "account: T1\n"
        'details: {"limit": "daily_loss_limit"}\n'
        f"alert id: {alert_id}\n"
    )
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert (row.channel, row.status, row.attempts) == ("email", "sent", 1)
    assert store.alerts(undelivered=False)["id"].tolist() == [alert_id]


def test_repeats_before_delivery_are_one_email_counting_them(store, smtp: SmtpServer) -> None:  # noqa: ANN001
    first = _raise(store)
    again = _raise(store, ts=TS + dt.timedelta(minutes=2))
    assert again == first
    Deliverer(store, channels={"email": email_channel(smtp)},
              targets={"email": "ops@desk.example"}).run_once()  # fmt: skip
    (got,) = smtp.wait_for(1)
    assert "occurrences: 2 (last 2025-05-22 10:17:00 IST)\r\n" in got.message.get_content()


def test_wrong_password_fails_permanently_and_stays_visible(store, smtp: SmtpServer) -> None:  # noqa: ANN001
    alert_id = _raise(store)
    deliverer = Deliverer(store, channels={"email": email_channel(smtp, password="wrong")},
                          targets={"email": "ops@desk.example"})  # fmt: skip
    report = deliverer.run_once()
    assert smtp.received == []
    assert len(report.failed) == 1 and "login as 'velox-bot' refused (535)" in report.failed[0]
    assert "wrong" not in report.failed[0] and PASSWORD not in report.failed[0]
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert (row.status, row.attempts) == ("failed", 1)
    assert store.alerts(undelivered=True)["id"].tolist() == [alert_id]  # never marked delivered
    assert deliverer.run_once().sent == 0  # and a failed row is not retried behind your back


def test_untrusted_certificate_is_refused(store, smtp: SmtpServer) -> None:  # noqa: ANN001
    _raise(store)
    report = Deliverer(store, channels={"email": email_channel(smtp, ca_file=None)},
                       targets={"email": "ops@desk.example"}).run_once()  # fmt: skip
    assert smtp.received == [] and len(report.failed) == 1
    assert "TLS failed (CERTIFICATE_VERIFY_FAILED)" in report.failed[0]


def test_smtp_down_then_up_retries_with_backoff_and_sends_once(
    store,
    smtp: SmtpServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    alert_id = _raise(store)
    deliverer = Deliverer(store, channels={"email": email_channel(smtp)},
                          targets={"email": "ops@desk.example"},
                          policy=Policy(retry_base=10.0), clock=clock)  # fmt: skip
    smtp.stop()
    first = deliverer.run_once()
    assert (first.sent, first.retried, first.pending) == (0, 1, 1)
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert row.status == "pending" and "Connection refused" in row.last_error
    assert row.next_attempt_at == clock.now + dt.timedelta(seconds=10)  # base backoff
    clock.advance(9.9)
    assert deliverer.run_once().retried == 0  # not due yet: no attempt
    clock.advance(0.1)
    second = deliverer.run_once()  # still down: the wait doubles
    assert second.retried == 1
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert row.next_attempt_at == clock.now + dt.timedelta(seconds=20)
    smtp.start()
    clock.advance(20)
    third = deliverer.run_once()
    assert (third.sent, third.pending) == (1, 0)
    assert len(smtp.wait_for(1)) == 1
    clock.advance(3600)
    assert deliverer.run_once().sent == 0 and len(smtp.received) == 1
    log = delivery_attempts(store, row.id)
    assert log["outcome"].tolist() == ["retry", "retry", "sent"]
    assert log["attempt"].tolist() == [1, 2, 3]
    assert log["finished_at"].notna().all()
    assert PASSWORD not in " ".join(log["error"].dropna())
