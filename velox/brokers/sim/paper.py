"""Paper trading's simulated exchange in a process of its own, and the engine's link to it.

Why a separate process: a broker survives its client's crash. Running the simulator as a small
server (one per paper run, on a Unix socket) gives paper trading exactly that property: ``kill
-9`` of the engine leaves orders working and positions held at the "broker"; the restarted
engine rebuilds its state from the store's audit trail, books the fills it missed from the
simulator, reconciles, and carries on. The simulator also owns the market clock (a stored-bar
replay paced at N× wall time) and streams ticks and postbacks to the engine over the same
socket, in the order it produced them.

The engine sees an ordinary :class:`~velox.brokers.base.Broker` (:class:`PaperBroker`) and an
ordinary market-data feed (:class:`PaperFeed`), two views of one :class:`PaperConnection`:
no ``if paper:`` anywhere. Run the server with ``python -m velox.brokers.sim.paper``.
"""

from __future__ import annotations

import fcntl
import json as _json
import logging
import os
import selectors
import socket
import stat
import subprocess
import sys
import threading
import time as _time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, time
from pathlib import Path

from velox.brokers.base import BrokerListener, Funds, TickMode
from velox.brokers.sim.exchange import SimBroker, SimConfig
from velox.errors import BrokerError, ConfigError, DataError, OrderRejected
from velox.feeds.bar_replay import BarReplay
from velox.types import Fill, Order, Position, Tick

__all__ = [
    "SimServer",
    "PaperConnection",
    "PaperBroker",
    "PaperFeed",
    "PaperVenue",
    "PaperClock",
    "paper_socket",
    "socket_state",
    "claim_socket",
    "release_socket",
    "listening",
    "start_sim_server",
]

