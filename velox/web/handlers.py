"""Tornado handlers of the web server beside the Panel pages: login, logout and the JSON API.

Every handler resolves the session from its cookie on each request (:mod:`velox.web.actions`
holds the rules); a state-changing request must also carry the session's CSRF token (header
``X-CSRF-Token`` or form field ``_csrf``) and, when the browser sends one, an ``Origin`` of
this server. Replies: 401 not logged in, 403 not allowed (or no CSRF token), 400 bad input
(the message names the problem), 429 throttled logins.

The session cookie (``velox_session``) is HttpOnly and SameSite=Strict, and Secure whenever
the request came over HTTPS (directly or as ``X-Forwarded-Proto: https`` from a proxy) or
``secure_cookies`` is on: browsers keep Secure cookies for ``http://localhost`` but HTTP
clients (``requests``, ``curl``) drop them over plain HTTP, so on loopback HTTP it is left off
unless asked for. ``velox_csrf`` carries the CSRF token for page scripts (not HttpOnly; it is
useless without the session cookie, and it is an HMAC of it, so it cannot be forged).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tornado.web import RequestHandler

from velox.auth import AuthError, LoginThrottled, PermissionDenied, csrf_token
from velox.errors import VeloxError
from velox.store.commands import COMMAND_VERBS
from velox.web.actions import (
    HOME,
    command_json,
    live_session,
    submit_command,
    visible_positions,
    visible_runs,
)

if TYPE_CHECKING:
    from velox.auth import Session
    from velox.web.server import WebApp

log = logging.getLogger(__name__)

SESSION_COOKIE = "velox_session"
CSRF_COOKIE = "velox_csrf"

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Velox: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #0f172a; color: #e2e8f0;
       display: flex; justify-content: center; align-items: center; height: 100vh; margin: 0 }}
form {{ background: #1e293b; padding: 2rem 2.5rem; border-radius: 10px; width: 20rem }}
h1 {{ margin: 0 0 1rem; font-size: 1.4rem }}
label {{ display: block; margin: .8rem 0 .2rem; font-size: .9rem }}
input {{ width: 100%; padding: .5rem; box-sizing: border-box; border-radius: 5px;
        border: 1px solid #475569; background: #0f172a; color: #e2e8f0 }}
button {{ margin-top: 1.2rem; width: 100%; padding: .6rem; border: 0; border-radius: 5px;
         background: #2563eb; color: white; font-size: 1rem; cursor: pointer }}
.error {{ color: #fca5a5; margin: .5rem 0 0 }}
</style></head>
<body><form method="post" action="/login">
<h1>Velox</h1>
<label for="username">User</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<label for="totp">Authenticator code</label>
<input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" maxlength="6">
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
<p class="error" id="error">{error}</p>
</form></body></html>
"""


class Base(RequestHandler):
    """Session lookup, CSRF/Origin checks and JSON replies for the handlers below."""

    def initialize(self, app: WebApp) -> None:
        self.app = app

    @property
    def address(self) -> str:
        return str(self.request.remote_ip or "")

    def token(self) -> str | None:
        return self.get_cookie(SESSION_COOKIE)

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, default=str))

    def fail(self, status: int, message: str) -> None:
        self.write_json(status, {"error": message})

    def check_xsrf_cookie(self) -> None:
        """Tornado's own XSRF check is replaced by :meth:`check_csrf` (per-session tokens)."""

    def same_origin(self) -> bool:
        origin = self.request.headers.get("Origin")
        if not origin or origin == "null":
            return origin is None
        return urlparse(origin).netloc.lower() == self.request.host.lower()

    def check_csrf(self, session: Session) -> bool:
        given = self.request.headers.get("X-CSRF-Token") or self.get_body_argument(
            "_csrf", default=""
        )
        import hmac

        return self.same_origin() and bool(given) and hmac.compare_digest(given, session.csrf_token)

    def is_https(self) -> bool:
        proto = self.request.headers.get("X-Forwarded-Proto", self.request.protocol)
        return proto.lower() == "https"

    def set_session_cookies(self, token: str, max_age: int) -> None:
        secure = self.app.secure_cookies or self.is_https()
        common = {"path": "/", "samesite": "Strict", "secure": secure, "max_age": max_age}
        self.set_cookie(SESSION_COOKIE, token, httponly=True, **common)
        self.set_cookie(CSRF_COOKIE, csrf_token(token), **common)

    def clear_session_cookies(self) -> None:
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            self.clear_cookie(name, path="/")

    def set_default_headers(self) -> None:
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")


class LoginHandler(Base):
    """``GET /login``: the form; ``POST /login``: fields ``username``, ``password``, ``totp``."""

    def _next(self) -> str:
        target = self.get_argument("next", "")
        # only a local path: never an open redirect to another site
        return target if target.startswith("/") and not target.startswith("//") else ""

    def page(self, status: int, error: str = "") -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(LOGIN_PAGE.format(next=html.escape(self._next()), error=html.escape(error)))

    def get(self) -> None:
        self.page(200)

    async def post(self) -> None:
        if not self.same_origin():
            self.page(403, "this form must be sent from this site")
            return
        users = self.app.users
        username = self.get_body_argument("username", "")
        password = self.get_body_argument("password", "")
        totp = self.get_body_argument("totp", "") or None
        address = self.address
        try:  # on a read thread: the password hash takes tens of milliseconds on purpose
            session = await self.app.reads.run(
                lambda: users.login(username, password, totp, address=address)
            )
        except LoginThrottled as exc:
            self.set_header("Retry-After", str(max(1, round(exc.retry_after))))
            self.page(429, str(exc))
            return
        except AuthError as exc:
            self.page(401, str(exc))
            return
        self.set_session_cookies(session.token, int(users.session_ttl))
        if "application/json" in self.request.headers.get("Accept", ""):
            self.write_json(200, {"username": session.username, "role": session.role,
                                  "csrf_token": session.csrf_token})  # fmt: skip
            return
        self.redirect(self._next() or HOME[session.role], status=303)


