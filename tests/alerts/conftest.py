"""Real servers on loopback for the alert-delivery tests.

* ``smtp``: an aiosmtpd server that offers STARTTLS on a self-signed certificate (made here
  with ``cryptography``), refuses mail before TLS and AUTH (LOGIN or PLAIN), and keeps every
  email it receives; it can be stopped and started again on the same port (SMTP down, up).
* ``bot``: an ``http.server`` standing in for the Telegram Bot API (and any webhook): it
  records every request and answers from a script (500, 429 with ``retry_after``) before
  answering ``{"ok": true}``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

USER, PASSWORD = "velox-bot", "s3cret-smtp-pw"
TOKEN = "123456:ABC-test-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1/localhost and its key; return paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )  # fmt: skip
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    return cert_path, key_path


@dataclass
class Received:
    """One email as the server got it, with how the session was secured."""

    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    tls: bool
    auth_mechanism: str | None
    at: float = field(default_factory=time.perf_counter)  # when it arrived (benchmarks)


@dataclass
class SmtpServer:
    port: int
    cert: Path
    key: Path
    exclude: tuple[str, ...] = ()
    received: list[Received] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    _controller: object = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):  # noqa: ANN001, ANN202, N802
                parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
                server.received.append(Received(
                    envelope.mail_from, list(envelope.rcpt_tos), parsed,
                    session.ssl is not None, server.mechanisms[-1] if server.mechanisms else None,
                ))  # fmt: skip
                return "250 OK"

        def authenticator(smtp, session, envelope, mechanism, data):  # noqa: ANN001, ANN202
            ok = (isinstance(data, LoginPassword) and data.login == USER.encode()
                  and data.password == PASSWORD.encode())  # fmt: skip
            if ok:
                server.mechanisms.append(mechanism)
            return AuthResult(success=ok, handled=False)  # the server answers 535 itself

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=context,
            require_starttls=True, auth_required=True, auth_require_tls=True,
            authenticator=authenticator, auth_exclude_mechanism=list(self.exclude),
            ready_timeout=10,
        )  # fmt: skip
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    """Yield a running STARTTLS + AUTH SMTP server on loopback."""
    cert, key = self_signed(tmp_path)
    server = SmtpServer(_free_port(), cert, key)
    server.start()
    yield server
    server.stop()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.perf_counter)  # when it arrived (benchmarks)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class BotServer:
    """A loopback HTTP server answering like the Telegram Bot API (and any webhook)."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    #: (status, JSON body) answered to the next requests, in order; then 200 {"ok": true}.
    script: list[tuple[int, dict]] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests


def start_bot() -> tuple[BotServer, ThreadingHTTPServer]:
    """Start a Bot API stand-in on loopback; return its state and server (shut it down)."""
    state = BotServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrived = time.perf_counter()
            if state.delay:
                time.sleep(state.delay)
            with state.lock:
                state.requests.append(Request(self.path, dict(self.headers), body, arrived))
                status, answer = state.script.pop(0) if state.script else (200, {"ok": True})
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server


@pytest.fixture
def bot() -> Iterator[BotServer]:
    """Yield a running Bot API stand-in on loopback (``bot.url`` is its root)."""
    state, server = start_bot()
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    """A settable aware clock for the worker (backoff, leases, windows are checked exactly)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def email_channel(server: SmtpServer, **changes: object):  # noqa: ANN201
    """Return an EmailChannel for ``server``: STARTTLS verified against its certificate."""
    from velox.alerts.channels import EmailChannel

    values = {"host": "127.0.0.1", "port": server.port, "sender": "velox@desk.example",
              "user": USER, "password": PASSWORD, "starttls": True,
              "ca_file": server.cert}  # fmt: skip
    values.update(changes)
    return EmailChannel(**values)  # type: ignore[arg-type]
