"""``velox replay | paper | live | kill | runs``: the engine's command-line verbs.

Registered on the main group by ``velox.cli`` (``register(main)``). Heavy modules are imported
inside the verbs so ``velox --help`` stays instant. The mode is printed on every line these
verbs log and in every report they write.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from velox.errors import ConfigError

if TYPE_CHECKING:
    from velox.engine import RunResult

__all__ = ["register"]


class _ModeFilter(logging.Filter):
    """Prefix every log record with the run mode (``[replay]`` …) unless it already has it."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.tag = f"[{mode}]"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.tag):
            record.msg = f"{self.tag} {record.msg}"
        return True


def _tag_logs(mode: str, *, account: str | None = None, run: str | None = None) -> None:
    """Tag every line with the mode; for ``VELOX_LOG_FORMAT=json`` also set the run context
    (mode, account, run) from the command's options, before the engine refines it."""
    from velox.monitoring import log_mode, set_log_context

    set_log_context(mode=log_mode(mode), account=account or "", run=run or "")
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(_ModeFilter(mode))


def _build_strategies(spec: str, symbols: tuple[str, ...], timeframe: str | None, params: tuple):  # noqa: ANN202
    from velox.strategy import load_strategy, parse_params

    cls = load_strategy(spec)
    overrides: dict[str, object] = dict(parse_params(params))
    if symbols:
        overrides["instruments"] = tuple(symbols)
    if timeframe:
        overrides["timeframe"] = timeframe
    return [cls(**overrides)]


def _risk_limits(path: str | None):  # noqa: ANN202
    """Return ``--risk FILE``'s limits, or None: the engine then uses velox.toml's [risk]."""
    from velox.risk import RiskLimits

    return RiskLimits.from_toml(path) if path else None


def _print_summary(result: RunResult, mode: str) -> None:
    stats = result.stats
    click.echo(f"mode: {mode}   run: {result.run_id}")
    for s in result.strategies:
        state = f"stopped: {s['error']}" if s["error"] else "ok"
        click.echo(
            f"strategy: {s['name']} {s['params']} on {s['instruments']} {s['timeframe']} ({state})"
        )

    def fmt(value: object, pct: bool = False) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            return "n/a"
        return (
            f"{value:.2%}" if pct else (f"{value:,.2f}" if isinstance(value, float) else str(value))
        )

    click.echo(
        f"final equity {fmt(stats['final_equity'])}  return {fmt(stats['total_return'], True)}  "
        f"CAGR {fmt(stats['cagr'], True)}  max drawdown {fmt(stats['max_drawdown'], True)}  "
        f"sharpe {fmt(stats['sharpe'])}  sortino {fmt(stats['sortino'])}"
    )
    click.echo(
        f"trades {stats['trades']} (open {stats['open_trades']})  win rate "
        f"{fmt(stats['win_rate'], True)}  profit factor {fmt(stats['profit_factor'])}  "
        f"avg trade {fmt(stats['avg_trade'])}  exposure {fmt(stats['exposure'], True)}  "
        f"charges {fmt(stats['charges'])}  orders {len(result.order_list)}"
    )
    for event in result.risk_events:
        click.echo(f"risk {event['kind']} {event['limit']} at {event['ts']}: {event['message']}")
    for trade in result.trade_list:
        if trade.exit_time is None:
            qty = trade.qty if trade.side == "BUY" else -trade.qty
            click.echo(f"open position: {trade.instrument_id} qty {qty:+d} ({trade.strategy}, "
                       f"{trade.product}, since {trade.entry_time:%Y-%m-%d %H:%M})")  # fmt: skip


def _report(result: RunResult, mode: str, json_path: str | None, *, recorded: bool) -> None:
    """Print the summary (and write the JSON report); exit 1 if a strategy failed.

    Any failed strategy makes the exit code 1, also when others ran to the end: a script
    checking ``$?`` must not take a run with a crashed strategy for a good one.
    """
    _print_summary(result, mode)
    if recorded:
        click.echo(f"recorded: velox runs show {result.run_id}")
    if json_path:
        result.to_json(json_path)
        click.echo(f"report: {Path(json_path)}")
    failed = [s for s in result.strategies if s["error"]]
    if failed:
        which = "every strategy" if len(failed) == len(result.strategies) else (
            f"{len(failed)} of {len(result.strategies)} strategies")  # fmt: skip
        reasons = "; ".join(f"{s['name']}: {s['error']}" for s in failed)
        click.secho(f"error: {which} failed: {reasons}", fg="red", err=True)
        raise SystemExit(1)


