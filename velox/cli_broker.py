"""``velox broker set | login | status``: broker credentials and the day's login.

Registered on the main group by ``velox.cli`` (``register(main)``). Secrets are never taken
from the command line (argv is visible to every user of the machine in ``ps``): the API secret
is read from stdin (``--api-secret-stdin``) and everything is stored encrypted in the store
(:mod:`velox.secrets`). See ``docs/kite-adapter.md``.

Examples
--------
::

    $ printf '%s\\n' "$SECRET" | velox broker set kite --api-key abc123 --api-secret-stdin
    $ velox broker login kite                  # prints the login URL, reads the redirect URL
    $ velox broker login kite --request-token XyZ9
"""

from __future__ import annotations

import sys

import click

__all__ = ["register"]

_BROKERS = click.Choice(["kite"])


def _secrets():  # noqa: ANN202 - velox.secrets.SecretStore, imported lazily
    from velox.secrets import SecretStore
    from velox.store import open_store

    return SecretStore(open_store())


def _read_line(prompt: str) -> str:
    """Return one line from stdin (the prompt goes to stderr so stdout stays clean)."""
    if sys.stdin.isatty():
        click.echo(prompt, err=True, nl=False)
    line = sys.stdin.readline()
    if not line:
        raise click.UsageError("nothing was read from stdin")
    return line.strip()


@click.group()
def broker() -> None:
    """Store broker credentials and log in for the trading day."""


@broker.command("set")
@click.argument("name", type=_BROKERS)
@click.option("--api-key", default=None, help="The Kite Connect app's API key.")
@click.option(
    "--api-secret-stdin",
    is_flag=True,
    help="Read the API secret from one line of stdin (never give it on the command line).",
)
def broker_set(name: str, api_key: str | None, api_secret_stdin: bool) -> None:
    """Store the app's API key and secret, encrypted (VELOX_SECRET_KEY or the OS keyring)."""
    from velox.brokers.kite.auth import SECRET_NAMES

    if api_key is None and not api_secret_stdin:
        raise click.UsageError("give --api-key and/or --api-secret-stdin")
    secrets = _secrets()
    if api_key is not None:
        if not api_key.strip() or not api_key.strip().isalnum():
            raise click.BadParameter("an API key is letters and digits", param_hint="--api-key")
        secrets.put(SECRET_NAMES["api_key"], api_key.strip())
    if api_secret_stdin:
        secret = _read_line("API secret: ")
        if not secret:
            raise click.UsageError("the API secret read from stdin is empty")
        secrets.put(SECRET_NAMES["api_secret"], secret)
    stored = [n for n, given in (("API key", api_key), ("API secret", api_secret_stdin)) if given]
    click.echo(f"stored the {name} {' and '.join(stored)} (encrypted)")


@broker.command("login")
@click.argument("name", type=_BROKERS)
@click.option(
    "--request-token",
    default=None,
    help="The request token (or the whole redirect URL); default: read a line from stdin.",
)
def broker_login(name: str, request_token: str | None) -> None:
    """Log in for the day: open the printed URL, then paste the redirect URL or its token."""
    from velox.brokers.kite import auth
    from velox.calendar import IST
    from velox.config import get_settings

    secrets = _secrets()
    credentials = auth.load_credentials(secrets)
    if request_token is None:
        click.echo("Open this URL, log in to Zerodha, and paste the URL you are sent to:")
        click.echo(auth.login_url(credentials.api_key))
        request_token = _read_line("redirect URL or request token: ")
    token = auth.parse_request_token(request_token)
    session = auth.generate_session(
        credentials, token, root=get_settings().kite_root, secrets=secrets
    )
    who = f" as {session.user_id}" if session.user_id else ""
    until = session.expires_at.astimezone(IST)
    click.echo(f"logged in to {name}{who}; the session is valid until {until:%Y-%m-%d %H:%M} IST")


@broker.command("status")
@click.argument("name", type=_BROKERS)
def broker_status(name: str) -> None:
    """Say which credentials are stored and until when the session is valid (no secrets)."""
    from velox.brokers.kite.auth import SECRET_NAMES
    from velox.calendar import IST

    secrets = _secrets()
    stored = set(secrets.names())
    for label, key in SECRET_NAMES.items():
        click.echo(f"{label:>12}: {'stored' if key in stored else 'missing'}")
    found = secrets.get_with_expiry(SECRET_NAMES["access_token"]) if stored else None
    if found is not None and found[1] is not None:
        click.echo(f"{'valid until':>12}: {found[1].astimezone(IST):%Y-%m-%d %H:%M} IST")


def register(main: click.Group) -> None:
    """Add the ``broker`` verbs to the ``velox`` command group."""
    main.add_command(broker)
