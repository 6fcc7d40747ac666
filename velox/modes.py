"""Run-mode wiring: the objects each mode hands to the one :class:`velox.engine.Engine`.

=======  ===================================  ==============  ==========  =====================
mode     market source                        broker          clock       audit log
=======  ===================================  ==============  ==========  =====================
replay   ``BarReplay`` of stored bars         ``SimBroker``   replay      memory (or store)
paper    live feed, or a paced bar replay     ``SimBroker``   wall clock  store ``order_events``
live     the broker's live feed               the broker      wall clock  store ``order_events``
=======  ===================================  ==============  ==========  =====================

Nothing else differs: the engine, OMS, risk checks and strategies are the same objects.
"""

from __future__ import annotations

import functools
import json as _json
import logging
import selectors
import socket
import subprocess
import sys
import threading
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from velox.engine import BarReplay, Engine
from velox.errors import BrokerError, ConfigError, DataError, OrderRejected
from velox.oms import AuditLog
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Strategy
from velox.types import Fill, Instrument, Order, Position, Tick

if TYPE_CHECKING:
    import pandas as pd

    from velox.backtest.result import RunResult
    from velox.brokers.sim import SimConfig
    from velox.store import Store

__all__ = [
    "replay",
    "paper",
    "load_bars",
    "default_instruments",
    "SimServer",
    "PaperLink",
    "start_sim_server",
    "LIVE_NOT_WIRED",
]

log = logging.getLogger(__name__)

LIVE_NOT_WIRED = (
    "live trading is not wired yet: broker adapters arrive with the broker issue. Use "
    "`velox paper` (live data + simulated broker) meanwhile; live will also require "
    "--confirm-live"
)


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
) -> dict[tuple[str, str], pd.DataFrame]:
    """Return the stored bars every strategy subscribes to, by (instrument, timeframe)."""
    out = {}
    for strategy in strategies:
        for iid in strategy.instruments:
            for tf in strategy.all_timeframes:
                if (iid, tf) in out:
                    continue
                frame = store.read_bars(iid, tf, start, end)
                if frame.empty:
                    raise DataError(
                        f"no {tf} bars of {iid} in the store"
                        + (f" between {start} and {end}" if start or end else "")
                        + "; import them with `velox data import` (or `velox run` for the "
                        "bundled set) or pick another --symbol/--timeframe"
                    )
                out[(iid, tf)] = frame
    return out


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
    run_id: str = "R1",
    sim_config: SimConfig | None = None,
    cost_model: object = None,
    flatten_on_error: bool = False,
    reconcile_every: float = 86_400.0,
) -> RunResult:
    """Return the result of an event-driven replay of stored bars through the full engine.

    Bars come from ``bars`` or else from ``store`` (default ``velox.store.open_store()``);
    the broker is a fresh :class:`~velox.brokers.sim.SimBroker` with ``velox.costs.CostModel``
    charges; orders go through the OMS and the risk engine exactly as in paper and live.
    The engine reconciles with the (in-process) simulator at the start and then once per day of
    replayed time (``reconcile_every`` seconds).

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

            store = open_store()
        bars = load_bars(store, runnable, start, end)
    broker = SimBroker(
        lookup,
        initial_cash=initial_cash,
        cost_model=cost_model,  # type: ignore[arg-type]
        config=sim_config,
    )
    engine = Engine(
        strategies,
        broker=broker,
        feed=BarReplay(bars),
        instruments=lookup,
        mode="replay",
        initial_cash=initial_cash,
        audit=audit,
        run_id=run_id,
        risk=RiskEngine(risk_limits if risk_limits is not None else RiskLimits()),
        reconcile_every=reconcile_every,
        flatten_on_error=flatten_on_error,
    )
    return engine.run()


# --------------------------------------------------------------------------------------------
# Paper trading: the simulator in its own process, so it outlives an engine crash
# --------------------------------------------------------------------------------------------
#
# Why a separate process: a broker survives its client's crash. Running the simulator as a
# small server (one per paper run, on a Unix socket) gives paper trading exactly that property:
# `kill -9` of the engine leaves orders working and positions held at the "broker"; the
# restarted engine rebuilds its state from the store's audit trail, books the fills it missed
# from the simulator, reconciles, and carries on. The simulator also owns the market clock
# (a stored-bar replay paced at N× wall time) and streams ticks and postbacks to the engine
# over the same socket, in the order it produced them. The engine sees an ordinary Broker and
# an ordinary tick feed: no `if paper:` anywhere.


def _record_to_dict(record: Order | Fill | Position) -> dict[str, object]:
    """Return a slotted record's fields as JSON-ready values (enums by value, ISO 8601 times)."""
    out: dict[str, object] = {}
    for name in type(record).__slots__:
        value = getattr(record, name)
        out[name] = (
            value.isoformat() if isinstance(value, datetime) else getattr(value, "value", value)
        )
    return out


