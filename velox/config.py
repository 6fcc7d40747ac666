"""Typed settings from ``VELOX_*`` environment variables and an optional ``velox.toml``.

Precedence: environment > ``velox.toml`` > defaults. Unknown keys are errors (a typo in a risk
limit must not silently fall back to a default). Secrets (broker API keys, passwords, the
database URL, which may embed a password) are read from the environment only and never appear in
``repr``, logs or error messages: :func:`mask_url` is the one function that shows a URL.

The TOML file is ``$VELOX_CONFIG`` (which must exist) or else ``./velox.toml`` (if present).
Keys mirror the field names; the ``[risk]`` table holds the default risk limits of every engine
(the same keys as a ``--risk FILE``, see ``docs/risk.md``)::

    data_dir = "data"
    log_level = "INFO"
    mis_square_off = "15:15"
    callback_budget = 5.0
    dask_scheduler = "tcp://10.0.0.5:8786"

    [risk]
    max_order_notional = 200000

    [[schedules.pipeline]]             # notebooks run by `velox pipeline schedule`
    name = "morning-scan"
    notebook = "notebooks/05_scanner.ipynb"
    at = "09:05"

The ``[schedules]`` table is described in ``docs/pipelines.md`` and checked by
:func:`velox.pipelines.parse_schedules`; its relative notebook paths are read from the folder of
the TOML file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from velox.errors import ConfigError

if TYPE_CHECKING:
    from velox.pipelines import Schedule
    from velox.risk import RiskLimits

ENV_PREFIX = "VELOX_"

#: Fields that may only come from the environment (never from a file someone commits).
SECRET_FIELDS = frozenset(
    {"database_url", "secret_key", "kite_api_secret", "telegram_token", "smtp_password"}
)

#: Fields that may only come from ``velox.toml`` (a table does not fit in one variable).
FILE_ONLY_FIELDS = frozenset({"risk", "schedules"})

#: What a masked password reads as.
MASK = "***"


def _project_root() -> Path:
    """Return the folder holding ``pyproject.toml`` for an editable checkout, else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


