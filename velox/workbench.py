"""``velox workbench``: the whole product on one machine, what ``make run`` starts.

It starts two processes on the embedded store (or ``VELOX_DATABASE_URL``) and watches them:

* a **paper engine** (``velox paper``): the example SMA-crossover strategy trading the bundled
  NSE:RELIANCE 5-minute bars of the last sessions at :data:`DEFAULT_SPEED`× wall time against
  the simulated exchange, recorded in the store like any paper run;
* the **web server** (``velox serve``): login, the trader console, the users page, the
  investor view;
* the **alert delivery worker** (``velox alerts deliver``): the stored alerts of the demo run
  (and anything else) to the configured Telegram chat, mailbox and webhook (docs/alerts.md;
  with no channel configured it idles).

Demo users are made once — ``admin``, ``trader`` (may trade the demo account) and ``investor``
(sees it) — with random passwords and TOTP secrets kept in ``<data_dir>/demo/credentials.json``
(mode 0600; the file is the only copy of the passwords). The TOTP secrets are encrypted in the
store under the credential key: ``VELOX_SECRET_KEY`` when set, else a demo key made once in
``<data_dir>/demo/secret.key`` (0600) and handed to both processes. A second start reuses
users, key, store and data (nothing is imported again) and starts the next demo run
(``DEMO2`` …), the earlier ones staying in the store for the investor view; it resumes the
last one instead if its simulator still lives (the engine was killed, not stopped).

Ctrl-C (or SIGTERM) stops every process it started — the server, the engine and the engine's
simulator — with SIGINT to their process groups, then SIGKILL after a grace period; if one of
them dies the others are stopped and the exit status says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from velox.errors import ConfigError

if TYPE_CHECKING:
    from velox.store import Store

#: Replay speed of the demo paper run (× wall time: one 5-minute bar every 5 s).
DEFAULT_SPEED = 60.0
#: The demo strategy and market: bundled files, so the demo works offline on a fresh clone.
STRATEGY = Path(__file__).resolve().parent.parent / "strategies" / "sma_cross.py"
DEMO_MARKET = {"symbol": "NSE:RELIANCE", "timeframe": "5m", "start": "2025-06-16",
               "end": "2025-06-26", "params": ("fast=5", "slow=20")}  # fmt: skip
DEMO_ACCOUNT = "demo"
#: Seconds a child gets to stop after SIGINT before it is killed.
GRACE_S = 20.0


@dataclass(frozen=True)
class DemoUser:
    """One demo login: what ``credentials.json`` holds for it."""

    username: str
    role: str
    password: str
    totp_secret: str | None

    def code(self) -> str:
        """The current TOTP code ("" for a user without an authenticator)."""
        import pyotp

        return pyotp.TOTP(self.totp_secret).now() if self.totp_secret else ""


def demo_folder() -> Path:
    from velox.config import get_settings

    folder = Path(get_settings().data_dir) / "demo"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def demo_key(folder: Path) -> str:
    """The credential key of the demo: ``VELOX_SECRET_KEY``, else the demo's own key file."""
    from velox.config import get_settings
    from velox.secrets import generate_key

    given = get_settings().secret_key
    if given:
        return given
    path = folder / "secret.key"
    if not path.exists():
        _write_private(path, generate_key() + "\n")
    return path.read_text().strip()


def demo_users(store: Store, key: str, folder: Path) -> list[DemoUser]:
    """The demo users, made on first use and kept in ``credentials.json`` (0600).

    A demo user missing from the store is added; one in the store but not in the file (the
    file was deleted) gets a new password and TOTP secret, since the file is the only copy.
    """
    import secrets as random

    from velox.auth import Users

    users = Users(store, key=key)
    path = folder / "credentials.json"
    kept = {}
    if path.exists():
        kept = {u["username"]: DemoUser(**u) for u in json.loads(path.read_text())}
    known = {u.username for u in users.list()}
    out = []
    for name, role in (("admin", "admin"), ("trader", "trader"), ("investor", "investor")):
        user = kept.get(name)
        if user is None or name not in known:
            password = random.token_urlsafe(12)
            if name in known:
                users.set_password(name, password, by="workbench")
                secret = None
                if role != "investor":
                    secret = users.reset_2fa(name, by="workbench").totp_secret
            else:
                secret = users.add(name, role, password, totp=role != "investor",
                                   by="workbench").totp_secret  # fmt: skip
            user = DemoUser(name, role, password, secret)
        if role != "admin":
            users.link(name, accounts=[DEMO_ACCOUNT], by="workbench")
        out.append(user)
    _write_private(path, json.dumps([asdict(u) for u in out], indent=2) + "\n")
    return out


def demo_run_id(store: Store) -> str:
    """The demo run to start: the last ``DEMO<n>`` while its simulator lives, else the next."""
    from velox.brokers.sim.paper import paper_socket, socket_state

    runs = store.runs(account=DEMO_ACCOUNT)
    numbers = [int(m.group(1)) for r in runs["run_id"] if (m := re.fullmatch(r"DEMO(\d+)", r))]
    if not numbers:
        return "DEMO1"
    last = f"DEMO{max(numbers)}"
    if socket_state(paper_socket(last)) == "live":
        return last
    return f"DEMO{max(numbers) + 1}"


