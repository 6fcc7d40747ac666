"""What a logged-in user may read and do: the one place the web server's rules live.

Every route of :mod:`velox.web.handlers` and every Panel callback of the console calls these
functions with the session token of its request; nothing here trusts the client. A command is
re-checked against a *live* session (so a logout or a disabled user stops an open page too),
the user's role and links, audited in ``auth_events`` and only then stored as a command row
(``issued_by`` = the user), which the engines execute and audit again as they act.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from velox.auth import PermissionDenied, Session, User, Users
from velox.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store
    from velox.store.commands import Command

__all__ = ["submit_command", "visible_positions", "visible_runs"]

#: Roles that may open each page of the web server (the path's first segment).
PAGE_ROLES = {
    "trading": frozenset({"admin", "trader"}),
    "admin": frozenset({"admin"}),
    "investor": frozenset({"admin", "trader", "investor"}),
}
#: Where each role lands after logging in.
HOME = {"admin": "/trading", "trader": "/trading", "investor": "/investor"}


class RunReader(Protocol):
    """What :func:`visible_runs` and :func:`visible_positions` read, as JSON-ready rows: the
    API's shared reads (:class:`velox.web.reads.Reads`, converted once per period for every
    client) or, given a :class:`~velox.store.Store`, :class:`StoreReads` (read on each call)."""

    def run_records(self) -> list[dict[str, object]]: ...

    def position_records(self, run_id: str) -> list[dict[str, object]]: ...


class StoreReads:
    """A :class:`RunReader` reading the store on every call."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def run_records(self) -> list[dict[str, object]]:
        return records(self.store.runs())

    def position_records(self, run_id: str) -> list[dict[str, object]]:
        return records(self.store.run_positions(run_id))


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The rows of ``frame`` as JSON-ready dicts (:func:`_jsonable`)."""
    return [_jsonable(row) for row in frame.to_dict("records")]


def _reader(source: RunReader | Store) -> RunReader:
    return source if hasattr(source, "run_records") else StoreReads(source)  # type: ignore[arg-type]


def live_session(users: Users, token: str | None, *, address: str = "") -> Session:
    """Return the live session of ``token`` or raise PermissionDenied ("log in")."""
    session = users.session(token, address=address)
    if session is None:
        raise PermissionDenied("not logged in, or the session expired; log in again at /login")
    return session


def visible_runs(source: RunReader | Store, session: Session | User) -> list[dict[str, object]]:
    """The runs the user of ``session`` (a Session or a User) may see, newest first, as
    JSON-ready dicts."""
    user = session.user if isinstance(session, Session) else session
    return [
        row
        for row in _reader(source).run_records()
        if Users.can_see(user, account=row.get("account"), run_id=row.get("run_id"))
    ]


def visible_positions(
    source: RunReader | Store, session: Session, *, run_id: str | None = None
) -> list[dict[str, object]]:
    """Positions of one run, or of every running run, that the user may see."""
    reader = _reader(source)
    runs = visible_runs(reader, session)
    if run_id is not None:
        chosen = [r for r in runs if r["run_id"] == run_id]
        if not chosen:
            raise PermissionDenied(f"run {run_id!r} is not one of the runs you may see")
    else:
        chosen = [r for r in runs if r["status"] == "running"]
    return [
        {"run_id": run["run_id"], **row}
        for run in chosen
        for row in reader.position_records(str(run["run_id"]))
    ]


def _run_account(store: Store, run_id: str) -> str:
    try:
        return str(store.run(run_id)["account"])
    except Exception as exc:  # unknown run: the store's own message names it
        raise ValidationError(str(exc)) from None


def submit_command(
    store: Store,
    users: Users,
    token: str | None,
    verb: str,
    *,
    account: str | None = None,
    run_id: str | None = None,
    strategy: str | None = None,
    args: Mapping[str, object] | None = None,
    address: str = "",
) -> Command:
    """Store an operator command for the user of ``token``, after checking they may issue it.

    Raises
    ------
    PermissionDenied
        No live session, an investor, or a trader outside their linked accounts (audited as
        ``forbidden`` with what was asked).
    ValidationError
        A bad verb or arguments (the store's message names the problem).
    """
    session = live_session(users, token, address=address)
    user = session.user
    target_account = account
    owner = run_id
    if owner is None and verb == "cancel-order" and args and "-" in str(args.get("client_id")):
        owner = str(args["client_id"]).rsplit("-", 1)[0]  # client ids are "<run_id>-<n>"
    if target_account is None and owner is not None:
        target_account = _run_account(store, owner)
    asked = {"verb": verb, "account": account, "run_id": run_id, "strategy": strategy,
             "args": dict(args or {})}  # fmt: skip
    if not Users.can_command(user, target_account):
        users.audit("forbidden", user.username, address=address, detail=asked)
        if user.role == "investor":
            raise PermissionDenied("investors cannot issue commands or orders")
        raise PermissionDenied(
            f"{user.username!r} may trade only account(s) {', '.join(user.accounts)}; "
            "name one of them (account) or a run of one (run_id)"
        )
    users.audit("command", user.username, address=address, detail=asked)
    return store.issue_command(
        verb, issued_by=user.username, account=account, run_id=run_id, strategy=strategy,
        args=args,
    )  # fmt: skip


def command_json(command: Command) -> dict[str, object]:
    return {
        "id": command.id,
        "created_at": command.created_at.isoformat(),
        "issued_by": command.issued_by,
        "verb": command.verb,
        "account": command.account,
        "run_id": command.run_id,
        "strategy": command.strategy,
        "args": dict(command.args),
        "targets": list(command.targets),
    }


def _jsonable(row: Mapping[str, object]) -> dict[str, object]:
    """Times as ISO text, NaN as None, numpy scalars as Python numbers."""
    import math

    out: dict[str, object] = {}
    for key, value in row.items():
        if hasattr(value, "isoformat"):
            value = None if value != value else value.isoformat()  # NaT != NaT
        elif hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[str(key)] = value
    return out
