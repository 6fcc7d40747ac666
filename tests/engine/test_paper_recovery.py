"""Paper trading survives `kill -9` of the engine: state rebuilt, nothing sent twice, the
operator commands pending at the kill or issued while it was down are each executed once, and a
`velox kill` of the restarted engine stamps its audit rows with market time and wall time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import DAY, ROOT, PaperProcesses, holding_and_working, wait_until
from velox.calendar import IST
from velox.oms import ALLOWED_TRANSITIONS, FILL_EVENT
from velox.types import OrderStatus

PROBE = """
from velox.strategy import Strategy
from velox.types import OrderType, Side


class Probe(Strategy):
    '''Holds 10 shares with a resting limit buy below; sells and rebuys every 20 minutes.'''

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_bar(self, ctx, bar):
        working = ctx.open_orders()
        market = [o for o in working if o.order_type is OrderType.MARKET]
        if not market:
            if ctx.position() == 0:
                ctx.buy(10)
            elif bar.ts.minute % 20 == 0:
                ctx.sell(10)
        if not [o for o in working if o.order_type is OrderType.LIMIT]:
            price = ctx.instrument().snap_price(bar.close * 0.98, "down")
            ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
"""


def _valid_path(statuses: list[str]) -> bool:
    current = None
    for status in statuses:
        if status in (FILL_EVENT, "CANCEL_REQUESTED"):
            continue
        new = OrderStatus(status)
        if current is None:
            if new is not OrderStatus.NEW:
                return False
        elif new not in ALLOWED_TRANSITIONS[current]:
            return False
        current = new
    return True


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("reliance_in_store")
def test_engine_killed_mid_session_resumes_without_duplicates(
    store, tmp_path: Path, paper_processes: PaperProcesses
) -> None:
    probe = paper_processes.strategy(PROBE, "probe.py")
    engine = partial(paper_processes.engine, probe, "--symbol", "NSE:RELIANCE", "--timeframe",
                     "5m", "--run", "P1", "--socket", str(paper_processes.socket))  # fmt: skip
    dump = tmp_path / "sim.json"
    sim = paper_processes.simulator(speed=1000.0, dump=dump)
    first = engine()

    # wait for a position and a working order, then kill -9 mid-session
    wait_until(lambda: holding_and_working(store, "P1"), "the engine never traded", engine=first)
    # an operator's order issued just before the crash: pending, taken or even sent when the
    # engine dies, it must reach the broker exactly once
    buy = {"instrument_id": "NSE:RELIANCE", "side": "BUY", "qty": 3, "order_type": "MARKET"}
    before = store.issue_command("order", issued_by="ops", run_id="P1", args=buy)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    at_kill = store.read_order_events()
    held = sum(
        (p["qty"] if p["side"] == "BUY" else -p["qty"])
        for p in at_kill.loc[at_kill["status"] == FILL_EVENT, "payload"]
    )
    assert held > 0, "killed while holding a position (and with a working order)"
    seq_at_kill = max(int(c[3:]) for c in at_kill["client_id"] if re.fullmatch(r"P1-\d+", c))
    # issued while the engine is down: P1 is still "running" (it never finished), so a target
    # a buy: a sell could be rightly refused when the strategy's own sell of its 10 shares is
    # working at that moment (CNC holdings reserved, none free), which would say nothing here
    more = {**buy, "qty": 2}
    during = store.issue_command("order", issued_by="ops", run_id="P1", args=more)
    flatten = store.issue_command("cancel-order", issued_by="ops", args={"client_id": "P1-1"})
    assert during.targets == ("P1",) and flatten.targets == ("P1",)
    time.sleep(0.5)  # the market moves on while the engine is down

    second = engine()
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert "restored run P1" in out and "mode: paper" in out
    assert sim.wait(30) == 0
    state = json.loads(dump.read_text())

    events = store.read_order_events()
    assert events["mode"].eq("paper").all()
    orders = events[events["client_id"].str.match(r"^P1-\d+$")]
    manual = events[events["client_id"].str.match(r"^P1-C\d+$")]
    by_order = orders.groupby("client_id", sort=False)["status"].agg(list)
    # no order sent twice: one SUBMITTED per client id, one broker order per client id
    assert all(statuses.count("SUBMITTED") <= 1 for statuses in by_order)
    broker_ids = [o["client_id"] for o in state["orders"]]
    assert len(broker_ids) == len(set(broker_ids))
    fills = state["fills"]
    assert len({f["fill_id"] for f in fills}) == len(fills)
    # the audit trail is continuous: ids 1..N with no gap, each a valid lifecycle from NEW,
    # every broker order and fill recorded, and the restarted engine went on from the old ids
    seqs = sorted(int(c.rsplit("-", 1)[1]) for c in by_order.index)
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(_valid_path(s) for s in by_order), by_order.to_dict()
    assert set(broker_ids) <= set(by_order.index) | set(manual["client_id"])
    audited_fills = set(
        orders.loc[orders["status"] == FILL_EVENT, "payload"].map(lambda p: p["fill_id"])
    ) | set(manual.loc[manual["status"] == FILL_EVENT, "payload"].map(lambda p: p["fill_id"]))
    assert audited_fills == {f["fill_id"] for f in fills}
    assert seqs[-1] > seq_at_kill, "the restarted engine traded"
    # each command answered once, each operator order sent once, with its command's client id
    for command in (before, during):
        (answer,) = store.command_results(command.id).itertuples()
        assert answer.status == "done", answer.result
        cid = f"P1-C{command.id}"
        assert answer.result["client_id"] == cid
        assert broker_ids.count(cid) == 1
        statuses = manual.loc[manual["client_id"] == cid, "status"].tolist()
        assert statuses.count("SUBMITTED") == 1 and statuses.count(FILL_EVENT) == 1
    (answer,) = store.command_results(flatten.id).itertuples()
    assert answer.status == "done"  # P1-1 (the first buy) filled long ago: nothing to cancel
    taken = store.command_events().query("status == 'taken'")
    assert set(taken["command_id"]) == {before.id, during.id, flatten.id}
    # the run is recorded: finished, its orders and fills those of the audit trail
    assert store.run("P1")["status"] == "finished"
    recorded = store.run_fills("P1")
    assert set(recorded["fill_id"]) == {f["fill_id"] for f in fills}
    recorded_orders = set(store.run_orders("P1")["client_id"])
    assert recorded_orders == set(by_order.index) | set(manual["client_id"])
    # positions from the audit's fills (the strategy's and the operator's) equal the simulator's
    net = 0
    every = events[events["client_id"].str.match(r"^P1-C?\d+$")]
    for payload in every.loc[every["status"] == FILL_EVENT, "payload"]:
        net += payload["qty"] if payload["side"] == "BUY" else -payload["qty"]
    theirs = sum(p["qty"] for p in state["positions"] + state["holdings"])
    assert net == theirs


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("reliance_in_store")
@pytest.mark.parametrize("issued", ["after the restart", "while down"])
def test_kill_after_a_restart_stamps_every_audit_row_with_market_and_wall_time(
    store, paper_processes: PaperProcesses, issued: str
) -> None:
    """`velox kill` engages an engine restarted after `kill -9` (issued once it trades again, or
    while it is down and taken when it is back): its kill rows, the CANCELLED events of the
    orders it cancels, its risk events and alerts each carry the market time of the event
    (inside the replayed session, after the crash's last row: not 1970, not the wall clock)
    and, separately, the wall time they were written (inside this test)."""
    wall_start = datetime.now(UTC) - timedelta(seconds=1)
    probe = paper_processes.strategy(PROBE, "probe.py")
    engine = partial(paper_processes.engine, probe, "--run", "P1",
                     "--socket", str(paper_processes.socket))  # fmt: skip

    def velox_kill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "velox.cli", "kill", "--run", "P1", "--reason", "drill", *args],
            cwd=ROOT, env=paper_processes.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    sim = paper_processes.simulator(speed=1000.0)
    first = engine()
    wait_until(lambda: holding_and_working(store, "P1"), "the engine never traded", engine=first)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    at_crash = store.read_order_events(run_id="P1")
    crash_ts, crash_id = at_crash["ts"].max(), at_crash["id"].max()
    if issued == "while down":
        kill = velox_kill("--wait", "0.5")
        assert kill.returncode == 1 and "P1: no answer" in kill.stdout, kill.stdout + kill.stderr

    second = engine()
    if issued == "after the restart":

        def trading_again() -> bool:
            run = store.run("P1")
            beat, restarted = run["heartbeat_at"], run["restarted_at"]
            return run["restarts"] == 1 and beat is not None and beat > restarted

        wait_until(trading_again, "the restarted engine never beat", engine=second)
        kill = velox_kill()
        assert kill.returncode == 0 and "P1: engaged" in kill.stdout, kill.stdout + kill.stderr
    out, _ = second.communicate(timeout=120)
    wall_end = datetime.now(UTC) + timedelta(seconds=1)
    assert second.returncode == 0, out
    assert "restored run P1" in out
    assert sim.wait(30) == 0

    session = (pd.Timestamp(f"{DAY} 09:15", tz=IST), pd.Timestamp(f"{DAY} 15:30", tz=IST))
    wall = (wall_start, wall_end)

    def stamped(frame: pd.DataFrame, market: str, written: str | None = None) -> None:
        outside = frame[~frame[market].between(*session)]
        assert outside.empty, outside
        if written is not None:
            late = frame[~frame[written].between(*wall)]
            assert late.empty, late

    # the rows the restarted engine wrote: one kill, after the crash in market time, and the
    # cancels of the orders it had working, at or after the kill
    events = store.read_order_events(run_id="P1")
    after = events[events["id"] > crash_id]
    (kill_ts,) = after.loc[after["status"] == "RISK_KILL", "ts"]
    assert kill_ts > crash_ts
    cancelled = after[after["status"] == "CANCELLED"]
    assert not cancelled.empty and cancelled["ts"].ge(kill_ts).all(), cancelled
    commands = after[after["status"] == "COMMAND"]
    assert commands["payload"].map(lambda p: p["verb"]).tolist() == ["kill"]
    (command,) = store.commands().itertuples()
    (answer,) = store.command_results(command.id).itertuples()
    assert answer.status == "done" and answer.result["engaged"] is True
    stamped(events, "ts", "written_at")
    risk = store.run_risk_events("P1")
    (risk_kill_ts,) = risk.loc[risk["kind"] == "kill", "ts"]
    assert risk_kill_ts == kill_ts
    stamped(risk, "ts", "written_at")
    alerts = store.alerts(run_id="P1")
    assert "kill_switch" in set(alerts["kind"])
    stamped(alerts, "ts", "created_at")
    stamped(alerts, "last_seen_at")
    # the run's recorded state, written by the journal: market times too
    stamped(store.run_orders("P1"), "created_at")
    stamped(store.run_orders("P1"), "updated_at")
    stamped(store.run_fills("P1"), "ts")
    stamped(store.run_positions("P1"), "updated_at")
    # and the kill did its work: the account is flat at the simulator
    net = sum(
        p["qty"] if p["side"] == "BUY" else -p["qty"]
        for p in events.loc[events["status"] == FILL_EVENT, "payload"]
    )
    assert net == 0
