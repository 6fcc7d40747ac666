"""Run-mode wiring: the objects each mode hands to the one :class:`velox.engine.Engine`.

======  ============================  ==========  ==========  ===============  ===============
mode    market source                 broker      clock       audit log        run state
======  ============================  ==========  ==========  ===============  ===============
replay  ``BarReplay`` of stored bars  SimBroker   replay      memory or store  ``record=True``
paper   live feed or paced replay     SimBroker   wall clock  order_events     recorded
live    the broker's live feed        the broker  feed clock  order_events     recorded
======  ============================  ==========  ==========  ===============  ===============

Nothing else differs: the engine, OMS, risk checks and strategies are the same objects. A
recorded run has a ``runs`` row (created before the engine starts, finished with its summary
after it ends) and a :class:`velox.store.RunRecorder` as the engine's journal; paper and live
engines also take operator commands from the store (:class:`velox.engine.commands.
StoreCommands`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from velox.config import get_settings
from velox.engine import Engine
from velox.engine.core import name_uniquely, strategy_record
from velox.errors import ConfigError, RunInterrupted, ValidationError
from velox.feeds.bar_replay import BarReplay
from velox.oms import AuditLog
from velox.risk import RiskEngine, RiskLimits, default_risk_limits
from velox.strategy import Strategy
from velox.types import Instrument

if TYPE_CHECKING:
    import pandas as pd

    from velox.brokers.sim import SimConfig
    from velox.engine import RunResult
    from velox.store import Store
    from velox.store.recorder import RunRecorder

__all__ = [
    "replay",
    "paper",
    "start_paper",
    "PaperSession",
    "check_paper_options",
    "load_run",
    "load_bars",
    "default_instruments",
]

log = logging.getLogger(__name__)


@functools.cache
def _master_lookup() -> Callable[[str], Instrument]:
    from velox.instruments import load_bundled_master

    return load_bundled_master().get


def default_instruments() -> Callable[[str], Instrument]:
    """Return the bundled instrument master's lookup (loaded once per process)."""
    return _master_lookup()


def load_bars(
    store: Store,
    strategies: Sequence[Strategy],
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
) -> BarReplay:
    """Return a replay of the stored bars every strategy subscribes to.

    A subscription without bars (a timeframe not stored and not resampleable, an instrument
    with no data) raises :class:`~velox.errors.DataError` naming what is stored.
    """
    subs = [(i, tf) for s in strategies for i in s.instruments for tf in s.all_timeframes]
    return BarReplay.from_store(store, subs, start, end)


