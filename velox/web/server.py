"""The web server: Panel pages on Bokeh's Tornado server, guarded by Velox's users and roles.

One process serves the login page, the JSON API (:mod:`velox.web.handlers`) and the Panel
pages ``/trading`` (trader console: admin, trader), ``/admin`` (users: admin) and
``/investor`` (read-only performance: every role, an investor sees only what is linked), and
proxies ``/report/`` to its Voila child, the investor report (:mod:`velox.web.voila`).

Roles are enforced on the server at three depths:

1. **Pages and websockets**: :class:`VeloxAuth` is Bokeh's auth provider, so every page
   request *and* every websocket handshake resolves the session cookie; no session redirects
   to ``/login``, a role not allowed on the page is HTTP 403 before a document exists.
   Bokeh session ids are signed with a per-process secret, so a session cannot be guessed or
   moved to another page.
2. **Callbacks**: a page's :class:`PageContext` re-checks the live session (logout, expiry,
   disabled user) and the role for every action, through :mod:`velox.web.actions`.
3. **Commands**: the same :func:`velox.web.actions.submit_command` serves the API and the
   pages; an investor is refused there whatever the page shows.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bokeh.server.auth_provider import AuthProvider

from velox.auth import PermissionDenied, Session, Users
from velox.web import handlers
from velox.web.actions import PAGE_ROLES, live_session, submit_command

if TYPE_CHECKING:
    from bokeh.server.server import Server

    from velox.store import Store
    from velox.store.commands import Command
    from velox.web.reads import Reads
    from velox.web.voila import ReportProcess

log = logging.getLogger(__name__)

DEFAULT_PORT = 5006


@dataclass
class WebApp:
    """What every handler and page of one server shares."""

    store: Store
    users: Users
    #: Always mark cookies Secure (on when served over HTTPS whatever this says).
    secure_cookies: bool = False
    #: The investor report's Voila child, proxied at ``/report/`` (None: the report is off).
    report: ReportProcess | None = None
    #: The API's store work off the I/O loop, and the reads every client shares.
    reads: Reads = field(init=False)

    def __post_init__(self) -> None:
        from velox.web.reads import Reads

        self.reads = Reads(self.store)

    def context(self) -> PageContext:
        """The :class:`PageContext` of the Panel session being built (from its cookie)."""
        import panel as pn

        request = pn.state.curdoc.session_context.request
        token = request.cookies.get(handlers.SESSION_COOKIE)
        address = ""
        if getattr(request, "headers", None):
            address = request.headers.get("X-Real-Ip", "")
        return PageContext(self, token, address)


@dataclass
class PageContext:
    """One Panel session's user: every read and action goes through here, checked live."""

    app: WebApp
    token: str | None
    address: str = ""

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def users(self) -> Users:
        return self.app.users

    def session(self) -> Session:
        return live_session(self.app.users, self.token, address=self.address)

    def require(self, *roles: str) -> Session:
        """Return the live session if its role is one of ``roles``, else PermissionDenied."""
        session = self.session()
        if session.role not in roles:
            self.app.users.audit("forbidden", session.username, address=self.address,
                                 detail={"needs": list(roles)})  # fmt: skip
            raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
        return session

    def submit(
        self,
        verb: str,
        *,
        account: str | None = None,
        run_id: str | None = None,
        strategy: str | None = None,
        args: Mapping[str, object] | None = None,
    ) -> Command:
        """Issue a command as this page's user (the same checks as ``POST /api/commands``)."""
        return submit_command(
            self.app.store, self.app.users, self.token, verb, account=account, run_id=run_id,
            strategy=strategy, args=args, address=self.address,
        )  # fmt: skip


class VeloxAuth(AuthProvider):
    """Bokeh auth provider: the session cookie decides who may open which page or websocket."""

    def __init__(self, app: WebApp) -> None:
        self.app = app
        super().__init__()

    @property
    def get_user(self) -> Callable[[Any], str | None]:
        return self._user

    @property
    def login_url(self) -> str:
        return "/login"

    def _user(self, handler: Any) -> str | None:
        from tornado.web import HTTPError

        token = handler.get_cookie(handlers.SESSION_COOKIE)
        session = self.app.users.session(token, address=handler.request.remote_ip or "")
        if session is None:
            return None
        page = handler.request.path.strip("/").split("/", 1)[0]
        allowed = PAGE_ROLES.get(page)
        if allowed is not None and session.role not in allowed:
            self.app.users.audit("forbidden", session.username,
                                 address=handler.request.remote_ip or "",
                                 detail={"page": handler.request.path})  # fmt: skip
            raise HTTPError(403, "the role %s may not open %s", session.role, page)
        return session.username


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def make_server(
    app: WebApp,
    *,
    port: int = DEFAULT_PORT,
    address: str = "127.0.0.1",
    origins: tuple[str, ...] = (),
) -> Server:
    """Build (not start) the server: Panel pages, the login page and the API on one port."""
    import panel as pn

    from velox.web import metrics, pages, voila

    port = port or free_port(address)
    hosts = {address, "localhost", "127.0.0.1"}
    extra = {"app": app}
    patterns = [
        (r"/", handlers.RootHandler, extra),
        (r"/login", handlers.LoginHandler, extra),
        (r"/logout", handlers.LogoutHandler, extra),
        (r"/api/me", handlers.MeHandler, extra),
        (r"/api/runs", handlers.RunsHandler, extra),
        (r"/api/positions", handlers.PositionsHandler, extra),
        (r"/api/commands", handlers.CommandsHandler, extra),
        (r"/health", handlers.HealthHandler),
        (r"/ready", metrics.ReadyHandler, extra),
        (r"/metrics", metrics.MetricsHandler, extra),
        *voila.routes(app),
    ]
    routes = {
        name: (lambda build=build: build(app.context())) for name, build in pages.PAGES.items()
    }
    return pn.serve(
        routes,
        port=port,
        address=address,
        start=False,
        show=False,
        title={
            "trading": "Velox trader console",
            "admin": "Velox users",
            "investor": "Velox performance",
        },  # fmt: skip
        extra_patterns=patterns,
        auth_provider=VeloxAuth(app),
        websocket_origin=[f"{h}:{port}" for h in sorted(hosts)] + list(origins),
        sign_sessions=True,
        secret_key=secrets.token_urlsafe(48),
        check_unused_sessions_milliseconds=5_000,
        unused_session_lifetime_milliseconds=30_000,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    *,
    port: int = DEFAULT_PORT,
    address: str = "127.0.0.1",
    store: Store | None = None,
    secure_cookies: bool = False,
    on_ready: Callable[[str], None] | None = None,
    report: bool = True,
) -> None:
    """Run the web server until interrupted (``velox serve``); ``report`` starts the investor
    report's Voila child (:mod:`velox.web.voila`) and stops it with the server."""
    import signal
    import threading

    from velox.store import open_store
    from velox.web.voila import start_report

    store = store if store is not None else open_store()
    app = WebApp(store, Users(store), secure_cookies=secure_cookies)
    server = make_server(app, port=port, address=address)
    app.report = start_report(report)
    try:
        server.start()
        url = f"http://{'localhost' if address in ('127.0.0.1', '::1') else address}:{server.port}"
        log.info("Velox web server on %s", url)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: the report stops too
        if on_ready is not None:
            on_ready(url)
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if app.report is not None:
            app.report.stop()
