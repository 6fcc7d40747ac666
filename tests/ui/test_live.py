"""The console's live reader reads only what changed and still equals a full read.

The reference is the store's own full readers (``run_quotes``, ``run_orders`` …, which read
every row) after each step of a run's life: orders placed, filled in parts, cancelled,
positions opened and closed, risk events, new instruments ticking; and a writer whose
transaction commits after a read that began while it was open.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from velox.store import RunRecorder
from velox.types import Fill, Order, OrderStatus, OrderType, Product, Side, Tick
from velox.ui.live import LiveRuns

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 5, 20, 4, 0, tzinfo=UTC)  # 09:30 IST


def ns(ts: datetime) -> int:
    return int(pd.Timestamp(ts).value)


def assert_equals_full_read(live: LiveRuns, store, run_id: str) -> None:
    snap = live._read(run_id)
    pd.testing.assert_frame_equal(snap.quotes, store.run_quotes(run_id))
    pd.testing.assert_frame_equal(snap.positions, store.run_positions(run_id))
    pd.testing.assert_frame_equal(snap.orders, store.run_orders(run_id))
    pd.testing.assert_frame_equal(snap.fills, store.run_fills(run_id))
    pd.testing.assert_frame_equal(snap.risk_events, store.run_risk_events(run_id))
    assert snap.run == store.run(run_id)


def test_incremental_reads_equal_full_reads_through_a_run(store) -> None:
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    live = LiveRuns(store)
    recorder = RunRecorder(store, run_id, flush_interval=3600)  # flushed by hand below
    try:
        live.snapshot(run_id)  # watched, as a console's run is: merged rows kept between reads
        assert_equals_full_read(live, store, run_id)  # an empty run
        # instruments whose ids sort differently by byte and by a locale: the merge must keep
        # the server's order, not Python's
        ids = ["NSE:SBIN", "NSE:NIFTY 50", "NSE:M&M", "NSE:bajaj-auto", "NSE:INFY"]
        for i, iid in enumerate(ids):
            recorder.quote(Tick(iid, T0, 100.0 + i, 1000 + i), ns(T0))
        recorder.flush()
        assert_equals_full_read(live, store, run_id)

        orders = [
            Order(f"{run_id}-{n}", "NSE:SBIN", Side.BUY, 10, OrderType.LIMIT, Product.MIS,
                  limit_price=100.0, status=OrderStatus.OPEN, created_at=T0 + timedelta(seconds=n))
            for n in range(1, 13)
        ]  # fmt: skip  # 12 orders: "-10" sorts after "-9" by length, not by text
        for order in orders:
            recorder.order(order, T0)
        recorder.flush()
        assert_equals_full_read(live, store, run_id)

        steps = 0
        t = T0
        for n, order in enumerate(orders[:6], start=1):  # fill some in two parts
            t += timedelta(seconds=5)
            for part, status in ((4, OrderStatus.PARTIAL), (6, OrderStatus.FILLED)):
                recorder.fill(Fill(f"F{n}-{part}", order.client_id, "NSE:SBIN", Side.BUY, part,
                                   100.0, t, Product.MIS, charges=1.5))  # fmt: skip
                filled = 4 if part == 4 else 10
                recorder.order(replace(order, status=status, filled_qty=filled,
                                       average_price=100.0), t)  # fmt: skip
                recorder.position(account="A1", strategy="", instrument_id="NSE:SBIN",
                                  product="MIS", qty=10 * n - 10 + filled, average_price=100.0,
                                  realised_pnl=0.0, charges=1.5 * n, ts=t)  # fmt: skip
                recorder.quote(Tick("NSE:SBIN", t, 100.0 + n, 5000 + n), ns(t))
                recorder.flush()
                assert_equals_full_read(live, store, run_id)
                steps += 1
        for order in orders[6:]:  # cancel the rest, one batch
            recorder.order(replace(order, status=OrderStatus.CANCELLED), t)
        recorder.position(account="A1", strategy="s1", instrument_id="NSE:INFY",
                          product="CNC", qty=0, average_price=0.0, realised_pnl=12.0,
                          charges=0.5, ts=t)  # fmt: skip
        recorder.risk_event(ts=t, kind="kill", limit="manual", message="kill switch",
                            account="A1")  # fmt: skip
        recorder.risk_event(ts=t - timedelta(seconds=30), kind="breach", limit="max_orders",
                            message="late report of an earlier breach", account="A1")  # fmt: skip
        recorder.quote(Tick("NSE:ABB", t, 7000.0, 10), ns(t))  # a new instrument mid-run
        recorder.flush()
        assert_equals_full_read(live, store, run_id)
        assert steps == 12
    finally:
        recorder.close()
        live.close()


def test_a_read_fetches_only_the_rows_written_since_the_last(store) -> None:
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    live = LiveRuns(store)
    try:
        with RunRecorder(store, run_id, flush_interval=3600) as recorder:
            for i in range(50):
                recorder.quote(Tick(f"NSE:S{i:02d}", T0, 100.0, 10), ns(T0))
            order = Order(f"{run_id}-1", "NSE:S01", Side.SELL, 5, created_at=T0,
                          status=OrderStatus.OPEN)  # fmt: skip
            recorder.order(order, T0)
            recorder.flush()
            live.snapshot(run_id)  # watched: its rows are kept between reads
            first = live._snapshots[run_id]
            mark = live._rows[run_id].mark
            later = T0 + timedelta(seconds=1)
            recorder.quote(Tick("NSE:S07", later, 101.0, 20), ns(later))
            recorder.flush()
            changes = store.run_changes(run_id, mark)
            assert [r[0] for r in changes.quotes] == ["NSE:S07"]
            assert changes.orders == [] and changes.fills == [] and changes.positions == []
            assert len(changes.quote_keys) == 50  # the order of every row, for the merge
            snap = live._read(run_id)
            assert snap.version > first.version
            assert snap.orders is first.orders  # unchanged table: the same frame object
            assert snap.quotes is not first.quotes
            assert snap.quotes.set_index("instrument_id").loc["NSE:S07", "ltp"] == 101.0
    finally:
        live.close()


def test_a_writer_committing_after_a_read_is_not_missed(store) -> None:
    """A transaction open during a read (its rows invisible then) commits after it: the next
    read must still get its rows, though later transactions' rows were seen first."""
    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    live = LiveRuns(store)
    insert = (
        "INSERT INTO run_quotes (run_id, instrument_id, ts, ltp, volume, open, high, low)"
        " VALUES (%s, %s, %s, %s, 1, %s, %s, %s)"
    )
    try:
        live._read(run_id)
        slow = store.connect()
        slow.execute(insert, (run_id, "NSE:SLOW", T0, 50.0, 50.0, 50.0, 50.0))  # not committed
        with store.connect() as fast:
            fast.execute(insert, (run_id, "NSE:FAST", T0, 60.0, 60.0, 60.0, 60.0))
        live.snapshot(run_id)
        snap = live._read(run_id)
        assert snap.quotes["instrument_id"].tolist() == ["NSE:FAST"]
        slow.commit()
        slow.close()
        assert_equals_full_read(live, store, run_id)
        assert sorted(live._read(run_id).quotes["instrument_id"]) == ["NSE:FAST", "NSE:SLOW"]
    finally:
        live.close()


