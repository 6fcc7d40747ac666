"""One `velox kill` (no --account) reaches two `velox paper` engines running as OS processes on
one store, each holding a position and a resting order; one of them is blocked inside C code
(``time.sleep`` on its main thread, with the watchdog's budget set out of reach, so only the kill
thread can act). Both acknowledge, both end flat at their simulators with nothing working, and
`velox kill` names a third, stale engine row (no process behind it) as not answering (exit 1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import DAY, ROOT, PaperProcesses, holding_and_working, wait_until
from velox.types import TERMINAL_STATUSES

STRATEGY = """
import os
import time

from velox.strategy import Strategy
from velox.types import OrderType


class Holds(Strategy):
    timeframe = "5m"

    def on_bar(self, ctx, bar):
        if not ctx.position():
            if not ctx.open_orders():
                ctx.buy(20)
            return
        if not ctx.open_orders():
            price = ctx.instrument().snap_price(bar.close * 0.98, "down")
            ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
            return
        if os.environ.get("HANG_IN_C") == "1":
            time.sleep(3600)  # inside C: no asynchronous exception reaches it
"""


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("reliance_in_store")
def test_one_kill_reaches_two_engine_processes_and_names_the_silent_one(
    store, tmp_path: Path, paper_processes: PaperProcesses
) -> None:
    from velox.brokers.sim.paper import start_sim_server

    strategy = paper_processes.strategy(STRATEGY, "holds.py")
    sims, engines, dumps = {}, {}, {}
    for run_id, account, hang in (("KA", "A1", "0"), ("KB", "B2", "1")):
        sock, dumps[run_id] = tmp_path / f"{run_id}.sock", tmp_path / f"{run_id}.json"
        sims[run_id] = start_sim_server(
            [("NSE:RELIANCE", "5m")], sock, speed=500.0, initial_cash=1_000_000,
            start=DAY, end=DAY, dump_path=dumps[run_id],
        )  # fmt: skip
        env = {**paper_processes.env, "HANG_IN_C": hang, "VELOX_CALLBACK_BUDGET": "3600"}
        engines[run_id] = subprocess.Popen(
            [sys.executable, "-m", "velox.cli", "paper", str(strategy), "--symbol",
             "NSE:RELIANCE", "--timeframe", "5m", "--run", run_id, "--account", account,
             "--socket", str(sock)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    store.create_run(mode="paper", account="C3", initial_cash=1e6, run_id="KC")  # stale
    try:
        for run_id, engine in engines.items():
            wait_until(lambda r=run_id: holding_and_working(store, r),
                       f"{run_id} never held a position with a resting order",
                       engine=engine)  # fmt: skip
        import time

        time.sleep(1.5)  # KB is inside time.sleep by now (a bar every 0.6 s at 500x)
        kill = subprocess.run(
            [sys.executable, "-m", "velox.cli", "kill", "--reason", "drill", "--wait", "15"],
            cwd=ROOT, env=paper_processes.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert kill.returncode == 1, kill.stdout + kill.stderr  # KC did not answer
        assert "KA: engaged" in kill.stdout and "KB: engaged" in kill.stdout, kill.stdout
        assert "KC: no answer" in kill.stdout, kill.stdout
        assert engines["KB"].poll() is None  # still blocked: the kill thread did it
        for run_id, sim in sims.items():
            assert sim.wait(120) == 0, run_id
            state = json.loads(dumps[run_id].read_text())
            assert sum(p["qty"] for p in state["positions"] + state["holdings"]) == 0, run_id
            assert state["orders"] and all(
                o["status"] in {s.value for s in TERMINAL_STATUSES} for o in state["orders"]
            ), run_id
            cancelled = [o for o in state["orders"] if o["qty"] == 5]
            assert [o["status"] for o in cancelled] == ["CANCELLED"], run_id
            assert "kill_switch" in store.alerts(run_id=run_id)["kind"].tolist(), run_id
            statuses = store.read_order_events(run_id=run_id)["status"].tolist()
            assert statuses.count("RISK_KILL") == 1, run_id
        out, _ = engines["KA"].communicate(timeout=120)
        assert engines["KA"].returncode == 0, out
    finally:
        for proc in (*engines.values(), *sims.values()):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
