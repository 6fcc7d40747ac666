"""Benchmark the trader console in Chromium: page load, tick-to-screen latency, API latency
under 50 clients, and the sessions one server process holds.

Run ``python bench/dashboard.py`` (needs Debian's ``/usr/bin/chromium``; ``--document``
measures only the server's page build, without a browser). It starts a throwaway
embedded PostgreSQL in a temp dir (never the user's store), a ``velox serve`` process on it,
and a *writer*: a running paper run's :class:`~velox.store.RunRecorder` fed ``SYMBOLS`` symbols
ticking ``RATE`` times a second, exactly the path a paper or live engine's ticks take
(recorder → store → NOTIFY → the server's one :class:`~velox.ui.live.LiveRuns` reader → each
session's 10 Hz timer → Bokeh websocket → Tabulator → paint).

Each tick's cumulative *volume* is its send time (epoch ms mod 10^9), so the page itself
measures tick → screen: a MutationObserver on the watchlist's rows takes the volume of every
changed cell, waits for the next animation frame (the paint) and records ``now - volume``.

Product targets (issue 15): page load < 2 s; tick → screen p95 < 250 ms at 100 symbols × 4/s;
API p95 < 200 ms under 50 concurrent clients. The anchor is the console a user would write on
Panel alone — each session's periodic callback polling the store for its run at the same
refresh rate — whose reads grow with the sessions: measured here as the fresh-state rate each
polling session actually gets (threads in one process, as Panel sessions are), against
Velox's one read per recorder batch per process whatever the number of sessions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYMBOLS = 100
RATE = 4.0  # ticks per symbol per second
CLIENTS = 50
API_SECONDS = 10.0
LOADS = 5
SESSIONS = (1, 5, 10, 20)
ANCHOR = True
PASSWORD = "bench password 123"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

OBSERVE = """() => {
  const all = (root, out) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('velox-grid')) out.push(el);
      if (el.shadowRoot) all(el.shadowRoot, out);
    }
    return out;
  };
  const tables = all(document, []).filter(t => t.tHead && t.tHead.innerText.includes('change_pct'));
  if (!tables.length) return false;
  window.__lat = [];
  const seen = new Map();
  const table = tables[0];
  const col = [...table.tHead.rows[0].cells].findIndex(c => c.innerText.trim() === 'volume');
  new MutationObserver(() => {
    const values = [];
    for (const row of table.tBodies[0].rows) {
      const cell = row.cells[col];
      if (!cell) continue;
      const v = parseInt(cell.textContent.replace(/,/g, ''), 10);
      const key = row.cells[0].textContent;
      if (!isNaN(v) && seen.get(key) !== v) { seen.set(key, v); values.push(v); }
    }
    if (values.length) requestAnimationFrame(() => {
      const now = Date.now() % 1e9;
      for (const v of values) window.__lat.push(now - v);
    });
  }).observe(table, {subtree: true, childList: true, characterData: true});
  return true;
}"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


class Writer:
    """``SYMBOLS`` symbols ticking ``RATE``/s into a run's recorder, on a thread."""

    def __init__(self, store, run_id: str) -> None:
        from velox.store import RunRecorder
        from velox.store.recorder import LIVE_FLUSH_S

        # the flush interval of a paper or live engine's recorder (velox.modes._live_engine)
        self.recorder = RunRecorder(store, run_id, flush_interval=LIVE_FLUSH_S)
        self.stop = threading.Event()
        self.ticks = 0
        self.ids = [f"NSE:SYM{i:03d}" for i in range(SYMBOLS)]
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from velox.types import Tick

        period = 1.0 / RATE
        step = period / len(self.ids)
        price = dict.fromkeys(self.ids, 1000.0)
        while not self.stop.is_set():
            for iid in self.ids:
                now = time.time()
                price[iid] = round(price[iid] + 0.05, 2)
                ts = datetime.fromtimestamp(now, UTC)
                tick = Tick(iid, ts, price[iid], volume=int(now * 1000) % 1_000_000_000)
                self.recorder.quote(tick, int(now * 1e9))
                self.ticks += 1
                time.sleep(step)

    def start(self) -> Writer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.recorder.close()


