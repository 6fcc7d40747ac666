"""The investor report: one locked-down Voila child of ``velox serve``, behind its login.

``velox serve`` starts :class:`ReportProcess`: ``python -m velox.web.voila``, a Voila server
bound to 127.0.0.1 on a free port, serving only ``dashboards/investor.ipynb`` under the base
URL :data:`PREFIX`. The browser never talks to it: :func:`routes` adds to the web server

- ``/report/``: the report page. The session cookie is resolved (none: 302 to ``/login``);
  any identity header the browser sent is dropped and a signed one
  (:func:`velox.web.identity.sign_identity`) is set; the query string is dropped, so nothing in
  the URL reaches the kernel. The page names its kernel id; the proxy records the kernel as
  the session user's.
- ``/report/voila/{static,templates,labextensions,api/themes}/…``: Voila's assets (GET, any
  logged-in user).
- ``/report/api/kernels/<id>/channels``: the kernel websocket, only for the user whose page
  started that kernel (else 403). Messages from the browser pass only when they are what
  Voila's widget manager needs to *read* state (:func:`client_message_allowed`); every other
  one (``execute_request``, ``complete_request``, ``inspect_request``, ``history_request``,
  ``shutdown_request``, ``interrupt_request``, widget updates and clicks, stdin and control
  channel messages, binary frames of the old protocol) is dropped, logged and audited as
  ``forbidden``. The session is re-checked on every message.
- ``/report/api/kernels/<id>``: GET (the kernel's state, asked for before the websocket
  opens) and ``/report/voila/api/shutdown/<id>``: POST (Voila ends the kernel on
  ``beforeunload``), each for the page's own kernel only (else 403).

Everything else under ``/report/`` is 404, whatever Voila would answer: ``api/kernels``,
other methods on ``api/kernels/<id>``, ``api/contents``, ``api/sessions``, ``terminals``,
``voila/files``, ``voila/render``, ``voila/tree``, ``login`` and more.

The Voila child itself is configured shut (:func:`voila_config`): one notebook (no tree, no
contents API; the Voila application has no terminals or file browser at all), sources stripped,
no tracebacks, no template or theme override from the URL, no file served from the notebook
folder, a per-process token required on every page, kernel and API request (sent only by
the proxy; Voila's static JavaScript and CSS are public, as in any Voila), the
prelaunch hook refusing any page request without a valid, unexpired, never-used signed
identity (403, before a kernel starts), and Voila's own kernel-message allowlist behind ours.
It gets no credential key (``VELOX_SECRET_KEY`` is removed from its environment), and it
exits when its parent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httputil import HTTPHeaders
from tornado.web import HTTPError, RedirectHandler, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler, websocket_connect

from velox.web.identity import HEADER, SECRET_ENV, NotSignedIn, sign_identity, verify_identity

if TYPE_CHECKING:
    from velox.auth import Session
    from velox.web.server import WebApp

log = logging.getLogger(__name__)

__all__ = ["NOTEBOOK", "PREFIX", "ReportProcess", "client_message_allowed", "routes"]

#: Where the report is served on the web server (and Voila's base URL).
PREFIX = "/report/"
#: The one notebook Voila serves.
NOTEBOOK = Path(__file__).resolve().parents[2] / "dashboards" / "investor.ipynb"
#: Environment variable giving the Voila child its access token (removed once read).
TOKEN_ENV = "VELOX_REPORT_TOKEN"
#: The kernel websocket protocol Jupyter's clients prefer (binary frames with offsets).
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
#: Seconds an idle kernel with no browser connected lives (Voila's page shuts it on unload).
KERNEL_IDLE_TIMEOUT = 300
#: Seconds the proxy waits for a Voila child that has not started listening yet.
STARTUP_S = 60.0
#: Largest message accepted from the browser on the kernel websocket.
MAX_CLIENT_MESSAGE = 1 << 20

_KERNEL_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_KERNEL_IN_PAGE = re.compile(rb'"kernelId":\s*"(' + _KERNEL_ID.encode() + rb')"')
_ASSET = re.compile(r"voila/(static|templates|labextensions|api/themes)/[\w\-./@~+%]+")
_KERNEL_INFO = re.compile(r"api/kernels/(" + _KERNEL_ID + r")")
_SHUTDOWN = re.compile(r"voila/api/shutdown/(" + _KERNEL_ID + r")")
#: Headers of the browser's request passed to Voila (never Cookie, Authorization or ours).
_REQUEST_HEADERS = ("Accept", "Accept-Language", "If-None-Match", "If-Modified-Since",
                    "User-Agent")  # fmt: skip
#: Headers of Voila's reply passed to the browser (never Set-Cookie).
_REPLY_HEADERS = ("Content-Type", "Cache-Control", "Pragma", "Expires", "ETag", "Last-Modified")

#: Widget-manager messages that only read state: the whole of what the browser may send.
_READ_ONLY = frozenset({"kernel_info_request", "comm_info_request", "comm_close"})
_READ_TARGETS = frozenset({"jupyter.widget.control"})
_READ_METHODS = frozenset({"request_states", "request_state"})


def client_message_allowed(frame: str | bytes, *, v1: bool) -> tuple[bool, str]:
    """Return whether a browser→kernel websocket frame may pass, and its message type.

    Passes only ``kernel_info_request``, ``comm_info_request``, ``comm_close``, a
    ``comm_open`` of the widget control target and ``comm_msg`` asking for widget state
    (``request_state[s]``), all on the ``shell`` channel. Anything else, or a frame that does
    not parse, is refused: code execution, completion, inspection, history, shutdown and
    interrupt requests, widget updates and events, stdin replies, the control channel.

    Examples
    --------
    >>> msg = {"channel": "shell", "header": {"msg_type": "execute_request"},
    ...        "content": {"code": "1"}}
    >>> client_message_allowed(json.dumps(msg), v1=False)
    (False, 'execute_request')
    """
    try:
        channel, header, content = _parse(frame, v1=v1)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        return False, "unparsable"
    msg_type = str(header.get("msg_type", "?"))
    if channel != "shell":
        return False, f"{channel}:{msg_type}"
    if msg_type in _READ_ONLY:
        return True, msg_type
    if msg_type == "comm_open":
        return content.get("target_name") in _READ_TARGETS, msg_type
    if msg_type == "comm_msg":
        data = content.get("data")
        return isinstance(data, dict) and data.get("method") in _READ_METHODS, msg_type
    return False, msg_type


def _parse(frame: str | bytes, *, v1: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Return (channel, header, content) of a Jupyter kernel websocket frame."""
    if isinstance(frame, str):  # the legacy protocol's JSON text frames
        message = json.loads(frame)
        return str(message["channel"]), dict(message["header"]), dict(message["content"])
    if not v1:  # legacy binary frames carry buffers: a read-only report needs none
        raise ValueError("binary frame on the legacy protocol")
    count = int.from_bytes(frame[:8], "little")
    if not 5 < count < 64:
        raise ValueError("bad offset count")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
    header, content = json.loads(parts[1]), json.loads(parts[4])
    if not isinstance(header, dict) or not isinstance(content, dict):
        raise TypeError("header and content must be objects")
    return parts[0].decode("utf-8"), header, content