def _run_reported(run: Callable[[], RunResult], mode: str, json_path: str | None,
                  *, recorded: bool = False, alerts: bool = False) -> None:  # fmt: skip
    """Run, then report; on Ctrl-C report what ran and exit 130 (the shell's SIGINT code).

    ``alerts`` (paper and live) delivers the stored alerts beside the engine while it runs
    when an alert channel is configured (``velox.alerts.worker.beside_engine``).
    """
    from contextlib import nullcontext

    from velox.errors import RunInterrupted

    if alerts:
        from velox.alerts.worker import beside_engine

        delivering = beside_engine()
    else:
        delivering = nullcontext()
    try:
        with delivering:
            result = run()
    except RunInterrupted as stop:
        _report(stop.result, mode, json_path, recorded=recorded)  # type: ignore[arg-type]
        click.secho("interrupted (Ctrl-C): the report covers what ran", fg="red", err=True)
        raise SystemExit(130) from None
    _report(result, mode, json_path, recorded=recorded)


def _configured_broker() -> str:
    """Return the ``broker`` setting, or say how to name a broker when there is none."""
    from velox.brokers import LIVE_BROKERS
    from velox.config import get_settings

    name = get_settings().broker
    if name is None:
        raise ConfigError(
            "no broker named: give --broker ("
            + ", ".join(sorted(LIVE_BROKERS))
            + ') or set broker = "kite" in velox.toml (or VELOX_BROKER)'
        )
    return name


def _stop_after(text: str) -> float | None:
    """Return ``--stop-after``'s seconds (``None`` for ``never``), refusing anything else."""
    if text.strip().lower() == "never":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"--stop-after {text!r} must be a number of seconds or 'never'")
    return value


def output_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """Click callback: check an output file option can be written *before* the command runs.

    A run that ends by failing to write its report would have wasted the run; the error names
    the option and the path in one line.
    """
    if value is None:
        return None
    path = Path(value).expanduser()
    parent = path.parent
    if path.is_dir():
        raise click.BadParameter(f"{str(path)!r} is a folder, not a file", ctx, param)
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a folder"
        raise click.BadParameter(f"cannot write {str(path)!r}: {str(parent)!r} {what}", ctx, param)
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise click.BadParameter(f"permission denied: cannot write {str(path)!r}", ctx, param)
    return path


_symbol = click.option(
    "--symbol", "symbols", multiple=True, help="Instrument id (repeatable), e.g. NSE:RELIANCE."
)
_timeframe = click.option("--timeframe", help="Bar timeframe (1m 3m 5m 10m 15m 30m 1h 1d).")
_param = click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="Strategy parameter."
)
_cash = click.option("--cash", default=1_000_000.0, show_default=True, help="Starting cash (₹).")
_json = click.option(
    "--json", "json_path", callback=output_path, help="Write the report (JSON) to this file."
)
_risk = click.option("--risk", "risk_file", help="TOML file with a [risk] table of limits.")


@click.command()
@click.argument("strategy")
@_symbol
@_timeframe
@click.option("--start", help="First session (YYYY-MM-DD).")
@click.option("--end", help="Last session (YYYY-MM-DD).")
@_param
@_cash
@_risk
@click.option("--record", is_flag=True, help="Store the run (velox runs show RUN reads it).")
@click.option("--run", "run_id", help="Run id to record under (default: the next R<n>).")
@_json
def replay(
    strategy: str,
    symbols: tuple[str, ...],
    timeframe: str | None,
    start: str | None,
    end: str | None,
    params: tuple[str, ...],
    cash: float,
    risk_file: str | None,
    record: bool,
    run_id: str | None,
    json_path: Path | None,
) -> None:
    """Replay STRATEGY (file.py[:Class] or module:Class) on stored bars, event by event.

    Orders go through the OMS, the risk checks and the simulated broker with Indian charges,
    exactly as in paper trading; the report holds trades, the equity curve, risk events and
    summary statistics.
    """
    from velox.modes import replay as run_replay

    _tag_logs("replay", run=run_id)
    strategies = _build_strategies(strategy, symbols, timeframe, params)
    if run_id is not None and not record:
        raise ConfigError("--run names the recorded run: add --record")
    limits = _risk_limits(risk_file)
    _run_reported(
        lambda: run_replay(strategies, start=start, end=end, initial_cash=cash,
                           risk_limits=limits, record=record, run_id=run_id),
        "replay", json_path, recorded=record,
    )  # fmt: skip


