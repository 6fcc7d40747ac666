"""Breeze login as a user does it: `velox broker set/login/status breeze` as processes,
against the loopback Breeze simulator configured with one app key and secret (it refuses any
other key, an apisession it did not issue, and a request signed with another secret); then a
live connection on the stored session, and `velox sim breeze` serving the official SDK.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.engine.conftest import ROOT
from velox.brokers.breeze import _sdk, auth
from velox.brokers.breeze.simulator import BreezeSimulator
from velox.calendar import IST
from velox.errors import AuthExpired

pytestmark = [pytest.mark.postgres]

KEY, SECRET = "AppKey42", "s3cret-of-the-app"


@pytest.fixture
def sim() -> Iterator[BreezeSimulator]:
    sim = BreezeSimulator(api_key=KEY, api_secret=SECRET, user_id="ICICI77")
    sim.start()
    sim.trade("NSE:SBIN", 812.0)
    yield sim
    sim.stop()


@pytest.fixture
def env(store, sim: BreezeSimulator, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    from velox.secrets import generate_key

    return {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path),
            "VELOX_SECRET_KEY": generate_key(), "VELOX_BREEZE_ROOT": sim.url}  # fmt: skip


def _velox(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "velox.cli", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)  # fmt: skip


def _set(env: dict[str, str], secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    return _velox(env, "broker", "set", "breeze", "--api-key", KEY, "--api-secret-stdin",
                  stdin=f"{secret}\n")  # fmt: skip


def test_login_through_the_login_page_then_trade_on_the_stored_session(
    env: dict[str, str],
    sim: BreezeSimulator,
    store,  # noqa: ANN001
) -> None:
    done = _set(env)
    assert done.returncode == 0, done.stderr
    # the login page the CLI prints is the simulator's; it answers the apisession
    url = _velox(env, "broker", "login", "breeze", stdin="\n").stdout.splitlines()[1]
    assert url == f"{sim.url}/apiuser/login?api_key={KEY}"
    code = requests.get(url, timeout=10).json()["Success"]["apisession"]
    login = _velox(
        env, "broker", "login", "breeze", stdin=f"https://app.example/?apisession={code}\n"
    )
    assert login.returncode == 0, login.stdout + login.stderr
    assert "logged in to breeze as ICICI77" in login.stdout
    status = _velox(env, "broker", "status", "breeze")
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines())
    assert {k.strip(): v.strip() for k, v in lines.items() if k.strip() != "valid until"} == {
        "api_key": "stored", "api_secret": "stored", "user_id": "stored", "session_key": "stored",
    }  # fmt: skip
    from velox.brokers import connect
    from velox.secrets import SecretStore

    session = auth.load_session(SecretStore(store, key=env["VELOX_SECRET_KEY"]))
    left = session.expires_at - datetime.now(IST)
    assert timedelta(hours=23) < left <= timedelta(hours=24)
    shown = "".join(p.stdout + p.stderr for p in (done, login, status))
    assert SECRET not in shown and session.session_key not in shown
    # `velox live` with broker = "breeze" connects on it (the settings read VELOX_BREEZE_ROOT)
    from velox.config import reset_settings

    old = {k: os.environ.get(k) for k in ("VELOX_BREEZE_ROOT", "VELOX_SECRET_KEY")}
    os.environ.update({k: env[k] for k in old})
    reset_settings()
    try:
        live = connect("breeze", store=store, instruments=lambda i: None)  # type: ignore[arg-type,return-value]
        try:
            assert live.broker.funds().cash == 1_000_000.0
        finally:
            live.close()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


def test_a_foreign_apisession_or_secret_is_refused_clearly(
    env: dict[str, str], sim: BreezeSimulator
) -> None:
    assert _set(env).returncode == 0
    wrong = _velox(env, "broker", "login", "breeze", "--api-session", "00000000")
    assert wrong.returncode != 0 and "Breeze refused the login" in wrong.stderr
    assert "velox broker login breeze" in wrong.stderr
    # customerdetails is not signed: a wrong secret logs in, and its first signed call fails
    session = auth.generate_session(auth.BreezeCredentials(KEY, "not-it"), sim.api_session(),
                                    urls=_sdk.BreezeUrls(sim.url))  # fmt: skip
    user, key = session.user_id, session.session_key
    from velox.brokers.breeze.adapter import BreezeBroker

    broker = BreezeBroker(KEY, "not-it", user, key, urls=_sdk.BreezeUrls(sim.url),
                          notifications=False)  # fmt: skip
    with pytest.raises(Exception, match="api_secret"):
        broker.funds()


def test_bad_input_names_the_problem(env: dict[str, str]) -> None:
    angel = _velox(env, "broker", "set", "breeze", "--pin-stdin", stdin="1234\n")
    assert angel.returncode == 2 and "--pin-stdin is not a breeze setting" in angel.stderr
    totp = _velox(env, "broker", "login", "breeze", "--totp", "123456")
    assert totp.returncode == 2 and "--totp is smartapi's" in totp.stderr
    no_app = _velox(env, "broker", "login", "breeze", "--api-session", "1")
    assert no_app.returncode != 0 and "velox broker set breeze" in no_app.stderr


def test_an_expired_session_is_refused(sim: BreezeSimulator, store) -> None:  # noqa: ANN001
    from velox.secrets import SecretStore, generate_key

    secrets = SecretStore(store, key=generate_key())
    auth.save_credentials(secrets, api_key=KEY, api_secret=SECRET)
    session = auth.generate_session(auth.load_credentials(secrets), sim.api_session(),
                                    urls=_sdk.BreezeUrls(sim.url), secrets=secrets)  # fmt: skip
    assert auth.load_session(secrets).session_key == session.session_key
    with pytest.raises(AuthExpired, match="velox broker login breeze"):
        auth.load_session(secrets, now=session.expires_at + timedelta(seconds=1))


def test_velox_sim_breeze_serves_the_sdk(tmp_path: Path) -> None:
    env = {**os.environ, "VELOX_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "velox.cli", "sim", "breeze", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "Breeze simulator: http://127.0.0.1:" in banner, proc.stderr
        root = banner.split("simulator: ", 1)[1].split()[0]
        code = requests.get(f"{root}/apiuser/login?api_key=any", timeout=10).json()
        session = auth.generate_session(auth.BreezeCredentials("any", "velox-demo-secret"),
                                        code["Success"]["apisession"],
                                        urls=_sdk.BreezeUrls(root))  # fmt: skip
        assert session.user_id == "VELOXSIM" and session.session_key
    finally:
        proc.terminate()
        proc.wait(timeout=20)
