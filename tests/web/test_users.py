"""Users, roles, TOTP and sessions (velox.auth) against a real store.

TOTP codes come from a hand-written RFC 6238 (HMAC-SHA1 over the 30 s counter, dynamic
truncation), not from pyotp, so a mistake in how Velox drives pyotp cannot hide itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest
from webtools import KEY, PASSWORD, rfc6238

from velox.auth import LoginFailed, LoginThrottled, Users
from velox.errors import ValidationError


class Clock:
    def __init__(self, t: float = 1_764_900_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(store, clock: Clock) -> Users:
    return Users(store, key=KEY, clock=clock, session_ttl=3600)


def failures(users: Users, name: str) -> list[str]:
    events = users.events(name)
    pairs = zip(events["event"], events["detail"], strict=True)
    return [detail["reason"] for event, detail in pairs if event == "login_failed"]


def test_trader_logs_in_with_totp_and_a_code_is_not_accepted_twice(users: Users, clock: Clock):
    enrolment = users.add("asha", "trader", PASSWORD)
    assert enrolment.totp_secret and len(enrolment.totp_secret) >= 16
    uri = urlparse(enrolment.otpauth_uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query)["secret"] == [enrolment.totp_secret]
    assert parse_qs(uri.query)["issuer"] == ["Velox"]

    code = rfc6238(enrolment.totp_secret, clock.t)
    session = users.login("asha", PASSWORD, code, address="10.0.0.1")
    assert session.role == "trader" and session.expires_at.timestamp() == clock.t + 3600
    assert users.session(session.token).username == "asha"

    with pytest.raises(LoginFailed):  # the same code again, same step
        users.login("asha", PASSWORD, code)
    clock.t += 10  # still inside the step and its ±1 window: still a used code
    with pytest.raises(LoginFailed):
        users.login("asha", PASSWORD, code)
    assert failures(users, "asha") == ["authenticator code already used"] * 2

    clock.t += 30  # the next step's code is new
    assert users.login("asha", PASSWORD, rfc6238(enrolment.totp_secret, clock.t)).token
    # a code one step old is inside the drift window but older than the last one accepted
    with pytest.raises(LoginFailed):
        users.login("asha", PASSWORD, rfc6238(enrolment.totp_secret, clock.t - 30))


def test_every_failure_has_one_message_and_an_audited_reason(users: Users, clock: Clock):
    secret = users.add("ravi", "admin", PASSWORD).totp_secret
    attempts = [
        ("ravi", "wrong password!", rfc6238(secret, clock.t), "wrong password"),
        ("nobody", PASSWORD, "123456", "unknown user"),
        ("ravi", PASSWORD, None, "no authenticator code"),
        ("ravi", PASSWORD, "12ab56", "malformed authenticator code"),
        ("ravi", PASSWORD, rfc6238(secret, clock.t + 300), "wrong authenticator code"),
    ]
    messages = set()
    for name, password, code, _ in attempts:
        with pytest.raises(LoginFailed) as caught:
            users.login(name, password, code, address="10.0.0.2")
        messages.add(str(caught.value))
    assert len(messages) == 1  # the client cannot tell which part was wrong
    assert failures(users, "ravi") == [a[3] for a in reversed(attempts) if a[0] == "ravi"]
    assert failures(users, "nobody") == ["unknown user"]


def test_throttled_per_user_then_released_when_the_window_passes(users: Users, clock: Clock):
    secret = users.add("meena", "trader", PASSWORD).totp_secret
    for _ in range(users.max_failures_per_user):
        with pytest.raises(LoginFailed):
            users.login("meena", "not the password", address=f"10.1.0.{_}")
        clock.t += 1
    with pytest.raises(LoginThrottled) as caught:  # the right password is not even checked
        users.login("meena", PASSWORD, rfc6238(secret, clock.t))
    assert 0 < caught.value.retry_after <= users.throttle_window
    assert users.events("meena")["event"].iloc[0] == "login_throttled"
    clock.t += users.throttle_window
    assert users.login("meena", PASSWORD, rfc6238(secret, clock.t)).username == "meena"


def test_throttled_per_address_across_user_names(users: Users, clock: Clock):
    users.add("inv", "investor", PASSWORD, totp=False)
    for i in range(users.max_failures_per_address):
        with pytest.raises(LoginFailed):
            users.login(f"guess{i}", PASSWORD, address="192.0.2.9")
    with pytest.raises(LoginThrottled):
        users.login("inv", PASSWORD, address="192.0.2.9")
    assert users.login("inv", PASSWORD, address="192.0.2.10").role == "investor"


def test_sessions_expire_and_are_revoked(users: Users, clock: Clock):
    users.add("inv", "investor", PASSWORD, totp=False)
    first = users.login("inv", PASSWORD)
    clock.t += 3599
    assert users.session(first.token) is not None
    clock.t += 2
    assert users.session(first.token) is None
    assert users.session(first.token) is None
    assert list(users.events("inv")["event"]).count("session_expired") == 1

    second = users.login("inv", PASSWORD)
    assert users.logout(second.token) and users.session(second.token) is None
    assert not users.logout(second.token)

    third = users.login("inv", PASSWORD)
    users.disable("inv")
    assert users.session(third.token) is None
    with pytest.raises(LoginFailed):
        users.login("inv", PASSWORD)
    assert failures(users, "inv") == ["user disabled"]
    users.enable("inv")
    assert users.login("inv", PASSWORD).username == "inv"
    assert users.session("not-a-token") is None and users.session("") is None


def test_reset_2fa_replaces_the_authenticator_and_ends_sessions(users: Users, clock: Clock):
    old = users.add("asha", "trader", PASSWORD).totp_secret
    session = users.login("asha", PASSWORD, rfc6238(old, clock.t))
    new = users.reset_2fa("asha").totp_secret
    assert new != old and users.session(session.token) is None
    clock.t += 30
    with pytest.raises(LoginFailed):
        users.login("asha", PASSWORD, rfc6238(old, clock.t))
    assert users.login("asha", PASSWORD, rfc6238(new, clock.t)).username == "asha"


def test_an_investor_with_an_authenticator_must_use_it(users: Users, clock: Clock):
    secret = users.add("iris", "investor", PASSWORD).totp_secret
    with pytest.raises(LoginFailed):
        users.login("iris", PASSWORD)
    assert users.login("iris", PASSWORD, rfc6238(secret, clock.t)).role == "investor"


def test_nothing_usable_is_stored(store, users: Users, clock: Clock):
    secret = users.add("asha", "trader", PASSWORD).totp_secret
    session = users.login("asha", PASSWORD, rfc6238(secret, clock.t))
    with store.connect() as conn:
        password_hash, cipher = conn.execute(
            "SELECT password_hash, totp_ciphertext FROM users WHERE username = 'asha'"
        ).fetchone()
        tokens = [t for (t,) in conn.execute("SELECT token_sha256 FROM user_sessions")]
    assert password_hash.startswith("$argon2id$") and PASSWORD not in password_hash
    assert secret.encode() not in bytes(cipher)
    assert tokens == [hashlib.sha256(session.token.encode()).hexdigest()]
    assert session.token not in repr(session) and secret not in repr(users.reset_2fa("asha"))


def test_bad_input_names_the_problem(users: Users):
    with pytest.raises(ValidationError, match="user name"):
        users.add("Bad Name", "trader", PASSWORD)
    with pytest.raises(ValidationError, match="role 'boss'"):
        users.add("boss", "boss", PASSWORD)
    with pytest.raises(ValidationError, match="at least 8"):
        users.add("short", "trader", "abc")
    with pytest.raises(ValidationError, match="must have 2FA"):
        users.add("nototp", "trader", PASSWORD, totp=False)
    users.add("asha", "trader", PASSWORD)
    with pytest.raises(ValidationError, match="already exists"):
        users.add("asha", "investor", PASSWORD)
    with pytest.raises(ValidationError, match="no user 'ghost'"):
        users.disable("ghost")
    with pytest.raises(ValidationError, match="not to runs"):
        users.link("asha", runs=["P1"])


def test_links_decide_what_is_seen_and_commanded(users: Users):
    users.add("root", "admin", PASSWORD)
    users.add("desk", "trader", PASSWORD)
    users.add("inv", "investor", PASSWORD, totp=False)
    admin, desk, inv = (users.get(n) for n in ("root", "desk", "inv"))
    assert Users.can_command(admin, "ACC1") and Users.can_command(desk, "ACC1")
    assert not Users.can_command(inv, "ACC1") and not Users.can_see(inv, account="ACC1")

    desk = users.link("desk", accounts=["ACC1"])
    assert Users.can_command(desk, "ACC1") and not Users.can_command(desk, "ACC2")
    assert not Users.can_command(desk, None)  # "every account" is beyond a linked trader

    inv = users.link("inv", accounts=["ACC1"], runs=["R7"])
    assert inv.accounts == ("ACC1",) and inv.runs == ("R7",)
    assert Users.can_see(inv, account="ACC1") and Users.can_see(inv, run_id="R7")
    assert not Users.can_see(inv, account="ACC2", run_id="R8")
    assert not Users.can_command(inv, "ACC1")  # linked or not, an investor never commands
    inv = users.link("inv", runs=["R7"], unlink=True)
    assert inv.runs == ()


def test_cli_add_prints_the_enrolment_as_json(store, tmp_path, clock: Clock):
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_SECRET_KEY": KEY,
           "VELOX_DATA_DIR": str(tmp_path)}  # fmt: skip

    def velox(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "velox.cli", *args], input=stdin, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    out = velox("user", "add", "asha", "--role", "trader", "--password-stdin", "--json",
                stdin=PASSWORD + "\n")  # fmt: skip
    assert out.returncode == 0, out.stderr
    enrolment = json.loads(out.stdout)
    assert set(enrolment) == {"username", "role", "totp_secret", "otpauth_uri"}
    assert (enrolment["username"], enrolment["role"]) == ("asha", "trader")
    users = Users(store, key=KEY)
    import time

    code = rfc6238(enrolment["totp_secret"], time.time())
    assert users.login("asha", PASSWORD, code).role == "trader"
    assert PASSWORD not in out.stdout + out.stderr

    out = velox("user", "add", "asha", "--role", "trader", "--password-stdin", stdin=PASSWORD)
    assert out.returncode != 0 and "already exists" in out.stderr
    out = velox("user", "add", "bob", "--role", "trader")  # no terminal, no --password-stdin
    assert out.returncode != 0 and "--password-stdin" in out.stderr
    assert velox("user", "link", "asha", "--account", "ACC1").returncode == 0
    assert velox("user", "disable", "asha").returncode == 0
    listed = json.loads(velox("user", "list", "--json").stdout)
    assert [(u["username"], u["disabled"], u["accounts"]) for u in listed] == [
        ("asha", True, ["ACC1"])
    ]
    reset = json.loads(velox("user", "reset-2fa", "asha", "--json").stdout)
    assert reset["totp_secret"] != enrolment["totp_secret"]
