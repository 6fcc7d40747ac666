"""The ``velox`` command line.

Every verb has ``--help``. Heavy modules are imported inside the verbs so ``velox --help`` is
instant. A user error is shown as ONE line on stderr (``error: …``) with a non-zero exit code
and no traceback: errors Velox raises on purpose (:class:`velox.errors.VeloxError`), click's
usage errors, operating-system errors (a file not found, permission denied) and Ctrl-C.
``velox -v`` adds the traceback above that line.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import click

from velox.errors import VeloxError

#: Exit code of an interrupted command (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def _one_line(text: str) -> str:
    """Return ``text`` as one line: a message must not spill server output or forge log lines."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _os_error_message(exc: OSError) -> str:
    """Return ``permission denied: /path`` style text for an operating-system error."""
    reason = (exc.strerror or type(exc).__name__).lower()
    if exc.filename is None:
        return f"{reason}" if exc.strerror else str(exc)
    target = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{reason}: {target}"


def _describe(exc: BaseException) -> tuple[str, int]:
    """Return the one-line message and exit code of a user error."""
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
        return exc.format_message() + hint, exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.format_message(), exc.exit_code
    if isinstance(exc, click.Abort | KeyboardInterrupt | EOFError):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, OSError):
        return _os_error_message(exc), 1
    return str(exc), 1


#: What the CLI reports as a user error (anything else is a bug and keeps its traceback).
USER_ERRORS = (VeloxError, click.ClickException, click.Abort, OSError, KeyboardInterrupt, EOFError)


def _fail(exc: BaseException, *, verbose: bool) -> NoReturn:
    message, code = _describe(exc)
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    click.secho(f"error: {_one_line(message) or type(exc).__name__}", fg="red", err=True)
    sys.exit(code)


