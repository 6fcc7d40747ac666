"""The JSON API never blocks the server's I/O loop on a store read.

A real ``velox serve`` process and a real lock: the test holds an exclusive lock on ``runs``
so the server's ``GET /api/runs`` waits inside PostgreSQL; while it waits, other requests
(another user's session check, the health route, a refused request) must be answered, and
once the lock goes the waiting request must answer with the right runs. Before the handlers
moved their store work off the loop, the first request froze every other one.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
from webtools import PASSWORD, login

pytestmark = pytest.mark.postgres


def wait_for_lock_wait(store, timeout: float = 20.0) -> None:
    """Return once some backend waits on a lock (the server's read of ``runs``)."""
    deadline = time.monotonic() + timeout
    with store.connect(autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the server's /api/runs never reached the locked table")


def test_other_requests_answer_while_a_store_read_waits(web_server, store, users) -> None:
    run_id = store.create_run(mode="paper", account="ACC1", initial_cash=1e6)
    store.create_run(mode="paper", account="ACC2", initial_cash=1e6)
    users.add("iris", "investor", PASSWORD, totp=False)
    users.link("iris", accounts=["ACC1"])
    users.add("ivan", "investor", PASSWORD, totp=False)
    iris, ivan = login(web_server, "iris", None), login(web_server, "ivan", None)
    api = web_server.url + "/api"
    assert [r["run_id"] for r in iris.get(api + "/runs").json()] == [run_id]
    time.sleep(0.5)  # past the shared run list's lifetime: the next request reads the store

    slow: dict[str, object] = {}
    locker = store.connect()
    try:
        locker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(
            target=lambda: slow.update(reply=iris.get(api + "/runs", timeout=60)), daemon=True
        )
        thread.start()
        wait_for_lock_wait(store)

        started = time.monotonic()
        me = ivan.get(api + "/me", timeout=10)
        assert me.status_code == 200 and me.json()["username"] == "ivan"
        assert requests.get(web_server.url + "/health", timeout=10).ok
        assert requests.get(api + "/positions", timeout=10).status_code == 401  # no session
        assert time.monotonic() - started < 10
        assert thread.is_alive() and "reply" not in slow  # still waiting on the lock
    finally:
        locker.rollback()
        locker.close()
    thread.join(60)
    reply = slow["reply"]
    assert reply.status_code == 200  # type: ignore[attr-defined]
    assert [r["run_id"] for r in reply.json()] == [run_id]  # type: ignore[attr-defined]
    assert ivan.get(api + "/runs", timeout=10).json() == []  # ivan is linked to nothing
