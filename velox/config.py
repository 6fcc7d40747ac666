"""Typed settings from ``VELOX_*`` environment variables and an optional ``velox.toml``.

Precedence: environment > ``velox.toml`` > defaults. Unknown keys are errors (a typo in a risk
limit must not silently fall back to a default). Secrets (broker API keys, passwords, the
database URL, which may embed a password) are read from the environment only and never appear in
``repr`` or logs.

The TOML file is looked up at ``$VELOX_CONFIG`` or ``./velox.toml``. Keys mirror the field names::

    data_dir = "data"
    log_level = "INFO"
    mis_square_off = "15:15"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from velox.errors import ConfigError

ENV_PREFIX = "VELOX_"

#: Fields that may only come from the environment (never from a file someone commits).
SECRET_FIELDS = frozenset({"database_url"})


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
    #: Velox's own MIS square-off time (HH:MM IST), earlier than the broker's.
    mis_square_off: str = "15:15"

    @property
    def store_dir(self) -> Path:
        """Where the embedded PostgreSQL keeps its data directory."""
        return self.data_dir / "store"

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECRET_FIELDS}
        if self.database_url:
            shown["database_url"] = "<set>"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _coerce(name: str, raw: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if name == "data_dir":
        return Path(str(raw)).expanduser()
    if name == "log_level":
        value = str(raw).upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"{source}: log_level={raw!r} is not a logging level")
        return value
    if name == "mis_square_off":
        text = str(raw)
        parts = text.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"{source}: mis_square_off={raw!r} must be HH:MM")
        hour, minute = int(parts[0]), int(parts[1])
        if not (9 <= hour <= 15 and 0 <= minute < 60):
            raise ConfigError(f"{source}: mis_square_off={raw!r} must be within market hours")
        return f"{hour:02d}:{minute:02d}"
    if "str" in str(kind):
        return str(raw)
    return raw


def load_settings(
    env: dict[str, str] | None = None, config_file: Path | str | None = None
) -> Settings:
    """Return :class:`Settings` from the environment and an optional TOML file.

    Raises
    ------
    ConfigError
        For an unknown ``VELOX_*`` variable or TOML key (with the closest valid name), a secret
        placed in the file, or a malformed value.
    """
    import difflib

    env = dict(os.environ if env is None else env)
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = Path(config_file) if config_file else Path(env.get("VELOX_CONFIG", "velox.toml"))
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
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
    elif config_file:
        raise ConfigError(f"config file {path} does not exist")

    env_only = {"VELOX_CONFIG"}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var in env_only:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
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
