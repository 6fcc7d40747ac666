"""A replay that breaches the daily loss limit, with the delivery worker running beside it,
produces exactly one kill-switch message on each channel (Telegram, email, webhook)."""

from __future__ import annotations

from tests.alerts.conftest import TOKEN, BotServer, SmtpServer, email_channel
from tests.engine.conftest import read_bars
from tests.engine.test_risk_integration import LIMIT, BuyTheOpen
from velox.alerts.channels import TelegramChannel, WebhookChannel
from velox.alerts.worker import BackgroundWorker, Deliverer, deliveries


def test_daily_loss_breach_is_one_kill_switch_message_per_channel(
    store,
    bot: BotServer,
    smtp: SmtpServer,  # noqa: ANN001
) -> None:
    from velox.brokers.sim import SimBroker
    from velox.engine import Engine
    from velox.feeds import BarReplay
    from velox.modes import default_instruments
    from velox.risk import RiskEngine, RiskLimits
    from velox.store import RunRecorder

    master = default_instruments()
    bars = read_bars("RELIANCE_5m_2025.csv", "5m").loc["2025-05-21":"2025-05-23"]
    run_id = store.create_run(mode="paper", account="T1", initial_cash=1e6, run_id="K1")
    recorder = RunRecorder(store, run_id)
    deliverer = Deliverer(
        store,
        channels={"telegram": TelegramChannel(TOKEN, bot.url), "email": email_channel(smtp),
                  "webhook": WebhookChannel()},
        targets={"telegram": "4242", "email": "risk@desk.example", "webhook": f"{bot.url}/hook"},
    )  # fmt: skip
    with BackgroundWorker(deliverer, poll=0.5):  # delivering while the engine runs
        engine = Engine(
            [BuyTheOpen()], broker=SimBroker(master, initial_cash=1_000_000),
            feed=BarReplay({("NSE:RELIANCE", "5m"): bars}), instruments=master, run_id=run_id,
            journal=recorder, risk=RiskEngine(RiskLimits(daily_loss_limit=LIMIT), account="T1"),
        )  # fmt: skip
        result = engine.run()
        recorder.close()
    deliverer.run_once()  # whatever the background pass had not reached yet

    assert [e["limit"] for e in result.risk_events if e["kind"] == "kill"] == ["daily_loss_limit"]
    (kill,) = store.alerts(kind="kill_switch").itertuples()
    assert kill.severity == "critical" and kill.message.startswith("kill switch engaged")

    def kill_messages(texts: list[str]) -> int:
        return sum(t.startswith("[Velox CRITICAL] kill_switch: kill switch engaged") for t in texts)

    telegram = [r for r in bot.requests if r.path.startswith(f"/bot{TOKEN}/")]
    captions = []
    for request in telegram:
        if request.path.endswith("/sendPhoto"):  # the kill switch comes with its equity chart
            body = request.body.decode(errors="replace")
            captions.append(body.split('name="caption"\r\n\r\n', 1)[1])
        else:
            captions.append(request.json()["text"])
    assert kill_messages(captions) == 1
    assert sum(r.path.endswith("/sendPhoto") for r in telegram) == 1
    assert kill_messages([m.message["Subject"] for m in smtp.received]) == 1
    hooks = [r.json() for r in bot.requests if r.path == "/hook"]
    assert kill_messages([h["subject"] for h in hooks]) == 1
    rows = deliveries(store, alert_id=kill.id)
    assert sorted(rows["channel"]) == ["email", "telegram", "webhook"]
    assert set(rows["status"]) == {"sent"}
