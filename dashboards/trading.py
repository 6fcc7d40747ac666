"""The trader console, served behind Velox's login: ``python dashboards/trading.py``.

The console itself is :class:`velox.ui.TradingConsole` (watchlist, candle chart or the run's
read-only Performance tab from velox.analytics, positions, blotter, risk panel with the kill
switch, order ticket, live ⇄ dry-run switch); this file serves it the only way it is served, through ``velox serve`` (users, roles, 2FA, CSRF), at
http://localhost:5006/trading. In a notebook, ``velox.ui.console()`` shows the same console
on your own store.
"""

from __future__ import annotations

import sys

from velox.web.server import DEFAULT_PORT, serve

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PORT
    serve(port=port, on_ready=lambda url: print(f"trader console: {url}/trading", flush=True))