def paper_command(run_id: str, speed: float) -> list[str]:
    market = DEMO_MARKET
    command = [sys.executable, "-m", "velox.cli", "paper", str(STRATEGY), "--symbol",
               market["symbol"], "--timeframe", market["timeframe"], "--start", market["start"],
               "--end", market["end"], "--speed", f"{speed:g}", "--run", run_id, "--account",
               DEMO_ACCOUNT]  # fmt: skip
    for param in market["params"]:
        command += ["--param", param]
    return command


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGINT to the child's process group (a paper engine's simulator too), SIGKILL to
        what is left after :data:`GRACE_S`."""
        try:
            os.killpg(self.process.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            self.process.poll()
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def stop_simulator(run_id: str) -> None:
    """Stop the simulator of a demo run: it runs in its own session on purpose (it outlives an
    engine crash so a restart resumes), so stopping the engine does not stop it."""
    from velox.brokers.sim.paper import paper_socket

    wanted = ["--socket", str(paper_socket(run_id))]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "velox.brokers.sim.paper" in argv and any(
            argv[i : i + 2] == wanted for i in range(len(argv) - 1)
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGINT)


def banner(url: str, users: list[DemoUser], run_id: str | None, folder: Path) -> str:
    lines = [
        "",
        "Velox workbench",
        f"  trader console  {url}/trading",
        f"  users (admin)   {url}/admin",
        f"  investor view   {url}/investor",
        f"  log in at       {url}/login",
        "",
        "  user       password            TOTP secret                        code now",
    ]
    for u in users:
        lines.append(f"  {u.username:<10} {u.password:<19} {u.totp_secret or '-':<34} "
                     f"{u.code() or '-'}")  # fmt: skip
    lines += [
        "",
        f"  paper run {run_id} (account {DEMO_ACCOUNT}) trading {DEMO_MARKET['symbol']} "
        f"{DEMO_MARKET['timeframe']} bars"
        if run_id
        else "  no paper run (--no-paper)",
        f"  credentials: {folder / 'credentials.json'} · fresh codes: velox workbench --codes",
        "  alerts: delivered by `velox alerts deliver` to the configured channels (docs/alerts.md)",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _wait_ready(url: str, children: list[Child], store: Store, run_id: str | None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 120
    server_up = run_up = False
    while not (server_up and run_up):
        for child in children:
            if child.process.poll() is not None:
                raise ConfigError(f"{child.name} exited with status {child.process.returncode} "
                                  "while starting (its output is above)")  # fmt: skip
        if not server_up:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as reply:
                    server_up = reply.status == 200
            except (urllib.error.URLError, OSError):
                pass
        if not run_up:
            run_up = run_id is None or run_id in set(store.runs(status="running")["run_id"])
        if time.monotonic() > deadline:
            raise ConfigError("the workbench did not start within 120 s")
        time.sleep(0.2)


def run_workbench(
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    speed: float = DEFAULT_SPEED,
    paper: bool = True,
    echo: Callable[[str], None] = print,
) -> int:
    """Start the workbench and block until Ctrl-C (0) or a child's death (1)."""
    from velox.store import open_store

    store = open_store()
    folder = demo_folder()
    key = demo_key(folder)
    users = demo_users(store, key, folder)
    # The children use this process's server (an embedded one stays up while it runs).
    env = {**os.environ, "VELOX_SECRET_KEY": key, "VELOX_DATABASE_URL": store.url}
    run_id = demo_run_id(store) if paper else None
    children: list[Child] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve = [sys.executable, "-m", "velox.cli", "serve", "--port", str(port), "--address",
                 address]  # fmt: skip
        children.append(Child("velox serve", subprocess.Popen(serve, env=env,
                                                              start_new_session=True)))  # fmt: skip
        deliver = [sys.executable, "-m", "velox.cli", "alerts", "deliver"]
        worker = subprocess.Popen(deliver, env=env, start_new_session=True)
        children.append(Child("velox alerts deliver", worker))
        if run_id is not None:
            children.append(Child(f"velox paper ({run_id})", subprocess.Popen(
                paper_command(run_id, speed), env=env, start_new_session=True)))  # fmt: skip
        host = "localhost" if address in ("127.0.0.1", "::1", "0.0.0.0") else address
        url = f"http://{host}:{port}"
        _wait_ready(url, children, store, run_id)
        echo(banner(url, users, run_id, folder))
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    if child.name.startswith("velox paper") and child.process.returncode == 0:
                        echo(f"{child.name} finished its replay; the console stays up")
                        children.remove(child)
                        break
                    echo(f"error: {child.name} exited with status {child.process.returncode}")
                    return 1
            time.sleep(0.2)
        echo("stopping the workbench …")
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        if run_id is not None:
            stop_simulator(run_id)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_codes(echo: Callable[[str], None] = print) -> None:
    """Print the demo users' current TOTP codes (``velox workbench --codes``)."""
    path = demo_folder() / "credentials.json"
    if not path.exists():
        raise ConfigError(f"no demo users yet ({path} is missing): run `velox workbench` first")
    for user in (DemoUser(**u) for u in json.loads(path.read_text())):
        echo(f"{user.username:<10} {user.code() or '- (no 2FA)'}")
