"""Kite Connect login: the login URL, request token → access token, and the token's expiry.

The flow (Kite's "login flow"): the user opens :func:`login_url` in a browser and logs in to
Zerodha; Kite redirects to the app's redirect URL with ``?request_token=…``; that token and the
checksum ``sha256(api_key + request_token + api_secret)`` are exchanged once (POST
/session/token, the SDK's ``generate_session``) for an access token. The access token is
valid until about 06:00 IST the next morning (Kite flushes sessions then), so
:func:`token_expiry` is the next 06:00 IST after the login.

Credentials live encrypted in the store (:mod:`velox.secrets`) under the names in
:data:`SECRET_NAMES`; ``VELOX_KITE_API_KEY`` / ``VELOX_KITE_API_SECRET`` in the environment
take precedence. Nothing here logs or shows a secret: :class:`KiteSession` and
:class:`KiteCredentials` hide their secrets from ``repr``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from velox.brokers.kite.mapping import LOGIN_COMMAND, translate_error
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, ConfigError

if TYPE_CHECKING:
    from velox.secrets import SecretStore

__all__ = [
    "SECRET_NAMES",
    "TOKEN_EXPIRY_TIME",
    "KiteCredentials",
    "KiteSession",
    "generate_session",
    "load_credentials",
    "load_session",
    "login_url",
    "parse_request_token",
    "save_credentials",
    "session_checksum",
    "token_expiry",
]

log = logging.getLogger(__name__)

#: When Kite invalidates the day's access tokens (IST wall clock).
TOKEN_EXPIRY_TIME = time(6, 0)

#: Names of the Kite secrets in the :class:`~velox.secrets.SecretStore`.
SECRET_NAMES = {
    "api_key": "kite.api_key",
    "api_secret": "kite.api_secret",
    "access_token": "kite.access_token",
}
_SET_COMMAND = "velox broker set kite --api-key KEY --api-secret-stdin"


@dataclass(frozen=True, slots=True)
class KiteCredentials:
    """A Kite Connect app's key and secret (the secret never shows in ``repr``)."""

    api_key: str
    api_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KiteSession:
    """A logged-in Kite session: the access token and when it stops working."""

    api_key: str
    access_token: str = field(repr=False)
    expires_at: datetime
    user_id: str = ""

    def expired(self, now: datetime | None = None) -> bool:
        """Return True once ``now`` (default: the wall clock) is at or past the expiry."""
        return (now or datetime.now(IST)) >= self.expires_at


def login_url(api_key: str, base: str | None = None) -> str:
    """Return the Kite login page URL for ``api_key`` (``base`` default: the setting).

    Examples
    --------
    >>> login_url("abc123", "https://kite.zerodha.com/connect/login")
    'https://kite.zerodha.com/connect/login?api_key=abc123&v=3'
    """
    if base is None:
        from velox.config import get_settings

        base = get_settings().kite_login_url
    return f"{base}?{urlencode({'api_key': api_key, 'v': 3})}"


def parse_request_token(text: str) -> str:
    """Return the request token from a pasted redirect URL or a bare token.

    Examples
    --------
    >>> parse_request_token("https://example.org/cb?action=login&status=success&request_token=XyZ9")
    'XyZ9'
    >>> parse_request_token("  XyZ9 ")
    'XyZ9'
    """
    text = text.strip()
    if "request_token=" in text:
        query = urlsplit(text).query or text.split("?", 1)[-1]
        values = parse_qs(query).get("request_token")
        if not values or not values[0].strip():
            raise ConfigError("the redirect URL has an empty request_token; log in again")
        if parse_qs(query).get("status", ["success"])[0] != "success":
            raise ConfigError("the redirect URL says the login did not succeed; log in again")
        return values[0].strip()
    if not text or not text.isalnum():
        raise ConfigError(
            "expected the redirect URL (…?request_token=…) or the request token itself "
            "(letters and digits); copy it from the browser's address bar after logging in"
        )
    return text


def session_checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """Return Kite's login checksum: hex ``sha256(api_key + request_token + api_secret)``."""
    return hashlib.sha256((api_key + request_token + api_secret).encode("utf-8")).hexdigest()


def token_expiry(login_at: datetime) -> datetime:
    """Return the next 06:00 IST after ``login_at`` (when Kite expires the access token).

    Examples
    --------
    >>> token_expiry(datetime(2024, 4, 1, 8, 30, tzinfo=IST)).isoformat()
    '2024-04-02T06:00:00+05:30'
    >>> token_expiry(datetime(2024, 4, 2, 5, 59, tzinfo=IST)).isoformat()
    '2024-04-02T06:00:00+05:30'
    """
    if login_at.tzinfo is None:
        raise ValueError("token_expiry needs a tz-aware login time")
    local = login_at.astimezone(IST)
    expiry = datetime.combine(local.date(), TOKEN_EXPIRY_TIME, tzinfo=IST)
    return expiry if local < expiry else expiry + timedelta(days=1)


