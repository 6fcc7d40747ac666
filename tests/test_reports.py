"""Static investor reports: the investor notebook rendered by papermill + nbconvert into one HTML
file that opens from disk in Debian's Chromium with no network, plots drawn, and holds only the
investor's own runs; the CLI; whose scope a report may have; report periods."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from velox import reports
from velox.auth import PermissionDenied, Users
from velox.errors import ValidationError
from velox.secrets import generate_key

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def investors(tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch):
    """Two investors, each linked to an account with one recorded replay of real bars."""
    from velox.config import reset_settings
    from velox.data import read_bar_file, validate_bars
    from velox.modes import default_instruments, replay
    from velox.strategy import load_strategy

    data = tmp_path / "data"
    data.mkdir()
    for entry in (ROOT / "data").iterdir():
        if entry.name not in ("runs", "reports", "store"):
            (data / entry.name).symlink_to(entry)
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    monkeypatch.setenv("VELOX_DATA_DIR", str(data))
    monkeypatch.setenv("VELOX_SECRET_KEY", generate_key())
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.chdir(ROOT)
    reset_settings()
    bars, _ = validate_bars(read_bar_file(ROOT / "data/bars/RELIANCE_5m_2025.csv"), timeframe="5m")
    cls = load_strategy(str(ROOT / "strategies/sma_cross.py"))
    ids = {}
    for account, fast, slow, run_id in (("INVA", 3, 8, "ANARUN1"), ("INVB", 5, 20, "BOBRUN1")):
        strategy = cls(fast=fast, slow=slow)
        strategy.timeframe = "5m"
        result = replay(strategy, bars={("NSE:RELIANCE", "5m"): bars}, store=store,
                        record=True, instruments=default_instruments(), run_id=run_id)  # fmt: skip
        with store.connect() as conn:  # a replay records no account: file it under one
            conn.execute("UPDATE runs SET account = %s WHERE run_id = %s", (account, result.run_id))
        ids[account] = result.run_id
    users = Users(store)
    users.add("ana", "investor", "a long password 1", totp=False)
    users.link("ana", accounts=["INVA"])
    users.add("bob", "investor", "a long password 2", totp=False)
    users.link("bob", accounts=["INVB"])
    yield ids
    reset_settings()


def test_scope_narrows_never_widens(store, investors) -> None:
    scope = reports.investor_scope(store, user="ana")
    assert scope.runs == (investors["INVA"],) and scope.accounts == ("INVA",)
    with pytest.raises(PermissionDenied, match="'INVB' is not linked to 'ana'"):
        reports.investor_scope(store, user="ana", account="INVB")
    with pytest.raises(PermissionDenied, match=f"run '{investors['INVB']}' is not one"):
        reports.investor_scope(store, user="ana", run=investors["INVB"])
    assert reports.investor_scope(store, account="INVB").runs == (investors["INVB"],)
    with pytest.raises(ValidationError, match="say whose report"):
        reports.investor_scope(store)


def test_periods() -> None:
    today = date(2026, 3, 31)
    assert reports.period_bounds("all", today=today) == (None, today)
    assert reports.period_bounds("ytd", today=today) == (date(2026, 1, 1), today)
    assert reports.period_bounds("mtd", today=today) == (date(2026, 3, 1), today)
    # one calendar month back: 28 Feb is the same day a month ago (clamped), the window starts
    # the day after it
    assert reports.period_bounds("1m", today=today) == (date(2026, 3, 1), today)
    assert reports.period_bounds("1y", today=today) == (date(2025, 4, 1), today)
    assert reports.period_bounds("2025-01-01:2025-06-30") == (date(2025, 1, 1), date(2025, 6, 30))
    for bad, message in (("2y", "is not one of"), ("2025-13-01:", "must be YYYY-MM-DD"),
                         ("2025-06-01:2025-01-01", "ends before it starts")):  # fmt: skip
        with pytest.raises(ValidationError, match=message):
            reports.period_bounds(bad)


#: How many drawn <canvas> the page has, in Bokeh's nested shadow roots too.
CANVASES = """(() => { let n = 0;
  const walk = r => { for (const e of r.querySelectorAll('*')) {
    if (e.tagName === 'CANVAS' && e.width > 0) n++;
    if (e.shadowRoot) walk(e.shadowRoot); } };
  walk(document); return n; })()"""


def _open_offline(html: Path) -> dict:
    """Open ``html`` from disk in Chromium; return what the page drew and asked the network."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        remote: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: r.url.startswith(("file:", "data:", "blob:"))
                or remote.append(r.url))  # fmt: skip
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.resolve().as_uri())
        page.wait_for_function(f"{CANVASES} >= 5", timeout=30_000)
        page.wait_for_timeout(500)  # the last figures draw
        drawn = page.evaluate(CANVASES)
        inputs = page.locator("input, select, textarea, button").count()
        text = page.inner_text("body")
        browser.close()
    return {"canvases": drawn, "remote": remote, "errors": errors, "inputs": inputs, "text": text}


