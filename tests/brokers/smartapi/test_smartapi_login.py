"""SmartAPI login as a user does it: `velox broker set/login/status smartapi` as processes,
against the loopback SmartAPI simulator configured with one client's PIN and TOTP secret (it
refuses any other PIN, and any code that secret did not produce in the current window); then
the session's expiry and refresh, and `velox sim smartapi` serving the official SDK.
"""

from __future__ import annotations

import base64
import doctest
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from tests.engine.conftest import ROOT
from velox.brokers.smartapi import auth
from velox.brokers.smartapi._sdk import SmartConnect
from velox.brokers.smartapi.simulator import SmartApiSimulator
from velox.calendar import IST
from velox.errors import AuthExpired

pytestmark = [pytest.mark.postgres]

CLIENT, PIN, TOTP_SECRET = "A123", "4321", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def sim() -> Iterator[SmartApiSimulator]:
    sim = SmartApiSimulator(client_code=CLIENT, pin=PIN, totp_secret=TOTP_SECRET)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def env(store, sim: SmartApiSimulator, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    from velox.secrets import generate_key

    return {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path),
            "VELOX_SECRET_KEY": generate_key(), "VELOX_SMARTAPI_ROOT": sim.url}  # fmt: skip


def _velox(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "velox.cli", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)  # fmt: skip


def _set(env: dict[str, str], pin: str = PIN, secret: str = TOTP_SECRET):  # noqa: ANN202
    return _velox(env, "broker", "set", "smartapi", "--api-key", "demo", "--client-code", CLIENT,
                  "--pin-stdin", "--totp-secret-stdin", stdin=f"{pin}\n{secret}\n")  # fmt: skip


def test_login_with_the_stored_totp_secret_and_status(env: dict[str, str], store) -> None:  # noqa: ANN001
    done = _set(env)
    assert done.returncode == 0, done.stderr
    login = _velox(env, "broker", "login", "smartapi")
    assert login.returncode == 0, login.stdout + login.stderr
    assert f"logged in to smartapi as {CLIENT}" in login.stdout
    status = _velox(env, "broker", "status", "smartapi")
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines())
    assert {k.strip(): v.strip() for k, v in lines.items() if k.strip() != "valid until"} == {
        "api_key": "stored", "client_code": "stored", "pin": "stored", "totp_secret": "stored",
        "jwt": "stored", "refresh_token": "stored", "feed_token": "stored",
    }  # fmt: skip
    # the session is the simulator's (its JWT works there) and valid ~24 h from now
    from velox.secrets import SecretStore

    secrets = SecretStore(store, key=env["VELOX_SECRET_KEY"])
    session = auth.load_session(secrets)
    assert (
        SmartConnect(
            api_key="demo", root=env["VELOX_SMARTAPI_ROOT"], access_token=session.jwt
        ).getProfile("")["data"]["clientcode"]
        == CLIENT
    )
    left = session.expires_at - datetime.now(IST)
    assert timedelta(hours=23) < left <= timedelta(hours=24)
    # no secret was printed, by any of the commands
    shown = done.stdout + done.stderr + login.stdout + login.stderr + status.stdout + status.stderr
    for secret in (PIN, TOTP_SECRET, session.jwt, session.refresh_token, session.feed_token):
        assert secret not in shown


def test_a_wrong_pin_or_a_foreign_totp_is_refused_clearly(env: dict[str, str]) -> None:
    assert _set(env, pin="9999").returncode == 0
    wrong = _velox(env, "broker", "login", "smartapi")
    assert wrong.returncode != 0 and "check the client code, PIN and TOTP" in wrong.stderr
    assert _set(env, secret=pyotp.random_base32()).returncode == 0
    time.sleep(1.1)  # Angel (and the simulator) take one login a second
    # the simulator checks the code against its secret: another secret's code is refused
    foreign = _velox(env, "broker", "login", "smartapi")
    assert foreign.returncode != 0 and "AB10" in foreign.stderr
    # a code from the phone (--totp) is what the simulator's secret expects: accepted
    _set(env)
    time.sleep(1.1)
    code = pyotp.TOTP(TOTP_SECRET).now()
    assert _velox(env, "broker", "login", "smartapi", "--totp", code).returncode == 0


def test_bad_input_names_the_problem(env: dict[str, str]) -> None:
    kite_option = _velox(env, "broker", "set", "smartapi", "--api-secret-stdin", stdin="x\n")
    assert kite_option.returncode == 2 and "--api-secret-stdin is not a smartapi setting" in (
        kite_option.stderr
    )
    short = _set(env, secret="JBSWY3DP")
    assert short.returncode == 2 and "TOTP secret" in short.stderr
    letters = _set(env, pin="12ab")
    assert letters.returncode == 2 and "PIN" in letters.stderr
    no_login = _velox(env, "broker", "login", "smartapi")
    assert no_login.returncode != 0 and "velox broker set smartapi" in no_login.stderr


def test_an_expired_session_is_refused_and_refresh_rotates_the_tokens(
    sim: SmartApiSimulator,
    store,  # noqa: ANN001
) -> None:
    from velox.secrets import SecretStore, generate_key

    secrets = SecretStore(store, key=generate_key())
    auth.save_credentials(secrets, api_key="demo", client_code=CLIENT, pin=PIN,
                          totp_secret=TOTP_SECRET)  # fmt: skip
    session = auth.generate_session(auth.load_credentials(secrets), root=sim.url, secrets=secrets)
    with pytest.raises(AuthExpired, match="velox broker login smartapi"):
        auth.load_session(secrets, now=session.expires_at + timedelta(seconds=1))
    renewed = auth.refresh_session(session, root=sim.url, secrets=secrets)
    assert renewed.jwt != session.jwt and auth.load_session(secrets).jwt == renewed.jwt
    with pytest.raises(AuthExpired, match="refresh token"):
        stale = auth.SmartApiSession("demo", CLIENT, renewed.jwt, "no-such", "", renewed.expires_at)
        auth.refresh_session(stale, root=sim.url)


def test_jwt_expiry_reads_the_exp_claim() -> None:
    exp = datetime(2025, 5, 21, 3, 30, tzinfo=UTC)
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp.timestamp()}).encode()).decode()
    assert auth.jwt_expiry(f"e30.{claims.rstrip('=')}.sig", exp) == exp
    assert doctest.testmod(auth).failed == 0


def test_velox_sim_smartapi_serves_the_sdk(tmp_path: Path) -> None:
    env = {**os.environ, "VELOX_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "velox.cli", "sim", "smartapi", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "SmartAPI simulator: REST http://127.0.0.1:" in banner, proc.stderr
        root = banner.split("REST ", 1)[1].split()[0]
        login = SmartConnect(api_key="any", root=root).generateSession("D1", "1111", "000000")
        assert login["status"] is True and login["data"]["jwtToken"]
        assert "/smart-stream" in banner and "/smart-order-update" in banner
    finally:
        proc.terminate()
        proc.wait(timeout=20)
