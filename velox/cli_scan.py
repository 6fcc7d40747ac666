"""``velox scan``: the scanner's command-line verb.

Registered on the main group by ``velox.cli`` (``register(main)``). Heavy modules are imported
inside the verb so ``velox --help`` stays instant; a bad preset, parameter, column or expression
is a :class:`~velox.errors.ValidationError`, which the main group prints as one line.
"""

from __future__ import annotations

import json
import math

import click

__all__ = ["register"]


class _ScanCommand(click.Command):
    """``velox scan``, whose help ends with the presets and their parameters (read on demand,
    so ``velox --help`` does not import the scanner)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from velox.scanner import PRESETS

        with formatter.section("Presets"):
            rows = [
                (p.signature(), f"{p.summary}; ranked by {p.ranking}") for p in PRESETS.values()
            ]
            formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


@click.command("scan", cls=_ScanCommand)
@click.argument("condition")
@click.option(
    "--universe",
    default="all",
    show_default=True,
    help="A named universe (nifty50, all) or instrument ids separated by commas.",
)
@click.option("--timeframe", default="1d", show_default=True, help="Candle timeframe.")
@click.option(
    "--at", default=None, help="Scan the last bar at or before this IST date/time (default: last)."
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A preset parameter, e.g. -p window=14 -p threshold=25 (repeatable).",
)
@click.option("--rank-by", default=None, help="Rank by this column or numeric expression.")
@click.option("--ascending", is_flag=True, help="With --rank-by: lowest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON records.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar (for logs and CI).")
def scan_command(
    condition: str,
    universe: str,
    timeframe: str,
    at: str | None,
    params: tuple[str, ...],
    rank_by: str | None,
    ascending: bool,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Print the instruments meeting a preset or condition on one bar, ranked.

    CONDITION is a preset (rsi_oversold, 52w_high, volume_spike, gap_up, supertrend_flip,
    ma_cross, orb, ...) or an expression over columns such as "rsi_14 < 30 and close > sma_200"
    (see docs/scanner.md).

    \b
    Examples:
      velox scan rsi_oversold --universe nifty50 --at 2022-02-25
      velox scan volume_spike --universe nifty50 -p k=3 --json
      velox scan "close > 1.02 * prev_close" --universe NSE:SBIN,NSE:TCS
      velox scan orb --universe NSE:RELIANCE --timeframe 5m -p minutes=30
    """
    import velox
    from velox.strategy import parse_params

    keywords = {key.replace("-", "_"): value for key, value in parse_params(params).items()}
    frame = velox.scan(
        condition,
        universe=universe,
        timeframe=timeframe,
        at=at,
        rank_by=rank_by,
        ascending=ascending if rank_by else None,
        progress=False if no_progress else None,
        **keywords,
    )
    if as_json:
        click.echo(json.dumps(_records(frame), indent=2))
        return
    scanned = frame.attrs.get("scanned", len(frame))
    when = f" at {at}" if at else ""
    click.echo(
        f"{frame.attrs.get('preset') or frame.attrs.get('condition')} on {universe} "
        f"{timeframe}{when}: {len(frame)} of {scanned} instruments"
    )
    if frame.empty:
        return
    shown = frame.copy()
    daily = timeframe == "1d"
    shown["ts"] = shown["ts"].map(
        lambda t: t.strftime("%Y-%m-%d") if daily else t.strftime("%Y-%m-%d %H:%M")
    )
    click.echo(shown.to_string(float_format=lambda v: f"{v:,.2f}"))


def _records(frame) -> list[dict[str, object]]:  # noqa: ANN001  (a pandas DataFrame)
    out = []
    for instrument_id, row in frame.iterrows():
        record: dict[str, object] = {"instrument_id": instrument_id, "ts": row["ts"].isoformat()}
        for column in frame.columns[1:]:
            value = float(row[column])
            record[column] = value if math.isfinite(value) else None
        out.append(record)
    return out


def register(main: click.Group) -> None:
    """Add ``velox scan`` to the main command group."""
    main.add_command(scan_command)
