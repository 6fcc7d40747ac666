"""Apply the versioned SQL migrations and the optional TimescaleDB layer.

Migrations are the files ``migrations/NNNN_name.sql`` shipped with the package, applied in order,
each in its own transaction, and recorded in ``schema_migrations``. Every opener takes the same
PostgreSQL advisory lock first, so two processes opening a fresh database at once cannot both run
``0001`` (the second waits, then finds it applied). A migration that fails rolls back completely
and names the file.

TimescaleDB, when the server offers it, is enabled on a separate short-lived connection: a
server that lists the extension but has not preloaded its library ends the session that tries
``CREATE EXTENSION timescaledb`` with FATAL, and that must not be the connection holding the
migration lock (every open would then fail). Such a server gets one warning and plain tables.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg
from psycopg.conninfo import make_conninfo

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
        if not conn.closed and not conn.broken:  # a dead session has released its locks
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied, timescale


def _enable_timescale(conn: psycopg.Connection) -> bool:
    """Create the timescaledb extension and hypertables when the server offers it.

    Returns whether TimescaleDB is active. The work runs on its own connection (see the module
    docstring); if it fails, one warning names the error and the usual fix, and the store
    keeps plain tables. Hypertables get no default ``(ts DESC)`` index: every Velox query
    walks the ``(series_id, ts)`` primary key, and the extra index halved COPY ingest.
    """
    installed, offered = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    if not installed and not offered:
        return False
    try:
        with psycopg.connect(_conninfo(conn), autocommit=True) as side:
            if not installed:
                side.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            for table, chunk in HYPERTABLES.items():
                side.execute(
                    "SELECT create_hypertable(%s::regclass, 'ts',"
                    " chunk_time_interval => %s::interval, create_default_indexes => FALSE,"
                    " if_not_exists => TRUE, migrate_data => TRUE)",
                    (table, chunk),
                )
    except psycopg.Error as exc:
        log.warning(
            "TimescaleDB is installed on the server but could not be enabled: %s. Using plain "
            "tables. To use hypertables, set shared_preload_libraries = 'timescaledb' in "
            "postgresql.conf and restart the server (the Velox user must also be allowed to "
            "create the extension).",
            " ".join(str(exc).split()) or type(exc).__name__,
        )
        return False
    return True


def _conninfo(conn: psycopg.Connection) -> str:
    """Return a connection string for another session like ``conn`` (password included)."""
    password = conn.info.password
    return make_conninfo(conn.info.dsn, **({"password": password} if password else {}))
