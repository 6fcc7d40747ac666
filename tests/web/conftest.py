"""A real ``velox serve`` process on the test's store, and users made in it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from webtools import KEY

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def web_server(store, tmp_path: Path) -> Iterator[WebServer]:
    """``velox serve`` on a free port against ``store`` (its own process, as in production)."""
    import requests

    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_SECRET_KEY": KEY,
           "VELOX_DATA_DIR": str(tmp_path)}  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "velox.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    server = WebServer(f"http://localhost:{port}", process, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(server.url + "/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"velox serve did not start:\n{server.output()}")
        time.sleep(0.2)
    yield server
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def users(store):
    from velox.auth import Users

    return Users(store, key=KEY)


# -- a real browser: Debian's chromium driven by Playwright (no browser download) ----------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
#: Where the browser tests keep their screenshots (CI keeps the folder as an artifact).
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture
def chromium():
    """Debian's headless chromium (``.ci/run`` installs it); missing fails under CI=true.

    One per test: Playwright's sync API runs an event loop on this thread while it is open,
    and a later test calling ``asyncio.run`` must not find one running.
    """
    if not CHROMIUM.exists():
        message = f"no browser at {CHROMIUM}: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the browser tests must run)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
