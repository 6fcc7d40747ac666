"""Credentials encrypted at rest in the store: broker API keys and secrets, access tokens.

A secret is kept in the store's ``secrets`` table (migration 0010) as a Fernet token
(``cryptography``: AES-128-CBC with an HMAC-SHA256 tag), so a database dump or backup holds no
usable credential. The key comes from, in order:

1. ``VELOX_SECRET_KEY`` in the environment: a Fernet key (``velox.secrets.generate_key()``,
   44 url-safe base64 characters) or any passphrase (stretched with scrypt);
2. the OS keyring (``keyring`` package with a working backend: macOS Keychain, Windows
   Credential Locker, Secret Service), which holds a generated key under service ``velox``;
3. otherwise a :class:`~velox.errors.ConfigError` saying how to set ``VELOX_SECRET_KEY``.

Plaintext never appears in ``repr``, logs or error messages: :class:`SecretStore` methods
return the value only from :meth:`SecretStore.get`, and every message names the secret, never
its value. A key that does not open a stored secret is a ConfigError naming the secret and the
two fixes (the original key, or storing the secret again).

Examples
--------
>>> key = generate_key()
>>> box = SecretBox(key)
>>> token = box.encrypt("s3cret")
>>> b"s3cret" in token, box.decrypt(token, name="demo")
(False, 's3cret')
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from velox.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from velox.store import Store

__all__ = [
    "KEYRING_SERVICE",
    "SecretBox",
    "SecretStore",
    "generate_key",
    "resolve_key",
]

log = logging.getLogger(__name__)

#: Keyring service and user name holding the generated key.
KEYRING_SERVICE = "velox"
KEYRING_USER = "secret_key"

#: scrypt salt for passphrases: fixed, so the same passphrase opens the store on every machine
#: (the store's ciphertexts are the secret's only copies; a random salt would need storing).
_PASSPHRASE_SALT = b"velox.secrets/v1"

_HOW_TO = (
    'set VELOX_SECRET_KEY in the environment to a key made with `python -c "from velox.secrets '
    'import generate_key; print(generate_key())"` (or any long passphrase), or install '
    "`keyring` with a working OS keyring backend"
)


def generate_key() -> str:
    """Return a new random Fernet key (text) for ``VELOX_SECRET_KEY``."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _fernet_key(material: str) -> bytes:
    """Return a Fernet key for ``material``: itself when it is one, else scrypt of it."""
    raw = material.strip().encode("utf-8")
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32 and len(raw) == 44:
            return raw
    except (ValueError, TypeError):
        pass
    if len(raw) < 12:
        raise ConfigError(
            "VELOX_SECRET_KEY is too short to protect credentials (fewer than 12 characters); "
            + _HOW_TO
        )
    stretched = hashlib.scrypt(raw, salt=_PASSPHRASE_SALT, n=2**14, r=8, p=1, dklen=32)
    return base64.urlsafe_b64encode(stretched)


