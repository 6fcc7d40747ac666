"""Store behaviour against real PostgreSQL servers (embedded pgserver and Debian)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest

from velox.errors import StoreError, ValidationError
from velox.store import INSTRUMENT_COLUMNS, Store
from velox.store.migrate import migration_files

pytestmark = pytest.mark.postgres

IST = "Asia/Kolkata"


def bars_frame(start: str, periods: int, *, tz: str = IST, seed: int = 0) -> pd.DataFrame:
    """Return random but OHLC-consistent 1-minute bars starting at ``start``."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=periods, freq="1min", tz=tz, unit="ns")
    close = 100 + rng.normal(0, 1, periods).cumsum()
    open_ = close + rng.normal(0, 0.2, periods)
    high = np.maximum(open_, close) + rng.random(periods)
    low = np.minimum(open_, close) - rng.random(periods)
    volume = rng.integers(0, 10_000, periods).astype(float)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


# -- migrations ---------------------------------------------------------------------------------


def test_migrations_recorded_once_and_reopen_is_idempotent(store: Store) -> None:
    shipped = [(v, n) for v, n, _ in migration_files()]
    with store.connect() as conn:
        recorded = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    assert recorded == shipped
    before = {t: store.table_fingerprint(t) for t in ("schema_migrations", "bars", "instruments")}
    Store(store.url, backend=store.backend)  # a second opener applies nothing
    after = {t: store.table_fingerprint(t) for t in before}
    assert after == before


def test_concurrent_openers_on_a_fresh_database_all_succeed(pg_server) -> None:
    url = pg_server.new_database()
    barrier, errors, opened = threading.Barrier(4), [], []

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(Store(url))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(opened) == 4
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert sorted(v for (v,) in versions) == [v for v, _, _ in migration_files()]


