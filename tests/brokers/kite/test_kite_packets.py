"""Velox's Kite frame decoder against Zerodha's recorded packets and the SDK's own parser.

Two independent references: the ``ticker_*.packet`` fixtures with the decoding Zerodha
published beside them (``ticker_*.json``), and ``kiteconnect.ticker.KiteTicker._parse_binary``
on many synthetic frames of every mode and segment.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker

from velox.brokers.kite._packets import (
    FULL_PACKET,
    INDEX_FULL_PACKET,
    INDEX_QUOTE_PACKET,
    LTP_PACKET,
    QUOTE_PACKET,
    FrameError,
    TickDecoder,
    decode_frame,
    price_divisor,
)
from velox.calendar import IST
from velox.errors import DataError
from velox.feeds import CandleAggregator
from velox.testing import KITE_MOCKS
from velox.types import Tick

MOCKS = KITE_MOCKS
INFY = 408065
RECEIVED = 1_625_462_000.25  # 2021-07-05 10:43:20.25 IST


def frame_of(*packets: bytes) -> bytes:
    """Return a ticker frame: 2-byte count, then each packet behind its 2-byte length."""
    out = [struct.pack(">H", len(packets))]
    for packet in packets:
        out.append(struct.pack(">H", len(packet)) + packet)
    return b"".join(out)


def recorded(name: str) -> bytes:
    return base64.b64decode((MOCKS / f"ticker_{name}.packet").read_bytes())


def expected(name: str) -> dict:
    return json.loads((MOCKS / f"ticker_{name}.json").read_text())


@pytest.fixture(scope="module")
def sdk() -> KiteTicker:
    """The official client, used only for its parser (it never connects here)."""
    return KiteTicker("api_key", "access_token")


# ---- the recorded packets --------------------------------------------------------------------


def test_recorded_full_packet_matches_zerodhas_decoding() -> None:
    want = expected("full")
    packet = recorded("full")
    assert len(packet) == FULL_PACKET
    (tick,) = decode_frame(frame_of(packet), {INFY: "NSE:INFY"}, RECEIVED)
    assert tick.instrument_id == "NSE:INFY"
    assert tick.ltp == want["last_price"] == 1573.7
    assert tick.last_qty == want["last_quantity"]
    assert tick.volume == want["volume"]
    assert tick.oi == want["oi"]
    assert tick.bid == want["depth"]["buy"][0]["price"]
    assert tick.ask == want["depth"]["sell"][0]["price"]
    assert tick.ts == datetime.fromisoformat(want["timestamp"])
    assert tick.ts.utcoffset() == timedelta(hours=5, minutes=30)


def test_recorded_quote_packet_matches_zerodhas_decoding() -> None:
    want = expected("quote")
    packet = recorded("quote")
    assert len(packet) == QUOTE_PACKET
    (tick,) = decode_frame(frame_of(packet), {INFY: "NSE:INFY"}, RECEIVED)
    assert (tick.ltp, tick.last_qty, tick.volume) == (
        want["last_price"],
        want["last_quantity"],
        want["volume"],
    )
    assert (tick.bid, tick.ask, tick.oi) == (None, None, None)
    assert tick.ts == datetime.fromtimestamp(RECEIVED, IST)  # quote packets carry no time


def test_recorded_packets_in_one_frame_keep_their_order() -> None:
    frame = frame_of(recorded("quote"), recorded("full"), struct.pack(">II", INFY, 157315))
    ticks = decode_frame(frame, {INFY: "NSE:INFY"}, RECEIVED)
    assert [t.ltp for t in ticks] == [1573.15, 1573.7, 1573.15]
    assert ticks[2].volume is None and ticks[2].ts == ticks[0].ts  # ltp: receive time


# ---- hand-computed values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "raw", "rupees"),
    [(1, 250075, 2500.75), (3, 745_012_500, 74.50125), (6, 745_025, 74.5025), (12, 12345, 1.2345)],
)
def test_price_divisor_by_segment(segment: int, raw: int, rupees: float) -> None:
    token = (1234 << 8) | segment
    (tick,) = decode_frame(frame_of(struct.pack(">II", token, raw)), {token: "X:Y"}, 0.0)
    assert tick.ltp == rupees
    assert price_divisor(token) * rupees == pytest.approx(raw)


def test_index_packets() -> None:
    nifty = 256265  # segment 9: indices
    quote = struct.pack(">7I", nifty, 2_250_010, 2_260_000, 2_240_000, 2_245_000, 2_244_000, 0)
    full = quote + struct.pack(">I", 1_700_000_000)
    assert (len(quote), len(full)) == (INDEX_QUOTE_PACKET, INDEX_FULL_PACKET)
    ticks = decode_frame(frame_of(quote, full), {nifty: "NSE:NIFTY"}, RECEIVED)
    assert [t.ltp for t in ticks] == [22500.1, 22500.1]
    assert ticks[0].ts == datetime.fromtimestamp(RECEIVED, IST)
    assert ticks[1].ts == datetime.fromtimestamp(1_700_000_000, IST)
    assert all(t.volume is None and t.last_qty is None for t in ticks)


def test_full_packet_without_times_or_depth() -> None:
    body = bytearray(recorded("full"))
    body[60:64] = bytes(4)  # no exchange timestamp: the last trade time is used
    (tick,) = decode_frame(frame_of(bytes(body)), {INFY: "NSE:INFY"}, RECEIVED)
    assert tick.ts == datetime.fromisoformat(expected("full")["last_trade_time"])
    body[44:48] = bytes(4)  # nor a last trade time: the receive time
    body[68:72] = bytes(4)  # an empty bid side
    body[128:132] = bytes(4)  # an empty ask side
    (tick,) = decode_frame(frame_of(bytes(body)), {INFY: "NSE:INFY"}, RECEIVED)
    assert tick.ts == datetime.fromtimestamp(RECEIVED, IST)
    assert (tick.bid, tick.ask) == (None, None)


# ---- heartbeats, unknown tokens, malformed frames --------------------------------------------


def test_heartbeats_hold_no_ticks() -> None:
    decoder = TickDecoder({INFY: "NSE:INFY"})
    assert decoder.decode(b"\x00", RECEIVED) == []
    assert decoder.decode(b"", RECEIVED) == []
    assert decoder.decode(frame_of(), RECEIVED) == []
    assert decoder.stats.heartbeats == 2 and decoder.stats.malformed == 0


def test_unknown_tokens_are_counted_and_dropped() -> None:
    instruments = {INFY: "NSE:INFY"}
    decoder = TickDecoder(instruments)
    frame = frame_of(recorded("full"), struct.pack(">II", 738561, 250000))
    assert [t.instrument_id for t in decoder.decode(frame, RECEIVED)] == ["NSE:INFY"]
    assert decoder.stats.unknown_tokens == 1
    instruments[738561] = "NSE:RELIANCE"  # the decoder reads the caller's live mapping
    assert len(decoder.decode(frame, RECEIVED)) == 2


def test_every_truncation_is_a_frame_error_and_the_decoder_survives() -> None:
    decoder = TickDecoder({INFY: "NSE:INFY"})
    frame = frame_of(recorded("quote"), recorded("full"))
    for cut in range(2, len(frame)):
        with pytest.raises(FrameError, match="Kite ticker frame"):
            decoder.decode(frame[:cut], RECEIVED)
    assert decoder.stats.malformed == len(frame) - 2
    assert isinstance(FrameError("x"), DataError)
    assert len(decoder.decode(frame, RECEIVED)) == 2


def test_a_count_larger_than_the_frame_is_malformed() -> None:
    frame = struct.pack(">H", 5) + frame_of(recorded("quote"))[2:]
    with pytest.raises(FrameError, match="declares 5 packets"):
        decode_frame(frame, {INFY: "NSE:INFY"}, RECEIVED)


def test_unknown_lengths_and_trailing_bytes_are_skipped_like_the_sdk(sdk: KiteTicker) -> None:
    decoder = TickDecoder({INFY: "NSE:INFY"})
    frame = frame_of(struct.pack(">III", INFY, 1, 2), recorded("quote")) + b"\x01\x02\x03"
    ticks = decoder.decode(frame, RECEIVED)
    assert [t.ltp for t in ticks] == [d["last_price"] for d in sdk._parse_binary(frame)]
    assert (decoder.stats.unknown_lengths, decoder.stats.trailing_bytes) == (1, 1)


# ---- the SDK's parser as the reference, on synthetic frames ----------------------------------

SEGMENTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12)
LENGTHS = (LTP_PACKET, INDEX_QUOTE_PACKET, INDEX_FULL_PACKET, QUOTE_PACKET, FULL_PACKET)
# byte offsets a synthetic packet may zero (times, best prices) to reach the fallbacks
ZEROABLE = {INDEX_FULL_PACKET: (28,), FULL_PACKET: (44, 60, 68, 128)}


@st.composite
def packets(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Return a random packet of a random mode and segment, and whether its token is known."""
    length = draw(st.sampled_from(LENGTHS + (12,)))  # 12: a length no mode has
    token = (draw(st.integers(0, 2**24 - 1)) << 8) | draw(st.sampled_from(SEGMENTS))
    body = bytearray(
        struct.pack(">I", token) + draw(st.binary(min_size=length - 4, max_size=length - 4))
    )
    for offset in ZEROABLE.get(length, ()):
        if draw(st.booleans()):
            body[offset : offset + 4] = bytes(4)
    return bytes(body), draw(st.integers(0, 9)) > 0


