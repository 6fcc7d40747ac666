"""Users, roles, TOTP 2FA, sessions and login throttling, all kept in the store (migration 0011).

Three roles: ``admin`` (manages users; sees and commands everything), ``trader`` (sees and
commands the accounts linked to them, every account when linked to none) and ``investor`` (sees
the accounts and runs linked to them and nothing else; can never command). The web server
(:mod:`velox.web`) asks :class:`Users` on every request; nothing here trusts the client.

Why each mechanism is the way it is:

- **Passwords** are argon2id hashes (``argon2-cffi``'s defaults, rehashed on login when those
  change). An unknown user name is checked against a dummy hash, so the reply takes as long as
  for a real one and does not reveal which names exist.
- **TOTP** (RFC 6238, ``pyotp``: 30 s steps, 6 digits, ±1 step for clock drift) is required for
  admin and trader; an investor may enrol one and is then asked for it. The secret is stored
  encrypted with the credential key (:mod:`velox.secrets`). A code is accepted only for a time
  step later than the last one accepted (``users.totp_last_step``, set by one conditional
  UPDATE), so a used code is refused even inside its window and two racing logins with one code
  cannot both pass.
- **Throttling** counts recent ``login_failed`` rows of :data:`AUDIT` events per user name and
  per address (:attr:`Users.max_failures_per_user`, :attr:`Users.max_failures_per_address` in
  :attr:`Users.throttle_window` seconds): once over, logins are refused without checking the
  password, whatever its value, until the window slides past the failures. It is in the store,
  so it holds across restarts and between server processes.
- **Sessions** are 256-bit random tokens (the cookie), stored only as their SHA-256. They expire
  (:attr:`Users.session_ttl`) and are revoked by logout, by disabling the user and by a 2FA
  reset. The CSRF token of a session is an HMAC of its token, so the server checks it without
  storing it and a page of another origin cannot know it.
- **Audit**: every login, failure (with the reason, which the client is never told), throttled
  attempt, logout, user change and command is one append-only ``auth_events`` row with the user
  and the address, written before the action it records.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from velox.errors import ValidationError, VeloxError

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store

__all__ = [
    "ROLES",
    "AuthError",
    "Enrolment",
    "LoginFailed",
    "LoginThrottled",
    "PermissionDenied",
    "Session",
    "User",
    "Users",
    "read_user",
]

ROLES = ("admin", "trader", "investor")
#: Roles that must give a TOTP code at every login.
TOTP_REQUIRED = frozenset({"admin", "trader"})
#: Events written to ``auth_events``.
AUDIT = (
    "login", "login_failed", "login_throttled", "logout", "session_expired", "user_added",
    "user_disabled", "user_enabled", "password_set", "2fa_reset", "linked", "unlinked",
    "command", "forbidden",
)  # fmt: skip
ISSUER = "Velox"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TOTP_STEP = 30
_MIN_PASSWORD = 8


class AuthError(VeloxError):
    """A login or a request was refused (the message is safe to show the client)."""


class LoginFailed(AuthError):
    """Wrong user, password or code, or a disabled user: one message for all of them."""

    def __init__(self) -> None:
        super().__init__("login failed: wrong user name, password or authenticator code")


class LoginThrottled(AuthError):
    """Too many failed logins for this user name or address; wait ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many failed logins; try again in {max(1, round(retry_after))} seconds"
        )
        self.retry_after = retry_after


class PermissionDenied(AuthError):
    """The user's role or links do not allow this."""


@dataclass(frozen=True, slots=True)
class User:
    """A stored user (never its password hash or TOTP secret)."""

    username: str
    role: str
    disabled: bool
    has_totp: bool
    created_at: datetime
    accounts: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "role": self.role,
            "disabled": self.disabled,
            "has_totp": self.has_totp,
            "created_at": self.created_at.isoformat(),
            "accounts": list(self.accounts),
            "runs": list(self.runs),
        }


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What an admin hands a new user: the TOTP secret and its ``otpauth://`` URI (for a QR)."""

    username: str
    role: str
    totp_secret: str | None = field(repr=False)
    otpauth_uri: str | None = field(repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "role": self.role,
            "totp_secret": self.totp_secret,
            "otpauth_uri": self.otpauth_uri,
        }


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in session. ``token`` is the cookie's value; it never shows in ``repr``."""

    token: str = field(repr=False)
    user: User
    created_at: datetime
    expires_at: datetime
    address: str = ""

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def csrf_token(self) -> str:
        """The token a state-changing request must echo (header ``X-CSRF-Token`` or form)."""
        return csrf_token(self.token)


