"""``velox alerts …``: delivering stored alerts and managing users' alert rules (issue 17).

Registered on the main group by ``velox.cli`` (``register(main)``). Heavy modules are imported
inside the verbs so ``velox --help`` stays instant. See ``docs/alerts.md``.
"""

from __future__ import annotations

import click

__all__ = ["register"]


@click.group()
def alerts() -> None:
    """Deliver stored alerts (Telegram, email, webhook) and manage price/indicator alert rules."""


def register(main: click.Group) -> None:
    """Add the ``alerts`` group to the ``velox`` command."""
    main.add_command(alerts)
