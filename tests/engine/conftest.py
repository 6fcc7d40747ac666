"""Fixtures for the engine tests: real NSE bars from ``data/bars``, the bundled master, and the
paper-trading set-up (bars in the store, a simulator, engines, the operator's ``velox``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd
import pytest

from velox.types import Instrument

if TYPE_CHECKING:
    from velox.brokers.sim import SimBroker
    from velox.store import Store

ROOT = Path(__file__).resolve().parents[2]
BARS = ROOT / "data" / "bars"
#: The session the paper tests trade (a regular NSE day in the bundled RELIANCE 5m file).
DAY = "2025-05-20"


def command_answer(store: Store, command_id: int, timeout: float = 30.0) -> tuple[str, dict]:
    """Return the status and result of a one-engine command once answered (or timed out)."""
    (row,) = store.wait_command(command_id, timeout).itertuples()
    return row.status, row.result or {}


def read_bars(name: str, timeframe: str) -> pd.DataFrame:
    """Return a bundled bar file, validated as ``velox data import`` would."""
    from velox.data import read_bar_file, validate_bars

    bars, _ = validate_bars(read_bar_file(BARS / name), timeframe=timeframe, source=name)
    return bars


@pytest.fixture(scope="session")
def master() -> Callable[[str], Instrument]:
    """Return the bundled instrument master's lookup."""
    from velox.modes import default_instruments

    return default_instruments()


@pytest.fixture(scope="session")
def reliance_5m() -> pd.DataFrame:
    """Return NSE:RELIANCE 5-minute bars from 2025 (real)."""
    return read_bars("RELIANCE_5m_2025.csv", "5m")


@pytest.fixture(scope="session")
def reliance_1d() -> pd.DataFrame:
    """Return NSE:RELIANCE daily bars 2017–2022 (real)."""
    return read_bars("RELIANCE_1d_2017_2022.csv.gz", "1d")


@pytest.fixture
def reliance_in_store(store: Store) -> pd.DataFrame:
    """Import the bundled NSE:RELIANCE 5m file into the test's store (as ``velox data import``
    does); return the stored bars of :data:`DAY`."""
    from velox.data import import_bars

    import_bars(BARS / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    return store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)


# -- paper trading as a user runs it: processes on the test's store ------------------------


@dataclass
class PaperProcesses:
    """Start ``velox paper`` engines and the paper simulator as processes on the test's store.

    ``env`` is the environment of every process: the test's store (``VELOX_DATABASE_URL``) and
    ``tmp_path`` as the data folder. The simulator's socket is ``tmp_path/sim.sock``.
    """

    store: Store
    tmp_path: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return self.tmp_path / "sim.sock"

    def strategy(self, source: str, name: str = "strategy.py") -> Path:
        """Write a strategy file (``source`` is dedented) and return its path."""
        path = self.tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    def engine(self, strategy: Path, *args: str) -> subprocess.Popen[str]:
        """Start ``velox paper STRATEGY ARGS…`` (stdout and stderr in one text pipe)."""
        cmd = [sys.executable, "-m", "velox.cli", "paper", str(strategy), *args]
        return subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip

    def simulator(self, *, speed: float, dump: Path | None = None) -> subprocess.Popen[bytes]:
        """Start the paper simulator on :attr:`socket`: NSE:RELIANCE 5m of :data:`DAY` at
        ``speed``× wall time, ₹10 lakh cash; ``dump``: where it writes its state at the end."""
        from velox.brokers.sim.paper import start_sim_server

        return start_sim_server(
            [("NSE:RELIANCE", "5m")], self.socket, speed=speed, initial_cash=1_000_000,
            start=DAY, end=DAY, dump_path=dump,
        )  # fmt: skip


@pytest.fixture
def paper_processes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PaperProcesses:
    """Return a :class:`PaperProcesses` on the test's store (the simulator, started from this
    process, reads the store's bars too: ``VELOX_DATABASE_URL`` is set here as well)."""
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path)}
    return PaperProcesses(store, tmp_path, env)


def holding_and_working(store: Store, run_id: str) -> bool:
    """Return whether run ``run_id``'s audit shows a fill and a resting limit order still working
    (the state the kill and crash tests act on: a position to square off, an order to cancel)."""
    from velox.oms import FILL_EVENT

    events = store.read_order_events(run_id=run_id)
    if events.empty or not events["status"].eq(FILL_EVENT).any():
        return False
    is_limit = events["payload"].map(lambda p: (p or {}).get("order_type") == "LIMIT")
    limits = events.loc[is_limit, "client_id"].unique()
    last = events.groupby("client_id")["status"].last()
    return bool(last.reindex(limits).isin(["OPEN", "TRIGGER_PENDING"]).any())


def wait_until(ready: Callable[[], bool], what: str, *, engine: subprocess.Popen[str] | None = None,
               timeout: float = 60.0) -> None:  # fmt: skip
    """Poll ``ready`` until it is true; fail naming ``what`` on timeout, or with the engine's
    output if ``engine`` ended meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        if engine is not None:
            assert engine.poll() is None, engine.stdout.read() if engine.stdout else ""
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- paper trading in this process: simulators on threads, the operator's `velox` ---------


@pytest.fixture
def serve_simulator(
    master: Callable[[str], Instrument], reliance_in_store: pd.DataFrame, tmp_path: Path
) -> Callable[..., tuple[SimBroker, Path]]:
    """Return ``serve(name, speed=…)``: serve a simulated exchange (₹10 lakh cash) replaying
    the stored NSE:RELIANCE 5m bars of :data:`DAY` at ``speed``× on ``tmp_path/<name>.sock``
    from a daemon thread; it returns the simulator's broker and socket once it listens."""
    from velox.brokers.sim import SimBroker
    from velox.brokers.sim.paper import SimServer
    from velox.feeds import BarReplay

    def serve(name: str, *, speed: float) -> tuple[SimBroker, Path]:
        sim = SimBroker(master, initial_cash=1_000_000)
        socket = tmp_path / f"{name}.sock"
        replay = BarReplay({("NSE:RELIANCE", "5m"): reliance_in_store})
        server = SimServer(sim, replay, socket, speed=speed, linger=5)
        threading.Thread(target=server.serve, daemon=True).start()
        assert server.ready.wait(10), "the simulator server did not start"
        return sim, socket

    return serve


@pytest.fixture
def store_settings(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point Velox's settings at the test's store and a data_dir in ``tmp_path``: for this
    process and for the processes it starts (the paper simulator, ``velox kill``)."""
    from velox.config import reset_settings

    monkeypatch.setenv("VELOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def operator_cli(store_settings: None) -> click.Group:
    """Return the ``velox`` command line (for click's CliRunner) on the test's store."""
    from velox.cli import _VeloxGroup
    from velox.cli_engine import register

    cli = _VeloxGroup(name="velox")
    register(cli)
    return cli
