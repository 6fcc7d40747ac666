"""Bars keyed by series id: migration 0002 of an existing store, chunked COPY, commit settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest

from velox.store import Store, core, migrate

pytestmark = pytest.mark.postgres

IST = "Asia/Kolkata"


def hand_bars(times: list[str], closes: list[float]) -> pd.DataFrame:
    """Return bars at IST ``times`` whose OHLCV are simple functions of ``closes``."""
    close = np.array(closes)
    return pd.DataFrame(
        {"open": close - 0.5, "high": close + 1.0, "low": close - 1.0, "close": close,
         "volume": close * 10},
        index=pd.DatetimeIndex(times, tz=IST, name="ts").as_unit("ns"),
    )  # fmt: skip


def insert_0001_bars(conn: psycopg.Connection, instrument_id: str, tf: str, df: pd.DataFrame):
    """Insert ``df`` row by row into the 0001 ``bars`` table (text keys), as old Velox did."""
    for ts, row in df.iterrows():
        conn.execute(
            "INSERT INTO bars (instrument_id, timeframe, ts, open, high, low, close, volume)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (instrument_id, tf, ts.to_pydatetime(), *map(float, row)),
        )


def test_migration_0002_keeps_the_bars_of_an_existing_0001_store(
    pg_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.new_database()
    shipped = migrate.migration_files()
    assert [v for v, _, _ in shipped][:2] == [1, 2]
    monkeypatch.setattr(migrate, "migration_files", lambda: shipped[:1])
    Store(url)  # a store as Velox left it before 0002
    reliance_1m = hand_bars(["2024-04-01 09:15", "2024-04-01 09:16", "2024-04-01 09:17"],
                            [2900.0, 2901.5, 2899.25])  # fmt: skip
    reliance_1d = hand_bars(["2024-04-01 00:00", "2024-04-02 00:00"], [2910.0, 2925.5])
    nifty_1m = hand_bars(["2024-04-01 09:15:00.250000"], [22450.75])
    with psycopg.connect(url) as conn:
        insert_0001_bars(conn, "NSE:RELIANCE", "1m", reliance_1m)
        insert_0001_bars(conn, "NSE:RELIANCE", "1d", reliance_1d)
        insert_0001_bars(conn, "NSE:NIFTY 50", "1m", nifty_1m)
        conn.execute(
            "INSERT INTO imports (source_key, sha256, instrument_id, timeframe, rows)"
            " VALUES ('r.csv', %s, 'NSE:RELIANCE', '1m', 3)",
            ("d" * 64,),
        )
    monkeypatch.undo()

    store = Store(url)  # applies 0002
    with store.connect() as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        pk = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'bars'::regclass AND contype = 'p'"
        ).fetchone()[0]
        assert conn.execute("SELECT to_regclass('bars_0002')").fetchone()[0] is None
    assert versions == [v for v, _, _ in shipped]
    assert pk == "PRIMARY KEY (series_id, ts)"
    for instrument_id, tf, expected in (
        ("NSE:RELIANCE", "1m", reliance_1m),
        ("NSE:RELIANCE", "1d", reliance_1d),
        ("NSE:NIFTY 50", "1m", nifty_1m),
    ):
        pd.testing.assert_frame_equal(store.read_bars(instrument_id, tf), expected)
    summary = store.bar_summary()
    assert summary[["instrument_id", "timeframe", "rows"]].values.tolist() == [
        ["NSE:NIFTY 50", "1m", 1],
        ["NSE:RELIANCE", "1d", 2],
        ["NSE:RELIANCE", "1m", 3],
    ]
    assert store.import_checksum("r.csv") == "d" * 64

    # Writes after the migration: a migrated series is upserted, a new one gets its own id.
    update = hand_bars(["2024-04-01 09:17", "2024-04-01 09:18"], [2898.0, 2897.0])
    assert store.write_bars("NSE:RELIANCE", "1m", update) == 2
    expected = pd.concat([reliance_1m.iloc[:2], update])
    pd.testing.assert_frame_equal(store.read_bars("NSE:RELIANCE", "1m"), expected)
    store.write_bars("NSE:SBIN", "1m", nifty_1m)
    pd.testing.assert_frame_equal(store.read_bars("NSE:SBIN", "1m"), nifty_1m)
    pd.testing.assert_frame_equal(store.read_bars("NSE:NIFTY 50", "1m"), nifty_1m)
    with store.connect() as conn:
        ids = conn.execute("SELECT count(DISTINCT id), count(*) FROM bar_series").fetchone()
    assert ids == (4, 4)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_chunked_copy_round_trips_on_both_paths(
    store: Store, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    monkeypatch.setattr(core, "COPY_CHUNK_ROWS", chunk_rows)
    index = pd.date_range("2024-04-01 09:15", periods=100, freq="1min", tz=IST)
    closes = 100.0 + np.arange(100) * 0.25
    first = hand_bars(list(index.astype(str)), list(closes))
    assert store.write_bars("NSE:X", "1m", first) == 100  # new range: COPY into bars
    overlap = hand_bars(list(index[90:].astype(str)) + ["2024-04-01 10:55"], [1.0] * 11)
    assert store.write_bars("NSE:X", "1m", overlap) == 11  # overlap: COPY into staging + upsert
    expected = pd.concat([first.iloc[:90], overlap])
    pd.testing.assert_frame_equal(store.read_bars("NSE:X", "1m"), expected)


def test_write_bars_keeps_the_commit_setting_of_a_callers_transaction(store: Store) -> None:
    bars = hand_bars(["2024-04-01 09:15"], [100.0])
    with store.connect() as conn:
        conn.execute("SET synchronous_commit = on")
        store.write_bars("NSE:X", "1m", bars, conn=conn)
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    pd.testing.assert_frame_equal(store.read_bars("NSE:X", "1m"), bars)


def test_read_of_a_series_holding_no_bars_is_empty(store: Store) -> None:
    with store.connect() as conn:  # e.g. left by hand-written SQL
        conn.execute("INSERT INTO bar_series (instrument_id, timeframe) VALUES ('NSE:X', '1m')")
    assert store.read_bars("NSE:X", "1m").empty
    assert store.read_bars("NSE:X", "5m").empty
    assert store.resample_bars("NSE:X", "1m", "5m").empty
    assert store.bar_summary().empty
