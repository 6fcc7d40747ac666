"""Who the investor report is for: a signed, short-lived, single-use identity token.

The report (``dashboards/investor.ipynb``) runs in a Voila kernel that never sees the browser's
cookie. ``velox serve`` resolves the session cookie, then sends the page request on to its
Voila child with the header :data:`HEADER` = :func:`sign_identity` of the session's user (any
copy of that header the browser sent is dropped first). Voila's prelaunch hook checks it before
a kernel starts (signature, expiry, nonce not seen before), and Voila hands it to the kernel as
the environment variable :data:`ENV` (``VoilaConfiguration.http_header_envs``), where
:func:`report_user` checks it again and reads the user and their links from the store.

Token: ``<username>:<expires, unix seconds>:<nonce>:<hex HMAC-SHA256>``; the HMAC is over
``velox-report-v1:<username>:<expires>:<nonce>`` under a random secret made by each
``velox serve`` process and given only to its Voila child (:data:`SECRET_ENV`). User names
never hold ``:`` (:func:`velox.auth.check_username`), so the split is unambiguous.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from velox.auth import AuthError, User, read_user

if TYPE_CHECKING:
    from velox.store import Store

__all__ = [
    "ENV",
    "HEADER",
    "SECRET_ENV",
    "Identity",
    "NotSignedIn",
    "report_runs",
    "report_user",
    "sign_identity",
    "verify_identity",
]

#: The request header the web server sets on the page request it sends to Voila.
HEADER = "X-Velox-Report-Identity"
#: Where Voila puts that header in the kernel's environment (RFC 3875 naming).
ENV = "HTTP_" + HEADER.upper().replace("-", "_")
#: The environment variable holding the signing secret (the Voila child and its kernels only).
SECRET_ENV = "VELOX_REPORT_SECRET"
#: Seconds a token is valid: long enough to start a kernel, far shorter than a session.
TOKEN_TTL = 120.0
_LABEL = "velox-report-v1"


class NotSignedIn(AuthError):
    """No valid identity token: the report shows nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not signed in: {reason}; open the report at /report/ after logging in")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified token: the user it names, when it expires and its single-use nonce."""

    username: str
    expires: int
    nonce: str


def _mac(secret: str, username: str, expires: int, nonce: str) -> str:
    message = f"{_LABEL}:{username}:{expires}:{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_identity(
    username: str, secret: str, *, ttl: float = TOKEN_TTL, now: float | None = None
) -> str:
    """Return a token naming ``username``, valid for ``ttl`` seconds, for :data:`HEADER`.

    Examples
    --------
    >>> token = sign_identity("iris", "s" * 32, now=1_000)
    >>> verify_identity(token, "s" * 32, now=1_050).username
    'iris'
    """
    expires = int((time.time() if now is None else now) + ttl)
    nonce = secrets.token_hex(16)
    return f"{username}:{expires}:{nonce}:{_mac(secret, username, expires, nonce)}"


def verify_identity(token: str | None, secret: str | None, *, now: float | None = None) -> Identity:
    """Return the :class:`Identity` of a token, or raise :class:`NotSignedIn` saying why.

    Checks the shape, the HMAC (constant time) and the expiry; single use is the caller's to
    check with :attr:`Identity.nonce` (the Voila child keeps the nonces it has seen).
    """
    if not secret:
        raise NotSignedIn(f"no signing secret ({SECRET_ENV} is not set)")
    if not token:
        raise NotSignedIn("no identity token")
    parts = token.strip().split(":")
    if len(parts) != 4 or not parts[1].isdigit() or len(token) > 300:
        raise NotSignedIn("malformed identity token")
    username, expires_text, nonce, mac = parts
    expires = int(expires_text)
    if not hmac.compare_digest(mac, _mac(secret, username, expires, nonce)):
        raise NotSignedIn("identity token signature does not match")
    if expires <= (time.time() if now is None else now):
        raise NotSignedIn("identity token expired")
    return Identity(username, expires, nonce)


def report_user(store: Store | None = None) -> User:
    """Return the user the running report is for (in a Voila kernel), from the signed token.

    The only source of identity is :data:`ENV`, set by Voila from the header the web server
    signed; a notebook parameter or a URL query can never change it. A disabled or deleted
    user is refused like a missing token.

    Raises
    ------
    NotSignedIn
        No token, a bad signature, an expired token, or an unknown or disabled user.
    """
    from velox.store import open_store

    identity = verify_identity(os.environ.get(ENV), os.environ.get(SECRET_ENV))
    user = read_user(store if store is not None else open_store(create=False), identity.username)
    if user is None or user.disabled:
        raise NotSignedIn(f"user {identity.username!r} is unknown or disabled")
    return user


def report_runs(
    store: Store, user: User, *, account: str | None = None, run: str | None = None
) -> list[dict[str, object]]:
    """Return the runs ``user`` may see, newest first, narrowed to ``account`` and ``run``.

    The narrowing parameters (the notebook's ``parameters`` cell) only filter what the user
    may see anyway: naming another investor's account or run gives an empty list.
    """
    from velox.web.actions import visible_runs

    runs = visible_runs(store, user)
    if account is not None:
        runs = [r for r in runs if r.get("account") == account]
    if run is not None:
        runs = [r for r in runs if r.get("run_id") == run]
    return runs
