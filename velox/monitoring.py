"""Monitoring: Prometheus metrics, ``/health`` and ``/ready``, and structured JSON logs.

Two processes expose metrics: an engine (``velox paper`` / ``velox live``, and any engine given
an :class:`EngineMetrics`), which serves ``/metrics``, ``/health`` and ``/ready`` on
``VELOX_METRICS_PORT`` (:func:`start_metrics_server`), and the web server ``velox serve``
(``velox.web.metrics``). See ``docs/monitoring.md`` for every metric.

Why most metrics are read at scrape time: the engine's tick → order path must not pay for
monitoring. The engine already keeps what the metrics show (its tick count, queue, orders, P&L,
risk state, connection state); :class:`EngineCollector` reads it when Prometheus scrapes, on the
HTTP thread. The only metric written on the hot path is the tick → order latency histogram,
observed once per order sent (a pre-bound child without labels), never per tick.

Logs: ``VELOX_LOG_FORMAT=json`` makes :func:`configure_logging` write one JSON object per line
with ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and the run context ``mode``
(``live``, ``dry-run`` or ``replay``), ``account`` and ``run`` on every line; the engine sets the
context when it starts (:func:`set_log_context`). Plain text stays the default.

``prometheus_client`` is imported only by the functions that need it, so ``import velox`` stays
fast.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from velox.engine import Engine
    from velox.store import Store

__all__ = [
    "LATENCY_BUCKETS",
    "EngineCollector",
    "EngineMetrics",
    "JsonFormatter",
    "LogContextFilter",
    "MetricsServer",
    "StoreCollector",
    "configure_logging",
    "engine_readiness",
    "log_mode",
    "set_log_context",
    "start_metrics_server",
    "store_readiness",
]

log = logging.getLogger(__name__)

#: Tick → order latency buckets (seconds): a strategy's reaction is tens of µs to ms.
LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: Every order status, so ``velox_orders{status=…}`` has a series per status from the start.
_STATUSES = ("NEW", "RISK_CHECKED", "SUBMITTED", "OPEN", "TRIGGER_PENDING", "PARTIAL", "FILLED",
             "CANCELLED", "REJECTED")  # fmt: skip


#: Delivery states a delivery never leaves (``velox.alerts.worker``).
_FINISHED_DELIVERIES = ("sent", "suppressed", "failed")


# -- the run context of log lines ------------------------------------------------------------

_CONTEXT_KEYS = ("mode", "account", "run")
#: The engine thread's context; other threads (feed, recorder, HTTP) fall back to the process's.
_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "velox_log_context", default=None
)
_process_context: dict[str, str] = {}


def log_mode(engine_mode: str, venue: str | None = None) -> str:
    """Return the mode a log line shows: ``replay``, ``dry-run`` (orders to the simulated
    exchange: paper, or a live deployment switched to its dry run) or ``live``."""
    if engine_mode == "replay":
        return "replay"
    if venue is not None:
        return "live" if venue == "live" else "dry-run"
    return "live" if engine_mode == "live" else "dry-run"


def set_log_context(*, mode: str, account: str, run: str) -> None:
    """Set the ``mode``, ``account`` and ``run`` of every later log line of this process.

    The calling thread (the engine's) gets it through a context variable, every other thread
    through the process-wide fallback (one engine per process is the deployment model).
    """
    context = {"mode": mode, "account": account, "run": run}
    _context.set(context)
    _process_context.clear()
    _process_context.update(context)


class LogContextFilter(logging.Filter):
    """Put the run context on every record (``record.mode``, ``.account``, ``.run``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or _process_context
        for key in _CONTEXT_KEYS:
            if not hasattr(record, key):
                setattr(record, key, context.get(key))
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line (exceptions included, as text)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "ts": ts.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            line[key] = getattr(record, key, None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str, stream: object) -> None:
    """Set up the root logger: plain text (default) or JSON lines, with the run context.

    Called once by the ``velox`` command. Like :func:`logging.basicConfig` it leaves a root
    logger that has handlers already alone (a notebook's, pytest's).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream)  # type: ignore[arg-type]
    handler.addFilter(LogContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))


# -- engine metrics ------------------------------------------------------------------------


class EngineMetrics:
    """The metrics of one engine: its registry, the latency histogram and the scrape collector.

    Build it, hand it to ``Engine(metrics=...)``, then :meth:`bind` the engine (and the store,
    for the alert metrics); serve :attr:`registry` with :func:`start_metrics_server`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self.tick_to_order = Histogram(
            "velox_tick_to_order_seconds",
            "Wall time from a tick's arrival in the engine to an order it caused reaching the "
            "broker (risk checks included)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.collector = EngineCollector()
        self.registry.register(self.collector)

    def bind(self, engine: Engine, store: Store | None = None) -> None:
        """Read ``engine`` (and ``store``'s alerts) at every scrape."""
        self.collector.engine = engine
        self.collector.store = store


def _families() -> tuple[type, type]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    return CounterMetricFamily, GaugeMetricFamily


def _copy(read: Callable[[], list[object]]) -> list[object]:
    """Return ``read()``, retried if the engine thread resized the container meanwhile."""
    for _ in range(5):
        try:
            return read()
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return read()


class EngineCollector:
    """Prometheus collector reading an engine's own state when scraped (see module docstring)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.store: Store | None = None

    def describe(self) -> list[Metric]:
        return []  # collected lazily: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        if engine is not None:
            yield from _engine_metrics(engine)
        if self.store is not None:
            yield from _alert_metrics(self.store)


def _engine_metrics(engine: Engine) -> Iterator[Metric]:
    counter, gauge = _families()
    run = [engine.run_id]
    ticks = counter("velox_ticks", "Ticks the engine handled (rate() gives ticks/s)",
                    labels=["run"])  # fmt: skip
    ticks.add_metric(run, engine.ticks_seen)
    yield ticks
    depth = gauge("velox_event_queue_depth",
                  "Events waiting for the engine thread (market events and postbacks)",
                  labels=["run"])  # fmt: skip
    depth.add_metric(run, engine._queue.qsize() + len(engine._postbacks))
    yield depth
    orders = _copy(lambda: list(engine.oms.orders.values()))
    counts = dict.fromkeys(_STATUSES, 0)
    for order in orders:
        status = order.status.value  # type: ignore[attr-defined]
        counts[status] = counts.get(status, 0) + 1
    by_status = gauge("velox_orders", "The run's orders by current status",
                      labels=["run", "status"])  # fmt: skip
    for status, count in counts.items():
        by_status.add_metric([engine.run_id, status], count)
    yield by_status
    acct = engine.oms.account
    pnl = gauge("velox_pnl_rupees", "Account P&L since the run started (rupees)",
                labels=["run", "part"])  # fmt: skip
    realised, charges, unrealised = acct.realised, acct.charges, engine._unrealised
    net = realised + unrealised - charges
    parts = (("realised", realised), ("unrealised", unrealised), ("charges", charges), ("net", net))
    for part, value in parts:
        pnl.add_metric([engine.run_id, part], value)
    yield pnl
    equity = gauge("velox_equity_rupees", "Account equity: cash + P&L (rupees)", labels=["run"])
    equity.add_metric(run, engine.initial_cash + realised + unrealised - charges)
    yield equity
    usage = gauge("velox_risk_limit_usage_ratio",
                  "How much of each set risk limit is used (1 = at the limit)",
                  labels=["run", "limit"])  # fmt: skip
    for limit, value in _risk_usage(engine).items():
        usage.add_metric([engine.run_id, limit], value)
    yield usage
    killed = gauge("velox_kill_switch_engaged", "1 while the kill switch is engaged",
                   labels=["run"])  # fmt: skip
    killed.add_metric(run, 1.0 if engine.risk.killed else 0.0)
    yield killed
    state = engine_readiness(engine, None)
    connected = gauge("velox_feed_connected",
                      "1 while every market-data websocket of the run is connected",
                      labels=["run"])  # fmt: skip
    connected.add_metric(run, 0.0 if "feed" in state else 1.0)
    yield connected
    session = gauge("velox_broker_session_valid", "1 while the broker session is valid",
                    labels=["run", "broker"])  # fmt: skip
    session.add_metric([engine.run_id, str(engine.broker.name)],
                       0.0 if "broker" in state else 1.0)  # fmt: skip
    yield session


def _risk_usage(engine: Engine) -> dict[str, float]:
    """Return used/limit for the account-level risk limits that are set."""
    limits, state = engine.risk.limits, engine.risk.state
    out: dict[str, float] = {}
    if limits.daily_loss_limit:
        out["daily_loss_limit"] = max(0.0, -state.last_equity) / limits.daily_loss_limit
    if limits.max_drawdown:
        out["max_drawdown"] = max(0.0, state.peak_equity - state.last_equity) / limits.max_drawdown
    if limits.max_open_orders:
        out["max_open_orders"] = len(engine.oms.open) / limits.max_open_orders
    net = _copy(lambda: list(engine.oms.account.net.items()))
    if limits.max_position_qty:
        biggest = max((abs(q) for _, q in net), default=0)  # type: ignore[misc]
        out["max_position_qty"] = biggest / limits.max_position_qty
    if limits.max_gross_exposure:
        last = engine._last
        gross = sum(abs(q) * last.get(i, 0.0) for i, q in net)  # type: ignore[misc]
        out["max_gross_exposure"] = gross / limits.max_gross_exposure
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _alert_metrics(store: Store) -> Iterator[Metric]:
    """Yield the stored alerts by kind and state, and deliveries if that table exists."""
    counter, gauge = _families()
    up = gauge("velox_store_up", "1 if the store answered this scrape")
    try:
        with store._shared() as conn:
            alerts = conn.execute(
                "SELECT kind, delivered_at IS NOT NULL, count(*), coalesce(sum(occurrences), 0) "
                "FROM alerts GROUP BY 1, 2"
            ).fetchall()
            deliveries = None
            if conn.execute("SELECT to_regclass('alert_deliveries')").fetchone()[0] is not None:
                columns = {row[0] for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'alert_deliveries'").fetchall()}  # fmt: skip
                channel = "channel" if "channel" in columns else "''"
                status = "status" if "status" in columns else "''"
                deliveries = conn.execute(
                    f"SELECT {channel}::text, {status}::text, count(*) FROM alert_deliveries "
                    "GROUP BY 1, 2"
                ).fetchall()
    except Exception as exc:  # noqa: BLE001 - a scrape reports the store down, never fails
        log.warning("metrics: the store did not answer: %s", exc)
        up.add_metric([], 0.0)
        yield up
        return
    up.add_metric([], 1.0)
    yield up
    stored = gauge("velox_alerts", "Stored alerts by kind and delivery state",
                   labels=["kind", "state"])  # fmt: skip
    seen = counter("velox_alert_occurrences", "Occurrences folded into stored alerts",
                   labels=["kind"])  # fmt: skip
    occurrences: dict[str, int] = {}
    for kind, delivered, count, times in alerts:
        stored.add_metric([kind, "delivered" if delivered else "pending"], count)
        occurrences[kind] = occurrences.get(kind, 0) + int(times)
    for kind, times in sorted(occurrences.items()):
        seen.add_metric([kind], times)
    yield stored
    yield seen
    if deliveries is not None:
        # a delivery ends sent, suppressed or failed and never leaves that state: those counts
        # only grow (a counter); the unfinished ones come and go (a gauge)
        done = counter("velox_alert_deliveries",
                       "Finished alert deliveries (one per alert and destination) by channel and "
                       "outcome: sent, suppressed or failed",
                       labels=["channel", "status"])  # fmt: skip
        waiting = gauge("velox_alert_deliveries_pending",
                        "Alert deliveries not finished yet by channel: pending (due now or at a "
                        "retry) or sending (claimed by a worker)",
                        labels=["channel", "status"])  # fmt: skip
        for channel, status, count in deliveries:
            finished = status in _FINISHED_DELIVERIES
            (done if finished else waiting).add_metric([channel, status], count)
        yield done
        yield waiting


class StoreCollector:
    """Prometheus collector of the web server: stored alerts, deliveries, runs and orders."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        alerts = list(_alert_metrics(self.store))
        yield from alerts
        if alerts and alerts[0].samples[0].value == 0.0:
            return  # the store is down: nothing more to read
        _, gauge = _families()
        with self.store._shared() as conn:
            runs = conn.execute("SELECT mode, status, count(*) FROM runs GROUP BY 1, 2").fetchall()
            orders = conn.execute(
                "SELECT o.run_id, o.status, count(*) FROM run_orders AS o "
                "JOIN runs AS r USING (run_id) WHERE r.status = 'running' GROUP BY 1, 2"
            ).fetchall()
        by_state = gauge("velox_runs", "Recorded runs by mode and status",
                         labels=["mode", "status"])  # fmt: skip
        for mode, status, count in runs:
            by_state.add_metric([mode, status], count)
        yield by_state
        by_status = gauge("velox_orders", "Orders of running runs by current status",
                          labels=["run", "status"])  # fmt: skip
        for run_id, status, count in orders:
            by_status.add_metric([run_id, status], count)
        yield by_status


# -- readiness -----------------------------------------------------------------------------


def store_readiness(store: Store | None, timeout: float = 2.0) -> str | None:
    """Return why the store is not reachable, or None when a fresh connection answers.

    A new short-lived connection, not the store's shared one: it proves the server accepts
    connections now, and never waits behind the engine's writes.
    """
    if store is None:
        return None
    import psycopg

    try:
        with psycopg.connect(store.url, connect_timeout=max(1, int(timeout)),
                             autocommit=True) as conn:  # fmt: skip
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        from velox.config import redact

        return "store not reachable: " + redact(" ".join(str(exc).split())[:200], store.url)
    return None


def engine_readiness(engine: Engine, store: Store | None) -> dict[str, str]:
    """Return what is not ready (``store``, ``feed``, ``broker``: why), empty when ready."""
    problems: dict[str, str] = {}
    why = store_readiness(store)
    if why is not None:
        problems["store"] = why
    down = sorted(_copy(lambda: list(engine._disconnected)))  # type: ignore[type-var]
    if down:
        problems["feed"] = f"disconnected: {', '.join(map(str, down))}"
    halted = engine._halted
    if halted is not None and halted.startswith("broker session expired"):
        problems["broker"] = halted
    return problems


# -- the engine's HTTP endpoint -------------------------------------------------------------


class MetricsServer:
    """``/metrics``, ``/health`` and ``/ready`` on a background HTTP thread.

    ``ready`` returns what is not ready (an empty mapping: ready). ``/health`` answers 200
    while the process serves; ``/ready`` answers 200, or 503 with a JSON body naming what is not
    ready.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], Mapping[str, str]],
        *,
        port: int,
        address: str = "127.0.0.1",
    ) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    self._json(200, {"status": "ok"})
                elif path == "/ready":
                    problems = dict(ready())
                    body = {"status": "not ready" if problems else "ready", "problems": problems}
                    self._json(503 if problems else 200, body)
                else:
                    self._json(404, {"error": f"no {path}; try /metrics, /health or /ready"})

            def _json(self, code: int, body: object) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("metrics http: " + format, *args)

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{address}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="velox-metrics", daemon=True)  # fmt: skip
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_metrics_server(
    metrics: EngineMetrics,
    engine: Engine,
    *,
    store: Store | None = None,
    port: int = 0,
    address: str = "127.0.0.1",
) -> MetricsServer:
    """Bind ``metrics`` to ``engine`` and serve them (port 0: a free port, see ``.port``)."""
    metrics.bind(engine, store)
    server = MetricsServer(
        metrics.registry, lambda: engine_readiness(engine, store), port=port, address=address
    )
    log.info("metrics, /health and /ready on %s", server.url)
    return server