def _keyring_key() -> str | None:
    """Return the key kept in the OS keyring (creating it), or None without a usable keyring."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if type(backend).__module__.startswith(("keyring.backends.fail", "keyring.backends.null")):
        return None
    try:
        key = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
        if not key:
            key = generate_key()
            keyring.set_password(KEYRING_SERVICE, KEYRING_USER, key)
            log.info("stored a new Velox secret key in the OS keyring (%s)", type(backend).__name__)
    except KeyringError as exc:
        log.warning("the OS keyring is not usable (%s); falling back", type(exc).__name__)
        return None
    return key


def resolve_key(secret_key: str | None = None) -> bytes:
    """Return the Fernet key: ``secret_key``, else ``VELOX_SECRET_KEY``, else the keyring.

    Raises
    ------
    ConfigError
        When there is no key anywhere, saying how to set ``VELOX_SECRET_KEY``.
    """
    if secret_key is None:
        from velox.config import get_settings

        secret_key = get_settings().secret_key
    if secret_key is None:
        secret_key = _keyring_key()
    if secret_key is None:
        raise ConfigError(f"no key to encrypt credentials with: {_HOW_TO}")
    return _fernet_key(secret_key)


class SecretBox:
    """Encrypt and decrypt text with one Fernet key (the key never shows in ``repr``)."""

    __slots__ = ("_fernet",)

    def __init__(self, key: str | bytes) -> None:
        from cryptography.fernet import Fernet

        material = key.decode("ascii") if isinstance(key, bytes) else key
        self._fernet = Fernet(_fernet_key(material))

    def __repr__(self) -> str:
        return "SecretBox(key=***)"

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes, *, name: str) -> str:
        """Return the plaintext of ``token`` (``name`` is only for the error message)."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(bytes(token)).decode("utf-8")
        except InvalidToken:
            raise ConfigError(
                f"cannot decrypt the stored secret {name!r}: the key (VELOX_SECRET_KEY or the "
                "OS keyring) is not the one it was stored with; set the original key, or store "
                "the credential again (`velox broker set kite`, `velox broker login kite`)"
            ) from None


class SecretStore:
    """Named secrets in the store's ``secrets`` table, encrypted with one key.

    Parameters
    ----------
    store
        The :class:`velox.store.Store` (migration 0010 creates the table).
    key
        A Fernet key or passphrase; default :func:`resolve_key` (env, then keyring).

    Examples
    --------
    >>> secrets = SecretStore(open_store())                    # doctest: +SKIP
    >>> secrets.put("kite.api_secret", value)                  # doctest: +SKIP
    >>> secrets.get("kite.api_secret") == value                # doctest: +SKIP
    True
    """

    def __init__(self, store: Store, *, key: str | bytes | None = None) -> None:
        self.store = store
        self._box = SecretBox(key if key is not None else resolve_key())

    def __repr__(self) -> str:
        return f"SecretStore({self.store!r}, key=***)"

    def put(self, name: str, value: str, *, expires_at: datetime | None = None) -> None:
        """Store ``value`` encrypted under ``name`` (replacing any previous one)."""
        if not isinstance(value, str) or not value:
            raise ConfigError(f"secret {name!r} must be a non-empty string")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ConfigError(f"secret {name!r}: expires_at must be tz-aware")
        token = self._box.encrypt(value)
        with self.store.connect() as conn:
            try:
                conn.execute(
                    "INSERT INTO secrets (name, ciphertext, expires_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext,"
                    " expires_at = EXCLUDED.expires_at, updated_at = now()",
                    (name, token, expires_at),
                )
            except Exception as exc:  # psycopg errors never quote parameters, but be sure
                raise StoreError(f"cannot store secret {name!r}: {type(exc).__name__}") from None
        log.info("stored secret %s", name)

    def _row(self, name: str) -> tuple[bytes, datetime | None] | None:
        with self.store.connect() as conn:
            row = conn.execute(
                "SELECT ciphertext, expires_at FROM secrets WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def get(self, name: str) -> str | None:
        """Return the plaintext of ``name``, or None when it is not stored."""
        row = self._row(name)
        return None if row is None else self._box.decrypt(row[0], name=name)

    def get_with_expiry(self, name: str) -> tuple[str, datetime | None] | None:
        """Return ``(plaintext, expires_at)`` of ``name``, or None when it is not stored."""
        row = self._row(name)
        return None if row is None else (self._box.decrypt(row[0], name=name), row[1])

    def delete(self, name: str) -> bool:
        """Forget ``name``; return whether it was stored."""
        with self.store.connect() as conn:
            done = conn.execute("DELETE FROM secrets WHERE name = %s", (name,)).rowcount
        return bool(done)

    def names(self) -> list[str]:
        """Return the stored secrets' names (never their values)."""
        with self.store.connect() as conn:
            return [n for (n,) in conn.execute("SELECT name FROM secrets ORDER BY name")]