class _VeloxGroup(click.Group):
    """Turn user errors into one clear line (and an exit code) instead of a traceback."""

    def main(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if kwargs.get("standalone_mode", True) is False or len(args) > 3:
            return super().main(*args, **kwargs)  # a caller that handles errors itself
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare ``velox``: the help text
            exc.show()
            sys.exit(exc.exit_code)
        except USER_ERRORS as exc:  # raised while parsing the top-level options
            _fail(exc, verbose=False)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except USER_ERRORS as exc:
            _fail(exc, verbose=bool(ctx.params.get("verbose")))


@click.group(cls=_VeloxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """Velox: quant research and trading for NSE/BSE cash and F&O."""
    from velox.config import get_settings
    from velox.monitoring import configure_logging

    settings = get_settings()
    level = "DEBUG" if verbose else settings.log_level
    configure_logging(level, settings.log_format, sys.stderr)
    if not verbose:
        # pgserver narrates every start/attach at INFO and dumps its server log at ERROR when a
        # start fails; Velox's own store line (or one-line StoreError) says what matters.
        logging.getLogger("pgserver").setLevel(logging.CRITICAL)


def _summary_table() -> str:
    from velox.store import open_store

    summary = open_store(create=False).bar_summary()
    if summary.empty:
        return "(no bars stored)"
    summary = summary.sort_values(["instrument_id", "timeframe"])
    summary["first"] = summary["first"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
    summary["last"] = summary["last"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
    return summary.to_string(index=False)


@main.command()
@click.option("--no-progress", is_flag=True, help="Hide progress bars (for logs and CI).")
@click.option(
    "--replace",
    is_flag=True,
    help="Restore bundled series whose stored bars were changed since (audited).",
)
def run(no_progress: bool, replace: bool) -> None:
    """Set up the store, load the bundled instruments and bars, print what is stored.

    This is the main job behind ``make run``. It is idempotent: a file whose bytes were the last
    write to its series is skipped, so a second run takes seconds. A bundled file that would
    change stored bars (another file was imported over them) is refused unless --replace.
    Every file that can be imported is; each refused one is named with its reason, and the
    command then exits 1.
    """
    from velox.data import bundled_files, import_many
    from velox.instruments import load_bundled_master
    from velox.store import open_store

    store = open_store()
    click.echo(
        f"store: {store.backend} PostgreSQL"
        f"{' with TimescaleDB' if store.timescale else ' (plain tables, no TimescaleDB)'}"
    )
    master = load_bundled_master()
    store.write_instruments(master.table)
    click.echo(f"instruments: {len(master.table):,} in the master")
    results = import_many(
        bundled_files(), store=store, progress=not no_progress, replace=replace, keep_going=True
    )
    refused = [r for r in results if r.refused]
    imported = [r for r in results if not r.skipped and not r.refused]
    skipped = [r for r in results if r.skipped]
    for result in refused:
        reason = result.refused.removeprefix(f"{result.source}: ")
        click.secho(
            f"refused: {result.source} ({result.instrument_id} {result.timeframe}): "
            f"{_one_line(reason)}",
            fg="red",
            err=True,
        )
    click.echo(
        f"bars: imported {sum(r.rows for r in imported):,} rows from {len(imported)} file(s), "
        f"{len(skipped)} unchanged file(s) skipped, {len(refused)} file(s) refused"
    )
    click.echo("")
    click.echo(_summary_table())
    click.echo("")
    if refused:
        click.secho(
            f"error: {len(refused)} of {len(results)} bundled file(s) refused (named above, "
            "nothing of them written); the other files were imported",
            fg="red",
            err=True,
        )
        sys.exit(1)
    click.echo("Next: open JupyterLab (`make lab`) and try")
    click.echo('    import velox; velox.bars("NSE:RELIANCE", "1d", start="2020-01-01")')
    click.echo(
        "or on the command line: velox data show NSE:NIFTY --timeframe 15m --start 2022-09-30"
    )


@main.group()
def data() -> None:
    """Import, list and show stored bars."""


@data.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--symbol",
    "instrument_id",
    required=True,
    help="Instrument id, e.g. NSE:RELIANCE, or an F&O contract listed in the instrument master "
    "such as NFO:NIFTY25MAY24500CE.",
)
@click.option("--timeframe", required=True, help="1m, 3m, 5m, 10m, 15m, 30m, 1h or 1d.")
@click.option(
    "--label",
    type=click.Choice(["start", "end"]),
    default="start",
    show_default=True,
    help="Whether the file labels bars by start (Velox) or end time.",
)
@click.option(
    "--force", is_flag=True, help="Import even if these exact bytes were imported before."
)
@click.option(
    "--replace",
    is_flag=True,
    help="Overwrite stored bars whose values differ from the file's (audited in import_log).",
)
@click.option(
    "--date-format",
    default=None,
    help="strftime format of the timestamps, e.g. '%d/%m/%Y %H:%M' (needed for day/month dates).",
)
def data_import(
    path: Path,
    instrument_id: str,
    timeframe: str,
    label: str,
    force: bool,
    replace: bool,
    date_format: str | None,
) -> None:
    """Validate PATH (CSV, CSV.gz or Parquet) and store its bars in one transaction.

    Naive timestamps are read as IST. A file that breaks any rule is rejected whole, with the
    offending line numbers, and nothing is written. A file that would change stored bars is
    refused, naming the first differing bar, unless --replace.
    """
    from velox.data import import_bars

    result = import_bars(
        path,
        instrument_id,
        timeframe,
        label=label,
        force=force,
        replace=replace,
        date_format=date_format,
    )
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if result.replaced:
        click.secho(
            f"warning: replaced {result.replaced:,} stored bars of {instrument_id} "
            f"{timeframe} (audited)",
            fg="yellow",
            err=True,
        )
    if result.skipped:
        click.echo(
            f"{path}: unchanged since the last import of {instrument_id} {timeframe}; skipped"
        )
    else:
        click.echo(f"{path}: stored {result.rows:,} {timeframe} bars of {instrument_id}")


@data.command("list")
def data_list() -> None:
    """List every instrument and timeframe stored, with row counts and date ranges."""
    click.echo(_summary_table())


@data.command("show")
@click.argument("instrument_id")
@click.option("--timeframe", default="1d", show_default=True, help="Candle timeframe.")
@click.option("--start", default=None, help="First bar (IST date or timestamp), inclusive.")
@click.option("--end", default=None, help="Last bar (IST date or timestamp), inclusive.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--head",
    type=click.IntRange(min=1),
    default=None,
    help="Show only the first N bars (N >= 1).",
)
@click.option(
    "--tail",
    type=click.IntRange(min=1),
    default=None,
    help="Show only the last N bars (N >= 1).",
)
def data_show(
    instrument_id: str,
    timeframe: str,
    start: str | None,
    end: str | None,
    fmt: str,
    head: int | None,
    tail: int | None,
) -> None:
    """Print stored (or resampled) bars of INSTRUMENT_ID."""
    import velox

    if head is not None and tail is not None:
        raise click.UsageError("use --head or --tail, not both")
    frame = velox.bars(instrument_id, timeframe, start=start, end=end)
    if head is not None:
        frame = frame.head(head)
    if tail is not None:
        frame = frame.tail(tail)
    if fmt == "csv":
        out = frame.copy()
        out.index = out.index.map(lambda t: t.isoformat())
        click.echo(out.to_csv(), nl=False)
        return
    click.echo(frame.to_string())
    click.echo(f"({len(frame):,} bars)")


@main.group()
def instruments() -> None:
    """Look up instruments in the bundled master."""


@instruments.command("show")
@click.argument("instrument_id")
def instruments_show(instrument_id: str) -> None:
    """Print one instrument's contract details (tick size, lot size, expiry …)."""
    from dataclasses import asdict

    from velox.instruments import load_bundled_master

    instrument = load_bundled_master().get(instrument_id)
    for key, value in asdict(instrument).items():
        click.echo(f"{key:>12}: {getattr(value, 'value', value)}")


@main.command("config")
def config_show() -> None:
    """Print the effective settings (the database URL with its password masked)."""
    from velox.config import get_settings

    click.echo(repr(get_settings()))


from velox.cli_engine import register  # noqa: E402  (engine verbs live beside their modes)

register(main)

from velox.cli_scan import register as register_scan  # noqa: E402  (the scanner's verb)

register_scan(main)

from velox.cli_pipeline import register as register_pipeline  # noqa: E402  (issue 12)

register_pipeline(main)

from velox.cli_broker import register as register_broker  # noqa: E402  (issue 13: Kite)

register_broker(main)

from velox.cli_sim import register as register_sim  # noqa: E402  (broker simulators, issue 13)

register_sim(main)

from velox.cli_web import register as register_web  # noqa: E402  (users, roles, serve: issue 15)

register_web(main)

from velox.cli_alerts import register as register_alerts  # noqa: E402  (issue 17)

register_alerts(main)

if __name__ == "__main__":  # pragma: no cover
    main()
