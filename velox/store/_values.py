"""Checks and conversions shared by the run, command and alert tables (private), and what
their Store mixins use of :class:`velox.store.core.Store`.

No pandas at import time: ``velox.store`` stays light, readers import it when they run.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from psycopg import sql

from velox.calendar import IST, IST_NAME
from velox.errors import ValidationError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import pandas as pd
    import psycopg

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def choice(what: str, value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise naming them (did you mean …?)."""
    allowed = tuple(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValidationError(f"{what}={value!r} is not one of {', '.join(allowed)}{hint}")


def text(what: str, value: object, *, empty: bool = False) -> str:
    """Return ``value`` if it is a string (non-empty unless ``empty``), else raise."""
    if not isinstance(value, str) or (not empty and not value):
        raise ValidationError(f"{what}={value!r} must be a non-empty string")
    if "\x00" in value:
        raise ValidationError(f"{what}={value!r} has a NUL character, which PostgreSQL refuses")
    return value


def optional_text(what: str, value: object) -> str | None:
    """Return ``value`` as :func:`text`, or None for None."""
    return None if value is None else text(what, value)


def aware(what: str, value: object) -> datetime:
    """Return a tz-aware datetime, or UTC epoch ns (int) as one; naive values are refused.

    Sub-microsecond parts of an int are dropped: ``timestamptz`` keeps microseconds.
    """
    if type(value) is int:  # the recorder's engine times: first, the cheapest test
        return _EPOCH + timedelta(microseconds=value // 1000)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValidationError(
                f"{what}={value} is naive; pass a tz-aware time (e.g. tzinfo=velox.calendar.IST)"
            )
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return _EPOCH + timedelta(microseconds=int(value) // 1000)
    raise ValidationError(
        f"{what}={value!r} must be a tz-aware datetime or UTC epoch nanoseconds (int)"
    )


def to_ist(value: datetime | None) -> datetime | None:
    """Return a datetime from the server in IST (psycopg gives the session's time zone)."""
    return None if value is None else value.astimezone(IST)


def jsonb_text(what: str, value: object) -> str:
    """Return ``value`` as JSON text for a ``jsonb`` column, or raise naming the bad part.

    Mappings, lists/tuples/sets, strings, numbers, booleans and None are kept; numpy scalars
    become numbers, dates and datetimes ISO 8601 strings, enums their value. JSON has no NaN
    or infinity (PostgreSQL's jsonb refuses them), so a non-finite float becomes null.
    """
    return json.dumps(_plain_json(what, value), separators=(",", ":"), allow_nan=False)


def _plain_json(where: str, value: object) -> object:
    if value is None or isinstance(value, bool | str | int):
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError(f"{where} contains a NUL character, which PostgreSQL refuses")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return _plain_json(where, value.value)
    if isinstance(value, np.generic):
        return _plain_json(where, value.item())
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise ValidationError(f"{where} has key {key!r}; JSON keys must be strings")
            out[str(key)] = _plain_json(f"{where}[{key!r}]", item)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_plain_json(f"{where}[{i}]", item) for i, item in enumerate(items)]
    raise ValidationError(
        f"{where} holds a {type(value).__name__} ({value!r:.60}), which cannot be stored as "
        "JSON; give strings, numbers, booleans, None, lists or mappings"
    )


def mapping(what: str, value: object) -> Mapping[str, object]:
    """Return ``value`` (None → {}) if it is a mapping, else raise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be a mapping (dict), got {type(value).__name__}")
    return value


def ist_column(frame: pd.DataFrame, column: str) -> None:
    """Convert ``frame[column]`` (datetimes or None from the server) to IST in place."""
    import pandas as pd

    # ns like every other frame of the store (pandas would pick us for datetime objects)
    frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(IST_NAME).dt.as_unit("ns")


def recent_hint(ids: list[str], what: str) -> str:
    """Return '; recent <what>: a, b, c' or '; there are no <what> yet'."""
    return f"; recent {what}: {', '.join(ids)}" if ids else f"; there are no {what} yet"


def number(what: str, value: object) -> float:
    """Return ``value`` as a float if it is a real number (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValidationError(f"{what}={value!r} must be a number")
    return float(value)


def positive_limit(limit: object) -> int:
    """Return a reader's ``limit`` if it is a positive int, else raise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValidationError(f"limit={limit!r} must be a positive int (or None for all)")
    return limit


def identifiers(columns: Sequence[str]) -> sql.Composable:
    """Return ``a, b, c`` as quoted SQL identifiers."""
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def filtered_select(
    table: str,
    columns: Sequence[str],
    filters: Iterable[tuple[str, object, Iterable[str] | None]],
    order_by: str,
    limit: object,
) -> tuple[sql.Composed, list[object]]:
    """Return a listing query of ``table`` and its values: ``column = value`` for each filter
    whose value is not None (checked against its allowed values, if any), newest first by
    ``order_by`` (trusted SQL), at most ``limit`` rows (None: all)."""
    conditions, values = [], []
    for name, value, allowed in filters:
        if value is not None:
            if allowed is not None:
                choice(name, value, allowed)
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            values.append(value)
    query = sql.SQL("SELECT {} FROM {}").format(identifiers(columns), sql.Identifier(table))
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query += sql.SQL(" ORDER BY " + order_by)
    if limit is not None:
        query += sql.SQL(" LIMIT {}").format(sql.Literal(positive_limit(limit)))
    return query, values


class StoreLike:
    """What the mixins use of :class:`velox.store.core.Store` (for type checkers only)."""

    if TYPE_CHECKING:

        def _shared(
            self, conn: psycopg.Connection | None = None
        ) -> AbstractContextManager[psycopg.Connection]: ...

        def _atomic(
            self, conn: psycopg.Connection | None = None
        ) -> AbstractContextManager[psycopg.Connection]: ...

        def connect(self, *, autocommit: bool = False) -> psycopg.Connection: ...
