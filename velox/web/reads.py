"""The JSON API's store work, off the Tornado I/O loop, and the reads every client shares.

The I/O loop serves every page, websocket and API request of the process: a store query run
on it (a few milliseconds, or as long as a lock wait) stalls all of them. :class:`Reads` runs
a handler's store work on a small bounded pool of threads, each call on a pooled connection
of its own (:meth:`velox.store.Store.own_connection`), so requests wait for PostgreSQL in
parallel and never behind the console's live reader on the store's shared connection.

What is identical for every client and harmless when a fraction of a second old, the run
list and a run's positions, is read once per :data:`CACHE_S` and shared
(:meth:`Reads.run_records`, :meth:`Reads.position_records`, converted to JSON-ready rows
once too): fifty clients polling cost the store one read per period, not fifty. Who may
see which rows is still decided per request, on the live session
(:mod:`velox.web.actions`); commands and sessions are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from velox.web.actions import records

if TYPE_CHECKING:
    from velox.store import Store

T = TypeVar("T")

#: Threads running the API's store work (each holds at most one pooled connection).
READ_THREADS = 4
#: Seconds a shared read (run list, a run's positions) is reused by every client.
CACHE_S = 0.2


class Reads:
    """Run API store work on :data:`READ_THREADS` threads; share the cacheable reads.

    It is a :class:`velox.web.actions.RunReader`: the functions of :mod:`velox.web.actions`
    take a :class:`Reads` where they take a store.
    """

    def __init__(
        self, store: Store, *, threads: int = READ_THREADS, cache_s: float = CACHE_S
    ) -> None:
        self.store = store
        self.cache_s = cache_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="velox-web-read")
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}

    async def run(self, work: Callable[[], T]) -> T:
        """Return ``work()``, run on a read thread whose store calls use its own connection."""
        from tornado.ioloop import IOLoop

        def call() -> T:
            with self.store.own_connection():
                return work()

        return await IOLoop.current().run_in_executor(self._pool, call)

    def run_records(self) -> list[dict[str, object]]:
        """``Store.runs()`` as JSON-ready rows, read and converted at most once per
        :attr:`cache_s` for every client (do not modify them)."""
        return self._cached(("runs",), lambda: records(self.store.runs()))

    def position_records(self, run_id: str) -> list[dict[str, object]]:
        """``Store.run_positions(run_id)`` as JSON-ready rows, at most once per :attr:`cache_s`."""
        return self._cached(
            ("positions", run_id), lambda: records(self.store.run_positions(run_id))
        )

    def _cached(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        # Two threads missing at once both read: cheaper than making one wait for the other.
        value = read()
        with self._lock:
            self._cache[key] = (now, value)
            if len(self._cache) > 1000:  # run ids come from requests: keep the cache bounded
                for old in [k for k, (t, _) in self._cache.items() if now - t >= self.cache_s]:
                    del self._cache[old]
        return value

    def close(self) -> None:
        """Stop the threads (after the requests in flight)."""
        self._pool.shutdown(wait=True)
