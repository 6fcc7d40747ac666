"""The web server over HTTP, without a browser: login, sessions, CSRF, and roles on every route.

A real ``velox serve`` process on a real store; the expected outcomes are the issue's rules
(an investor never reaches an order path; a trader's command is stored with their name).
"""

from __future__ import annotations

import time

import pytest
import requests
from webtools import PASSWORD, login, rfc6238

from velox.store.commands import COMMAND_VERBS

pytestmark = pytest.mark.postgres


@pytest.fixture
def desk(store, users):
    """Two running paper runs on two accounts; a trader, an admin and an investor of ACC1."""
    run1 = store.create_run(mode="paper", account="ACC1", initial_cash=1e6,
                            strategies=[{"name": "s1"}])  # fmt: skip
    run2 = store.create_run(mode="paper", account="ACC2", initial_cash=1e6)
    with store.connect() as conn:
        for run, qty in ((run1, 10), (run2, -5)):
            conn.execute(
                "INSERT INTO run_positions VALUES (%s, %s, '', 'NSE:SBIN', 'MIS', %s, 500.0,"
                " 12.5, 3.25, now())",
                (run, "ACC1" if run == run1 else "ACC2", qty),
            )
    secrets = {
        "asha": users.add("asha", "trader", PASSWORD).totp_secret,
        "root": users.add("root", "admin", PASSWORD).totp_secret,
        "iris": None,
    }
    users.add("iris", "investor", PASSWORD, totp=False)
    users.link("iris", accounts=["ACC1"])
    return {"runs": (run1, run2), "secrets": secrets}


def test_login_failures_are_refused_with_one_message(web_server, users, desk):
    url = web_server.url + "/login"
    form = requests.get(url)
    assert form.status_code == 200
    for field in ('name="username"', 'name="password"', 'name="totp"'):
        assert field in form.text
    secret = desk["secrets"]["asha"]
    now = time.time()
    cases = {
        "wrong password": {"username": "asha", "password": "nope nope", "totp":
                           rfc6238(secret, now)},
        "wrong TOTP": {"username": "asha", "password": PASSWORD,
                       "totp": rfc6238(secret, now + 600)},
        "no TOTP": {"username": "asha", "password": PASSWORD, "totp": ""},
        "unknown user": {"username": "zed", "password": PASSWORD, "totp": "000000"},
    }  # fmt: skip
    for case, data in cases.items():
        reply = requests.post(url, data=data, allow_redirects=False)
        assert reply.status_code == 401, case
        assert "login failed" in reply.text and "velox_session" not in reply.cookies, case

    ok = requests.post(url, data={"username": "asha", "password": PASSWORD,
                                  "totp": rfc6238(secret, now)}, allow_redirects=False)  # fmt: skip
    assert ok.status_code == 303 and ok.headers["Location"] == "/trading"
    again = {"username": "asha", "password": PASSWORD, "totp": rfc6238(secret, now)}
    replay = requests.post(url, data=again, allow_redirects=False)
    assert replay.status_code == 401  # the same code twice

    users.disable("asha")
    disabled = requests.post(url, data={"username": "asha", "password": PASSWORD,
                                         "totp": rfc6238(secret, now + 30)})  # fmt: skip
    assert disabled.status_code == 401
    reasons = [d.get("reason") for e, d in
               zip(users.events("asha")["event"], users.events("asha")["detail"], strict=True)
               if e == "login_failed"]  # fmt: skip
    assert reasons[0] == "user disabled" and "authenticator code already used" in reasons