def full_read(store, run_id: str) -> None:
    """What a console written on Panel alone reads per poll: every row of the run's state."""
    store.run(run_id)
    store.run_quotes(run_id)
    store.run_positions(run_id)
    store.run_orders(run_id)
    store.run_fills(run_id)
    store.run_risk_events(run_id)
    store.run_venue(run_id)


def polling(store, run_id: str, sessions: int, seconds: float = 8.0) -> tuple[int, float, float]:
    """``sessions`` threads each reading the whole run state every PERIOD_MS: achieved Hz per
    session and the CPU (this process) it took."""
    from velox.ui.base import PERIOD_MS

    stop = threading.Event()
    counts = [0] * sessions

    def session(i: int) -> None:
        period = PERIOD_MS / 1000
        while not stop.is_set():
            t = time.monotonic()
            full_read(store, run_id)
            counts[i] += 1
            stop.wait(max(0.0, period - (time.monotonic() - t)))

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    cpu0, t0 = time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(5)
    elapsed = time.monotonic() - t0
    return sessions, sum(counts) / sessions / elapsed, (time.process_time() - cpu0) / elapsed


def document_build(store, repeats: int = 5) -> tuple[float, float, int, int]:
    """What the server does for a page load before the browser gets anything: build a console
    and its Bokeh document and serialise it. Median seconds of the build (components and their
    first data) and of the serialisation, the document's models and JSON bytes."""
    import json

    import panel as pn
    from bokeh.document import Document

    from velox.ui import Desk, TradingConsole

    builds, dumps, models, size = [], [], 0, 0
    for _ in range(repeats + 1):  # the first warms imports and the run's snapshot
        doc = Document()
        t = time.perf_counter()
        doc.add_root(pn.panel(TradingConsole(Desk.notebook(store))).get_root(doc))
        t1 = time.perf_counter()
        size = len(json.dumps(doc.to_json(), default=str))
        builds.append(t1 - t)
        dumps.append(time.perf_counter() - t1)
        models = len(list(doc.models))
    return statistics.median(builds[1:]), statistics.median(dumps[1:]), models, size


def anchor(store, run_id: str, results: dict[str, object]) -> None:
    """The anchor's figures (see the module docstring) and the server's page build."""
    from velox.ui.live import LiveRuns

    reads, merged = [], []
    live = LiveRuns(store)
    live._read(run_id)
    for _ in range(30):
        t = time.perf_counter()
        full_read(store, run_id)
        reads.append(time.perf_counter() - t)
        time.sleep(0.1)  # a recorder batch lands between two reads, as in the console
        t = time.perf_counter()
        live._read(run_id)  # Velox's: only the rows written since its last read
        merged.append(time.perf_counter() - t)
    results["read"] = statistics.median(reads)
    results["merged"] = statistics.median(merged)
    results["polling"] = [polling(store, run_id, n) for n in SESSIONS]
    results["document"] = document_build(store)


def login(page, url: str, username: str, code: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=totp]", code)
    page.click("button[type=submit], input[type=submit]")


