"""The embedded (pgserver) deployment: started on first use and shared by several processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from velox.config import reset_settings
from velox.store import Store, embedded_url, open_store, stop_embedded
from velox.store.migrate import migration_files
from velox.store.server import EMBEDDED_SETTINGS

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]

OPEN_AND_WRITE = """
import sys
import pandas as pd
from velox.store import open_store

store = open_store()
assert store.backend == "embedded", store.backend
index = pd.date_range("2024-04-01 09:15", periods=100, freq="1min", tz="Asia/Kolkata")
frame = pd.DataFrame({c: 100.0 for c in ("open", "high", "low", "close", "volume")}, index)
store.write_bars(f"NSE:PROC{sys.argv[1]}", "1m", frame)
print(len(store.read_bars(f"NSE:PROC{sys.argv[1]}", "1m")))
"""


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """Return a fresh VELOX data dir whose store path is too long for a unix socket."""
    root = Path(tempfile.mkdtemp(prefix="vx-embedded-"))
    deep = root / ("long-" * 14) / "data"  # store socket path > 107 bytes
    deep.mkdir(parents=True)
    assert len(str(deep / "store" / ".s.PGSQL.5432")) > 107
    try:
        yield deep
    finally:
        stop_embedded(deep / "store")
        shutil.rmtree(root, ignore_errors=True)


def test_two_processes_start_and_share_the_store_at_once(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VELOX_DATABASE_URL"}
    env["VELOX_DATA_DIR"] = str(data_dir)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_WRITE, str(n)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "100"
    # a store that did not exist is never created silently: the one process that created it
    # says where (a mistyped data_dir shows here), the other opened it without a word
    created = f"created a new empty store in {data_dir / 'store'}"
    assert sorted(created in err for _, err in results) == [False, True], results

    store = Store(embedded_url(data_dir / "store"), backend="embedded")
    summary = store.bar_summary()
    assert summary["instrument_id"].tolist() == ["NSE:PROC1", "NSE:PROC2"]
    assert summary["rows"].tolist() == [100, 100]
    assert store.table_fingerprint("schema_migrations")[0] == len(migration_files())


def test_open_store_uses_settings_and_caches_per_process(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VELOX_DATA_DIR", str(data_dir))
    monkeypatch.delenv("VELOX_DATABASE_URL", raising=False)
    reset_settings()
    try:
        embedded = open_store()
        assert embedded is open_store()
        assert (embedded.backend, embedded.timescale) == ("embedded", False)
        assert not embedded.read_bars("NSE:PROC1", "5m").empty

        monkeypatch.setenv("VELOX_DATABASE_URL", embedded.url)
        reset_settings()
        external = open_store()
        assert external.backend == "external"
        assert external is open_store(embedded.url)
        assert external.bar_summary().equals(embedded.bar_summary())
    finally:
        reset_settings()


def test_stopped_embedded_server_restarts_on_next_open(data_dir: Path) -> None:
    url = embedded_url(data_dir / "store")
    assert stop_embedded(data_dir / "store") is True
    assert stop_embedded(data_dir / "store") is False
    assert embedded_url(data_dir / "store") == url
    assert Store(url, backend="embedded").bar_summary()["rows"].sum() == 200


def test_open_store_restarts_a_stopped_embedded_server(data_dir: Path) -> None:
    store = Store(
        embedded_url(data_dir / "store"), backend="embedded", store_dir=data_dir / "store"
    )
    stop_embedded(data_dir / "store")
    with pytest.raises(psycopg.OperationalError):
        store.bar_summary()  # the shared connection was cut by the shutdown
    assert store.bar_summary()["rows"].sum() == 200  # reconnects, starting the server


def test_embedded_server_runs_with_the_bulk_ingest_settings(data_dir: Path) -> None:
    url = embedded_url(data_dir / "store")

    def settings() -> dict[str, str]:
        with psycopg.connect(url) as conn:
            return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in EMBEDDED_SETTINGS}

    assert EMBEDDED_SETTINGS == {"wal_buffers": "64MB", "wal_writer_delay": "10ms"}
    assert settings() == EMBEDDED_SETTINGS  # a new server was restarted once to apply them
    with psycopg.connect(url, autocommit=True) as conn:  # an older store without them
        conn.execute("ALTER SYSTEM RESET wal_writer_delay")
        conn.execute("SELECT pg_reload_conf()")
    embedded_url(data_dir / "store")  # the next opener sets them again (a reload: async)
    for _ in range(50):
        if settings() == EMBEDDED_SETTINGS:
            break
        time.sleep(0.1)
    assert settings() == EMBEDDED_SETTINGS
