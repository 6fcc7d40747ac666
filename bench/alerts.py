"""Benchmark alert latency: from ``store.raise_alert`` to the SMTP server and the Telegram
stand-in receiving it, against a direct send a user would write instead.

Run ``python bench/alerts.py [N]`` (N alerts, default 200). It starts a throwaway embedded
PostgreSQL in a temp dir (never the user's store), the tests' aiosmtpd server (STARTTLS on a
self-signed certificate, AUTH) and their loopback Bot API stand-in, and a delivery worker
(``BackgroundWorker``: woken by NOTIFY ``velox_alerts``) with the email and Telegram channels.

- **Velox**: one alert at a time is raised (stored, NOTIFY) and the clock stops when each server
  has it: store + wake-up + enqueue + claim + send + acknowledge, per channel.
- **Velox from the engine's event**: the same, but the clock starts where a paper or live
  engine raises an alert (``Engine._alert`` → ``RunRecorder.alert``, the run's journal), so
  the recorder's batch (every ``LIVE_FLUSH_S`` = 0.1 s in paper and live) is included; each
  event comes after a random pause, at a random moment of the recorder's cycle.
- **Direct**: the same message sent straight from the benchmark, as a user without Velox would:
  ``smtplib`` (new connection, STARTTLS, AUTH, send, as the worker does) and
  ``requests.post`` of the ``sendMessage`` JSON; the clock stops on receipt.

Storm control is set out of the way (rate limit 10⁶/min): this measures the delivery path, not
the policy. p50 and p99 in milliseconds, and the ratio Velox / direct.
"""

from __future__ import annotations

