"""Apply the versioned SQL migrations and the optional TimescaleDB layer.

Migrations are the files ``migrations/NNNN_name.sql`` shipped with the package, applied in order,
each in its own transaction, and recorded in ``schema_migrations``. Every opener takes the same
PostgreSQL advisory lock first, so two processes opening a fresh database at once cannot both run
``0001`` (the second waits, then finds it applied). A migration that fails rolls back completely
and names the file.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

from velox.errors import StoreError

log = logging.getLogger(__name__)

#: Arbitrary but fixed advisory-lock key ("velox" in ASCII) shared by every Velox process.
MIGRATION_LOCK_KEY = 0x76656C6F78

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

#: Tables turned into hypertables when TimescaleDB is available: table -> chunk interval of its
#: ``ts`` column. ``tick_blocks`` holds one row per up to 16,384 ticks, so its chunks stay small
#: at the bars' interval too.
HYPERTABLES = {"bars": "30 days", "tick_blocks": "30 days"}


def migration_files() -> list[tuple[int, str, str]]:
    """Return ``(version, name, sql)`` of every shipped migration, sorted by version."""
    folder = resources.files("velox.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def apply_migrations(conn: psycopg.Connection) -> tuple[list[int], bool]:
    """Bring the database up to date; return (versions applied now, whether TimescaleDB is on).

    ``conn`` must be in autocommit mode; each migration runs in its own transaction while the
    session-level advisory lock is held.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in migration_files():
            if version in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
            except psycopg.Error as exc:
                raise StoreError(
                    f"migration {version:04d}_{name}.sql failed and was rolled back: {exc}"
                ) from exc
            log.info("applied store migration %04d_%s", version, name)
            applied.append(version)
        timescale = _enable_timescale(conn)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied, timescale


def _enable_timescale(conn: psycopg.Connection) -> bool:
    """Create the timescaledb extension and hypertables when the server offers it.

    Returns whether TimescaleDB is active. A server that lists the extension but cannot load it
    (not in ``shared_preload_libraries``) degrades to plain tables with a warning.
    """
    installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if not installed:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if not available:
            return False
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            log.warning(
                "TimescaleDB is installed on the server but could not be enabled (%s); add it "
                "to shared_preload_libraries to use hypertables. Using plain tables.",
                str(exc).strip(),
            )
            return False
    for table, chunk in HYPERTABLES.items():
        with conn.transaction():
            conn.execute(
                "SELECT create_hypertable(%s::regclass, 'ts', chunk_time_interval => %s::interval,"
                " if_not_exists => TRUE, migrate_data => TRUE)",
                (table, chunk),
            )
    return True
