"""Velox's fast decoder of Kite ticker binary frames into :class:`~velox.types.Tick` values.

Kite's ticker sends each websocket binary message as one *frame*: a 2-byte big-endian packet
count, then per packet a 2-byte length and the packet. The packet's length says its mode:

======  ============================  ==============================================
bytes   mode                          fields Velox reads
======  ============================  ==============================================
8       ltp                           token, last price
28      index quote                   token, last price
32      index full                    token, last price, exchange timestamp
44      quote                         token, last price, last qty, day volume
184     full                          as quote, plus last trade time, OI, exchange
                                      timestamp, best bid and ask (5-level depth)
======  ============================  ==============================================

All integers are unsigned big-endian, as ``kiteconnect.ticker`` unpacks them; prices are in
paise (÷100), except the CDS segment (÷10⁷) and BCD and NCO (÷10⁴). The segment is the
token's low byte. A 1-byte (or empty) frame is Kite's heartbeat and holds no packets.

Why not the SDK's parser: ``KiteTicker._parse_binary`` calls ``struct.unpack`` once per field
(about 45 calls for a full packet) and builds nested dicts with the whole depth, about 15 µs a
tick. Here one precompiled :class:`struct.Struct` per packet length unpacks only the fields a
:class:`~velox.types.Tick` holds, in one call, and exchange timestamps (whole seconds) are
turned into datetimes through a small cache. The SDK's parser remains the reference the tests
hold this one to, field by field.

``Tick.volume`` is Kite's ``volume_traded``: the *cumulative* day volume, which is exactly what
``Tick.volume`` means in Velox (:mod:`velox.feeds`), so it passes through unchanged; the candle
aggregator turns it into per-candle volume, restarting at each IST date, so the first tick
after a start or a reconnect and a day change need nothing here.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from velox.calendar import IST
from velox.errors import DataError
from velox.types import Tick

__all__ = [
    "LTP_PACKET",
    "INDEX_QUOTE_PACKET",
    "INDEX_FULL_PACKET",
    "QUOTE_PACKET",
    "FULL_PACKET",
    "SEGMENT_DIVISORS",
    "FrameError",
    "DecodeStats",
    "TickDecoder",
    "decode_frame",
    "price_divisor",
]

log = logging.getLogger(__name__)

#: Packet lengths by mode (bytes).
LTP_PACKET = 8
INDEX_QUOTE_PACKET = 28
INDEX_FULL_PACKET = 32
QUOTE_PACKET = 44
FULL_PACKET = 184

#: Price divisors by segment (the token's low byte) where prices are not in paise: CDS (3)
#: quotes currency pairs to 10⁻⁷ rupee, BCD (6) and NCO (12) to 10⁻⁴ (as kiteconnect.ticker).
SEGMENT_DIVISORS: Mapping[int, float] = {3: 10_000_000.0, 6: 10_000.0, 12: 10_000.0}
_PAISE = 100.0

_COUNT = struct.Struct(">H")
_LENGTH = struct.Struct(">H")
# token, last price
_LTP = struct.Struct(">II")
# token, last price, [hi lo open close], exchange timestamp
_INDEX_FULL = struct.Struct(">II20xI")
# token, last price, last qty, [avg price], volume, [buy qty, sell qty, ohlc]
_QUOTE = struct.Struct(">III4xI24x")
# as quote, then last trade time, oi, [oi high, oi low], exchange timestamp,
# [bid0 qty] bid0 price [bid0 orders, pad, bids 1-4, ask0 qty] ask0 price [rest of depth]
_FULL = struct.Struct(">III4xI24xII8xI4xI56xI52x")

assert _LTP.size == LTP_PACKET
assert _INDEX_FULL.size == INDEX_FULL_PACKET
assert _QUOTE.size == QUOTE_PACKET
assert _FULL.size == FULL_PACKET

#: How many distinct exchange-timestamp seconds the datetime cache keeps before it is cleared
#: (a feed's timestamps advance, so old seconds are never asked for again).
_TS_CACHE = 4096


def price_divisor(token: int) -> float:
    """Return what a raw price of instrument ``token`` is divided by to give rupees."""
    return SEGMENT_DIVISORS.get(token & 0xFF, _PAISE)


class FrameError(DataError):
    """A ticker frame is malformed: shorter than its packet count and lengths say.

    The feed logs it and skips the frame; it never ends the feed.
    """


@dataclass(slots=True)
class DecodeStats:
    """Counters of what a :class:`TickDecoder` has seen (for logs, tests and a status page).

    ``unknown_tokens`` counts packets of tokens the decoder has no instrument id for (an
    unsubscribed instrument still in flight); ``unknown_lengths`` packets of a length no mode
    has (skipped, as the SDK skips them); ``trailing_bytes`` frames with bytes after their last
    declared packet (decoded, the extra bytes ignored); ``partial`` quote/ltp packets of tokens
    subscribed in full mode (dropped, see :class:`TickDecoder`).
    """

    frames: int = 0
    heartbeats: int = 0
    packets: int = 0
    ticks: int = 0
    malformed: int = 0
    unknown_tokens: int = 0
    unknown_lengths: int = 0
    trailing_bytes: int = 0
    partial: int = 0


class TickDecoder:
    """Decode Kite ticker frames into :class:`~velox.types.Tick` values, fast.

    Parameters
    ----------
    instruments
        Kite instrument token → Velox instrument id. The decoder reads it on every packet and
        never copies it, so a caller may add and remove tokens as it (un)subscribes; packets of
        tokens not in it are counted in ``stats.unknown_tokens`` and dropped.
    tz
        The time zone of the ticks' timestamps (default IST, how Velox shows time).
    full_tokens
        Tokens subscribed in full mode (read live, like ``instruments``). Their ltp/quote
        packets are dropped (``stats.partial``): Kite answers a subscribe with a quote-mode
        snapshot before the mode message turns the token to full, and that packet has no
        exchange time, so its receive time would move a market clock read from exchange
        timestamps (a replayed market's, or a lagging feed's) to the wall clock.

    Notes
    -----
    ``Tick.ts`` is the packet's exchange timestamp where it has one (full mode, stock or index),
    else the receive time the caller passes (ltp and quote packets carry no time). A full-mode
    packet whose exchange timestamp is 0 falls back to its last trade time, then to the receive
    time. ``bid``/``ask`` are the best depth prices in full mode (``None`` when that side is
    empty, which Kite sends as price 0); ``oi`` is set in full mode only; ``volume`` and
    ``last_qty`` in quote and full modes of tradable instruments (indices have neither).

    Examples
    --------
    >>> import struct
    >>> packet = struct.pack(">II", 738561, 250075)
    >>> frame = struct.pack(">HH", 1, len(packet)) + packet
    >>> decoder = TickDecoder({738561: "NSE:RELIANCE"})
    >>> [(t.instrument_id, t.ltp) for t in decoder.decode(frame, received=1_700_000_000.0)]
    [('NSE:RELIANCE', 2500.75)]
    """

    __slots__ = ("instruments", "tz", "stats", "full_tokens", "_seconds")

    def __init__(
        self,
        instruments: Mapping[int, str],
        *,
        tz: tzinfo = IST,
        full_tokens: Collection[int] = frozenset(),
    ) -> None:
        self.instruments = instruments
        self.tz = tz
        self.full_tokens = full_tokens
        self.stats = DecodeStats()
        self._seconds: dict[int, datetime] = {}

    def _at(self, epoch: int) -> datetime:
        """Return the aware datetime of whole-second ``epoch`` (cached)."""
        seconds = self._seconds
        ts = seconds.get(epoch)
        if ts is None:
            if len(seconds) >= _TS_CACHE:
                seconds.clear()
            ts = seconds[epoch] = datetime.fromtimestamp(epoch, self.tz)
        return ts

    def decode(self, frame: bytes | bytearray | memoryview, received: float) -> list[Tick]:
        """Return the ticks in one binary ``frame`` received at epoch seconds ``received``.

        A heartbeat (fewer than 2 bytes) returns ``[]``.

        Raises
        ------
        FrameError
            If the frame is shorter than its packet count and lengths declare; no tick of it is
            returned (a frame cut short cannot be trusted), and ``stats.malformed`` counts it.
        """
        stats = self.stats
        stats.frames += 1
        size = len(frame)
        if size < 2:
            stats.heartbeats += 1
            return []
        (count,) = _COUNT.unpack_from(frame, 0)
        instruments = self.instruments
        full_tokens = self.full_tokens
        divisors = SEGMENT_DIVISORS
        at = self._at
        seconds = self._seconds
        received_ts: datetime | None = None
        out: list[Tick] = []
        append = out.append
        offset = 2
        unknown = 0
        for index in range(count):
            if offset + 2 > size:
                stats.malformed += 1
                raise FrameError(
                    f"Kite ticker frame of {size} bytes declares {count} packets but ends "
                    f"before packet {index + 1}'s length"
                )
            (length,) = _LENGTH.unpack_from(frame, offset)
            start = offset + 2
            offset = start + length
            if offset > size:
                stats.malformed += 1
                raise FrameError(
                    f"Kite ticker frame of {size} bytes declares a {length}-byte packet at byte "
                    f"{start - 2} that runs past its end"
                )
            if length == FULL_PACKET:
                token, ltp, qty, volume, ltt, oi, ets, bid, ask = _FULL.unpack_from(frame, start)
                iid = instruments.get(token)
                if iid is None:
                    unknown += 1
                    continue
                div = divisors.get(token & 0xFF, _PAISE)
                epoch = ets or ltt
                if epoch:
                    ts = seconds.get(epoch) or at(epoch)
                else:
                    if received_ts is None:
                        received_ts = datetime.fromtimestamp(received, self.tz)
                    ts = received_ts
                append(
                    Tick(
                        iid,
                        ts,
                        ltp / div,
                        volume,
                        qty,
                        bid / div if bid else None,
                        ask / div if ask else None,
                        oi,
                    )
                )
            elif length in (QUOTE_PACKET, LTP_PACKET, INDEX_QUOTE_PACKET):
                if length == QUOTE_PACKET:
                    token, ltp, qty, volume = _QUOTE.unpack_from(frame, start)
                else:
                    token, ltp = _LTP.unpack_from(frame, start)
                    qty = volume = None
                iid = instruments.get(token)
                if iid is None:
                    unknown += 1
                    continue
                if token in full_tokens:  # the subscribe's snapshot, before its mode message
                    stats.partial += 1
                    continue
                if received_ts is None:
                    received_ts = datetime.fromtimestamp(received, self.tz)
                ltp /= divisors.get(token & 0xFF, _PAISE)
                append(Tick(iid, received_ts, ltp, volume, qty))
            elif length == INDEX_FULL_PACKET:
                token, ltp, ets = _INDEX_FULL.unpack_from(frame, start)
                iid = instruments.get(token)
                if iid is None:
                    unknown += 1
                    continue
                if ets:
                    ts = seconds.get(ets) or at(ets)
                else:
                    if received_ts is None:
                        received_ts = datetime.fromtimestamp(received, self.tz)
                    ts = received_ts
                append(Tick(iid, ts, ltp / divisors.get(token & 0xFF, _PAISE)))
            else:
                stats.unknown_lengths += 1
        if offset < size:
            stats.trailing_bytes += 1
        stats.packets += count
        stats.unknown_tokens += unknown
        stats.ticks += len(out)
        return out


def decode_frame(
    frame: bytes | bytearray | memoryview,
    instruments: Mapping[int, str],
    received: float,
    *,
    tz: tzinfo = IST,
) -> list[Tick]:
    """Return the ticks of one Kite ticker ``frame`` (a one-off :class:`TickDecoder`).

    A feed keeps one :class:`TickDecoder` (its timestamp cache and counters); this is for
    notebooks and tests. Raises :class:`FrameError` for a frame cut short.

    Examples
    --------
    >>> import struct
    >>> packet = struct.pack(">II", 408065 + 0, 157370)
    >>> frame = struct.pack(">HH", 1, 8) + packet
    >>> decode_frame(frame, {408065: "NSE:INFY"}, received=0.0)[0].ltp
    1573.7
    """
    return TickDecoder(instruments, tz=tz).decode(frame, received)
