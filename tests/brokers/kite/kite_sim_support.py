"""Helpers of the Kite simulator tests: recorded mocks, shape comparison, a KiteTicker child.

Not a test module (no ``test_`` prefix): the simulator's test files import it (pytest puts
this folder on ``sys.path``; the tests have no ``__init__.py``).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from velox.testing import KITE_MOCKS

ROOT = Path(__file__).resolve().parents[3]
MOCKS = KITE_MOCKS
CHILD = Path(__file__).with_name("kite_ticker_child.py")
BARS = ROOT / "data" / "bars"
#: A regular NSE session in the bundled RELIANCE 5m file.
DAY = "2025-05-20"


def mock(name: str) -> object:
    """Return the ``data`` of a recorded Kite response (``orders`` → ``orders.json``)."""
    recorded = json.loads((MOCKS / f"{name}.json").read_text())
    return recorded.get("data", recorded)  # a postback has no envelope


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def shape_problems(ours: object, recorded: object, where: str = "data") -> list[str]:
    """Return how ``ours`` differs in shape from ``recorded`` (keys and JSON value types).

    ``null`` matches any type (Kite sends null for absent strings such as a missing tag); ints
    and floats are both numbers (JSON does not tell them apart); lists compare their items
    against the recorded first item; dicts must have exactly the recorded keys.
    """
    a, b = _kind(ours), _kind(recorded)
    if "null" in (a, b):
        return []
    if a != b:
        return [f"{where}: {a} where Kite sends {b}"]
    if a == "dict":
        assert isinstance(ours, dict) and isinstance(recorded, dict)
        problems = []
        missing, extra = set(recorded) - set(ours), set(ours) - set(recorded)
        if missing or extra:
            problems.append(f"{where}: missing {sorted(missing)}, extra {sorted(extra)}")
        for key in set(ours) & set(recorded):
            problems += shape_problems(ours[key], recorded[key], f"{where}.{key}")
        return problems
    if a == "list" and ours and recorded:
        assert isinstance(ours, list) and isinstance(recorded, list)
        kinds = {_kind(item) for item in recorded} - {"null"}
        if len(kinds) > 1:  # a record as a list (a candle): compare position by position
            if len(ours) != len(recorded):
                return [f"{where}: {len(ours)} items where Kite sends {len(recorded)}"]
            return [p for k, (x, y) in enumerate(zip(ours, recorded, strict=True))
                    for p in shape_problems(x, y, f"{where}[{k}]")]  # fmt: skip
        problems = []
        for item in ours:
            problems += shape_problems(item, recorded[0], f"{where}[]")
        return problems
    return []


def shape_matches_any(ours: dict, recorded_items: list) -> list[str]:
    """Return [] if ``ours`` has the shape of one of the recorded items, else the problems."""
    best: list[str] | None = None
    for item in recorded_items:
        problems = shape_problems(ours, item)
        if not problems:
            return []
        if best is None or len(problems) < len(best):
            best = problems
    return best or ["no recorded items"]


def reliance_day() -> pd.DataFrame:
    """Return the bundled NSE:RELIANCE 5m bars of :data:`DAY` (validated as on import)."""
    from velox.data import read_bar_file, validate_bars

    bars, _ = validate_bars(read_bar_file(BARS / "RELIANCE_5m_2025.csv"), timeframe="5m",
                            source="RELIANCE_5m_2025.csv")  # fmt: skip
    day = bars.index.tz_convert("Asia/Kolkata").strftime("%Y-%m-%d") == DAY
    return bars[day]


class TickerChild:
    """A ``KiteTicker`` in a child process (Twisted's reactor cannot restart in one process).

    It prints one JSON line per event (``connect``, ``ticks``, ``order``, ``close``,
    ``error``, ``reconnect``); :meth:`wait_for` reads them until a predicate holds.
    """

    def __init__(self, ws_url: str, api_key: str, access_token: str, tokens: list[int],
                 mode: str = "full", seconds: float = 40.0) -> None:  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), ws_url, api_key, access_token, mode,
             ",".join(map(str, tokens)), str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.events: list[dict] = []
        self._queue: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self._queue.put(json.loads(line))
            except ValueError:
                continue
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        """Return the first new event for which ``predicate`` holds (fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching ticker event within {timeout} s: "
                                     f"{self.events[-5:]}; stderr: {self.stderr()}")  # fmt: skip
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError(f"ticker child ended: {self.events[-5:]}; "
                                     f"stderr: {self.stderr()}")  # fmt: skip
            self.events.append(event)
            if predicate(event):
                return event

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()[-2000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
