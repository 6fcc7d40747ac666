"""Delivery policy: who gets what, when, and how often (docs/alerts.md, "Policy").

Pure functions and one dataclass, so the rules are testable without a server: severity
thresholds, the de-duplication window, storm control, quiet hours (IST) and retry backoff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from velox.store.alerts import ALERT_SEVERITIES

if TYPE_CHECKING:
    from velox.config import Settings

#: Backoff of the first retry and the longest wait between two attempts (seconds).
RETRY_BASE_S = 5.0
RETRY_CAP_S = 900.0


def severity_rank(severity: str) -> int:
    """Return 0, 1, 2 for info, warning, critical (a threshold keeps ranks >= its own)."""
    return ALERT_SEVERITIES.index(severity)


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """Return ``(start, end)`` of an ``HH:MM-HH:MM`` IST window (it may span midnight).

    Raises ``ValueError`` naming the problem for anything else.

    Examples
    --------
    >>> parse_quiet_hours("22:00-07:30")
    (datetime.time(22, 0), datetime.time(7, 30))
    """
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    hours = [int(match[1]), int(match[3])] if match else []
    minutes = [int(match[2]), int(match[4])] if match else []
    if not match or max(hours) > 23 or max(minutes) > 59:
        raise ValueError("must be HH:MM-HH:MM (IST), e.g. 22:00-07:00")
    start, end = time(hours[0], minutes[0]), time(hours[1], minutes[1])
    if start == end:
        raise ValueError("start and end are the same; unset it for no quiet hours")
    return start, end


def quiet_until(now: datetime, window: tuple[time, time] | None) -> datetime | None:
    """Return when the quiet window holding ``now`` ends (tz-aware), or None outside it.

    ``window`` is IST wall-clock times; a window whose start is after its end spans midnight
    (22:00-07:00 holds 23:30 and 06:59, not 07:00).
    """
    from velox.calendar import IST

    if window is None:
        return None
    start, end = window
    local = now.astimezone(IST)
    clock = local.time().replace(tzinfo=None)
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    ends = datetime.combine(local.date(), end, tzinfo=IST)
    if ends <= local:
        ends += timedelta(days=1)
    return ends


def backoff(
    attempts: int, retry_after: float | None = None, *, base: float = RETRY_BASE_S
) -> float:
    """Return the seconds to wait before attempt ``attempts + 1``.

    The channel's own answer wins (Telegram's 429 ``parameters.retry_after``); otherwise the
    wait doubles from ``base`` with each failed attempt, up to :data:`RETRY_CAP_S`.
    """
    if retry_after is not None:
        return max(0.0, float(retry_after))
    return min(base * 2 ** max(0, attempts - 1), RETRY_CAP_S)


@dataclass(frozen=True, slots=True)
class Policy:
    """How the worker delivers; :meth:`from_settings` reads the ``VELOX_ALERT_*`` settings."""

    #: Lowest severity each channel's configured destination gets.
    min_severity: tuple[tuple[str, str], ...] = (
        ("telegram", "info"), ("email", "info"), ("webhook", "info"),
    )  # fmt: skip
    dedup_window: timedelta = timedelta(minutes=10)
    #: Messages per minute per destination; beyond it, one summary message.
    rate_limit: int = 20
    quiet_hours: tuple[time, time] | None = None
    max_attempts: int = 8
    retry_base: float = RETRY_BASE_S
    #: How long a claim holds a delivery; a worker that dies leaves it due again after this.
    lease: timedelta = timedelta(seconds=60)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        quiet = settings.alert_quiet_hours
        return cls(
            min_severity=(
                ("telegram", settings.alert_telegram_severity),
                ("email", settings.alert_email_severity),
                ("webhook", settings.alert_webhook_severity),
            ),  # fmt: skip
            dedup_window=timedelta(minutes=settings.alert_dedup_minutes),
            rate_limit=settings.alert_rate_limit,
            quiet_hours=parse_quiet_hours(quiet) if quiet else None,
            max_attempts=settings.alert_max_attempts,
        )

    def threshold(self, channel: str) -> str:
        """Return the lowest severity ``channel``'s configured destination gets."""
        return dict(self.min_severity).get(channel, "info")

    def held_until(self, severity: str, now: datetime) -> datetime | None:
        """Return when a ``severity`` alert raised at ``now`` may go, None for at once.

        Critical alerts always go at once; info and warning wait out the quiet hours.
        """
        if severity == "critical":
            return None
        return quiet_until(now, self.quiet_hours)


__all__ = ["Policy", "backoff", "parse_quiet_hours", "quiet_until", "severity_rank"]
