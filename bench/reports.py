"""Benchmark the investor report: the static HTML a schedule renders against the live Voila page.

Run ``python bench/reports.py`` (needs Debian's ``/usr/bin/chromium``). It starts a throwaway
embedded PostgreSQL in a temp dir (never the user's store), records a real replay (the SMA cross
on RELIANCE 5-minute bars, 2025-05-16 .. 06-26) under an investor's account, then measures:

- **static render**: ``velox.reports.render_investor`` (papermill + nbconvert, code hidden,
  self-contained) per investor, and the file's size;
- **static serving**: requests/s of that file from a plain web server (Python's threaded
  ``http.server``, the least any deployment would have; nginx serves more) with ``CLIENTS``
  concurrent clients;
- **Voila**: ``velox serve``'s ``/report/`` for the same investor: the page (Voila runs the
  notebook in a new kernel per request before it answers), sequentially and with ``CLIENTS``
  concurrent clients, and the first paint in Chromium (navigation → first drawn Bokeh canvas).

The ratio of the two serving rates sizes the 5,000-viewer case.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RENDERS = 3
VOILA_PAGES = 4
CLIENTS = 8
STATIC_SECONDS = 5.0
PASSWORD = "bench password 123"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def wait_http(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, f"{url} did not start"
        time.sleep(0.2)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def login(url: str):  # noqa: ANN201
    import requests

    client = requests.Session()
    reply = client.post(url + "/login", data={"username": "iris", "password": PASSWORD,
                                              "totp": ""}, allow_redirects=False)  # fmt: skip
    assert reply.status_code == 303, reply.text[-300:]
    return client


def rate(fetch, seconds: float, clients: int) -> tuple[float, list[float]]:
    """Requests/s of ``fetch`` from ``clients`` threads for ``seconds``; and each latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker(i: int) -> None:
        while time.monotonic() < end:
            t = time.perf_counter()
            fetch(i)
            with lock:
                latencies.append(time.perf_counter() - t)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return len(latencies) / (time.monotonic() - started), latencies


def main() -> None:
    import requests
    from playwright.sync_api import sync_playwright

    from velox.auth import Users
    from velox.config import reset_settings
    from velox.data import read_bar_file, validate_bars
    from velox.modes import default_instruments, replay
    from velox.secrets import generate_key
    from velox.store import Store, embedded_url
    from velox.store.server import stop_embedded
    from velox.strategy import load_strategy

    root = Path(tempfile.mkdtemp(prefix="vx-bench-reports-"))
    data = root / "data"
    data.mkdir()
    for entry in (ROOT / "data").iterdir():
        if entry.name not in ("runs", "reports", "store"):
            (data / entry.name).symlink_to(entry)
    store = Store(embedded_url(root / "store"), backend="embedded")
    key = generate_key()
    os.environ.update({"VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(data),
                       "VELOX_SECRET_KEY": key, "TQDM_DISABLE": "1"})  # fmt: skip
    reset_settings()
    bars, _ = validate_bars(read_bar_file(ROOT / "data/bars/RELIANCE_5m_2025.csv"), timeframe="5m")
    strategy = load_strategy(str(ROOT / "strategies/sma_cross.py"))(fast=5, slow=20)
    strategy.timeframe = "5m"
    result = replay(strategy, bars={("NSE:RELIANCE", "5m"): bars}, store=store, record=True,
                    instruments=default_instruments(), run_id="BENCHR1")  # fmt: skip
    with store.connect() as conn:
        conn.execute("UPDATE runs SET account = 'INV1' WHERE run_id = %s", (result.run_id,))
    users = Users(store, key=key)
    users.add("iris", "investor", PASSWORD, totp=False)
    users.link("iris", accounts=["INV1"])

    from velox import reports

    renders = []
    for _ in range(RENDERS):
        t = time.perf_counter()
        report = reports.render_investor(user="iris", store=store)
        renders.append(time.perf_counter() - t)
    size = report.html.stat().st_size

    port = free_port()
    static = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(report.html.parent)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    serve_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "serve", "--port", str(serve_port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        file_url = f"http://127.0.0.1:{port}/{report.html.name}"
        wait_http(file_url, static)
        sessions = [requests.Session() for _ in range(CLIENTS)]
        static_rate, static_lat = rate(lambda i: sessions[i].get(file_url).content,
                                       STATIC_SECONDS, CLIENTS)  # fmt: skip

        url = f"http://127.0.0.1:{serve_port}"
        wait_http(url + "/health", server)
        client = login(url)
        page_times = []
        for _ in range(VOILA_PAGES):
            t = time.perf_counter()
            reply = client.get(url + "/report/", timeout=300)
            assert reply.status_code == 200 and "BENCHR1" in reply.text, reply.status_code
            page_times.append(time.perf_counter() - t)
        clients = [login(url) for _ in range(CLIENTS)]
        pages = []
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for seconds in pool.map(
                lambda c: (t := time.perf_counter(), c.get(url + "/report/", timeout=600),
                           time.perf_counter() - t)[-1], clients):  # fmt: skip
                pages.append(seconds)
        voila_rate = len(pages) / (time.monotonic() - started)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/login")
            page.fill("input[name=username]", "iris")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/investor")
            t = time.perf_counter()
            page.goto(url + "/report/")
            page.locator(".bk-Canvas").first.wait_for(timeout=300_000)
            voila_paint = time.perf_counter() - t
            t = time.perf_counter()
            page.goto(report.html.resolve().as_uri())
            page.locator(".bk-Canvas").first.wait_for(timeout=60_000)
            static_paint = time.perf_counter() - t
            browser.close()
    finally:
        static.terminate()
        server.terminate()
        static.wait(10)
        server.wait(30)
        equity_points = len(store.run_equity(result.run_id))
        store.close()
        stop_embedded(root / "store")  # the throwaway server; its folder goes with it
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; run "
        f"{result.run_id}: {len(result.fill_list)} fills, {equity_points} equity points"
    )
    print(f"static render (papermill + nbconvert, self-contained): median "
          f"{statistics.median(renders):.2f} s of {RENDERS} (min {min(renders):.2f}); "
          f"{size / 1024:.0f} KiB per investor")  # fmt: skip
    print(
        f"first paint in Chromium: static file {static_paint:.2f} s, Voila page {voila_paint:.2f} s"
    )
    print(
        f"Voila /report/ page, one at a time: median {statistics.median(page_times):.2f} s; "
        f"{CLIENTS} at once: {voila_rate:.2f} pages/s (slowest {max(pages):.1f} s)"
    )
    print(
        f"static file, {CLIENTS} clients: {static_rate:.0f} requests/s (p95 "
        f"{statistics.quantiles(static_lat, n=20)[-1] * 1000:.0f} ms)"
    )
    ratio = static_rate / voila_rate
    print(
        f"ratio static / Voila: {ratio:.0f}×; 5,000 viewers opening the report: "
        f"{5000 / static_rate:.0f} s of one static server vs {5000 / voila_rate / 60:.0f} min "
        "of one Voila server"
    )


if __name__ == "__main__":
    main()
