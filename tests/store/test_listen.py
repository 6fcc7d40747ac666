"""LISTEN/NOTIFY: notifications from other connections arrive; wait never outlasts its timeout."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from velox.errors import StoreError, ValidationError
from velox.store import Store

pytestmark = pytest.mark.postgres


def test_a_notification_from_another_connection_arrives_within_the_timeout(store: Store) -> None:
    with store.listen("velox_commands", "Mixed Case") as listener:

        def send() -> None:
            time.sleep(0.2)
            with psycopg.connect(store.url, autocommit=True) as other:
                other.execute("NOTIFY velox_commands, 'P3'")
                other.execute("""NOTIFY "Mixed Case", 'x'""")

        sender = threading.Thread(target=send)
        started = time.monotonic()
        sender.start()
        received = listener.wait(10.0)
        assert time.monotonic() - started < 5.0  # returned on arrival, not at the timeout
        sender.join()
        while len(received) < 2:
            received += listener.wait(5.0)
        assert received == [("velox_commands", "P3"), ("Mixed Case", "x")]


def test_wait_returns_nothing_at_the_timeout(store: Store) -> None:
    with store.listen("velox_runs") as listener:
        started = time.monotonic()
        assert listener.wait(0.3) == []
        assert 0.25 <= time.monotonic() - started < 1.5
        assert listener.wait(0) == []
        store.notify("velox_alerts", "not listened to")
        assert listener.wait(0.1) == []
        store.notify("velox_runs", "R1")
        store.notify("velox_runs", "R2")
        got = listener.wait(5.0)
        while len(got) < 2:
            got += listener.wait(5.0)
        assert got == [("velox_runs", "R1"), ("velox_runs", "R2")]


def test_a_listener_reconnects_and_reports_every_channel_once(store: Store) -> None:
    listener = store.listen("velox_runs", "velox_alerts")
    with store.connect(autocommit=True) as admin:
        pid = listener._conn.info.backend_pid  # noqa: SLF001 - cut this listener's connection
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    assert listener.wait(2.0) == [("velox_runs", ""), ("velox_alerts", "")]
    store.notify("velox_alerts", "7")
    assert listener.wait(5.0) == [("velox_alerts", "7")]
    listener.close()
    listener.close()
    with pytest.raises(StoreError, match="closed"):
        listener.wait(0.1)


def test_bad_channels_payloads_and_timeouts_are_refused(store: Store) -> None:
    with pytest.raises(ValidationError, match="at least one channel"):
        store.listen()
    with pytest.raises(ValidationError, match="longer than PostgreSQL's 63-byte"):
        store.listen("x" * 64)
    with pytest.raises(ValidationError, match="under 8000 bytes"):
        store.notify("velox_runs", "x" * 8000)
    with store.listen("velox_runs") as listener, pytest.raises(ValidationError, match=">= 0"):
        listener.wait(-1)
