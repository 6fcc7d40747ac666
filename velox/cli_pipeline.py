"""``velox pipeline run | list | schedule``: notebooks run by papermill, by hand or on a schedule.

Registered on the main group by ``velox.cli`` (``register(main)``). Heavy modules (papermill,
nbconvert, APScheduler, pandas) are imported inside the verbs so ``velox --help`` stays instant.
See ``docs/pipelines.md``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from velox.pipelines import PipelineRun

__all__ = ["register"]


def _quiet_libraries(ctx: click.Context) -> None:
    """Keep papermill's INFO lines and the kernel client's clean-up chatter (traitlets warns it
    "could not destroy zmq context" after every run) out of the terminal unless -v."""
    if not ctx.find_root().params.get("verbose"):
        logging.getLogger("papermill").setLevel(logging.WARNING)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run
        logging.getLogger("traitlets").setLevel(logging.ERROR)


def _print_failure(run: PipelineRun) -> None:
    """Print the failing cell and its error (stderr), then what was kept."""
    click.secho(f"error: {run.describe_error()}", fg="red", err=True)
    error = run.error
    if error is not None and error.source:
        label = f"cell {error.cell_index}" if error.cell_index is not None else "cell"
        click.echo(f"--- {label} " + "-" * max(0, 60 - len(label)), err=True)
        click.echo(error.source.rstrip(), err=True)
        click.echo("-" * 65, err=True)
    kept = [p for p in (run.output_path, run.html_path) if p]
    if kept:
        click.echo(f"kept: {' and '.join(kept)}", err=True)


@click.group()
def pipeline() -> None:
    """Run notebooks with papermill (by hand or on a schedule) and list the runs."""


@pipeline.command("run")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option(
    "-p",
    "--parameter",
    "parameters",
    nargs=2,
    multiple=True,
    metavar="KEY VALUE",
    help="A parameter (papermill's -p: True/False/None, numbers, else text). Repeatable.",
)
@click.option("--name", default=None, help="Pipeline name (default: the notebook's file name).")
@click.option("--no-input", is_flag=True, help="Leave the code out of the HTML report.")
@click.option(
    "--allow-unknown",
    is_flag=True,
    help="Inject parameters the notebook's parameters cell does not declare (with a warning).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds one cell may run before the run fails.",
)
@click.pass_context
def pipeline_run(
    ctx: click.Context,
    notebook: str,
    parameters: tuple[tuple[str, str], ...],
    name: str | None,
    no_input: bool,
    allow_unknown: bool,
    timeout: float | None,
) -> None:
    """Execute NOTEBOOK with papermill; keep the .ipynb and HTML; record the run.

    Output goes to <data_dir>/runs/<IST date>/<name>-<HHMMSS>/. A failing cell is printed with
    its error, the failed notebook is kept, and the command exits 1.
    """
    from velox.pipelines import PipelineFailed, parse_parameter, run

    _quiet_libraries(ctx)
    values: dict[str, object] = {}
    for key, value in parameters:
        if key in values:
            raise click.UsageError(f"parameter {key!r} is given twice")
        values[key] = parse_parameter(value)
    try:
        result = run(
            notebook,
            values,
            name=name,
            no_input=no_input,
            strict=not allow_unknown,
            timeout=timeout,
            progress=sys.stderr.isatty(),
        )
    except PipelineFailed as failed:
        _print_failure(failed.run)
        sys.exit(1)
    click.echo(
        f"pipeline {result.pipeline!r} succeeded in {result.duration:.1f} s (run {result.id})"
    )
    click.echo(f"notebook: {result.output_path}")
    click.echo(f"html:     {result.html_path}")


def _when(value: object, fmt: str) -> str:
    return "" if value is None or str(value) == "NaT" else value.strftime(fmt)  # type: ignore[attr-defined]


def _result_text(record: dict[str, object]) -> str:
    error = record.get("error")
    if isinstance(error, dict):
        if "reason" in error:
            return f"skipped: {error['reason']}"
        cell = error.get("cell_index")
        where = f"cell {cell}: " if cell is not None else ""
        value = " ".join(str(error.get("evalue", "")).split())
        return f"{where}{error.get('ename', '')}: {value}"[:80]
    return str(record.get("html_path") or record.get("output_path") or "")


@pipeline.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--pipeline", "name", default=None, help="Only this pipeline.")
@click.option(
    "--status",
    type=click.Choice(["running", "succeeded", "failed", "skipped"]),
    default=None,
    help="Only runs with this status.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one list of runs).")
def pipeline_list(limit: int, name: str | None, status: str | None, as_json: bool) -> None:
    """Show the pipeline runs recorded in the store, newest first."""
    from velox.pipelines import history

    frame = history(limit=limit, pipeline=name, status=status)
    records = frame.to_dict("records")
    if as_json:
        for record in records:
            for key in ("slot", "started_at", "finished_at"):
                value = record[key]
                record[key] = None if value is None or str(value) == "NaT" else value.isoformat()
            duration = record["duration"]
            record["duration"] = None if duration != duration else duration  # NaN -> null
        click.echo(json.dumps(records, indent=2, default=str))
        return
    if not records:
        click.echo("(no pipeline runs recorded)")
        return
    header = ("id", "pipeline", "trigger", "slot", "status", "started (IST)", "secs", "output")
    rows = [
        (
            str(r["id"]),
            r["pipeline"],
            r["trigger"],
            _when(r["slot"], "%Y-%m-%d %H:%M"),
            r["status"],
            _when(r["started_at"], "%Y-%m-%d %H:%M:%S"),
            "" if r["duration"] != r["duration"] else f"{r['duration']:.1f}",
            _result_text(r),
        )
        for r in records
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _parse_now(text: str) -> datetime:
    from velox.calendar import IST
    from velox.errors import ValidationError

    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"--now {text!r} is not a time; give an IST date and time, e.g. '2024-11-01 18:20'"
        ) from None
    return value.replace(tzinfo=IST) if value.tzinfo is None else value


@pipeline.command("schedule")
@click.option(
    "--once",
    is_flag=True,
    help="Run the slots due now (within their grace) and exit, instead of running until Ctrl-C.",
)
@click.option(
    "--now",
    "now_text",
    default=None,
    metavar="TIME",
    help="With --once: act as if it were TIME (IST, e.g. '2024-11-01 18:20').",
)
@click.option("--dry-run", is_flag=True, help="Print what is due and what comes next; run nothing.")
@click.option("--only", multiple=True, metavar="NAME", help="Only this schedule. Repeatable.")
@click.pass_context
def pipeline_schedule(
    ctx: click.Context, once: bool, now_text: str | None, dry_run: bool, only: tuple[str, ...]
) -> None:
    """Run the [[schedules.pipeline]] entries of velox.toml at their IST times on trading days.

    NSE holidays and weekends are skipped, special sessions (a Muhurat Sunday) are trading
    days. A slot missed while the machine slept runs once on wake if still within its grace
    window; a slot never runs twice (the store keys runs by pipeline and slot), and a pipeline
    still running is not started again (the slot is recorded as skipped).
    """
    from velox.calendar import IST
    from velox.pipelines import (
        PipelineError,
        PipelineScheduler,
        check_schedules,
        iter_schedules,
        next_slot,
    )

    _quiet_libraries(ctx)
    if now_text is not None and not (once or dry_run):
        raise click.UsageError("--now needs --once (or --dry-run): the scheduler uses the clock")
    schedules = list(iter_schedules(only))
    if not schedules:
        raise PipelineError(
            "velox.toml has no [[schedules.pipeline]] entries; see docs/pipelines.md for the shape"
        )
    check_schedules(schedules)
    now = _parse_now(now_text) if now_text else datetime.now(IST)
    scheduler = PipelineScheduler(schedules, clock=lambda: now if now_text else datetime.now(IST))
    if dry_run:
        due = {d.schedule.name: d.slot for d in scheduler.due(now)}
        for schedule in schedules:
            upcoming = next_slot(schedule, now)
            state = (
                f"due now (slot {due[schedule.name]:%Y-%m-%d %H:%M})"
                if schedule.name in due
                else "not due"
            )
            after = "none" if upcoming is None else f"{upcoming:%Y-%m-%d %H:%M} IST"
            click.echo(f"{schedule.name}: {state}; next {after}")
        return
    if once:
        results = scheduler.tick(now)
        failed = [r for r in results if r is not None and r.status == "failed"]
        for result in results:
            if result is not None:
                click.echo(
                    f"{result.pipeline} slot {result.slot:%Y-%m-%d %H:%M}: {result.status}"
                    + (f" ({result.describe_error()})" if result.error else "")
                )
        if not any(results):
            click.echo(f"nothing due at {now.astimezone(IST):%Y-%m-%d %H:%M} IST")
        if failed:
            sys.exit(1)
        return
    click.echo(f"scheduling {len(schedules)} pipeline(s); Ctrl-C stops")
    try:
        scheduler.start(blocking=True)
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=False)


@click.group()
def report() -> None:
    """Render reports to self-contained HTML (and PDF) files (docs/reports.md)."""


@report.command("investor")
@click.option("--account", help="The account to report (its runs).")
@click.option("--run", "run_id", help="One run to report.")
@click.option("--user", help="An investor: every account and run linked to them.")
@click.option("--all", "every", is_flag=True, help="Every investor's own report (the schedule).")
@click.option("--period", help="all, mtd, ytd, 1m, 3m, 6m, 1y, 3y, 5y or YYYY-MM-DD:YYYY-MM-DD.")
@click.option("--out", type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--pdf", is_flag=True, help="Also print a PDF beside the HTML (needs chromium).")
def report_investor(
    account: str | None,
    run_id: str | None,
    user: str | None,
    every: bool,
    period: str | None,
    out: str | None,
    pdf: bool,
) -> None:
    """Render the investor report (dashboards/investor.ipynb, code hidden) of one scope.

    The HTML goes to --out or data/reports/<date>/investor-<who>[-<period>].html and opens
    from disk in any browser, offline, plots included. It shows only the runs of the account,
    the run or the user's links (--account/--run narrow a --user, never widen it).
    """
    from velox import reports

    if every:
        if account or run_id or user or out:
            raise click.UsageError("--all renders every investor; it takes only --period/--pdf")
        done = reports.render_all(period=period, pdf=pdf)
        for r in done:
            click.echo(f"{r.scope.user}: {r.html} ({len(r.scope.runs)} runs)")
        if not done:
            click.echo("no investor has an account or run linked (velox user link)")
        return
    if not (account or run_id or user):
        raise click.UsageError("give --account ACCOUNT, --run RUN, --user NAME or --all")
    r = reports.render_investor(user=user, account=account, run=run_id, period=period,
                                out=out, pdf=pdf)  # fmt: skip
    click.echo(f"{r.html} ({', '.join(r.scope.runs)}; {r.html.stat().st_size / 1024:.0f} KiB)")
    if r.pdf is not None:
        click.echo(str(r.pdf))


def register(main: click.Group) -> None:
    """Add the ``pipeline`` and ``report`` verbs to the ``velox`` command group."""
    main.add_command(pipeline)
    main.add_command(report)
