"""The one door to ICICI Direct's official Breeze SDK (``breeze-connect``), side effects shut.

Why this module exists: importing ``breeze_connect`` (1.0.69) does, at module level,

* ``sys.path.insert(1, <the package folder>)`` and ``import config``: the SDK's settings become
  a *top-level* module named ``config``, which shadows (or is shadowed by) any other ``config``
  module of the process, and the package folder stays on ``sys.path`` for good;
* ``os.makedirs("logs")`` and two ``logging.FileHandler("logs/…")`` in whatever folder the
  process runs in (the API log records every response, session tokens among them);
* ``urlopen(SECURITY_MASTER_URL)`` — a ~20 MB download from ICICI with no timeout: an offline
  machine hangs on import — kept in a module global nobody reads;
* ``requests.packages.urllib3.util.connection.HAS_IPV6 = False`` for the whole process.

So :func:`sdk` imports it once, under a lock, with ``breeze_connect.config`` imported as the
package's own submodule and lent to the import as ``sys.modules["config"]`` (the previous entry,
if any, and ``sys.path`` are restored afterwards), ``urlopen`` answering an empty zip at once
(no socket is opened), ``logging.FileHandler`` and ``os.makedirs`` of ``logs`` neutralised, and
the IPv6 switch put back. The SDK's loggers are silenced below WARNING.

The SDK reads its addresses (``API_URL``, ``BREEZE_NEW_URL``, ``LIVE_FEEDS_URL``,
``LIVE_STREAM_URL``, ``SECURITY_MASTER_URL``) from that config module at call time, not from
the instance. :func:`pointed_at` sets them to one root for the duration of a ``with`` block
(under a process-wide lock), so two roots in one process (a simulator and a rehearsal) do not
trample each other. Nothing in the installed SDK is edited.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any

__all__ = ["BreezeUrls", "client", "pointed_at", "sdk", "timeout"]

_lock = threading.Lock()
_urls_lock = threading.RLock()
_modules: SimpleNamespace | None = None


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


class _NoDownload(io.BytesIO):
    """What the SDK's import-time ``urlopen`` gets instead of ICICI's security master."""


def _no_download(*args: object, **kwargs: object) -> _NoDownload:
    return _NoDownload(_empty_zip())


class _NoFile(logging.NullHandler):
    """Stands in for the SDK's import-time ``logging.FileHandler("logs/…")``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()


def sdk() -> SimpleNamespace:
    """Return the SDK's modules (``connect``: ``breeze_connect.breeze_connect``; ``config``),
    imported once, with the import-time side effects described above shut off."""
    global _modules
    with _lock:
        if _modules is None:
            _modules = _import()
        return _modules


def _import() -> SimpleNamespace:
    import importlib
    import importlib.util
    import urllib.request

    import requests

    # The package's __init__ imports the SDK module, which does ``import config``: the
    # settings module is loaded from its file first (nothing of the package runs), under
    # its package name, and lent to that import as the top-level ``config``.
    package = importlib.util.find_spec("breeze_connect")
    if package is None or not package.submodule_search_locations:
        raise ImportError("breeze-connect is not installed: pip install breeze-connect")
    path = os.path.join(next(iter(package.submodule_search_locations)), "config.py")
    spec = importlib.util.spec_from_file_location("breeze_connect.config", path)
    assert spec is not None and spec.loader is not None
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    saved_path = list(sys.path)
    missing = object()
    saved_config: Any = sys.modules.get("config", missing)
    connection = requests.packages.urllib3.util.connection  # type: ignore[attr-defined]
    saved_ipv6 = connection.HAS_IPV6
    real_urlopen, real_handler, real_makedirs = (
        urllib.request.urlopen, logging.FileHandler, os.makedirs,
    )  # fmt: skip

    def makedirs(name: Any, *args: Any, **kwargs: Any) -> None:
        if str(name) != "logs":
            real_makedirs(name, *args, **kwargs)

    sys.modules["config"] = config
    urllib.request.urlopen = _no_download  # type: ignore[assignment]
    logging.FileHandler = _NoFile  # type: ignore[assignment,misc]
    os.makedirs = makedirs  # type: ignore[assignment]
    try:
        module: ModuleType = importlib.import_module("breeze_connect.breeze_connect")
        sys.modules["breeze_connect.config"] = config
        sys.modules["breeze_connect"].config = config  # type: ignore[attr-defined]
    finally:
        urllib.request.urlopen = real_urlopen
        logging.FileHandler = real_handler  # type: ignore[misc]
        os.makedirs = real_makedirs
        sys.path[:] = saved_path
        connection.HAS_IPV6 = saved_ipv6
        if saved_config is missing:
            sys.modules.pop("config", None)
        else:
            sys.modules["config"] = saved_config
    module.urlopen = real_urlopen  # type: ignore[attr-defined]  # the session's master download
    module.requests = _TimedRequests(requests)  # type: ignore[attr-defined]
    module.zip = None  # type: ignore[attr-defined]  # the import-time "download", unused
    for name in ("APILogger", "WebsocketLogger"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.WARNING)  # DEBUG logs carry whole responses (session tokens)
    return SimpleNamespace(connect=module, config=config)


