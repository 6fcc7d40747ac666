"""Kite postbacks: checksum verification and a small HTTP receiver (tornado, own thread).

Kite POSTs every order update of the app's orders as JSON to the app's postback URL. Anyone
who knows the URL can POST too, so each payload carries ``checksum = sha256(order_id +
order_timestamp + api_secret)`` (hex); :func:`verify_postback` recomputes it and a payload
that does not match is refused (HTTP 403) and never reaches the broker. A verified payload
goes to ``handler`` — normally :meth:`KiteBroker.on_kite_order_update
<velox.brokers.kite.adapter.KiteBroker.on_kite_order_update>`, the same path as the ticker's
order messages, so fills are emitted once whichever arrives first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from velox.errors import BrokerError

__all__ = ["PostbackServer", "postback_checksum", "verify_postback"]

log = logging.getLogger(__name__)


def postback_checksum(order_id: str, order_timestamp: str, api_secret: str) -> str:
    """Return Kite's postback checksum: hex ``sha256(order_id + order_timestamp + api_secret)``."""
    text = f"{order_id}{order_timestamp}{api_secret}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_postback(payload: Mapping[str, Any], api_secret: str) -> bool:
    """Return True if ``payload``'s checksum is the one ``api_secret`` makes (constant time)."""
    checksum = payload.get("checksum")
    order_id, stamp = payload.get("order_id"), payload.get("order_timestamp")
    if not isinstance(checksum, str) or order_id is None or stamp is None:
        return False
    expected = postback_checksum(str(order_id), str(stamp), api_secret)
    return hmac.compare_digest(expected, checksum.strip().lower())


class PostbackServer:
    """An HTTP endpoint for Kite postbacks, run on its own thread and event loop.

    Parameters
    ----------
    handler
        Called with each verified payload (from the server's thread; it must be quick).
    api_secret
        The app secret the checksums are made with (never logged).
    host, port
        Where to listen; ``port=0`` picks a free port (see :attr:`port` after :meth:`start`).
    path
        The URL path Kite is configured to POST to.

    Examples
    --------
    >>> server = PostbackServer(broker.on_kite_order_update, secret)   # doctest: +SKIP
    >>> port = server.start()                                          # doctest: +SKIP
    """

    def __init__(
        self,
        handler: Callable[[dict[str, Any]], object],
        api_secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/kite/postback",
    ) -> None:
        self._handler = handler
        self._secret = api_secret
        self.host = host
        self.port = port
        self.path = path
        self.accepted = 0
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"PostbackServer(http://{self.host}:{self.port}{self.path})"

    def handle(self, body: bytes) -> int:
        """Verify and dispatch one request body; return the HTTP status to answer."""
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.refused += 1
            log.warning("refused a Kite postback that is not a JSON object")
            return 400
        if not verify_postback(payload, self._secret):
            self.refused += 1
            log.warning(
                "refused a Kite postback with a bad checksum (order %s): not from Kite, or the "
                "api_secret differs",
                payload.get("order_id"),
            )
            return 403
        self.accepted += 1
        try:
            self._handler(payload)
        except Exception:  # a handler bug must not take the receiver down
            log.exception("postback handler failed for order %s", payload.get("order_id"))
        return 200

    def start(self) -> int:
        """Start listening (in a daemon thread); return the port."""
        self._thread = threading.Thread(target=self._run, name="kite-postbacks", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise BrokerError(f"cannot start the postback server: {self._error}")
        return self.port

    def _run(self) -> None:
        import tornado.httpserver
        import tornado.netutil
        import tornado.web

        server_self = self

        class Handler(tornado.web.RequestHandler):
            def post(self) -> None:
                self.set_status(server_self.handle(self.request.body))
                self.finish()

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            app = tornado.web.Application([(self.path, Handler)])
            http = tornado.httpserver.HTTPServer(app)
            sockets = tornado.netutil.bind_sockets(self.port, self.host)
            http.add_sockets(sockets)
            self.port = sockets[0].getsockname()[1]
        except Exception as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            http.stop()
            loop.run_until_complete(http.close_all_connections())
            loop.close()

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