@click.command()
@click.argument("strategy")
@_symbol
@_timeframe
@click.option("--start", help="First session of the replayed market (YYYY-MM-DD).")
@click.option("--end", help="Last session of the replayed market (YYYY-MM-DD).")
@_param
@_cash
@_risk
@click.option("--speed", default=60.0, show_default=True, help="Replay speed × wall time.")
@click.option("--run", "run_id", default="P1", show_default=True, help="Run id (resume with it).")
@click.option("--account", default="paper", show_default=True, help="Account name (for kill).")
@click.option("--socket", "socket_path", help="Simulator socket (default <data_dir>/paper/RUN).")
@click.option("--broker", "broker_name", help="Trade on this broker's live data (kite, …).")
@click.option(
    "--confirm-live", is_flag=True, help="With --broker: allow switch-mode to live later."
)
@_json
def paper(
    strategy: str,
    symbols: tuple[str, ...],
    timeframe: str | None,
    start: str | None,
    end: str | None,
    params: tuple[str, ...],
    cash: float,
    risk_file: str | None,
    speed: float,
    run_id: str,
    account: str,
    socket_path: str | None,
    broker_name: str | None,
    confirm_live: bool,
    json_path: Path | None,
) -> None:
    """Paper-trade STRATEGY: the simulated broker on a paced replay of stored bars, or with
    --broker on that broker's live market data (a dry run: orders never reach the broker).

    The simulator runs in its own process, so it survives an engine crash: run the same
    command (same --run) again and the engine rebuilds its state from the store's audit
    trail, books what filled meanwhile, reconciles with the simulator and carries on.
    """
    from velox.modes import paper as run_paper

    _tag_logs("paper", account=account, run=run_id)
    strategies = _build_strategies(strategy, symbols, timeframe, params)
    limits = _risk_limits(risk_file)
    if broker_name is not None:
        from velox.deployment import deploy

        for option, value, default in (("--speed", speed, 60.0), ("--start", start, None),
                                       ("--end", end, None)):  # fmt: skip
            if value != default:
                raise ConfigError(f"{option} paces a replay of stored bars; with --broker the "
                                  "market is the broker's live data")  # fmt: skip
        _run_reported(
            lambda: deploy(strategies, broker=broker_name, dry_run=True,
                           confirm_live=confirm_live, run_id=run_id, account=account,
                           initial_cash=cash, risk_limits=limits,
                           socket_path=Path(socket_path) if socket_path else None),
            "paper", json_path, recorded=True, alerts=True,
        )  # fmt: skip
        return
    if confirm_live:
        raise ConfigError("--confirm-live goes with --broker (a replay has no live broker)")
    _run_reported(
        lambda: run_paper(
            strategies,
            run_id=run_id,
            speed=speed,
            start=start,
            end=end,
            initial_cash=cash,
            risk_limits=limits,
            account=account,
            socket_path=Path(socket_path) if socket_path else None,
        ),
        "paper",
        json_path,
        alerts=True,
    )


@click.command()
@click.argument("strategy")
@_symbol
@_timeframe
@_param
@click.option(
    "--broker",
    "broker_name",
    help="Broker to trade through (kite, smartapi, breeze; default: the broker setting).",
)
@click.option("--confirm-live", is_flag=True, help="Confirm that real orders may be sent.")
@click.option("--cash", type=float, help="Capital (₹; default: the broker's cash).")
@_risk
@click.option("--run", "run_id", default="L1", show_default=True, help="Run id (resume with it).")
@click.option("--account", help="Account name (for kill; default: the broker's name).")
@click.option("--socket", "socket_path", help="Dry-run simulator socket (default per run).")
@click.option(
    "--reconcile-every",
    default=60.0,
    show_default=True,
    help="Seconds of market time between reconciliations with the broker.",
)
@click.option(
    "--stop-after",
    default="60",
    show_default=True,
    help="End the run this many seconds of market time after the session's close (negative: "
    "before it), or 'never' (until Ctrl-C or velox kill).",
)
@_json
def live(
    strategy: str,
    symbols: tuple[str, ...],
    timeframe: str | None,
    params: tuple[str, ...],
    broker_name: str | None,
    confirm_live: bool,
    cash: float | None,
    risk_file: str | None,
    run_id: str,
    account: str | None,
    socket_path: str | None,
    reconcile_every: float,
    stop_after: str,
    json_path: Path | None,
) -> None:
    """Trade STRATEGY with real money through a broker (needs --confirm-live).

    Every order passes the risk engine, every state change is audited in the store before it
    is acted on, and a restart with the same --run never sends an order twice. The
    switch-mode command moves the running deployment to a dry run on the same live data and
    back. Log in first: `velox broker login BROKER`. Without --broker, the ``broker`` setting
    (``broker = "smartapi"`` in velox.toml, or VELOX_BROKER) names the broker.
    """
    broker_name = broker_name or _configured_broker()
    if not confirm_live:
        from velox.deployment import LIVE_REFUSED

        raise ConfigError(LIVE_REFUSED.format(broker=broker_name))
    from velox.deployment import deploy

    after = _stop_after(stop_after)
    _tag_logs("live", account=account or broker_name, run=run_id)
    strategies = _build_strategies(strategy, symbols, timeframe, params)
    limits = _risk_limits(risk_file)
    _run_reported(
        lambda: deploy(strategies, broker=broker_name, dry_run=False, confirm_live=True,
                       run_id=run_id, account=account, initial_cash=cash, risk_limits=limits,
                       socket_path=Path(socket_path) if socket_path else None,
                       reconcile_every=reconcile_every, stop_after=after),
        "live", json_path, recorded=True, alerts=True,
    )  # fmt: skip