def replay(
    strategies: Strategy | Sequence[Strategy],
    *,
    bars: Mapping[tuple[str, str], pd.DataFrame] | None = None,
    store: Store | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    initial_cash: float = 1_000_000.0,
    risk_limits: RiskLimits | None = None,
    instruments: Mapping[str, Instrument] | Callable[[str], Instrument] | None = None,
    audit: AuditLog | None = None,
    run_id: str | None = None,
    sim_config: SimConfig | None = None,
    cost_model: object = None,
    slippage: object = None,
    flatten_on_error: bool = False,
    reconcile_every: float = 86_400.0,
    record: bool = False,
) -> RunResult:
    """Return the result of an event-driven replay of stored bars through the full engine.

    Bars come from ``bars`` or else from ``store`` (default ``velox.store.open_store()``);
    the broker is a fresh :class:`~velox.brokers.sim.SimBroker` with ``velox.costs.CostModel``
    charges; orders go through the OMS and the risk engine exactly as in paper and live.
    The engine reconciles with the (in-process) simulator at the start and then once per day of
    replayed time (``reconcile_every`` seconds).

    ``record=True`` stores the run (``runs``, its orders, fills, positions, equity curve and
    risk events; not its alerts, which would page people about a backtest) in ``store``
    (default ``velox.store.open_store()``) under ``run_id`` (default: the next ``R<n>``);
    ``velox.load_run(result.run_id)`` rebuilds the same result. Unrecorded runs use
    ``run_id="R1"`` unless told otherwise.

    Examples
    --------
    >>> from velox.strategy import load_strategy                       # doctest: +SKIP
    >>> SmaCross = load_strategy("strategies/sma_cross.py")             # doctest: +SKIP
    >>> result = replay(SmaCross(fast=10, slow=30), start="2019-01-01")  # doctest: +SKIP
    >>> result.stats["total_return"]                                     # doctest: +SKIP
    """
    from velox.brokers.sim import SimBroker

    if isinstance(strategies, Strategy):
        strategies = [strategies]
    strategies = list(strategies)
    if not strategies:
        raise ConfigError("replay needs at least one strategy")
    lookup = instruments if instruments is not None else default_instruments()
    get = lookup.__getitem__ if isinstance(lookup, Mapping) else lookup
    runnable, unknown = [], []
    for strategy in strategies:
        try:
            for iid in strategy.instruments:
                get(iid)
            runnable.append(strategy)
        except KeyError as exc:  # UnknownInstrument is a KeyError; the engine reports it too
            unknown.append(exc)
    if not runnable and unknown:
        raise unknown[0]
    if bars is None:
        if store is None:
            from velox.store import open_store

            store = open_store(create=False)
        feed = load_bars(store, runnable, start, end)
    else:
        feed = BarReplay(bars)
    broker = SimBroker(
        lookup,
        initial_cash=initial_cash,
        cost_model=cost_model,  # type: ignore[arg-type]
        slippage=slippage,  # type: ignore[arg-type]
        config=sim_config,
    )
    recorder = None
    if record:
        from velox.store.recorder import RunRecorder

        if store is None:
            from velox.store import open_store

            store = open_store()
        if run_id is not None and _recorded_already(store, run_id):
            raise ConfigError(
                f"run {run_id} is recorded already; give another run_id or none (the store "
                "picks the next free R<n>)"
            )
        name_uniquely(strategies)
        run_id = store.create_run(
            mode="replay", strategies=[strategy_record(s) for s in strategies],
            initial_cash=initial_cash, run_id=run_id,
            params={"start": _text(start), "end": _text(end),
                    "bars": "given" if bars is not None else "store"},
        )  # fmt: skip
        recorder = RunRecorder.for_replay(store, run_id)
    engine = Engine(
        strategies,
        broker=broker,
        feed=feed,
        instruments=lookup,
        mode="replay",
        initial_cash=initial_cash,
        audit=audit,
        run_id=run_id or "R1",
        risk=RiskEngine(risk_limits if risk_limits is not None else default_risk_limits()),
        reconcile_every=reconcile_every,
        flatten_on_error=flatten_on_error,
        journal=recorder,
        callback_budget=get_settings().callback_budget,
        # one square-off time for the engine and its simulated exchange (SimConfig's default
        # is the mis_square_off setting)
        mis_square_off=broker.config.square_off_time,
    )
    if recorder is None:
        return engine.run()
    return _recorded(engine, store, recorder)  # type: ignore[arg-type]


def _recorded(engine: Engine, store: Store, recorder: RunRecorder) -> RunResult:
    """Run a recorded engine: its journal flushed and its run row finished however it ends."""
    try:
        result = engine.run()
    except BaseException as exc:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        summary: dict[str, object] = {"error": f"{type(exc).__name__}: {exc}"}
        if isinstance(exc, RunInterrupted):  # Ctrl-C: what ran is summarised all the same
            summary = {**run_summary(exc.result), **summary}  # type: ignore[arg-type]
        try:
            recorder.close()
        finally:
            store.finish_run(engine.run_id, status=status, summary=summary)
        raise
    recorder.close()  # StoreError if something could not be written: not "finished" then
    store.finish_run(engine.run_id, status="finished", summary=run_summary(result))
    return result


