"""SmartAPI login: client code + PIN + TOTP → the day's JWT, refresh and feed tokens.

Angel One has no browser flow for API users: ``loginByPassword`` takes the client code, the
4-digit PIN and the current TOTP of the authenticator Angel enrolled (the base32 secret shown
beside its QR code). Velox stores the secret encrypted and computes each code with ``pyotp``
so ``velox broker login smartapi`` needs no typing; ``--totp CODE`` takes a code from a phone
instead. A fresh JWT is valid 24–28 hours (Angel's notice of the change from "until 05:00"):
the expiry is the token's own ``exp`` claim, else 24 hours after the login. ``generateTokens``
with the refresh token renews all three tokens within the session (:func:`refresh_session`).

Secrets live in the store (:mod:`velox.secrets`) under :data:`SECRET_NAMES`; the environment's
``VELOX_SMARTAPI_*`` settings are not used for secrets. Nothing here logs a secret, and the
SDK's own logger (which prints the login's parameters on a failure) is silenced by
:mod:`velox.brokers.smartapi._sdk`.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from velox.brokers.smartapi import _sdk
from velox.brokers.smartapi.mapping import LOGIN_COMMAND, error_of
from velox.calendar import IST
from velox.errors import AuthExpired, BrokerError, ConfigError

if TYPE_CHECKING:
    from velox.secrets import SecretStore

__all__ = [
    "SECRET_NAMES",
    "SmartApiCredentials",
    "SmartApiSession",
    "generate_session",
    "jwt_expiry",
    "load_credentials",
    "load_session",
    "refresh_session",
    "save_credentials",
]

log = logging.getLogger(__name__)

#: Names of the SmartAPI secrets in the :class:`~velox.secrets.SecretStore`.
SECRET_NAMES = {
    "api_key": "smartapi.api_key",
    "client_code": "smartapi.client_code",
    "pin": "smartapi.pin",
    "totp_secret": "smartapi.totp_secret",
    "jwt": "smartapi.jwt",
    "refresh_token": "smartapi.refresh_token",
    "feed_token": "smartapi.feed_token",
}
SET_COMMAND = ("velox broker set smartapi --api-key KEY --client-code CODE --pin-stdin "
               "--totp-secret-stdin")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SmartApiCredentials:
    """What logs in to SmartAPI (the PIN and TOTP secret never show in ``repr``)."""

    api_key: str
    client_code: str
    pin: str = field(repr=False)
    totp_secret: str = field(default="", repr=False)

    def totp(self, at: datetime | None = None) -> str:
        """Return the authenticator's code now (or ``at``)."""
        if not self.totp_secret:
            raise ConfigError(f"no SmartAPI TOTP secret stored: store it with `{SET_COMMAND}` "
                              "or give the code with `--totp CODE`")  # fmt: skip
        import pyotp

        try:
            return pyotp.TOTP(self.totp_secret).at(at or datetime.now(UTC))
        except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
            raise ConfigError(f"the stored SmartAPI TOTP secret is not base32 ({exc}); store "
                              f"the secret Angel showed beside the QR code: `{SET_COMMAND}`"
                              ) from None  # fmt: skip


@dataclass(frozen=True, slots=True)
class SmartApiSession:
    """A logged-in SmartAPI session: the three tokens and when the JWT stops working."""

    api_key: str
    client_code: str
    jwt: str = field(repr=False)
    refresh_token: str = field(repr=False)
    feed_token: str = field(repr=False)
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(IST)) >= self.expires_at


def jwt_expiry(jwt: str, login_at: datetime) -> datetime:
    """Return when ``jwt`` expires: its ``exp`` claim, else 24 hours after ``login_at``.

    Examples
    --------
    >>> claims = base64.urlsafe_b64encode(b'{"exp": 1712025000}').decode().rstrip("=")
    >>> jwt_expiry("e30." + claims + ".sig", datetime(2024, 4, 1, tzinfo=IST)).isoformat()
    '2024-04-02T08:00:00+05:30'
    >>> jwt_expiry("opaque", datetime(2024, 4, 1, 9, 0, tzinfo=IST)).isoformat()
    '2024-04-02T09:00:00+05:30'
    """
    parts = jwt.removeprefix("Bearer ").split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            return datetime.fromtimestamp(float(claims["exp"]), UTC).astimezone(IST)
        except (ValueError, KeyError, TypeError):
            pass
    return login_at.astimezone(IST) + timedelta(hours=24)


def load_credentials(secrets: SecretStore) -> SmartApiCredentials:
    """Return the stored login (:class:`ConfigError` naming ``velox broker set smartapi``)."""
    got = {name: secrets.get(SECRET_NAMES[name]) for name in
           ("api_key", "client_code", "pin", "totp_secret")}  # fmt: skip
    missing = [n for n in ("api_key", "client_code", "pin") if not got[n]]
    if missing:
        raise ConfigError(f"no SmartAPI {', '.join(missing)} stored: `{SET_COMMAND}` (the PIN "
                          "and the TOTP secret are read from stdin, one line each)")  # fmt: skip
    return SmartApiCredentials(str(got["api_key"]), str(got["client_code"]), str(got["pin"]),
                               str(got["totp_secret"] or ""))  # fmt: skip


