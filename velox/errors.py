"""Exception hierarchy.

Every error Velox raises on purpose derives from :class:`VeloxError`, so a notebook or the engine
can catch "anything Velox refused" without swallowing programming errors. Messages name the
offending field/value and, where there is one, the fix.
"""

from __future__ import annotations


class VeloxError(Exception):
    """Base class of all deliberate Velox errors."""


class ConfigError(VeloxError):
    """A setting is unknown, malformed or missing (names the key and where it came from)."""


class DataError(VeloxError):
    """Market data failed validation (names the file/row/column and the rule broken)."""


class ValidationError(VeloxError, ValueError):
    """A core value (order, bar, instrument) is nonsense: negative quantity, off-grid price, …"""


class UnknownInstrument(VeloxError, KeyError):
    """An instrument id or broker token is not in the instrument master."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class StoreError(VeloxError):
    """The PostgreSQL store could not be reached, initialised or migrated."""


class BrokerError(VeloxError):
    """A broker (real or simulated) refused or failed a request."""


class OrderRejected(BrokerError):
    """The broker/exchange rejected an order; ``reason`` is the broker-style reason text."""

    def __init__(self, reason: str, *, client_id: str | None = None) -> None:
        super().__init__(reason if client_id is None else f"order {client_id}: {reason}")
        self.reason = reason
        self.client_id = client_id


class AuthExpired(BrokerError):
    """The broker session/token expired; log in again."""


class RateLimited(BrokerError):
    """The broker throttled the request (HTTP 429 or equivalent)."""


class RiskBreach(VeloxError):
    """An order or account state broke a risk limit; ``limit`` names the limit."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(f"{limit}: {message}")
        self.limit = limit


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C; ``result`` is the :class:`~velox.engine.RunResult` of what ran.

    A KeyboardInterrupt (not a :class:`VeloxError`), so whatever ends on Ctrl-C still ends;
    the engine has stopped its strategies and built the report first, so the CLI prints it and
    a notebook can read ``exc.result``.
    """

    def __init__(self, result: object) -> None:
        super().__init__("interrupted")
        self.result = result


class TaskFailed(VeloxError):
    """A task of a job run by :func:`velox.backtest.distributed.run_tasks` raised.

    ``index`` (0-based, in task order) and ``name`` say which task; the task's own exception,
    with its traceback from the worker, is ``__cause__`` (also ``error``).
    """

    def __init__(self, index: int, total: int, name: str, error: BaseException) -> None:
        super().__init__(
            f"task {index} of {total} ({name}) failed: {type(error).__name__}: {error}"
        )
        self.index = index
        self.name = name
        self.error = error
