"""``velox alerts deliver`` (forever and ``--once``) and the alert settings, run as the
operator runs them: the real CLI in a subprocess, configured by VELOX_* variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.alerts.conftest import PASSWORD, TOKEN, USER, BotServer, SmtpServer

ROOT = Path(__file__).resolve().parents[2]


def _env(store, bot: BotServer, **extra: str) -> dict[str, str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELOX_")}
    env.update(PYTHONPATH=str(ROOT), VELOX_DATABASE_URL=store.url, VELOX_TELEGRAM_TOKEN=TOKEN,
               VELOX_TELEGRAM_CHAT_ID="4242", VELOX_TELEGRAM_API_URL=bot.url, **extra)  # fmt: skip
    return env


def _velox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "velox.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_deliver_once_exits_0_when_sent_and_1_on_a_permanent_failure(store, bot: BotServer) -> None:  # noqa: ANN001
    env = _env(store, bot)
    store.raise_alert(kind="pipeline_failed", severity="warning", message="nightly scan failed")
    done = _velox(env, "alerts", "deliver", "--once")
    assert done.returncode == 0, done.stderr
    assert "alert channels: telegram" in done.stdout
    assert "sent 1, suppressed 0, retrying 0, failed 0, pending 0" in done.stdout
    assert (
        bot.requests[0]
        .json()["text"]
        .startswith("[Velox WARNING] pipeline_failed: nightly scan failed")
    )

    bot.script = [(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})]
    bad = store.raise_alert(kind="strategy_error", severity="critical", message="strategy died")
    failed = _velox(env, "alerts", "deliver", "--once")
    assert failed.returncode == 1
    assert (f"FAILED alert {bad} via telegram to 4242: failed after 1 attempt(s): "
            "telegram sendMessage: HTTP 401 Unauthorized") in failed.stderr  # fmt: skip
    assert TOKEN not in failed.stdout + failed.stderr + done.stdout + done.stderr
    again = _velox(env, "alerts", "deliver", "--once")  # nothing new failed; the old one is shown
    assert again.returncode == 0
    assert "1 delivery(ies) failed in earlier passes" in again.stderr


def test_deliver_runs_until_sigint_woken_by_new_alerts(store, bot: BotServer) -> None:  # noqa: ANN001
    process = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "alerts", "deliver", "--poll", "60"],
        env=_env(store, bot), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        alert_id = None
        while time.monotonic() < deadline and not bot.requests:
            if alert_id is None and process.poll() is None:
                time.sleep(3)  # started and listening (imports take a moment)
                alert_id = store.raise_alert(kind="session_expired", severity="critical",
                                             message="kite session expired")  # fmt: skip
            time.sleep(0.05)
        assert bot.requests and f"alert id: {alert_id}" in bot.requests[0].json()["text"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    assert "alert delivery stopped" in out


def test_deliver_once_emails_as_the_smtp_settings_say(store, smtp: SmtpServer) -> None:  # noqa: ANN001
    """Email configured only by the VELOX_SMTP_* and VELOX_ALERT_EMAIL_* variables reaches the
    real STARTTLS + AUTH server; its self-signed certificate is trusted through
    VELOX_SMTP_CA_FILE, or through OpenSSL's own SSL_CERT_FILE, and refused without either."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VELOX_", "SSL_CERT_"))}
    env.update(PYTHONPATH=str(ROOT), VELOX_DATABASE_URL=store.url, VELOX_SMTP_HOST="127.0.0.1",
               VELOX_SMTP_PORT=str(smtp.port), VELOX_SMTP_USER=USER,
               VELOX_SMTP_PASSWORD=PASSWORD, VELOX_SMTP_STARTTLS="true",
               VELOX_ALERT_EMAIL_TO="ops@desk.example, risk@desk.example",
               VELOX_ALERT_EMAIL_FROM="velox@desk.example")  # fmt: skip
    first = store.raise_alert(kind="reconciliation", severity="critical", message="qty differs")
    done = _velox({**env, "VELOX_SMTP_CA_FILE": str(smtp.cert)}, "alerts", "deliver", "--once")
    assert done.returncode == 0, done.stderr
    assert "alert channels: email" in done.stdout and "sent 1," in done.stdout
    (got,) = smtp.wait_for(1)
    assert got.tls and got.auth_mechanism in ("PLAIN", "LOGIN")
    assert got.mail_from == "velox@desk.example"
    assert got.rcpt_tos == ["ops@desk.example", "risk@desk.example"]
    assert got.message["Subject"] == "[Velox CRITICAL] reconciliation: qty differs"
    assert f"alert id: {first}\r\n" in got.message.get_content()

    second = store.raise_alert(kind="strategy_error", severity="warning", message="stopped")
    via_openssl = _velox({**env, "SSL_CERT_FILE": str(smtp.cert)}, "alerts", "deliver", "--once")
    assert via_openssl.returncode == 0, via_openssl.stderr
    assert f"alert id: {second}\r\n" in smtp.wait_for(2)[1].message.get_content()

    store.raise_alert(kind="strategy_error", severity="warning", message="untrusted")
    refused = _velox(env, "alerts", "deliver", "--once")
    assert refused.returncode == 1 and "TLS failed (CERTIFICATE_VERIFY_FAILED)" in refused.stderr
    assert len(smtp.received) == 2
    assert PASSWORD not in done.stdout + done.stderr + refused.stdout + refused.stderr