@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_static_report_is_self_contained_and_only_the_investors(store, investors) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI=true: /usr/bin/chromium is missing (.ci/run installs it)")
        pytest.skip("no /usr/bin/chromium")
    report = reports.render_investor(user="ana", store=store, pdf=True)
    assert report.html.parent.parent == Path(os.environ["VELOX_DATA_DIR"]) / "reports"
    body = report.html.read_text(encoding="utf-8")
    assert investors["INVA"] in body and investors["INVB"] not in body
    assert not re.findall(r"<[a-z]+\s[^>]*\b(?:src|href)=\"https?://", body)
    assert "import pandas" not in body  # code hidden
    shown = _open_offline(report.html)
    assert shown["remote"] == [], shown["remote"]
    assert shown["errors"] == [], shown["errors"]
    assert shown["canvases"] >= 5  # growth, drawdown, monthly, Sharpe/vol, allocation, the run
    assert shown["inputs"] == 0
    assert "Max drawdown" in shown["text"] and "against NIFTY 50" in shown["text"]
    assert "INVA" in shown["text"] and "INVB" not in shown["text"] and "bob" not in shown["text"]
    assert report.pdf is not None and report.pdf.read_bytes()[:5] == b"%PDF-"
    # the pipeline row of the render
    runs = store.pipeline_runs(pipeline="investor-ana")
    assert list(runs["status"]) == ["succeeded"]


@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_cli_renders_an_account_and_refuses_bad_input(tmp_path: Path, store, investors) -> None:
    out = tmp_path / "b.html"
    env = {**os.environ}
    cmd = [sys.executable, "-m", "velox.cli", "report", "investor"]
    done = subprocess.run([*cmd, "--account", "INVB", "--period", "all", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(out) in done.stdout
    body = out.read_text(encoding="utf-8")
    assert investors["INVB"] in body and investors["INVA"] not in body
    refusals = [
        (["--period", "2y", "--account", "INVB"], "is not one of"),
        ([], "give --account"),
        (["--user", "ana", "--account", "INVB"], "not linked to 'ana'"),
    ]
    for args, message in refusals:
        bad = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr[-1500:]
        assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_the_scheduled_notebook_renders_each_investor_their_own_report(
    tmp_path: Path, store, investors
) -> None:
    """What the schedule entry runs (dashboards/investor_reports.ipynb → render_all): one file
    per investor with something linked, each with only that investor's run; and the CLI's
    ``--run`` with a date-range period."""
    from velox import pipelines

    Users(store).add("cyd", "investor", "a long password 3", totp=False)  # nothing linked
    done = pipelines.run(ROOT / "dashboards/investor_reports.ipynb", {"period": "all"},
                         name="investor-reports", no_input=True, store=store)  # fmt: skip
    assert done.status == "succeeded"
    made = sorted(Path(os.environ["VELOX_DATA_DIR"], "reports").glob("*/investor-*.html"))
    assert [p.name for p in made] == ["investor-ana.html", "investor-bob.html"]
    for path, own, other in zip(made, ("INVA", "INVB"), ("INVB", "INVA"), strict=True):
        body = path.read_text(encoding="utf-8")
        assert investors[own] in body and investors[other] not in body, path.name
        assert "import pandas" not in body
    assert "2 investor report(s)" in Path(str(done.html_path)).read_text(encoding="utf-8")

    out = tmp_path / "run.html"
    cmd = [sys.executable, "-m", "velox.cli", "report", "investor", "--run", investors["INVA"],
           "--period", "2025-05-01:2025-12-31", "--out", str(out)]  # fmt: skip
    cli = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert str(out) in cli.stdout
    body = out.read_text(encoding="utf-8")
    assert investors["INVA"] in body and investors["INVB"] not in body
