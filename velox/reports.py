"""Investor reports: whose runs a report shows, figures that work without a kernel or a network,
and the investor notebook rendered to one self-contained HTML file (and a PDF).

The same notebook, ``dashboards/investor.ipynb``, is served live by Voila (``/report`` of
``velox serve``, identity from the signed session header, :mod:`velox.web.identity`) and rendered
here with papermill + nbconvert for investors who only get a file:

>>> from velox import reports
>>> r = reports.render_investor(user="iris", period="ytd")        # doctest: +SKIP
>>> r.html                                                         # doctest: +SKIP
PosixPath('…/data/reports/2026-12-06/investor-iris-ytd.html')

**Why figures are embedded, not displayed.** A notebook's holoviews/hvplot output loads BokehJS
from a CDN when the page opens: an HTML file opened from disk without a network shows no plot,
and Voila would need the CDN too. :func:`embed` turns a holoviews or Bokeh object into a Bokeh
standalone ``<div>`` + ``<script>`` (pan, zoom, hover all work client-side, no kernel, no widget
that could change anything) and :func:`resources` inlines BokehJS once per page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velox.errors import ValidationError, VeloxError

if TYPE_CHECKING:
    from velox.pipelines import PipelineRun
    from velox.store import Store

#: The investor notebook (served by Voila and rendered by :func:`render_investor`).
NOTEBOOK = Path(__file__).resolve().parent.parent / "dashboards" / "investor.ipynb"
#: Named report periods (``--period``); or ``YYYY-MM-DD:YYYY-MM-DD`` (either side may be empty).
PERIODS = ("all", "mtd", "ytd", "1m", "3m", "6m", "1y", "3y", "5y")
CHROMIUM = "/usr/bin/chromium"
_MONTHS = {"1m": 1, "3m": 3, "6m": 6, "1y": 12, "3y": 36, "5y": 60}


class ReportError(VeloxError):
    """A report cannot be made as asked (no such user, nothing linked, no PDF renderer)."""


# -- whose data ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What one report shows: runs, with the accounts they came from, and for whom."""

    runs: tuple[str, ...]
    accounts: tuple[str, ...] = ()
    user: str | None = None
    label: str = ""


def investor_scope(
    store: Store,
    *,
    user: str | None = None,
    account: str | None = None,
    run: str | None = None,
) -> Scope:
    """Return the runs a report shows: a user's links, narrowed by ``account``/``run``.

    With ``user`` (an investor: their linked accounts and runs; an admin or trader: everything
    they may see) ``account`` and ``run`` may only narrow it, never widen it: asking for an
    account or run the user is not linked to is a :class:`~velox.auth.PermissionDenied`.
    Without ``user`` (an operator rendering a report by hand) ``account`` or ``run`` says what.
    Runs are newest first; replays are included (a backtest shown to an investor is a choice
    of the operator who links it).
    """
    from velox.auth import PermissionDenied, Users

    runs = store.runs()
    records = runs.to_dict("records")
    if user is not None:
        person = Users(store).get(user)
        if person.disabled:
            raise PermissionDenied(f"user {user!r} is disabled")
        if account is not None and not Users.can_see(person, account=account):
            raise PermissionDenied(f"account {account!r} is not linked to {user!r}")
        if run is not None:
            row = next((r for r in records if r["run_id"] == run), None)
            if row is None or not Users.can_see(person, account=row["account"], run_id=run):
                raise PermissionDenied(f"run {run!r} is not one of the runs {user!r} may see")
        records = [
            r for r in records if Users.can_see(person, account=r["account"], run_id=r["run_id"])
        ]
    elif account is None and run is None:
        raise ValidationError("say whose report: user=, account= or run=")
    if account is not None:
        records = [r for r in records if r["account"] == account]
    if run is not None:
        records = [r for r in records if r["run_id"] == run]
        if not records:
            store.run(run)  # an unknown run id: the store's DataError listing recent ones
    label = "-".join(x for x in (user, account, run) if x) or "all"
    return Scope(
        runs=tuple(str(r["run_id"]) for r in records),
        accounts=tuple(dict.fromkeys(str(r["account"]) for r in records if r["account"])),
        user=user,
        label=label,
    )


def period_bounds(period: str | None, *, today: date | None = None) -> tuple[date | None, date]:
    """Return the IST dates ``(start, end)`` of a report period (start None: from the first).

    ``all`` (or None), ``mtd``, ``ytd``, ``1m`` ``3m`` ``6m`` ``1y`` ``3y`` ``5y`` (calendar
    months back from ``today``), or ``YYYY-MM-DD:YYYY-MM-DD`` with either side empty.
    """
    from velox.calendar import IST

    end = today if today is not None else datetime.now(IST).date()
    text = (period or "all").strip().lower()
    if text == "all":
        return None, end
    if text == "mtd":
        return end.replace(day=1), end
    if text == "ytd":
        return end.replace(month=1, day=1), end
    if text in _MONTHS:
        months = end.year * 12 + end.month - 1 - _MONTHS[text]
        year, month = divmod(months, 12)
        day = min(end.day, _days_in(year, month + 1))
        return date(year, month + 1, day) + timedelta(days=1), end
    if ":" in text:
        first, _, last = text.partition(":")
        try:
            start = date.fromisoformat(first) if first else None
            stop = date.fromisoformat(last) if last else end
        except ValueError:
            raise ValidationError(
                f"period={period!r}: dates must be YYYY-MM-DD (e.g. 2025-01-01:2025-06-30)"
            ) from None
        if start is not None and start > stop:
            raise ValidationError(f"period={period!r} ends before it starts")
        return start, stop
    raise ValidationError(
        f"period={period!r} is not one of {', '.join(PERIODS)} or YYYY-MM-DD:YYYY-MM-DD"
    )