def assert_matches_sdk(tick: Tick, d: dict, received: float) -> None:
    """Assert one Velox tick says what the SDK's dict says."""
    assert tick.ltp == d["last_price"]
    quote_like = "volume_traded" in d
    assert tick.volume == (d["volume_traded"] if quote_like else None)
    assert tick.last_qty == (d["last_traded_quantity"] if quote_like else None)
    assert tick.oi == d.get("oi")
    if "depth" in d:
        best_bid, best_ask = d["depth"]["buy"][0]["price"], d["depth"]["sell"][0]["price"]
        assert tick.bid == (best_bid or None) and tick.ask == (best_ask or None)
    else:
        assert tick.bid is None and tick.ask is None
    # the SDK's times are naive local datetimes; epoch 0 is its reading of "no time"
    times = [d.get("exchange_timestamp"), d.get("last_trade_time")]
    epochs = [t.timestamp() for t in times if t is not None and t.timestamp() != 0]
    assert tick.ts.timestamp() == (epochs[0] if epochs else received)
    assert tick.ts.tzinfo is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packets(), max_size=12), st.integers(1_500_000_000, 1_900_000_000))
def test_decoder_agrees_with_the_sdk_parser(
    sdk: KiteTicker, drawn: list[tuple[bytes, bool]], received: int
) -> None:
    frame = frame_of(*(packet for packet, _ in drawn))
    instruments = {}
    for packet, known in drawn:
        token = struct.unpack_from(">I", packet)[0]
        if known:
            instruments[token] = f"NSE:T{token}"
    ticks = TickDecoder(instruments).decode(frame, received)
    theirs = [d for d in sdk._parse_binary(frame) if d["instrument_token"] in instruments]
    assert len(ticks) == len(theirs)
    for tick, d in zip(ticks, theirs, strict=True):
        assert tick.instrument_id == instruments[d["instrument_token"]]
        assert_matches_sdk(tick, d, received)


