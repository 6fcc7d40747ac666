"""The Kite simulator's ticker side: binary tick packets and the ``/ws`` websocket handler.

Packets follow Kite's documented layout, which is what ``kiteconnect.ticker.KiteTicker``
parses (``_parse_binary``): every integer is big-endian and unsigned, prices are integers in
the segment's smallest unit (paise for NSE/BSE/NFO: ÷100; CDS ÷10^7; BCD/NCO ÷10^4), and a
frame is a 2-byte packet count followed by, per packet, a 2-byte length and the packet. A
1-byte frame is a heartbeat. Packet sizes tell the mode: 8 bytes LTP; 44 quote / 184 full for
tradable instruments (full adds last trade time, OI, exchange time and five levels of depth
each side, 12 bytes a level: quantity, price, orders, 2 bytes padding); 28 quote / 32 full for
indices (segment 9, not tradable).

:func:`encode_packet` takes a tick in the shape the SDK's parser (and the recorded
``ticker_*.json`` fixtures) use, so a fixture's JSON encodes back to its ``.packet`` bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import tornado.websocket

if TYPE_CHECKING:
    from velox.brokers.kite.simulator import KiteSimulator

__all__ = [
    "HEARTBEAT",
    "MODES",
    "encode_frame",
    "encode_packet",
    "price_divisor",
    "TickerSocket",
]

log = logging.getLogger(__name__)

#: The 1-byte frame Kite sends when there is nothing else to send (the SDK ignores it).
HEARTBEAT = b"\x00"
#: Ticker modes, smallest first (what ``{"a": "mode", "v": [mode, tokens]}`` accepts).
MODES = ("ltp", "quote", "full")

_SEGMENT_CDS, _SEGMENT_BCD, _SEGMENT_INDICES, _SEGMENT_NCO = 3, 6, 9, 12


def price_divisor(token: int) -> float:
    """Return what a packet price of instrument ``token`` is divided by to give rupees.

    The segment is the token's low byte, as ``KiteTicker`` reads it.
    """
    segment = token & 0xFF
    if segment == _SEGMENT_CDS:
        return 10_000_000.0
    if segment in (_SEGMENT_BCD, _SEGMENT_NCO):
        return 10_000.0
    return 100.0


def _epoch(value: object) -> int:
    """Return epoch seconds of a tick time (datetime, ISO 8601 text or a number; None → 0)."""
    if value is None:
        return 0
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return int(value.timestamp())


def encode_packet(tick: Mapping[str, object]) -> bytes:
    """Return the binary packet (no count/length header) of one tick in Kite's layout.

    ``tick`` has the fields ``KiteTicker`` decodes (``mode``, ``instrument_token``,
    ``last_price``, ``last_quantity``, ``average_price``, ``volume``, ``buy_quantity``,
    ``sell_quantity``, ``ohlc``, ``last_trade_time``, ``oi``, ``oi_day_high``, ``oi_day_low``,
    ``timestamp``, ``depth``); what a mode does not carry is ignored. Prices are rounded to the
    segment's unit.

    Examples
    --------
    >>> encode_packet({"mode": "ltp", "instrument_token": 738561, "last_price": 1402.5}).hex()
    '000b4501000223de'
    """
    mode = str(tick.get("mode", "quote"))
    token = int(tick["instrument_token"])  # type: ignore[call-overload]
    divisor = price_divisor(token)

    def price(value: object) -> int:
        return int(round(float(value or 0) * divisor))  # type: ignore[arg-type]

    def number(name: str) -> int:
        return int(tick.get(name) or 0)  # type: ignore[call-overload]

    ltp = price(tick.get("last_price"))
    if mode == "ltp":
        return struct.pack(">II", token, ltp)
    ohlc: Mapping[str, object] = tick.get("ohlc") or {}  # type: ignore[assignment]
    if token & 0xFF == _SEGMENT_INDICES:
        close = price(ohlc.get("close"))
        body = struct.pack(
            ">IIIIIIi",
            token,
            ltp,
            price(ohlc.get("high")),
            price(ohlc.get("low")),
            price(ohlc.get("open")),
            close,
            ltp - close,  # net change (the SDK computes its own and skips these bytes)
        )
        if mode == "full":
            body += struct.pack(">I", _epoch(tick.get("timestamp")))
        return body
    body = struct.pack(
        ">11I",
        token,
        ltp,
        number("last_quantity"),
        price(tick.get("average_price")),
        number("volume"),
        number("buy_quantity"),
        number("sell_quantity"),
        price(ohlc.get("open")),
        price(ohlc.get("high")),
        price(ohlc.get("low")),
        price(ohlc.get("close")),
    )
    if mode != "full":
        return body
    body += struct.pack(
        ">5I",
        _epoch(tick.get("last_trade_time")),
        number("oi"),
        number("oi_day_high"),
        number("oi_day_low"),
        _epoch(tick.get("timestamp")),
    )
    depth: Mapping[str, Sequence[Mapping[str, object]]] = tick.get("depth") or {}  # type: ignore[assignment]
    for side in ("buy", "sell"):
        levels = list(depth.get(side, ()))[:5]
        levels += [{}] * (5 - len(levels))
        for level in levels:
            body += struct.pack(
                ">IIHxx",
                int(level.get("quantity") or 0),  # type: ignore[call-overload]
                price(level.get("price")),
                int(level.get("orders") or 0),  # type: ignore[call-overload]
            )
    return body


def encode_frame(packets: Iterable[bytes]) -> bytes:
    """Return one websocket binary message holding ``packets`` (count + length headers)."""
    parts = list(packets)
    out = [struct.pack(">H", len(parts))]
    for packet in parts:
        out.append(struct.pack(">H", len(packet)))
        out.append(packet)
    return b"".join(out)


class TickerSocket(tornado.websocket.WebSocketHandler):
    """One ``KiteTicker`` connection: authenticated by its query, subscribed by text messages.

    Kite refuses a handshake with a bad ``api_key``/``access_token`` with HTTP 403; a client
    then sees a failed connection. Subscriptions are per connection: ``subscribe`` adds tokens
    in ``quote`` mode (Kite's default), ``mode`` changes the mode of tokens, ``unsubscribe``
    removes them. Everything runs on the simulator's IOLoop thread.
    """

    def initialize(self, simulator: KiteSimulator) -> None:  # noqa: D401 - tornado's hook
        self.simulator = simulator
        self.api_key = ""
        self.modes: dict[int, str] = {}

    def check_origin(self, origin: str) -> bool:
        return True  # a loopback test server: any client may connect

    async def get(self, *args: str, **kwargs: str) -> None:
        api_key = self.get_query_argument("api_key", "")
        access_token = self.get_query_argument("access_token", "")
        problem = self.simulator._ws_auth_problem(api_key, access_token)
        if problem is not None:
            self.set_status(403)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": "error", "message": problem,
                                    "error_type": "TokenException"}))  # fmt: skip
            return
        self.api_key = api_key
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        self.simulator._ws_opened(self)

    def on_close(self) -> None:
        self.simulator._ws_closed(self)

    def on_message(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            action = request["a"]
            value = request.get("v")
        except (ValueError, KeyError, TypeError):
            self.send_error_text(f"Invalid message {message!r}: expected JSON with 'a' and 'v'")
            return
        try:
            if action == "subscribe":
                tokens = [int(t) for t in value]
                for token in tokens:
                    self.modes.setdefault(token, "quote")
                self.simulator._ws_snapshot(self, tokens)
            elif action == "unsubscribe":
                for token in value:
                    self.modes.pop(int(token), None)
            elif action == "mode":
                mode, tokens = value[0], [int(t) for t in value[1]]
                if mode not in MODES:
                    self.send_error_text(f"Invalid mode {mode!r}; use one of {', '.join(MODES)}")
                    return
                for token in tokens:
                    self.modes[token] = mode
                self.simulator._ws_snapshot(self, tokens)
            else:
                self.send_error_text(f"Unknown action {action!r}")
        except (TypeError, ValueError, IndexError):
            self.send_error_text(f"Invalid value for {action!r}: {value!r}")

    def send_error_text(self, text: str) -> None:
        """Send Kite's ``{"type": "error"}`` text message (KiteTicker calls ``on_error``)."""
        self.send_text({"type": "error", "data": text})

    def send_text(self, message: Mapping[str, object]) -> None:
        """Send a JSON text message, ignoring a connection that is already gone."""
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(json.dumps(message, default=str))

    def send_binary(self, data: bytes) -> None:
        """Send a binary message, ignoring a connection that is already gone."""
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(data, binary=True)

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake, as a network failure does."""
        connection = self.ws_connection
        stream = getattr(connection, "stream", None)
        if stream is not None:
            stream.close()
        else:
            self.close()
