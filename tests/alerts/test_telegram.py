"""Telegram delivery to a loopback stand-in of the Bot API: the exact ``sendMessage`` JSON,
a ``sendPhoto`` multipart carrying a real PNG chart, and 500/429 answers retried on time."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json

import numpy as np

from tests.alerts.conftest import TOKEN, BotServer, Clock
from velox.alerts.channels import TelegramChannel
from velox.alerts.policy import Policy
from velox.alerts.worker import Deliverer, deliveries, delivery_attempts

TS = dt.datetime(2025, 5, 22, 5, 0, 30, tzinfo=dt.UTC)  # 10:30:30 IST


def _deliverer(store, bot: BotServer, **kwargs) -> Deliverer:  # noqa: ANN001
    return Deliverer(store, channels={"telegram": TelegramChannel(TOKEN, bot.url)},
                     targets={"telegram": "4242"}, **kwargs)  # fmt: skip


def _breach(store) -> int:  # noqa: ANN001
    return store.raise_alert(kind="risk_breach", severity="warning", run_id="R1",
                             message="max_order_qty: 5000 > 4000", ts=TS)  # fmt: skip


def test_send_message_json_is_exact(store, bot: BotServer) -> None:  # noqa: ANN001
    alert_id = _breach(store)
    report = _deliverer(store, bot).run_once()
    assert report.sent == 1
    (request,) = bot.requests
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "chat_id": "4242",
        "text": "[Velox WARNING] risk_breach: max_order_qty: 5000 > 4000\n\n"
        "max_order_qty: 5000 > 4000\n\ntime: 2025-05-22 10:30:30 IST\nrun: R1\n"
        f"alert id: {alert_id}\n",
        "disable_web_page_preview": True,
    }


def _parts(request) -> dict[str, email.message.Message]:  # noqa: ANN001
    raw = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + request.body
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    assert message.is_multipart()
    return {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}


def test_kill_switch_goes_with_the_equity_chart_as_send_photo(store, bot: BotServer) -> None:  # noqa: ANN001
    from PIL import Image

    from velox.store import RunRecorder

    store.create_run(mode="paper", account="T1", initial_cash=1e6, run_id="P3")
    recorder = RunRecorder(store, "P3")
    start = int(TS.timestamp()) * 10**9
    recorder.equity_many([start + i * 60 * 10**9 for i in range(30)],
                         list(1e6 - np.arange(30) * 120.0))  # fmt: skip
    recorder.close()
    alert_id = store.raise_alert(kind="kill_switch", severity="critical", run_id="P3",
                                 account="T1", message="kill switch engaged: daily loss",
                                 ts=TS)  # fmt: skip
    assert _deliverer(store, bot).run_once().sent == 1
    (request,) = bot.requests
    assert request.path == f"/bot{TOKEN}/sendPhoto"
    parts = _parts(request)
    assert set(parts) == {"chat_id", "caption", "photo"}
    assert parts["chat_id"].get_payload() == "4242"
    assert parts["caption"].get_payload() == (
        "[Velox CRITICAL] kill_switch: kill switch engaged: daily loss\n\n"
        "kill switch engaged: daily loss\n\ntime: 2025-05-22 10:30:30 IST\nrun: P3\n"
        f"account: T1\nalert id: {alert_id}\n"
    )
    photo = parts["photo"]
    assert photo.get_filename() == "chart.png" and photo.get_content_type() == "image/png"
    png = photo.get_payload(decode=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    image.verify()  # a complete, valid PNG
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.size == (800, 350)
    assert image.getextrema()[0] < 128  # something dark is drawn on the white canvas


def test_500_then_429_retry_after_then_ok_sends_once_on_time(
    store,
    bot: BotServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    alert_id = _breach(store)
    bot.script = [(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
                  (429, {"ok": False, "error_code": 429,
                         "description": "Too Many Requests: retry after 7",
                         "parameters": {"retry_after": 7}})]  # fmt: skip
    deliverer = _deliverer(store, bot, clock=clock, policy=Policy(retry_base=5.0))
    assert deliverer.run_once().retried == 1
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert row.next_attempt_at == clock.now + dt.timedelta(seconds=5)
    clock.advance(5)
    assert deliverer.run_once().retried == 1
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert row.next_attempt_at == clock.now + dt.timedelta(seconds=7)  # Telegram's retry_after
    clock.advance(6.9)
    assert deliverer.run_once().retried == 0 and len(bot.requests) == 2
    clock.advance(0.1)
    assert deliverer.run_once().sent == 1
    assert len(bot.requests) == 3
    assert len({r.body for r in bot.requests}) == 1  # the same message each time
    log = delivery_attempts(store, row.id)
    assert log["outcome"].tolist() == ["retry", "retry", "sent"]
    assert log["error"].tolist()[:2] == [
        "telegram sendMessage: HTTP 500 Internal Server Error",
        "telegram sendMessage: HTTP 429 Too Many Requests: retry after 7",
    ]
    assert store.alerts(undelivered=False)["id"].tolist() == [alert_id]


def test_bad_chat_fails_at_once_and_never_shows_the_token(store, bot: BotServer, caplog) -> None:  # noqa: ANN001
    alert_id = _breach(store)
    bot.script = [(400, {"ok": False, "error_code": 400,
                         "description": "Bad Request: chat not found"})]  # fmt: skip
    report = _deliverer(store, bot).run_once()
    assert report.failed == [
        f"alert {alert_id} via telegram to 4242: failed after 1 attempt(s): "
        "telegram sendMessage: HTTP 400 Bad Request: chat not found"
    ]
    assert deliveries(store, alert_id=alert_id)["status"].tolist() == ["failed"]
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


def test_gives_up_after_max_attempts_and_reports(store, bot: BotServer, clock: Clock) -> None:  # noqa: ANN001
    alert_id = _breach(store)
    bot.script = [(502, {"ok": False, "description": "Bad Gateway"})] * 3
    deliverer = _deliverer(store, bot, clock=clock, policy=Policy(max_attempts=3, retry_base=1))
    outcomes = []
    for _ in range(3):
        report = deliverer.run_once()
        outcomes.append((report.retried, len(report.failed)))
        clock.advance(60)
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    (row,) = deliveries(store, alert_id=alert_id).itertuples()
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error == "telegram sendMessage: HTTP 502 Bad Gateway"
    assert json.loads(bot.requests[0].body)["chat_id"] == "4242"
    assert store.alerts(undelivered=True)["id"].tolist() == [alert_id]