log = logging.getLogger(__name__)


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

    With ``replay=None`` the server replays no market of its own: its simulator takes the
    ticks clients send (``quote`` requests), e.g. a broker's live data, and it serves until
    :meth:`stop`.

    Serves one engine at a time on a Unix socket with newline-delimited JSON: requests
    ``{"id", "op", …}`` (``place``, ``cancel``, ``modify``, ``orders``, ``positions``,
    ``holdings``, ``funds``, ``fills``) get ``{"id", "result"}`` or ``{"id", "error", "kind"}``;
    events ``{"ev": "tick" | "order" | "fill" | "end", …}`` stream in production order. Events
    produced while no engine is connected are not queued: a reconnecting engine asks for
    ``orders`` and ``fills`` instead, as it would at a real broker.
    """

    def __init__(
        self,
        broker: SimBroker,
        replay: BarReplay | None,
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
        self._stopping = threading.Event()
        # set once the socket listens: its file exists from bind(), a moment earlier, when a
        # connect is still refused
        self.ready = threading.Event()
        broker.set_listener(self)

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
        marker = claim_socket(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
        except OSError:
            listener.close()
            release_socket(self.socket_path, marker, None)
            raise
        bound = self.socket_path.lstat().st_ino
        listener.listen(4)
        self.ready.set()
        listener.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        r = self.replay
        if r is None:  # the market comes from the client ("quote" requests)
            ids, symbol, ts, price, volume = (), [], [], [], []
        else:
            ids, symbol = r.instrument_ids, r.symbol.tolist()
            ts, price, volume = r.ts_ns.tolist(), r.price.tolist(), r.volume.tolist()
        wall0 = _time.monotonic()
        t0 = ts[0] if ts else 0
        k, n = 0, len(ts)
        end_at: float | None = None
        try:
            while not self._stopping.is_set():
                now = _time.monotonic()
                if r is None:
                    timeout = 0.05
                elif k < n:
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
                    self.sim.on_tick(tick)
                    self._send({"ev": "tick", "i": tick.instrument_id, "ns": ts[k], "p": price[k],
                                "v": None if v != v else int(v)})  # fmt: skip
                    k += 1
        finally:
            self.sel.close()
            listener.close()
            release_socket(self.socket_path, marker, bound)

    def stop(self) -> None:
        """End :meth:`serve` within 50 ms (any thread)."""
        self._stopping.set()

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
                reply["result"] = sim.place_order(order_from_dict(request["order"]))
            elif op == "cancel":
                sim.cancel_order(str(request["broker_order_id"]))
                reply["result"] = None
            elif op == "modify":
                args = dict(request.get("changes") or {})  # type: ignore[arg-type]
                sim.modify_order(str(request["broker_order_id"]), **args)
                reply["result"] = None
            elif op == "orders":
                reply["result"] = [order_to_dict(o) for o in sim.orders()]
            elif op in ("positions", "holdings"):
                reply["result"] = [_record_to_dict(p) for p in getattr(sim, op)()]
            elif op == "fills":
                reply["result"] = [fill_to_dict(f) for f in sim.fills()]
            elif op == "quote":  # market input when the server replays no market itself
                v = request.get("volume")
                sim.on_quote(
                    str(request["instrument_id"]), _at(int(request["ns"])),  # type: ignore[arg-type]
                    float(request["price"]), None if v is None else int(v),  # type: ignore[arg-type]
                )  # fmt: skip
                reply["result"] = None
            elif op == "at":  # the engine's time, before its order (a live market's clock)
                sim.on_clock(_at(int(request["ns"])))  # type: ignore[call-overload]
                reply["result"] = None
            elif op == "shutdown":  # the engine finished the run: dump and exit
                self._dump()
                self._stopping.set()
                reply["result"] = None
            elif op == "clock":  # the market's time: the last replayed tick's (epoch ns)
                reply["result"] = self._market_ns()
            elif op == "funds":
                f = sim.funds()
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

    def _market_ns(self) -> int:
        """Return the market's current time: the simulator's (its latest tick), else the
        replay's first tick (nothing replayed yet), else the wall clock (a live market)."""
        now = self.sim.now  # a property
        if now is not None:
            return _to_ns(now)
        r = self.replay
        if r is not None and len(r.ts_ns):
            return int(r.ts_ns[0])
        return _time.time_ns()

    def _dump(self) -> None:
        if self.dump_path is None:
            return
        sim = self.sim
        state = {
            "orders": [order_to_dict(o) for o in sim.orders()],
            "fills": [fill_to_dict(f) for f in sim.fills()],
            "positions": [_record_to_dict(p) for p in sim.positions()],
            "holdings": [_record_to_dict(p) for p in sim.holdings()],
        }
        tmp = Path(str(self.dump_path) + ".tmp")
        tmp.write_text(_json.dumps(state))
        tmp.replace(self.dump_path)


def _at(ns: int) -> datetime:
    from velox.feeds import from_ns

    return from_ns(ns)


def _to_ns(ts: datetime) -> int:
    from velox.feeds import to_ns

    return to_ns(ts)


