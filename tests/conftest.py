"""Shared fixtures: real PostgreSQL servers for every test that needs the store.

``store`` gives each test a fresh, migrated database on BOTH deployments Velox supports: the
embedded pgserver PostgreSQL and a Debian PostgreSQL cluster started here (``initdb`` as the
``postgres`` user, loopback port, socket in a temp dir). Each server is started once per session
and torn down after. Without a Debian ``initdb`` the Debian half is skipped, except under
``CI=true`` where a missing or broken server fails the run.

``fake_timescaledb_server`` starts one more Debian server for a single test, from a private
copy of the installation whose extension directory also holds a stand-in ``timescaledb``
extension: no other server, test or process can see it, and it is deleted with the server.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from velox.store import Store


@dataclass
class PgServer:
    """A PostgreSQL server started for the test session."""

    backend: str  # "embedded" (pgserver) or "debian"
    url: str  # superuser connection to the ``postgres`` database
    _names: Iterator[int] = field(default_factory=itertools.count)

    def new_database(self) -> str:
        """Create an empty database and return its connection string."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        name = f"velox_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_conninfo(self.url, dbname=name)


#: Durability is pointless for a server deleted at the end of the session; without it, creating
#: a database per test and shutting down take milliseconds instead of seconds.
_THROWAWAY = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL server required under CI=true: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_embedded() -> Iterator[PgServer]:
    import psycopg

    from velox.store import embedded_url, stop_embedded

    root = Path(tempfile.mkdtemp(prefix="vx-emb-"))
    try:
        url = embedded_url(root / "pg")
        with psycopg.connect(url, autocommit=True) as conn:
            for setting in _THROWAWAY.replace("-c ", "").split():
                name, value = setting.split("=")
                conn.execute(f"ALTER SYSTEM SET {name} = {value}")
            conn.execute("SELECT pg_reload_conf()")
        yield PgServer("embedded", url)
    finally:
        stop_embedded(root / "pg")
        shutil.rmtree(root, ignore_errors=True)


def _private_installation(bin_dir: Path, root: Path, extensions: Mapping[str, str]) -> Path:
    """Return a ``postgres`` binary whose share directory is a private copy with ``extensions``.

    PostgreSQL finds its share directory relative to its own executable (symbolic links
    resolved), so a copy of the binary at ``<root>/lib/postgresql/N/bin`` reads
    ``<root>/share/postgresql/N``: symbolic links to everything of the real one, plus the given
    extension files. Libraries still load from the real ``lib`` directory (a symbolic link).
    """
    version = bin_dir.parent.name
    share = Path(f"/usr/share/postgresql/{version}")
    private_bin = root / "lib" / "postgresql" / version / "bin"
    private_share = root / "share" / "postgresql" / version
    private_bin.mkdir(parents=True)
    (private_share / "extension").mkdir(parents=True)
    shutil.copy2(bin_dir / "postgres", private_bin)  # a copy: never a link to the real file
    (private_bin.parent / "lib").symlink_to(bin_dir.parent / "lib")
    for entry in share.iterdir():
        if entry.name != "extension":
            (private_share / entry.name).symlink_to(entry)
    for entry in (share / "extension").iterdir():
        (private_share / "extension" / entry.name).symlink_to(entry)
    for name, text in extensions.items():
        (private_share / "extension" / name).write_text(text)
    return private_bin / "postgres"


def _start_debian(extensions: Mapping[str, str] | None = None) -> Iterator[PgServer]:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if not found:
        _unavailable("Debian PostgreSQL not installed (no /usr/lib/postgresql/*/bin/initdb)")
    bin_dir = Path(found[-1]).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="vx-deb-"))
    if as_postgres:  # only the top: the private installation below is read-only to postgres
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, text=True)

    started = False
    try:
        try:
            server = []
            if extensions:
                server = ["-p", str(_private_installation(bin_dir, root, extensions))]
            run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8")  # fmt: skip
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                *server, "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 {_THROWAWAY}",
                "start")  # fmt: skip
            started = True
        except (subprocess.CalledProcessError, OSError) as exc:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            detail = getattr(exc, "stderr", "") or str(exc)
            _unavailable(f"Debian PostgreSQL in {bin_dir} did not start: {detail} {log}")
        yield PgServer("debian", f"postgresql://postgres@127.0.0.1:{port}/postgres")
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


#: A stand-in for a TimescaleDB that is installed but missing from shared_preload_libraries:
#: creating the real one then fails with FATAL, which ends the session; this one's install
#: script ends its own session the same way.
FAKE_TIMESCALEDB = {
    "timescaledb.control": "default_version = '2.28.3'\nrelocatable = false\n"
    "comment = 'Velox test stand-in: ends the session like an unpreloaded TimescaleDB'\n",
    "timescaledb--2.28.3.sql": "SELECT pg_terminate_backend(pg_backend_pid());\n",
}


@pytest.fixture
def fake_timescaledb_server() -> Iterator[PgServer]:
    """Yield a Debian server (its own, for this test) offering :data:`FAKE_TIMESCALEDB`."""
    yield from _start_debian(FAKE_TIMESCALEDB)


@pytest.fixture(scope="session", params=["embedded", "debian"])
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """Yield a running PostgreSQL server of each deployment kind (session-wide)."""
    yield from (_start_embedded() if request.param == "embedded" else _start_debian())


@pytest.fixture
def store(pg_server: PgServer) -> Iterator[Store]:
    """Return a :class:`velox.store.Store` on a fresh, migrated database."""
    from velox.store import Store

    backend = "embedded" if pg_server.backend == "embedded" else "external"
    opened = Store(pg_server.new_database(), backend=backend)
    yield opened
    opened.close()
