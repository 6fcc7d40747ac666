"""Run records and the RunRecorder: ids, restarts, round trips (bit-exact equity), retries."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from velox.calendar import IST
from velox.errors import DataError, StoreError, ValidationError
from velox.store import RunRecorder, Store, core
from velox.types import Fill, Order, OrderStatus, OrderType, Product, Side

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 4, 1, 9, 15, tzinfo=IST)
T0_NS = int(T0.timestamp()) * 1_000_000_000


def paper_run(store: Store, **overrides: object) -> str:
    values: dict[str, object] = {
        "mode": "paper", "account": "ZX1234", "initial_cash": 1_000_000.0,
        "strategies": [{"name": "orb", "class": "OpeningRange", "params": {"minutes": 15}}],
    }  # fmt: skip
    return store.create_run(**{**values, **overrides})  # type: ignore[arg-type]


def orders() -> list[Order]:
    """Return the states of three orders as an engine would record them (last state last)."""
    market = Order("P1-1", "NSE:SBIN", Side.BUY, 10, strategy="orb", created_at=T0)
    limit = Order("P1-2", "NSE:INFY", Side.SELL, 5, OrderType.LIMIT, Product.MIS,
                  limit_price=1501.05, tag="P1-2", strategy="orb",
                  created_at=T0 + timedelta(microseconds=250_001))  # fmt: skip
    stop = Order(
        "P1-10",
        "NFO:NIFTY24APR22500CE",
        Side.BUY,
        50,
        OrderType.SL,
        Product.NRML,
        limit_price=101.5,
        trigger_price=100.0,
        created_at=T0 + timedelta(seconds=3),
    )
    return [
        market,
        replace(market, status=OrderStatus.SUBMITTED),
        limit,
        replace(
            market,
            status=OrderStatus.FILLED,
            broker_order_id="240401000001",
            filled_qty=10,
            average_price=770.05,
        ),  # fmt: skip
        stop,
        replace(limit, status=OrderStatus.REJECTED, status_message="RMS: margin exceeds"),
    ]


def fills() -> list[Fill]:
    return [
        Fill("T1", "P1-1", "NSE:SBIN", Side.BUY, 6, 770.05, T0 + timedelta(microseconds=7),
             broker_order_id="240401000001", charges=0.1234567891234, strategy="orb"),
        Fill("T2", "P1-1", "NSE:SBIN", Side.BUY, 4, 770.1, T0 + timedelta(microseconds=7)),
        Fill("sim-3", "P1-10", "NFO:NIFTY24APR22500CE", "SELL", 50, 0.05,
             datetime(2024, 4, 1, 4, 0, tzinfo=UTC), Product.NRML),
    ]  # fmt: skip


# -- runs ----------------------------------------------------------------------------------------


def test_generated_run_ids_are_a_mode_letter_and_a_sequence_number(store: Store) -> None:
    assert store.create_run(mode="replay", initial_cash=1e5) == "R1"
    assert store.create_run(mode="replay", initial_cash=1e5) == "R2"
    assert paper_run(store) == "P1"
    assert store.create_run(mode="live", account="ZX1234", initial_cash=0) == "L1"
    # a hand-given id that the sequence reaches later is skipped
    assert store.create_run(mode="replay", initial_cash=1e5, run_id="R3") == "R3"
    assert store.create_run(mode="replay", initial_cash=1e5) == "R4"
    run = store.run("P1")
    assert run["mode"] == "paper" and run["account"] == "ZX1234" and run["status"] == "running"
    assert run["strategies"] == [
        {"name": "orb", "class": "OpeningRange", "params": {"minutes": 15}}
    ]
    assert run["initial_cash"] == 1_000_000.0 and run["params"] == {}
    assert run["started_at"].utcoffset() == timedelta(hours=5, minutes=30)
    assert run["ended_at"] is None and run["restarts"] == 0


def test_an_existing_run_id_is_a_restart_not_a_new_run(store: Store) -> None:
    started = datetime(2024, 4, 1, 9, 0, tzinfo=IST)
    assert paper_run(store, run_id="P7", started_at=started) == "P7"
    store.finish_run("P7", status="failed", summary={"error": "broker disconnected"})
    assert store.run("P7")["status"] == "failed"

    assert paper_run(store, run_id="P7") == "P7"
    run = store.run("P7")
    assert run["status"] == "running" and run["ended_at"] is None and run["summary"] is None
    assert run["restarts"] == 1 and run["started_at"] == started
    assert run["restarted_at"] is not None
    assert len(store.runs()) == 1

    with pytest.raises(
        ValidationError, match="P7 exists as a paper run.*cannot be restarted as live"
    ):
        store.create_run(mode="live", account="ZX1234", initial_cash=1e6, run_id="P7")
    with pytest.raises(ValidationError, match="belongs to account 'ZX1234', not 'AB999'"):
        paper_run(store, run_id="P7", account="AB999")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"mode": "papr"}, "mode='papr' is not one of replay, paper, live; did you mean 'paper'"),
        ({"run_id": "P-1"}, "run_id='P-1' must be 1-10 ASCII letters or digits"),
        ({"run_id": "P12345678901"}, "must be 1-10 ASCII letters"),
        ({"initial_cash": float("nan")}, "initial_cash=nan must be a finite amount"),
        ({"strategies": [{"name": "a"}, {"name": "a"}]}, "'a' appears twice"),
        ({"strategies": [{"nam": "a"}]}, "unknown keys \\['nam'\\]"),
        ({"strategies": "orb"}, "strategies must be a list"),
        ({"params": {"window": object()}}, "params\\['window'\\] holds a object"),
        ({"started_at": datetime(2024, 4, 1)}, "started_at=2024-04-01 00:00:00 is naive"),
    ],
)
def test_create_run_rejects_bad_input_naming_it(store: Store, overrides, match) -> None:
    with pytest.raises(ValidationError, match=match):
        paper_run(store, **overrides)
    assert store.runs().empty


def test_finish_run_lists_and_filters_runs(store: Store) -> None:
    for day in (1, 2, 3):
        store.create_run(mode="replay", initial_cash=1e5,
                         started_at=datetime(2024, 4, day, 9, 15, tzinfo=IST))  # fmt: skip
    paper_run(store, started_at=datetime(2024, 4, 4, 9, 15, tzinfo=IST))
    ended = datetime(2024, 4, 1, 15, 30, tzinfo=IST)
    summary = {"return": 0.0123, "sharpe": float("nan"), "trades": np.int64(4)}
    store.finish_run("R1", status="finished", summary=summary, ended_at=ended)

    assert store.runs()["run_id"].tolist() == ["P1", "R3", "R2", "R1"]
    assert store.runs(mode="replay", limit=2)["run_id"].tolist() == ["R3", "R2"]
    assert store.runs(status="running", account="ZX1234")["run_id"].tolist() == ["P1"]
    frame = store.runs(status="finished")
    assert frame["summary"].iloc[0] == {"return": 0.0123, "sharpe": None, "trades": 4}
    assert frame["ended_at"].iloc[0] == pd.Timestamp(ended)
    assert str(frame["started_at"].dtype) == "datetime64[ns, Asia/Kolkata]"

    with pytest.raises(ValidationError, match="status='done' is not one of finished"):
        store.finish_run("R2", status="done", summary={})
    with pytest.raises(DataError, match="unknown run 'R9'; recent runs: P1, R3, R2, R1"):
        store.finish_run("R9", status="finished", summary={})
    with pytest.raises(DataError, match="unknown run 'X1'"):
        store.run("X1")
    with pytest.raises(ValidationError, match="did you mean 'live'"):
        store.runs(mode="lve")

    before = store.run("P1")["heartbeat_at"]
    store.heartbeat("P1")
    assert store.run("P1")["heartbeat_at"] >= before
    with pytest.raises(DataError, match="unknown run"):
        store.heartbeat("P9")


def test_unknown_run_has_no_records(store: Store) -> None:
    with pytest.raises(DataError, match="there are no runs yet"):
        store.run_fills("P1")
    with pytest.raises(DataError, match="unknown run"):
        RunRecorder(store, "P1")


# -- the recorder ----------------------------------------------------------------------------


def test_run_rows_check_their_run_once_per_recorder_not_per_row(store: Store) -> None:
    # Migration 0016: no foreign-key trigger per order or fill row; the recorder's own check of
    # the run (above) is what refuses an unknown run.
    with store.connect() as conn:
        keys = conn.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            " AND conrelid::regclass::text IN ('run_orders', 'run_fills', 'run_positions')"
        ).fetchall()
    assert keys == [("run_positions",)]
    run_id = paper_run(store)
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        recorder.order(orders()[0])
        recorder.fill(fills()[0])
    assert store.fills_of_run(run_id) == fills()[:1]


def test_recorded_orders_fills_positions_and_risk_events_read_back_equal(store: Store) -> None:
    run_id = paper_run(store)
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        for order in orders()[:3]:
            recorder.order(order)
        recorder.fill(fills()[0])
        recorder.flush()  # the rest arrives in a second batch
        for order in orders()[3:]:
            recorder.order(order, T0 + timedelta(seconds=5))
        for fill in fills()[1:]:
            recorder.fill(fill)
        recorder.position(account="ZX1234", strategy="orb", instrument_id="NSE:SBIN",
                          product=Product.CNC, qty=6, average_price=770.05, realised_pnl=0.0,
                          charges=0.12, ts=T0)  # fmt: skip
        recorder.position(account="ZX1234", strategy="orb", instrument_id="NSE:SBIN",
                          product="CNC", qty=10, average_price=770.07, realised_pnl=0.0,
                          charges=0.2, ts=T0_NS + 1_000_000_000)  # fmt: skip
        recorder.position(account="ZX1234", strategy="", instrument_id="NSE:SBIN",
                          product="CNC", qty=10, average_price=770.07, realised_pnl=-1.5,
                          charges=0.2, ts=T0)  # fmt: skip
        recorder.risk_event(ts=T0, kind="breach", limit="max_order_value",
                            message="order value 1.2e6 > 1e6", account="ZX1234",
                            payload={"client_id": "P1-3", "value": 1.2e6})  # fmt: skip
        recorder.risk_event(ts=T0 + timedelta(seconds=1), kind="kill", limit="manual",
                            message="operator kill", account="ZX1234")  # fmt: skip

    latest = {order.client_id: order for order in orders()}
    assert store.orders_of_run(run_id) == [latest["P1-1"], latest["P1-2"], latest["P1-10"]]
    assert store.fills_of_run(run_id) == fills()
    assert all(
        f.ts.utcoffset() == timedelta(hours=5, minutes=30) for f in store.fills_of_run(run_id)
    )
    assert recorder.written == {"orders": 5, "fills": 3, "equity": 0, "positions": 2,
                                "risk_events": 2, "alerts": 0, "quotes": 0,
                                "candles": 0}  # fmt: skip

    frame = store.run_orders(run_id)
    assert frame["client_id"].tolist() == ["P1-1", "P1-2", "P1-10"]
    assert frame["status"].tolist() == ["FILLED", "REJECTED", "NEW"]
    assert frame["limit_price"].isna().tolist() == [True, False, False]
    assert frame["updated_at"].iloc[0] == pd.Timestamp(T0 + timedelta(seconds=5))
    assert str(frame["created_at"].dtype) == "datetime64[ns, Asia/Kolkata]"

    fills_frame = store.run_fills(run_id)
    assert fills_frame["fill_id"].tolist() == ["T1", "T2", "sim-3"]
    assert fills_frame["charges"].iloc[0] == 0.1234567891234
    assert fills_frame["ts"].iloc[2] == pd.Timestamp("2024-04-01 09:30", tz="Asia/Kolkata")

    positions = store.run_positions(run_id)
    assert positions[["strategy", "qty", "realised_pnl"]].values.tolist() == [
        ["", 10, -1.5], ["orb", 10, 0.0],
    ]  # fmt: skip
    assert positions["updated_at"].iloc[1] == pd.Timestamp(T0 + timedelta(seconds=1))

    risk = store.run_risk_events(run_id)
    assert risk["kind"].tolist() == ["breach", "kill"]
    assert risk["limit"].tolist() == ["max_order_value", "manual"]
    assert risk["payload"].tolist() == [{"client_id": "P1-3", "value": 1.2e6}, {}]
    assert risk["ts"].iloc[0] == pd.Timestamp(T0)


def test_orders_with_engine_times_store_updated_at_to_the_microsecond(store: Store) -> None:
    # The engine hands over epoch ns (the recorder's bulk path); other batches mix in a
    # datetime, no time (written when stored) and a non-Order, which alone is refused.
    run_id = paper_run(store)
    states = orders()
    updated = {}  # client_id -> the instant expected in updated_at, worked by hand
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        recorder.order(states[0], T0_NS + 1_234_567_891)  # 1.234567891 s after 09:15 IST
        recorder.order(states[1], T0_NS + 2_000_000_999)
        recorder.order(states[2], T0_NS + 999)  # less than a microsecond: 09:15:00.000000
        recorder.flush()
        updated["P1-1"] = T0 + timedelta(seconds=2)
        updated["P1-2"] = T0
        recorder.order(states[3], T0_NS + 5_000_001_500)  # P1-1 again: the upsert path
        recorder.order(states[4], T0 + timedelta(seconds=7, microseconds=3))
        recorder.order("P1-99")  # type: ignore[arg-type]
        before = datetime.now(UTC)
        recorder.order(states[5])  # P1-2, no time: when it is written
        with pytest.raises(StoreError, match="1 recorded values were invalid.*got str"):
            recorder.close()
    after = datetime.now(UTC)
    updated["P1-1"] = T0 + timedelta(seconds=5, microseconds=1)
    updated["P1-10"] = T0 + timedelta(seconds=7, microseconds=3)
    with store.connect() as conn:
        rows = dict(conn.execute(
            "SELECT client_id, updated_at FROM run_orders WHERE run_id = %s", (run_id,)
        ).fetchall())  # fmt: skip
    assert before - timedelta(microseconds=1) <= rows.pop("P1-2") <= after
    assert rows == {k: v for k, v in updated.items() if k != "P1-2"}
    latest = {order.client_id: order for order in states}
    assert store.orders_of_run(run_id) == [latest["P1-1"], latest["P1-2"], latest["P1-10"]]


def test_int_prices_and_charges_are_stored_as_floats(store: Store) -> None:
    run_id = paper_run(store)
    order = Order("P1-1", "NSE:SBIN", Side.BUY, 10, OrderType.LIMIT, limit_price=770,
                  created_at=T0)  # fmt: skip
    fill = Fill("T1", "P1-1", "NSE:SBIN", Side.BUY, 10, 770, T0, charges=2)
    with RunRecorder(store, run_id) as recorder:
        recorder.order(order, T0_NS)
        recorder.fill(fill)
    with store.connect() as conn:
        assert conn.execute(
            "SELECT limit_price, average_price FROM run_orders WHERE run_id = %s", (run_id,)
        ).fetchone() == (770.0, 0.0)
        assert conn.execute(
            "SELECT price, charges, pg_typeof(charges)::text FROM run_fills WHERE run_id = %s",
            (run_id,),
        ).fetchone() == (770.0, 2.0, "double precision")


def test_equity_round_trips_bit_exact_across_copy_pieces(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "COPY_CHUNK_ROWS", 7)
    run_id = store.create_run(mode="replay", initial_cash=1e5)
    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.normal(1e5, 1e3, 40), [5e-324, -0.0, 1e308, -2.5, np.nextafter(1e5, 2e5)],
    ])  # fmt: skip
    times = T0_NS + np.arange(len(values)) * 1_000_000_001 + 999  # sub-microsecond parts
    with RunRecorder(store, run_id) as recorder:
        for ts, value in zip(times[:20].tolist(), values[:20].tolist(), strict=True):
            recorder.equity(ts, value)
        recorder.equity_many(times[20:], values[20:])

    curve = store.run_equity(run_id)
    assert curve["ts_ns"].tolist() == times.tolist()
    assert curve["equity"].to_numpy().view(np.int64).tolist() == values.view(np.int64).tolist()
    expected = pd.DatetimeIndex(times.view("M8[ns]")).tz_localize("UTC").tz_convert("Asia/Kolkata")
    assert curve.index.equals(expected)
    assert curve.index.name == "ts" and str(curve.index.tz) == "Asia/Kolkata"
    with store.connect() as conn:  # the SQL timestamp is the same instant, to the microsecond
        first = conn.execute(
            "SELECT ts FROM run_equity WHERE run_id = %s ORDER BY ts_ns LIMIT 1", (run_id,)
        ).fetchone()[0]
    assert first == datetime(2024, 4, 1, 3, 45, 0, 0, tzinfo=UTC)


def test_equity_last_value_of_a_time_wins_in_the_order_recorded(store: Store) -> None:
    run_id = store.create_run(mode="replay", initial_cash=1e5)
    t = T0_NS
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        recorder.equity(t, 1.0)
        recorder.equity_many([t, t + 1], [2.0, 3.0])  # replaces t
        recorder.equity(t + 1, 4.0)  # replaces t + 1
        recorder.equity(t + 2, 5.0)
        recorder.flush()
        recorder.equity(t + 2, 6.0)  # a later batch replaces a stored point (upsert path)
        recorder.equity_many(np.array([t + 3], dtype="M8[ns]"), [7.0])
    curve = store.run_equity(run_id)
    assert curve["ts_ns"].tolist() == [t, t + 1, t + 2, t + 3]
    assert curve["equity"].tolist() == [2.0, 4.0, 6.0, 7.0]
    assert store.run_equity(store.create_run(mode="replay", initial_cash=1.0)).empty


def test_a_retried_batch_stores_nothing_twice(store: Store) -> None:
    run_id = paper_run(store)
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        recorder.fill(fills()[0])
        recorder.equity(T0_NS, 1.0)
        recorder.flush()
        # as if the first commit's outcome was unknown and the batch were sent again
        for fill in fills():
            recorder.fill(fill)
        recorder.fill(fills()[2])
        recorder.equity(T0_NS, 1.0)
    assert store.fills_of_run(run_id) == fills()
    assert len(store.run_equity(run_id)) == 1


def test_write_failures_are_retried_and_never_raised_into_the_engine(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = paper_run(store)
    real_connect = store.connect

    def down(*, autocommit: bool = False) -> psycopg.Connection:
        raise StoreError("cannot connect to PostgreSQL (test: server down)")

    recorder = RunRecorder(store, run_id, flush_interval=0.05)
    monkeypatch.setattr(store, "connect", down)
    with caplog.at_level(logging.ERROR, logger="velox.store.runs"):
        recorder.fill(fills()[0])
        recorder.equity(T0_NS, 1.5)
        recorder.order(orders()[0])
        deadline = datetime.now() + timedelta(seconds=10)
        while "recording to the store failed" not in caplog.text and datetime.now() < deadline:
            time.sleep(0.02)  # the background thread keeps failing, quietly to us
    assert "recording to the store failed (attempt 1)" in caplog.text
    with pytest.raises(StoreError, match="kept in memory for the next flush"):
        recorder.flush()
    recorder.fill(fills()[1])
    with pytest.raises(StoreError, match="test: server down"):
        recorder.close()

    monkeypatch.setattr(store, "connect", real_connect)
    recorder.close()  # the store is back: everything is written once
    assert store.fills_of_run(run_id) == fills()[:2]
    assert store.run_equity(run_id)["equity"].tolist() == [1.5]
    assert store.orders_of_run(run_id) == [orders()[0]]
    recorder.close()  # idempotent


def test_a_replay_recorder_writes_on_the_engine_thread_at_heartbeats(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = paper_run(store, mode="replay", account="")
    threads = threading.active_count()
    recorder = RunRecorder.for_replay(store, run_id)
    assert recorder.thread is None and not recorder.stores_alerts
    assert threading.active_count() == threads
    recorder.fill(fills()[0])
    recorder.heartbeat()  # within flush_interval: nothing written yet
    assert store.fills_of_run(run_id) == []
    recorder.flush_interval = 0.0
    recorder._next_write = 0.0  # the next heartbeat is due
    recorder.heartbeat()
    assert store.fills_of_run(run_id) == fills()[:1]
    assert store.run(run_id)["heartbeat_at"] is not None

    real_connect = store.connect

    def down(*, autocommit: bool = False) -> psycopg.Connection:
        raise StoreError("cannot connect to PostgreSQL (test: server down)")

    monkeypatch.setattr(store, "connect", down)
    recorder._drop_connection()
    recorder.fill(fills()[1])
    with caplog.at_level(logging.ERROR, logger="velox.store.recorder"):
        recorder.heartbeat()  # fails quietly to the engine, records kept
    assert "recording to the store failed (attempt 1)" in caplog.text
    monkeypatch.setattr(store, "connect", real_connect)
    recorder.equity(T0_NS, 3.0)
    recorder.close()
    assert store.fills_of_run(run_id) == fills()[:2]
    assert store.run_equity(run_id)["equity"].tolist() == [3.0]


def test_invalid_records_are_dropped_and_reported_at_close(store: Store) -> None:
    run_id = paper_run(store)
    recorder = RunRecorder(store, run_id, flush_interval=60)
    recorder.position(account="ZX1234", strategy="", instrument_id="NSE:SBIN", product="CNC",
                      qty=1.5, average_price=1.0, realised_pnl=0.0, charges=0.0, ts=T0)  # fmt: skip
    recorder.risk_event(ts=datetime(2024, 4, 1), kind="kill", limit="manual", message="",
                        account="")  # fmt: skip
    recorder.equity(T0_NS, "lots")  # type: ignore[arg-type]
    recorder.equity(T0_NS + 1, 2.0)
    recorder.fill(fills()[0])
    with pytest.raises(StoreError, match="3 recorded values were invalid") as error:
        recorder.close()
    message = str(error.value)
    assert "qty=1.5 must be an int" in message and "is naive" in message
    assert "equity point" in message
    assert store.fills_of_run(run_id) == fills()[:1]
    assert store.run_equity(run_id)["equity"].tolist() == [2.0]
    with pytest.raises(ValidationError, match="2 times and 1 values"):
        RunRecorder(store, run_id).equity_many([1, 2], [1.0])


def test_each_batch_notifies_velox_runs_and_sets_the_heartbeat(store: Store) -> None:
    run_id = paper_run(store)
    with store.connect() as conn:
        conn.execute("UPDATE runs SET heartbeat_at = '2024-01-01' WHERE run_id = %s", (run_id,))
    with store.listen("velox_runs") as listener, RunRecorder(store, run_id) as recorder:
        recorder.heartbeat()
        recorder.equity(T0_NS, 1.0)
        assert ("velox_runs", run_id) in listener.wait(10.0)
    assert store.run(run_id)["heartbeat_at"] > datetime(2024, 1, 2, tzinfo=UTC)


def test_migration_0004_replaced_the_unused_0001_tables(store: Store) -> None:
    with store.connect() as conn:
        tables = {
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        order_events = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'order_events'::regclass"
            " AND NOT tgisinternal"
        ).fetchone()[0]
    assert {"orders", "fills", "positions"}.isdisjoint(tables)
    assert {
        "runs",
        "run_orders",
        "run_fills",
        "run_positions",
        "run_equity_blocks",
        "risk_events",
        "alerts",
        "commands",
        "command_targets",
        "command_events",
        "order_events",
    } <= tables
    assert order_events == 2  # append-only, untouched
    for table in ("run_orders", "run_fills", "run_equity", "commands", "alerts"):
        assert store.table_fingerprint(table) == (0, "d41d8cd98f00b204e9800998ecf8427e")


def test_equity_is_stored_in_blocks_that_the_sql_view_reads_back_exactly(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.store import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "EQUITY_BLOCK_POINTS", 4)
    run_id = store.create_run(mode="replay", initial_cash=1e5)
    values = np.array([1e5, -0.0, 5e-324, 1e308, np.nextafter(1e5, 0), 2.5, 3.25, -7.0, 9.0, 1.0])
    times = T0_NS + np.arange(10) * 60_000_000_000 + 7  # sub-microsecond parts
    with RunRecorder(store, run_id, flush_interval=60) as recorder:
        recorder.equity_many(times[:7], values[:7])
        recorder.flush()  # blocks of 4, 3
        recorder.equity_many(times[5:], [-1.0, -2.0, *values[7:]])  # rewrites two stored points
    expected = values.copy()
    expected[5:7] = [-1.0, -2.0]
    curve = store.run_equity(run_id)
    assert curve["ts_ns"].tolist() == times.tolist()
    assert curve["equity"].to_numpy().view(np.int64).tolist() == expected.view(np.int64).tolist()
    with store.connect() as conn:
        blocks = conn.execute(
            "SELECT first_ns, last_ns, points FROM run_equity_blocks WHERE run_id = %s"
            " ORDER BY written",
            (run_id,),
        ).fetchall()
        view = conn.execute(
            "SELECT ts_ns, ts, equity FROM run_equity WHERE run_id = %s ORDER BY ts_ns", (run_id,)
        ).fetchall()
    assert [b[2] for b in blocks] == [4, 3, 4, 1]
    assert blocks[0][:2] == (times[0], times[3]) and blocks[2][:2] == (times[5], times[8])
    assert [r[0] for r in view] == times.tolist()
    assert (
        np.array([r[2] for r in view]).view(np.int64).tolist() == expected.view(np.int64).tolist()
    )
    stamps = pd.DatetimeIndex(times.view("M8[ns]")).tz_localize("UTC").floor("us")
    assert [r[1] for r in view] == stamps.to_pydatetime().tolist()


def test_migration_0006_moves_existing_equity_curves_into_blocks_unchanged(
    pg_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.store import migrate

    url = pg_server.new_database()
    shipped = migrate.migration_files()
    assert [v for v, _, _ in shipped][:6] == [1, 2, 3, 4, 5, 6]
    monkeypatch.setattr(migrate, "migration_files", lambda: shipped[:5])
    old = Store(url)  # a store as Velox left it before 0006
    runs = [old.create_run(mode="replay", initial_cash=1.0) for _ in range(2)]
    values = np.array([1.5, -0.0, 5e-324, 1e308, np.nextafter(2.0, 3.0)])
    times = T0_NS + np.arange(5) * 1_000_000_001 + 999
    with psycopg.connect(url) as conn:
        for ts, value in zip(times.tolist(), values.tolist(), strict=True):
            conn.execute(
                "INSERT INTO run_equity (run_id, ts_ns, ts, equity) VALUES"
                " (%s, %s, to_timestamp(0) + %s * interval '1 microsecond', %s)",
                (runs[0], ts, ts // 1000, value),
            )
        conn.execute("INSERT INTO run_equity VALUES (%s, %s, to_timestamp(0), 42.0)", (runs[1], 0))
    monkeypatch.undo()

    store = Store(url)  # applies 0006
    curve = store.run_equity(runs[0])
    assert curve["ts_ns"].tolist() == times.tolist()
    assert curve["equity"].to_numpy().view(np.int64).tolist() == values.view(np.int64).tolist()
    assert store.run_equity(runs[1])["equity"].tolist() == [42.0]
    with store.connect() as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'run_equity'").fetchone()
    assert kind == ("v",)