class PaperConnection:
    """Return the engine's connection to a simulator server (one socket, one reader thread).

    The reader turns the socket's lines into request replies, postbacks (to the broker
    listener) and ticks (to the feed callback). :class:`PaperBroker` and :class:`PaperFeed` are
    the two views the engine uses.
    """

    def __init__(self, socket_path: Path, *, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(self.socket_path))
        self.listener: BrokerListener | None = None
        self._callback: Callable[[Tick], object] | None = None
        self._pending: dict[int, tuple[threading.Event, list[dict[str, object]]]] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self.ended = threading.Event()
        self.market_ns = 0  # the latest tick's time (UTC epoch ns) read from the socket
        self._early: list[Tick] = []
        threading.Thread(target=self._reader, name="velox-paper-link", daemon=True).start()

    def request(self, op: str, **fields: object) -> object:
        """Send one request and return its result (raising what the simulator raised)."""
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

    def notify(self, op: str, **fields: object) -> None:
        """Send one request without waiting for its answer (id 0: the reader logs a failure).

        For the market input of a simulator on live data (``quote``, ``at``): a round trip per
        tick would hold the engine for the simulator's answer; the socket keeps the order.
        """
        with self._lock:
            self._sock.sendall(_json.dumps({"id": 0, "op": op, **fields}).encode() + b"\n")

    def stream(self, callback: Callable[[Tick], object]) -> None:
        """Hand every tick to ``callback`` until the simulator's replay ends."""
        with self._lock:
            early, self._early = self._early, []
            self._callback = callback
        for tick in early:
            callback(tick)
        self.ended.wait()

    def _reader(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            for line in stream:
                message = _json.loads(line)
                event = message.get("ev")
                if event is None:
                    if message.get("id") == 0:  # a notify: nobody waits for the answer
                        if "error" in message:
                            log.warning("[paper] the simulator refused %s", message["error"])
                        continue
                    entry = self._pending.pop(int(message["id"]), None)
                    if entry is not None:
                        entry[1].append(message)
                        entry[0].set()
                elif event == "tick":
                    v = message["v"]
                    self.market_ns = max(self.market_ns, int(message["ns"]))
                    tick = Tick(str(message["i"]), _at(self.market_ns), float(message["p"]), v)
                    with self._lock:
                        callback = self._callback
                        if callback is None:
                            self._early.append(tick)
                    if callback is not None:
                        callback(tick)
                elif event == "order" and self.listener is not None:
                    self.listener.on_order_update(order_from_dict(message["order"]))
                elif event == "fill" and self.listener is not None:
                    self.listener.on_fill(fill_from_dict(message["fill"]))
                elif event == "end":
                    self.ended.set()  # the feed is over; replies may still follow
        except (OSError, ValueError):
            log.exception("[paper] lost the simulator connection")
        finally:
            self.ended.set()
            for done, _ in list(self._pending.values()):
                done.set()

    def close(self) -> None:
        self._sock.close()


class PaperBroker:
    """The :class:`~velox.brokers.base.Broker` of a paper run: requests to the simulator server.

    Not a :class:`~velox.brokers.base.SimulatedVenue`: the server hands its simulator the
    market itself, as a real broker's exchange would.
    """

    name = "paper"
    capabilities = SimBroker.capabilities

    def __init__(self, connection: PaperConnection) -> None:
        self.connection = connection

    def set_listener(self, listener: BrokerListener) -> None:
        self.connection.listener = listener

    def place_order(self, order: Order) -> str:
        return str(self.connection.request("place", order=order_to_dict(order)))

    def modify_order(self, broker_order_id: str, **changes: object) -> None:
        clean = {k: getattr(v, "value", v) for k, v in changes.items() if v is not None}
        self.connection.request("modify", broker_order_id=broker_order_id, changes=clean)

    def cancel_order(self, broker_order_id: str) -> None:
        self.connection.request("cancel", broker_order_id=broker_order_id)

    def orders(self) -> list[Order]:
        return [order_from_dict(o) for o in self.connection.request("orders")]  # type: ignore[union-attr]

    def fills(self) -> list[Fill]:
        return [fill_from_dict(f) for f in self.connection.request("fills")]  # type: ignore[union-attr]

    def positions(self) -> list[Position]:
        return [Position(**p) for p in self.connection.request("positions")]  # type: ignore[union-attr, arg-type]

    def holdings(self) -> list[Position]:
        return [Position(**p) for p in self.connection.request("holdings")]  # type: ignore[union-attr, arg-type]

    def funds(self) -> Funds:
        return Funds(**self.connection.request("funds"))  # type: ignore[arg-type]


class PaperVenue(PaperBroker):
    """The simulator server as the dry-run venue of live market data (no replay of its own).

    A :class:`~velox.brokers.base.SimulatedVenue`: the engine hands it the live ticks of the
    instruments it watches and its time before each order, as it would an in-process
    :class:`~velox.brokers.sim.SimBroker`, while the simulated account lives in the server's
    process and survives an engine crash. Start the server with no ``--bars``.
    """

    name = "dry-run"
    watched = staticmethod(SimBroker.watched)

    def on_quote(
        self,
        instrument_id: str,
        ts: datetime,
        price: float,
        volume: int | None = None,
        epoch: float | None = None,
    ) -> None:
        ns = _to_ns(ts) if epoch is None else round(epoch * 1e6) * 1000
        self.connection.notify("quote", instrument_id=instrument_id, ns=ns, price=price,
                               volume=None if volume is None else int(volume))  # fmt: skip

    def on_clock(self, now: datetime, epoch: float | None = None) -> None:
        self.connection.notify("at", ns=_to_ns(now) if epoch is None else round(epoch * 1e6) * 1000)

    def shutdown(self) -> None:
        """Tell the server the run is over (it writes its dump and exits)."""
        self.connection.request("shutdown")


class PaperClock:
    """The :class:`~velox.feeds.Clock` of a paper run: the simulated market's time.

    Read from the server once (its replay may have run on while no engine was connected: a
    restarted engine's catch-up happens at the market's time of the restart), then from the
    ticks as they arrive. The market's time is the server's to move: :meth:`advance_to` does
    nothing.
    """

    def __init__(self, connection: PaperConnection) -> None:
        self.connection = connection
        self._start_ns = int(connection.request("clock"))  # type: ignore[call-overload]

    def now_ns(self) -> int:
        """Return the market's time (UTC epoch ns): the latest tick's, or the server's."""
        return max(self._start_ns, self.connection.market_ns)

    def now(self) -> datetime:
        """Return the market's time as an IST datetime."""
        return _at(self.now_ns())

    def advance_to(self, ts_ns: int) -> None:
        """Nothing to do: the server paces the market."""


class PaperFeed:
    """The :class:`~velox.brokers.base.MarketData` of a paper run: the server's paced ticks.

    The server replays every instrument the run subscribed to when it was started, so
    :meth:`subscribe` only checks that an instrument is among them.
    """

    name = "paper"

    def __init__(self, connection: PaperConnection, instrument_ids: Collection[str]) -> None:
        self.connection = connection
        self.instrument_ids = frozenset(instrument_ids)

    def subscribe(self, instrument_ids: Collection[str], mode: TickMode = TickMode.QUOTE) -> None:
        missing = sorted(set(instrument_ids) - self.instrument_ids)
        if missing:
            raise DataError(
                f"the paper simulator replays {', '.join(sorted(self.instrument_ids))}, not "
                f"{', '.join(missing)}: start a new paper run with those instruments"
            )

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        """Nothing to do: the server's replay is fixed when it starts."""

    def run(self, callback: Callable[[Tick], object]) -> None:
        self.connection.stream(callback)

    def stop(self) -> None:
        self.connection.ended.set()


def paper_socket(run_id: str) -> Path:
    """Return the default Unix socket of a paper run's simulator (``<data_dir>/paper``)."""
    from velox.config import get_settings

    return get_settings().data_dir / "paper" / f"{run_id}.sock"


#: First bytes of the marker file ``<socket>.lock`` beside every simulator socket: it tells a
#: socket Velox created (and may replace once stale) from anyone else's file.
_MARKER_TAG = b"velox paper simulator"


def _marker(path: Path) -> Path:
    return Path(f"{path}.lock")


def socket_state(path: Path) -> str:
    """Return what is at a simulator socket path: ``"absent"``, ``"live"`` or ``"stale"``.

    A path Velox may use is free, or a socket with Velox's marker file ``<path>.lock`` beside
    it; the marker is locked (``flock``) for as long as its simulator serves, so ``"live"``
    means a simulator serves there and ``"stale"`` that its server died (``kill -9``) and the
    socket may be replaced. Anything else (a regular file, a directory, a socket of another
    program, a marker that is not Velox's) is never touched: :class:`~velox.errors.ConfigError`
    names it.
    """
    path = Path(path)
    marker = _marker(path)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISSOCK(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a socket"
        raise ConfigError(
            f"--socket {path} exists and is {kind}: Velox only replaces a simulator socket it "
            "created; choose a path that does not exist"
        )
    try:
        with open(marker, "rb") as handle:  # noqa: PTH123 - flock needs the descriptor
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode) or not handle.read(
                len(_MARKER_TAG)
            ).startswith(_MARKER_TAG):
                raise ConfigError(
                    f"{marker} is not a Velox simulator's marker file: refusing to use --socket "
                    f"{path}; choose another path"
                )
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return "live" if mode is not None else "absent"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except FileNotFoundError:
        if mode is not None:
            raise ConfigError(
                f"--socket {path} is a socket Velox did not create (no {marker.name} beside "
                "it): refusing to remove it; choose another path"
            ) from None
        return "absent"
    return "stale" if mode is not None else "absent"


def claim_socket(path: Path) -> int:
    """Take a simulator socket path for this process; return the locked marker's descriptor.

    Removes a stale Velox socket (see :func:`socket_state`), refuses a path a live simulator
    serves (:class:`~velox.errors.BrokerError`) and anything Velox did not create
    (:class:`~velox.errors.ConfigError`). The lock is held until :func:`release_socket` or
    the process's death, which is what makes a socket stale.
    """
    path = Path(path)
    state = socket_state(path)
    if state == "live":
        raise BrokerError(f"a paper simulator already serves {path}")
    fd = os.open(_marker(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BrokerError(f"a paper simulator already serves {path}") from None
    try:
        if state == "stale":  # its server is dead (the lock is ours now): replace the socket
            path.unlink(missing_ok=True)
        os.ftruncate(fd, 0)
        os.write(fd, _MARKER_TAG + f" pid {os.getpid()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_socket(path: Path, marker: int, inode: int | None) -> None:
    """Remove the socket this process bound (``inode``) and its marker, then unlock."""
    try:
        if inode is not None and path.lstat().st_ino == inode:
            path.unlink()
        _marker(path).unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    finally:
        os.close(marker)


def listening(path: Path) -> bool:
    """Return True if a simulator server answers on ``path``."""
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
    square_off: time | None = None,
    wait: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start the simulator server in its own session (it survives the engine) and wait for it.

    ``square_off`` is the MIS square-off time (IST) the simulator uses; by default the engine's
    ``mis_square_off`` setting, passed on the command line so the simulator acts on the
    engine's configuration whatever its own environment.
    """
    socket_path = Path(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "velox.brokers.sim.paper", "--socket", str(socket_path),
           "--speed", str(speed), "--cash", str(initial_cash)]  # fmt: skip
    for iid, tf in subscriptions:
        cmd += ["--bars", f"{iid}@{tf}"]
    if start:
        cmd += ["--start", str(start)]
    if end:
        cmd += ["--end", str(end)]
    if dump_path:
        cmd += ["--dump", str(dump_path)]
    if square_off is None:
        from velox.config import get_settings

        square_off = get_settings().square_off_time
    cmd += ["--square-off", square_off.strftime("%H:%M")]
    log_file = open(socket_path.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(cmd, stdout=log_file, stderr=log_file, start_new_session=True)
    deadline = _time.monotonic() + wait
    while not listening(socket_path):
        if process.poll() is not None:
            raise BrokerError(
                f"the paper simulator exited with code {process.returncode}; see "
                f"{socket_path.with_suffix('.log')}"
            )
        if _time.monotonic() > deadline:
            raise BrokerError(f"the paper simulator did not start within {wait:g} s")
        _time.sleep(0.05)
    return process


def _time_of(text: str) -> time:
    return datetime.strptime(text, "%H:%M").time()


def _serve(argv: Sequence[str]) -> int:
    """Entry point of the simulator process (``python -m velox.brokers.sim.paper …``)."""
    import argparse

    from velox.modes import default_instruments
    from velox.store import open_store

    parser = argparse.ArgumentParser(prog="velox-paper-simulator")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--cash", type=float, required=True)
    parser.add_argument(
        "--bars", action="append", default=[], help="ID@TIMEFRAME (none: a live market)"
    )
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--dump")
    parser.add_argument("--square-off", help="MIS square-off HH:MM IST (default: the setting)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [paper-sim] %(message)s"
    )
    store = open_store() if args.bars else None
    bars = {}
    for item in args.bars:
        iid, _, tf = item.rpartition("@")
        bars[(iid, tf)] = store.read_bars(iid, tf, args.start, args.end)  # type: ignore[union-attr]
    config = SimConfig(square_off_time=_time_of(args.square_off)) if args.square_off else None
    sim = SimBroker(default_instruments(), initial_cash=args.cash, config=config)
    server = SimServer(
        sim,
        BarReplay(bars) if bars else None,
        Path(args.socket),
        speed=args.speed,
        dump_path=Path(args.dump) if args.dump else None,
    )
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