def _days_in(year: int, month: int) -> int:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


# -- figures without a kernel or a network --------------------------------------------------------


def resources() -> Any:
    """BokehJS inlined (core, widgets, tables): display once, before the first :func:`embed`."""
    from bokeh.resources import Resources
    from IPython.display import HTML

    inline = Resources(mode="inline", components=["bokeh", "bokeh-widgets", "bokeh-tables"])
    return HTML(inline.render_js())


def embed(obj: Any) -> Any:
    """A holoviews object (or a Bokeh model) as a standalone Bokeh figure in the output."""
    from bokeh.embed import components
    from bokeh.model import Model
    from IPython.display import HTML

    if not isinstance(obj, Model):
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401  (registers the renderer, prints nothing)

        obj = hv.render(obj, backend="bokeh")
    script, div = components(obj)
    return HTML(div + script)


# -- rendering ----------------------------------------------------------------------------------

#: <script>/<link> tags of nbconvert's lab template that point off the page (require.js and
#: MathJax from a CDN: the report uses neither, and a file opened offline must not wait on them).
_REMOTE = re.compile(r"<(script|link)\b[^>]*\b(?:src|href)=\"https?://[^\"]*\"[^>]*>(?:</script>)?")


def self_contained(html: str) -> str:
    """Return nbconvert's HTML without tags that load from other hosts (checked: none left).

    BokehJS itself names a MathJax CDN, fetched only to typeset LaTeX labels, which reports do
    not use; the browser test checks that opening a report asks the network for nothing.
    """
    out = _REMOTE.sub("", html)
    left = re.findall(r"<[a-z]+\s[^>]*\b(?:src|href)=\"(https?://[^\"]+)\"", out)
    if left:
        raise ReportError(f"the report still loads {left[0]} from the network")
    return out


@dataclass(frozen=True, slots=True)
class Report:
    """A rendered report: the HTML (and PDF) files and the pipeline run that made them."""

    html: Path
    pdf: Path | None
    scope: Scope
    period: str
    pipeline: PipelineRun = field(repr=False)


def reports_dir() -> Path:
    """``<data_dir>/reports``: where reports go unless ``out`` says otherwise."""
    from velox.config import get_settings

    return get_settings().data_dir / "reports"


def render_investor(
    *,
    user: str | None = None,
    account: str | None = None,
    run: str | None = None,
    period: str | None = None,
    out: str | Path | None = None,
    pdf: bool = False,
    store: Store | None = None,
    timeout: float | None = 600,
) -> Report:
    """Render the investor notebook for one scope into a self-contained HTML (and a PDF).

    The notebook runs with papermill as a pipeline (``velox pipeline list`` shows it, a failure
    keeps the failed notebook), its code left out; the HTML goes to ``out`` or
    ``<data_dir>/reports/<IST date>/investor-<who>[-<period>].html``. It shows only the runs of
    :func:`investor_scope` (checked here, before anything runs, and again in the notebook).
    ``pdf=True`` prints the HTML to PDF with Debian's Chromium (:data:`CHROMIUM`).
    """
    from velox import pipelines
    from velox.calendar import IST
    from velox.store import open_store

    store = open_store() if store is None else store
    scope = investor_scope(store, user=user, account=account, run=run)
    period_bounds(period)  # a bad period fails here, not in a kernel
    if not scope.runs:
        raise ReportError(f"nothing to report for {scope.label}: no run is linked or recorded")
    name = _slug(f"investor-{scope.label}")
    result = pipelines.run(
        NOTEBOOK,
        {"user": user or "", "account": account or "", "run": run or "", "period": period or ""},
        name=name,
        no_input=True,
        timeout=timeout,
        store=store,
    )
    suffix = "" if not period or period == "all" else "-" + _slug(period)
    if out is None:
        day = datetime.now(IST).strftime("%Y-%m-%d")
        target = reports_dir() / day / f"{name}{suffix}.html"
    else:
        target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    html = Path(str(result.html_path)).read_text(encoding="utf-8")
    target.write_text(self_contained(html), encoding="utf-8")
    pdf_path = to_pdf(target) if pdf else None
    return Report(target, pdf_path, scope, period or "all", result)


def render_all(
    *, period: str | None = None, store: Store | None = None, pdf: bool = False
) -> list[Report]:
    """Render the report of every enabled investor with something linked (the schedule's job).

    One investor's failure does not stop the others; it is raised at the end, naming each.
    """
    from velox.auth import Users
    from velox.store import open_store

    store = open_store() if store is None else store
    done: list[Report] = []
    failed: list[str] = []
    for person in Users(store).list():
        if person.role != "investor" or person.disabled or not (person.accounts or person.runs):
            continue
        try:
            done.append(render_investor(user=person.username, period=period, store=store, pdf=pdf))
        except VeloxError as exc:
            failed.append(f"{person.username}: {exc}")
    if failed:
        raise ReportError("investor reports failed: " + "; ".join(failed))
    return done


def to_pdf(html: Path) -> Path:
    """Print ``html`` to a PDF beside it with headless Chromium (plots drawn before printing)."""
    if not Path(CHROMIUM).exists():
        raise ReportError(f"a PDF needs Debian's chromium at {CHROMIUM} (apt install chromium)")
    from playwright.sync_api import sync_playwright

    target = html.with_suffix(".pdf")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(500)  # BokehJS draws on the next frames
            page.pdf(path=str(target), format="A4", landscape=True, print_background=True)
        finally:
            browser.close()
    return target


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:64] or "report"


def runs_frame(store: Store, scope: Scope | Sequence[str]) -> Any:
    """The runs of ``scope`` (newest first) as the store's runs DataFrame."""
    ids = scope.runs if isinstance(scope, Scope) else tuple(scope)
    frame = store.runs()
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True)
