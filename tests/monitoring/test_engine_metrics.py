"""The engine's ``/metrics``, ``/health`` and ``/ready``, scraped over real HTTP while a
recorded paper-style engine (tick loop, simulated exchange, real store) runs real bars.

The values must equal what the run did: the ticks fed, the orders in the store's ``orders``
table by status, the alerts stored; ``/ready`` turns 503 when the feed reports a disconnect
and when the store's server is stopped.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from velox.brokers.base import ConnectionEvent, ConnectionState

ROOT = Path(__file__).resolve().parents[2]
IID = "NSE:RELIANCE"


class GatedFeed:
    """A tick feed that, after its ticks, stays connected until told to disconnect, then
    reports the disconnect and waits to be stopped: the engine keeps running meanwhile."""

    name = "gated"

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.fed = 0
        self.done = threading.Event()
        self.disconnect = threading.Event()
        self._stopped = threading.Event()

    def subscribe(self, instrument_ids: object, mode: object = None) -> None:
        pass

    def unsubscribe(self, instrument_ids: object) -> None:
        pass

    def run(self, callback: Callable[[object], object]) -> None:
        def count(tick: object) -> None:
            self.fed += 1
            callback(tick)

        self.inner.run(count)  # type: ignore[attr-defined]
        self.done.set()
        while not self._stopped.wait(0.05):
            if self.disconnect.is_set():
                callback(ConnectionEvent("gated", ConnectionState.DISCONNECTED,
                                         datetime.now(UTC), "test cut the line"))  # fmt: skip
                self.disconnect.clear()

    def stop(self) -> None:
        self._stopped.set()
        self.inner.stop()  # type: ignore[attr-defined]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = _get(url + "/metrics")
    assert code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def running(store) -> Iterator[dict]:  # noqa: ANN001
    """A recorded paper engine on 1,500 real RELIANCE 5m bars (SMA cross), serving metrics."""
    from velox.brokers.sim import SimBroker
    from velox.data import read_bar_file, validate_bars
    from velox.engine import Engine
    from velox.feeds import BarReplay
    from velox.modes import default_instruments
    from velox.monitoring import EngineMetrics, start_metrics_server
    from velox.risk import RiskEngine, RiskLimits
    from velox.store.recorder import RunRecorder
    from velox.strategy import load_strategy

    bars, _ = validate_bars(read_bar_file(ROOT / "data/bars/RELIANCE_5m_2025.csv"),
                            timeframe="5m", source="RELIANCE_5m_2025.csv")  # fmt: skip
    ticks = BarReplay({(IID, "5m"): bars.iloc[:1500]}).ticks()
    n_ticks = len(ticks)
    cls = load_strategy(str(ROOT / "strategies" / "sma_cross.py"))
    strategy = cls(fast=5, slow=20, timeframe="5m")
    store.create_run(mode="paper", account="paper", initial_cash=1_000_000, run_id="M1",
                     strategies=[{"name": strategy.name}])  # fmt: skip
    recorder = RunRecorder(store, "M1", flush_interval=0.1)
    master = default_instruments()
    feed = GatedFeed(ticks)
    metrics = EngineMetrics()
    engine = Engine([strategy], broker=SimBroker(master, initial_cash=1_000_000), feed=feed,
                    instruments=master, mode="paper", run_id="M1", journal=recorder,
                    risk=RiskEngine(RiskLimits(max_open_orders=4), account="paper"),
                    metrics=metrics)  # fmt: skip
    server = start_metrics_server(metrics, engine, store=store, port=0)
    engine.start()
    try:
        assert feed.done.wait(120), "the feed did not finish"
        yield {"engine": engine, "feed": feed, "url": server.url, "n_ticks": n_ticks,
               "store": store}  # fmt: skip
    finally:
        engine.stop()
        engine.join(30)
        recorder.close()
        server.close()


def test_metrics_equal_what_the_run_did(running: dict) -> None:
    engine, url, store = running["engine"], running["url"], running["store"]
    n_ticks = running["n_ticks"]
    assert running["feed"].fed == n_ticks
    _until(lambda: _scrape(url)[("velox_ticks_total", (("run", "M1"),))] == n_ticks,
           "the engine to handle every tick")  # fmt: skip
    _until(lambda: _scrape(url)[("velox_event_queue_depth", (("run", "M1"),))] == 0,
           "an empty queue")  # fmt: skip

    # orders by status: as the store's orders table has them once the recorder has flushed
    def stored() -> Counter:
        return Counter(store.run_orders("M1")["status"])

    expected = Counter(o.status.value for o in engine.oms.orders.values())
    _until(lambda: stored() == expected, "the recorder to write every order state")
    assert sum(expected.values()) >= 10, "the strategy must trade for the check to mean much"
    metrics = _scrape(url)
    scraped = {dict(labels)["status"]: value for (name, labels), value in metrics.items()
               if name == "velox_orders"}  # fmt: skip
    assert {k: v for k, v in scraped.items() if v} == dict(stored())
    assert scraped["REJECTED"] == stored().get("REJECTED", 0)
    # every order that reached the broker was timed from the tick that caused it
    sent = sum(1 for o in engine.oms.orders.values() if o.broker_order_id)
    assert metrics[("velox_tick_to_order_seconds_count", ())] == sent
    assert 0 < metrics[("velox_tick_to_order_seconds_sum", ())] < sent * 0.5
    # P&L and equity as the engine's account books them
    acct = engine.oms.account
    net = acct.realised + engine._unrealised - acct.charges
    assert metrics[("velox_pnl_rupees", (("part", "net"), ("run", "M1")))] == pytest.approx(net)
    assert metrics[("velox_pnl_rupees", (("part", "charges"), ("run", "M1")))] == pytest.approx(
        float(store.run_fills("M1")["charges"].sum()), abs=0.01
    )
    assert metrics[("velox_equity_rupees", (("run", "M1"),))] == pytest.approx(1_000_000 + net)
    usage = metrics[("velox_risk_limit_usage_ratio", (("limit", "max_open_orders"),
                                                       ("run", "M1")))]  # fmt: skip
    assert usage == len(engine.oms.open) / 4
    assert metrics[("velox_feed_connected", (("run", "M1"),))] == 1.0
    assert metrics[("velox_broker_session_valid", (("broker", "sim"), ("run", "M1")))] == 1.0
    # stored alerts, as the store counts them
    alerts = store.alerts()
    pending = Counter(alerts.loc[alerts["delivered_at"].isna(), "kind"])
    for kind, count in pending.items():
        assert metrics[("velox_alerts", (("kind", kind), ("state", "pending")))] == count
    assert metrics[("velox_store_up", ())] == 1.0
    assert _get(url + "/health") == (200, json.dumps({"status": "ok"}))
    code, body = _get(url + "/ready")
    assert (code, json.loads(body)) == (200, {"status": "ready", "problems": {}})


def test_ready_turns_503_when_the_feed_disconnects(running: dict) -> None:
    url, feed = running["url"], running["feed"]
    assert _get(url + "/ready")[0] == 200
    feed.disconnect.set()
    _until(lambda: _get(url + "/ready")[0] == 503, "/ready to report the disconnect")
    code, body = _get(url + "/ready")
    problems = json.loads(body)["problems"]
    assert list(problems) == ["feed"] and "gated" in problems["feed"]
    metrics = _scrape(url)
    assert metrics[("velox_feed_connected", (("run", "M1"),))] == 0.0
    assert _get(url + "/health")[0] == 200  # alive all the same
    # the disconnect was stored as an alert, and the scrape counts it
    _until(lambda: ("velox_alerts", (("kind", "broker_disconnect"), ("state", "pending")))
           in _scrape(url), "the disconnect alert to be stored")  # fmt: skip


def test_ready_turns_503_when_the_store_stops() -> None:
    """A store on its own embedded server: stopping the server makes /ready 503 naming it."""
    from velox.brokers.sim import SimBroker
    from velox.engine import Engine
    from velox.feeds import BarReplay
    from velox.modes import default_instruments
    from velox.monitoring import EngineMetrics, start_metrics_server
    from velox.store import Store, embedded_url, stop_embedded

    root = Path(tempfile.mkdtemp(prefix="vx-mon-")) / "pg"
    store = Store(embedded_url(root), backend="embedded")  # no store_dir: never restarted
    try:
        import pandas as pd

        idx = pd.DatetimeIndex(["2025-05-20 09:15", "2025-05-20 09:20"]).tz_localize("Asia/Kolkata")
        bars = pd.DataFrame({"open": [1450.0, 1451.0], "high": [1452.0, 1453.0],
                             "low": [1449.0, 1450.5], "close": [1451.0, 1452.5]},
                            index=idx)  # fmt: skip
        master = default_instruments()
        feed = GatedFeed(BarReplay({(IID, "5m"): bars}).ticks())
        metrics = EngineMetrics()
        engine = Engine(
            [],
            broker=SimBroker(master, initial_cash=1.0),
            feed=feed,
            instruments=master,
            mode="paper",
            run_id="M2",
            metrics=metrics,
        )
        server = start_metrics_server(metrics, engine, store=store, port=0)
        engine.start()
        try:
            assert feed.done.wait(60)
            assert _get(server.url + "/ready")[0] == 200
            stop_embedded(root)
            code, body = _get(server.url + "/ready")
            assert code == 503
            problems = json.loads(body)["problems"]
            assert list(problems) == ["store"] and "store not reachable" in problems["store"]
            store.close()
            assert _scrape(server.url)[("velox_store_up", ())] == 0.0
        finally:
            engine.stop()
            engine.join(30)
            server.close()
    finally:
        stop_embedded(root)
