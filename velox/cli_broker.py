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
    $ printf '%s\n%s\n' "$PIN" "$TOTP_SECRET" | velox broker set smartapi --api-key K \
          --client-code A123 --pin-stdin --totp-secret-stdin
    $ velox broker login smartapi              # the TOTP is computed from the stored secret
    $ printf '%s\n' "$SECRET" | velox broker set breeze --api-key K --api-secret-stdin
    $ velox broker login breeze                # prints ICICI's login URL, reads the apisession
    $ velox broker login breeze --api-session 12345678
"""

from __future__ import annotations

import sys

import click

__all__ = ["register"]

_BROKERS = click.Choice(["kite", "smartapi", "breeze"])
#: The stored secret whose expiry is the session's, per broker.
_SESSION_SECRET = {"kite": "access_token", "smartapi": "jwt", "breeze": "session_key"}


def _secret_names(name: str) -> dict[str, str]:
    if name == "smartapi":
        from velox.brokers.smartapi.auth import SECRET_NAMES
    elif name == "breeze":
        from velox.brokers.breeze.auth import SECRET_NAMES
    else:
        from velox.brokers.kite.auth import SECRET_NAMES
    return SECRET_NAMES


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
@click.option("--api-key", default=None, help="The broker app's API key.")
@click.option(
    "--api-secret-stdin",
    is_flag=True,
    help="Kite, Breeze: read the API secret from one line of stdin (never give it on the "
    "command line).",
)
@click.option("--client-code", default=None, help="SmartAPI: the Angel One client code.")
@click.option("--pin-stdin", is_flag=True, help="SmartAPI: read the 4-digit PIN from stdin.")
@click.option(
    "--totp-secret-stdin",
    is_flag=True,
    help="SmartAPI: read the TOTP secret (base32, shown beside Angel's QR code) from stdin "
    "(after the PIN when both are given).",
)
def broker_set(
    name: str,
    api_key: str | None,
    api_secret_stdin: bool,
    client_code: str | None,
    pin_stdin: bool,
    totp_secret_stdin: bool,
) -> None:
    """Store the broker login, encrypted (VELOX_SECRET_KEY or the OS keyring). Secrets are
    read from stdin, one line each, never from the command line."""
    names = _secret_names(name)
    given = {"--api-key": api_key is not None, "--api-secret-stdin": api_secret_stdin,
             "--client-code": client_code is not None, "--pin-stdin": pin_stdin,
             "--totp-secret-stdin": totp_secret_stdin}  # fmt: skip
    allowed = {
        "kite": ("--api-key", "--api-secret-stdin"),
        "smartapi": ("--api-key", "--client-code", "--pin-stdin", "--totp-secret-stdin"),
        "breeze": ("--api-key", "--api-secret-stdin"),
    }
    wrong = [opt for opt, on in given.items() if on and opt not in allowed[name]]
    if wrong:
        raise click.UsageError(f"{', '.join(wrong)} is not a {name} setting; {name} takes "
                               f"{', '.join(allowed[name])}")  # fmt: skip
    if not any(given.values()):
        raise click.UsageError(f"give {' and/or '.join(allowed[name])}")
    values: dict[str, str] = {}
    for option, key, text in (("--api-key", "api_key", api_key),
                              ("--client-code", "client_code", client_code)):  # fmt: skip
        if text is not None:
            if not text.strip() or not text.strip().isalnum():
                raise click.BadParameter(f"{option} is letters and digits", param_hint=option)
            values[key] = text.strip()
    for flag, key, prompt in ((api_secret_stdin, "api_secret", "API secret: "),
                              (pin_stdin, "pin", "PIN: "),
                              (totp_secret_stdin, "totp_secret", "TOTP secret: ")):  # fmt: skip
        if flag:
            secret = _read_line(prompt)
            if not secret:
                raise click.UsageError(f"the {prompt.rstrip(': ')} read from stdin is empty")
            values[key] = secret.replace(" ", "") if key == "totp_secret" else secret
    if "pin" in values and not values["pin"].isdigit():
        raise click.UsageError("the SmartAPI PIN read from stdin must be digits")
    if "totp_secret" in values:
        import pyotp

        try:
            pyotp.TOTP(values["totp_secret"]).now()
        except (ValueError, TypeError) as exc:
            raise click.UsageError(f"the TOTP secret read from stdin does not work ({exc}): "
                                   "give the base32 secret Angel shows beside its QR code "
                                   "(letters A-Z and digits 2-7)") from None  # fmt: skip
    secrets = _secrets()
    for key, value in values.items():
        secrets.put(names[key], value)
    labels = {"api_key": "API key", "api_secret": "API secret", "client_code": "client code",
              "pin": "PIN", "totp_secret": "TOTP secret"}  # fmt: skip
    click.echo(f"stored the {name} {' and '.join(labels[k] for k in values)} (encrypted)")


@broker.command("login")
@click.argument("name", type=_BROKERS)
@click.option(
    "--request-token",
    default=None,
    help="Kite: the request token (or the whole redirect URL); default: read a line from stdin.",
)
@click.option(
    "--totp", default=None, help="SmartAPI: the authenticator's code (default: computed from "
    "the stored TOTP secret)."
)  # fmt: skip
@click.option(
    "--api-session", default=None, help="Breeze: the apisession ICICI's login page redirected "
    "with (or that whole URL); default: read a line from stdin."
)  # fmt: skip
def broker_login(
    name: str, request_token: str | None, totp: str | None, api_session: str | None
) -> None:
    """Log in for the day (Kite: open the printed URL, then paste the redirect URL or its
    token; SmartAPI: client code + PIN + TOTP, no browser; Breeze: open the printed URL, then
    paste the apisession)."""
    from velox.calendar import IST
    from velox.config import get_settings

    secrets = _secrets()
    given = {"--request-token": (request_token, "kite"), "--totp": (totp, "smartapi"),
             "--api-session": (api_session, "breeze")}  # fmt: skip
    for option, (value, owner) in given.items():
        if value is not None and owner != name:
            raise click.UsageError(f"{option} is {owner}'s; {name} does not take it")
    if name == "breeze":
        _login_breeze(secrets, api_session)
        return
    if name == "smartapi":
        from velox.brokers.smartapi import auth as angel

        credentials = angel.load_credentials(secrets)
        started = angel.generate_session(
            credentials, totp=totp, root=get_settings().smartapi_root, secrets=secrets
        )
        until = started.expires_at.astimezone(IST)
        click.echo(f"logged in to smartapi as {credentials.client_code}; the session is valid "
                   f"until {until:%Y-%m-%d %H:%M} IST")  # fmt: skip
        return
    from velox.brokers.kite import auth

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


def _login_breeze(secrets: object, api_session: str | None) -> None:
    from urllib.parse import parse_qs, urlparse

    from velox.brokers.breeze import auth as icici
    from velox.calendar import IST

    credentials = icici.load_credentials(secrets)  # type: ignore[arg-type]
    if api_session is None:
        click.echo("Open this URL, log in to ICICI Direct, and paste the apisession (or the URL "
                   "you are sent to):")  # fmt: skip
        click.echo(icici.login_url(credentials.api_key))
        api_session = _read_line("apisession: ")
    if "apisession=" in api_session:
        found = parse_qs(urlparse(api_session.strip()).query).get("apisession", [""])
        api_session = found[0]
    session = icici.generate_session(credentials, api_session, secrets=secrets)  # type: ignore[arg-type]
    until = session.expires_at.astimezone(IST)
    click.echo(f"logged in to breeze as {session.user_id}; the session is taken to be valid "
               f"until {until:%Y-%m-%d %H:%M} IST")  # fmt: skip


@broker.command("status")
@click.argument("name", type=_BROKERS)
def broker_status(name: str) -> None:
    """Say which credentials are stored and until when the session is valid (no secrets)."""
    from velox.calendar import IST

    names = _secret_names(name)
    session = names[_SESSION_SECRET[name]]
    secrets = _secrets()
    stored = set(secrets.names())
    for label, key in names.items():
        click.echo(f"{label:>13}: {'stored' if key in stored else 'missing'}")
    found = secrets.get_with_expiry(session) if session in stored else None
    if found is not None and found[1] is not None:
        click.echo(f"{'valid until':>13}: {found[1].astimezone(IST):%Y-%m-%d %H:%M} IST")


def register(main: click.Group) -> None:
    """Add the ``broker`` verbs to the ``velox`` command group."""
    main.add_command(broker)