class LogoutHandler(Base):
    """``GET`` or ``POST /logout``: end the session (a forged logout only logs one out)."""

    def get(self) -> None:
        self.app.users.logout(self.token(), address=self.address)
        self.clear_session_cookies()
        self.redirect("/login", status=303)

    post = get


class RootHandler(Base):
    """``/``: the user's home page, or the login form."""

    def get(self) -> None:
        session = self.app.users.session(self.token(), address=self.address)
        self.redirect(HOME[session.role] if session else "/login", status=303)


class ApiHandler(Base):
    """JSON API base: 401 without a session, 403 for PermissionDenied, 400 for bad input.

    The session lookup and the store work run on the server's read threads
    (:class:`velox.web.reads.Reads`), never on the I/O loop: the handlers are coroutines that
    await them, so a slow query holds up only its own request.
    """

    async def authed(self) -> Session | None:
        """The live session of the request, or None after replying 401."""
        users, token, address = self.app.users, self.token(), self.address
        try:
            return await self.app.reads.run(lambda: live_session(users, token, address=address))
        except PermissionDenied as exc:
            self.fail(401, str(exc))
            return None

    async def reply(self, work: Callable[[], Any], status: int = 200) -> None:
        """Reply ``status`` with the JSON of ``work()`` (run on a read thread); 403 for
        PermissionDenied, 400 for VeloxError (the message names the problem)."""
        try:
            body = await self.app.reads.run(work)
        except PermissionDenied as exc:
            self.fail(403, str(exc))
        except VeloxError as exc:
            self.fail(400, str(exc))
        else:
            self.write_json(status, body)


class MeHandler(ApiHandler):
    """``GET /api/me``: who is logged in, their role, links and CSRF token."""

    async def get(self) -> None:
        session = await self.authed()
        if session is not None:
            self.write_json(200, {**session.user.to_json(), "csrf_token": session.csrf_token,
                                  "expires_at": session.expires_at.isoformat()})  # fmt: skip


class RunsHandler(ApiHandler):
    """``GET /api/runs``: the runs the user may see, newest first."""

    async def get(self) -> None:
        session = await self.authed()
        if session is not None:
            await self.reply(lambda: visible_runs(self.app.reads, session))


class PositionsHandler(ApiHandler):
    """``GET /api/positions[?run_id=P1]``: positions of one run, or of every running run."""

    async def get(self) -> None:
        session = await self.authed()
        if session is None:
            return
        run_id = self.get_argument("run_id", None)
        await self.reply(lambda: visible_positions(self.app.reads, session, run_id=run_id))


class CommandsHandler(ApiHandler):
    """``POST /api/commands``: ``{"verb", "account", "run_id", "strategy", "args"}`` (JSON or
    form); ``GET /api/commands``: recent commands (admin and trader)."""

    async def get(self) -> None:
        session = await self.authed()
        if session is None:
            return
        if session.role == "investor":
            self.fail(403, "investors cannot see or issue commands")
            return
        limit = int(self.get_argument("limit", "100"))
        from velox.web.actions import _jsonable

        await self.reply(
            lambda: [_jsonable(r) for r in self.app.store.commands(limit=limit).to_dict("records")]
        )

    def _body(self) -> dict[str, Any]:
        kind = self.request.headers.get("Content-Type", "")
        if kind.startswith("application/json"):
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError as exc:
                raise _BadInput(f"the body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise _BadInput("the body must be a JSON object")
            return body
        body: dict[str, Any] = {k: self.get_body_argument(k) for k in self.request.body_arguments}
        if "args" in body:
            try:
                body["args"] = json.loads(body["args"])
            except ValueError:
                raise _BadInput("args must be a JSON object") from None
        body.pop("_csrf", None)
        return body

    async def post(self) -> None:
        session = await self.authed()
        if session is None:
            return
        users, address = self.app.users, self.address
        if session.role == "investor":  # refused before anything else is looked at
            await self.app.reads.run(
                lambda: users.audit("forbidden", session.username, address=address,
                                    detail={"route": "/api/commands"})
            )  # fmt: skip
            self.fail(403, "investors cannot issue commands or orders")
            return
        if not self.check_csrf(session):
            self.fail(403, "missing or wrong CSRF token (send the X-CSRF-Token header)")
            return
        try:
            body = self._body()
        except _BadInput as exc:
            self.fail(400, str(exc))
            return
        unknown = set(body) - {"verb", "account", "run_id", "strategy", "args"}
        verb = body.get("verb")
        if unknown:
            self.fail(400, f"unknown field(s) {', '.join(sorted(unknown))}")
            return
        if verb not in COMMAND_VERBS:
            self.fail(400, f"verb {verb!r} is not one of {', '.join(COMMAND_VERBS)}")
            return
        token = self.token()

        def issue() -> dict[str, object]:
            command = submit_command(
                self.app.store, users, token, verb,
                account=body.get("account") or None, run_id=body.get("run_id") or None,
                strategy=body.get("strategy") or None, args=body.get("args") or None,
                address=address,
            )  # fmt: skip
            return command_json(command)

        await self.reply(issue, status=201)


class HealthHandler(RequestHandler):
    """``GET /health``: the process answers (liveness)."""

    def get(self) -> None:
        self.finish({"status": "ok"})


class _BadInput(Exception):
    pass
