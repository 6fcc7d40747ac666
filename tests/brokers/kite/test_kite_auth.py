"""Kite login and postback checksums, token expiry, and the postback receiver.

References are computed here with hashlib and by hand (06:00 IST expiry), independently of the
code under test; the session exchange runs against the loopback simulator through the SDK.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from velox.brokers.kite import auth
from velox.brokers.kite.postback import PostbackServer, postback_checksum, verify_postback
from velox.calendar import IST
from velox.errors import AuthExpired, ConfigError
from velox.testing import KITE_MOCKS

MOCKS = str(KITE_MOCKS)


def test_session_checksum_is_sha256_of_key_token_secret() -> None:
    expected = hashlib.sha256(b"my_api_key" + b"req_tok" + b"my_secret").hexdigest()
    assert auth.session_checksum("my_api_key", "req_tok", "my_secret") == expected


def test_login_url_and_request_token_parsing() -> None:
    url = auth.login_url("abc", "https://kite.zerodha.com/connect/login")
    assert url == "https://kite.zerodha.com/connect/login?api_key=abc&v=3"
    redirect = "https://app.example/cb?type=login&status=success&request_token=AbC123"
    assert auth.parse_request_token(redirect) == "AbC123"
    assert auth.parse_request_token(" AbC123\n") == "AbC123"
    with pytest.raises(ConfigError, match="did not succeed"):
        auth.parse_request_token("https://app.example/cb?status=error&request_token=x")
    with pytest.raises(ConfigError, match="redirect URL"):
        auth.parse_request_token("not a token!")


@pytest.mark.parametrize(
    ("login", "expiry_utc"),
    [
        # 08:30 IST on 1 Apr → 06:00 IST on 2 Apr = 00:30 UTC on 2 Apr
        (datetime(2024, 4, 1, 8, 30, tzinfo=IST), datetime(2024, 4, 2, 0, 30, tzinfo=UTC)),
        # 05:59 IST → the same morning's 06:00
        (datetime(2024, 4, 2, 5, 59, tzinfo=IST), datetime(2024, 4, 2, 0, 30, tzinfo=UTC)),
        # 23:00 UTC on 1 Apr is 04:30 IST on 2 Apr → 06:00 IST on 2 Apr
        (datetime(2024, 4, 1, 23, 0, tzinfo=UTC), datetime(2024, 4, 2, 0, 30, tzinfo=UTC)),
        # exactly 06:00 IST → tomorrow's
        (datetime(2024, 4, 2, 6, 0, tzinfo=IST), datetime(2024, 4, 3, 0, 30, tzinfo=UTC)),
    ],
)
def test_token_expires_at_the_next_0600_ist(login: datetime, expiry_utc: datetime) -> None:
    assert auth.token_expiry(login) == expiry_utc


def test_credentials_and_session_hide_their_secrets() -> None:
    creds = auth.KiteCredentials("key123", "topsecret")
    session = auth.KiteSession("key123", "tok-XYZ", datetime(2024, 4, 2, tzinfo=IST))
    assert "topsecret" not in repr(creds) and "tok-XYZ" not in repr(session)
    assert session.expired(datetime(2024, 4, 2, tzinfo=IST))
    assert not session.expired(datetime(2024, 4, 1, 23, tzinfo=IST))


def test_recorded_postback_checksum_formula() -> None:
    payload = json.loads(Path(MOCKS, "postback.json").read_text())
    secret = "postback-secret"
    expected = hashlib.sha256(
        (payload["order_id"] + payload["order_timestamp"] + secret).encode()
    ).hexdigest()
    assert postback_checksum(payload["order_id"], payload["order_timestamp"], secret) == expected
    signed = {**payload, "checksum": expected}
    assert verify_postback(signed, secret)
    assert not verify_postback(signed, "another-secret")
    assert not verify_postback({**signed, "order_id": "1"}, secret)  # tampered
    assert not verify_postback(payload, secret)  # the mock's checksum is for Zerodha's secret
    assert not verify_postback({"order_id": "1"}, secret)


def test_postback_server_refuses_bad_checksums(caplog: pytest.LogCaptureFixture) -> None:
    secret = "srv-secret-value"
    got: list[dict] = []
    server = PostbackServer(got.append, secret)
    port = server.start()
    try:
        payload = json.loads(Path(MOCKS, "postback.json").read_text())
        url = f"http://127.0.0.1:{port}/kite/postback"
        caplog.set_level(logging.DEBUG)
        bad = requests.post(url, data=json.dumps(payload), timeout=5)
        good_sum = postback_checksum(payload["order_id"], payload["order_timestamp"], secret)
        good = requests.post(url, data=json.dumps({**payload, "checksum": good_sum}), timeout=5)
        junk = requests.post(url, data=b"[1, 2", timeout=5)
    finally:
        server.stop()
    assert (bad.status_code, good.status_code, junk.status_code) == (403, 200, 400)
    assert [p["order_id"] for p in got] == [payload["order_id"]]
    assert (server.accepted, server.refused) == (1, 2)
    assert secret not in caplog.text


def test_no_stored_session_names_the_login_command(store) -> None:
    from velox.secrets import SecretStore, generate_key

    secrets = SecretStore(store, key=generate_key())
    with pytest.raises(AuthExpired, match="velox broker login kite"):
        auth.load_session(secrets, api_key="k")
    secrets.put(
        auth.SECRET_NAMES["access_token"], "tok", expires_at=datetime(2024, 4, 2, 6, tzinfo=IST)
    )
    with pytest.raises(AuthExpired, match="expired at 2024-04-02 06:00 IST"):
        auth.load_session(secrets, api_key="k", now=datetime(2024, 4, 2, 6, 0, 1, tzinfo=IST))
    session = auth.load_session(secrets, api_key="k", now=datetime(2024, 4, 2, 5, tzinfo=IST))
    assert session.access_token == "tok" and session.api_key == "k"
