"""Locate the PostgreSQL server behind the store: the embedded pgserver one or an external URL.

The embedded server is a real PostgreSQL shipped in the ``pgserver`` wheel. Its data directory is
``get_settings().store_dir`` (``<repo>/data/store``); it is started on first use and left running
(``cleanup_mode=None``) so notebooks, the CLI and a live session share it. pgserver serialises
start-up across processes with a file lock, and talks over a unix socket kept inside the data
directory, or a short runtime directory when that path would exceed the ~107-byte socket limit.

The embedded server runs with :data:`EMBEDDED_SETTINGS`, tuned for bulk bar imports; every other
setting keeps PostgreSQL's default (durability included: ``fsync`` stays on).
"""

from __future__ import annotations

import atexit
import fcntl
import getpass
import logging
import os
import stat
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from velox.errors import StoreError

log = logging.getLogger(__name__)

#: Settings of the embedded server (``ALTER SYSTEM``, kept in ``postgresql.auto.conf``).
#: A bulk ``COPY`` of a million bars writes ~140 MB of WAL. With the default 4 MB of WAL buffers
#: the inserting backend keeps stopping to write WAL itself; 64 MB of buffers and a WAL writer
#: waking every 10 ms (it hibernates when idle) move those writes to the WAL writer, on another
#: core. Measured: ingest ~10 % faster and steadier (docs/store.md).
EMBEDDED_SETTINGS = {"wal_buffers": "64MB", "wal_writer_delay": "10ms"}


def _pgserver() -> ModuleType:
    """Import pgserver quietly (platformdirs warns when XDG_RUNTIME_DIR is unset, e.g. as root)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def embedded_url(store_dir: Path | str) -> str:
    """Return the connection URI of the embedded PostgreSQL in ``store_dir``, starting it if needed.

    Safe to call from several processes at once: pgserver holds an inter-process lock while it
    runs ``initdb``/``pg_ctl start``, and a second caller finds the server already running.

    Raises
    ------
    StoreError
        If the server cannot be initialised or started (the message points at its log file).
    """
    path = Path(store_dir).expanduser().resolve()
    _check_writable(path)
    pgserver = _pgserver()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _start_lock(path):
            if path in pgserver.PostgresServer._instances and not _running(path):
                _forget(path)  # stopped since this process started it: start it again
            fresh = not embedded_exists(path)
            url = pgserver.get_server(path, cleanup_mode=None).get_uri()
            if fresh:
                log.warning(
                    "created a new empty store in %s (if your data is elsewhere, check "
                    "data_dir / VELOX_DATA_DIR)",
                    path,
                )
            if _configure(url) and fresh:
                # Just created, so nobody else is connected yet: restart for the settings
                # that only take effect at start-up.
                stop_embedded(path)
                url = pgserver.get_server(path, cleanup_mode=None).get_uri()
            return url
    except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
        raise StoreError(
            f"could not start the embedded PostgreSQL in {path}: {exc}; see {path / 'log'} "
            "for the server log, or set VELOX_DATABASE_URL to use an external server"
        ) from exc


def embedded_exists(store_dir: Path | str) -> bool:
    """Return whether ``store_dir`` holds an embedded store (an initialised data directory)."""
    return (Path(store_dir).expanduser() / "PG_VERSION").exists()


def _check_writable(path: Path) -> None:
    """Refuse a data directory the server could not write, before pgserver buries why.

    PostgreSQL writes its data directory (lock file, WAL, log) even to read, and requires it
    to be owner-writable; the owner write bit is checked as well as ``os.access`` because root
    passes every access check while pgserver runs the server as an unprivileged user.
    """
    target = path
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if target.exists() and not target.is_dir():
        raise StoreError(f"not a folder: {target} (the embedded store needs a folder at {path})")
    if not os.access(target, os.W_OK | os.X_OK) or not target.stat().st_mode & stat.S_IWUSR:
        what = "" if target == path else f"cannot create the store {path}: "
        raise StoreError(
            f"permission denied: {what}{target} is not writable (the embedded PostgreSQL writes "
            "its data directory); fix its permissions or point VELOX_DATA_DIR elsewhere"
        )


@contextmanager
def _start_lock(path: Path) -> Iterator[None]:
    """Hold an inter-process lock on starting (and configuring) the server in ``path``.

    Without it a second process could connect to a fresh server between its start and the
    restart that applies :data:`EMBEDDED_SETTINGS`. The lock is on the data directory itself
    (created empty if missing, as ``initdb`` accepts), so it leaves no file behind.
    """
    path.mkdir(exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _configure(url: str) -> bool:
    """Apply :data:`EMBEDDED_SETTINGS`; return whether some wait for a server restart.

    Reloadable settings take effect at once; ``wal_buffers`` at the server's next start.
    """
    import psycopg

    names = list(EMBEDDED_SETTINGS)
    with psycopg.connect(url, autocommit=True) as conn:
        configured = dict(
            conn.execute(
                "SELECT name, setting FROM pg_file_settings WHERE name = ANY(%s) ORDER BY seqno",
                (names,),
            ).fetchall()
        )
        changed = [name for name in names if configured.get(name) != EMBEDDED_SETTINGS[name]]
        for name in changed:
            conn.execute(f"ALTER SYSTEM SET {name} = '{EMBEDDED_SETTINGS[name]}'")
        if changed:
            conn.execute("SELECT pg_reload_conf()")
        pending = [
            name
            for name, value, context in conn.execute(
                "SELECT name, current_setting(name), context FROM pg_settings WHERE name = ANY(%s)",
                (names,),
            )
            if context == "postmaster" and value != EMBEDDED_SETTINGS[name]
        ]
    if changed:
        log.info(
            "embedded PostgreSQL: set %s%s",
            ", ".join(f"{name}={EMBEDDED_SETTINGS[name]}" for name in changed),
            f" ({', '.join(pending)} once the server restarts)" if pending else "",
        )
    return bool(pending)


def stop_embedded(store_dir: Path | str) -> bool:
    """Stop the embedded PostgreSQL in ``store_dir``; return False if it was not running.

    The next :func:`embedded_url` starts it again. Used by tests and ``make clean``-style tooling;
    a running notebook's connections are terminated.
    """
    pgserver = _pgserver()
    path = Path(store_dir).expanduser().resolve()
    if not _running(path):
        return False
    owner = path.owner()
    user = None if owner == getpass.getuser() else owner
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=path, user=user)
    _forget(path)
    log.info("stopped the embedded PostgreSQL in %s", path)
    return True


def _running(path: Path) -> bool:
    """Return whether a postmaster is running for the data directory ``path``."""
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(path) if (path / "postmaster.pid").exists() else None
    return info is not None and info.is_running()


def _forget(path: Path) -> None:
    """Drop pgserver's cached handle on ``path`` so the next get_server() checks afresh."""
    instance = _pgserver().PostgresServer._instances.pop(path, None)
    if instance is not None:
        atexit.unregister(instance._cleanup)
        instance.global_process_id_list.get_and_remove(os.getpid())
