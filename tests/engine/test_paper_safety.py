"""`velox paper` refuses what cannot work before it starts anything: a --socket path Velox did
not create (left untouched), bad options (no simulator left behind), and a second engine on a
running --run (the first keeps trading unharmed)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from subprocess import Popen

import pytest

from tests.engine.conftest import DAY, PaperProcesses, wait_until
from velox.brokers.sim.paper import socket_state
from velox.errors import ConfigError

HOLDER = """
from velox.strategy import Strategy


class Holder(Strategy):
    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_bar(self, ctx, bar):
        if ctx.position() == 0 and not ctx.open_orders():
            ctx.buy(10)
"""


@pytest.fixture
def paper(reliance_in_store: object, paper_processes: PaperProcesses) -> Callable[..., Popen[str]]:
    """Return ``paper(*args)``: start ``velox paper holder.py`` on :data:`DAY` with ``args``."""
    holder = paper_processes.strategy(HOLDER, "holder.py")
    return partial(paper_processes.engine, holder, "--start", DAY, "--end", DAY)


def _simulators(path: Path) -> list[int]:
    """Return the pids of processes serving ``path`` (from their command lines)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"velox.brokers.sim.paper" in cmdline and str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.postgres
def test_refused_starts_touch_nothing_and_leave_no_simulator(
    store, tmp_path: Path, paper: Callable[..., Popen[str]]
) -> None:
    regular = tmp_path / "notes.txt"
    regular.write_text("my notes\n")
    foreign = tmp_path / "other.sock"  # another program's socket: no Velox marker beside it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(foreign))
    sock = tmp_path / "sim.sock"
    cases = {
        ("--socket", str(regular)): "is not a socket",
        ("--socket", str(tmp_path)): "is a directory",
        ("--socket", str(foreign)): "Velox did not create",
        ("--speed", "nan"): "--speed nan must be a finite number > 0",
        ("--speed", "inf"): "--speed inf must be",
        ("--speed", "0"): "--speed 0.0 must be",
        ("--speed", "-1"): "--speed -1.0 must be",
        ("--run", "P 1"): "must be 1-10 ASCII letters or digits",
        ("--run", "P1-2"): "must be 1-10 ASCII letters or digits",
        ("--run", "ABCDEFGHIJK"): "must be 1-10 ASCII letters or digits",
        ("--cash", "nan"): "--cash nan must be",
        ("--start", "2025-13-01"): "--start '2025-13-01' is not a date",
        ("--end", "20/05/2025"): "--end '20/05/2025' is not a date",
        ("--end", "2025-05-19"): "--start 2025-05-20 is after --end 2025-05-19",
        ("--account", "a\tb"): "--account 'a\\tb' must be 1-64 printable",
    }
    runs_before = store.table_fingerprint("runs")
    try:
        for args, expected in cases.items():
            extra = () if "--socket" in args else ("--socket", str(sock))
            proc = paper(*args, *extra)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode != 0, (args, out)
            assert expected in out, (args, out)
            errors = [line for line in out.splitlines() if " INFO " not in line]
            assert len(errors) == 1 and "Traceback" not in out, out  # one line, no traceback
            assert not sock.exists() and not Path(f"{sock}.lock").exists()
            assert not _simulators(sock) and not _simulators(regular), args
        assert regular.read_text() == "my notes\n"  # untouched
        assert foreign.exists()
        with pytest.raises(ConfigError, match="Velox did not create"):
            socket_state(foreign)
    finally:
        listener.close()
    assert store.table_fingerprint("runs") == runs_before  # no run row was created


@pytest.mark.postgres
@pytest.mark.slow
def test_a_second_engine_on_a_running_run_is_refused(
    store, tmp_path: Path, paper: Callable[..., Popen[str]]
) -> None:
    sock = tmp_path / "sim.sock"
    first = paper("--run", "P7", "--speed", "2000", "--socket", str(sock))
    wait_until(lambda: not store.read_order_events(run_id="P7").empty,  # the first one trades
               "the first engine never traded", engine=first)  # fmt: skip
    second = paper("--run", "P7", "--speed", "2000", "--socket", str(sock))
    out, _ = second.communicate(timeout=60)
    assert second.returncode != 0
    assert f"run P7 is already running in another engine (pid {first.pid})" in out, out
    assert "Traceback" not in out
    assert first.poll() is None  # unharmed: still running, still connected
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert "disconnected" not in out and "lost the simulator" not in out, out
    assert store.run("P7")["status"] == "finished" and store.run("P7")["restarts"] == 0
    assert len(_simulators(sock)) <= 1  # the run's one simulator (lingering, then gone)