import random
import shutil
import smtplib
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.alerts.conftest import (  # noqa: E402  (the tests' real servers, after sys.path)
    PASSWORD,
    TOKEN,
    USER,
    SmtpServer,
    _free_port,
    email_channel,
    self_signed,
    start_bot,
)
from velox.alerts.channels import TelegramChannel  # noqa: E402
from velox.alerts.policy import Policy  # noqa: E402
from velox.alerts.worker import BackgroundWorker, Deliverer  # noqa: E402
from velox.store import Store, embedded_url, stop_embedded  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait(count: int, items: list, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(items) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for delivery {count}")
        time.sleep(0.0002)


def bench_deliverer(store: Store, smtp: SmtpServer, bot) -> Deliverer:  # noqa: ANN001
    """A worker sending every alert to the loopback SMTP server and Bot API stand-in."""
    return Deliverer(
        store,
        channels={"email": email_channel(smtp), "telegram": TelegramChannel(TOKEN, bot.url)},
        targets={"email": "ops@desk.example", "telegram": "4242"},
        policy=Policy(rate_limit=1_000_000),
    )


def velox_latencies(store: Store, smtp: SmtpServer, bot, n: int) -> tuple[list, list]:  # noqa: ANN001
    deliverer = bench_deliverer(store, smtp, bot)
    to_smtp, to_bot = [], []
    with BackgroundWorker(deliverer, poll=30.0):
        time.sleep(0.5)  # listening
        for i in range(n):
            mails, requests = len(smtp.received), len(bot.requests)
            started = time.perf_counter()
            store.raise_alert(kind="risk_breach", severity="critical", run_id="B1",
                              message=f"max_order_qty breached ({i})")  # fmt: skip
            wait(mails + 1, smtp.received)
            wait(requests + 1, bot.requests)
            to_smtp.append(smtp.received[-1].at - started)
            to_bot.append(bot.requests[-1].at - started)
    return to_smtp, to_bot


def engine_latencies(store: Store, smtp: SmtpServer, bot, n: int) -> tuple[list, list]:  # noqa: ANN001
    """From ``RunRecorder.alert`` (what the engine calls on the event) to each server."""
    from datetime import UTC, datetime

    from velox.engine.journal import Alert
    from velox.store.recorder import LIVE_FLUSH_S, RunRecorder

    deliverer = bench_deliverer(store, smtp, bot)
    store.create_run(mode="paper", account="B", initial_cash=1e6, run_id="BE1")
    recorder = RunRecorder(store, "BE1", flush_interval=LIVE_FLUSH_S)
    to_smtp, to_bot = [], []
    jitter = random.Random(17)
    with BackgroundWorker(deliverer, poll=30.0):
        time.sleep(0.5)  # listening
        for i in range(n):
            # an event comes at any moment of the recorder's cycle, not right after a delivery
            # (which would lock it to one phase of the flush): a random pause first
            time.sleep(jitter.uniform(0, LIVE_FLUSH_S))
            mails, requests = len(smtp.received), len(bot.requests)
            started = time.perf_counter()
            recorder.alert(Alert(datetime.now(UTC), "risk_breach", "critical",
                                 f"max_order_qty breached ({i})", dedup_key=f"BE1:{i}",
                                 account="B"))  # fmt: skip
            wait(mails + 1, smtp.received)
            wait(requests + 1, bot.requests)
            to_smtp.append(smtp.received[-1].at - started)
            to_bot.append(bot.requests[-1].at - started)
    recorder.close()
    return to_smtp, to_bot


def direct_latencies(smtp: SmtpServer, bot, n: int) -> tuple[list, list]:  # noqa: ANN001
    import requests

    from velox.alerts.channels import Message

    channel = email_channel(smtp)
    to_smtp, to_bot = [], []
    context = ssl.create_default_context(cafile=str(smtp.cert))
    for i in range(n):
        mail = channel.build("ops@desk.example", Message(f"direct {i}", f"body {i}\n"))
        mails, calls = len(smtp.received), len(bot.requests)
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=15) as client:
            client.starttls(context=context)
            client.login(USER, PASSWORD)
            client.send_message(mail)
        wait(mails + 1, smtp.received)
        to_smtp.append(smtp.received[-1].at - started)
        started = time.perf_counter()
        payload = {"chat_id": "4242", "text": f"direct {i}"}
        answer = requests.post(f"{bot.url}/bot{TOKEN}/sendMessage", json=payload, timeout=15)
        answer.raise_for_status()
        wait(calls + 1, bot.requests)
        to_bot.append(bot.requests[-1].at - started)
    return to_smtp, to_bot


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    root = Path(tempfile.mkdtemp(prefix="vx-bench-alerts-"))
    smtp = SmtpServer(_free_port(), *self_signed(root))
    smtp.start()
    bot, server = start_bot()
    try:
        store = Store(embedded_url(root / "store"), backend="embedded")
        direct_latencies(smtp, bot, 5)  # warm both paths (imports, TLS contexts)
        velox_smtp, velox_bot = velox_latencies(store, smtp, bot, n)
        engine_smtp, engine_bot = engine_latencies(store, smtp, bot, n)
        direct_smtp, direct_bot = direct_latencies(smtp, bot, n)
        store.close()
    finally:
        server.shutdown()
        smtp.stop()
        stop_embedded(root / "store")
        shutil.rmtree(root, ignore_errors=True)

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000

    print(f"alert latency, {n} alerts one at a time (ms)")
    print(f"{'path':<44}{'p50':>9}{'p99':>9}{'mean':>9}")
    rows = [
        ("velox raise_alert -> SMTP server", velox_smtp),
        ("velox engine event -> SMTP server", engine_smtp),
        ("direct smtplib (STARTTLS, AUTH) -> SMTP", direct_smtp),
        ("velox raise_alert -> Telegram stand-in", velox_bot),
        ("velox engine event -> Telegram stand-in", engine_bot),
        ("direct requests.post -> Telegram stand-in", direct_bot),
    ]
    for label, values in rows:
        print(f"{label:<44}{ms(values, 50):>9.2f}{ms(values, 99):>9.2f}"
              f"{statistics.mean(values) * 1000:>9.2f}")  # fmt: skip
    for channel, velox, direct in (("SMTP", velox_smtp, direct_smtp),
                                   ("Telegram", velox_bot, direct_bot)):  # fmt: skip
        print(f"ratio velox/direct {channel}: p50 {ms(velox, 50) / ms(direct, 50):.2f}x, "
              f"p99 {ms(velox, 99) / ms(direct, 99):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
