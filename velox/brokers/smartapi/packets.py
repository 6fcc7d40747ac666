"""SmartAPI's market-data packets (``SmartWebSocketV2``): Velox's encoder and fast decoder.

Each websocket binary message is one little-endian packet; its first byte is the mode:

=========  =====  ===========================================================================
mode       bytes  fields (offsets as ``SmartWebSocketV2._parse_binary_data`` reads them)
=========  =====  ===========================================================================
1 LTP      51     mode B, exchange type B, token 25s (NUL-padded), sequence q, exchange
                  time q (epoch ms), last price q (paise)
2 QUOTE    123    + last qty q, average price q, day volume q, total buy qty d, total sell
                  qty d, open q, high q, low q, close q
3 SNAP     379    + last trade time q, OI q, OI change % q, best five 10 × (flag H, qty q,
                  price q, orders H; flag 1 buy, 0 sell), upper circuit q, lower circuit q,
                  52-week high q, 52-week low q
=========  =====  ===========================================================================

Prices are paise (÷100) for every exchange Velox trades (NSE/BSE cash and F&O).

Why a decoder of our own: the SDK's parser calls ``struct.unpack`` once per field (about 40
calls for a SNAP_QUOTE) and builds nested dicts of the depth; here one precompiled
:class:`struct.Struct` per mode unpacks only what a :class:`~velox.types.Tick` holds. The SDK's
parser is the reference the tests hold this one to; ``bench/smartapi.py`` measures both.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, datetime

from velox.errors import DataError
from velox.types import Tick

__all__ = ["EXCHANGE_TYPES", "LTP", "QUOTE", "SNAP_QUOTE", "SIZES", "decode", "encode"]

LTP, QUOTE, SNAP_QUOTE = 1, 2, 3
#: Packet size of each mode.
SIZES = {LTP: 51, QUOTE: 123, SNAP_QUOTE: 379}
#: SmartAPI's exchange types (the ``exchangeType`` of a subscription and byte 1 of a packet).
EXCHANGE_TYPES = {"NSE": 1, "NFO": 2, "BSE": 3, "BFO": 4, "MCX": 5, "NCDEX": 7, "CDS": 13}

_HEAD = struct.Struct("<BB25sqqq")  # 51
_QUOTE = struct.Struct("<qqqddqqqq")  # 72 → 123
_SNAP = struct.Struct("<qqq")  # 24 → 147
_LEVEL = struct.Struct("<HqqH")  # 20, ten of them → 347
_TAIL = struct.Struct("<qqqq")  # 32 → 379
# what the decoder reads: exchange, token, time, price; and last qty and day volume
_READ_LTP = struct.Struct("<xB25sxxxxxxxxqq")
_READ_QUOTE = struct.Struct("<xB25sxxxxxxxxqqqxxxxxxxxq")


def _paise(rupees: float) -> int:
    return round(rupees * 100)


def encode(
    mode: int,
    exchange_type: int,
    token: str,
    *,
    sequence: int,
    ts: datetime,
    ltp: float,
    last_qty: int = 0,
    average: float = 0.0,
    volume: int = 0,
    total_buy: float = 0.0,
    total_sell: float = 0.0,
    ohlc: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
    last_trade: datetime | None = None,
    oi: int = 0,
    depth: Mapping[str, list[Mapping[str, float]]] | None = None,
    circuit: tuple[float, float] = (0.0, 0.0),
    week52: tuple[float, float] = (0.0, 0.0),
) -> bytes:
    """Return one packet of ``mode`` as Angel One's server sends it (the simulator's side)."""
    if mode not in SIZES:
        raise ValueError(f"unknown SmartAPI mode {mode}: use 1 (LTP), 2 (QUOTE) or 3 (SNAP_QUOTE)")
    raw_token = token.encode("ascii")
    if len(raw_token) > 24:
        raise ValueError(f"token {token!r} is longer than the packet's 25 bytes allow")
    stamp = round(ts.timestamp() * 1000)
    out = _HEAD.pack(mode, exchange_type, raw_token, sequence, stamp, _paise(ltp))
    if mode == LTP:
        return out
    o, h, lo, c = ohlc
    out += _QUOTE.pack(last_qty, _paise(average), volume, total_buy, total_sell,
                       _paise(o), _paise(h), _paise(lo), _paise(c))  # fmt: skip
    if mode == QUOTE:
        return out
    traded = round((last_trade or ts).timestamp())
    out += _SNAP.pack(traded, oi, 0)
    levels = b""
    for flag, side in ((1, "buy"), (0, "sell")):
        rows = list((depth or {}).get(side, []))[:5]
        rows += [{"quantity": 0, "price": 0.0, "orders": 0}] * (5 - len(rows))
        for row in rows:
            levels += _LEVEL.pack(flag, int(row["quantity"]), _paise(float(row["price"])),
                                  int(row["orders"]))  # fmt: skip
    out += levels
    out += _TAIL.pack(_paise(circuit[0]), _paise(circuit[1]), _paise(week52[0]), _paise(week52[1]))
    return out


def decode(packet: bytes, instruments: Mapping[tuple[int, str], str]) -> Tick | None:
    """Return the :class:`~velox.types.Tick` of one packet (``None`` for an unknown token).

    ``instruments`` maps (exchange type, token) to the Velox instrument id. A packet whose
    length is not its mode's raises :class:`~velox.errors.DataError` naming both.
    """
    size = len(packet)
    mode = packet[0] if size else 0
    if SIZES.get(mode) != size:
        raise DataError(f"SmartAPI packet of {size} bytes for mode {mode}: expected "
                        + ", ".join(f"{s} for mode {m}" for m, s in SIZES.items()))  # fmt: skip
    if mode == LTP:
        exchange, raw, stamp, ltp = _READ_LTP.unpack(packet)
        qty = volume = None
    else:
        exchange, raw, stamp, ltp, qty, volume = _READ_QUOTE.unpack_from(packet)
    iid = instruments.get((exchange, raw.split(b"\0", 1)[0].decode("ascii")))
    if iid is None:
        return None
    bid = ask = None
    if mode == SNAP_QUOTE:
        for k in range(10):
            flag, _q, price, _n = _LEVEL.unpack_from(packet, 147 + 20 * k)
            if price and flag == 1 and bid is None:
                bid = price / 100
            elif price and flag == 0 and ask is None:
                ask = price / 100
    ts = datetime.fromtimestamp(stamp / 1000, UTC)
    return Tick(iid, ts, ltp / 100, volume, qty, bid, ask)