@dataclass(frozen=True, slots=True)
class Settings:
    """Velox settings. Build with :func:`load_settings`; do not mutate."""

    data_dir: Path = field(default_factory=lambda: _project_root() / "data")
    #: External PostgreSQL/TimescaleDB URL; ``None`` means the embedded pgserver store.
    database_url: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    #: ``text`` (default) or ``json``: one JSON object per log line with the run's mode, account
    #: and run id (``velox.monitoring``, ``docs/monitoring.md``).
    log_format: str = "text"
    #: Port on which paper and live engines serve ``/metrics``, ``/health`` and ``/ready``
    #: (loopback); ``None``: no metrics endpoint.
    metrics_port: int | None = None
    #: Velox's own MIS square-off time (HH:MM IST), earlier than the broker's; the simulator
    #: squares off MIS positions then (see :attr:`square_off_time`).
    mis_square_off: str = "15:15"
    #: Seconds one strategy callback may run before the engine's watchdog stops that strategy
    #: (``velox.replay``, ``velox paper``; see ``velox.engine.watchdog``).
    callback_budget: float = 5.0
    #: Address of a running Dask scheduler (``tcp://host:port`` or ``tls://host:port``) that
    #: research jobs run on (``velox.backtest.distributed``); ``None`` = a LocalCluster for big
    #: jobs, in-process for small ones.
    dask_scheduler: str | None = None
    #: The ``[risk]`` table of ``velox.toml``: default limits of every engine (``None`` = the
    #: built-in defaults; see :attr:`risk_limits`).
    risk: RiskLimits | None = None
    #: The ``[[schedules.pipeline]]`` entries of ``velox.toml``: notebooks ``velox pipeline
    #: schedule`` runs (see ``docs/pipelines.md``).
    schedules: tuple[Schedule, ...] = ()
    #: Key of the encrypted credential store (``velox.secrets``): a Fernet key (44 url-safe
    #: base64 characters, ``velox.secrets.generate_key()``) or any passphrase; env only.
    secret_key: str | None = field(default=None, repr=False)
    #: The live broker ``velox live`` trades through when ``--broker`` is not given (a name in
    #: ``velox.brokers.LIVE_BROKERS``: ``kite``, ``smartapi``, ``breeze``). Switching a strategy
    #: and its config to another broker is this one setting (``broker = "smartapi"``).
    broker: str | None = None
    #: Zerodha Kite Connect app key (not secret by itself; also storable with
    #: ``velox broker set kite``).
    kite_api_key: str | None = None
    #: Kite Connect app secret; env only (or stored encrypted with ``velox broker set kite``).
    kite_api_secret: str | None = field(default=None, repr=False)
    #: Kite Connect REST root (a loopback simulator's URL in tests and rehearsals).
    kite_root: str = "https://api.kite.trade"
    #: Kite ticker websocket root.
    kite_ws_root: str = "wss://ws.kite.trade"
    #: Kite's login page, where ``velox broker login kite`` sends the user.
    kite_login_url: str = "https://kite.zerodha.com/connect/login"
    #: Port on which live/dry-run deployments take Kite's HTTP postbacks (checksum verified);
    #: ``None``: order updates come from the ticker only.
    kite_postback_port: int | None = None

    #: Angel One SmartAPI REST root (a loopback simulator's URL in tests and rehearsals).
    smartapi_root: str = "https://apiconnect.angelone.in"
    #: SmartAPI market-data websocket (``SmartWebSocketV2``).
    smartapi_ws_root: str = "wss://smartapisocket.angelone.in/smart-stream"
    #: SmartAPI order-update websocket (``SmartWebSocketOrderUpdate``).
    smartapi_order_ws: str = "wss://tns.angelone.in/smart-order-update"
    #: Angel's instrument master (``OpenAPIScripMaster.json``, a static file, not a REST call).
    smartapi_master_url: str = (
        "https://margincalculator.angelbroking.com/OpenAPI_File/files/OpenAPIScripMaster.json"
    )

    #: ICICI Breeze's API host: ICICI's own addresses (REST, v2 candles, both socket.io
    #: streams, the security master) when it is ``https://api.icicidirect.com``, else every
    #: address at this root (a loopback simulator's URL in tests and rehearsals).
    breeze_root: str = "https://api.icicidirect.com"

    # -- alert delivery (velox.alerts, docs/alerts.md): a channel is enabled when configured --
    #: Telegram bot token (secret, env only): enables the Telegram channel.
    telegram_token: str | None = field(default=None, repr=False)
    #: The chat (user, group or channel id) every alert goes to; subscriptions add more.
    telegram_chat_id: str | None = None
    #: Bot API root (tests and rehearsals point it at a loopback stand-in).
    telegram_api_url: str = "https://api.telegram.org"
    #: SMTP server: enables the email channel.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    #: SMTP password (secret, env only); with :attr:`smtp_user` the worker logs in (AUTH).
    smtp_password: str | None = field(default=None, repr=False)
    #: Upgrade the SMTP connection with STARTTLS (certificate verified) before AUTH.
    smtp_starttls: bool = True
    #: PEM file of the CA that signed the SMTP server's certificate (default: system CAs).
    smtp_ca_file: Path | None = None
    #: Comma-separated addresses every alert is mailed to; subscriptions add more.
    alert_email_to: str | None = None
    alert_email_from: str = "velox@localhost"
    #: URL every alert is POSTed to as JSON: enables the webhook channel.
    alert_webhook_url: str | None = None
    #: Lowest severity each channel's configured destination gets (info, warning, critical).
    alert_telegram_severity: str = "info"
    alert_email_severity: str = "info"
    alert_webhook_severity: str = "info"
    #: An alert whose dedup_key was delivered to a destination less than this many minutes ago
    #: is not sent there again (kept as ``suppressed``).
    alert_dedup_minutes: float = 10.0
    #: Messages per minute per destination; beyond it the rest go as one summary message.
    alert_rate_limit: int = 20
    #: ``HH:MM-HH:MM`` IST: info and warning alerts are held until the window ends; critical
    #: ones always go. ``None``: no quiet hours.
    alert_quiet_hours: str | None = None
    #: Attempts before a delivery is marked ``failed`` (and reported).
    alert_max_attempts: int = 8

    @property
    def store_dir(self) -> Path:
        """Where the embedded PostgreSQL keeps its data directory."""
        return self.data_dir / "store"

    @property
    def square_off_time(self) -> time:
        """:attr:`mis_square_off` as a :class:`datetime.time` (IST wall clock)."""
        return time.fromisoformat(self.mis_square_off)

    @property
    def risk_limits(self) -> RiskLimits:
        """The engines' default risk limits: the ``[risk]`` table, else the built-in defaults."""
        from velox.risk import RiskLimits

        return self.risk if self.risk is not None else RiskLimits()

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECRET_FIELDS}
        if self.database_url:
            shown["database_url"] = mask_url(self.database_url)
        for name in ("secret_key", "kite_api_secret", "telegram_token", "smtp_password"):
            if getattr(self, name):
                shown[name] = MASK
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