def test_cookies_are_httponly_samesite_and_secure_over_https(web_server, desk):
    data = {"username": "iris", "password": PASSWORD, "totp": ""}
    reply = requests.post(web_server.url + "/login", data=data, allow_redirects=False)
    cookie = reply.raw.headers.getlist("Set-Cookie")
    session = next(c for c in cookie if c.startswith("velox_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain HTTP on loopback: HTTP clients would drop it
    proxied = requests.post(web_server.url + "/login", data=data, allow_redirects=False,
                            headers={"X-Forwarded-Proto": "https"})  # fmt: skip
    session = next(c for c in proxied.raw.headers.getlist("Set-Cookie")
                   if c.startswith("velox_session="))  # fmt: skip
    assert "Secure" in session and "HttpOnly" in session


def test_throttled_after_repeated_failures(web_server, desk):
    url = web_server.url + "/login"
    for _ in range(5):
        wrong = requests.post(url, data={"username": "iris", "password": "wrong!!!"})
        assert wrong.status_code == 401
    reply = requests.post(url, data={"username": "iris", "password": PASSWORD})
    assert reply.status_code == 429 and int(reply.headers["Retry-After"]) > 0


def test_trader_commands_need_csrf_and_are_stored_with_the_user(web_server, store, desk):
    run1, run2 = desk["runs"]
    client = login(web_server, "asha", desk["secrets"]["asha"])
    api = web_server.url + "/api"
    assert {r["run_id"] for r in client.get(api + "/runs").json()} == {run1, run2}
    assert {p["run_id"] for p in client.get(api + "/positions").json()} == {run1, run2}

    token = client.headers.pop("X-CSRF-Token")
    refused = client.post(api + "/commands", json={"verb": "kill", "run_id": run1})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    wrong = client.post(api + "/commands", json={"verb": "kill"},
                        headers={"X-CSRF-Token": "0" * 64})  # fmt: skip
    assert wrong.status_code == 403
    other_site = client.post(api + "/commands", json={"verb": "kill"},
                             headers={"X-CSRF-Token": token,
                                      "Origin": "http://evil.example"})  # fmt: skip
    assert other_site.status_code == 403
    assert store.commands().empty

    client.headers["X-CSRF-Token"] = token
    done = client.post(api + "/commands", json={"verb": "kill", "account": "ACC1"})
    assert done.status_code == 201, done.text
    body = done.json()
    assert (body["verb"], body["issued_by"], body["targets"]) == ("kill", "asha", [run1])
    stored = store.commands()
    assert list(stored["verb"]) == ["kill"] and list(stored["issued_by"]) == ["asha"]

    bad = client.post(api + "/commands", json={"verb": "explode"})
    assert bad.status_code == 400 and "explode" in bad.json()["error"]
    bad = client.post(api + "/commands", json={"verb": "order", "run_id": run1,
                                               "args": {"side": "BUY"}})  # fmt: skip
    assert bad.status_code == 400 and "instrument_id" in bad.json()["error"]
    assert len(store.commands()) == 1


def test_investor_is_refused_every_command_and_trading_page(web_server, store, users, desk):
    run1, _ = desk["runs"]
    client = login(web_server, "iris", None)
    api = web_server.url + "/api"
    assert [r["run_id"] for r in client.get(api + "/runs").json()] == [run1]
    positions = client.get(api + "/positions").json()
    assert [(p["run_id"], p["qty"], p["realised_pnl"]) for p in positions] == [(run1, 10, 12.5)]
    assert client.get(api + "/positions", params={"run_id": desk["runs"][1]}).status_code == 403

    for verb in COMMAND_VERBS:
        reply = client.post(api + "/commands", json={"verb": verb, "run_id": run1,
                                                     "args": {"mode": "live"}})  # fmt: skip
        assert reply.status_code == 403, verb
    assert client.get(api + "/commands").status_code == 403
    for page in ("/trading", "/admin"):
        reply = client.get(web_server.url + page, allow_redirects=False)
        assert reply.status_code == 403, page
    websocket = client.get(web_server.url + "/trading/ws", allow_redirects=False,
                           headers={"Upgrade": "websocket", "Connection": "Upgrade"})  # fmt: skip
    assert websocket.status_code == 403
    assert store.commands().empty
    events = users.events("iris")
    assert (events["event"] == "forbidden").sum() >= len(COMMAND_VERBS)
    assert client.get(web_server.url + "/investor").status_code == 200


def test_sessions_end_on_logout_and_expiry(web_server, store, desk):
    api = web_server.url + "/api/me"
    client = login(web_server, "iris", None)
    assert client.get(api).json()["role"] == "investor"
    cookie = client.cookies["velox_session"]
    client.get(web_server.url + "/logout")
    replayed = requests.get(api, cookies={"velox_session": cookie})
    assert replayed.status_code == 401

    client = login(web_server, "iris", None)
    assert client.get(api).status_code == 200
    with store.connect() as conn:  # the session's end time passes
        conn.execute("UPDATE user_sessions SET expires_at = now() - interval '1 second'")
    assert client.get(api).status_code == 401
    assert client.get(web_server.url + "/investor", allow_redirects=False).status_code == 302
    assert requests.get(web_server.url + "/api/runs").status_code == 401
