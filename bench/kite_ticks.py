"""Benchmark decoding Kite ticker frames: the SDK's parser vs Velox's decoder, and the pipe.

Workload: ``--frames`` binary frames of ``--packets`` packets each, per mode (ltp, quote, full),
built from Zerodha's recorded full packet (``kiteconnect-mocks/ticker_full.packet``) with
random prices, volumes and times over 200 NSE tokens, as the ticker sends them.

Measured in the same run:

* ``kiteconnect.KiteTicker._parse_binary`` — what ``on_ticks`` gets from the SDK (dicts);
* ``velox.brokers.kite._packets.TickDecoder.decode`` — Velox's decoder into ``Tick`` objects;
* end to end through the pipe (full mode): a child process writes the frames as the ticker
  child does (``B`` records behind their receive time), the parent reads, splits and decodes
  them and calls a callback per tick — ``KiteMarketData``'s own read loop, minus the socket.

The SDK's and Velox's last prices are checked equal before any number is printed.

Run: ``python bench/kite_ticks.py [--frames 1000] [--packets 50]``.
"""

from __future__ import annotations

import argparse
import base64
import random
import struct
import subprocess
import sys
import time

from kiteconnect import KiteTicker

from velox.brokers.base import TickMode
from velox.brokers.kite._packets import TickDecoder
from velox.brokers.kite.ticker import KiteMarketData
from velox.testing import KITE_MOCKS

MOCKS = KITE_MOCKS
TOKENS = [((1000 + k) << 8) | 1 for k in range(200)]  # NSE segment
EPOCH = 1_712_000_000


def packet(mode: str, token: int, rng: random.Random, template: bytes) -> bytes:
    """Return one packet of ``mode`` with random price, volume and time."""
    ltp = rng.randrange(10_000, 5_000_000)
    if mode == "ltp":
        return struct.pack(">II", token, ltp)
    body = bytearray(template)
    body[0:8] = struct.pack(">II", token, ltp)
    body[8:12] = struct.pack(">I", rng.randrange(1, 500))
    body[16:20] = struct.pack(">I", rng.randrange(1, 10_000_000))
    body[60:64] = struct.pack(">I", EPOCH + rng.randrange(0, 22_500))
    return bytes(body[:44]) if mode == "quote" else bytes(body)


def frames(mode: str, count: int, per_frame: int) -> list[bytes]:
    rng = random.Random(7)
    template = base64.b64decode((MOCKS / "ticker_full.packet").read_bytes())
    out = []
    for _ in range(count):
        packets = [packet(mode, rng.choice(TOKENS), rng, template) for _ in range(per_frame)]
        parts = [struct.pack(">H", len(packets))]
        parts += [struct.pack(">H", len(p)) + p for p in packets]
        out.append(b"".join(parts))
    return out


def best_of(repeats: int, fn):  # noqa: ANN001, ANN201 - a tiny timing helper
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


CHILD = """
import struct, sys, time
from velox.brokers.kite.ticker import BINARY, encode_record
frames = sys.stdin.buffer.read().split(b"\\0SPLIT\\0")
import os
records = [encode_record(BINARY, struct.pack(">d", time.time()) + f) for f in frames]
for _ in range({repeat}):
    for r in records:
        os.write(1, r)
"""


def through_pipe(feed: KiteMarketData, data: list[bytes], repeat: int) -> tuple[float, int]:
    """Return (seconds, ticks) for ``repeat`` passes of ``data`` child → parent, decoded."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repeat=repeat)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert child.stdin is not None
    child.stdin.write(b"\0SPLIT\0".join(data))
    child.stdin.close()
    count = [0]

    def callback(event: object) -> None:
        count[0] += 1

    start = time.perf_counter()
    feed._pump(child, callback)  # the feed's own read loop
    elapsed = time.perf_counter() - start
    child.wait()
    return elapsed, count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--packets", type=int, default=50)
    parser.add_argument("--pipe-repeat", type=int, default=10)
    args = parser.parse_args()

    sdk = KiteTicker("api_key", "access_token")
    ids = {token: f"NSE:T{token >> 8}" for token in TOKENS}
    n = args.frames * args.packets
    print(f"{args.frames:,} frames × {args.packets} packets = {n:,} ticks per mode\n")
    print(f"{'mode':<6} {'SDK ticks/s':>14} {'Velox ticks/s':>14} {'ratio':>7}")
    full = []
    for mode in ("ltp", "quote", "full"):
        data = frames(mode, args.frames, args.packets)
        decoder = TickDecoder(ids)
        t_sdk, theirs = best_of(3, lambda d=data: [sdk._parse_binary(f) for f in d])
        t_velox, ours = best_of(3, lambda d=data, dec=decoder: [dec.decode(f, 0.0) for f in d])
        assert [t.ltp for frame in ours for t in frame] == [
            x["last_price"] for frame in theirs for x in frame
        ], mode
        print(f"{mode:<6} {n / t_sdk:>14,.0f} {n / t_velox:>14,.0f} {t_sdk / t_velox:>6.1f}×")
        if mode == "full":
            full = data
            sdk_full = n / t_sdk

    feed = KiteMarketData("api_key", "access_token", instruments={v: k for k, v in ids.items()})
    feed.subscribe(list(ids.values()), TickMode.FULL)  # no child yet: only the token map
    seconds, ticks = through_pipe(feed, full, args.pipe_repeat)
    assert ticks == n * args.pipe_repeat, ticks
    rate = ticks / seconds
    print(
        f"\nfull mode through the pipe (child → parent split + decode + callback): "
        f"{rate:,.0f} ticks/s, {rate / sdk_full:.1f}× the SDK's parser alone"
    )


if __name__ == "__main__":
    main()
