"""Helpers of the web tests: an RFC 6238 reference, the test key and password, a form login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from typing import Any

from velox.secrets import generate_key

KEY = generate_key()
PASSWORD = "correct horse battery"


def rfc6238(secret: str, t: float, step: int = 30, digits: int = 6) -> str:
    """The TOTP code of ``secret`` (base32) at time ``t``, as RFC 6238 defines it."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(t // step)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def login(server: Any, username: str, totp_secret: str | None, *, at: float | None = None):
    """A requests session logged in through the form (a fresh TOTP step when needed)."""
    import requests

    client = requests.Session()
    code = rfc6238(totp_secret, at if at is not None else time.time()) if totp_secret else ""
    reply = client.post(server.url + "/login",
                        data={"username": username, "password": PASSWORD, "totp": code},
                        allow_redirects=False)  # fmt: skip
    assert reply.status_code == 303, (reply.status_code, reply.text[-300:])
    client.headers["X-CSRF-Token"] = client.cookies["velox_csrf"]
    return client