# -- the child process -----------------------------------------------------------------------


@dataclass
class ReportProcess:
    """The Voila child of one web server: its port, token, signing secret and kernels' owners."""

    notebook: Path = NOTEBOOK
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: kernel id → user name of the page that started it (filled by the proxy).
    owners: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    started_at: float = 0.0

    def start(self) -> ReportProcess:
        """Start Voila (it listens a few seconds later; the proxy answers 503 until then)."""
        from velox.web.server import free_port

        if not self.notebook.is_file():
            raise FileNotFoundError(f"the investor report {self.notebook} is missing")
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if k != "VELOX_SECRET_KEY"}
        env[SECRET_ENV] = self.secret
        env[TOKEN_ENV] = self.token
        # the kernel runs in dashboards/: it must import the same velox as this process
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "velox.web.voila", "--port", str(self.port),
                   "--parent", str(os.getpid()), "--notebook", str(self.notebook)]  # fmt: skip
        self.process = subprocess.Popen(command, env=env, cwd=self.notebook.parent)
        self.started_at = time.monotonic()
        log.info("investor report: Voila (pid %d) on 127.0.0.1:%d%s", self.process.pid,
                 self.port, PREFIX)  # fmt: skip
        return self

    def starting(self) -> bool:
        """Whether Voila is alive but may not listen yet (its first :data:`STARTUP_S`)."""
        return self.alive() and time.monotonic() - self.started_at < STARTUP_S

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}{path}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Voila (it shuts its kernels down); kill it if it does not end in ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def own(self, kernel_id: str, username: str) -> None:
        now = time.monotonic()
        for stale in [k for k, (_, t) in self.owners.items() if now - t > 86_400]:
            del self.owners[stale]
        self.owners[kernel_id] = (username, now)

    def owner(self, kernel_id: str) -> str | None:
        entry = self.owners.get(kernel_id)
        return entry[0] if entry else None