def trade_recorded(
    strategies: list[Strategy],
    *,
    store: Store,
    run_id: str,
    mode: str,
    account: str,
    initial_cash: float,
    params: dict[str, object],
    risk_limits: RiskLimits | None,
    reconcile_every: float | None,
    **venue: object,
) -> RunResult:
    """Trade a paper or live run recorded in the store and return its result.

    What every stored run has, whatever its venue: the ``runs`` row (a restart of ``run_id``
    resumes it), the store's operator commands, the audit trail the engine restores its orders,
    fills and positions from, the recorder, the risk engine of ``account``, and the callback
    budget. ``venue`` is the rest of :class:`~velox.engine.Engine`'s wiring: ``broker``,
    ``feed``, ``clock``, ``instruments`` (and ``venues`` for a switchable deployment).

    Monitoring rides along: the users' enabled alert rules on the traded instruments are
    evaluated on the run's closed candles (:class:`velox.alerts.rules.RuleWatcher`), and with
    ``VELOX_METRICS_PORT`` set the engine serves ``/metrics``, ``/health`` and ``/ready``
    there (:mod:`velox.monitoring`).
    """
    from velox.alerts.rules import RuleWatcher
    from velox.engine.commands import StoreCommands
    from velox.oms import StoreAuditLog
    from velox.store.recorder import LIVE_FLUSH_S, RunRecorder

    name_uniquely(strategies)
    limits = risk_limits if risk_limits is not None else default_risk_limits()
    store.create_run(
        mode=mode, account=account, strategies=[strategy_record(s) for s in strategies],
        initial_cash=initial_cash, run_id=run_id,
        params={**params, "risk_limits": limits.to_mapping()},
    )  # fmt: skip
    commands = StoreCommands(store, run_id)
    recorder = RunRecorder(store, run_id, flush_interval=LIVE_FLUSH_S)
    traded = {iid for s in strategies for iid in s.instruments}
    watcher = RuleWatcher(store, run_id=run_id, account=account, instruments=traded)
    port = get_settings().metrics_port
    metrics = None
    if port is not None:
        from velox.monitoring import EngineMetrics

        metrics = EngineMetrics()
    engine = Engine(
        strategies,
        mode=mode,
        initial_cash=initial_cash,
        audit=StoreAuditLog(store, mode, run_id=run_id),
        run_id=run_id,
        risk=RiskEngine(limits, account=account),
        reconcile_every=reconcile_every,
        commands=commands,
        journal=recorder,
        restore=True,
        callback_budget=get_settings().callback_budget,
        watchers=[watcher] if len(watcher) else [],
        metrics=metrics,
        **venue,  # type: ignore[arg-type]
    )
    server = None
    if metrics is not None:
        from velox.monitoring import start_metrics_server

        server = start_metrics_server(metrics, engine, store=store, port=port)  # type: ignore[arg-type]
    try:
        return _recorded(engine, store, recorder)
    finally:
        commands.close()
        if server is not None:
            server.close()


def run_summary(result: RunResult) -> dict[str, object]:
    """Return what a finished run's ``runs.summary`` holds: its statistics, the errors that
    stopped strategies, and counts."""
    return {
        **result.stats,
        "errors": {str(s["name"]): s["error"] for s in result.strategies if s["error"]},
        "orders": len(result.order_list),
        "fills": len(result.fill_list),
    }


def load_run(run_id: str, *, store: Store | None = None) -> RunResult:
    """Return the :class:`~velox.engine.RunResult` of a recorded run, rebuilt from the store.

    Orders, fills, the equity curve, risk events and alerts are read back as recorded; trades
    and statistics are derived from them as for the original, so the result equals it (bars are
    not part of a run: pass ``bars=`` to ``plot``). A run still going returns what it has
    recorded so far.

    Raises
    ------
    velox.errors.DataError
        Unknown run id (the message lists recent ones).
    """
    from velox.engine.result import result_from_records

    if store is None:
        from velox.store import open_store

        store = open_store(create=False)
    run = store.run(run_id)
    summary = run.get("summary") or {}
    errors = summary.get("errors", {}) if isinstance(summary, dict) else {}
    strategies = [{**s, "error": errors.get(s["name"])} for s in run["strategies"]]
    equity = store.run_equity(run_id)
    risk = store.run_risk_events(run_id)
    mode = str(run["mode"])
    risk_events = [
        {"ts": ts.isoformat(), "kind": kind, "limit": limit, "message": message,
         "account": account, "mode": mode}
        for ts, kind, limit, message, account in zip(
            risk["ts"], risk["kind"], risk["limit"], risk["message"], risk["account"],
            strict=True,
        )
    ]  # fmt: skip
    alerts = store.alerts(run_id=run_id).iloc[::-1]
    return result_from_records(
        mode=mode,
        run_id=run_id,
        strategies=strategies,
        initial_cash=float(run["initial_cash"]),  # type: ignore[arg-type]
        orders=store.orders_of_run(run_id),
        fills=store.fills_of_run(run_id),
        equity_ns=equity["ts_ns"].tolist(),
        equity_values=equity["equity"].tolist(),
        risk_events=risk_events,
        alerts=[
            {
                "ts": row.ts.isoformat(),
                "kind": row.kind,
                "severity": row.severity,
                "message": row.message,
                "dedup_key": row.dedup_key,
                "account": row.account or "",
                "payload": row.payload,
            }
            for row in alerts.itertuples()
        ],  # fmt: skip
    )