def main() -> None:
    import pyotp
    import requests
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from velox.auth import Users
    from velox.secrets import generate_key
    from velox.store import Store, embedded_url
    from velox.store.server import stop_embedded

    root = Path(tempfile.mkdtemp(prefix="vx-bench-dash-"))
    key = generate_key()
    store = Store(embedded_url(root / "store"), backend="embedded")
    run_id = store.create_run(mode="paper", account="BENCH", initial_cash=1e6, run_id="B1",
                              strategies=[{"name": "bench", "instruments": []}])  # fmt: skip
    users = Users(store, key=key)
    traders = {f"t{i}": users.add(f"t{i}", "trader", PASSWORD).totp_secret for i in range(40)}
    for name in traders:
        users.link(name, accounts=["BENCH"])
    users.add("iris", "investor", PASSWORD, totp=False)
    users.link("iris", accounts=["BENCH"])
    port = 5800 + os.getpid() % 100
    url = f"http://localhost:{port}"
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_SECRET_KEY": key,
           "VELOX_DATA_DIR": str(root), "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [sys.executable, "-m", "velox.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    writer = Writer(store, run_id)
    free = iter(traders)
    results: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        writer.start()
        time.sleep(2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)

            def open_console():
                name = next(free)
                page = browser.new_context(viewport={"width": 1500, "height": 1400}).new_page()
                login(page, url, name, pyotp.TOTP(traders[name]).now())
                start = time.perf_counter()
                page.wait_for_url("**/trading")
                page.locator('#velox-mode[data-mode="dry-run"]').wait_for(timeout=30_000)
                page.locator(".velox-grid tr", has_text="NSE:SYM000").first.wait_for(timeout=30_000)
                return page, time.perf_counter() - start

            loads = []
            for _ in range(LOADS):
                page, seconds = open_console()
                loads.append(seconds)
                page.context.close()
            results["load"] = loads
            print(f"page loads: {', '.join(f'{x:.2f}' for x in loads)} s", flush=True)
            rows = []
            pages = []
            results["saturated"] = None
            for sessions in SESSIONS:
                try:
                    while len(pages) < sessions:
                        pages.append(open_console()[0])
                except PlaywrightTimeout:  # the server (and the browser, same 2 cores) is full
                    results["saturated"] = len(pages) + 1
                    break
                time.sleep(3)
                watched = pages[0]
                assert watched.evaluate(OBSERVE), "watchlist not found"
                rss0, cpu0, t0 = rss_mb(server.pid), cpu_s(server.pid), time.monotonic()
                time.sleep(15)
                cpu = (cpu_s(server.pid) - cpu0) / (time.monotonic() - t0)
                latencies = watched.evaluate("window.__lat") or [float("nan")]
                rows.append((sessions, p95(latencies), statistics.median(latencies), len(latencies),
                             cpu, rss0))  # fmt: skip
                print(f"{sessions} console(s): tick → screen p95 {rows[-1][1]:.0f} ms, median "
                      f"{rows[-1][2]:.0f} ms", flush=True)  # fmt: skip
            results["sessions"] = rows
            for page in pages:
                page.context.close()
            browser.close()
        # The closed consoles' sessions live on in the server until Bokeh discards them (30 s
        # unused lifetime, checked every 5 s; velox.web.server.make_server): the API figure is
        # the API's, not the teardown of twenty documents.
        time.sleep(36)

        # API p95 under CLIENTS concurrent clients (investor sessions: no TOTP step to wait on).
        clients = []
        for _ in range(CLIENTS):
            c = requests.Session()
            r = c.post(url + "/login", data={"username": "iris", "password": PASSWORD, "totp": ""},
                       allow_redirects=False)  # fmt: skip
            assert r.status_code == 303, r.text[-200:]
            clients.append(c)

        failed = []

        def hammer(client) -> list[float]:
            out, end = [], time.monotonic() + API_SECONDS
            paths = ("/api/runs", "/api/positions")
            while time.monotonic() < end:
                t = time.perf_counter()
                try:  # a timed-out request counts with its 10 s, and as failed
                    if not client.get(url + paths[len(out) % 2], timeout=10).ok:
                        failed.append(1)
                except requests.Timeout:
                    failed.append(1)
                out.append(time.perf_counter() - t)
            return out

        with ThreadPoolExecutor(CLIENTS) as pool:
            api = [x for part in pool.map(hammer, clients) for x in part]
        results["api"] = api
        print(
            f"API ({CLIENTS} concurrent clients, {len(api)} requests in {API_SECONDS:g} s, "
            f"{len(failed)} failed or timed out): p95 {p95(api) * 1000:.0f} ms, median "
            f"{statistics.median(api) * 1000:.0f} ms (target p95 < 200 ms)",
            flush=True,
        )

        # The anchor: the console a user would write on Panel alone, each session's periodic
        # callback reading the run's state from the store at the console's refresh rate
        # (PERIOD_MS), in one process; how often does each session actually get fresh state?
        if ANCHOR:
            anchor(store, run_id, results)
    finally:
        writer.close()
        server.terminate()
        server.wait(10)
        store.close()
        stop_embedded(root / "store")  # a throwaway server: never left running

    loads = results["load"]
    print(
        f"page load (login → console with live watchlist), {LOADS} loads: median "
        f"{statistics.median(loads):.2f} s, max {max(loads):.2f} s  (target < 2 s)"
    )
    print(f"\n{SYMBOLS} symbols × {RATE:g}/s ({writer.ticks} ticks written)")
    print("| sessions | tick→screen p95 | median | samples | server CPU | server RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for sessions, lat95, med, n, cpu, rss in results["sessions"]:
        print(
            f"| {sessions} | {lat95:.0f} ms | {med:.0f} ms | {n} | {cpu * 100:.0f} % | "
            f"{rss:.0f} MiB |"
        )
    if results["saturated"]:
        print(f"console {results['saturated']} did not open within 30 s: saturated")
    first, last = results["sessions"][0], results["sessions"][-1]
    per_cpu = (last[4] - first[4]) / max(1, last[0] - first[0])
    per_mem = (last[5] - first[5]) / max(1, last[0] - first[0])
    print(
        f"per extra session: {per_cpu * 100:.2f} % of a core, {per_mem:.1f} MiB; one core "
        f"holds ≈ {int((1 - first[4]) / per_cpu) if per_cpu > 0 else 'n/a'} sessions"
    )
    if "read" not in results:
        return
    from velox.store.recorder import LIVE_FLUSH_S
    from velox.ui.base import PERIOD_MS

    read = results["read"]
    print(
        f"\nanchor (per-session polling of the store at {1000 / PERIOD_MS:g} Hz, one process; "
        f"one full run-state read {read * 1000:.1f} ms; Velox's read of what changed "
        f"{results['merged'] * 1000:.1f} ms)"
    )
    print("| sessions | fresh state per session | polling CPU | Velox reads/s (any sessions) |")
    print("|---:|---:|---:|---:|")
    for sessions, hz, cpu in results["polling"]:
        print(f"| {sessions} | {hz:.1f} Hz | {cpu * 100:.0f} % | ≤ {1 / LIVE_FLUSH_S:g} |")
    print_document(*results["document"])


def print_document(build: float, dump: float, models: int, size: int) -> None:
    print(
        f"\npage build on the server (console + Bokeh document, in-process, median of 5): "
        f"{build * 1000:.0f} ms + {dump * 1000:.0f} ms to serialise; {models} models, "
        f"{size / 1024:.0f} KiB of JSON"
    )


def main_document_only() -> None:
    """``--document``: only the page build, on a run with 100 quoted symbols (quick)."""
    from velox.store import RunRecorder, Store, embedded_url
    from velox.store.server import stop_embedded
    from velox.types import Tick

    root = Path(tempfile.mkdtemp(prefix="vx-bench-dash-"))
    store = Store(embedded_url(root / "store"), backend="embedded")
    try:
        run_id = store.create_run(mode="paper", account="BENCH", initial_cash=1e6,
                                  run_id="B1", strategies=[{"name": "bench"}])  # fmt: skip
        now = time.time()
        with RunRecorder(store, run_id) as recorder:
            for i in range(SYMBOLS):
                tick = Tick(f"NSE:SYM{i:03d}", datetime.fromtimestamp(now, UTC), 1000.0, 1)
                recorder.quote(tick, int(now * 1e9))
        print_document(*document_build(store))
    finally:
        store.close()
        stop_embedded(root / "store")


def _options() -> None:
    """``--sessions 1,5`` (the console counts measured), ``--loads N``, ``--no-anchor``: a
    quicker run while working on one figure; the recorded figures use the defaults."""
    import argparse

    global SESSIONS, LOADS, ANCHOR
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--document", action="store_true", help="only the server's page build")
    parser.add_argument("--sessions", default=",".join(map(str, SESSIONS)))
    parser.add_argument("--loads", type=int, default=LOADS)
    parser.add_argument("--no-anchor", action="store_true", help="skip the polling anchor")
    args = parser.parse_args()
    SESSIONS = tuple(int(x) for x in args.sessions.split(","))
    LOADS, ANCHOR = args.loads, not args.no_anchor
    main_document_only() if args.document else main()


if __name__ == "__main__":
    _options()
