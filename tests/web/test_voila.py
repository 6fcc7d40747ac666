"""The investor report: Voila behind ``velox serve``'s login, one user's data, nothing that acts.

One real ``velox serve`` (with its Voila child) on one real store for the module: two
investors, each linked to their own account with a recorded run. Each report page starts a
kernel, which is slow, so the module renders each investor's page once (:func:`rendered`) and
the tests share those pages and kernels. What a page shows is checked against the store's
runs; what a kernel message does is checked against the filesystem and the commands table.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from pathlib import Path

import pytest
import requests
from webtools import KEY, PASSWORD, login, screenshot, start_web_server

from velox.store.commands import COMMAND_VERBS

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("pg_server", ["embedded"], indirect=True),
]

#: A websocket handshake's headers, for plain HTTP clients.
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')
#: name, account, run id, final equity (as the report prints it)
INVESTORS = {
    "iris": ("ACCIRIS", "RUNIRIS7", "1,012,345.50"),
    "omar": ("ACCOMAR", "RUNOMAR9", "2,023,456.25"),
}


@pytest.fixture(scope="module")
def report_store(pg_server):
    """A store with two investors, each linked to an account with a finished, recorded run."""
    from velox.auth import Users
    from velox.store import Store
    from velox.store.recorder import RunRecorder

    store = Store(pg_server.new_database(), backend="embedded")
    users = Users(store, key=KEY)
    start = 1_750_000_000 * 10**9
    for name, (account, run_id, final) in INVESTORS.items():
        store.create_run(mode="paper", account=account, initial_cash=1e6, run_id=run_id)
        value = float(final.replace(",", ""))
        with RunRecorder(store, run_id) as recorder:
            for i in range(60):
                recorder.equity(start + i * 60 * 10**9, 1e6 + (value - 1e6) * i / 59)
        store.finish_run(run_id, status="finished", summary={"final_equity": value})
        users.add(name, "investor", PASSWORD, totp=False)
        users.link(name, accounts=[account])
    yield store
    store.close()


@pytest.fixture(scope="module")
def server(report_store, tmp_path_factory):
    """``velox serve`` with its report; when it stops, its Voila child must be gone too."""
    running = start_web_server(report_store, tmp_path_factory.mktemp("report"))
    web = next(running)
    yield web
    child = int(re.search(r"Voila \(pid (\d+)\)", web.output()).group(1))
    next(running, None)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{child}").exists() and "zombie" not in _state(child):
        assert time.monotonic() < deadline, f"Voila (pid {child}) outlived velox serve"
        time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.fixture(scope="module")
def rendered(server):
    """Each investor's report page, rendered once: (client, page HTML, kernel id).

    Iris's request also carries a forged identity header naming omar, and URL parameters
    naming omar's account and run: the page must still be hers alone.
    """
    pages = {}
    for name in INVESTORS:
        client = login(server, name, None)
        headers, params = {}, {}
        if name == "iris":
            headers = {"X-Velox-Report-Identity": f"omar:{int(time.time()) + 60}:00:{'0' * 64}"}
            params = {"account": "ACCOMAR", "run": "RUNOMAR9"}
        reply = client.get(server.url + "/report/", headers=headers, params=params, timeout=180)
        assert reply.status_code == 200, (reply.status_code, reply.text[-500:], server.output())
        found = KERNEL_ID.search(reply.text)
        assert found, reply.text[:2000]
        pages[name] = (client, reply.text, found.group(1))
    return pages


def voila_port(server) -> int:
    found = re.search(r"Voila \(pid \d+\) on 127\.0\.0\.1:(\d+)", server.output())
    assert found, server.output()
    return int(found.group(1))


def test_no_session_is_sent_to_login_on_every_report_route(server):
    for path in ("/report/", "/report/voila/static/voila.js",
                 f"/report/api/kernels/{uuid.uuid4()}/channels"):  # fmt: skip
        reply = requests.get(server.url + path, allow_redirects=False,
                             headers=UPGRADE)  # fmt: skip
        assert reply.status_code == 302, (path, reply.status_code)
        assert reply.headers["Location"].startswith("/login"), path
    assert requests.get(server.url + "/report", allow_redirects=False).headers["Location"] == (
        "/report/"
    )


def test_each_investor_sees_only_their_runs_whatever_header_or_url_they_send(rendered):
    for name, (_, page, _) in rendered.items():
        account, run_id, final = INVESTORS[name]
        other = next(v for k, v in INVESTORS.items() if k != name)
        assert run_id in page and account in page and final in page, name
        assert other[1] not in page and other[0] not in page and other[2] not in page, name
        assert f"Signed in as **{name}** (investor)" in page
        # no code shown: the notebook's sources are stripped
        assert "report_user(" not in page and "open_store" not in page
    iris, omar = rendered["iris"][2], rendered["omar"][2]
    assert iris != omar


def test_the_voila_port_shows_nothing_without_the_proxy(server, rendered):
    direct = f"http://127.0.0.1:{voila_port(server)}/report/"
    forged = {"X-Velox-Report-Identity": f"iris:{int(time.time()) + 60}:00:{'0' * 64}"}
    for headers in ({}, forged):
        reply = requests.get(direct, headers=headers, allow_redirects=False, timeout=30)
        assert reply.status_code in (302, 403), reply.status_code
        assert "RUNIRIS7" not in reply.text and "kernelId" not in reply.text
    kernel = rendered["iris"][2]  # a live kernel: without the token, Voila will not open it
    for path in (f"api/kernels/{kernel}", f"api/kernels/{kernel}/channels"):
        reply = requests.get(direct + path, allow_redirects=False, timeout=30, headers=UPGRADE)
        assert reply.status_code in (302, 403), (path, reply.status_code)


def test_the_voila_child_refuses_a_page_without_a_valid_single_use_identity(
    report_store, monkeypatch
):
    """A ReportProcess of this test's own (so the test knows its token and secret)."""
    from velox.web.identity import HEADER, sign_identity
    from velox.web.voila import ReportProcess

    monkeypatch.setenv("VELOX_DATABASE_URL", report_store.url)
    report = ReportProcess().start()
    try:
        token = {"Authorization": f"token {report.token}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(report.url("voila/static/voila.js"), headers=token, timeout=5)
                break
            except requests.ConnectionError:
                assert report.alive() and time.monotonic() < deadline, "Voila did not start"
                time.sleep(0.3)
        now = time.time()
        cases = {
            "no token": ({HEADER: sign_identity("iris", report.secret)}, (302, 403)),
            "no identity": (token, (403,)),
            "wrong secret": ({**token, HEADER: sign_identity("iris", "x" * 32)}, (403,)),
            "expired": ({**token, HEADER: sign_identity("iris", report.secret, now=now - 600)},
                        (403,)),
            "malformed": ({**token, HEADER: "iris"}, (403,)),
        }  # fmt: skip
        for case, (headers, statuses) in cases.items():
            reply = requests.get(report.url(), headers=headers, allow_redirects=False, timeout=60)
            assert reply.status_code in statuses, (case, reply.status_code)
            assert "RUNIRIS7" not in reply.text, case
        good = {**token, HEADER: sign_identity("iris", report.secret)}
        reply = requests.get(report.url(), headers=good, timeout=180)
        assert reply.status_code == 200 and "RUNIRIS7" in reply.text
        assert "RUNOMAR9" not in reply.text
        replayed = requests.get(report.url(), headers=good, timeout=60)
        assert replayed.status_code == 403 and "RUNIRIS7" not in replayed.text
    finally:
        report.stop()
    assert not report.alive()


def _message(msg_type: str, content: dict, channel: str = "shell") -> dict:
    return {
        "channel": channel,
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "test",
                   "username": "test", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "content": content, "buffers": [],
    }  # fmt: skip


def _v1_frame(message: dict) -> bytes:
    """The v1 kernel websocket protocol: offsets, then channel, header, parent, metadata,
    content."""
    parts = [message["channel"].encode()] + [
        json.dumps(message[k]).encode() for k in ("header", "parent_header", "metadata", "content")
    ]
    count = len(parts) + 1
    offsets, position = [], 8 * (count + 1)
    for part in parts:
        offsets.append(position)
        position += len(part)
    offsets.append(position)
    head = count.to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + b"".join(parts)


def _v1_type(frame: bytes) -> tuple[str, str | None]:
    count = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    header = json.loads(frame[offsets[1] : offsets[2]])
    parent = json.loads(frame[offsets[2] : offsets[3]])
    return header["msg_type"], parent.get("msg_id")


async def _talk(url: str, cookie: str, messages: list, *, v1: bool) -> list[str]:
    """Send ``messages`` then a kernel_info_request; return the message types received until
    its reply (shell messages run in order, so anything sent before has been handled)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    origin = url.replace("ws://", "http://").split("/report/")[0]
    request = HTTPRequest(url, headers={"Cookie": f"velox_session={cookie}", "Origin": origin})
    connection = await websocket_connect(
        request, subprotocols=["v1.kernel.websocket.jupyter.org"] if v1 else None
    )
    assert (connection.selected_subprotocol is not None) == v1
    probe = _message("kernel_info_request", {})
    for message in [*messages, probe]:
        await connection.write_message(_v1_frame(message) if v1 else json.dumps(message),
                                       binary=v1)  # fmt: skip
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = await asyncio.wait_for(connection.read_message(), 60)
        assert frame is not None, f"the socket closed after {seen}"
        if v1:
            kind, parent = _v1_type(frame)
        else:
            data = json.loads(frame)
            kind, parent = data["header"]["msg_type"], data["parent_header"].get("msg_id")
        seen.append(kind)
        if kind == "kernel_info_reply" and parent == probe["header"]["msg_id"]:
            connection.close()
            return seen
    raise AssertionError(f"no kernel_info_reply; saw {seen}")


def test_code_sent_over_the_kernel_websocket_is_dropped(server, report_store, rendered,
                                                        tmp_path: Path):  # fmt: skip
    from velox.auth import Users

    client, _, kernel = rendered["iris"]
    url = server.url.replace("http://", "ws://") + f"/report/api/kernels/{kernel}/channels"
    marker = tmp_path / "pwned"
    code = (f"open({str(marker)!r}, 'w').write('x')\n"
            "from velox.store import open_store\n"
            "open_store().issue_command('kill', issued_by='pwned')")  # fmt: skip
    attacks = [
        _message("execute_request", {"code": code, "silent": False, "store_history": False,
                                     "user_expressions": {}, "allow_stdin": False,
                                     "stop_on_error": True}),
        _message("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": "evil", "data": {}}),
        _message("comm_msg", {"comm_id": uuid.uuid4().hex,
                              "data": {"method": "update", "state": {"value": 1}}}),
        _message("complete_request", {"code": "import o", "cursor_pos": 8}),
        _message("inspect_request", {"code": "store", "cursor_pos": 5, "detail_level": 1}),
        _message("history_request", {"hist_access_type": "tail", "n": 10, "output": True,
                                     "raw": True}),
        _message("shutdown_request", {"restart": False}, channel="control"),
    ]  # fmt: skip
    cookie = client.cookies["velox_session"]
    for v1 in (False, True):
        seen = asyncio.run(_talk(url, cookie, attacks, v1=v1))
        replies = {"execute_reply", "execute_input", "execute_result", "complete_reply",
                   "inspect_reply", "history_reply", "shutdown_reply", "error"}  # fmt: skip
        assert not replies & set(seen), seen
    assert not marker.exists()
    assert report_store.commands().empty
    events = Users(report_store, key=KEY).events("iris")
    pairs = zip(events["event"], events["detail"], strict=True)
    dropped = [d.get("report_message") for e, d in pairs if e == "forbidden"]
    assert dropped.count("execute_request") == 2 and "control:shutdown_request" in dropped

    # omar may not connect to iris's kernel, nor end it
    omar = rendered["omar"][0]
    socket = omar.get(server.url + f"/report/api/kernels/{kernel}/channels",
                      allow_redirects=False,
                      headers=UPGRADE)  # fmt: skip
    assert socket.status_code == 403
    ended = omar.post(server.url + f"/report/voila/api/shutdown/{kernel}", allow_redirects=False)
    assert ended.status_code == 403


def test_jupyter_and_voila_endpoints_are_not_reachable_through_the_proxy(server, rendered):
    client, _, kernel = rendered["iris"]
    for path in ("api/contents", "api/contents/investor.ipynb", "api/kernels",
                 f"api/kernels/{kernel}/restart", f"api/kernels/{kernel}/interrupt",
                 "api/kernelspecs", "api/sessions", "api/terminals",
                 "terminals", "terminals/1", "tree", "lab", "login", "logout", "investor.ipynb",
                 "voila/files/investor.ipynb", "voila/render/investor.ipynb", "voila/tree",
                 "voila/static/../../investor.ipynb", f"voila/query/{kernel}",
                 f"voila/execution/{kernel}"):  # fmt: skip
        reply = client.get(server.url + "/report/" + path, allow_redirects=False)
        assert reply.status_code in (403, 404), (path, reply.status_code)
    for method in ("POST", "DELETE", "PUT", "PATCH"):
        reply = client.request(method, server.url + f"/report/api/kernels/{kernel}",
                               allow_redirects=False)  # fmt: skip
        assert reply.status_code in (403, 404, 405), (method, reply.status_code)
    assert client.post(server.url + "/report/api/kernels", json={}).status_code in (403, 404)
    # its own kernel's state, which the page asks for before connecting; not another's
    assert client.get(server.url + f"/report/api/kernels/{kernel}").json()["id"] == kernel
    other = rendered["omar"][0].get(server.url + f"/report/api/kernels/{kernel}")
    assert other.status_code == 403


def test_an_investor_session_is_refused_every_trading_route_and_command(
    server, report_store, rendered
):
    client = rendered["iris"][0]
    for verb in COMMAND_VERBS:
        reply = client.post(server.url + "/api/commands",
                            json={"verb": verb, "run_id": "RUNIRIS7", "args": {}})  # fmt: skip
        assert reply.status_code == 403, verb
    assert client.get(server.url + "/api/commands").status_code == 403
    for page in ("/trading", "/admin"):
        assert client.get(server.url + page, allow_redirects=False).status_code == 403
    assert report_store.commands().empty


def test_the_investor_opens_the_report_in_a_browser(chromium, server, rendered):
    page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=username]", "omar")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/investor"), page.url
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append("in")))
    page.locator("#velox-report-link").click()
    page.wait_for_url("**/report/")
    page.locator(".bk-Canvas").first.wait_for(timeout=120_000)
    runs = page.locator("#velox-report-runs")
    assert "RUNOMAR9" in runs.inner_text() and "RUNIRIS7" not in page.content()
    deadline = time.monotonic() + 30
    while not frames and time.monotonic() < deadline:  # the kernel answers through the proxy
        page.wait_for_timeout(250)
    assert frames, "no message from the report's kernel reached the page"
    output = page.locator("#rendered_cells")
    controls = output.locator("input, button, select, textarea").count()
    assert controls == 0, f"the report has {controls} control(s)"
    screenshot(page, "investor-report")

    # leaving the page ends its kernel (Voila's beforeunload POST, through the proxy)
    kernel = KERNEL_ID.search(page.content()).group(1)
    state = page.context.request.get(server.url + f"/report/api/kernels/{kernel}")
    assert state.status == 200 and state.json()["id"] == kernel
    page.goto(server.url + "/investor")
    deadline = time.monotonic() + 30
    while page.context.request.get(server.url + f"/report/api/kernels/{kernel}").status == 200:
        assert time.monotonic() < deadline, "the report's kernel outlived its page"
        time.sleep(0.25)