def _recorded_already(store: Store, run_id: str) -> bool:
    from velox.errors import DataError

    try:
        store.run(run_id)
    except DataError:
        return False
    return True


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def paper(
    strategies: Strategy | Sequence[Strategy],
    *,
    run_id: str = "P1",
    speed: float = 60.0,
    start: str | None = None,
    end: str | None = None,
    initial_cash: float = 1_000_000.0,
    risk_limits: RiskLimits | None = None,
    account: str = "paper",
    store: Store | None = None,
    socket_path: Path | None = None,
    reconcile_every: float = 60.0,
    dump_path: Path | None = None,
) -> RunResult:
    """Return the result of paper trading: stored bars replayed at ``speed``× wall time.

    The simulator runs in its own process (started here unless one already listens on the
    run's socket, which is how a restarted engine resumes the same run). The audit trail is
    the store's ``order_events``; on start the engine rebuilds orders, fills and positions
    from it, books every fill of the account it missed from the simulator (its own orders',
    the MIS square-off's, other terminals') and reconciles before trading. The run is
    recorded in the store (``runs`` row ``run_id``, resumed by a restart) and takes the
    store's operator commands (``velox kill``), including those issued while it was down.

    Everything is checked before a simulator is started, so a refused start leaves no
    process behind: the options (:func:`check_paper_options`), the strategies' instruments
    and stored bars, the socket path (only a socket Velox created is ever replaced:
    :func:`velox.brokers.sim.paper.socket_state`), and that no other engine runs ``run_id``
    (:meth:`velox.store.Store.hold_run`, held until the run ends).
    """
    from velox.brokers.sim.paper import (
        PaperBroker,
        PaperClock,
        PaperConnection,
        PaperFeed,
        paper_socket,
        socket_state,
        start_sim_server,
    )

    if isinstance(strategies, Strategy):
        strategies = [strategies]
    strategies = list(strategies)
    check_paper_options(run_id=run_id, speed=speed, start=start, end=end,
                        initial_cash=initial_cash, account=account)  # fmt: skip
    if not strategies:
        raise ConfigError("paper trading needs at least one strategy")
    lookup = default_instruments()
    for strategy in strategies:
        for iid in strategy.instruments:
            lookup(iid)
    if store is None:
        from velox.store import open_store

        store = open_store(create=False)
    path = Path(socket_path) if socket_path is not None else paper_socket(run_id)
    subs = sorted({(i, tf) for s in strategies for i in s.instruments for tf in s.all_timeframes})
    with store.hold_run(run_id):
        state = socket_state(path)  # ConfigError for a path Velox did not create
        if state == "live":
            log.info("[paper] resuming run %s: the simulator is still running", run_id)
        else:
            load_bars(store, strategies, start, end)  # DataError naming what is stored
            start_sim_server(subs, path, speed=speed, initial_cash=initial_cash, start=start,
                             end=end, dump_path=dump_path)  # fmt: skip
        link = PaperConnection(path)
        try:
            return trade_recorded(
                strategies, store=store, run_id=run_id, mode="paper", account=account,
                initial_cash=initial_cash, params={"speed": speed, "start": start, "end": end},
                risk_limits=risk_limits, reconcile_every=reconcile_every,
                broker=PaperBroker(link), feed=PaperFeed(link, {iid for iid, _ in subs}),
                clock=PaperClock(link), instruments=lookup,
            )  # fmt: skip
        finally:
            link.close()


