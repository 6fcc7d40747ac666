"""``velox serve``'s ``/metrics`` and ``/ready``: a real server process on a real store,
scraped over HTTP; the figures must equal what the store holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = _get(url + "/metrics")
    assert code == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _serve(url: str, folder: Path) -> Iterator[str]:
    """Run ``velox serve --no-report`` on a free port against the store at ``url``."""
    from velox.secrets import generate_key

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VELOX_DATABASE_URL": url, "VELOX_SECRET_KEY": generate_key(),
           "VELOX_DATA_DIR": str(folder)}  # fmt: skip
    log = folder / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "velox.cli", "serve", "--port", str(port), "--no-report"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if _get(base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"velox serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def web(store, tmp_path: Path) -> Iterator[str]:  # noqa: ANN001
    yield from _serve(store.url, tmp_path)


def test_web_metrics_are_the_stores_figures(store, web: str) -> None:  # noqa: ANN001
    from velox.types import Order, OrderStatus, Side

    for i in range(3):
        store.raise_alert(
            kind="risk_breach", severity="warning", message=f"breach {i}", dedup_key="R:breach"
        )  # fmt: skip  (one row, three occurrences)
    store.raise_alert(kind="user_alert", severity="info", message="RSI below 30")
    store.raise_alert(kind="pipeline_failed", severity="critical", message="scan failed")
    with store._atomic() as conn:
        conn.execute("UPDATE alerts SET delivered_at = now() WHERE kind = 'pipeline_failed'")
    store.create_run(mode="paper", account="paper", initial_cash=1e6, run_id="W1")
    store.create_run(mode="replay", initial_cash=1e6, run_id="W2")
    store.finish_run("W2", status="finished", summary={})
    from velox.store.recorder import RunRecorder

    recorder = RunRecorder(store, "W1", flush_interval=0.05)
    from datetime import datetime

    from velox.calendar import IST

    now = datetime(2025, 5, 20, 10, 0, tzinfo=IST)
    for n, status in enumerate([OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.REJECTED]):
        recorder.order(Order(client_id=f"W1-{n}", instrument_id="NSE:SBIN", side=Side.BUY, qty=1,
                             strategy="s", status=status, created_at=now), None)  # fmt: skip
    recorder.close()
    (alert_id,) = store.alerts(kind="user_alert")["id"].tolist()
    with store._atomic() as conn:  # as the delivery worker (velox alerts deliver) records them
        for channel, target, status in (("telegram", "1", "sent"), ("email", "a@x.in", "failed"),
                                        ("email", "b@x.in", "failed"),
                                        ("telegram", "2", "pending")):  # fmt: skip
            conn.execute(
                "INSERT INTO alert_deliveries (alert_id, channel, target, status, "
                "next_attempt_at) VALUES (%s, %s, %s, %s, now())",
                (alert_id, channel, target, status),
            )
    metrics = _scrape(web)
    deliveries = {dict(labels)["channel"] + "/" + dict(labels)["status"]: value
                  for (name, labels), value in metrics.items()
                  if name == "velox_alert_deliveries_total"}  # fmt: skip
    assert deliveries == {"telegram/sent": 1, "email/failed": 2}  # finished: they only grow
    waiting = {dict(labels)["channel"] + "/" + dict(labels)["status"]: value
               for (name, labels), value in metrics.items()
               if name == "velox_alert_deliveries_pending"}  # fmt: skip
    assert waiting == {"telegram/pending": 1}  # not finished: a gauge, it falls when sent
    families = {f.name: f.type for f in text_string_to_metric_families(_get(web + "/metrics")[1])}
    assert families["velox_alert_deliveries"] == "counter"
    assert families["velox_alert_deliveries_pending"] == "gauge"
    assert metrics[("velox_store_up", ())] == 1.0
    assert metrics[("velox_alerts", (("kind", "risk_breach"), ("state", "pending")))] == 1
    assert metrics[("velox_alert_occurrences_total", (("kind", "risk_breach"),))] == 3
    assert metrics[("velox_alerts", (("kind", "user_alert"), ("state", "pending")))] == 1
    assert metrics[("velox_alerts", (("kind", "pipeline_failed"), ("state", "delivered")))] == 1
    assert ("velox_alerts", (("kind", "pipeline_failed"), ("state", "pending"))) not in metrics
    assert metrics[("velox_runs", (("mode", "paper"), ("status", "running")))] == 1
    assert metrics[("velox_runs", (("mode", "replay"), ("status", "finished")))] == 1
    assert metrics[("velox_orders", (("run", "W1"), ("status", "FILLED")))] == 2
    assert metrics[("velox_orders", (("run", "W1"), ("status", "REJECTED")))] == 1
    code, body = _get(web + "/ready")
    assert (code, json.loads(body)) == (200, {"status": "ready", "problems": {}})


def test_web_ready_turns_503_when_the_store_stops() -> None:
    from velox.store import Store, embedded_url, stop_embedded

    root = Path(tempfile.mkdtemp(prefix="vx-webmon-"))
    url = embedded_url(root / "pg")
    Store(url, backend="embedded").close()  # migrated, as `velox serve` expects
    server = _serve(url, root)
    try:
        base = next(server)
        assert _get(base + "/ready")[0] == 200
        stop_embedded(root / "pg")
        code, body = _get(base + "/ready")
        assert code == 503
        problems = json.loads(body)["problems"]
        assert list(problems) == ["store"] and "store not reachable" in problems["store"]
        assert _get(base + "/health")[0] == 200  # alive: liveness is not readiness
        assert _scrape(base)[("velox_store_up", ())] == 0.0
    finally:
        server.close()
        stop_embedded(root / "pg")
