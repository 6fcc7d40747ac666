"""PostgreSQL store: embedded (pgserver) by default, any server or TimescaleDB by URL.

``open_store()`` returns the process-wide :class:`Store` for ``VELOX_DATABASE_URL`` when it is
set, else for the embedded PostgreSQL in ``<data_dir>/store`` (started on first use). See
``docs/store.md`` for the schema and deployment options. Engines record their run state with
:class:`RunRecorder`; operators command them with :meth:`Store.issue_command`.
"""

from __future__ import annotations

import os
import threading

from velox.errors import StoreError
from velox.store.alerts import ALERT_KINDS, ALERT_SEVERITIES
from velox.store.commands import COMMAND_VERBS, Command
from velox.store.core import INSTRUMENT_COLUMNS, OHLCV, TABLES, TICK_COLUMNS, Store
from velox.store.listen import CHANNELS, Listener
from velox.store.pipelines import PIPELINE_STATUSES, PipelineBusy
from velox.store.recorder import RunRecorder
from velox.store.runs import RUN_MODES
from velox.store.server import embedded_exists, embedded_url, stop_embedded

_stores: dict[tuple[int, str], Store] = {}
_lock = threading.Lock()


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Return the store for ``url`` (default: settings), opening it once per process.

    ``url=None`` uses ``get_settings().database_url`` (env ``VELOX_DATABASE_URL``) and, when
    that is unset too, the embedded server in ``get_settings().store_dir``. Opening applies
    pending migrations and logs the backend and whether TimescaleDB is in use.

    ``create=False`` is for readers (``velox data list``, ``velox.bars`` …): an embedded store
    that does not exist yet is then a :class:`~velox.errors.StoreError` naming the folder, so a
    mistyped ``data_dir`` is reported instead of answered from a new, empty store (a store that
    is created says so in a warning).

    Examples
    --------
    >>> from velox.store import open_store   # doctest: +SKIP
    >>> store = open_store()                  # doctest: +SKIP
    >>> store.backend, store.timescale        # doctest: +SKIP
    ('embedded', False)
    """
    from velox.config import get_settings

    settings = get_settings()
    if url is None and settings.database_url:
        url = settings.database_url
    key = (os.getpid(), url or f"embedded:{settings.store_dir.resolve()}")
    with _lock:
        store = _stores.get(key)
        if store is None:
            if url is None:
                store_dir = settings.store_dir
                if not create and not embedded_exists(store_dir):
                    raise StoreError(
                        f"no store in {store_dir}: nothing was ever stored under data_dir "
                        f"{settings.data_dir} (check data_dir / VELOX_DATA_DIR); `velox run` "
                        "or `velox data import` creates the store"
                    )
                store = Store(embedded_url(store_dir), backend="embedded", store_dir=store_dir)
            else:
                store = Store(url, backend="external")
            _stores[key] = store
        return store


__all__ = [
    "ALERT_KINDS",
    "ALERT_SEVERITIES",
    "CHANNELS",
    "COMMAND_VERBS",
    "INSTRUMENT_COLUMNS",
    "OHLCV",
    "PIPELINE_STATUSES",
    "RUN_MODES",
    "TABLES",
    "TICK_COLUMNS",
    "Command",
    "Listener",
    "PipelineBusy",
    "RunRecorder",
    "Store",
    "embedded_url",
    "open_store",
    "stop_embedded",
]