class _IdentityCheck:
    """Voila's prelaunch hook: no kernel starts without a valid, never-used signed identity."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: dict[str, int] = {}

    def __call__(self, request: Any, notebook: Any, cwd: str) -> None:
        try:
            identity = verify_identity(request.request.headers.get(HEADER), self.secret)
        except NotSignedIn as exc:
            log.warning("report refused (%s) from %s", exc.reason, request.request.remote_ip)
            raise HTTPError(403, "not signed in") from None
        now = time.time()
        self.seen = {n: e for n, e in self.seen.items() if e > now}
        if identity.nonce in self.seen:
            log.warning("report refused (identity token replayed) for %s", identity.username)
            raise HTTPError(403, "not signed in")
        self.seen[identity.nonce] = identity.expires


def voila_config(*, port: int, notebook: Path, token: str, secret: str) -> Any:
    """Return the traitlets Config of the locked-down Voila child (see the module docstring)."""
    from traitlets.config import Config

    config = Config()
    voila = config.Voila
    voila.ip = "127.0.0.1"
    voila.port = port
    voila.port_retries = 0
    voila.open_browser = False
    voila.base_url = PREFIX
    voila.root_dir = str(notebook.parent)
    voila.notebook_path = str(notebook)
    voila.token = token
    voila.config_file_paths = []  # no voila.json/voila.py from the folder or ~/.jupyter
    report = config.VoilaConfiguration
    report.strip_sources = True
    report.show_tracebacks = False
    report.allow_template_override = "NO"
    report.allow_theme_override = "NO"
    report.template = "lab"
    report.http_header_envs = [HEADER]
    report.file_allowlist = []
    report.file_denylist = [".*"]
    report.preheat_kernel = False
    report.progressive_rendering = False
    report.prelaunch_hook = _IdentityCheck(secret)
    kernels = config.MappingKernelManager
    kernels.cull_idle_timeout = KERNEL_IDLE_TIMEOUT
    kernels.cull_interval = 30
    kernels.cull_connected = False
    return config


def _child_main(argv: list[str]) -> None:
    """``python -m velox.web.voila --port N --parent PID --notebook PATH`` (ReportProcess)."""
    import argparse

    from tornado.ioloop import IOLoop, PeriodicCallback
    from voila.app import Voila

    parser = argparse.ArgumentParser(prog="python -m velox.web.voila")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--notebook", type=Path, required=True)
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")  # kernels inherit this environment: not the token
    secret = os.environ.get(SECRET_ENV, "")
    if not token or not secret:
        sys.exit(f"{TOKEN_ENV} and {SECRET_ENV} must be set (velox serve sets them)")
    app = Voila(config=voila_config(port=args.port, notebook=args.notebook.resolve(),
                                    token=token, secret=secret))  # fmt: skip
    app.initialize([])

    def orphaned() -> None:  # the web server is gone (even by SIGKILL): so is its report
        if os.getppid() != args.parent:
            log.warning("velox serve (pid %d) ended; stopping the report", args.parent)
            os.kill(os.getpid(), signal.SIGTERM)

    IOLoop.current().add_callback(lambda: PeriodicCallback(orphaned, 2000).start())
    app.start()


# -- the proxy in the web server -------------------------------------------------------------


def _session(handler: RequestHandler, app: WebApp) -> Session | None:
    from velox.web.handlers import SESSION_COOKIE

    return app.users.session(handler.get_cookie(SESSION_COOKIE),
                             address=str(handler.request.remote_ip or ""))  # fmt: skip


def _same_origin(handler: RequestHandler) -> bool:
    origin = handler.request.headers.get("Origin")
    if origin is None:
        return True
    return urlparse(origin).netloc.lower() == handler.request.host.lower()


_LOGIN = "/login?next=" + PREFIX


class ReportHandler(RequestHandler):
    """``/report/<path>``: the page, Voila's assets and the page's kernel shutdown; else 404."""

    def initialize(self, app: WebApp, client: AsyncHTTPClient) -> None:
        self.app = app
        self.client = client

    def check_xsrf_cookie(self) -> None:
        """Origin and kernel ownership guard the one POST (no Velox state changes here)."""

    def set_default_headers(self) -> None:
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def _refuse(self, path: str) -> None:
        log.info("report route refused: %s %s", self.request.method, PREFIX + path)
        raise HTTPError(404)

    async def get(self, path: str) -> None:
        page = path == ""
        kernel = _KERNEL_INFO.fullmatch(path)
        if not (page or kernel) and (not _ASSET.fullmatch(path) or ".." in path):
            self._refuse(path)
        session = _session(self, self.app)
        if session is None:
            self.redirect(_LOGIN)
            return
        if kernel is not None:  # the page asks for its kernel's state before connecting
            report = self.app.report
            if report is None or report.owner(kernel.group(1)) != session.username:
                raise HTTPError(403, "this kernel is not your report's")
        await self._forward(path, session if page else None)

    async def post(self, path: str) -> None:
        match = _SHUTDOWN.fullmatch(path)
        if match is None:
            self._refuse(path)
        session = _session(self, self.app)
        report = self.app.report
        if session is None or not _same_origin(self) or report is None:
            raise HTTPError(403)
        if report.owner(match.group(1)) != session.username:
            raise HTTPError(403)
        await self._forward(path, None, method="POST")
        report.owners.pop(match.group(1), None)

    async def _forward(self, path: str, session: Session | None, method: str = "GET") -> None:
        """Send the request to Voila and stream its reply; ``session`` marks the page request
        (signed identity, no query string, kernel recorded as the user's)."""
        report = self.app.report
        if report is None:
            raise HTTPError(404, "the report is off (velox serve --no-report)")
        url = report.url(path)
        if session is None and self.request.query:
            url += "?" + self.request.query
        headers = {"Authorization": f"token {report.token}"}
        for name in _REQUEST_HEADERS:
            if name in self.request.headers:
                headers[name] = self.request.headers[name]
        if session is not None:
            headers[HEADER] = sign_identity(session.username, report.secret)
        relay = _Relay(self, report, session.username if session else None)
        request = HTTPRequest(
            url, method=method, headers=headers, body=b"" if method == "POST" else None,
            follow_redirects=False, decompress_response=False, connect_timeout=10,
            request_timeout=900 if session else 60, header_callback=relay.on_header,
            streaming_callback=relay.on_chunk,
        )  # fmt: skip
        while True:
            try:
                response = await self.client.fetch(request, raise_error=False)
                break
            except ConnectionRefusedError:
                if report.starting():  # Voila takes a few seconds to listen: wait for it
                    await asyncio.sleep(0.25)
                    continue
                log.warning("report unavailable: Voila is %s",
                            "not listening" if report.alive() else "not running")  # fmt: skip
            except (OSError, HTTPClientError) as exc:
                if relay.started:
                    raise
                log.warning("report unavailable: %s", exc)
            self.set_header("Retry-After", "3")
            raise HTTPError(503, "the report is unavailable; try again shortly")
        relay.start(response.code)
        self.finish()


class _Relay:
    """Voila's reply, passed on as it arrives: allowed headers, body, the page's kernel id."""

    def __init__(self, handler: ReportHandler, report: ReportProcess, owner: str | None) -> None:
        self.handler = handler
        self.report = report
        self.owner = owner
        self.status = 502
        self.headers = HTTPHeaders()
        self.started = False
        self.tail = b""

    def on_header(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self.status = int(line.split(" ", 2)[1])
            self.headers = HTTPHeaders()
        elif line.strip():
            self.headers.parse_line(line)

    def start(self, status: int | None = None) -> None:
        if self.started:
            return
        self.started = True
        handler = self.handler
        handler.set_status(status or self.status)
        for name in _REPLY_HEADERS:
            if name in self.headers:
                handler.set_header(name, self.headers[name])
        location = self.headers.get("Location")
        if location and location.startswith(PREFIX):
            handler.set_header("Location", location)

    def on_chunk(self, chunk: bytes) -> None:
        self.start()
        if self.owner is not None:
            found = _KERNEL_IN_PAGE.search(self.tail + chunk)
            if found:
                self.report.own(found.group(1).decode(), self.owner)
                self.owner = None
            else:
                self.tail = (self.tail + chunk)[-128:]
        self.handler.write(chunk)
        self.handler.flush()


class ReportSocketHandler(WebSocketHandler):
    """``/report/api/kernels/<id>/channels``: the page's own kernel, read-only messages only."""

    def initialize(self, app: WebApp) -> None:
        self.app = app
        self.upstream: Any = None
        self.pending: list[str | bytes] = []
        self.opened = False
        self.session_token: str | None = None
        self.username = ""
        self.kernel_id = ""

    @property
    def max_message_size(self) -> int:
        return MAX_CLIENT_MESSAGE

    def check_origin(self, origin: str) -> bool:
        return urlparse(origin).netloc.lower() == self.request.host.lower()

    async def get(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        from velox.web.handlers import SESSION_COOKIE

        session = _session(self, self.app)
        if session is None:
            self.redirect(_LOGIN)
            return
        report = self.app.report
        if report is None or report.owner(kernel_id) != session.username:
            self.app.users.audit("forbidden", session.username,
                                 address=str(self.request.remote_ip or ""),
                                 detail={"report_kernel": kernel_id})  # fmt: skip
            raise HTTPError(403, "this kernel is not your report's")
        self.session_token = self.get_cookie(SESSION_COOKIE)
        self.username, self.kernel_id = session.username, kernel_id
        offered = self.request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = [p.strip() for p in offered.split(",") if p.strip() == V1_PROTOCOL]
        url = report.url(f"api/kernels/{kernel_id}/channels").replace("http://", "ws://", 1)
        if self.request.query:
            url += "?" + self.request.query
        request = HTTPRequest(url, headers={"Authorization": f"token {report.token}"},
                              connect_timeout=10)  # fmt: skip
        try:
            self.upstream = await websocket_connect(
                request, on_message_callback=self._from_kernel, subprotocols=protocols or None,
                max_message_size=64 << 20,
            )  # fmt: skip
        except (OSError, HTTPClientError) as exc:
            log.warning("report kernel %s unreachable: %s", kernel_id, exc)
            raise HTTPError(502, "the report's kernel is gone; reload the page") from None
        await super().get(kernel_id, *args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self.upstream.selected_subprotocol if self.upstream else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.opened = True
        for message in self.pending:
            self._send(message)
        self.pending.clear()

    def on_message(self, message: str | bytes) -> None:
        if self.app.users.session(self.session_token) is None:
            self.close(4001, "the session ended")
            return
        v1 = self.selected_subprotocol == V1_PROTOCOL
        allowed, kind = client_message_allowed(message, v1=v1)
        if allowed:
            self.upstream.write_message(message, binary=isinstance(message, bytes))
            return
        log.warning("report: dropped %s from %s to kernel %s", kind, self.username,
                    self.kernel_id)  # fmt: skip
        self.app.users.audit("forbidden", self.username, address=str(self.request.remote_ip),
                             detail={"report_message": kind, "kernel": self.kernel_id})  # fmt: skip

    def _from_kernel(self, message: str | bytes | None) -> None:
        if message is None:  # Voila closed the kernel connection
            if self.opened:
                self.close()
            return
        if not self.opened:
            self.pending.append(message)
            return
        self._send(message)

    def _send(self, message: str | bytes) -> None:
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()


def routes(app: WebApp) -> list[tuple[str, type[RequestHandler], dict[str, object]]]:
    """The web server's routes for the report (see the module docstring)."""
    client = AsyncHTTPClient(force_instance=True, max_clients=32)
    prefix = PREFIX.rstrip("/")
    return [
        (prefix, RedirectHandler, {"url": PREFIX}),
        (rf"{prefix}/api/kernels/({_KERNEL_ID})/channels", ReportSocketHandler, {"app": app}),
        (rf"{prefix}/(.*)", ReportHandler, {"app": app, "client": client}),
    ]


def start_report(enabled: bool = True) -> ReportProcess | None:
    """Start the report's Voila child, or return None when off or the notebook is missing."""
    if not enabled:
        return None
    if not NOTEBOOK.is_file():
        log.warning("no %s: the investor report is off", NOTEBOOK)
        return None
    return ReportProcess().start()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[velox.web.voila] %(levelname)s %(message)s")
    _child_main(sys.argv[1:])
