"""Breeze login: ICICI's login page → the ``apisession`` → the day's session token.

ICICI's flow: the user opens ``https://api.icicidirect.com/apiuser/login?api_key=KEY``
(:func:`login_url`), logs in with the ICICI Direct user id, password and OTP/TOTP there, and
is redirected to the app's redirect URL with ``?apisession=…``. ``customerdetails`` with that
apisession and the app key answers the session token (base64 of ``user_id:session_key``);
every later request is signed with the app's secret (the SDK's checksum headers).

``velox broker login breeze`` prints the URL and reads the apisession (``--api-session`` or
one line of stdin); :func:`generate_session` does the SDK's session step
(``BreezeConnect.api_util``, the call ``generate_session`` makes) without the SDK's two
downloads of the ~20 MB security master that ``generate_session`` adds. The session is taken
to last 24 hours from the login (ICICI does not publish an expiry); a session Breeze refuses
earlier is :class:`~velox.errors.AuthExpired` naming the login command either way.

Secrets live in the store (:mod:`velox.secrets`) under :data:`SECRET_NAMES`. Nothing here
logs a secret; the SDK's loggers are silenced by :mod:`velox.brokers.breeze._sdk`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from velox.brokers.breeze import _sdk
from velox.brokers.breeze.mapping import LOGIN_COMMAND
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, ConfigError

if TYPE_CHECKING:
    from velox.secrets import SecretStore

__all__ = [
    "SECRET_NAMES",
    "BreezeCredentials",
    "BreezeSession",
    "generate_session",
    "load_credentials",
    "load_session",
    "login_url",
    "save_credentials",
]

log = logging.getLogger(__name__)

#: Names of the Breeze secrets in the :class:`~velox.secrets.SecretStore`.
SECRET_NAMES = {
    "api_key": "breeze.api_key",
    "api_secret": "breeze.api_secret",
    "user_id": "breeze.user_id",
    "session_key": "breeze.session_key",
}
SET_COMMAND = "velox broker set breeze --api-key KEY --api-secret-stdin"
#: How long a session is taken to last (ICICI publishes none; Breeze's refusal is final).
SESSION_HOURS = 24


@dataclass(frozen=True, slots=True)
class BreezeCredentials:
    """The Breeze app (its secret never shows in ``repr``)."""

    api_key: str
    api_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BreezeSession:
    """A logged-in Breeze session: the user, its session key and when it is taken to end."""

    api_key: str
    api_secret: str = field(repr=False)
    user_id: str = ""
    session_key: str = field(default="", repr=False)
    expires_at: datetime = datetime.min.replace(tzinfo=IST)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(IST)) >= self.expires_at


def login_url(api_key: str, root: str | None = None) -> str:
    """Return ICICI's login page for the app (``breeze_root`` + ``/apiuser/login``)."""
    if root is None:
        from velox.config import get_settings

        root = get_settings().breeze_root
    return f"{root.rstrip('/')}/apiuser/login?api_key={quote_plus(api_key)}"


def load_credentials(secrets: SecretStore) -> BreezeCredentials:
    """Return the stored app (:class:`ConfigError` naming ``velox broker set breeze``)."""
    key, secret = secrets.get(SECRET_NAMES["api_key"]), secrets.get(SECRET_NAMES["api_secret"])
    missing = [n for n, v in (("api_key", key), ("api_secret", secret)) if not v]
    if missing:
        raise ConfigError(f"no Breeze {', '.join(missing)} stored: `{SET_COMMAND}` (the secret "
                          "is read from stdin)")  # fmt: skip
    return BreezeCredentials(str(key), str(secret))


def save_credentials(secrets: SecretStore, **values: str) -> list[str]:
    """Store the given app fields encrypted; return the names stored."""
    unknown = sorted(set(values) - {"api_key", "api_secret"})
    if unknown:
        raise ConfigError(f"unknown Breeze credential(s) {', '.join(unknown)}")
    for name, value in values.items():
        secrets.put(SECRET_NAMES[name], value)
    return sorted(values)


def generate_session(
    credentials: BreezeCredentials,
    api_session: str,
    *,
    urls: _sdk.BreezeUrls | None = None,
    secrets: SecretStore | None = None,
    now: datetime | None = None,
    timeout: float = 10.0,
) -> BreezeSession:
    """Turn the login page's ``apisession`` into the day's session (``customerdetails``
    through the SDK) and store it when ``secrets`` is given."""
    code = api_session.strip()
    if not code:
        raise ConfigError(
            "the apisession is empty: copy it from the address ICICI's login page redirected "
            f"to (…?apisession=NNNN), then `{LOGIN_COMMAND}`"
        )
    if urls is None:
        from velox.config import get_settings

        urls = _sdk.BreezeUrls.for_root(get_settings().breeze_root)
    api = _sdk.sdk().connect.BreezeConnect(api_key=credentials.api_key)
    api.session_key, api.secret_key = code, credentials.api_secret
    try:
        with _sdk.pointed_at(urls), _sdk.timeout(timeout):
            api.api_util()
    except Exception as exc:  # noqa: BLE001 - the SDK raises bare Exceptions with its text
        text = str(exc)
        if any(t in text for t in ("Session", "session", "AppKey", "Public Key")):
            raise AuthExpired(f"Breeze refused the login ({text.removeprefix('Unexpected error: ')}"
                              f"): log in on ICICI's page again and use the fresh apisession "
                              f"with `{LOGIN_COMMAND}`") from None  # fmt: skip
        raise BrokerError(f"Breeze login failed: {text}") from None
    start = (now or datetime.now(IST)).astimezone(IST)
    until = start + timedelta(hours=SESSION_HOURS)
    session = BreezeSession(credentials.api_key, credentials.api_secret, str(api.user_id),
                            str(api.session_key), until)  # fmt: skip
    if secrets is not None:
        secrets.put(SECRET_NAMES["user_id"], session.user_id, expires_at=session.expires_at)
        secrets.put(SECRET_NAMES["session_key"], session.session_key,
                    expires_at=session.expires_at)  # fmt: skip
    log.info("Breeze session for %s valid until %s", session.user_id,
             f"{session.expires_at:%Y-%m-%d %H:%M} IST")  # fmt: skip
    return session


def load_session(secrets: SecretStore, *, now: datetime | None = None) -> BreezeSession:
    """Return the stored session, refusing a missing or expired one (naming the login)."""
    stored = secrets.get_with_expiry(SECRET_NAMES["session_key"])
    if stored is None:
        raise AuthExpired(f"no Breeze session is stored; log in with `{LOGIN_COMMAND}`")
    key, expires_at = stored
    credentials = load_credentials(secrets)
    session = BreezeSession(
        credentials.api_key, credentials.api_secret,
        str(secrets.get(SECRET_NAMES["user_id"]) or ""), key,
        expires_at or datetime.min.replace(tzinfo=IST),
    )  # fmt: skip
    if session.expired(now):
        until = session.expires_at.astimezone(IST)
        raise AuthExpired(f"the Breeze session expired at {until:%Y-%m-%d %H:%M} IST; log in "
                          f"again with `{LOGIN_COMMAND}`")  # fmt: skip
    return session
