"""``velox replay | paper | live | kill``: the engine's command-line verbs.

Registered on the main group by ``velox.cli`` (``register(main)``). Heavy modules are imported
inside the verbs so ``velox --help`` stays instant. The mode is printed on every line these
verbs log and in every report they write.
"""

from __future__ import annotations

import logging
import math
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


def _tag_logs(mode: str) -> None:
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
    from velox.risk import RiskLimits

    return RiskLimits.from_toml(path) if path else RiskLimits()


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


_symbol = click.option(
    "--symbol", "symbols", multiple=True, help="Instrument id (repeatable), e.g. NSE:RELIANCE."
)
_timeframe = click.option("--timeframe", help="Bar timeframe (1m 3m 5m 10m 15m 30m 1h 1d).")
_param = click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="Strategy parameter."
)
_cash = click.option("--cash", default=1_000_000.0, show_default=True, help="Starting cash (₹).")
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
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
def replay(
    strategy: str,
    symbols: tuple[str, ...],
    timeframe: str | None,
    start: str | None,
    end: str | None,
    params: tuple[str, ...],
    cash: float,
    risk_file: str | None,
    json_path: str | None,
) -> None:
    """Replay STRATEGY (file.py[:Class] or module:Class) on stored bars, event by event.

    Orders go through the OMS, the risk checks and the simulated broker with Indian charges,
    exactly as in paper trading; the report holds trades, the equity curve, risk events and
    summary statistics.
    """
    from velox.modes import replay as run_replay

    _tag_logs("replay")
    strategies = _build_strategies(strategy, symbols, timeframe, params)
    result = run_replay(
        strategies, start=start, end=end, initial_cash=cash, risk_limits=_risk_limits(risk_file)
    )
    _print_summary(result, "replay")
    if json_path:
        result.to_json(json_path)
        click.echo(f"report: {Path(json_path)}")


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
@click.option("--commands", "commands_dir", help="Command folder (default <data_dir>/commands).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
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
    commands_dir: str | None,
    json_path: str | None,
) -> None:
    """Paper-trade STRATEGY: the simulated broker on a paced replay of stored bars.

    The simulator runs in its own process, so it survives an engine crash: run the same
    command (same --run) again and the engine rebuilds its state from the store's audit
    trail, books what filled meanwhile, reconciles with the simulator and carries on. The live
    feed joins with the broker issue.
    """
    from velox.modes import paper as run_paper

    _tag_logs("paper")
    strategies = _build_strategies(strategy, symbols, timeframe, params)
    result = run_paper(
        strategies,
        run_id=run_id,
        speed=speed,
        start=start,
        end=end,
        initial_cash=cash,
        risk_limits=_risk_limits(risk_file),
        account=account,
        socket_path=Path(socket_path) if socket_path else None,
        commands_dir=Path(commands_dir) if commands_dir else None,
    )
    _print_summary(result, "paper")
    if json_path:
        result.to_json(json_path)
        click.echo(f"report: {Path(json_path)}")


@click.command()
@click.argument("strategy")
@click.option("--broker", "broker_name", required=True, help="Broker adapter name (kite, …).")
@click.option("--confirm-live", is_flag=True, help="Confirm that real orders may be sent.")
def live(strategy: str, broker_name: str, confirm_live: bool) -> None:
    """Trade STRATEGY with real money through a broker (not available yet)."""
    if not confirm_live:
        raise ConfigError(
            f"refusing to trade live through {broker_name!r} without --confirm-live: switching "
            "from dry-run to live needs that explicit flag"
        )
    from velox.modes import LIVE_NOT_WIRED

    raise ConfigError(LIVE_NOT_WIRED)


@click.command()
@click.option("--account", default="", help="Only the engine trading this account.")
@click.option("--reason", default="operator kill", show_default=True, help="Why (audited).")
def kill(account: str, reason: str) -> None:
    """Engage the kill switch of running paper/live engines: cancel, square off, halt.

    Writes a command file that engines poll about every 0.25 s (``<data_dir>/commands``);
    each engine acts on it once, audits it and refuses every later order until reset.
    """
    from velox.config import get_settings
    from velox.engine.commands import FileCommands

    path = FileCommands.write_kill(
        get_settings().data_dir / "commands", account=account, reason=reason
    )
    click.echo(f"kill command written: {path}")


def register(main: click.Group) -> None:
    """Add the engine verbs to the ``velox`` command group."""
    for command in (replay, paper, live, kill):
        main.add_command(command)
