"""Run the official KiteTicker against a URL and print its events as JSON lines.

Usage: ``python kite_ticker_child.py WS_URL API_KEY ACCESS_TOKEN MODE TOKENS SECONDS``
(TOKENS comma-separated). Each line is ``{"event": ..., ...}``; times are epoch seconds. The
process exits after SECONDS (the test normally kills it first).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime

from kiteconnect import KiteTicker


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.timestamp()  # the SDK makes naive local times; same process, same zone
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **_plain(fields)}) + "\n")  # type: ignore[dict-item]
    sys.stdout.flush()


def main() -> None:
    ws_url, api_key, access_token, mode, tokens_text, seconds = sys.argv[1:7]
    tokens = [int(t) for t in tokens_text.split(",") if t]
    ticker = KiteTicker(api_key, access_token, root=ws_url, reconnect_max_delay=5)

    def on_connect(ws: KiteTicker, response: object) -> None:
        emit("connect")
        ws.subscribe(tokens)
        ws.set_mode(mode, tokens)

    ticker.on_connect = on_connect
    ticker.on_ticks = lambda ws, ticks: emit("ticks", ticks=ticks)
    ticker.on_order_update = lambda ws, data: emit("order", data=data)
    ticker.on_close = lambda ws, code, reason: emit("close", code=code, reason=str(reason))
    ticker.on_error = lambda ws, code, reason: emit("error", code=code, reason=str(reason))
    ticker.on_reconnect = lambda ws, attempts: emit("reconnect", attempts=attempts)
    threading.Timer(float(seconds), lambda: os._exit(0)).start()
    ticker.connect()


if __name__ == "__main__":
    main()
