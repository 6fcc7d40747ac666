"""``velox workbench`` (what ``make run`` starts): a paper engine, the web server with demo
users and the alert delivery worker; the banner's credentials log in over HTTP; an alert
stored while it runs reaches the (loopback) Telegram Bot API; Ctrl-C stops every process it
started; a second start reuses the users and starts the next demo run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.conftest import TOKEN, BotServer, start_bot
from tests.engine.conftest import reliance_in_store  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> set[int]:
    """Every live process whose session or parent chain leads to ``pid`` (from /proc)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(proc.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def start(env: dict[str, str], port: int, log: Path) -> tuple[subprocess.Popen, str]:
    out = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "workbench", "--port", str(port), "--speed", "600"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while "Ctrl-C stops everything" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return process, log.read_text()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone
        return b""


def _is_velox(pid: int) -> bool:
    try:
        return b"velox" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone
        return False


def stop(process: subprocess.Popen, log: Path) -> None:
    family = children_of(process.pid)
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, log.read_text()[-2000:]
    deadline = time.monotonic() + 15
    while alive := [p for p in family if _is_velox(p)]:
        assert time.monotonic() < deadline, f"left running: {alive}"
        time.sleep(0.2)


@pytest.fixture
def bot() -> Iterator[BotServer]:
    """The Telegram Bot API stand-in of the alert tests, on loopback."""
    state, server = start_bot()
    yield state
    server.shutdown()
    server.server_close()


def test_workbench_logs_in_stops_cleanly_and_resumes(store, reliance_in_store, tmp_path, bot):  # noqa: F811
    import pyotp
    import requests

    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path),
           "VELOX_TELEGRAM_TOKEN": TOKEN, "VELOX_TELEGRAM_CHAT_ID": "4242",
           "VELOX_TELEGRAM_API_URL": bot.url}  # fmt: skip
    env.pop("VELOX_SECRET_KEY", None)
    port = free_port()
    process, banner = start(env, port, tmp_path / "wb1.log")
    try:
        # make run delivers alerts: its `velox alerts deliver` child runs, and an alert stored
        # meanwhile reaches Telegram (sent by that child or by the paper engine's own worker,
        # whichever claims it first: velox paper delivers beside its engine too)
        workers = [p for p in children_of(process.pid) if _cmdline(p).endswith(
            b"velox.cli\0alerts\0deliver\0")]  # fmt: skip
        assert len(workers) == 1, [_cmdline(p) for p in children_of(process.pid)]
        alert_id = store.raise_alert(kind="pipeline_failed", severity="warning",
                                     message="workbench delivery check")  # fmt: skip

        def delivered() -> list[str]:
            texts = [r.json()["text"] for r in list(bot.requests)
                     if r.path == f"/bot{TOKEN}/sendMessage"]  # fmt: skip
            return [t for t in texts if f"alert id: {alert_id}\n" in t]

        deadline = time.monotonic() + 60
        while not delivered():
            assert time.monotonic() < deadline, "the workbench did not deliver the alert"
            time.sleep(0.2)
        (text,) = delivered()
        assert text.startswith("[Velox WARNING] pipeline_failed: workbench delivery check\n")

        assert f"http://localhost:{port}/trading" in banner and "DEMO1" in banner
        credentials = tmp_path / "demo" / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "demo" / "secret.key").stat().st_mode) == 0o600
        users = {u["username"]: u for u in json.loads(credentials.read_text())}
        assert {u: users[u]["role"] for u in users} == {
            "admin": "admin", "trader": "trader", "investor": "investor"}  # fmt: skip
        row = re.search(r"^\s+trader\s+(\S+)\s+(\S+)\s+(\d{6})$", banner, re.M)
        assert row and row.group(1) == users["trader"]["password"]
        assert row.group(2) == users["trader"]["totp_secret"]

        client = requests.Session()
        code = pyotp.TOTP(users["trader"]["totp_secret"]).now()
        reply = client.post(f"http://localhost:{port}/login", allow_redirects=False,
                            data={"username": "trader", "password": users["trader"]["password"],
                                  "totp": code})  # fmt: skip
        assert reply.status_code == 303 and reply.headers["Location"] == "/trading"
        runs = client.get(f"http://localhost:{port}/api/runs").json()
        demo = [r for r in runs if r["run_id"] == "DEMO1"]
        assert demo and demo[0]["status"] == "running" and demo[0]["account"] == "demo"
        deadline = time.monotonic() + 60
        while store.run_quotes("DEMO1").empty:  # the engine trades: its ticks reach the store
            assert time.monotonic() < deadline
            time.sleep(0.2)
        log_text = (tmp_path / "wb1.log").read_text()
        assert log_text.count(users["trader"]["password"]) == 1  # the banner, never a log line
    finally:
        stop(process, tmp_path / "wb1.log")

    # A second start: the same users (the password still works), the next demo run.
    process, banner = start(env, port, tmp_path / "wb2.log")
    try:
        assert "DEMO2" in banner and users["trader"]["password"] in banner
        form = {"username": "investor", "password": users["investor"]["password"], "totp": ""}
        reply = requests.post(f"http://localhost:{port}/login", data=form, allow_redirects=False)
        assert reply.status_code == 303 and reply.headers["Location"] == "/investor"
    finally:
        stop(process, tmp_path / "wb2.log")
