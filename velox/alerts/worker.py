"""The delivery worker: stored alerts -> delivery rows -> channels, with retries and a log.

Three steps, each its own short transaction, so any number of workers can run at once:

1. **enqueue** — every undelivered alert not routed yet (``alert_routing``) gets one row per
   destination that wants it (the configured default of each channel, above its severity
   threshold, and every matching subscription). A destination that got the same
   ``dedup_key`` less than the window ago gets a ``suppressed`` row instead; info/warning
   alerts in quiet hours get a row due when the quiet hours end.
2. **claim** — due rows are locked ``FOR UPDATE SKIP LOCKED`` and leased to this worker
   (``sending`` until ``lease_until``), an attempt row opened for each. Storm control is
   decided here: a destination past its messages-per-minute gets the rest as one summary.
3. **send and record** — each message goes out; its rows become ``sent`` (never claimed
   again), ``pending`` with a backoff (or the channel's ``retry_after``), or ``failed`` after
   the last attempt. An alert all of whose rows are sent or suppressed gets ``delivered_at``.
   Before each message, a worker whose claim is past half its lease renews the lease of that
   message's rows, and skips those another worker has taken over meanwhile.

A worker that dies after claiming leaves a lease that expires: the row is claimed and sent
again, once. A worker that is only slow (a far side taking its time over a large claim) sends
no row another worker took over after its lease ran out. A ``sent`` row is never sent again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from velox.alerts.channels import Channel, DeliveryError, Message, shown_target
from velox.alerts.policy import Policy, backoff, severity_rank

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from velox.config import Settings
    from velox.store import Store

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key that serialises claims, so storm control counts every worker's
#: in-flight messages (the claim itself is a few milliseconds).
CLAIM_LOCK = 0x76656C6F78_17
#: Alerts listed in one storm-control summary before "… and N more".
SUMMARY_LINES = 20
#: Kinds whose message carries the run's equity chart when the run has one.
CHART_KINDS = ("kill_switch", "user_alert")
DELIVERY_COLUMNS = (
    "id", "alert_id", "channel", "target", "username", "status", "attempts", "last_error",
    "next_attempt_at", "sent_at", "message_id",
)  # fmt: skip

_ALERT_FIELDS = ("id", "ts", "severity", "kind", "dedup_key", "run_id", "account", "message",
                 "payload", "occurrences", "last_seen_at")  # fmt: skip


@dataclass
class Report:
    """What one pass of the worker did; ``failed`` lists the deliveries given up on."""

    sent: int = 0
    suppressed: int = 0
    retried: int = 0
    failed: list[str] = field(default_factory=list)
    pending: int = 0

    def add(self, other: Report) -> None:
        self.sent += other.sent
        self.suppressed += other.suppressed
        self.retried += other.retried
        self.failed += other.failed
        self.pending = other.pending


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    alert_id: int
    channel: str
    target: str
    attempts: int
    attempt_id: int
    message_id: int
    lease_until: datetime


def _ist(ts: datetime) -> str:
    from velox.calendar import IST

    return ts.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S IST")


def alert_message(alert: Mapping[str, object], chart_png: bytes | None = None) -> Message:
    """Return the message of one stored alert (subject, body, the alert's fields as data).

    The subject is ``[Velox SEVERITY] kind: first line of the message``; the body repeats the
    message and lists when, the run, the account, repeats and the payload.
    """
    first = str(alert["message"]).splitlines()[0]
    subject = f"[Velox {str(alert['severity']).upper()}] {alert['kind']}: {first}"
    if len(subject) > 150:
        subject = subject[:149] + "…"
    lines = [str(alert["message"]), "", f"time: {_ist(alert['ts'])}"]  # type: ignore[arg-type]
    if alert.get("run_id"):
        lines.append(f"run: {alert['run_id']}")
    if alert.get("account"):
        lines.append(f"account: {alert['account']}")
    if int(alert.get("occurrences") or 1) > 1:
        lines.append(f"occurrences: {alert['occurrences']} (last {_ist(alert['last_seen_at'])})")  # type: ignore[arg-type]
    if alert.get("payload"):
        lines.append(f"details: {json.dumps(alert['payload'], sort_keys=True, default=str)}")
    lines.append(f"alert id: {alert['id']}")
    data = {k: alert.get(k) for k in _ALERT_FIELDS}
    data["ts"] = alert["ts"].isoformat()  # type: ignore[union-attr]
    data["last_seen_at"] = alert["last_seen_at"].isoformat()  # type: ignore[union-attr]
    return Message(subject, "\n".join(lines) + "\n", chart_png, data)


def summary_message(alerts: list[Mapping[str, object]]) -> Message:
    """Return the one message that stands for ``alerts`` when a destination is storming."""
    top = max((str(a["severity"]) for a in alerts), key=severity_rank)
    subject = f"[Velox {top.upper()}] {len(alerts)} alerts (storm control)"
    lines = [f"{len(alerts)} alerts arrived faster than the rate limit; in one message:", ""]
    for alert in alerts[:SUMMARY_LINES]:
        first = str(alert["message"]).splitlines()[0]
        lines.append(f"- {_ist(alert['ts'])} [{alert['severity']}] {alert['kind']}: {first}")  # type: ignore[arg-type]
    if len(alerts) > SUMMARY_LINES:
        lines.append(f"… and {len(alerts) - SUMMARY_LINES} more (store.alerts() has them all)")
    data = {"summary": True, "alert_ids": [a["id"] for a in alerts], "severity": top}
    return Message(subject, "\n".join(lines) + "\n", None, data)


def equity_chart(store: Store, run_id: str) -> bytes | None:
    """Return a PNG of the run's equity curve, or None (no run, too few points, no
    matplotlib); rendered headless with matplotlib's Agg canvas."""
    from velox.errors import VeloxError

    try:
        equity = store.run_equity(run_id)["equity"]
    except (VeloxError, KeyError, ValueError):  # an unknown run: the alert goes without chart
        return None
    if len(equity) < 2:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the alerts extra
        return None
    import io

    figure = Figure(figsize=(8, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(equity.index.tz_localize(None), equity.to_numpy(), linewidth=1.2)
    axes.set_title(f"{run_id} equity (₹, IST)")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


class Deliverer:
    """Deliver stored alerts through ``channels`` (by name) to ``targets`` (each channel's
    configured destination) and the users' subscriptions, by ``policy``.

    Build it with :meth:`from_settings` for the configured channels. ``clock`` returns the
    current aware time (tests move it; every time the worker writes comes from it);
    ``batch`` is how many deliveries one claim leases.

    Examples
    --------
    >>> Deliverer.from_settings(store).run_once()            # doctest: +SKIP
    Report(sent=3, suppressed=0, retried=0, failed=[], pending=0)
    """

    def __init__(
        self,
        store: Store,
        *,
        channels: Mapping[str, Channel],
        targets: Mapping[str, str] | None = None,
        policy: Policy | None = None,
        clock: Callable[[], datetime] | None = None,
        worker: str | None = None,
        charts: bool = True,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.targets = {c: t for c, t in (targets or {}).items() if c in self.channels}
        self.policy = policy or Policy()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.charts = charts
        #: Deliveries claimed at a time: what another worker cannot take meanwhile.
        self.batch = batch
        self._db: psycopg.Connection | None = None

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """Yield this worker's own connection inside a transaction (opened again if lost).

        One connection for the worker's life: opening one per step cost more than the
        delivery itself. A deliverer is used by one thread at a time.
        """
        if self._db is None or self._db.closed or self._db.broken:
            self._db = self.store.connect(autocommit=True)
        with self._db.transaction():
            yield self._db

    def close(self) -> None:
        """Close the worker's connection (the next pass opens another)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @classmethod
    def from_settings(cls, store: Store, settings: Settings | None = None) -> Deliverer:
        """Return a deliverer of the channels and policy the settings configure."""
        from velox.alerts.channels import configured_channels, default_targets
        from velox.config import get_settings

        settings = settings or get_settings()
        return cls(store, channels=configured_channels(settings), targets=default_targets(settings),
                   policy=Policy.from_settings(settings))  # fmt: skip

    # -- 1. enqueue ------------------------------------------------------------------------

    def _routes(self, conn: psycopg.Connection) -> list[tuple[str, str, str | None, str, object]]:
        """Return ``(channel, target, username, min_severity, kinds)`` of every destination."""
        routes = [(c, t, None, self.policy.threshold(c), None) for c, t in self.targets.items()]
        rows = conn.execute(
            "SELECT s.channel, s.target, s.username, s.min_severity, s.kinds,"
            " array(SELECT l.target FROM user_links l WHERE l.username = s.username"
            "       AND l.kind = 'account')"
            " FROM alert_subscriptions s JOIN users u USING (username)"
            " WHERE NOT u.disabled ORDER BY s.id"
        ).fetchall()
        for channel, target, username, severity, kinds, accounts in rows:
            if channel in self.channels:
                routes.append((channel, target, username, severity, (kinds, set(accounts))))
        return routes

    def enqueue(self, limit: int = 500, *, report: Report | None = None) -> int:
        """Route the undelivered alerts not routed yet: add their delivery rows, return how
        many. Each alert is routed once (``alert_routing``), even to no destination; while
        there is no destination at all (nothing configured, no subscriber) none is routed,
        so they wait for one.

        ``report`` counts the rows added as ``suppressed`` (duplicates within the window).
        """
        added = 0
        while True:
            rows, alerts = self._enqueue_page(limit, report)
            added += rows
            if alerts < limit:
                return added

    def _enqueue_page(self, limit: int, report: Report | None) -> tuple[int, int]:
        """Route up to ``limit`` alerts in one transaction; return (rows added, alerts)."""
        now = self.clock()
        added, touched = 0, []
        with self._transaction() as conn:
            alerts = conn.execute(
                "SELECT id, severity, kind, dedup_key, account FROM alerts a"
                " WHERE delivered_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM alert_routing r WHERE r.alert_id = a.id)"
                " ORDER BY id LIMIT %s",
                (limit,),
            ).fetchall()
            routes = self._routes(conn) if alerts else []
            if not routes:
                return 0, 0
            for alert_id, severity, kind, dedup_key, account in alerts:
                wanted = 0
                for channel, target, username, min_severity, scope in routes:
                    if severity_rank(severity) < severity_rank(min_severity):
                        continue
                    if scope is not None:
                        kinds, accounts = scope  # type: ignore[misc]
                        if kinds is not None and kind not in kinds:
                            continue
                        if accounts and account not in accounts:
                            continue
                    status, error, due = "pending", None, self.policy.held_until(severity, now)
                    last = self._last_sent(conn, dedup_key, channel, target, alert_id)
                    if last is not None and now - last < self.policy.dedup_window:
                        status = "suppressed"
                        minutes = self.policy.dedup_window.total_seconds() / 60
                        error = (f"duplicate: dedup_key {dedup_key!r} delivered here at "
                                 f"{_ist(last)} (within {minutes:g} min)")  # fmt: skip
                    cur = conn.execute(
                        "INSERT INTO alert_deliveries (alert_id, channel, target, username,"
                        " status, last_error, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (alert_id, channel, target) DO NOTHING",
                        (alert_id, channel, target, username, status, error, due or now),
                    )
                    added += cur.rowcount
                    wanted += 1
                    if report is not None and status == "suppressed":
                        report.suppressed += cur.rowcount
                conn.execute(
                    "INSERT INTO alert_routing (alert_id, routed_at, deliveries)"
                    " VALUES (%s, %s, %s) ON CONFLICT (alert_id) DO NOTHING",
                    (alert_id, now, wanted),
                )
                touched.append(alert_id)
            self._settle(conn, touched, now)
        return added, len(alerts)

    @staticmethod
    def _last_sent(
        conn: psycopg.Connection, dedup_key: str | None, channel: str, target: str, alert_id: int
    ) -> datetime | None:
        if dedup_key is None:
            return None
        row = conn.execute(
            "SELECT max(d.sent_at) FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id"
            " WHERE a.dedup_key = %s AND d.channel = %s AND d.target = %s"
            " AND d.status = 'sent' AND a.id <> %s",
            (dedup_key, channel, target, alert_id),
        ).fetchone()
        return row[0]

    @staticmethod
    def _settle(conn: psycopg.Connection, alert_ids: list[int], now: datetime) -> None:
        """Mark delivered the alerts all of whose rows are sent or suppressed."""
        if alert_ids:
            conn.execute(
                "UPDATE alerts a SET delivered_at = %s WHERE a.id = ANY(%s)"
                " AND a.delivered_at IS NULL"
                " AND EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = a.id)"
                " AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = a.id"
                "                 AND d.status NOT IN ('sent', 'suppressed'))",
                (now, alert_ids),
            )

    # -- 2. claim --------------------------------------------------------------------------

    def claim(self, limit: int = 200) -> list[_Claimed]:
        """Lease the due deliveries to this worker, storm control applied; return them."""
        now = self.clock()
        window = timedelta(minutes=1)
        claimed: list[_Claimed] = []
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
            rows = conn.execute(
                "SELECT id, alert_id, channel, target, attempts FROM alert_deliveries"
                " WHERE (status = 'pending' AND next_attempt_at <= %(now)s)"
                "    OR (status = 'sending' AND lease_until <= %(now)s)"
                " ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
                {"now": now, "limit": limit},
            ).fetchall()
            groups: dict[tuple[str, str], list[tuple]] = {}
            for row in rows:
                if row[2] in self.channels:  # a channel this worker has (others leave it)
                    groups.setdefault((row[2], row[3]), []).append(row)
            for (channel, target), group in groups.items():
                group.sort(key=lambda r: r[0])
                recent, oldest = conn.execute(
                    "SELECT count(DISTINCT message_id), min(sent_at) FROM alert_deliveries"
                    " WHERE channel = %s AND target = %s AND ((status = 'sent' AND sent_at > %s)"
                    " OR (status = 'sending' AND lease_until > %s))",
                    (channel, target, now - window, now),
                ).fetchone()
                free = self.policy.rate_limit - recent
                if free <= 0:  # wait for the minute to free a slot; no attempt is used
                    later = (oldest + window) if oldest is not None else now + window
                    conn.execute(
                        "UPDATE alert_deliveries SET status = 'pending', next_attempt_at = %s,"
                        " lease_until = NULL WHERE id = ANY(%s)",
                        (later, [r[0] for r in group]),
                    )
                    continue
                singles = group if len(group) <= free else group[: free - 1]
                summary = [] if len(group) <= free else group[free - 1 :]
                plan = [(r, r[0]) for r in singles] + [(r, summary[0][0]) for r in summary]
                for (delivery_id, alert_id, _, _, attempts), message_id in plan:
                    conn.execute(
                        "UPDATE alert_deliveries SET status = 'sending', attempts = attempts + 1,"
                        " lease_until = %s, claimed_by = %s, message_id = %s WHERE id = %s",
                        (now + self.policy.lease, self.worker, message_id, delivery_id),
                    )
                    (attempt_id,) = conn.execute(
                        "INSERT INTO alert_delivery_attempts (delivery_id, attempt, worker,"
                        " started_at) VALUES (%s, %s, %s, %s) RETURNING id",
                        (delivery_id, attempts + 1, self.worker, now),
                    ).fetchone()
                    claimed.append(_Claimed(delivery_id, alert_id, channel, target,
                                            attempts + 1, attempt_id, message_id,
                                            now + self.policy.lease))  # fmt: skip
        return claimed

    # -- 3. send and record ----------------------------------------------------------------

    def _alerts(self, ids: list[int]) -> dict[int, dict[str, object]]:
        from psycopg.rows import dict_row

        with self._transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {', '.join(_ALERT_FIELDS)} FROM alerts WHERE id = ANY(%s)", (ids,)
            ).fetchall()
        return {row["id"]: row for row in rows}

    def send(self, claimed: list[_Claimed]) -> Report:
        """Send the claimed deliveries (one message per ``message_id``) and record outcomes."""
        report = Report()
        if not claimed:
            return report
        alerts = self._alerts(sorted({c.alert_id for c in claimed}))
        charts: dict[str, bytes | None] = {}
        messages: dict[int, list[_Claimed]] = {}
        for item in claimed:
            messages.setdefault(item.message_id, []).append(item)
        for items in messages.values():
            items = self._held(items)
            if not items:
                continue
            first = items[0]
            if len(items) == 1:
                alert = alerts[first.alert_id]
                png = None
                run_id = alert.get("run_id")
                if self.charts and alert["kind"] in CHART_KINDS and run_id:
                    if run_id not in charts:
                        charts[run_id] = equity_chart(self.store, str(run_id))
                    png = charts[run_id]
                message = alert_message(alert, png)
            else:
                message = summary_message([alerts[i.alert_id] for i in items])
            error: DeliveryError | None = None
            try:
                self.channels[first.channel].send(first.target, message)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # a bug in a channel must not lose the alert: retry
                log.exception("alert channel %s failed unexpectedly", first.channel)
                error = DeliveryError(f"{type(exc).__name__}: {exc}", transient=True)
            self._record(items, error, report)
        return report

    def _held(self, items: list[_Claimed]) -> list[_Claimed]:
        """Return the claimed rows of one message this worker may still send.

        Within the first half of their lease, all (no store round trip on the fast path);
        after it, the lease is renewed in the store for the rows still claimed by this worker
        with this attempt, and only those are returned: a row whose lease ran out may have been
        claimed and sent by another worker meanwhile, and must not go twice.
        """
        now = self.clock()
        if now < min(i.lease_until for i in items) - self.policy.lease / 2:
            return items
        until = now + self.policy.lease
        with self._transaction() as conn:
            rows = conn.execute(
                "UPDATE alert_deliveries SET lease_until = %s WHERE status = 'sending'"
                " AND claimed_by = %s AND (id, attempts) IN"
                " (SELECT * FROM unnest(%s::bigint[], %s::int[])) RETURNING id",
                (until, self.worker, [i.id for i in items], [i.attempts for i in items]),
            ).fetchall()
        kept = {row[0] for row in rows}
        for item in items:
            if item.id not in kept:
                log.warning("alert delivery %d: lease lost before sending; another worker has "
                            "it", item.id)  # fmt: skip
        return [replace(i, lease_until=until) for i in items if i.id in kept]

    def _record(self, items: list[_Claimed], error: DeliveryError | None, report: Report) -> None:
        now = self.clock()
        with self._transaction() as conn:
            for item in items:
                if error is None:
                    status, outcome, due, text = "sent", "sent", None, None
                elif error.transient and item.attempts < self.policy.max_attempts:
                    wait = backoff(item.attempts, error.retry_after, base=self.policy.retry_base)
                    status, outcome = "pending", "retry"
                    due, text = now + timedelta(seconds=wait), str(error)
                else:
                    status, outcome, due, text = "failed", "failed", None, str(error)
                cur = conn.execute(
                    "UPDATE alert_deliveries SET status = %s, last_error = %s,"
                    " next_attempt_at = coalesce(%s, next_attempt_at), lease_until = NULL,"
                    " sent_at = CASE WHEN %s = 'sent' THEN %s ELSE sent_at END"
                    " WHERE id = %s AND status = 'sending' AND claimed_by = %s AND attempts = %s",
                    (status, text, due, status, now, item.id, self.worker, item.attempts),
                )
                conn.execute(
                    "UPDATE alert_delivery_attempts SET finished_at = %s, outcome = %s,"
                    " error = %s WHERE id = %s",
                    (now, outcome, text, item.attempt_id),
                )
                if cur.rowcount == 0:  # our lease ran out and another worker took it over
                    log.warning("alert delivery %d: lease lost while sending", item.id)
                    continue
                if status == "sent":
                    report.sent += 1
                elif status == "pending":
                    report.retried += 1
                    log.warning("alert %d via %s: %s; retry at %s", item.alert_id, item.channel,
                                text, _ist(due))  # type: ignore[arg-type]  # fmt: skip
                else:
                    to = shown_target(item.channel, item.target)
                    line = (f"alert {item.alert_id} via {item.channel} to {to}: "
                            f"failed after {item.attempts} attempt(s): {text}")  # fmt: skip
                    report.failed.append(line)
                    log.error("%s", line)
            self._settle(conn, sorted({i.alert_id for i in items}), now)

    # -- passes ----------------------------------------------------------------------------

    def pending(self) -> tuple[int, datetime | None]:
        """Return how many deliveries of this worker's channels are not finished, and when
        the next one is due."""
        with self._transaction() as conn:
            count, due = conn.execute(
                "SELECT count(*), min(CASE WHEN status = 'sending' THEN lease_until"
                " ELSE next_attempt_at END) FROM alert_deliveries"
                " WHERE status IN ('pending', 'sending') AND channel = ANY(%s)",
                (sorted(self.channels),),
            ).fetchone()
        return int(count), due

    def run_once(self) -> Report:
        """Enqueue and deliver until nothing is due now; return what was done."""
        report = Report()
        while True:
            self.enqueue(report=report)
            claimed = self.claim(self.batch)
            if not claimed:
                break
            report.add(self.send(claimed))
        report.pending = self.pending()[0]
        return report

    def run_forever(self, stop: threading.Event, *, poll: float = 5.0) -> None:
        """Deliver until ``stop`` is set: woken by NOTIFY ``velox_alerts``, and at least every
        ``poll`` seconds (retries fall due without a notification)."""
        with self.store.listen("velox_alerts") as listener:
            while not stop.is_set():
                try:
                    self.run_once()
                    _, due = self.pending()
                except Exception:  # the store restarting, a bug: keep the worker alive
                    log.exception("alert delivery pass failed; trying again in %.0f s", poll)
                    due = None
                wait = poll
                if due is not None:
                    wait = min(poll, max(0.05, (due - self.clock()).total_seconds()))
                if not stop.is_set():
                    listener.wait(wait)
        self.close()


def deliveries(
    store: Store, *, alert_id: int | None = None, status: str | None = None
) -> pd.DataFrame:
    """Return delivery rows (columns :data:`DELIVERY_COLUMNS`, IST times), oldest first."""
    import pandas as pd

    from velox.store._values import ist_column

    conditions, values = [], []
    if alert_id is not None:
        conditions.append("alert_id = %s")
        values.append(alert_id)
    if status is not None:
        conditions.append("status = %s")
        values.append(status)
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    with store.connect() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM alert_deliveries{where} ORDER BY id",
            values,
        ).fetchall()
    frame = pd.DataFrame(rows, columns=list(DELIVERY_COLUMNS))
    for col in ("next_attempt_at", "sent_at"):
        ist_column(frame, col)
    return frame


def delivery_attempts(store: Store, delivery_id: int | None = None) -> pd.DataFrame:
    """Return the attempts log (one row per attempt, oldest first)."""
    import pandas as pd

    columns = ["id", "delivery_id", "attempt", "worker", "started_at", "finished_at", "outcome",
               "error"]  # fmt: skip
    where, values = ("WHERE delivery_id = %s", [delivery_id]) if delivery_id else ("", [])
    with store.connect() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM alert_delivery_attempts {where} ORDER BY id", values
        ).fetchall()
    return pd.DataFrame(rows, columns=columns)


class BackgroundWorker:
    """A :class:`Deliverer` running in a daemon thread; :meth:`stop` ends it cleanly."""

    def __init__(self, deliverer: Deliverer, *, poll: float = 5.0) -> None:
        self.deliverer = deliverer
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=deliverer.run_forever, args=(self._stop,), kwargs={"poll": poll},
            name="velox-alerts", daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop and wait for it (it finishes the message it is sending)."""
        self._stop.set()
        try:  # wake it from LISTEN at once
            self.deliverer.store.notify("velox_alerts", "")
        except Exception:  # the store is gone: it wakes at its next poll instead
            log.debug("could not wake the alert worker", exc_info=True)
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def beside_engine(settings: Settings | None = None) -> Iterator[BackgroundWorker | None]:
    """Run a background worker while the block runs, if any alert channel is configured.

    ``velox paper`` and ``velox live`` wrap their engine in it, so a kill switch reaches the
    phone while the engine runs even without a separate ``velox alerts deliver``; workers
    never double-send, so running both is safe. After the block, one last pass delivers the
    alerts the engine stored as it finished.
    """
    from velox.alerts.channels import default_targets
    from velox.config import get_settings
    from velox.store import open_store

    settings = settings or get_settings()
    if not (default_targets(settings) or settings.telegram_token or settings.smtp_host):
        yield None
        return
    deliverer = Deliverer.from_settings(open_store(), settings)
    worker = BackgroundWorker(deliverer)
    try:
        yield worker
    finally:
        worker.stop()
        try:  # the engine's last alerts are stored as it finishes: one more pass for them
            deliverer.run_once()
        except Exception:  # the next worker to run delivers them; they are in the store
            log.exception("alert delivery after the engine stopped failed")
        finally:
            deliverer.close()


__all__ = [
    "BackgroundWorker", "beside_engine", "Deliverer", "Report", "alert_message", "deliveries",
    "delivery_attempts", "equity_chart", "summary_message",
]  # fmt: skip