def load_credentials(secrets: SecretStore | None) -> KiteCredentials:
    """Return the app key and secret: the environment first, then the secret store.

    Raises
    ------
    ConfigError
        Naming ``velox broker set kite`` when either is missing.
    """
    from velox.config import get_settings

    settings = get_settings()
    api_key, api_secret = settings.kite_api_key, settings.kite_api_secret
    if secrets is not None:
        api_key = api_key or secrets.get(SECRET_NAMES["api_key"])
        api_secret = api_secret or secrets.get(SECRET_NAMES["api_secret"])
    missing = [n for n, v in (("api_key", api_key), ("api_secret", api_secret)) if not v]
    if missing:
        raise ConfigError(
            f"no Kite {' and '.join(missing)}: store them with `{_SET_COMMAND}` (the secret "
            "is read from stdin) or set VELOX_KITE_API_KEY / VELOX_KITE_API_SECRET"
        )
    return KiteCredentials(str(api_key), str(api_secret))


def save_credentials(secrets: SecretStore, credentials: KiteCredentials) -> None:
    """Store the app key and secret encrypted (see :mod:`velox.secrets`)."""
    secrets.put(SECRET_NAMES["api_key"], credentials.api_key)
    secrets.put(SECRET_NAMES["api_secret"], credentials.api_secret)


def generate_session(
    credentials: KiteCredentials,
    request_token: str,
    *,
    root: str | None = None,
    secrets: SecretStore | None = None,
    now: datetime | None = None,
    timeout: float = 7.0,
) -> KiteSession:
    """Exchange ``request_token`` for an access token (and store it when ``secrets`` is given).

    The expiry is the next 06:00 IST after ``now`` (the wall clock when omitted): the local
    clock, not the server's ``login_time``, decides, so a simulator's replayed date cannot make
    a fresh token look expired.

    Raises
    ------
    AuthExpired
        Kite refused the token (expired, used twice, wrong checksum): log in again.
    BrokerError
        Any other failure, or a response without an access token.
    """
    from kiteconnect import KiteConnect

    if root is None:
        from velox.config import get_settings

        root = get_settings().kite_root
    kite = KiteConnect(credentials.api_key, root=root, timeout=timeout)
    try:
        response = kite.generate_session(request_token, api_secret=credentials.api_secret)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        from kiteconnect import exceptions as kex

        if isinstance(exc, kex.TokenException | kex.InputException):
            raise AuthExpired(
                f"Kite refused the request token ({exc}); a request token works once and for "
                f"a few minutes: run `{LOGIN_COMMAND}` again and paste the new redirect URL"
            ) from None
        raise translate_error(exc, what="exchanging the request token") from None
    token = response.get("access_token") if isinstance(response, dict) else None
    if not token:
        raise BrokerError("Kite's session response has no access_token; is the API root right?")
    session = KiteSession(
        api_key=credentials.api_key,
        access_token=str(token),
        expires_at=token_expiry(now or datetime.now(IST)),
        user_id=str(response.get("user_id") or ""),
    )
    if secrets is not None:
        secrets.put(
            SECRET_NAMES["access_token"], session.access_token, expires_at=session.expires_at
        )
    log.info("Kite session for user %s valid until %s", session.user_id or "?", session.expires_at)
    return session


def load_session(
    secrets: SecretStore, *, api_key: str | None = None, now: datetime | None = None
) -> KiteSession:
    """Return the stored Kite session, refusing a missing or expired one.

    Raises
    ------
    AuthExpired
        No stored access token, or it expired (06:00 IST): naming ``velox broker login kite``.
    """
    stored = secrets.get_with_expiry(SECRET_NAMES["access_token"])
    if stored is None:
        raise AuthExpired(f"no Kite session is stored; log in with `{LOGIN_COMMAND}`")
    token, expires_at = stored
    if api_key is None:
        from velox.config import get_settings

        api_key = get_settings().kite_api_key or secrets.get(SECRET_NAMES["api_key"])
    if not api_key:
        raise ConfigError(f"no Kite api_key: store it with `{_SET_COMMAND}`")
    session = KiteSession(
        api_key=api_key,
        access_token=token,
        expires_at=expires_at or datetime.min.replace(tzinfo=IST),
    )
    if session.expired(now):
        raise AuthExpired(
            f"the Kite session expired at {session.expires_at.astimezone(IST):%Y-%m-%d %H:%M} "
            f"IST (Kite ends sessions at 06:00 IST); log in again with `{LOGIN_COMMAND}`"
        )
    return session