_timeouts = threading.local()


class _TimedRequests:
    """The ``requests`` the SDK module sees: the same functions with a timeout.

    The SDK calls ``requests.get/post/put/delete`` without one, so a silent network would
    hang an order path for ever; each call here waits at most the calling thread's
    :func:`timeout` (10 s when none is set).
    """

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in ("get", "post", "put", "delete"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", getattr(_timeouts, "seconds", 10.0))
            return attr(*args, **kwargs)

        return call


@contextmanager
def timeout(seconds: float) -> Iterator[None]:
    """Make the SDK's requests on this thread wait at most ``seconds`` while the block runs."""
    before = getattr(_timeouts, "seconds", None)
    _timeouts.seconds = seconds
    try:
        yield
    finally:
        if before is None:
            del _timeouts.seconds
        else:
            _timeouts.seconds = before


def client(api_key: str, api_secret: str, user_id: str, session_key: str,
           urls: BreezeUrls) -> Any:  # fmt: skip
    """Return a ``BreezeConnect`` of an existing session, ready for REST calls.

    ``generate_session`` would call ``customerdetails`` again and download ICICI's ~20 MB
    security master twice (``urlopen`` and ``requests.get`` of the same file) on every
    connect, for a token table Velox does not use (it subscribes by stock token and keeps its
    own instrument master); so the session's parts are set as ``generate_session`` sets them
    and its request handler is made the way it makes it.
    """
    connect = sdk().connect
    api = connect.BreezeConnect(api_key=api_key)
    api.user_id, api.session_key, api.secret_key = user_id, session_key, api_secret
    with pointed_at(urls):
        api.api_handler = connect.ApificationBreeze(api)
    return api


#: ICICI's API host (the ``breeze_root`` setting's default).
OFFICIAL_ROOT = "https://api.icicidirect.com"


class BreezeUrls:
    """Where the SDK sends each kind of request (all at one loopback root in tests).

    ``root`` is the host of the REST API (``root + "/breezeapi/api/v1/"``), of the v2
    historical API (``root + "/api/v2/"``), of both socket.io streams and of the security master
    (``root + "/SecurityMaster.zip"``) unless given separately.
    """

    def __init__(
        self,
        root: str,
        *,
        api_url: str | None = None,
        new_url: str | None = None,
        feeds_url: str | None = None,
        stream_url: str | None = None,
        security_master_url: str | None = None,
    ) -> None:
        root = root.rstrip("/")
        self.api_url = api_url or f"{root}/breezeapi/api/v1/"
        self.new_url = new_url or f"{root}/api/v2/"
        # one socket.io server at a loopback root serves both streams: the query names which
        self.feeds_url = feeds_url or f"{root}/?stream=orders"
        self.stream_url = stream_url or f"{root}/?stream=rates"
        self.security_master_url = security_master_url or f"{root}/SecurityMaster.zip"

    @classmethod
    def official(cls) -> BreezeUrls:
        """Return ICICI's own addresses (as ``breeze_connect/config.py`` names them)."""
        return cls(
            OFFICIAL_ROOT,
            api_url="https://api.icicidirect.com/breezeapi/api/v1/",
            new_url="https://breezeapi.icicidirect.com/api/v2/",
            feeds_url="https://livefeeds.icicidirect.com",
            stream_url="https://livestream.icicidirect.com",
            security_master_url="https://directlink.icicidirect.com/MotherAppMaster/SecurityMaster.zip",
        )

    @classmethod
    def for_root(cls, root: str) -> BreezeUrls:
        """Return ICICI's addresses for its own root (the ``breeze_root`` setting's default),
        else every address at ``root`` (a loopback simulator or a rehearsal)."""
        official = cls.official()
        return official if root.rstrip("/") == OFFICIAL_ROOT else cls(root)

    def __repr__(self) -> str:
        return f"BreezeUrls(api_url={self.api_url!r})"


@contextmanager
def pointed_at(urls: BreezeUrls) -> Iterator[ModuleType]:
    """Point the SDK's config module at ``urls`` while the block runs; yield that module.

    The SDK reads these module globals when it builds a request (not when an instance is
    made), so every SDK call that reads one runs inside this block; the lock keeps two
    brokers with different roots from interleaving.
    """
    config = sdk().config
    with _urls_lock:
        saved = {k: getattr(config, k) for k in _URL_NAMES}
        config.API_URL = urls.api_url
        config.BREEZE_NEW_URL = urls.new_url
        config.LIVE_FEEDS_URL = urls.feeds_url
        config.LIVE_STREAM_URL = urls.stream_url
        config.SECURITY_MASTER_URL = urls.security_master_url
        try:
            yield config
        finally:
            for k, v in saved.items():
                setattr(config, k, v)


_URL_NAMES = ("API_URL", "BREEZE_NEW_URL", "LIVE_FEEDS_URL", "LIVE_STREAM_URL",
              "SECURITY_MASTER_URL")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name == "BreezeConnect":
        return sdk().connect.BreezeConnect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
