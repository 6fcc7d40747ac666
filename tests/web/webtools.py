"""Helpers of the web tests: an RFC 6238 reference, the test key and password, a form login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from velox.secrets import generate_key

KEY = generate_key()
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def rfc6238(secret: str, t: float, step: int = 30, digits: int = 6) -> str:
    """The TOTP code of ``secret`` (base32) at time ``t``, as RFC 6238 defines it."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(t // step)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def login(server: Any, username: str, totp_secret: str | None, *, at: float | None = None):
    """A requests session logged in through the form (a fresh TOTP step when needed)."""
    import requests

    client = requests.Session()
    code = rfc6238(totp_secret, at if at is not None else time.time()) if totp_secret else ""
    reply = client.post(server.url + "/login",
                        data={"username": username, "password": PASSWORD, "totp": code},
                        allow_redirects=False)  # fmt: skip
    assert reply.status_code == 303, (reply.status_code, reply.text[-300:])
    client.headers["X-CSRF-Token"] = client.cookies["velox_csrf"]
    return client


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


def start_web_server(store, folder: Path, *args: str) -> Iterator[WebServer]:
    """Run ``velox serve`` on a free port against ``store`` until the generator is closed."""
    import requests

    port = free_port()
    log = folder / "serve.log"
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_SECRET_KEY": KEY,
           "VELOX_DATA_DIR": str(folder)}  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "velox.cli", "serve", "--port", str(port), *args],
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
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