# ---- secrets in URLs -------------------------------------------------------------------------

#: ``scheme://user:PASSWORD@`` (the password ends at the last ``@`` before the host part).
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)(?P<secret>[^\s]*)@")
#: ``password=…`` in a conninfo string or a URI query (quoted, or up to the next separator).
_KEY_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'?|[^\s&;]*)", re.IGNORECASE
)
#: ``user:PASSWORD@host`` without a scheme (a common slip that libpq cannot parse).
_BARE_PASSWORD = re.compile(r"^(?P<head>[^\s:/@=]+:)(?P<secret>[^\s]*)@")


def _patterns(url: str) -> tuple[re.Pattern[str], ...]:
    if "://" in url:
        return (_URI_PASSWORD, _KEY_PASSWORD)
    return (_KEY_PASSWORD, _BARE_PASSWORD)


def url_secrets(url: str) -> list[str]:
    """Return the password texts found in a database URL or conninfo string (maybe malformed)."""
    found = []
    for pattern in _patterns(url):
        for match in pattern.finditer(url):
            secret = match.group("secret").strip("'")
            if secret:
                found += {secret, unquote(secret)}  # libpq may quote it decoded
    return found


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, however malformed the URL is.

    The one function that shows a database URL (logs, errors, ``repr``, ``velox config``):
    it works on the text, never by parsing, so a URL libpq refuses is still masked.

    Examples
    --------
    >>> mask_url("postgresql://velox:s3cret@db.example:5432/velox")
    'postgresql://velox:***@db.example:5432/velox'
    >>> mask_url("host=db password='s3 cret' dbname=velox")
    'host=db password=*** dbname=velox'
    >>> mask_url("postgresql://velox:s3cret@[::1/velox")
    'postgresql://velox:***@[::1/velox'
    """
    text = url
    for pattern in _patterns(url):
        tail = "" if pattern is _KEY_PASSWORD else "@"
        text = pattern.sub(lambda m, tail=tail: m.group("head") + MASK + tail, text)
    return redact(text, url)


def redact(text: str, url: str | None) -> str:
    """Return ``text`` (an error message, a log line) with every password of ``url`` masked.

    libpq and psycopg quote the URL they could not parse in their messages; this is applied to
    any such message before it is shown.
    """
    if not url:
        return text
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _check_database_url(raw: str, source: str) -> str:
    """Refuse a URL libpq cannot parse, with the URL masked and nothing chained."""
    from psycopg.conninfo import conninfo_to_dict

    if not raw.strip():
        raise ConfigError(f"{source}: the database URL is empty; unset it for the embedded store")
    try:
        conninfo_to_dict(raw)
    except Exception as exc:  # psycopg.ProgrammingError; its message quotes the raw URL
        problem = redact(str(exc).strip().splitlines()[0], raw)
        raise ConfigError(
            f"{source}: malformed database URL {mask_url(raw)!r}: {problem}; expected e.g. "
            "postgresql://user:password@host:5432/dbname"
        ) from None
    return raw


# ---- values ----------------------------------------------------------------------------------


def _check_data_dir(raw: object, source: str) -> Path:
    if isinstance(raw, Path):
        text = str(raw)
    elif isinstance(raw, str):
        text = raw
    else:
        raise ConfigError(
            f"{source}: data_dir={raw!r} must be a folder path (a string), not {type(raw).__name__}"
        )
    if not text.strip():
        raise ConfigError(f"{source}: data_dir is empty; give the folder holding data/ and store/")
    if text != text.strip() or any(not ch.isprintable() for ch in text):
        raise ConfigError(
            f"{source}: data_dir={text!r} has leading/trailing blanks or control characters; "
            "it does not look like a path"
        )
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{source}: data_dir={text!r} is a file, not a folder")
    return path


def _check_square_off(raw: object, source: str) -> str:
    from velox.calendar import SESSION_CLOSE, SESSION_OPEN

    if isinstance(raw, time):  # a TOML local time, 15:15:00
        value = raw
    else:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(raw).strip())
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            raise ConfigError(f"{source}: mis_square_off={raw!r} must be HH:MM (IST), e.g. 15:15")
        value = time(int(match[1]), int(match[2]))
    if value.second or value.microsecond or value.tzinfo is not None:
        raise ConfigError(f"{source}: mis_square_off={raw!r} must be a whole minute HH:MM (IST)")
    if not SESSION_OPEN < value < SESSION_CLOSE:
        raise ConfigError(
            f"{source}: mis_square_off={raw!r} is outside market hours: it must be after the "
            f"session open {SESSION_OPEN:%H:%M} and before the close {SESSION_CLOSE:%H:%M} IST"
        )
    return value.strftime("%H:%M")


def _check_callback_budget(raw: object, source: str) -> float:
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{source}: callback_budget={raw!r} must be seconds > 0 (how long one strategy "
            "callback may run before its strategy is stopped), e.g. 5"
        )
    return value


def _check_dask_scheduler(raw: object, source: str) -> str:
    from urllib.parse import urlsplit

    example = "e.g. tcp://10.0.0.5:8786 (the address `dask scheduler` prints)"
    if not isinstance(raw, str):
        raise ConfigError(
            f"{source}: dask_scheduler={raw!r} must be a scheduler address (a string), {example}"
        )
    text = raw.strip()
    if not text:
        raise ConfigError(
            f"{source}: dask_scheduler is empty; unset it to run on a LocalCluster, or give "
            f"a scheduler address, {example}"
        )
    problem = None
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError for a port that is not a number in 0–65535
    except ValueError:
        parts, port, problem = None, None, "its port is not a number from 1 to 65535"
    if parts is not None:
        if parts.scheme not in ("tcp", "tls"):
            problem = "it must start with tcp:// or tls://"
        elif not parts.hostname:
            problem = "it names no host"
        elif port is None or port == 0:
            problem = "it names no port (a scheduler listens on one, 8786 by default)"
        elif parts.path or parts.query or parts.fragment or parts.username:
            problem = "it must be scheme://host:port and nothing more"
    if problem:
        raise ConfigError(
            f"{source}: dask_scheduler={raw!r} is not a Dask scheduler address: {problem}; "
            f"{example}"
        )
    return text


def _check_risk(raw: object, source: str) -> RiskLimits:
    from velox.risk import RiskLimits

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: risk must be a [risk] table of limits (see docs/risk.md)")
    return RiskLimits.from_mapping(raw, source=f"{source} [risk]")


def _check_schedules(raw: object, source: str) -> tuple[Schedule, ...]:
    from velox.pipelines import parse_schedules

    return parse_schedules(raw, source=f"{source} [schedules]", base=Path(source).parent)


def _check_text(name: str, raw: object, source: str, *, secret: bool = False) -> str:
    """Return a non-empty one-line setting (a secret is never quoted in the error)."""
    shown = MASK if secret else repr(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: {name}={shown} must be a non-empty string; unset it instead")
    if raw != raw.strip() or not raw.isprintable():
        raise ConfigError(
            f"{source}: {name}={shown} has leading/trailing blanks or control characters"
        )
    return raw


def _check_root(name: str, raw: object, source: str, schemes: tuple[str, ...]) -> str:
    from urllib.parse import urlsplit

    text = _check_text(name, raw, source)
    parts = urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            f"{source}: {name}={text!r} must be a URL starting with "
            + " or ".join(f"{s}://" for s in schemes)
            + " and naming a host"
        )
    return text.rstrip("/")


def _check_broker(raw: object, source: str) -> str:
    from velox.brokers import LIVE_BROKERS

    known = ", ".join(sorted(LIVE_BROKERS))
    if not isinstance(raw, str) or raw.strip().lower() not in LIVE_BROKERS:
        raise ConfigError(f"{source}: broker={raw!r} is not a live broker Velox has; use one of "
                          f"{known}")  # fmt: skip
    return raw.strip().lower()


def _check_port(name: str, raw: object, source: str) -> int:
    text = str(raw).strip()
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise ConfigError(f"{source}: {name}={raw!r} must be a TCP port number (1-65535)")
    return int(text)


_ALERT_TEXT = frozenset({"telegram_chat_id", "smtp_host", "smtp_user", "alert_email_to",
                         "alert_email_from"})  # fmt: skip


def _check_alert_setting(name: str, raw: Any, source: str) -> Any:
    """Coerce one alert-delivery setting (``velox.alerts``); secrets are never quoted."""
    from velox.store.alerts import ALERT_SEVERITIES

    if name in ("telegram_token", "smtp_password"):
        return _check_text(name, raw, source, secret=True)
    if name in _ALERT_TEXT:
        return _check_text(name, raw, source)
    if name in ("telegram_api_url", "alert_webhook_url"):
        return _check_root(name, raw, source, ("https", "http"))
    if name == "smtp_port":
        return _check_port(name, raw, source)
    if name == "smtp_ca_file":
        path = Path(_check_text(name, raw, source)).expanduser()
        if not path.is_file():
            raise ConfigError(f"{source}: smtp_ca_file={raw!r} is not a file (a PEM CA bundle)")
        return path
    if name == "smtp_starttls":
        value = str(raw).strip().lower() if not isinstance(raw, bool) else str(raw).lower()
        if value not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{source}: smtp_starttls={raw!r} must be true or false")
        return value in ("true", "1", "yes")
    if name.endswith("_severity"):
        if raw not in ALERT_SEVERITIES:
            raise ConfigError(f"{source}: {name}={raw!r} must be one of "
                              f"{', '.join(ALERT_SEVERITIES)}")  # fmt: skip
        return raw
    if name == "alert_dedup_minutes":
        try:
            minutes = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            minutes = math.nan
        if not (math.isfinite(minutes) and minutes >= 0):
            raise ConfigError(f"{source}: alert_dedup_minutes={raw!r} must be minutes >= 0")
        return minutes
    if name in ("alert_rate_limit", "alert_max_attempts"):
        text = str(raw).strip()
        if isinstance(raw, bool) or not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{source}: {name}={raw!r} must be a whole number >= 1")
        return int(text)
    if name == "alert_quiet_hours":
        from velox.alerts.policy import parse_quiet_hours

        try:
            parse_quiet_hours(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{source}: alert_quiet_hours={raw!r}: {exc}") from None
        return str(raw).strip()
    raise AssertionError(f"no coercion for setting {name}")  # pragma: no cover


def _coerce(name: str, raw: Any, source: str) -> Any:
    if name.startswith(("telegram_", "smtp_", "alert_")):
        return _check_alert_setting(name, raw, source)
    if name in ("secret_key", "kite_api_secret", "kite_api_key"):
        return _check_text(name, raw, source, secret=name != "kite_api_key")
    if name == "broker":
        return _check_broker(raw, source)
    if name in ("kite_root", "kite_login_url"):
        return _check_root(name, raw, source, ("https", "http"))
    if name in ("smartapi_root", "smartapi_master_url", "breeze_root"):
        return _check_root(name, raw, source, ("https", "http"))
    if name in ("smartapi_ws_root", "smartapi_order_ws"):
        return _check_root(name, raw, source, ("wss", "ws"))
    if name == "kite_ws_root":
        return _check_root(name, raw, source, ("wss", "ws"))
    if name == "kite_postback_port":
        return _check_port(name, raw, source)
    if name == "data_dir":
        return _check_data_dir(raw, source)
    if name == "database_url":
        return _check_database_url(str(raw), source)
    if name == "log_level":
        value = str(raw).upper() if isinstance(raw, str) else None
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(
                f"{source}: log_level={raw!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)"
            )
        return value
    if name == "log_format":
        value = str(raw).strip().lower() if isinstance(raw, str) else None
        if value not in {"text", "json"}:
            raise ConfigError(f"{source}: log_format={raw!r} must be 'text' or 'json'")
        return value
    if name == "metrics_port":
        return _check_port(name, raw, source)
    if name == "mis_square_off":
        return _check_square_off(raw, source)
    if name == "callback_budget":
        return _check_callback_budget(raw, source)
    if name == "dask_scheduler":
        return _check_dask_scheduler(raw, source)
    if name == "risk":
        return _check_risk(raw, source)
    if name == "schedules":
        return _check_schedules(raw, source)
    raise AssertionError(f"no coercion for setting {name}")  # pragma: no cover


def _read_toml(path: Path) -> dict[str, Any]:
    """Return the TOML file's table; any unreadable file is a one-line :class:`ConfigError`."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not a TOML text file (byte 0x{raw[exc.start]:02x} at line {line} is not "
            "UTF-8)"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """Return the TOML file :func:`load_settings` reads (``$VELOX_CONFIG`` or ``./velox.toml``
    if it exists), or None when there is none."""
    env = os.environ if env is None else env
    if env.get("VELOX_CONFIG", "").strip():
        return Path(env["VELOX_CONFIG"]).expanduser()
    path = Path("velox.toml")
    return path if path.exists() else None


