"""``velox serve``, ``velox workbench``, ``velox user add | list | disable | enable | passwd |
reset-2fa | link``.

Registered on the main group by ``velox.cli``. Passwords are read from standard input
(``--password-stdin``, for scripts) or prompted without echo; never from an argument, which
would land in the shell history and the process list. See ``docs/web.md``.
"""

from __future__ import annotations

import json
import sys

import click

__all__ = ["register"]


def _users():  # noqa: ANN202
    from velox.auth import Users
    from velox.store import open_store

    return Users(open_store())


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to ask the password on; pass --password-stdin")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


def _print_enrolment(enrolment, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        click.echo(json.dumps(enrolment.to_json()))
        return
    click.echo(f"{enrolment.username} ({enrolment.role})")
    if enrolment.totp_secret:
        click.echo(f"  TOTP secret: {enrolment.totp_secret}")
        click.echo(f"  authenticator URI: {enrolment.otpauth_uri}")
        click.echo("  enter the secret (or a QR code of the URI) in an authenticator app now;")
        click.echo("  it is stored encrypted and not shown again (`velox user reset-2fa` renews)")


@click.group()
def user() -> None:
    """Manage web users: roles admin, trader, investor; passwords and TOTP 2FA."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["admin", "trader", "investor"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True, help="Print the enrolment as one JSON object.")
@click.option("--no-totp", is_flag=True, help="No authenticator (investors only).")
def user_add(name: str, role: str, password_stdin: bool, as_json: bool, no_totp: bool) -> None:
    """Create a user and print the TOTP secret to enrol in an authenticator app."""
    password = _read_password(password_stdin)
    enrolment = _users().add(name, role, password, totp=False if no_totp else None, by="cli")
    _print_enrolment(enrolment, as_json)


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def user_list(as_json: bool) -> None:
    """Show the users, their roles, 2FA and links."""
    users = _users().list()
    if as_json:
        click.echo(json.dumps([u.to_json() for u in users]))
        return
    if not users:
        click.echo("(no users; `velox user add NAME --role admin` creates the first)")
        return
    click.echo(f"{'user':<20} {'role':<9} {'2fa':<4} {'state':<9} links")
    for u in users:
        links = ", ".join([f"account {a}" for a in u.accounts] + [f"run {r}" for r in u.runs])
        state = "disabled" if u.disabled else "active"
        click.echo(
            f"{u.username:<20} {u.role:<9} {'yes' if u.has_totp else 'no':<4} {state:<9} "
            f"{links or '-'}"
        )


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user and end their sessions."""
    _users().disable(name, by="cli")
    click.echo(f"{name}: disabled; sessions ended")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Enable a disabled user again."""
    _users().enable(name, by="cli")
    click.echo(f"{name}: enabled")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password (ends their sessions)."""
    _users().set_password(name, _read_password(password_stdin), by="cli")
    click.echo(f"{name}: password set; sessions ended")


@user.command("reset-2fa")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the enrolment as one JSON object.")
def user_reset_2fa(name: str, as_json: bool) -> None:
    """Give a user a new TOTP secret (the old authenticator stops working)."""
    _print_enrolment(_users().reset_2fa(name, by="cli"), as_json)


@user.command("link")
@click.argument("name")
@click.option("--account", "accounts", multiple=True, help="An account (repeatable).")
@click.option("--run", "runs", multiple=True, help="A run id, investors only (repeatable).")
@click.option("--unlink", is_flag=True, help="Remove these links instead.")
def user_link(name: str, accounts: tuple[str, ...], runs: tuple[str, ...], unlink: bool) -> None:
    """Link an investor to the accounts and runs they see, a trader to the accounts they trade."""
    linked = _users().link(name, accounts=accounts, runs=runs, unlink=unlink, by="cli")
    links = [f"account {a}" for a in linked.accounts] + [f"run {r}" for r in linked.runs]
    click.echo(f"{name} ({linked.role}): {', '.join(links) or 'no links'}")


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=5006, show_default=True,
              help="Port to listen on (0: any free port).")  # fmt: skip
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--secure-cookies", is_flag=True,
              help="Mark cookies Secure even over plain HTTP (behind a TLS proxy).")  # fmt: skip
@click.option("--no-report", is_flag=True,
              help="Do not start the investor report (Voila) at /report/.")  # fmt: skip
def serve(port: int, address: str, secure_cookies: bool, no_report: bool) -> None:
    """Serve the trader console, admin and investor pages, the investor report (Voila, at
    /report/) and the JSON API (Ctrl-C stops)."""
    from velox.web.server import serve as run_server

    def ready(url: str) -> None:
        click.echo(f"Velox web server: {url}/login  (Ctrl-C stops)", err=False)
        if not no_report:
            click.echo(f"Investor report: {url}/report/")
        sys.stdout.flush()

    run_server(port=port, address=address, secure_cookies=secure_cookies, on_ready=ready,
               report=not no_report)  # fmt: skip


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5006, show_default=True,
              help="Port of the web server.")  # fmt: skip
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Demo paper run's replay speed (× wall time).")  # fmt: skip
@click.option("--no-paper", is_flag=True, help="Serve the pages only; start no paper run.")
@click.option("--codes", is_flag=True, help="Print the demo users' current TOTP codes; exit.")
def workbench(port: int, address: str, speed: float, no_paper: bool, codes: bool) -> None:
    """Start the whole workbench: a paper engine and the web server, with demo users.

    Prints the URLs, the demo users' passwords, TOTP secrets and current codes; Ctrl-C stops
    everything. A second start reuses the users and resumes (see docs/web.md).
    """
    from velox.workbench import print_codes, run_workbench

    if codes:
        print_codes(click.echo)
        return
    echo = lambda text: (click.echo(text), sys.stdout.flush())  # noqa: E731
    sys.exit(run_workbench(port=port, address=address, speed=speed, paper=not no_paper,
                           echo=echo))  # fmt: skip


def register(main: click.Group) -> None:
    main.add_command(user)
    main.add_command(serve)
    main.add_command(workbench)