def order_to_dict(order: Order) -> dict[str, object]:
    """Return an order as JSON-ready values (enums by value, time in ISO 8601)."""
    return _record_to_dict(order)


def order_from_dict(data: Mapping[str, object]) -> Order:
    """Return the order :func:`order_to_dict` described."""
    fields = dict(data)
    if fields.get("created_at"):
        fields["created_at"] = datetime.fromisoformat(str(fields["created_at"]))
    return Order(**fields)  # type: ignore[arg-type]


def fill_to_dict(fill: Fill) -> dict[str, object]:
    """Return a fill as JSON-ready values."""
    return _record_to_dict(fill)


def fill_from_dict(data: Mapping[str, object]) -> Fill:
    """Return the fill :func:`fill_to_dict` described."""
    fields = dict(data)
    fields["ts"] = datetime.fromisoformat(str(fields["ts"]))
    return Fill(**fields)  # type: ignore[arg-type]


class SimServer:
    """Return the paper-trading simulator server: a ``SimBroker`` plus a paced bar replay.

    Serves one engine at a time on a Unix socket with newline-delimited JSON: requests
    ``{"id", "op", …}`` (``place``, ``cancel``, ``modify``, ``orders``, ``positions``,
    ``holdings``, ``funds``, ``fills``) get ``{"id", "result"}`` or ``{"id", "error", "kind"}``;
    events ``{"ev": "tick" | "order" | "fill" | "end", …}`` stream in production order. Events
    produced while no engine is connected are not queued: a reconnecting engine asks for
    ``orders`` and ``fills`` instead, as it would at a real broker.
    """

    def __init__(
        self,
        broker: object,
        replay: BarReplay,
        socket_path: Path,
        *,
        speed: float,
        dump_path: Path | None = None,
        linger: float = 30.0,
    ) -> None:
        self.sim = broker
        self.replay = replay
        self.socket_path = Path(socket_path)
        self.speed = speed
        self.dump_path = dump_path
        self.linger = linger
        self.client: socket.socket | None = None
        self._buffer = b""
        self._ended = False
        self._served_after_end = False
        broker.set_listener(self)  # type: ignore[attr-defined]

    # listener: forward postbacks to the connected engine
    def on_order_update(self, order: Order) -> None:
        self._send({"ev": "order", "order": order_to_dict(order)})

    def on_fill(self, fill: Fill) -> None:
        self._send({"ev": "fill", "fill": fill_to_dict(fill)})

    def _send(self, message: dict[str, object]) -> None:
        if self.client is None:
            return
        try:
            self.client.sendall(_json.dumps(message).encode() + b"\n")
        except OSError:
            self._drop()

    def _drop(self) -> None:
        if self.client is not None:
            self._served_after_end = self._ended
            log.warning("[paper] engine disconnected from the simulator")
            self.sel.unregister(self.client)
            self.client.close()
        self.client, self._buffer = None, b""

    def serve(self) -> None:
        """Replay the ticks at ``speed``× wall time, serving the engine, then linger and exit."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(4)
        listener.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        r = self.replay
        ids, symbol = r.instrument_ids, r.symbol.tolist()
        ts, price, volume = r.ts_ns.tolist(), r.price.tolist(), r.volume.tolist()
        wall0 = _time.monotonic()
        t0 = ts[0]
        k, n = 0, len(ts)
        end_at: float | None = None
        try:
            while True:
                now = _time.monotonic()
                if k < n:
                    due = wall0 + (ts[k] - t0) / 1e9 / self.speed
                    timeout = max(0.0, due - now)
                else:
                    # replay over: tell the engine, then wait (up to ``linger``) for it to
                    # finish its requests and hang up; one that connects late is told at once
                    if end_at is None:
                        end_at = now + self.linger
                        self._ended = True
                        self._dump()
                        self._send({"ev": "end"})
                        if self.client is None:
                            end_at = now + self.linger
                    if now >= end_at or (self._ended and self._served_after_end):
                        break
                    timeout = end_at - now
                for key, _ in self.sel.select(timeout):
                    if key.data == "accept":
                        self._accept(listener)
                    else:
                        self._read()
                while k < n and _time.monotonic() >= wall0 + (ts[k] - t0) / 1e9 / self.speed:
                    v = volume[k]
                    tick = Tick(ids[symbol[k]], _at(ts[k]), price[k], None if v != v else int(v))
                    self.sim.on_tick(tick)  # type: ignore[attr-defined]
                    self._send({"ev": "tick", "i": tick.instrument_id, "ns": ts[k], "p": price[k],
                                "v": None if v != v else int(v)})  # fmt: skip
                    k += 1
        finally:
            self.sel.close()
            listener.close()
            if self.socket_path.exists():
                self.socket_path.unlink()

    def _accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        if self.client is not None:
            self._drop()
        conn.setblocking(True)
        self.client = conn
        self.sel.register(conn, selectors.EVENT_READ, "client")
        log.info("[paper] engine connected to the simulator")
        if self._ended:
            self._send({"ev": "end"})

    def _read(self) -> None:
        assert self.client is not None
        try:
            data = self.client.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop()
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            request = _json.loads(line)
            self._send(self._answer(request))

    def _answer(self, request: Mapping[str, object]) -> dict[str, object]:
        sim = self.sim
        op = request.get("op")
        reply: dict[str, object] = {"id": request.get("id")}
        try:
            if op == "place":
                reply["result"] = sim.place_order(order_from_dict(request["order"]))  # type: ignore[attr-defined, arg-type]
            elif op == "cancel":
                sim.cancel_order(str(request["broker_order_id"]))  # type: ignore[attr-defined]
                reply["result"] = None
            elif op == "modify":
                args = dict(request.get("changes") or {})  # type: ignore[arg-type]
                sim.modify_order(str(request["broker_order_id"]), **args)  # type: ignore[attr-defined]
                reply["result"] = None
            elif op == "orders":
                reply["result"] = [order_to_dict(o) for o in sim.orders()]  # type: ignore[attr-defined]
            elif op in ("positions", "holdings"):
                reply["result"] = [_record_to_dict(p) for p in getattr(sim, op)()]
            elif op == "fills":
                reply["result"] = [fill_to_dict(f) for f in sim.fills()]  # type: ignore[attr-defined]
            elif op == "funds":
                f = sim.funds()  # type: ignore[attr-defined]
                reply["result"] = {
                    "cash": f.cash,
                    "used_margin": f.used_margin,
                    "realised_pnl": f.realised_pnl,
                    "charges": f.charges,
                }
            else:
                raise BrokerError(f"unknown simulator request {op!r}")
        except OrderRejected as exc:
            reply.update(error=exc.reason, kind="OrderRejected")
        except Exception as exc:  # noqa: BLE001 - reported to the engine as a broker error
            reply.update(error=f"{type(exc).__name__}: {exc}", kind="BrokerError")
        return reply

    def _dump(self) -> None:
        if self.dump_path is None:
            return
        sim = self.sim
        state = {
            "orders": [order_to_dict(o) for o in sim.orders()],  # type: ignore[attr-defined]
            "fills": [fill_to_dict(f) for f in sim.fills()],  # type: ignore[attr-defined]
            "positions": [_record_to_dict(p) for p in sim.positions()],  # type: ignore[attr-defined]
            "holdings": [_record_to_dict(p) for p in sim.holdings()],  # type: ignore[attr-defined]
        }
        tmp = Path(str(self.dump_path) + ".tmp")
        tmp.write_text(_json.dumps(state))
        tmp.replace(self.dump_path)


def _at(ns: int) -> datetime:
    from velox.feeds import from_ns

    return from_ns(ns)


class PaperLink:
    """Return the engine's side of the simulator server: a Broker and a tick feed in one.

    One reader thread turns the socket's lines into request replies, postbacks (to the
    engine's listener) and ticks (to the feed callback).
    """

    name = "paper"

    def __init__(self, socket_path: Path, *, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(self.socket_path))
        self._listener: object = None
        self._callback = None
        self._pending: dict[int, tuple[threading.Event, list[dict[str, object]]]] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._early: list[Tick] = []
        threading.Thread(target=self._reader, name="velox-paper-link", daemon=True).start()

    # -- Broker protocol ---------------------------------------------------------------------

    def set_listener(self, listener: object) -> None:
        self._listener = listener

    def _request(self, op: str, **fields: object) -> object:
        with self._lock:
            self._ids += 1
            rid = self._ids
            done = threading.Event()
            box: list[dict[str, object]] = []
            self._pending[rid] = (done, box)
            self._sock.sendall(_json.dumps({"id": rid, "op": op, **fields}).encode() + b"\n")
        if not done.wait(self.timeout):
            self._pending.pop(rid, None)
            raise BrokerError(f"simulator did not answer {op!r} within {self.timeout:g} s")
        if not box:
            raise BrokerError(f"lost the simulator connection during {op!r}")
        reply = box[0]
        if "error" in reply:
            if reply.get("kind") == "OrderRejected":
                raise OrderRejected(str(reply["error"]))
            raise BrokerError(str(reply["error"]))
        return reply.get("result")

    def place_order(self, order: Order) -> str:
        return str(self._request("place", order=order_to_dict(order)))

    def modify_order(self, broker_order_id: str, **changes: object) -> None:
        clean = {k: getattr(v, "value", v) for k, v in changes.items() if v is not None}
        self._request("modify", broker_order_id=broker_order_id, changes=clean)

    def cancel_order(self, broker_order_id: str) -> None:
        self._request("cancel", broker_order_id=broker_order_id)

    def orders(self) -> list[Order]:
        return [order_from_dict(o) for o in self._request("orders")]  # type: ignore[union-attr]

    def positions(self) -> list[Position]:
        return [Position(**p) for p in self._request("positions")]  # type: ignore[union-attr, arg-type]

    def holdings(self) -> list[Position]:
        return [Position(**p) for p in self._request("holdings")]  # type: ignore[union-attr, arg-type]

    def fills(self) -> list[Fill]:
        return [fill_from_dict(f) for f in self._request("fills")]  # type: ignore[union-attr]

    def funds(self) -> object:
        from velox.brokers.base import Funds

        return Funds(**self._request("funds"))  # type: ignore[arg-type]

    # -- feed protocol -------------------------------------------------------------------------

    def run(self, callback: Callable[[Tick], object]) -> None:
        """Hand every tick to ``callback`` until the simulator's replay ends."""
        with self._lock:
            early, self._early = self._early, []
            self._callback = callback
        for tick in early:
            callback(tick)
        self._ended.wait()

    def stop(self) -> None:
        self._ended.set()

    def __iter__(self):  # noqa: ANN204 - the Feed protocol's iteration is not used live
        raise TypeError("PaperLink pushes ticks; use run(callback)")

    def _reader(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            for line in stream:
                message = _json.loads(line)
                event = message.get("ev")
                if event is None:
                    entry = self._pending.pop(int(message["id"]), None)
                    if entry is not None:
                        entry[1].append(message)
                        entry[0].set()
                elif event == "tick":
                    v = message["v"]
                    tick = Tick(str(message["i"]), _at(int(message["ns"])), float(message["p"]), v)
                    with self._lock:
                        callback = self._callback
                        if callback is None:
                            self._early.append(tick)
                    if callback is not None:
                        callback(tick)
                elif event == "order" and self._listener is not None:
                    self._listener.on_order_update(order_from_dict(message["order"]))  # type: ignore[attr-defined]
                elif event == "fill" and self._listener is not None:
                    self._listener.on_fill(fill_from_dict(message["fill"]))  # type: ignore[attr-defined]
                elif event == "end":
                    self._ended.set()  # the feed is over; replies may still follow
        except (OSError, ValueError):
            log.exception("[paper] lost the simulator connection")
        finally:
            self._ended.set()
            for done, _ in list(self._pending.values()):
                done.set()

    def close(self) -> None:
        self._sock.close()


def paper_socket(run_id: str) -> Path:
    """Return the default Unix socket of a paper run's simulator (``<data_dir>/paper``)."""
    from velox.config import get_settings

    return get_settings().data_dir / "paper" / f"{run_id}.sock"


def _listening(path: Path) -> bool:
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def start_sim_server(
    subscriptions: Sequence[tuple[str, str]],
    socket_path: Path,
    *,
    speed: float,
    initial_cash: float,
    start: str | None = None,
    end: str | None = None,
    dump_path: Path | None = None,
    wait: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start the simulator server in its own session (it survives the engine) and wait for it."""
    socket_path = Path(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "velox.modes", "--socket", str(socket_path),
           "--speed", str(speed), "--cash", str(initial_cash)]  # fmt: skip
    for iid, tf in subscriptions:
        cmd += ["--bars", f"{iid}@{tf}"]
    if start:
        cmd += ["--start", str(start)]
    if end:
        cmd += ["--end", str(end)]
    if dump_path:
        cmd += ["--dump", str(dump_path)]
    log_file = open(socket_path.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(cmd, stdout=log_file, stderr=log_file, start_new_session=True)
    deadline = _time.monotonic() + wait
    while not _listening(socket_path):
        if process.poll() is not None:
            raise BrokerError(
                f"the paper simulator exited with code {process.returncode}; see "
                f"{socket_path.with_suffix('.log')}"
            )
        if _time.monotonic() > deadline:
            raise BrokerError(f"the paper simulator did not start within {wait:g} s")
        _time.sleep(0.05)
    return process


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
    commands_dir: Path | None = None,
    reconcile_every: float = 60.0,
    dump_path: Path | None = None,
) -> RunResult:
    """Return the result of paper trading: stored bars replayed at ``speed``× wall time.

    The simulator runs in its own process (started here unless one already listens on the
    run's socket, which is how a restarted engine resumes the same run). The audit trail is
    the store's ``order_events``; on start the engine rebuilds orders, fills and positions
    from it, books fills it missed from the simulator and reconciles before trading.
    """
    from velox.config import get_settings
    from velox.engine import FileCommands
    from velox.oms import StoreAuditLog

    if isinstance(strategies, Strategy):
        strategies = [strategies]
    strategies = list(strategies)
    lookup = default_instruments()
    for strategy in strategies:
        for iid in strategy.instruments:
            lookup(iid)
    if store is None:
        from velox.store import open_store

        store = open_store()
    path = Path(socket_path) if socket_path is not None else paper_socket(run_id)
    if _listening(path):
        log.info("[paper] resuming run %s: the simulator is still running", run_id)
    else:
        subs = sorted(
            {(i, tf) for s in strategies for i in s.instruments for tf in s.all_timeframes}
        )
        start_sim_server(subs, path, speed=speed, initial_cash=initial_cash, start=start,
                         end=end, dump_path=dump_path)  # fmt: skip
    link = PaperLink(path)
    commands = FileCommands(
        commands_dir if commands_dir is not None else get_settings().data_dir / "commands",
        account=account,
    )
    engine = Engine(
        strategies,
        broker=link,  # type: ignore[arg-type]
        feed=link,
        instruments=lookup,
        mode="paper",
        initial_cash=initial_cash,
        audit=StoreAuditLog(store, "paper"),
        run_id=run_id,
        risk=RiskEngine(risk_limits if risk_limits is not None else RiskLimits(), account=account),
        reconcile_every=reconcile_every,
        commands=commands,
        restore=True,
    )
    try:
        return engine.run()
    finally:
        link.close()


def _serve(argv: Sequence[str]) -> int:
    """Entry point of the simulator process (``python -m velox.modes …``)."""
    import argparse

    from velox.brokers.sim import SimBroker
    from velox.store import open_store

    parser = argparse.ArgumentParser(prog="velox-paper-simulator")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--cash", type=float, required=True)
    parser.add_argument("--bars", action="append", required=True, help="ID@TIMEFRAME")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--dump")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [paper-sim] %(message)s"
    )
    store = open_store()
    bars = {}
    for item in args.bars:
        iid, _, tf = item.rpartition("@")
        bars[(iid, tf)] = store.read_bars(iid, tf, args.start, args.end)
    sim = SimBroker(default_instruments(), initial_cash=args.cash)
    server = SimServer(
        sim,
        BarReplay(bars),
        Path(args.socket),
        speed=args.speed,
        dump_path=Path(args.dump) if args.dump else None,
    )
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