class PaperSession:
    """A paper run on a background thread, watched from a notebook through the store.

    :func:`start_paper` returns it at once; the engine records as it trades, so
    :meth:`positions`, :meth:`equity`, :meth:`orders` and :meth:`fills` read the run's state
    as of now (the recorder writes every 0.5 s), exactly what a dashboard sees. :meth:`wait`
    returns the :class:`RunResult` (re-raising what stopped the run, if anything);
    :meth:`kill` engages the kill switch through the store's command table, as
    ``velox kill --run`` does.
    """

    def __init__(self, run_id: str, store: Store, target: Callable[[], RunResult]) -> None:
        import threading

        self.run_id, self.store = run_id, store
        self.result: RunResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = target()
            except BaseException as exc:  # noqa: BLE001 - handed to wait()
                self.error = exc

        self._thread = threading.Thread(target=run, name=f"velox-paper-{run_id}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "running" if self.running else ("failed" if self.error else "finished")
        return f"PaperSession({self.run_id!r}, {state})"

    @property
    def running(self) -> bool:
        """Whether the engine thread is still trading."""
        return self._thread.is_alive()

    def _read(self, reader: Callable[[str], pd.DataFrame]) -> pd.DataFrame:
        from velox.errors import DataError

        try:
            return reader(self.run_id)
        except DataError:  # the run's row is created a moment after the start
            import pandas as pd

            return pd.DataFrame()

    def positions(self) -> pd.DataFrame:
        """Return the run's latest positions (strategy ``''`` is the account's row)."""
        return self._read(self.store.run_positions)

    def equity(self) -> pd.Series:
        """Return the equity curve recorded so far (IST index)."""
        frame = self._read(self.store.run_equity)
        return frame["equity"] if "equity" in frame else frame.squeeze(axis=1)

    def orders(self) -> pd.DataFrame:
        """Return the run's orders in their latest state."""
        return self._read(self.store.run_orders)

    def fills(self) -> pd.DataFrame:
        """Return the run's fills so far, with charges."""
        return self._read(self.store.run_fills)

    def kill(self, reason: str = "notebook", issued_by: str = "notebook") -> None:
        """Engage the run's kill switch (cancel working orders, flatten, stop trading)."""
        self.store.issue_command("kill", run_id=self.run_id, issued_by=issued_by,
                                 args={"reason": reason})  # fmt: skip

    def wait(self, timeout: float | None = None) -> RunResult:
        """Return the run's result once it ends (``TimeoutError`` if still running)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"paper run {self.run_id} is still running")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def start_paper(
    strategies: Strategy | Sequence[Strategy], *, run_id: str = "P1", **options: object
) -> PaperSession:
    """Start :func:`paper` on a background thread and return its :class:`PaperSession`.

    Options are :func:`paper`'s, checked here first so a bad one raises at once in the cell
    that asked for it rather than on the thread.

    Examples
    --------
    >>> session = start_paper(SmaCross(timeframe="5m"), run_id="NB1", speed=3000,
    ...                       start="2025-05-20", end="2025-05-20")    # doctest: +SKIP
    >>> session.positions()                                             # doctest: +SKIP
    """
    defaults = {"speed": 60.0, "start": None, "end": None, "initial_cash": 1_000_000.0,
                "account": "paper"}  # fmt: skip
    check_paper_options(run_id=run_id, **{k: options.get(k, v) for k, v in defaults.items()})
    store = options.get("store")
    if store is None:
        from velox.store import open_store

        store = options["store"] = open_store(create=False)
    return PaperSession(run_id, store, lambda: paper(strategies, run_id=run_id, **options))  # type: ignore[arg-type]


def check_paper_options(
    *,
    run_id: object,
    speed: object,
    start: object,
    end: object,
    initial_cash: object,
    account: object,
) -> None:
    """Refuse a paper run's options that cannot work, each with a one-line reason.

    Called before anything is started: ``run_id`` follows the run-id grammar, ``speed`` is a
    finite number > 0 (``nan`` would pace the replay forever), ``start``/``end`` are dates
    ``YYYY-MM-DD`` in order, ``initial_cash`` is a finite amount > 0 and ``account`` a
    printable name.
    """
    from velox.store.runs import check_run_id

    try:
        check_run_id(run_id)
    except ValidationError as exc:
        raise ConfigError(f"--run: {exc}") from None
    _positive("--speed", speed, "a finite number > 0 (times wall-clock speed, e.g. 60)")
    days = {}
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            days[name] = _session_day(name, value)
    if len(days) == 2 and days["start"] > days["end"]:
        raise ConfigError(f"--start {start} is after --end {end}")
    _positive("--cash", initial_cash, "a finite amount of rupees > 0")
    if not (isinstance(account, str) and account.strip() == account and account.isprintable()
            and 0 < len(account) <= 64):  # fmt: skip
        raise ConfigError(
            f"--account {account!r} must be 1-64 printable characters without surrounding spaces"
        )


def _positive(option: str, value: object, what: str) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):  # type: ignore[arg-type]
        raise ConfigError(f"{option} {value!r} must be {what}")


def _session_day(name: str, value: object) -> date:
    text = str(value)
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--{name} {text!r} is not a date: write YYYY-MM-DD") from None