# ---- volume: cumulative in, per-candle out ----------------------------------------------------


def full_packet(token: int, ltp: int, volume: int, epoch: int) -> bytes:
    body = bytearray(recorded("full"))
    body[0:8] = struct.pack(">II", token, ltp)
    body[16:20] = struct.pack(">I", volume)
    body[60:64] = struct.pack(">I", epoch)
    return bytes(body)


def test_cumulative_volume_passes_through_to_per_candle_volume() -> None:
    """Kite's volume_traded and Tick.volume are both cumulative for the day: no conversion here;
    the aggregator makes candle volumes, the first tick and a new day included."""
    day1 = int(datetime(2024, 4, 1, 9, 15, 10, tzinfo=IST).timestamp())
    day2 = int(datetime(2024, 4, 2, 9, 15, 10, tzinfo=IST).timestamp())
    stream = [(day1, 1000), (day1 + 30, 1500), (day1 + 60, 1700), (day2, 40), (day2 + 60, 90)]
    decoder = TickDecoder({INFY: "NSE:INFY"})
    aggregator = CandleAggregator(["1m"], emit_forming=False)
    closed = []
    for epoch, volume in stream:
        (tick,) = decoder.decode(frame_of(full_packet(INFY, 150000, volume, epoch)), 0.0)
        assert tick.volume == volume
        closed += aggregator.on_tick(tick)
    assert [b.volume for b in closed] == [1500, 200, 40]


def test_quote_packets_of_full_mode_tokens_are_dropped() -> None:
    """The subscribe's quote-mode snapshot of a token wanted in full mode (no exchange time)
    never becomes a tick: its receive time would move a market clock to the wall clock."""
    decoder = TickDecoder({INFY: "NSE:INFY"}, full_tokens={INFY})
    frame = frame_of(recorded("quote"), recorded("full"), struct.pack(">II", INFY, 157315))
    ticks = decoder.decode(frame, RECEIVED)
    assert [t.ltp for t in ticks] == [1573.7]  # the full packet only
    assert ticks[0].ts == datetime.fromisoformat(expected("full")["timestamp"])
    assert decoder.stats.partial == 2
    assert [t.ltp for t in TickDecoder({INFY: "NSE:INFY"}).decode(frame, RECEIVED)] == [
        1573.15, 1573.7, 1573.15,
    ]  # fmt: skip
