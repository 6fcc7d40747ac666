"""PostgreSQL LISTEN/NOTIFY: wake engines, consoles and workers when rows they watch change.

Channels Velox sends on (payload in brackets): ``velox_runs`` [run id] when a run is created,
restarted or finished and after each batch a :class:`~velox.store.RunRecorder` writes;
``velox_commands`` [target run id, '' for a command without targets] when a command is issued
or a target finished; ``velox_alerts`` [alert id] when an alert is raised or repeated.

A notification is a hint to read the tables again, never the data itself: one sent while a
listener was disconnected is lost, so after reconnecting a :class:`Listener` reports one empty
notification per channel, and readers re-read.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from velox.errors import StoreError, ValidationError
from velox.store._values import StoreLike, text

if TYPE_CHECKING:
    from velox.store.core import Store

log = logging.getLogger(__name__)

#: The channels Velox itself notifies.
CHANNELS = ("velox_runs", "velox_commands", "velox_alerts", "velox_pipelines")


def _channel(name: object) -> str:
    channel = text("channel", name)
    if len(channel.encode()) > 63:
        raise ValidationError(f"channel {channel!r} is longer than PostgreSQL's 63-byte names")
    return channel


class Listener:
    """LISTEN on channels over its own autocommit connection; use it as a context manager.

    Build it with :meth:`velox.store.Store.listen`. :meth:`wait` returns what arrived as
    ``(channel, payload)`` pairs. A lost connection is opened again on the next :meth:`wait`
    (the embedded server is restarted if it was stopped), which then returns ``(channel, '')``
    for every channel: notifications sent meanwhile are gone, so re-read the tables.

    Examples
    --------
    >>> with store.listen("velox_commands") as listener:          # doctest: +SKIP
    ...     for channel, run_id in listener.wait(5.0):
    ...         print(channel, run_id)
    """

    def __init__(self, store: Store, channels: tuple[str, ...]) -> None:
        if not channels:
            raise ValidationError(f"listen() needs at least one channel, e.g. {CHANNELS[0]!r}")
        self.store = store
        self.channels = tuple(dict.fromkeys(_channel(c) for c in channels))
        self._closed = False
        self._conn: psycopg.Connection | None = self._open()

    def _open(self) -> psycopg.Connection:
        conn = self.store.connect(autocommit=True)
        for channel in self.channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        return conn

    def __repr__(self) -> str:
        return f"Listener({', '.join(self.channels)})"

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        """Return the notifications that arrive within ``timeout`` seconds ([] if none).

        Returns as soon as one arrives, with any others already received; never blocks
        longer than ``timeout``.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValidationError(f"timeout={timeout!r} must be seconds >= 0")
        if self._closed:
            raise StoreError("this Listener is closed; open another with store.listen(...)")
        deadline = time.monotonic() + timeout
        if self._conn is None or self._conn.broken or self._conn.closed:
            return self._reconnect(deadline)
        try:
            found = [
                (n.channel, n.payload) for n in self._conn.notifies(timeout=timeout, stop_after=1)
            ]
            if found:  # drain what came in the same packets, without waiting
                found += [(n.channel, n.payload) for n in self._conn.notifies(timeout=0)]
            return found
        except psycopg.OperationalError as exc:
            log.warning("listener on %s lost its connection (%s); reconnecting",
                        ", ".join(self.channels), exc)  # fmt: skip
            return self._reconnect(deadline)

    def _reconnect(self, deadline: float) -> list[tuple[str, str]]:
        """Open the connection again and report every channel once, or wait out the timeout."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            self._conn = self._open()
        except (psycopg.Error, StoreError) as exc:
            log.warning("listener on %s cannot reconnect yet: %s", ", ".join(self.channels), exc)
            time.sleep(max(0.0, deadline - time.monotonic()))
            return []
        return [(channel, "") for channel in self.channels]

    def close(self) -> None:
        """Close the connection (idempotent); notifications not yet read are dropped."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class NotifyMixin(StoreLike):
    """LISTEN/NOTIFY: :meth:`notify` and :meth:`listen`."""

    def notify(self, channel: str, payload: str = "") -> None:
        """Send ``payload`` on ``channel`` (delivered to listeners at once: autocommit)."""
        channel = _channel(channel)
        if not isinstance(payload, str) or len(payload.encode()) >= 8000:
            raise ValidationError(
                "notify payload must be a string under 8000 bytes (PostgreSQL's limit); "
                "store the data in a table and notify its key"
            )
        with self._shared() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def listen(self, *channels: str) -> Listener:
        """Return a :class:`Listener` on ``channels`` (its own connection; close it after)."""
        return Listener(self, channels)  # type: ignore[arg-type]


__all__ = ["CHANNELS", "Listener", "NotifyMixin"]