def load_settings(
    env: dict[str, str] | None = None, config_file: Path | str | None = None
) -> Settings:
    """Return :class:`Settings` from the environment and an optional TOML file.

    Raises
    ------
    ConfigError
        For an unknown ``VELOX_*`` variable or TOML key (with the closest valid name), a secret
        placed in the file, a ``$VELOX_CONFIG`` that does not exist, an unreadable or non-TOML
        file, or a malformed value.
    """
    import difflib

    env = dict(os.environ if env is None else env)
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    if config_file:
        path, required = Path(config_file), True
    elif "VELOX_CONFIG" in env:
        if not env["VELOX_CONFIG"].strip():
            raise ConfigError("environment VELOX_CONFIG is empty; unset it or name a TOML file")
        path, required = Path(env["VELOX_CONFIG"]).expanduser(), True
    else:
        path, required = Path("velox.toml"), False
    if path.exists() or path.is_symlink():
        data = _read_toml(path)
        for key, raw in data.items():
            if key in SECRET_FIELDS:
                raise ConfigError(
                    f"{path}: {key} is a secret; set {ENV_PREFIX}{key.upper()} in the "
                    "environment instead of the file"
                )
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(
                    f"{path}: unknown setting {key!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
            values[key] = _coerce(key, raw, str(path))
    elif required:
        source = "" if config_file else " (from VELOX_CONFIG)"
        raise ConfigError(f"config file {path}{source} does not exist")

    # not settings: VELOX_CONFIG names the file; the report's two are set by `velox serve` for
    # its Voila child only (velox.web.voila)
    env_only = {"VELOX_CONFIG", "VELOX_REPORT_SECRET", "VELOX_REPORT_TOKEN"}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var in env_only:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key in FILE_ONLY_FIELDS:
            raise ConfigError(
                f"environment: {var} is not a setting; put a [{key}] table in velox.toml"
            )
        if key not in known:
            hint = difflib.get_close_matches(key, known - FILE_ONLY_FIELDS, n=1)
            raise ConfigError(
                f"environment: unknown variable {var}"
                + (f"; did you mean {ENV_PREFIX}{hint[0].upper()}?" if hint else "")
            )
        values[key] = _coerce(key, raw, f"environment {var}")
    return Settings(**values)


_cached: Settings | None = None


def get_settings() -> Settings:
    """Return the process-wide settings, loaded once on first use."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def reset_settings() -> None:
    """Forget cached settings (tests and notebooks that change the environment call this)."""
    global _cached
    _cached = None
