"""SmartAPI tick packets: what Velox's simulator encodes, the official SDK's own parser reads
back field by field (the independent reference), and Velox's decoder agrees with the SDK."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from velox.brokers.smartapi import packets
from velox.brokers.smartapi._sdk import new_feed
from velox.errors import DataError

ROOT = Path(__file__).resolve().parents[3]
TS = datetime(2025, 5, 20, 4, 40, 5, 250_000, tzinfo=UTC)  # 10:10:05.25 IST
DEPTH = {
    "buy": [{"price": 812.35 - 0.05 * k, "quantity": 100 * k, "orders": k} for k in range(1, 6)],
    "sell": [{"price": 812.45 + 0.05 * k, "quantity": 10 * k, "orders": k} for k in range(1, 6)],
}


def _sdk_parse(packet: bytes) -> dict:
    feed = new_feed("jwt", "key", "CLIENT", "feed")
    return feed._parse_binary_data(packet)  # noqa: SLF001 - the SDK's parser is the reference


def _packet(mode: int) -> bytes:
    return packets.encode(
        mode, 1, "3045", sequence=77, ts=TS, ltp=812.4, last_qty=25, average=810.15,
        volume=1_234_567, total_buy=5000.0, total_sell=7000.0,
        ohlc=(805.0, 815.5, 801.25, 806.6), last_trade=TS, oi=0, depth=DEPTH,
        circuit=(887.25, 725.95), week52=(912.0, 680.0),
    )  # fmt: skip


@pytest.mark.parametrize(("mode", "size"), [(1, 51), (2, 123), (3, 379)])
def test_the_sdk_parses_every_field_velox_encodes(mode: int, size: int) -> None:
    packet = _packet(mode)
    assert len(packet) == size
    got = _sdk_parse(packet)
    assert got["subscription_mode"] == mode and got["exchange_type"] == 1
    assert got["token"] == "3045" and got["sequence_number"] == 77
    assert got["exchange_timestamp"] == 1747716005250  # epoch ms of TS
    assert got["last_traded_price"] == 81240  # paise
    if mode >= 2:
        assert got["last_traded_quantity"] == 25 and got["average_traded_price"] == 81015
        assert got["volume_trade_for_the_day"] == 1_234_567
        assert (got["total_buy_quantity"], got["total_sell_quantity"]) == (5000.0, 7000.0)
        assert [got[k] for k in ("open_price_of_the_day", "high_price_of_the_day",
                                 "low_price_of_the_day", "closed_price")] == [
            80500, 81550, 80125, 80660]  # fmt: skip
    if mode == 3:
        assert got["last_traded_timestamp"] == 1747716005
        assert got["upper_circuit_limit"] == 88725 and got["lower_circuit_limit"] == 72595
        assert got["52_week_high_price"] == 91200 and got["52_week_low_price"] == 68000
        # flag 1 marks a buy level (the SDK sorts the ten levels by it)
        levels = got["best_5_buy_data"] + got["best_5_sell_data"]
        buys = sorted(x["price"] for x in levels if x["flag"] == 1)
        assert buys == [81210, 81215, 81220, 81225, 81230]


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_velox_decoder_agrees_with_the_sdk(mode: int) -> None:
    packet = _packet(mode)
    ref = _sdk_parse(packet)
    tick = packets.decode(packet, {(1, "3045"): "NSE:SBIN"})
    assert tick is not None and tick.instrument_id == "NSE:SBIN"
    assert tick.ltp == ref["last_traded_price"] / 100
    assert tick.ts == datetime.fromtimestamp(ref["exchange_timestamp"] / 1000, UTC)
    if mode == 1:
        assert tick.volume is None and tick.last_qty is None
    else:
        assert tick.volume == ref["volume_trade_for_the_day"]
        assert tick.last_qty == ref["last_traded_quantity"]
    if mode == 3:
        levels = ref["best_5_buy_data"] + ref["best_5_sell_data"]
        assert tick.bid == max(x["price"] for x in levels if x["flag"] == 1) / 100
        assert tick.ask == min(x["price"] for x in levels if x["flag"] == 0) / 100
    else:
        assert tick.bid is None and tick.ask is None


def test_unknown_tokens_and_bad_sizes() -> None:
    assert packets.decode(_packet(1), {(1, "2885"): "NSE:RELIANCE"}) is None
    with pytest.raises(DataError, match="SmartAPI packet of 50 bytes for mode 1: expected 51"):
        packets.decode(_packet(1)[:-1], {})
    with pytest.raises(DataError, match="mode 9"):
        packets.decode(b"\x09" + bytes(50), {})


def test_importing_the_sdk_never_reaches_out_nor_writes_logs(tmp_path: Path) -> None:
    """The SDK looks up a public IP at import and writes ./logs at construction; neither
    happens through Velox's door (any non-loopback connect fails the child)."""
    child = """
import socket, sys
real = socket.socket.connect
def guard(self, address):
    if not str(address[0]).startswith("127."):
        raise SystemExit(f"reached out to {address}")
    return real(self, address)
socket.socket.connect = guard
real_lookup = socket.getaddrinfo
def lookup(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"looked up {host}")
    return real_lookup(host, *args, **kwargs)
socket.getaddrinfo = lookup
from velox.brokers.smartapi import _sdk
_sdk.SmartConnect(api_key="k", root="http://127.0.0.1:9")
_sdk.new_feed("jwt", "key", "C", "feed")
_sdk.SmartWebSocketOrderUpdate("jwt", "key", "C", "feed")
print("clean")
"""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}
    done = subprocess.run([sys.executable, "-c", child], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0 and "clean" in done.stdout, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # no ./logs folder


def test_each_feed_keeps_its_own_subscriptions() -> None:
    first, second = new_feed("j", "k", "C", "f"), new_feed("j", "k", "C", "f")
    first.input_request_dict[1] = {1: ["3045"]}
    assert second.input_request_dict == {}
