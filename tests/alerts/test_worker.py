"""The delivery worker's guarantees on a real PostgreSQL and a loopback webhook receiver:
no double send across workers or after a crash, de-duplication window, storm control, quiet
hours, severity thresholds, per-user subscriptions, and waking on NOTIFY."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from tests.alerts.conftest import TOKEN, BotServer, Clock
from velox.alerts.channels import TelegramChannel, WebhookChannel
from velox.alerts.policy import Policy
from velox.alerts.worker import (
    BackgroundWorker,
    Deliverer,
    Report,
    deliveries,
    delivery_attempts,
)  # fmt: skip
from velox.store import Store

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def _webhook(store, bot: BotServer, **kwargs) -> Deliverer:  # noqa: ANN001
    return Deliverer(store, channels={"webhook": WebhookChannel()},
                     targets={"webhook": f"{bot.url}/hook"}, **kwargs)  # fmt: skip


def _ids(bot: BotServer) -> list[int]:
    """Alert ids the receiver got, one per alert in a message (summaries list several)."""
    out = []
    for request in bot.requests:
        body = request.json()
        out += body["alert_ids"] if body.get("summary") else [body["id"]]
    return out


def test_two_workers_at_once_never_send_an_alert_twice(store, bot: BotServer) -> None:  # noqa: ANN001
    ids = [store.raise_alert(kind="strategy_error", severity="critical", message=f"boom {i}")
           for i in range(40)]  # fmt: skip
    bot.delay = 0.01  # a slow far side keeps both workers busy at the same time
    other = Store(store.url, backend=store.backend)
    workers = [_webhook(s, bot, policy=Policy(rate_limit=1000), batch=4) for s in (store, other)]
    reports = []
    barrier = threading.Barrier(2)

    def work(deliverer: Deliverer) -> None:
        barrier.wait()
        reports.append(deliverer.run_once())

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other.close()
    assert sorted(_ids(bot)) == ids  # each exactly once
    assert sum(r.sent for r in reports) == 40
    assert all(r.sent > 0 for r in reports), "both workers took part"
    frame = deliveries(store)
    assert set(frame["status"]) == {"sent"} and set(frame["attempts"]) == {1}
    assert store.alerts(undelivered=True).empty


def test_a_crash_after_claiming_resends_once_and_a_sent_row_never(
    store,
    bot: BotServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    alert_id = store.raise_alert(kind="kill_switch", severity="critical", message="killed")
    crashed = _webhook(store, bot, clock=clock, worker="crashed")
    crashed.enqueue()
    (claim,) = crashed.claim()  # ... and the process dies before sending
    survivor = _webhook(store, bot, clock=clock, worker="survivor")
    assert survivor.run_once().sent == 0  # leased: not taken while the lease lasts
    clock.advance(Policy().lease.total_seconds())
    assert survivor.run_once().sent == 1
    assert _ids(bot) == [alert_id]
    (row,) = deliveries(store).itertuples()
    assert (row.status, row.attempts) == ("sent", 2)
    log = delivery_attempts(store, row.id)
    assert log["worker"].tolist() == ["crashed", "survivor"]
    assert log["outcome"].isna().tolist() == [True, False]  # the dead worker's never ended
    assert log["outcome"].iloc[1] == "sent" and log["finished_at"].isna().iloc[0]
    # the crashed worker coming back with its old claim cannot undo or repeat the send
    crashed._record([claim], None, Report())
    clock.advance(3600)
    assert survivor.run_once().sent == 0 and crashed.run_once().sent == 0
    assert _ids(bot) == [alert_id]


def test_same_key_within_the_window_is_suppressed_then_sent_after(
    store,
    bot: BotServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    deliverer = _webhook(
        store, bot, clock=clock, policy=Policy(dedup_window=dt.timedelta(minutes=10))
    )
    first = store.raise_alert(kind="broker_disconnect", severity="warning", message="feed down",
                              dedup_key="K1:feed")  # fmt: skip
    assert deliverer.run_once().sent == 1
    clock.advance(9 * 60 + 59)
    second = store.raise_alert(kind="broker_disconnect", severity="warning", message="feed down",
                               dedup_key="K1:feed")  # fmt: skip
    assert second != first  # the first was delivered: a new alert row
    report = deliverer.run_once()
    assert (report.sent, report.suppressed) == (0, 1)
    (row,) = deliveries(store, alert_id=second).itertuples()
    assert row.status == "suppressed" and "within 10 min" in row.last_error
    assert second in set(store.alerts(undelivered=False)["id"])  # handled, not lost
    clock.advance(2)  # 10 min 1 s after the first send
    third = store.raise_alert(kind="broker_disconnect", severity="warning", message="feed down",
                              dedup_key="K1:feed")  # fmt: skip
    assert deliverer.run_once().sent == 1
    assert _ids(bot) == [first, third]


def test_a_storm_becomes_one_summary_within_the_rate_limit(
    store,
    bot: BotServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    ids = [store.raise_alert(kind="order_rejected", severity="warning", message=f"rejected {i}")
           for i in range(12)]  # fmt: skip
    deliverer = _webhook(store, bot, clock=clock, policy=Policy(rate_limit=5))
    assert deliverer.run_once().sent == 12
    bodies = [r.json() for r in bot.requests]
    assert len(bodies) == 5  # 4 single messages and one summary: the limit, not more
    assert [b["id"] for b in bodies[:4]] == ids[:4]
    summary = bodies[4]
    assert summary["alert_ids"] == ids[4:]
    assert summary["subject"] == "[Velox WARNING] 8 alerts (storm control)"
    assert summary["text"].count("\n- ") == 8 and "rejected 11" in summary["text"]
    # more within the same minute wait for it to pass: nothing is dropped
    late = [store.raise_alert(kind="order_rejected", severity="warning", message=f"late {i}")
            for i in range(3)]  # fmt: skip
    report = deliverer.run_once()
    assert (report.sent, report.pending) == (0, 3) and len(bot.requests) == 5
    clock.advance(60)
    assert deliverer.run_once().sent == 3
    assert sorted(_ids(bot)) == ids + late
    assert deliveries(store)["attempts"].max() == 1  # waiting for the rate cost no attempt


def test_quiet_hours_hold_info_and_warning_but_not_critical(store, bot: BotServer) -> None:  # noqa: ANN001
    clock = Clock(dt.datetime(2025, 5, 22, 23, 10, tzinfo=IST))
    policy = Policy(quiet_hours=(dt.time(22, 0), dt.time(7, 0)))
    deliverer = _webhook(store, bot, clock=clock, policy=policy)
    info = store.raise_alert(kind="pipeline_failed", severity="info", message="nightly scan")
    warning = store.raise_alert(kind="broker_disconnect", severity="warning", message="feed down")
    critical = store.raise_alert(kind="session_expired", severity="critical", message="relogin")
    assert deliverer.run_once().sent == 1
    assert _ids(bot) == [critical]
    held = deliveries(store).set_index("alert_id").loc[[info, warning]]
    assert set(held["status"]) == {"pending"}
    assert set(held["next_attempt_at"]) == {dt.datetime(2025, 5, 23, 7, 0, tzinfo=IST)}
    clock.now = dt.datetime(2025, 5, 23, 6, 59, 59, tzinfo=IST)
    assert deliverer.run_once().sent == 0
    clock.advance(1)
    assert deliverer.run_once().sent == 2
    assert _ids(bot) == [critical, info, warning]


def test_channel_thresholds_and_user_subscriptions_route_alerts(store, bot: BotServer) -> None:  # noqa: ANN001
    from velox.alerts.subscriptions import subscribe, subscriptions, unsubscribe
    from velox.auth import Users
    from velox.errors import ValidationError
    from velox.secrets import generate_key

    users = Users(store, key=generate_key())
    users.add("asha", "trader", "a long passphrase one")
    users.add("ravi", "investor", "a long passphrase two", totp=False)
    users.add("gone", "trader", "a long passphrase six")
    users.link("ravi", accounts=["A1"])
    subscribe(store, "asha", "telegram", "111", min_severity="critical", kinds=["kill_switch"])
    subscribe(store, "ravi", "telegram", "222")
    sub = subscribe(store, "gone", "telegram", "333")
    users.disable("gone")
    subscribe(store, "asha", "webhook", f"{bot.url}/asha", min_severity="warning")
    with pytest.raises(ValidationError, match="kind='kil_switch' is not one of .* did you mean"):
        subscribe(store, "asha", "telegram", "111", kinds=["kil_switch"])
    with pytest.raises(ValidationError, match="no user 'nobody'"):
        subscribe(store, "nobody", "telegram", "111")
    assert len(subscriptions(store)) == 4

    deliverer = Deliverer(
        store, channels={"telegram": TelegramChannel(TOKEN, bot.url), "webhook": WebhookChannel()},
        targets={"telegram": "999"},
        policy=Policy(min_severity=(("telegram", "warning"),)),
    )  # fmt: skip
    kill = store.raise_alert(kind="kill_switch", severity="critical", message="k", account="A1")
    breach_a2 = store.raise_alert(kind="risk_breach", severity="warning", message="b", account="A2")
    info_a1 = store.raise_alert(kind="strategy_error", severity="info", message="i", account="A1")
    deliverer.run_once()
    got = {(a, c, t) for a, c, t in deliveries(store)[["alert_id", "channel", "target"]]
           .itertuples(index=False)}  # fmt: skip
    hook = f"{bot.url}/asha"
    assert got == {
        (kill, "telegram", "999"), (kill, "telegram", "111"), (kill, "telegram", "222"),
        (kill, "webhook", hook),
        (breach_a2, "telegram", "999"), (breach_a2, "webhook", hook),
        (info_a1, "telegram", "222"),
    }  # fmt: skip
    assert unsubscribe(store, sub) and not unsubscribe(store, sub)


def test_the_background_worker_wakes_on_notify_and_stops_cleanly(store, bot: BotServer) -> None:  # noqa: ANN001
    worker = BackgroundWorker(_webhook(store, bot), poll=60.0)
    try:
        time.sleep(0.5)  # listening
        started = time.monotonic()
        alert_id = store.raise_alert(kind="reconciliation", severity="critical", message="m")
        bot.wait_for(1, timeout=10)
        assert _ids(bot) == [alert_id]
        assert time.monotonic() - started < 5  # NOTIFY woke it, not the 60 s poll
    finally:
        started = time.monotonic()
        worker.stop()
    assert time.monotonic() - started < 5 and not worker._thread.is_alive()


def test_alerts_nobody_wants_are_routed_once_and_never_starve_new_ones(
    store,
    bot: BotServer,  # noqa: ANN001
) -> None:
    idle = Deliverer(store, channels={"webhook": WebhookChannel()})  # no destination at all
    early = store.raise_alert(kind="strategy_error", severity="critical", message="early")
    assert idle.run_once().sent == 0
    deliverer = _webhook(store, bot, policy=Policy(min_severity=(("webhook", "critical"),)))
    for i in range(520):  # more than one routing page, all below the threshold
        store.raise_alert(kind="order_rejected", severity="info", message=f"noise {i}")
    late = store.raise_alert(kind="kill_switch", severity="critical", message="late")
    assert deliverer.run_once().sent == 2
    assert _ids(bot) == [early, late]  # waited for a destination; not starved by the noise
    with store.connect() as conn:
        query = "SELECT deliveries, count(*) FROM alert_routing GROUP BY deliveries"
        routed = dict(conn.execute(query).fetchall())
    assert routed == {0: 520, 1: 2}
    assert len(store.alerts(undelivered=True)) == 520  # visible, never marked delivered


def test_a_webhook_url_secret_never_shows_in_errors(store, bot: BotServer, caplog) -> None:  # noqa: ANN001
    bot.script = [(404, {"ok": False, "description": "no such hook"})]
    hook = f"{bot.url}/services/T0SECRET/B0SECRET?token=abc123"
    store.raise_alert(kind="risk_breach", severity="warning", message="m")
    report = Deliverer(store, channels={"webhook": WebhookChannel()},
                       targets={"webhook": hook}).run_once()  # fmt: skip
    (line,) = report.failed
    port = bot.url.rsplit(":", 1)[1]
    assert line.endswith(f"via webhook to http://127.0.0.1:{port}/…: failed after 1 attempt(s): "
                         f"webhook http://127.0.0.1:{port}/…: HTTP 404 no such hook")  # fmt: skip
    shown = line + caplog.text + " ".join(deliveries(store)["last_error"])
    assert "SECRET" not in shown and "abc123" not in shown
    assert bot.requests[0].path == "/services/T0SECRET/B0SECRET?token=abc123"  # sent to it all


def test_a_worker_whose_lease_ran_out_mid_claim_does_not_send_the_rest(
    store,
    bot: BotServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    """A far side so slow that a claim's lease runs out while its first message is sent: another
    worker takes the claim over and sends it; the slow worker must not send the rest again."""
    ids = [store.raise_alert(kind="strategy_error", severity="critical", message=f"slow {i}")
           for i in range(3)]  # fmt: skip
    survivor = _webhook(store, bot, clock=clock, worker="survivor")

    class SlowFarSide:
        """The webhook, answering the slow worker's first message after the lease ran out."""

        name = "webhook"

        def __init__(self) -> None:
            self.inner, self.calls = WebhookChannel(), 0

        def send(self, target: str, message) -> None:  # noqa: ANN001
            self.inner.send(target, message)
            self.calls += 1
            if self.calls == 1:
                clock.advance(Policy().lease.total_seconds() + 1)
                assert survivor.run_once().sent == 3  # it took over the whole expired claim

    slow = Deliverer(store, channels={"webhook": SlowFarSide()}, clock=clock, worker="slow",
                     targets={"webhook": f"{bot.url}/hook"})  # fmt: skip
    report = slow.run_once()
    # the message being sent when the lease ran out goes twice (at most once more, as after a
    # crash); the two the slow worker had not started go once, by the worker holding them
    assert sorted(_ids(bot)) == sorted([ids[0], *ids])
    assert report.sent == 0 and not report.failed
    frame = deliveries(store)
    assert set(frame["status"]) == {"sent"} and set(frame["attempts"]) == {2}
    assert store.alerts(undelivered=True).empty


def test_a_worker_renews_an_expired_lease_nobody_took_over(
    store,
    bot: BotServer,
    clock: Clock,  # noqa: ANN001
) -> None:
    """The lease ran out mid-claim but no other worker claimed the rows: the worker renews the
    lease and sends them itself, each once."""
    ids = [store.raise_alert(kind="strategy_error", severity="critical", message=f"late {i}")
           for i in range(2)]  # fmt: skip

    class SlowFarSide:
        name = "webhook"

        def __init__(self) -> None:
            self.inner = WebhookChannel()

        def send(self, target: str, message) -> None:  # noqa: ANN001
            self.inner.send(target, message)
            clock.advance(Policy().lease.total_seconds() + 1)

    slow = Deliverer(store, channels={"webhook": SlowFarSide()}, clock=clock, worker="slow",
                     targets={"webhook": f"{bot.url}/hook"})  # fmt: skip
    assert slow.run_once().sent == 2
    assert _ids(bot) == ids
    frame = deliveries(store)
    assert set(frame["status"]) == {"sent"} and set(frame["attempts"]) == {1}