def test_failing_migration_rolls_back_and_names_the_file(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.store import migrate

    shipped = migrate.migration_files()
    bad = (9999, "broken", "CREATE TABLE half_done (x int); SELECT no_such_function();")
    monkeypatch.setattr(migrate, "migration_files", lambda: [*shipped, bad])
    before = store.table_fingerprint("schema_migrations")
    with pytest.raises(StoreError, match="9999_broken.sql failed and was rolled back"):
        Store(store.url)
    assert store.table_fingerprint("schema_migrations") == before
    with store.connect() as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None


def test_timescale_flag_matches_server_and_mode_is_logged(
    pg_server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = pg_server.new_database()
    with psycopg.connect(url) as conn:
        available = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()[0]
    with caplog.at_level(logging.INFO, logger="velox.store"):
        opened = Store(url)
    if not available:
        assert opened.timescale is False
        assert any("plain tables" in r.getMessage() for r in caplog.records)
    with psycopg.connect(url) as conn:
        # Primary key (and its index) on bars whatever the mode.
        pk = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'bars'::regclass AND contype = 'p'"
        ).fetchone()[0]
    assert pk == "PRIMARY KEY (series_id, ts)"


# -- bars ------------------------------------------------------------------------------------------


def test_round_trip_preserves_instants_values_and_returns_ist(store: Store) -> None:
    frame = bars_frame("2024-04-01 03:45", 500, tz="UTC")  # 09:15 IST, given in UTC
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert store.write_bars("NSE:RELIANCE", "1m", shuffled) == 500

    got = store.read_bars("NSE:RELIANCE", "1m")
    assert str(got.index.tz) == IST
    assert got.index.name == "ts"
    assert list(got.columns) == ["open", "high", "low", "close", "volume"]
    assert (got.dtypes == "float64").all()
    assert got.index[0] == pd.Timestamp("2024-04-01 09:15", tz=IST)
    assert got.index.is_monotonic_increasing
    np.testing.assert_array_equal(got.index.asi8, frame.index.as_unit("ns").asi8)
    np.testing.assert_array_equal(got.to_numpy(), frame.to_numpy())  # exact float8 round trip


def test_volume_defaults_to_zero_and_subsecond_timestamps_survive(store: Store) -> None:
    index = pd.DatetimeIndex(["2024-04-01 09:15:00.123456"], tz=IST)
    frame = pd.DataFrame({"open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5]}, index)
    store.write_bars("NSE:X", "1m", frame)
    got = store.read_bars("NSE:X", "1m")
    assert got.index[0] == index[0]
    assert got["volume"].tolist() == [0.0]


def test_upsert_replaces_overlapping_bars_and_keeps_the_rest(store: Store) -> None:
    first = bars_frame("2024-04-01 09:15", 10)
    store.write_bars("NSE:SBIN", "1m", first)
    second = bars_frame("2024-04-01 09:20", 10, seed=7)  # overlaps 09:20–09:24, adds 09:25–09:29
    assert store.write_bars("NSE:SBIN", "1m", second) == 10

    got = store.read_bars("NSE:SBIN", "1m")
    assert len(got) == 15
    pd.testing.assert_frame_equal(got.iloc[:5], first.iloc[:5], check_names=False, check_freq=False)
    pd.testing.assert_frame_equal(got.iloc[5:], second, check_names=False, check_freq=False)
    # Another timeframe / instrument is a separate series.
    assert store.read_bars("NSE:SBIN", "3m").shape[0] == 5  # resampled from the 15 minutes
    assert store.read_bars("NSE:OTHER", "1m").empty


def test_write_bars_many_writes_each_instrument_and_isolates_a_bad_one(store: Store) -> None:
    frames = {f"NSE:MANY{i}": bars_frame("2024-04-01 09:15", 50 + i, seed=i) for i in range(5)}
    assert store.write_bars_many(frames, "1m", workers=2) == {k: len(v) for k, v in frames.items()}
    for iid, frame in frames.items():
        got = store.read_bars(iid, "1m")
        pd.testing.assert_frame_equal(got, frame, check_names=False, check_freq=False)

    broken = bars_frame("2024-04-02 09:15", 5)
    broken.iloc[2, 0] = np.nan
    good = bars_frame("2024-04-02 09:15", 7, seed=9)
    with pytest.raises(ValidationError, match="NSE:BROKEN: column 'open' has missing values"):
        store.write_bars_many({"NSE:BROKEN": broken, "NSE:GOOD": good}, "1m")
    assert store.read_bars("NSE:BROKEN", "1m").empty
    pd.testing.assert_frame_equal(
        store.read_bars("NSE:GOOD", "1m"), good, check_names=False, check_freq=False
    )


def test_bad_frames_are_rejected_and_write_nothing(store: Store) -> None:
    before = store.table_fingerprint("bars")
    frame = bars_frame("2024-04-01 09:15", 5)
    with_nan = frame.copy()
    with_nan.iloc[3, 1] = np.nan
    with pytest.raises(ValidationError, match="'high' has missing values"):
        store.write_bars("NSE:X", "1m", with_nan)
    with pytest.raises(ValidationError, match="naive"):
        store.write_bars("NSE:X", "1m", frame.tz_localize(None))
    with pytest.raises(ValidationError, match="duplicate"):
        store.write_bars("NSE:X", "1m", pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ValidationError, match="missing columns"):
        store.write_bars("NSE:X", "1m", frame.drop(columns="low"))
    with pytest.raises(ValidationError, match="unknown timeframe"):
        store.write_bars("NSE:X", "2m", frame)
    assert store.table_fingerprint("bars") == before


def test_failed_transaction_leaves_every_table_unchanged(store: Store) -> None:
    store.write_bars("NSE:INFY", "1m", bars_frame("2024-04-01 09:15", 20))
    store.record_import("old.csv", "a" * 64, "NSE:INFY", "1m", 20)
    tables = ("bars", "imports", "instruments")
    before = {t: store.table_fingerprint(t) for t in tables}

    with pytest.raises(RuntimeError, match="validation failed late"), store.connect() as conn:
        store.write_bars("NSE:INFY", "1m", bars_frame("2024-04-01 09:30", 50, seed=3), conn=conn)
        store.write_bars("NSE:WIPRO", "1m", bars_frame("2024-04-01 09:15", 50), conn=conn)
        store.record_import("new.csv", "b" * 64, "NSE:INFY", "1m", 50, conn=conn)
        raise RuntimeError("validation failed late")

    assert {t: store.table_fingerprint(t) for t in tables} == before
    assert store.import_checksum("new.csv") is None


def test_concurrent_writer_into_the_same_new_range_falls_back_to_upsert(store: Store) -> None:
    first = bars_frame("2024-04-01 09:15", 10)
    second = bars_frame("2024-04-01 09:15", 10, seed=9)
    outcome: list[object] = []
    with store.connect() as conn:
        store.write_bars("NSE:X", "1m", first, conn=conn)  # uncommitted: invisible to others
        # The second writer sees an empty range, starts a direct COPY and blocks on our keys.
        writer = threading.Thread(
            target=lambda: outcome.append(store.write_bars("NSE:X", "1m", second))
        )
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive()
    writer.join(timeout=30)  # our commit makes its COPY fail; it must upsert instead
    assert outcome == [10]
    got = store.read_bars("NSE:X", "1m")
    np.testing.assert_array_equal(got.to_numpy(), second.to_numpy())


def test_bars_and_import_row_commit_together(store: Store) -> None:
    frame = bars_frame("2024-04-01 09:15", 30)
    with store.connect() as conn:
        store.write_bars("NSE:TCS", "1m", frame, conn=conn)
        store.write_bars("NSE:TCS", "5m", frame.iloc[::5], conn=conn)  # two writes, one txn
        store.record_import("tcs.csv", "c" * 64, "NSE:TCS", "1m", 30, conn=conn)
    assert len(store.read_bars("NSE:TCS", "1m")) == 30
    assert len(store.read_bars("NSE:TCS", "5m")) == 6
    assert store.import_checksum("tcs.csv") == "c" * 64


def test_read_bounds_are_inclusive_and_date_only_end_means_whole_day(store: Store) -> None:
    day1 = bars_frame("2024-04-01 09:15", 375)
    day2 = bars_frame("2024-04-02 09:15", 375, seed=1)
    store.write_bars("NSE:X", "1m", pd.concat([day1, day2]))

    got = store.read_bars("NSE:X", "1m", start="2024-04-01 10:00", end="2024-04-01 10:04")
    assert got.index.strftime("%H:%M").tolist() == ["10:00", "10:01", "10:02", "10:03", "10:04"]
    assert len(store.read_bars("NSE:X", "1m", end="2024-04-01")) == 375
    assert len(store.read_bars("NSE:X", "1m", start=date(2024, 4, 2))) == 375
    utc_start = datetime(2024, 4, 2, 3, 45, tzinfo=UTC)  # 09:15 IST
    assert store.read_bars("NSE:X", "1m", start=utc_start).index[0] == day2.index[0]


def test_bar_summary_counts_and_spans(store: Store) -> None:
    store.write_bars("NSE:A", "1m", bars_frame("2024-04-01 09:15", 7))
    store.write_bars("NSE:A", "1d", bars_frame("2024-04-01 00:00", 1))
    store.write_bars("NSE:B", "1m", bars_frame("2024-04-02 09:15", 3))
    summary = store.bar_summary()
    assert summary[["instrument_id", "timeframe", "rows"]].values.tolist() == [
        ["NSE:A", "1d", 1],
        ["NSE:A", "1m", 7],
        ["NSE:B", "1m", 3],
    ]
    assert summary["first"].iloc[1] == pd.Timestamp("2024-04-01 09:15", tz=IST)
    assert summary["last"].iloc[2] == pd.Timestamp("2024-04-02 09:17", tz=IST)
    assert str(summary["last"].dt.tz) == IST


# -- instruments, imports, order events --------------------------------------------------------


def instruments_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ["NSE:RELIANCE", "NSE", "RELIANCE", "EQ", "RELIANCE INDUSTRIES", None, None, None,
             0.05, 1, None, "NSE", 2885, 738561, "2885", "RELIANCE-EQ"],
            ["NFO:NIFTY24APR22500CE", "NFO", "NIFTY24APR22500CE", "CE", "NIFTY", "NSE:NIFTY 50",
             pd.Timestamp("2024-04-25"), 22500.0, 0.05, 50, 1800, "NFO-OPT", 43250, 12345678,
             "43250", "NIFTY25APR2422500CE"],
        ],
        columns=list(INSTRUMENT_COLUMNS),
    )  # fmt: skip


def test_instruments_round_trip_with_nulls_and_upsert(store: Store) -> None:
    assert store.write_instruments(instruments_frame()) == 2
    got = store.read_instruments()
    assert list(got.columns) == list(INSTRUMENT_COLUMNS)
    assert got["id"].tolist() == ["NFO:NIFTY24APR22500CE", "NSE:RELIANCE"]
    option, equity = got.iloc[0], got.iloc[1]
    assert option["expiry"] == date(2024, 4, 25)
    assert option["strike"] == 22500.0 and option["lot_size"] == 50
    assert option["freeze_qty"] == 1800 and option["kite_token"] == 12345678
    assert equity["expiry"] is None and np.isnan(equity["strike"])
    assert pd.isna(equity["freeze_qty"]) and equity["underlying"] is None
    assert equity["angel_token"] == "2885"

    changed = instruments_frame().iloc[[1]].assign(lot_size=75)
    store.write_instruments(changed)
    got = store.read_instruments()
    assert len(got) == 2
    assert got.set_index("id").loc["NFO:NIFTY24APR22500CE", "lot_size"] == 75


def test_write_instruments_rejects_wrong_columns(store: Store) -> None:
    with pytest.raises(ValidationError, match="missing \\['angel_symbol'\\]"):
        store.write_instruments(instruments_frame().drop(columns="angel_symbol"))
    with pytest.raises(ValidationError, match="duplicate instrument ids"):
        store.write_instruments(pd.concat([instruments_frame()] * 2))
    assert store.table_fingerprint("instruments")[0] == 0


def test_import_checksums_are_recorded_and_replaced(store: Store) -> None:
    assert store.import_checksum("data/x.csv") is None
    store.record_import("data/x.csv", "1" * 64, "NSE:X", "1d", 10)
    assert store.import_checksum("data/x.csv") == "1" * 64
    store.record_import("data/x.csv", "2" * 64, "NSE:X", "1d", 11)
    assert store.import_checksum("data/x.csv") == "2" * 64
    assert store.table_fingerprint("imports")[0] == 1


def test_order_events_are_append_only(store: Store) -> None:
    ts = datetime(2024, 4, 1, 4, 0, tzinfo=UTC)
    first = store.append_order_event("c1", ts, "SUBMITTED", {"qty": 10}, mode="paper")
    second = store.append_order_event("c1", ts, "FILLED", {"qty": 10, "price": 101.5}, mode="paper")
    store.append_order_event("c2", ts, "SUBMITTED", mode="paper")
    assert second > first
    before = store.table_fingerprint("order_events")

    for statement in (
        "UPDATE order_events SET status = 'CANCELLED'",
        "DELETE FROM order_events WHERE client_id = 'c1'",
        "TRUNCATE order_events",
    ):
        with pytest.raises(psycopg.Error, match="append-only"), store.connect() as conn:
            conn.execute(statement)
    assert store.table_fingerprint("order_events") == before

    events = store.read_order_events("c1")
    assert events["status"].tolist() == ["SUBMITTED", "FILLED"]
    assert events["payload"].iloc[1] == {"qty": 10, "price": 101.5}
    assert events["ts"].iloc[0] == pd.Timestamp("2024-04-01 09:30", tz=IST)
    assert len(store.read_order_events()) == 3
    with pytest.raises(ValidationError, match="naive"):
        store.append_order_event("c3", datetime(2024, 4, 1), "SUBMITTED", mode="paper")


def test_table_fingerprint_changes_with_content_and_rejects_unknown_tables(store: Store) -> None:
    empty = store.table_fingerprint("bars")
    assert empty[0] == 0
    store.write_bars("NSE:X", "1m", bars_frame("2024-04-01 09:15", 2))
    one = store.table_fingerprint("bars")
    store.write_bars("NSE:X", "1m", bars_frame("2024-04-01 09:15", 2, seed=5))
    assert one[0] == 2 and store.table_fingerprint("bars") not in (empty, one)
    with pytest.raises(ValidationError, match="unknown table"):
        store.table_fingerprint("pg_authid; --")


def test_instruments_table_has_the_master_columns(store) -> None:
    from velox.instruments import COLUMNS

    with store.connect() as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'instruments' ORDER BY ordinal_position"
        ).fetchall()
    assert tuple(name for (name,) in rows) == COLUMNS