def test_config_show_masks_the_alert_secrets(store, bot: BotServer) -> None:  # noqa: ANN001
    env = _env(store, bot, VELOX_SMTP_HOST="127.0.0.1", VELOX_SMTP_PASSWORD=PASSWORD)
    shown = _velox(env, "config")
    assert shown.returncode == 0, shown.stderr
    assert "telegram_token='***'" in shown.stdout and "smtp_password='***'" in shown.stdout
    assert TOKEN not in shown.stdout and PASSWORD not in shown.stdout
    bad = _velox({**env, "VELOX_ALERT_QUIET_HOURS": "22-07"}, "config")
    assert bad.returncode != 0
    assert "alert_quiet_hours='22-07': must be HH:MM-HH:MM (IST)" in bad.stderr


KILL_STRATEGY = '''
from velox.strategy import Strategy
from velox.types import Product


class BuyTheOpen(Strategy):
    """Buys 500 MIS at the first bar of a falling day and holds: the loss limit kills it."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS

    def on_start(self, ctx):
        self.bought = False

    def on_bar(self, ctx, bar):
        if not self.bought:
            self.bought = True
            ctx.buy(500)
'''


def test_velox_paper_delivers_its_kill_switch_beside_the_engine(
    store,  # noqa: ANN001
    bot: BotServer,
    tmp_path: Path,
) -> None:
    from velox.data import import_bars

    import_bars(ROOT / "data" / "bars" / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m",
                store=store)  # fmt: skip
    strategy = tmp_path / "buy_the_open.py"
    strategy.write_text(KILL_STRATEGY)
    risk = tmp_path / "risk.toml"
    risk.write_text("[risk]\ndaily_loss_limit = 3000\n")
    env = _env(store, bot, VELOX_DATA_DIR=str(tmp_path))
    done = _velox(env, "paper", str(strategy), "--start", "2025-05-22", "--end", "2025-05-22",
                  "--speed", "20000", "--run", "PK1", "--account", "T1",
                  "--risk", str(risk))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    kills = store.alerts(kind="kill_switch", run_id="PK1")
    assert len(kills) == 1 and kills["delivered_at"].notna().all()
    sent = [r for r in bot.requests if r.path.endswith(("/sendPhoto", "/sendMessage"))]
    kill_texts = [r for r in sent if b"kill switch engaged" in r.body]
    assert len(kill_texts) == 1  # (with a chart only if the recorder had written equity yet)


def test_subscription_verbs_add_list_and_remove(store, bot: BotServer) -> None:  # noqa: ANN001
    from velox.auth import Users
    from velox.secrets import generate_key

    Users(store, key=generate_key()).add("ravi", "investor", "a long passphrase two", totp=False)
    env = _env(store, bot)
    added = _velox(env, "alerts", "subscribe", "ravi", "telegram", "777", "--min-severity",
                   "critical", "--kind", "kill_switch", "--kind", "session_expired")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "subscription 1: ravi telegram critical+ kill_switch, session_expired" in added.stdout
    listed = _velox(env, "alerts", "subscriptions")
    assert "ravi" in listed.stdout and "777" in listed.stdout
    unknown = _velox(env, "alerts", "subscribe", "nobody", "email", "x@desk.example")
    assert unknown.returncode != 0 and "no user 'nobody'" in unknown.stderr
    assert _velox(env, "alerts", "unsubscribe", "1").returncode == 0
    gone = _velox(env, "alerts", "unsubscribe", "1")
    assert gone.returncode != 0 and "no subscription 1" in gone.stderr
    assert "(no subscriptions)" in _velox(env, "alerts", "subscriptions").stdout
