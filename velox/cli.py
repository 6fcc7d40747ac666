"""The ``velox`` command line.

Every verb has ``--help``. Heavy modules are imported inside the verbs so ``velox --help`` is
instant. Errors Velox raises on purpose (:class:`velox.errors.VeloxError`) are shown as one clear
message and exit code 1, without a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from velox.errors import VeloxError


class _VeloxGroup(click.Group):
    """Turn deliberate Velox errors into a clean message instead of a traceback."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except VeloxError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_VeloxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """Velox: quant research and trading for NSE/BSE cash and F&O."""
    from velox.config import get_settings

    level = "DEBUG" if verbose else get_settings().log_level
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # pgserver narrates every start/attach at INFO; Velox's own store line says what matters.
        logging.getLogger("pgserver").setLevel(logging.WARNING)


def _summary_table() -> str:
    from velox.store import open_store

    summary = open_store().bar_summary()
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
    results = import_many(bundled_files(), store=store, progress=not no_progress, replace=replace)
    imported = [r for r in results if not r.skipped]
    click.echo(
        f"bars: imported {sum(r.rows for r in imported):,} rows from {len(imported)} file(s), "
        f"{len(results) - len(imported)} unchanged file(s) skipped"
    )
    click.echo("")
    click.echo(_summary_table())
    click.echo("")
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
@click.option("--symbol", "instrument_id", required=True, help="Instrument id, e.g. NSE:RELIANCE.")
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
    """Print the effective settings (secrets are shown only as <set>)."""
    from velox.config import get_settings

    click.echo(repr(get_settings()))


from velox.cli_engine import register  # noqa: E402  (engine verbs live beside their modes)

register(main)

if __name__ == "__main__":  # pragma: no cover
    main()