@click.command()
@click.option("--account", default=None, help="Only the engines trading this account.")
@click.option("--run", "run_id", default=None, help="Only this run.")
@click.option("--reason", default="operator kill", show_default=True, help="Why (audited).")
@click.option(
    "--wait",
    default=10.0,
    show_default=True,
    help="Seconds to wait for the answers (more than the 5 s a hung strategy callback may run).",
)
def kill(account: str | None, run_id: str | None, reason: str, wait: float) -> None:
    """Engage the kill switch of running paper/live engines: cancel, square off, halt.

    Stores a ``kill`` command for every running paper/live run (of --account / --run) and
    waits for each engine's answer. Exits 1 if an engine did not answer in time (it takes
    the command when it comes back), 0 when every engine engaged.
    """
    import getpass

    from velox.store import open_store

    store = open_store(create=False)
    command = store.issue_command(
        "kill", issued_by=getpass.getuser(), account=account, run_id=run_id,
        args={"reason": reason},
    )  # fmt: skip
    if not command.targets:
        click.echo(f"kill command {command.id} stored; no paper/live engine is running")
        return
    click.echo(f"kill command {command.id} for {', '.join(command.targets)}")
    results = store.wait_command(command.id, wait)
    waiting = results[~results["status"].isin(["done", "failed"])]
    for row in results.itertuples():
        if row.status == "done":
            click.echo(f"  {row.run_id}: engaged")
        elif row.status == "failed":
            click.echo(f"  {row.run_id}: FAILED {row.result}")
        else:
            click.echo(f"  {row.run_id}: no answer ({row.status}); it acts on it when it runs")
    if not waiting.empty:
        raise SystemExit(1)


@click.group()
def runs() -> None:
    """List and show recorded runs (replays with --record, paper, live)."""


@runs.command("list")
@click.option("--mode", type=click.Choice(["replay", "paper", "live"]), help="Only this mode.")
@click.option(
    "--status", type=click.Choice(["running", "finished", "failed", "stopped"]), help="Only this."
)
@click.option("--limit", default=20, show_default=True, help="Newest N runs.")
def runs_list(mode: str | None, status: str | None, limit: int) -> None:
    """List recorded runs, newest first, with their summary."""
    import velox

    frame = velox.runs(mode=mode, status=status, limit=limit)
    if frame.empty:
        click.echo("(no runs recorded)")
        return
    table = frame[["run_id", "mode", "account", "status", "started_at"]].copy()
    table["strategies"] = [", ".join(str(s["name"]) for s in v) for v in frame["strategies"]]
    table["started_at"] = table["started_at"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
    table["return"] = [_pct(v) for v in frame["total_return"]]
    table["trades"] = ["" if v is None else int(v) for v in frame["trades"]]
    click.echo(table.to_string(index=False))


@runs.command("show")
@click.argument("run_id")
@click.option("--trades", "n_trades", default=10, show_default=True, help="Show the last N trades.")
def runs_show(run_id: str, n_trades: int) -> None:
    """Show one recorded run: configuration, summary, last trades and risk events."""
    from velox.modes import load_run
    from velox.store import open_store

    run = open_store(create=False).run(run_id)
    result = load_run(run_id)
    ended = run["ended_at"].strftime("%Y-%m-%d %H:%M:%S") if run["ended_at"] else "-"
    click.echo(
        f"run {run_id}: {run['mode']} {run['status']}  account {run['account'] or '-'}  "
        f"started {run['started_at']:%Y-%m-%d %H:%M:%S}  ended {ended}"
    )
    _print_summary(result, str(run["mode"]))
    if n_trades and len(result.trade_list):
        cols = ["entry_time", "exit_time", "instrument_id", "side", "qty", "entry_price",
                "exit_price", "net_pnl"]  # fmt: skip
        trades = result.trades
        shown = trades[[c for c in cols if c in trades]].tail(n_trades)
        click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))


def _pct(value: object) -> str:
    if not isinstance(value, float) or not math.isfinite(value):
        return ""
    return f"{value:.2%}"


def register(main: click.Group) -> None:
    """Add the engine verbs to the ``velox`` command group."""
    for command in (replay, paper, live, kill, runs):
        main.add_command(command)