def test_subscribers_hear_of_each_new_snapshot_until_they_leave(store) -> None:
    """A console redraws when told (no timer phase on the path): the recorder's batch
    reaches a subscriber as its run id, on the reader's thread; one that returns False (its
    session ended) is not called again; a failing one is dropped, not fatal."""
    import threading
    import time

    run_id = store.create_run(mode="paper", account="A1", initial_cash=1e6)
    live = LiveRuns(store)
    heard: list[tuple[str, int, str]] = []
    stay = threading.Event()
    stay.set()

    def console(rid: str) -> bool:
        heard.append((rid, live.version(rid), threading.current_thread().name))
        return stay.is_set()

    def broken(rid: str) -> bool:
        raise RuntimeError("a screen's bug")

    live.subscribe(console)
    live.subscribe(broken)
    recorder = RunRecorder(store, run_id, flush_interval=3600)
    try:
        live.snapshot(run_id)  # watched from now on, read by the reader thread on NOTIFY
        heard.clear()
        recorder.quote(Tick("NSE:SBIN", T0, 800.0, 10), ns(T0))
        recorder.flush()  # commits and NOTIFYs velox_runs
        deadline = time.monotonic() + 10
        while not any(h[2] == "velox-ui-live" for h in heard):
            assert time.monotonic() < deadline, "no subscriber call after a batch"
            time.sleep(0.02)
        rid, version, _ = next(h for h in heard if h[2] == "velox-ui-live")
        assert rid == run_id and version == live.version(run_id)  # published before the call
        assert live.snapshot(run_id).quotes["ltp"].tolist() == [800.0]
        assert len(live._listeners) == 1  # the broken one is gone
        stay.clear()
        live.refresh(run_id, wait=True)  # heard once more, answers False: dropped
        calls = len(heard)
        live.refresh(run_id, wait=True)
        assert len(heard) == calls and live._listeners == []
    finally:
        recorder.close()
        live.close()
