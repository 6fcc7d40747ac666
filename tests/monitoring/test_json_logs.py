"""``VELOX_LOG_FORMAT=json``: one JSON object per line, with the run's mode, account and run.

Checked on a real ``velox replay`` process (its stderr, line by line) and on an engine running
on its own thread, whose lines and those of the other threads carry the run context.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"ts", "level", "logger", "message", "mode", "account", "run"}


def test_velox_replay_logs_json_lines(store, tmp_path: Path) -> None:  # noqa: ANN001
    from velox.data import import_bars

    import_bars(ROOT / "data/bars/RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path),
           "VELOX_LOG_FORMAT": "json"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "velox.cli", "-v", "replay", "strategies/sma_cross.py",
         "--symbol", "NSE:RELIANCE", "--timeframe", "5m", "--record", "--run", "J7"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) >= 3, out.stderr
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert set(record) >= KEYS
        assert record["mode"] == "replay" and record["run"] == "J7"
        assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        ts = datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
        assert ts.utcoffset().total_seconds() == 0  # UTC
    assert any(r["logger"].startswith("velox.store") for r in records)
    # the plain-text default is untouched
    env.pop("VELOX_LOG_FORMAT")
    plain = subprocess.run([sys.executable, "-m", "velox.cli", "data", "list"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    for line in filter(str.strip, plain.stderr.splitlines()):
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_engine_thread_and_other_threads_carry_the_run_context() -> None:
    import threading

    import pandas as pd

    from velox.brokers.sim import SimBroker
    from velox.engine import Engine
    from velox.feeds import BarReplay
    from velox.modes import default_instruments
    from velox.monitoring import JsonFormatter, LogContextFilter
    from velox.risk import RiskEngine, RiskLimits

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("velox.test_json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        idx = pd.DatetimeIndex(["2025-05-20 09:15", "2025-05-20 09:20"]).tz_localize("Asia/Kolkata")
        bars = pd.DataFrame({"open": [1450.0, 1451.0], "high": [1452.0, 1453.0],
                             "low": [1449.0, 1450.5], "close": [1451.0, 1452.5]},
                            index=idx)  # fmt: skip
        master = default_instruments()

        class Probe:
            keys = [("NSE:RELIANCE", "5m")]

            def on_bar(self, bar: object) -> None:  # logged on the engine thread
                logger.info("bar closed")

        engine = Engine([], broker=SimBroker(master, initial_cash=1.0),
                        feed=BarReplay({("NSE:RELIANCE", "5m"): bars}).ticks(),
                        instruments=master, mode="paper", run_id="M3", watchers=[Probe()],
                        risk=RiskEngine(RiskLimits(), account="acct1"))  # fmt: skip
        engine.start()
        engine.join(60)
        other = threading.Thread(target=lambda: logger.warning("from another thread"))
        other.start()
        other.join()
        lines = stream.getvalue().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["message"] for r in records] == ["bar closed", "bar closed",
                                                    "from another thread"]  # fmt: skip
        for record in records:
            assert (record["mode"], record["account"], record["run"]) == ("dry-run", "acct1",
                                                                           "M3")  # fmt: skip
            assert record["logger"] == "velox.test_json_logs"
        assert records[-1]["level"] == "WARNING"
    finally:
        logger.removeHandler(handler)
