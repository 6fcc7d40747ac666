"""TimescaleDB listed by the server but not preloaded: the store must open with plain tables.

TimescaleDB cannot be installed here, so the server is a Debian PostgreSQL of its own whose
extension directory holds a stand-in ``timescaledb`` (``FAKE_TIMESCALEDB`` in conftest.py): its
install script ends its session, as the real extension's FATAL "must be preloaded" does.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import psycopg
import pytest

from velox.store import Store, migrate

pytestmark = pytest.mark.postgres

IST = "Asia/Kolkata"


def test_the_stand_in_ends_the_session_that_creates_it(fake_timescaledb_server) -> None:
    url = fake_timescaledb_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        offered = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        assert offered == ("2.28.3",)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("CREATE EXTENSION timescaledb")
        assert conn.closed or conn.broken


def test_store_opens_with_plain_tables_and_one_warning(
    fake_timescaledb_server, caplog: pytest.LogCaptureFixture
) -> None:
    url = fake_timescaledb_server.new_database()
    with caplog.at_level(logging.WARNING):
        store = Store(url)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "shared_preload_libraries = 'timescaledb'" in warnings[0]
    assert "Using plain tables" in warnings[0]
    assert store.timescale is False

    with store.connect() as conn:
        extension = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        assert extension.fetchone() is None
        kinds = dict(
            conn.execute(
                "SELECT relname, relkind::text FROM pg_class WHERE relname IN"
                " ('bars', 'tick_blocks', 'ticks') AND relnamespace = 'public'::regnamespace"
            ).fetchall()
        )
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        # The migration session released its advisory lock: another can take it at once.
        free = conn.execute("SELECT pg_try_advisory_lock(%s)", (migrate.MIGRATION_LOCK_KEY,))
        assert free.fetchone() == (True,)
    assert kinds == {"bars": "r", "tick_blocks": "r", "ticks": "v"}
    assert versions == [v for v, _, _ in migrate.migration_files()]

    index = pd.date_range("2024-04-01 09:15", periods=375, freq="1min", tz=IST, unit="ns")
    index.name = "ts"
    close = 22000 + np.arange(375) * 0.5
    bars = pd.DataFrame(
        {"open": close - 1, "high": close + 2, "low": close - 2, "close": close, "volume": 1.0},
        index=index,
    )
    assert store.write_bars("NSE:NIFTY 50", "1m", bars) == 375
    pd.testing.assert_frame_equal(store.read_bars("NSE:NIFTY 50", "1m"), bars, check_freq=False)
    ticks = pd.DataFrame({"price": close[:3]}, index=index[:3])
    store.write_ticks("NSE:NIFTY 50", ticks)
    assert store.read_ticks("NSE:NIFTY 50")["price"].tolist() == close[:3].tolist()
    store.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = Store(url)  # every open: the same warning, and the store still opens
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    pd.testing.assert_frame_equal(again.read_bars("NSE:NIFTY 50", "1m"), bars, check_freq=False)
    again.close()
