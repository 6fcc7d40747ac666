"""Paper trading survives `kill -9` of the engine: state rebuilt, nothing sent twice, and the
operator commands pending at the kill or issued while it was down are each executed once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from velox.brokers.sim.paper import start_sim_server
from velox.oms import ALLOWED_TRANSITIONS, FILL_EVENT
from velox.types import OrderStatus

ROOT = Path(__file__).resolve().parents[2]
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


def _engine(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "velox.cli", "paper", str(tmp_path / "probe.py"),
           "--symbol", "NSE:RELIANCE", "--timeframe", "5m", "--run", "P1",
           "--socket", str(tmp_path / "sim.sock")]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


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
def test_engine_killed_mid_session_resumes_without_duplicates(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.data import import_bars

    import_bars(ROOT / "data/bars/RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    env = {**os.environ, "VELOX_DATABASE_URL": store.url}
    dump = tmp_path / "sim.json"
    sim = start_sim_server(
        [("NSE:RELIANCE", "5m")], tmp_path / "sim.sock", speed=1000.0, initial_cash=1_000_000,
        start="2025-05-20", end="2025-05-20", dump_path=dump,
    )  # fmt: skip
    first = _engine(tmp_path, env)
    deadline = time.monotonic() + 60
    while True:  # wait for a position and a working order, then kill -9 mid-session
        events = store.read_order_events()
        statuses = events.groupby("client_id")["status"].agg(list)
        filled = events["status"].eq(FILL_EVENT).any()
        working = any(s[-1] in ("OPEN", "TRIGGER_PENDING") for s in statuses)
        if filled and working:
            break
        assert first.poll() is None, first.stdout.read() if first.stdout else ""
        assert time.monotonic() < deadline, "the engine never traded"
        time.sleep(0.05)
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
    sell = {**buy, "side": "SELL", "qty": 2}
    during = store.issue_command("order", issued_by="ops", run_id="P1", args=sell)
    flatten = store.issue_command("cancel-order", issued_by="ops", args={"client_id": "P1-1"})
    assert during.targets == ("P1",) and flatten.targets == ("P1",)
    time.sleep(0.5)  # the market moves on while the engine is down

    second = _engine(tmp_path, env)
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
