"""Operator commands through the store: issued once, taken and finished exactly once per engine.

A command (``kill``, ``flatten``, …) is one append-only row in ``commands``. Its targets, the
running paper/live runs it applies to, are decided when it is issued, in the same transaction,
and each gets a ``command_targets`` row whose status moves pending → taken → done/failed; every
transition is appended to ``command_events``. An engine asks :meth:`CommandsMixin.
pending_commands` for its run (at start-up and on NOTIFY ``velox_commands``), calls
:meth:`~CommandsMixin.take_command` before acting (recorded before the action, so a crash
afterwards is visible) and :meth:`~CommandsMixin.finish_command` after.

Exactly once across restarts: a target stays pending until taken, so a command issued while the
engine is down is found when it comes back. A target taken but never finished (the engine
crashed in between) is returned again by ``pending_commands`` and ``take_command`` returns True
again; the engine decides what repeating it means. ``kill``, ``reset-kill``, ``flatten``,
``cancel-order``, ``stop-strategy``, ``start-strategy`` and ``switch-mode`` are idempotent; an
``order`` command's
order must carry a client id derived from the command id, so the broker (or the engine's
reconciliation) recognises it and it is never sent twice. Once done or failed, ``take_command``
returns False.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from velox.errors import DataError, ValidationError
from velox.store._values import (
    StoreLike,
    choice,
    ist_column,
    jsonb_text,
    mapping,
    optional_text,
    positive_limit,
    recent_hint,
    text,
    to_ist,
)
from velox.store.runs import unknown_run
from velox.types import Order, check_instrument_id

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: What an operator can ask an engine to do.
COMMAND_VERBS = (
    "kill",
    "reset-kill",
    "stop-strategy",
    "flatten",
    "cancel-order",
    "order",
    "switch-mode",
    "start-strategy",
)
COMMAND_STATUSES = ("pending", "taken", "done", "failed")
#: Modes ``switch-mode`` accepts: send orders to the broker, or only log them.
SWITCH_MODES = ("live", "dry-run")
#: Keys an ``order`` command's args may hold (the :class:`velox.types.Order` fields it sets).
ORDER_ARGS = (
    "instrument_id", "side", "qty", "order_type", "product", "validity", "limit_price",
    "trigger_price", "tag",
)  # fmt: skip

_CLIENT_ID = re.compile(r"^([A-Za-z0-9]{1,10})-\d+$")
_COMMAND_COLUMNS = (
    "c.id, c.created_at, c.issued_by, c.verb, c.account, c.run_id, c.strategy, c.args"
)
_TARGETS = (
    "coalesce((SELECT array_agg(t2.run_id ORDER BY t2.run_id) FROM command_targets AS t2"
    " WHERE t2.command_id = c.id), '{}')"
)


@dataclass(frozen=True, slots=True)
class Command:
    """One operator command as stored: who issued what, for which runs (``targets``).

    ``account``, ``run_id`` and ``strategy`` are the filters it was issued with (None = any);
    ``targets`` are the run ids it was decided to apply to when it was issued.
    """

    id: int
    created_at: datetime
    issued_by: str
    verb: str
    account: str | None
    run_id: str | None
    strategy: str | None
    args: Mapping[str, object]
    targets: tuple[str, ...]


class CommandsMixin(StoreLike):
    """Commands: :meth:`issue_command`, :meth:`pending_commands`, :meth:`take_command`,
    :meth:`finish_command` and the readers."""

    def issue_command(
        self,
        verb: str,
        *,
        issued_by: str,
        account: str | None = None,
        run_id: str | None = None,
        strategy: str | None = None,
        args: Mapping[str, object] | None = None,
    ) -> Command:
        """Store a command for the running paper/live engines it applies to; return it.

        Targets are every run with status ``running`` and mode paper or live that matches
        ``account`` and ``run_id`` (None = any) and, with ``strategy``, runs that strategy.
        A ``cancel-order`` without ``run_id`` goes to the run its ``client_id`` belongs to.
        A command with no target is still stored (``targets == ()``: no engine is running);
        an ``order`` command may have at most one target. The command, its targets and their
        first ``command_events`` rows are one transaction, followed by NOTIFY
        ``velox_commands`` with each target run id ('' when there is none).

        Verb arguments: ``stop-strategy`` needs ``strategy``; ``cancel-order`` needs
        ``args["client_id"]``; ``order`` needs ``args`` instrument_id, side and qty (and may
        give the other :data:`ORDER_ARGS`); ``switch-mode`` needs ``args["mode"]`` in
        :data:`SWITCH_MODES`.

        Raises
        ------
        ValidationError
            Unknown verb (did you mean …?), missing or bad arguments, a ``run_id`` that is
            unknown, not running or a replay, or a strategy that run does not run.

        Examples
        --------
        >>> command = store.issue_command("kill", issued_by="ops@desk", account="ZX1234")
        ... # doctest: +SKIP
        >>> command.targets or "no engine running"                   # doctest: +SKIP
        ('P3',)
        """
        verb = choice("verb", verb, COMMAND_VERBS)
        issued_by = text("issued_by", issued_by)
        account = optional_text("account", account)
        run_id = optional_text("run_id", run_id)
        strategy = optional_text("strategy", strategy)
        arguments = dict(mapping("args", args))
        run_id = _check_arguments(verb, strategy, arguments, run_id)
        args_json = jsonb_text("args", arguments)
        with self._atomic() as conn:
            if run_id is not None:
                _check_target_run(conn, run_id, account, strategy)
            targets = tuple(
                row[0]
                for row in conn.execute(
                    "SELECT run_id FROM runs WHERE status = 'running'"
                    " AND mode IN ('paper', 'live')"
                    " AND (%(account)s::text IS NULL OR account = %(account)s)"
                    " AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)"
                    " AND (%(strategy)s::text IS NULL OR strategies @> jsonb_build_array("
                    "      jsonb_build_object('name', %(strategy)s::text)))"
                    " ORDER BY run_id",
                    {"account": account, "run_id": run_id, "strategy": strategy},
                )
            )
            if verb == "order" and len(targets) > 1:
                raise ValidationError(
                    f"an order command would go to {len(targets)} running engines "
                    f"({', '.join(targets)}) and be placed by each; give run_id"
                )
            command_id, created_at = conn.execute(
                "INSERT INTO commands (issued_by, verb, account, run_id, strategy, args)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb) RETURNING id, created_at",
                (issued_by, verb, account, run_id, strategy, args_json),
            ).fetchone()
            if targets:
                conn.execute(
                    "INSERT INTO command_targets (command_id, run_id)"
                    " SELECT %s, unnest(%s::text[])",
                    (command_id, list(targets)),
                )
                conn.execute(
                    "INSERT INTO command_events (command_id, run_id, status, detail)"
                    " SELECT %s, unnest(%s::text[]), 'pending', %s::jsonb",
                    (command_id, list(targets), jsonb_text("detail", {"issued_by": issued_by})),
                )
            for target in targets or ("",):
                conn.execute("SELECT pg_notify('velox_commands', %s)", (target,))
        log.info(
            "command %d %s by %s -> %s", command_id, verb, issued_by, ", ".join(targets) or "none"
        )
        return Command(
            command_id, to_ist(created_at), issued_by, verb, account, run_id, strategy,
            arguments, targets,
        )  # fmt: skip

    def pending_commands(self, run_id: str) -> list[Command]:
        """Return the commands this run has not finished, oldest first.

        That is its targets still pending, and those taken but never finished (the engine
        crashed between :meth:`take_command` and :meth:`finish_command`).

        Raises
        ------
        DataError
            Unknown run id.
        """
        with self._shared() as conn:
            rows = conn.execute(
                f"SELECT {_COMMAND_COLUMNS}, {_TARGETS} FROM command_targets AS t"
                " JOIN commands AS c ON c.id = t.command_id"
                " WHERE t.run_id = %s AND t.status IN ('pending', 'taken') ORDER BY c.id",
                (run_id,),
            ).fetchall()
            if not rows and conn.execute(
                "SELECT 1 FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone() is None:  # fmt: skip
                raise unknown_run(conn, run_id)
        return [_command(row) for row in rows]

    def take_command(self, command_id: int, run_id: str) -> bool:
        """Mark this run's target of the command taken (audited) before acting on it.

        Returns True for a pending target, and again for one taken but never finished (after
        a restart); False if it is already done or failed.

        Raises
        ------
        ValidationError
            The command has no target ``run_id``.
        """
        with self._atomic() as conn:
            status = _target_status(conn, command_id, run_id)
            if status in ("done", "failed"):
                return False
            conn.execute(
                "UPDATE command_targets SET status = 'taken', taken_at = coalesce(taken_at, now())"
                " WHERE command_id = %s AND run_id = %s",
                (command_id, run_id),
            )
            detail = {"again": True} if status == "taken" else {}
            _event(conn, command_id, run_id, "taken", detail)
        if status == "taken":
            log.warning("run %s takes command %d again (taken before, never finished)",
                        run_id, command_id)  # fmt: skip
        return True

    def finish_command(
        self, command_id: int, run_id: str, *, ok: bool, result: Mapping[str, object]
    ) -> bool:
        """Mark a taken target done (``ok``) or failed, with its ``result`` (JSON), audited.

        Returns True, or False (changing nothing) if it was already done or failed. NOTIFY
        ``velox_commands`` with the run id.

        Raises
        ------
        ValidationError
            No such target, or it was never taken (call :meth:`take_command` first).
        """
        if not isinstance(ok, bool):
            raise ValidationError(f"ok={ok!r} must be True or False")
        result_json = jsonb_text("result", mapping("result", result))
        status = "done" if ok else "failed"
        with self._atomic() as conn:
            before = _target_status(conn, command_id, run_id)
            if before in ("done", "failed"):
                log.warning("command %d for %s is %s already; not finishing it again",
                            command_id, run_id, before)  # fmt: skip
                return False
            if before == "pending":
                raise ValidationError(
                    f"command {command_id} for {run_id} was never taken; call "
                    "take_command() before acting on it, then finish_command()"
                )
            conn.execute(
                "UPDATE command_targets SET status = %s, done_at = now(), result = %s::jsonb"
                " WHERE command_id = %s AND run_id = %s",
                (status, result_json, command_id, run_id),
            )
            conn.execute(
                "INSERT INTO command_events (command_id, run_id, status, detail)"
                " VALUES (%s, %s, %s, %s::jsonb)",
                (command_id, run_id, status, result_json),
            )
            conn.execute("SELECT pg_notify('velox_commands', %s)", (run_id,))
        return True

    def command(self, command_id: int) -> Command:
        """Return one command.

        Raises
        ------
        DataError
            Unknown command id (the message lists recent ones).
        """
        with self._shared() as conn:
            row = conn.execute(
                f"SELECT {_COMMAND_COLUMNS}, {_TARGETS} FROM commands AS c WHERE c.id = %s",
                (command_id,),
            ).fetchone()
            if row is None:
                raise _unknown_command(conn, command_id)
        return _command(row)

    def run_venue(self, run_id: str) -> str:
        """Return where the run's orders go now: ``"live"`` (its broker) or ``"dry-run"``.

        It is the mode of the run's last ``switch-mode`` command that its engine carried out,
        else the run's own (a live run's is live, a paper run's dry-run), as the engine itself
        restores it after a restart (:meth:`velox.engine.Engine.switch_venue`).

        Raises
        ------
        DataError
            Unknown run id.
        """
        with self._shared() as conn:
            run = conn.execute("SELECT mode FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            if run is None:
                raise unknown_run(conn, run_id)
            switched = conn.execute(
                "SELECT t.result->>'mode' FROM command_targets AS t"
                " JOIN commands AS c ON c.id = t.command_id"
                " WHERE t.run_id = %s AND c.verb = 'switch-mode' AND t.status = 'done'"
                " ORDER BY c.id DESC LIMIT 1",
                (run_id,),
            ).fetchone()
        if switched is not None and switched[0] in ("live", "dry-run"):
            return str(switched[0])
        return "live" if run[0] == "live" else "dry-run"

    def command_results(self, command_id: int) -> pd.DataFrame:
        """Return one row per target of a command: run_id, status, taken_at, done_at, result."""
        import pandas as pd

        with self._shared() as conn:
            known = conn.execute("SELECT 1 FROM commands WHERE id = %s", (command_id,)).fetchone()
            if known is None:
                raise _unknown_command(conn, command_id)
            rows = conn.execute(
                "SELECT run_id, status, taken_at, done_at, result FROM command_targets"
                " WHERE command_id = %s ORDER BY run_id",
                (command_id,),
            ).fetchall()
        frame = pd.DataFrame(rows, columns=["run_id", "status", "taken_at", "done_at", "result"])
        for col in ("taken_at", "done_at"):
            ist_column(frame, col)
        return frame

    def wait_command(self, command_id: int, timeout: float) -> pd.DataFrame:
        """Return :meth:`command_results` once every target answered (``done`` or ``failed``)
        or ``timeout`` seconds passed, whichever is first (``velox kill``, the console, tests).
        """
        import time

        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            results = self.command_results(command_id)
            if results["status"].isin(["done", "failed"]).all() or time.monotonic() >= deadline:
                return results
            time.sleep(0.05)

    def command_events(self, command_id: int | None = None) -> pd.DataFrame:
        """Return the audit trail of command targets (all, or one command's) in append order:
        id, command_id, run_id, status, ts, detail."""
        import pandas as pd

        query = "SELECT id, command_id, run_id, status, ts, detail FROM command_events"
        params: tuple = ()
        if command_id is not None:
            query, params = query + " WHERE command_id = %s", (command_id,)
        with self._shared() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        columns = ["id", "command_id", "run_id", "status", "ts", "detail"]
        frame = pd.DataFrame(rows, columns=columns)
        for col in ("id", "command_id"):
            frame[col] = frame[col].astype("int64")
        ist_column(frame, "ts")
        return frame

    def commands(self, *, limit: int | None = None) -> pd.DataFrame:
        """Return commands, newest first: the command's columns, ``targets`` (tuple of run
        ids) and the number of targets ``pending``, ``taken``, ``done`` and ``failed``."""
        import pandas as pd

        counts = ", ".join(
            f"count(*) FILTER (WHERE t.status = '{s}') AS {s}" for s in COMMAND_STATUSES
        )
        query = sql.SQL(
            f"SELECT {_COMMAND_COLUMNS}, coalesce(array_agg(t.run_id ORDER BY t.run_id)"
            f" FILTER (WHERE t.run_id IS NOT NULL), '{{}}'), {counts}"
            " FROM commands AS c LEFT JOIN command_targets AS t ON t.command_id = c.id"
            " GROUP BY c.id ORDER BY c.id DESC"
        )
        if limit is not None:
            query += sql.SQL(" LIMIT {}").format(sql.Literal(positive_limit(limit)))
        with self._shared() as conn:
            rows = conn.execute(query).fetchall()
        columns = ["id", "created_at", "issued_by", "verb", "account", "run_id", "strategy",
                   "args", "targets", *COMMAND_STATUSES]  # fmt: skip
        frame = pd.DataFrame(rows, columns=columns)
        frame["targets"] = frame["targets"].map(tuple)
        for col in ("id", *COMMAND_STATUSES):
            frame[col] = frame[col].astype("int64")
        ist_column(frame, "created_at")
        return frame


def _check_arguments(
    verb: str, strategy: str | None, args: dict[str, object], run_id: str | None
) -> str | None:
    """Check the arguments ``verb`` needs; return the run id (cancel-order may imply it)."""
    if verb == "stop-strategy" and strategy is None:
        raise ValidationError("stop-strategy needs strategy='<name>' (the strategy to stop)")
    if verb == "start-strategy" and strategy is None:
        raise ValidationError(
            "start-strategy needs strategy='<name>' (the stopped strategy to start again)"
        )
    if verb == "cancel-order":
        client_id = args.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ValidationError(
                "cancel-order needs args={'client_id': '<run_id>-<n>'} (the order to cancel)"
            )
        match = _CLIENT_ID.match(client_id)
        if match and run_id is None:
            run_id = match.group(1)
        elif match and match.group(1) != run_id:
            raise ValidationError(
                f"order {client_id} belongs to run {match.group(1)}, not run_id={run_id!r}"
            )
    elif verb == "order":
        missing = [key for key in ("instrument_id", "side", "qty") if key not in args]
        unknown = sorted(set(args) - set(ORDER_ARGS))
        if missing or unknown:
            problem = f"is missing {missing}" if missing else f"has unknown keys {unknown}"
            raise ValidationError(
                f"order command args {problem}; give instrument_id, side (BUY/SELL) and qty, "
                f"and optionally {', '.join(ORDER_ARGS[3:])}"
            )
        check_instrument_id(args["instrument_id"])
        try:  # the order's own rules: quantity, enums, the prices its type needs
            Order(client_id="command", strategy=strategy or "", **args)  # type: ignore[arg-type]
        except (ValidationError, TypeError, ValueError) as exc:
            raise ValidationError(f"order command args are not a valid order: {exc}") from None
    elif verb == "switch-mode":
        choice("switch-mode args['mode']", args.get("mode"), SWITCH_MODES)
    return run_id


def _check_target_run(
    conn: psycopg.Connection, run_id: str, account: str | None, strategy: str | None
) -> None:
    """Raise unless ``run_id`` is a running paper/live run of ``account`` running ``strategy``."""
    row = conn.execute(
        "SELECT status, mode, account, strategies FROM runs WHERE run_id = %s", (run_id,)
    ).fetchone()
    if row is None:
        raise ValidationError(str(unknown_run(conn, run_id)))
    status, mode, run_account, strategies = row
    if status != "running":
        raise ValidationError(
            f"run {run_id} is {status}, not running: no engine would take the command"
        )
    if mode == "replay":
        raise ValidationError(f"run {run_id} is a replay; commands go to paper and live runs")
    if account is not None and run_account != account:
        raise ValidationError(f"run {run_id} trades account {run_account!r}, not {account!r}")
    names = [s.get("name") for s in strategies]
    if strategy is not None and strategy not in names:
        raise ValidationError(f"run {run_id} does not run strategy {strategy!r}; it runs {names}")


def _target_status(conn: psycopg.Connection, command_id: int, run_id: str) -> str:
    row = conn.execute(
        "SELECT status FROM command_targets WHERE command_id = %s AND run_id = %s FOR UPDATE",
        (command_id, run_id),
    ).fetchone()
    if row is None:
        targets = [
            r[0]
            for r in conn.execute(
                "SELECT run_id FROM command_targets WHERE command_id = %s ORDER BY run_id",
                (command_id,),
            )
        ]
        raise ValidationError(
            f"command {command_id} has no target {run_id!r}; its targets are {targets}"
        )
    return row[0]


def _event(
    conn: psycopg.Connection, command_id: int, run_id: str, status: str, detail: Mapping
) -> None:
    conn.execute(
        "INSERT INTO command_events (command_id, run_id, status, detail)"
        " VALUES (%s, %s, %s, %s::jsonb)",
        (command_id, run_id, status, jsonb_text("detail", detail)),
    )


def _unknown_command(conn: psycopg.Connection, command_id: object) -> DataError:
    recent = [str(r[0]) for r in conn.execute("SELECT id FROM commands ORDER BY id DESC LIMIT 5")]
    return DataError(
        f"unknown command {command_id!r}{recent_hint(recent, 'commands')}; list them with "
        "store.commands()"
    )


def _command(row: tuple) -> Command:
    command_id, created_at, issued_by, verb, account, run_id, strategy, args, targets = row
    return Command(
        int(command_id), to_ist(created_at), issued_by, verb, account, run_id, strategy,
        args or {}, tuple(targets),
    )  # fmt: skip


__all__ = ["COMMAND_STATUSES", "COMMAND_VERBS", "ORDER_ARGS", "SWITCH_MODES", "Command",
           "CommandsMixin"]  # fmt: skip