def csrf_token(session_token: str) -> str:
    """Return the CSRF token of a session: HMAC-SHA256 of a fixed label under the session token."""
    return hmac.new(session_token.encode(), b"velox-csrf", hashlib.sha256).hexdigest()


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(name: object) -> str:
    """Return ``name`` if it is a user name: 1-64 lowercase letters, digits, ``_ . -``."""
    if not (isinstance(name, str) and _USERNAME.fullmatch(name)):
        raise ValidationError(
            f"user name {name!r} must be 1-64 lowercase ASCII letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, e.g. asha or desk-1"
        )
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise ValidationError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return str(role)


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < _MIN_PASSWORD:
        raise ValidationError(f"a password must be at least {_MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise ValidationError("a password must be at most 1024 characters")
    return password


#: A user's columns and account and run links (two arrays), the users table aliased ``u``;
#: :func:`_user_of_row` reads a row of them.
_USER_COLUMNS = (
    "u.username, u.role, u.password_hash, u.totp_ciphertext, u.totp_last_step, u.disabled,"
    " u.created_at,"
    " ARRAY(SELECT target FROM user_links l WHERE l.username = u.username"
    "       AND l.kind = 'account' ORDER BY target),"
    " ARRAY(SELECT target FROM user_links l WHERE l.username = u.username"
    "       AND l.kind = 'run' ORDER BY target)"
)
_USER_QUERY = f"SELECT {_USER_COLUMNS} FROM users u WHERE u.username = %s"
#: A session and its user in one statement (every request, websocket and page callback).
_SESSION_QUERY = (
    f"SELECT s.created_at, s.expires_at, s.revoked_at, s.address, {_USER_COLUMNS}"
    " FROM user_sessions s JOIN users u USING (username) WHERE s.token_sha256 = %s"
)


def _user_of_row(row: Sequence[Any]) -> User:
    """The :class:`User` of a row of :data:`_USER_COLUMNS`."""
    return User(row[0], row[1], bool(row[5]), row[3] is not None, row[6], tuple(row[7]),
                tuple(row[8]))  # fmt: skip


def read_user(store: Store, username: str) -> User | None:
    """Return the stored user and links, or None; needs no credential key.

    For readers that must not hold ``VELOX_SECRET_KEY``, such as the investor report's kernel
    (:func:`velox.web.identity.report_user`); everything else goes through :class:`Users`.
    """
    if not (isinstance(username, str) and _USERNAME.fullmatch(username)):
        return None
    with store.connect() as conn:
        row = conn.execute(_USER_QUERY, (username,)).fetchone()
        return None if row is None else _user_of_row(row)


class Users:
    """The user directory and the login/session logic, on one :class:`~velox.store.Store`.

    Parameters
    ----------
    store
        The store (migration 0011).
    key
        Credential key for TOTP secrets (default :func:`velox.secrets.resolve_key`:
        ``VELOX_SECRET_KEY`` or the OS keyring).
    clock
        Seconds since the epoch (tests freeze it to check expiry, throttling and TOTP steps).
    session_ttl
        Seconds a session lasts from login (default 12 hours: a trading day).

    Examples
    --------
    >>> users = Users(open_store())                                      # doctest: +SKIP
    >>> enrolment = users.add("asha", "trader", "a long passphrase")     # doctest: +SKIP
    >>> code = pyotp.TOTP(enrolment.totp_secret).now()                   # doctest: +SKIP
    >>> session = users.login("asha", "a long passphrase", code, address="127.0.0.1")
    """

    max_failures_per_user = 5
    max_failures_per_address = 20
    throttle_window = 15 * 60.0

    def __init__(
        self,
        store: Store,
        *,
        key: str | bytes | None = None,
        clock: Callable[[], float] = time.time,
        session_ttl: float = 12 * 3600.0,
    ) -> None:
        from argon2 import PasswordHasher

        from velox.secrets import SecretBox, resolve_key

        self.store = store
        self.clock = clock
        self.session_ttl = float(session_ttl)
        self._box = SecretBox(key if key is not None else resolve_key())
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    def __repr__(self) -> str:
        return f"Users({self.store!r})"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- audit -------------------------------------------------------------------------------

    def audit(
        self,
        event: str,
        username: str,
        *,
        address: str = "",
        detail: Mapping[str, object] | None = None,
        conn: object = None,
    ) -> None:
        """Append one ``auth_events`` row (``event`` one of :data:`AUDIT`)."""
        if event not in AUDIT:
            raise ValidationError(f"audit event {event!r} is not one of {', '.join(AUDIT)}")
        query = (
            "INSERT INTO auth_events (ts, username, address, event, detail)"
            " VALUES (%s, %s, %s, %s, %s::jsonb)"
        )
        params = (self._now(), username, address, event, json.dumps(dict(detail or {})))
        if conn is not None:
            conn.execute(query, params)  # type: ignore[attr-defined]
            return
        with self.store.connect() as c:
            c.execute(query, params)

    def events(self, username: str | None = None, *, limit: int = 200) -> pd.DataFrame:
        """Return the newest audit rows (all users, or one), newest first."""
        import pandas as pd

        where, params = ("WHERE username = %s", [username]) if username else ("", [])
        with self.store.connect() as conn:
            rows = conn.execute(
                f"SELECT id, ts, username, address, event, detail FROM auth_events {where}"
                " ORDER BY id DESC LIMIT %s",
                [*params, int(limit)],
            ).fetchall()
        frame = pd.DataFrame(rows, columns=["id", "ts", "username", "address", "event", "detail"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert("Asia/Kolkata")
        return frame

    # -- the directory -----------------------------------------------------------------------

    def _new_totp(self, username: str) -> tuple[str, str, bytes]:
        import pyotp

        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)
        return secret, uri, self._box.encrypt(secret)

    def add(
        self, username: str, role: str, password: str, *, totp: bool | None = None, by: str = ""
    ) -> Enrolment:
        """Create a user and return its :class:`Enrolment` (TOTP secret and URI).

        ``totp`` (default: every role) enrols an authenticator; admin and trader always get one.

        Raises
        ------
        ValidationError
            A bad name, role or password, or a name already taken.
        """
        check_username(username)
        check_role(role)
        check_password(password)
        if role in TOTP_REQUIRED and totp is False:
            raise ValidationError(f"a {role} must have 2FA (TOTP); leave out --no-totp")
        secret = uri = None
        token = None
        if totp is None or totp:
            secret, uri, token = self._new_totp(username)
        password_hash = self._hasher.hash(password)
        import psycopg

        with self.store.connect() as conn:
            try:
                conn.execute(
                    "INSERT INTO users (username, role, password_hash, totp_ciphertext)"
                    " VALUES (%s, %s, %s, %s)",
                    (username, role, password_hash, token),
                )
            except psycopg.errors.UniqueViolation:
                raise ValidationError(f"user {username!r} already exists") from None
            self.audit("user_added", username, detail={"role": role, "by": by}, conn=conn)
        return Enrolment(username, role, secret, uri)

    def _row(self, username: str, conn: object = None) -> tuple | None:
        if conn is not None:
            return conn.execute(_USER_QUERY, (username,)).fetchone()  # type: ignore[attr-defined]
        with self.store.connect() as c:
            return c.execute(_USER_QUERY, (username,)).fetchone()

    def get(self, username: str) -> User:
        """Return the user, or raise ValidationError naming the unknown user."""
        with self.store.connect() as conn:
            row = self._row(username, conn)
            if row is None:
                raise ValidationError(f"no user {username!r}; `velox user list` shows the users")
            return _user_of_row(row)

    def list(self) -> list[User]:
        """Return every user, by name."""
        with self.store.connect() as conn:
            rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users u ORDER BY u.username")
            return [_user_of_row(row) for row in rows.fetchall()]

    def _update(self, username: str, sql: str, params: tuple, event: str, detail: dict) -> None:
        with self.store.connect() as conn:
            done = conn.execute(
                f"UPDATE users SET {sql}, updated_at = now() WHERE username = %s",
                (*params, username),
            ).rowcount
            if not done:
                raise ValidationError(f"no user {username!r}; `velox user list` shows the users")
            self.audit(event, username, detail=detail, conn=conn)

    def revoke_sessions(self, username: str, *, conn: object = None) -> int:
        """Revoke every live session of ``username``; return how many."""
        query = (
            "UPDATE user_sessions SET revoked_at = %s WHERE username = %s AND revoked_at IS NULL"
        )
        if conn is not None:
            return conn.execute(query, (self._now(), username)).rowcount  # type: ignore[attr-defined]
        with self.store.connect() as c:
            return c.execute(query, (self._now(), username)).rowcount

    def disable(self, username: str, *, by: str = "") -> None:
        """Disable the user and end their sessions (their audit rows and links stay)."""
        self._update(username, "disabled = true", (), "user_disabled", {"by": by})
        self.revoke_sessions(username)

    def enable(self, username: str, *, by: str = "") -> None:
        self._update(username, "disabled = false", (), "user_enabled", {"by": by})

    def set_password(self, username: str, password: str, *, by: str = "") -> None:
        """Replace the password and end the user's sessions."""
        check_password(password)
        self._update(
            username, "password_hash = %s", (self._hasher.hash(password),), "password_set",
            {"by": by},
        )  # fmt: skip
        self.revoke_sessions(username)

    def reset_2fa(self, username: str, *, by: str = "") -> Enrolment:
        """Give the user a new TOTP secret (the old authenticator stops working); end sessions."""
        user = self.get(username)
        secret, uri, token = self._new_totp(username)
        self._update(
            username, "totp_ciphertext = %s, totp_last_step = NULL", (token,), "2fa_reset",
            {"by": by},
        )  # fmt: skip
        self.revoke_sessions(username)
        return Enrolment(username, user.role, secret, uri)

    def link(
        self,
        username: str,
        *,
        accounts: tuple[str, ...] | list[str] = (),
        runs: tuple[str, ...] | list[str] = (),
        unlink: bool = False,
        by: str = "",
    ) -> User:
        """Link (or with ``unlink`` remove the link of) accounts and runs to a user.

        An investor sees only what is linked; a trader trades only the linked accounts (every
        account while linked to none). Admins see and trade everything; linking one is refused.
        """
        user = self.get(username)
        if user.role == "admin":
            raise ValidationError(f"{username!r} is an admin and sees every account and run")
        if user.role == "trader" and runs:
            raise ValidationError("a trader is linked to accounts (--account), not to runs")
        items = [("account", a) for a in accounts] + [("run", r) for r in runs]
        if not items:
            raise ValidationError("name at least one --account or --run to link")
        for kind, target in items:
            if not (isinstance(target, str) and 0 < len(target) <= 64):
                raise ValidationError(f"{kind} {target!r} must be 1-64 characters")
        with self.store.connect() as conn:
            for kind, target in items:
                if unlink:
                    conn.execute(
                        "DELETE FROM user_links WHERE username = %s AND kind = %s AND target = %s",
                        (username, kind, target),
                    )
                else:
                    conn.execute(
                        "INSERT INTO user_links (username, kind, target) VALUES (%s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (username, kind, target),
                    )
            self.audit(
                "unlinked" if unlink else "linked",
                username,
                detail={"accounts": list(accounts), "runs": list(runs), "by": by},
                conn=conn,
            )
        return self.get(username)

    # -- logging in --------------------------------------------------------------------------

    def _throttle(self, conn: object, username: str, address: str) -> float | None:
        """Return seconds to wait when this user name or address is over its failure budget."""
        now = self.clock()
        since = datetime.fromtimestamp(now - self.throttle_window, UTC)
        checks = [("username", username, self.max_failures_per_user)]
        if address:
            checks.append(("address", address, self.max_failures_per_address))
        wait = None
        for column, value, budget in checks:
            rows = conn.execute(  # type: ignore[attr-defined]
                f"SELECT ts FROM auth_events WHERE {column} = %s AND event = 'login_failed'"
                " AND ts > %s ORDER BY ts DESC LIMIT %s",
                (value, since, budget),
            ).fetchall()
            if len(rows) >= budget:
                oldest = rows[-1][0].timestamp()
                wait = max(wait or 0.0, oldest + self.throttle_window - now)
        return wait

    def _accept_totp(self, conn: object, row: tuple, code: str | None) -> str | None:
        """Return None when the code is good (and mark its step used), else the reason."""
        import pyotp

        if row[3] is None:
            return None if not code else "no authenticator enrolled"
        if not code:
            return "no authenticator code"
        code = code.strip().replace(" ", "")
        if not (code.isdigit() and len(code) == 6):
            return "malformed authenticator code"
        totp = pyotp.TOTP(self._box.decrypt(bytes(row[3]), name=f"totp of {row[0]}"))
        now = self.clock()
        step = int(now // _TOTP_STEP)
        for offset in (0, -1, 1):
            if hmac.compare_digest(totp.at(now + offset * _TOTP_STEP), code):
                matched = step + offset
                break
        else:
            return "wrong authenticator code"
        if row[4] is not None and matched <= row[4]:
            return "authenticator code already used"
        done = conn.execute(  # type: ignore[attr-defined]
            "UPDATE users SET totp_last_step = %s WHERE username = %s"
            " AND (totp_last_step IS NULL OR totp_last_step < %s)",
            (matched, row[0], matched),
        ).rowcount
        return None if done else "authenticator code already used"

    def login(
        self, username: str, password: str, totp: str | None = None, *, address: str = ""
    ) -> Session:
        """Check the credentials and open a session; every outcome is audited.

        Raises
        ------
        LoginThrottled
            Too many recent failures for this user name or address (password not checked).
        LoginFailed
            Unknown or disabled user, wrong password, missing/wrong/replayed TOTP code.
        """
        from argon2.exceptions import VerificationError

        name = username.strip().lower() if isinstance(username, str) else ""
        name = name[:64] or "?"
        with self.store.connect() as conn:
            wait = self._throttle(conn, name, address)
            if wait is not None:
                self.audit("login_throttled", name, address=address, conn=conn)
                conn.commit()
                raise LoginThrottled(wait)
            row = self._row(name, conn) if _USERNAME.fullmatch(name) else None
            try:
                self._hasher.verify(row[2] if row else self._dummy_hash, password or "")
                reason = None if row else "unknown user"
            except VerificationError:
                reason = "unknown user" if row is None else "wrong password"
            if reason is None and row[5]:
                reason = "user disabled"
            if reason is None and (row[1] in TOTP_REQUIRED or row[3] is not None):
                if row[1] in TOTP_REQUIRED and row[3] is None:
                    reason = "no authenticator enrolled (`velox user reset-2fa`)"
                else:
                    reason = self._accept_totp(conn, row, totp)
            if reason is not None:
                self.audit("login_failed", name, address=address, detail={"reason": reason},
                           conn=conn)  # fmt: skip
                conn.commit()
                raise LoginFailed()
            if self._hasher.check_needs_rehash(row[2]):
                conn.execute(
                    "UPDATE users SET password_hash = %s WHERE username = %s",
                    (self._hasher.hash(password), name),
                )
            token = secrets.token_urlsafe(32)
            now = self._now()
            expires = datetime.fromtimestamp(self.clock() + self.session_ttl, UTC)
            conn.execute(
                "INSERT INTO user_sessions (token_sha256, username, address, created_at,"
                " expires_at, last_seen_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (_sha256(token), name, address, now, expires, now),
            )
            self.audit("login", name, address=address, conn=conn)
            user = _user_of_row(row)
        return Session(token, user, now, expires, address)

    def session(self, token: str | None, *, address: str = "") -> Session | None:
        """Return the live session of a cookie token, or None (unknown, expired, revoked, or
        its user disabled). An expired session is audited once, when first seen expired."""
        if not token or len(token) > 128:
            return None
        digest = _sha256(token)
        # pooled, and one statement (session, user and links) outside a transaction: every
        # request, websocket and page callback comes through here
        with self.store.pooled(transaction=False) as conn:
            row = conn.execute(_SESSION_QUERY, (digest,)).fetchone()
            if row is None:
                return None
            created, expires, revoked, last_address = row[:4]
            user = _user_of_row(row[4:])
            if revoked is not None or user.disabled:
                return None
            now = self._now()
            if expires <= now:
                with conn.transaction():
                    done = conn.execute(
                        "UPDATE user_sessions SET revoked_at = %s WHERE token_sha256 = %s"
                        " AND revoked_at IS NULL",
                        (now, digest),
                    ).rowcount
                    if done:
                        self.audit("session_expired", user.username, address=address, conn=conn)
                return None
        return Session(token, user, created, expires, last_address)

    def logout(self, token: str | None, *, address: str = "") -> bool:
        """End a session; return whether it was live."""
        if not token:
            return False
        with self.store.connect() as conn:
            row = conn.execute(
                "UPDATE user_sessions SET revoked_at = %s WHERE token_sha256 = %s"
                " AND revoked_at IS NULL RETURNING username",
                (self._now(), _sha256(token)),
            ).fetchone()
            if row is None:
                return False
            self.audit("logout", row[0], address=address, conn=conn)
        return True

    # -- what a user may see and do ----------------------------------------------------------

    @staticmethod
    def can_see(user: User, *, account: str | None = None, run_id: str | None = None) -> bool:
        """Whether ``user`` may read an account's or a run's state.

        Admins and traders see everything (a trader watches the desk); an investor sees only
        the accounts and runs linked to them (a run of a linked account counts: pass both).
        """
        if user.role != "investor":
            return True
        return (account is not None and account in user.accounts) or (
            run_id is not None and run_id in user.runs
        )

    @staticmethod
    def can_command(user: User, account: str | None) -> bool:
        """Whether ``user`` may issue commands for ``account`` (None = every account)."""
        if user.role == "admin":
            return True
        if user.role != "trader":
            return False
        if not user.accounts:
            return True
        return account is not None and account in user.accounts
