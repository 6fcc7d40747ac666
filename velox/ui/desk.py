"""A :class:`Desk`: whose screen a component is on — what they may see and how they act.

Every :mod:`velox.ui` component takes a desk and nothing else from its host, so the same
watchlist or kill switch works in a JupyterLab cell and on the web console:

* :meth:`Desk.notebook` — a quant or trader in their own notebook, on their own store. Commands
  are stored with ``issued_by="notebook"`` (or the name given) and executed by the engines like
  any other, through their risk engine.
* :meth:`Desk.web` — one browser session of ``velox serve``. Every read of the run list and
  every command goes through the live session (:mod:`velox.web.actions`), so roles are
  enforced on the server whatever the page shows, and a session that ends stops acting.

Neither holds broker credentials or calls a broker: reads come from the store
(:class:`velox.ui.live.LiveRuns`), actions are command rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from velox.ui.live import LiveRuns

if TYPE_CHECKING:
    from velox.store import Store
    from velox.store.commands import Command
    from velox.web.server import PageContext

#: Roles whose desk shows trading controls (the server checks every command again).
TRADING_ROLES = frozenset({"admin", "trader"})


@dataclass
class Desk:
    """One user's view of the store: the runs they may see and the commands they may issue."""

    store: Store
    user: str
    role: str
    #: Runs the user may see, newest first (dicts of ``Store.runs`` columns).
    visible_runs: Callable[[], list[dict[str, Any]]]
    #: ``issue(verb, *, account, run_id, strategy, args) -> Command``, checked by the host.
    issue: Callable[..., Command]

    @classmethod
    def notebook(cls, store: Store | None = None, *, user: str = "notebook") -> Desk:
        """The desk of a notebook on ``store`` (the default store if None)."""
        if store is None:
            from velox.store import open_store

            store = open_store(create=False)

        def runs() -> list[dict[str, Any]]:
            return store.runs().to_dict("records")

        def issue(verb: str, **kwargs: Any) -> Command:
            return store.issue_command(verb, issued_by=user, **kwargs)

        return cls(store, user, "trader", runs, issue)

    @classmethod
    def web(cls, ctx: PageContext) -> Desk:
        """The desk of one web session; every call re-checks the live session."""
        from velox.web.actions import visible_runs

        session = ctx.session()
        return cls(
            ctx.store, session.username, session.role,
            lambda: visible_runs(ctx.store, ctx.session()), ctx.submit,
        )  # fmt: skip

    @property
    def live(self) -> LiveRuns:
        return LiveRuns.shared(self.store)

    @property
    def may_trade(self) -> bool:
        """Whether to show trading controls (a hint for the layout; never the check)."""
        return self.role in TRADING_ROLES

    def running(self) -> list[dict[str, Any]]:
        """The paper and live runs the user may see that are running now."""
        return [r for r in self.visible_runs()
                if r["status"] == "running" and r["mode"] in ("paper", "live")]  # fmt: skip

    def submit(
        self,
        verb: str,
        *,
        run_id: str | None = None,
        account: str | None = None,
        strategy: str | None = None,
        args: Mapping[str, object] | None = None,
    ) -> Command:
        """Issue a command (the host checks the user may) and re-read the run soon after."""
        command = self.issue(verb, account=account, run_id=run_id, strategy=strategy, args=args)
        for target in command.targets or ((run_id,) if run_id else ()):
            self.live.refresh(str(target))
        return command