def save_credentials(secrets: SecretStore, **values: str) -> list[str]:
    """Store the given login fields encrypted; return the names stored."""
    unknown = sorted(set(values) - {"api_key", "client_code", "pin", "totp_secret"})
    if unknown:
        raise ConfigError(f"unknown SmartAPI credential(s) {', '.join(unknown)}")
    for name, value in values.items():
        secrets.put(SECRET_NAMES[name], value)
    return sorted(values)


def _store_session(secrets: SecretStore | None, session: SmartApiSession) -> None:
    if secrets is None:
        return
    for name in ("jwt", "refresh_token", "feed_token"):
        secrets.put(SECRET_NAMES[name], getattr(session, name), expires_at=session.expires_at)


def _session_of(answer: Any, credentials: SmartApiCredentials, what: str,
                now: datetime | None) -> SmartApiSession:  # fmt: skip
    if not isinstance(answer, dict) or answer.get("status") is not True:
        if isinstance(answer, dict) and answer.get("errorcode") in ("AB1050", "AB1000"):
            raise AuthExpired(
                f"Angel refused the login ({answer.get('errorcode')} "
                f"{answer.get('message')}): check the client code, PIN and TOTP "
                f"secret (`{SET_COMMAND}`) and the clock, then `{LOGIN_COMMAND}`"
            )
        raise error_of(answer, what, None)
    data = answer.get("data") or {}
    jwt = str(data.get("jwtToken") or "").removeprefix("Bearer ")
    if not jwt:
        raise BrokerError("SmartAPI's login answer has no jwtToken; is the API root right?")
    return SmartApiSession(
        api_key=credentials.api_key, client_code=credentials.client_code, jwt=jwt,
        refresh_token=str(data.get("refreshToken") or ""),
        feed_token=str(data.get("feedToken") or ""),
        expires_at=jwt_expiry(jwt, now or datetime.now(IST)),
    )  # fmt: skip


def generate_session(
    credentials: SmartApiCredentials,
    *,
    totp: str | None = None,
    root: str | None = None,
    secrets: SecretStore | None = None,
    now: datetime | None = None,
    timeout: float = 7.0,
) -> SmartApiSession:
    """Log in (``loginByPassword`` through ``SmartConnect.generateSession``) and store the
    tokens when ``secrets`` is given. ``totp`` defaults to the stored secret's current code.
    """
    if root is None:
        from velox.config import get_settings

        root = get_settings().smartapi_root
    code = totp.strip() if totp else credentials.totp()
    api = _sdk.SmartConnect(api_key=credentials.api_key, root=root, timeout=timeout)
    try:
        answer = api.generateSession(credentials.client_code, credentials.pin, code)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary, without parameters
        raise BrokerError(f"SmartAPI login failed: {type(exc).__name__}") from None
    session = _session_of(answer, credentials, "logging in", now)
    _store_session(secrets, session)
    log.info("SmartAPI session for %s valid until %s", credentials.client_code,
             f"{session.expires_at:%Y-%m-%d %H:%M} IST")  # fmt: skip
    return session


def refresh_session(
    session: SmartApiSession,
    *,
    root: str | None = None,
    secrets: SecretStore | None = None,
    now: datetime | None = None,
    timeout: float = 7.0,
) -> SmartApiSession:
    """Renew the three tokens with the refresh token (``generateTokens``) and store them."""
    if root is None:
        from velox.config import get_settings

        root = get_settings().smartapi_root
    api = _sdk.SmartConnect(api_key=session.api_key, access_token=session.jwt,
                            refresh_token=session.refresh_token, root=root,
                            timeout=timeout)  # fmt: skip
    try:
        answer = api.generateToken(session.refresh_token)
    except (KeyError, TypeError):  # the SDK reads data["jwtToken"] of a refusal too
        raise AuthExpired(
            f"SmartAPI refused the refresh token; log in again with `{LOGIN_COMMAND}`"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise BrokerError(f"SmartAPI token refresh failed: {type(exc).__name__}") from None
    credentials = SmartApiCredentials(session.api_key, session.client_code, "")
    renewed = _session_of(answer, credentials, "refreshing the session", now)
    if not renewed.feed_token:  # generateTokens may leave the feed token as it was
        renewed = replace(renewed, feed_token=session.feed_token)
    _store_session(secrets, renewed)
    return renewed


def load_session(secrets: SecretStore, *, now: datetime | None = None) -> SmartApiSession:
    """Return the stored session, refusing a missing or expired one (naming the login)."""
    stored = secrets.get_with_expiry(SECRET_NAMES["jwt"])
    if stored is None:
        raise AuthExpired(f"no SmartAPI session is stored; log in with `{LOGIN_COMMAND}`")
    jwt, expires_at = stored
    credentials = load_credentials(secrets)
    session = SmartApiSession(
        api_key=credentials.api_key, client_code=credentials.client_code, jwt=jwt,
        refresh_token=str(secrets.get(SECRET_NAMES["refresh_token"]) or ""),
        feed_token=str(secrets.get(SECRET_NAMES["feed_token"]) or ""),
        expires_at=expires_at or datetime.min.replace(tzinfo=IST),
    )  # fmt: skip
    if session.expired(now):
        until = session.expires_at.astimezone(IST)
        raise AuthExpired(f"the SmartAPI session expired at {until:%Y-%m-%d %H:%M} IST; log in "
                          f"again with `{LOGIN_COMMAND}`")  # fmt: skip
    return session
