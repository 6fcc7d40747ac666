"""Operator commands for a running engine (the kill switch from outside the engine)."""

from __future__ import annotations

import json
import time as _time
from pathlib import Path
from typing import Protocol

__all__ = ["CommandSource", "FileCommands"]


class CommandSource(Protocol):
    """Operator commands for a running engine (polled by the engine thread on a timer)."""

    def poll(self) -> list[dict[str, str]]:
        """Return new commands (``{"command": "kill", "reason": …}``) and consume them."""
        ...


class FileCommands:
    """Commands as files in a folder: ``velox kill`` writes ``kill-<account>.json`` there.

    The engine polls the folder about every quarter second of wall time and renames a file it
    has acted on to ``*.done``, so a command is executed once. An account of ``""`` matches
    ``kill.json`` (every engine) and ``kill-<account>.json`` for its own account.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> FileCommands.write_kill(folder, account="", reason="test").name
    'kill.json'
    >>> [c["command"] for c in FileCommands(folder, account="A1").poll()]
    ['kill']
    """

    def __init__(self, folder: Path | str, *, account: str = "") -> None:
        self.folder = Path(folder)
        self.account = account

    @staticmethod
    def write_kill(folder: Path | str, *, account: str = "", reason: str = "manual kill") -> Path:
        """Write a kill command file and return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"kill-{account}.json" if account else "kill.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"command": "kill", "reason": reason, "account": account}))
        tmp.replace(path)
        return path

    def poll(self) -> list[dict[str, str]]:
        """Return and consume the kill commands addressed to this engine's account."""
        names = ["kill.json"] + ([f"kill-{self.account}.json"] if self.account else [])
        out = []
        for name in names:
            path = self.folder / name
            if not path.exists():
                continue
            try:
                command = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                command = {"command": "kill", "reason": f"unreadable command file {path.name}"}
            path.replace(path.with_name(f"{path.stem}-{_time.time_ns()}.done"))
            command.setdefault("command", "kill")
            out.append(command)
        return out
