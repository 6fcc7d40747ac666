"""Kite's live tick feed: the official ``KiteTicker`` in a child process, decoded by Velox.

:class:`KiteMarketData` implements :class:`velox.brokers.base.MarketData` for Zerodha.

Why a child process: ``KiteTicker`` runs on Twisted's reactor, which cannot be restarted inside
one process, so a feed that stopped (or a second session in a notebook) would need a new
interpreter anyway. The child (``python -m velox.brokers.kite.ticker``) runs the SDK with its
own reconnects (``reconnect=True``) and does no decoding: it forwards every websocket message to
the parent over a pipe, and the parent decodes binary frames with Velox's fast decoder
(:mod:`velox.brokers.kite._packets`, ~10× the SDK's parser) off the engine's thread. If the
child dies, the parent starts a new one with backoff and the same subscriptions.

The child-process protocol
--------------------------
Parent → child, on the child's stdin, newline-delimited JSON. The first line is the session::

    {"api_key": "...", "access_token": "...", "root": "wss://ws.kite.trade",
     "reconnect_max_tries": 50, "reconnect_max_delay": 60, "connect_timeout": 30,
     "subscriptions": {"738561": "full", ...}}

(credentials travel only here: never in argv, the environment or a log line), then commands::

    {"op": "subscribe", "tokens": [738561], "mode": "full"}
    {"op": "mode", "tokens": [738561], "mode": "ltp"}
    {"op": "unsubscribe", "tokens": [738561]}

A closed stdin (the parent gone) ends the child. The child keeps the subscription set and sends
it all (subscribe, then one set-mode per mode) on every connect, the first and each reconnect.

Child → parent, on the child's stdout, records ``kind (1 byte) | length (4 bytes, big-endian)
| payload``:

=====  ==========================================================================
kind   payload
=====  ==========================================================================
``B``  a binary websocket frame, behind the receive time (8-byte big-endian double,
       epoch seconds): ltp and quote packets carry no time of their own
``T``  a text websocket message as received (``{"type": "order", "data": …}``,
       ``{"type": "error", "data": …}``)
``E``  a connection event, JSON: ``{"event": "connect" | "close" | "error" |
       "reconnect" | "noreconnect", "t": epoch, ...}``
``L``  a log record of the child, JSON ``{"level", "name", "message"}`` (the access
       token redacted), logged by the parent under its own logger
=====  ==========================================================================

Gaps
----
A lost connection becomes ``ConnectionEvent(DISCONNECTED)``; the next connect becomes
``ConnectionEvent(CONNECTED, detail="reconnected after a 2.4 s gap ...")`` so the engine (and a
reader of its alerts) knows how long ticks were missing. Kite does not replay missed ticks;
candles of the gap are built from the ticks that did arrive (cumulative volume keeps the
volumes right). ``RECONNECTING`` events report the SDK's retry attempts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from velox.brokers.base import ConnectionEvent, ConnectionState, TickMode
from velox.brokers.kite._packets import DecodeStats, FrameError, TickDecoder
from velox.calendar import IST
from velox.errors import DataError, VeloxError
from velox.types import Tick

if TYPE_CHECKING:
    from velox.instruments import InstrumentMaster

__all__ = [
    "KiteMarketData",
    "MAX_INSTRUMENTS",
    "ROOT",
    "RECORD",
    "BINARY",
    "TEXT",
    "EVENT",
    "LOG",
    "encode_record",
    "RecordReader",
]

log = logging.getLogger(__name__)
child_log = logging.getLogger(__name__ + ".child")

#: Kite's production ticker endpoint (the SDK's default).
ROOT = "wss://ws.kite.trade"

#: Record header on the child → parent pipe: kind, payload length.
RECORD = struct.Struct(">cI")
_RECEIVED = struct.Struct(">d")
BINARY, TEXT, EVENT, LOG = b"B", b"T", b"E", b"L"

#: Kite's mode names for Velox's tick modes.
_KITE_MODE = {TickMode.LTP: "ltp", TickMode.QUOTE: "quote", TickMode.FULL: "full"}

#: Instruments one ticker connection may subscribe (Kite's limit; 3 connections per api_key).
MAX_INSTRUMENTS = 3000

#: Exit code of a child whose SDK gave up reconnecting (the parent starts a new one).
_GAVE_UP = 3


def encode_record(kind: bytes, payload: bytes) -> bytes:
    """Return one child → parent record (header and payload)."""
    return RECORD.pack(kind, len(payload)) + payload


class RecordReader:
    """Split the child's byte stream into ``(kind, payload)`` records, across reads.

    Examples
    --------
    >>> reader = RecordReader()
    >>> data = encode_record(TEXT, b"hi") + encode_record(EVENT, b"{}")
    >>> reader.feed(data[:4]), reader.feed(data[4:])
    ([], [(b'T', b'hi'), (b'E', b'{}')])
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Return the records completed by ``data`` (a partial one waits for the next feed)."""
        buffer = self._buffer
        buffer += data
        out = []
        size = len(buffer)
        position = 0
        header = RECORD.size
        unpack = RECORD.unpack_from
        while size - position >= header:
            kind, length = unpack(buffer, position)
            end = position + header + length
            if end > size:
                break
            out.append((kind, bytes(buffer[position + header : end])))
            position = end
        if position:
            del buffer[:position]
        return out

    @property
    def pending(self) -> int:
        """Return how many bytes wait for the rest of their record."""
        return len(self._buffer)


def _now() -> datetime:
    return datetime.now(IST)


class KiteMarketData:
    """Zerodha's live ticks as a :class:`velox.brokers.base.MarketData`.

    Parameters
    ----------
    api_key, access_token
        The Kite Connect session (``velox broker login kite`` makes one). They reach the child
        on its stdin only.
    root
        The ticker's websocket URL (``ws://127.0.0.1:N/ws`` for ``velox sim kite``).
    instruments
        Where instrument ids find their Kite tokens: an :class:`~velox.instruments.InstrumentMaster`
        (its ``kite_token`` column) or a plain ``{id: token}`` mapping. Default: the bundled
        master (:func:`velox.instruments.load_bundled_master`), loaded on the first subscribe.
    on_order_update
        Called with each order update the ticker pushes (Kite's raw order dict, as ``GET
        /orders`` returns it), from :meth:`run`'s thread, in arrival order with the ticks. The
        Kite adapter maps it to a Velox order; it may also be set as an attribute.
    restart_delay, max_restart_delay
        Backoff before restarting a child that died: doubles from ``restart_delay`` up to
        ``max_restart_delay`` seconds, back to the start after a child connected.
    reconnect_max_tries, reconnect_max_delay, connect_timeout
        Passed to ``KiteTicker`` (its own reconnects inside the child).
    python
        The interpreter for the child (default: this one).

    Notes
    -----
    :meth:`run` blocks the calling thread (the feed's thread, not the engine's): it starts the
    child, decodes its frames and hands ``callback`` every :class:`~velox.types.Tick` and
    :class:`~velox.brokers.base.ConnectionEvent` in arrival order. :meth:`subscribe`,
    :meth:`unsubscribe` and :meth:`stop` may be called from any thread, before or during
    :meth:`run`. After :meth:`stop` the feed is finished: make a new one to start again.

    Examples
    --------
    >>> feed = KiteMarketData("api_key", "access_token", instruments={"NSE:RELIANCE": 738561})
    >>> feed.subscribe(["NSE:RELIANCE"], TickMode.FULL)
    >>> feed.subscriptions
    {'NSE:RELIANCE': <TickMode.FULL: 'full'>}
    >>> feed.subscribe(["NSE:NOPE"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    velox.errors.DataError: Kite has no instrument token for 'NSE:NOPE': it is not among ...
    """

    name = "kite"

    def __init__(
        self,
        api_key: str,
        access_token: str,
        *,
        root: str = ROOT,
        instruments: InstrumentMaster | Mapping[str, int] | None = None,
        on_order_update: Callable[[dict[str, object]], object] | None = None,
        restart_delay: float = 0.5,
        max_restart_delay: float = 30.0,
        reconnect_max_tries: int = 50,
        reconnect_max_delay: int = 60,
        connect_timeout: int = 30,
        python: str | None = None,
    ) -> None:
        self._session = {
            "api_key": api_key,
            "access_token": access_token,
            "root": root,
            "reconnect_max_tries": reconnect_max_tries,
            "reconnect_max_delay": reconnect_max_delay,
            "connect_timeout": connect_timeout,
        }
        self.root = root
        self.on_order_update = on_order_update
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self._python = python or sys.executable
        self._instruments = instruments
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._running = False
        self._child: subprocess.Popen[bytes] | None = None
        self._ids: dict[int, str] = {}  # token → id: the decoder reads it live
        self._modes: dict[int, TickMode] = {}  # token → mode
        self._full: set[int] = set()  # tokens subscribed in full mode (the decoder reads it)
        self._decoder = TickDecoder(self._ids, full_tokens=self._full)
        self._state = ConnectionState.DISCONNECTED
        self._down_since: float | None = None  # epoch of the last disconnect
        self._ever_connected = False
        self.restarts = 0

    # ---- subscriptions ---------------------------------------------------------------------

    def _token(self, instrument_id: str) -> int:
        """Return the Kite token of ``instrument_id`` or raise DataError naming it."""
        source = self._instruments
        if source is None:
            from velox.instruments import load_bundled_master

            source = self._instruments = load_bundled_master()
        if isinstance(source, Mapping):
            token = source.get(instrument_id)
            if token is None:
                raise DataError(
                    f"Kite has no instrument token for {instrument_id!r}: it is not among the "
                    f"{len(source)} instruments this feed was given"
                )
            return int(token)
        try:
            row = source.row(instrument_id)
        except VeloxError as exc:
            raise DataError(f"Kite has no instrument token for {instrument_id!r}: {exc}") from exc
        token = row["kite_token"]
        if token is None or token != token or str(token) == "<NA>":
            raise DataError(
                f"Kite has no instrument token for {instrument_id!r}: the instrument master has "
                f"it from another broker only; refresh the master from Kite (the adapter's "
                f"instrument download) to trade it here"
            )
        return int(token)

    @property
    def subscriptions(self) -> dict[str, TickMode]:
        """Return the subscribed instrument ids and their modes."""
        with self._lock:
            return {self._ids[t]: mode for t, mode in self._modes.items()}

    def subscribe(self, instrument_ids: Collection[str], mode: TickMode = TickMode.QUOTE) -> None:
        """Start ticks of ``instrument_ids`` in ``mode`` (a subscribed id changes mode).

        Raises :class:`~velox.errors.DataError` naming an id Kite has no token for; nothing is
        subscribed then.
        """
        mode = TickMode(mode)
        tokens = {self._token(iid): iid for iid in instrument_ids}
        if not tokens:
            return
        with self._lock:
            total = len(self._modes.keys() | tokens.keys())
            if total > MAX_INSTRUMENTS:
                raise DataError(
                    f"Kite's ticker takes at most {MAX_INSTRUMENTS} instruments a connection; this "
                    f"subscribe would make {total}: unsubscribe some, or run a second "
                    f"KiteMarketData (Kite allows 3 ticker connections per api_key)"
                )
            self._ids.update(tokens)
            for token in tokens:
                self._modes[token] = mode
                if mode is TickMode.FULL:
                    self._full.add(token)
                else:
                    self._full.discard(token)
            self._send({"op": "subscribe", "tokens": sorted(tokens), "mode": _KITE_MODE[mode]})

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        """Stop ticks of ``instrument_ids`` (ids not subscribed are ignored).

        Ticks of them already in flight are dropped here, so none reaches the callback after
        this returns.
        """
        with self._lock:
            by_id = {iid: t for t, iid in self._ids.items()}
            tokens = sorted(by_id[iid] for iid in set(instrument_ids) if iid in by_id)
            if not tokens:
                return
            for token in tokens:
                del self._ids[token], self._modes[token]
                self._full.discard(token)
            self._send({"op": "unsubscribe", "tokens": tokens})

    # ---- the child -------------------------------------------------------------------------

    def _send(self, command: dict[str, object]) -> None:
        """Write ``command`` to the running child (a dead one gets everything on restart)."""
        child = self._child
        if child is None or child.stdin is None or child.poll() is not None:
            return
        try:
            child.stdin.write(json.dumps(command).encode() + b"\n")
            child.stdin.flush()
        except (OSError, ValueError):  # the child is dying: its successor gets the whole set
            log.debug("kite ticker child gone before a command: %s", command["op"])

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        """Start a child with the session and the current subscriptions (None if stopping)."""
        package_root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        with self._lock:
            if self._stopping.is_set():
                return None
            child = subprocess.Popen(
                [self._python, "-m", "velox.brokers.kite.ticker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                bufsize=0,
                # its own session: a Ctrl-C at the terminal is the parent's to handle (it stops
                # the feed); the child ends when the parent kills it or its stdin closes
                start_new_session=True,
            )
            session = dict(self._session)
            session["subscriptions"] = {str(t): _KITE_MODE[m] for t, m in self._modes.items()}
            assert child.stdin is not None
            try:
                child.stdin.write(json.dumps(session).encode() + b"\n")
                child.stdin.flush()
            except OSError:
                log.warning("kite ticker child exited before it took the session")
            self._child = child
            return child

    @property
    def child_pid(self) -> int | None:
        """Return the process id of the running ticker child (None if there is none)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    @property
    def stats(self) -> DecodeStats:
        """Return the decoder's counters (frames, ticks, malformed frames, unknown tokens)."""
        return self._decoder.stats

    def _kill(self) -> None:
        """Kill and reap the child (run's thread), then close its pipes and forget it."""
        with self._lock:
            child = self._child
        if child is None:
            return
        if child.poll() is None:
            child.kill()
        child.wait()
        with self._lock:  # _send writes stdin under this lock: never into a closed pipe
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            if self._child is child:
                self._child = None

    def update_access_token(self, access_token: str) -> None:
        """Use a new access token (Kite's expire about 06:00 IST): the child restarts with it.

        The restart is reported like any other gap (DISCONNECTED, then CONNECTED).
        """
        with self._lock:
            self._session["access_token"] = access_token
            child = self._child
            if child is not None and child.poll() is None:
                child.kill()

    # ---- run / stop ------------------------------------------------------------------------

    def run(self, callback: Callable[[Tick | ConnectionEvent], object]) -> None:
        """Deliver ticks and connection events to ``callback`` until :meth:`stop`.

        A child that dies is restarted (with backoff) with the current subscriptions; the gap
        is reported as DISCONNECTED, then CONNECTED once the new child is connected. Exceptions
        from ``callback`` or ``on_order_update`` are logged, never end the feed.
        """
        with self._lock:
            if self._running:
                raise RuntimeError("KiteMarketData.run is already running (one run per feed)")
            self._running = True
        delay = self.restart_delay
        try:
            while not self._stopping.is_set():
                child = self._spawn()
                if child is None:
                    break
                connected = self._pump(child, callback)
                self._kill()
                if self._stopping.is_set():
                    break
                self.restarts += 1
                delay = self.restart_delay if connected else delay
                self._lost(
                    callback,
                    f"ticker process exited (code {child.returncode}); restarting in {delay:.1f} s",
                )
                if self._stopping.wait(delay):
                    break
                delay = min(delay * 2, self.max_restart_delay)
        finally:
            self._kill()
            with self._lock:
                self._running = False

    def stop(self) -> None:
        """End :meth:`run` promptly (any thread): the child is killed, run returns."""
        self._stopping.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.kill()  # run's thread sees the end of its pipe, reaps it and returns

    def _pump(self, child: subprocess.Popen[bytes], callback: Callable[..., object]) -> bool:
        """Handle the child's records until it exits; return whether it ever connected."""
        assert child.stdout is not None
        fd = child.stdout.fileno()
        reader = RecordReader()
        connected = False
        decode = self._decoder.decode
        unpack = _RECEIVED.unpack_from
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except OSError:
                data = b""
            if not data:
                return connected
            for kind, payload in reader.feed(data):
                if kind == BINARY:
                    try:
                        ticks = decode(memoryview(payload)[8:], unpack(payload)[0])
                    except (FrameError, struct.error) as exc:
                        log.warning("kite ticker: skipped a malformed frame: %s", exc)
                        continue
                    for tick in ticks:
                        try:
                            callback(tick)
                        except Exception:
                            log.exception("kite ticker: the tick callback raised on %r", tick)
                elif kind == TEXT:
                    self._text(payload)
                elif kind == EVENT:
                    connected |= self._event(payload, callback)
                elif kind == LOG:
                    self._child_log(payload)
                else:
                    log.warning("kite ticker: unknown record kind %r from the child", kind)

    def _emit(self, callback: Callable[..., object], event: ConnectionEvent) -> None:
        try:
            callback(event)
        except Exception:
            log.exception("kite ticker: the callback raised on %r", event)

    def _lost(self, callback: Callable[..., object], detail: str, at: float | None = None) -> None:
        """Report a lost connection once (a close and a child's death are one loss)."""
        if self._state is ConnectionState.DISCONNECTED:
            return
        self._state = ConnectionState.DISCONNECTED
        self._down_since = time.time() if at is None else at
        self._emit(
            callback, ConnectionEvent(self.name, ConnectionState.DISCONNECTED, _now(), detail)
        )

    def _event(self, payload: bytes, callback: Callable[..., object]) -> bool:
        """Turn a child's connection event into a ConnectionEvent; True for a connect."""
        try:
            event = json.loads(payload)
            kind = event["event"]
            at = float(event.get("t", time.time()))
        except (ValueError, KeyError, TypeError):
            log.warning("kite ticker: unreadable event from the child: %r", payload[:200])
            return False
        if kind == "connect":
            if self._down_since is not None and self._ever_connected:
                gap = max(0.0, at - self._down_since)
                down = datetime.fromtimestamp(self._down_since, IST).strftime("%H:%M:%S")
                detail = f"reconnected after a {gap:.1f} s gap (disconnected at {down} IST)"
            else:
                detail = f"connected to {self.root}"
            self._state = ConnectionState.CONNECTED
            self._ever_connected = True
            self._down_since = None
            self._emit(
                callback, ConnectionEvent(self.name, ConnectionState.CONNECTED, _now(), detail)
            )
            return True
        if kind == "close":
            detail = (
                f"connection closed ({event.get('code')}: {event.get('reason') or 'no reason'})"
            )
            self._lost(callback, detail, at)
        elif kind == "error":
            # the SDK's own log line of it reaches the parent as a warning already
            log.debug(
                "kite ticker: connection error %s: %s", event.get("code"), event.get("reason")
            )
        elif kind == "reconnect":
            self._emit(
                callback,
                ConnectionEvent(
                    self.name,
                    ConnectionState.RECONNECTING,
                    _now(),
                    f"reconnect attempt {event.get('attempt')}",
                ),
            )
        elif kind == "noreconnect":
            log.error("kite ticker: the SDK gave up reconnecting; starting a new ticker process")
        return False

    def _text(self, payload: bytes) -> None:
        """Hand an order update to ``on_order_update``; log an error message."""
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("kite ticker: unreadable text message: %r", payload[:200])
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        data = message.get("data")
        if kind == "order" and isinstance(data, dict):
            handler = self.on_order_update
            if handler is None:
                log.debug("kite ticker: order update with no on_order_update set")
                return
            try:
                handler(data)
            except Exception:
                log.exception(
                    "kite ticker: on_order_update raised on order %s", data.get("order_id")
                )
        elif kind == "error":
            log.warning("kite ticker: error from Kite: %s", data)
        else:
            log.debug("kite ticker: text message of type %r ignored", kind)

    def _child_log(self, payload: bytes) -> None:
        try:
            record = json.loads(payload)
            level = int(record["level"])
            name = str(record["name"])
            message = str(record["message"])
        except (ValueError, KeyError, TypeError):
            return
        if name.startswith("kiteconnect"):  # its reconnect chatter is reported as events
            level = min(level, logging.WARNING)
        child_log.log(level, "%s: %s", name, message)


# ---- the child process ----------------------------------------------------------------------


class _Writer:
    """The child's side of the pipe: whole records, one writer at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def write(self, kind: bytes, payload: bytes) -> None:
        data = memoryview(encode_record(kind, payload))
        with self._lock:
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except BrokenPipeError:  # the parent is gone: nobody to feed
                os._exit(0)

    def event(self, event: str, **fields: object) -> None:
        self.write(EVENT, json.dumps({"event": event, "t": time.time(), **fields}).encode())


class _PipeLogHandler(logging.Handler):
    """Send the child's log records to the parent, with the secrets blanked out."""

    def __init__(self, writer: _Writer, secrets: Collection[str]) -> None:
        super().__init__(logging.INFO)
        self._writer = writer
        self._secrets = [s for s in secrets if s]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, "***")
            payload = {"level": record.levelno, "name": record.name, "message": message}
            self._writer.write(LOG, json.dumps(payload).encode())
        except Exception:  # a log line must never take the feed down
            pass


def _child_main(stdin: BinaryIO) -> int:
    """Run the official KiteTicker and forward everything to the parent (see the module doc)."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the record stream
    writer = _Writer(out_fd)
    line = stdin.readline()
    if not line:
        return 2
    session = json.loads(line)
    access_token = str(session["access_token"])
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [_PipeLogHandler(writer, [access_token])]
    root_logger.setLevel(logging.INFO)

    from kiteconnect import KiteTicker
    from twisted.internet import reactor

    class _Ticker(KiteTicker):
        def resubscribe(self) -> None:
            """Do nothing: on_connect sends the whole set on every connect, the first too."""

    ticker = _Ticker(
        str(session["api_key"]),
        access_token,
        root=session.get("root") or ROOT,
        reconnect=True,
        reconnect_max_tries=int(session.get("reconnect_max_tries", 50)),
        reconnect_max_delay=int(session.get("reconnect_max_delay", 60)),
        connect_timeout=int(session.get("connect_timeout", 30)),
    )
    modes: dict[int, str] = {int(t): m for t, m in session.get("subscriptions", {}).items()}
    outcome = {"code": 0}
    clock = time.time

    def send_all() -> None:
        by_mode: dict[str, list[int]] = {}
        for token, mode in modes.items():
            by_mode.setdefault(mode, []).append(token)
        if modes:
            ticker.subscribe(sorted(modes))
        for mode, tokens in by_mode.items():
            ticker.set_mode(mode, sorted(tokens))

    def on_connect(ws: object, response: object) -> None:
        try:
            send_all()
        except Exception:
            logging.getLogger(__name__).exception("resubscribing after a connect failed")
        writer.event("connect")

    def on_message(ws: object, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            writer.write(BINARY, _RECEIVED.pack(clock()) + payload)
        else:
            writer.write(TEXT, payload if isinstance(payload, bytes) else payload.encode())

    def on_close(ws: object, code: object, reason: object) -> None:
        writer.event("close", code=code, reason=None if reason is None else str(reason))

    def on_error(ws: object, code: object, reason: object) -> None:
        if code != 0:  # code 0 is a text error message, already forwarded as it came
            writer.event("error", code=code, reason=None if reason is None else str(reason))

    def on_reconnect(ws: object, attempt: object) -> None:
        writer.event("reconnect", attempt=attempt)

    def on_noreconnect(ws: object) -> None:
        writer.event("noreconnect")
        outcome["code"] = _GAVE_UP
        reactor.stop()

    def apply(command: dict[str, object]) -> None:
        op = command.get("op")
        tokens = [int(t) for t in command.get("tokens", [])]  # type: ignore[attr-defined]
        connected = ticker.is_connected()
        try:
            if op in ("subscribe", "mode"):
                mode = str(command.get("mode", "quote"))
                modes.update(dict.fromkeys(tokens, mode))
                if connected and tokens:
                    if op == "subscribe":
                        ticker.subscribe(tokens)
                    ticker.set_mode(mode, tokens)
            elif op == "unsubscribe":
                for token in tokens:
                    modes.pop(token, None)
                if connected and tokens:
                    ticker.unsubscribe(tokens)
        except Exception:  # the SDK closes the socket; the reconnect resends the set
            logging.getLogger(__name__).exception("ticker command %s failed", op)

    def read_commands() -> None:
        for raw in stdin:
            try:
                command = json.loads(raw)
            except ValueError:
                continue
            reactor.callFromThread(apply, command)
        # stdin closed: the parent is gone
        reactor.callFromThread(reactor.stop)
        threading.Timer(5.0, os._exit, args=(0,)).start()

    ticker.on_connect = on_connect
    ticker.on_message = on_message
    ticker.on_close = on_close
    ticker.on_error = on_error
    ticker.on_reconnect = on_reconnect
    ticker.on_noreconnect = on_noreconnect
    threading.Thread(target=read_commands, name="kite-ticker-commands", daemon=True).start()
    ticker.connect(threaded=False)  # runs the reactor until stopped
    return outcome["code"]


if __name__ == "__main__":
    sys.exit(_child_main(sys.stdin.buffer))
