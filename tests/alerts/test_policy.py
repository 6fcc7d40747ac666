"""The delivery policy's pure rules, against hand-worked times."""

from __future__ import annotations

import datetime as dt

import pytest

from velox.alerts.policy import Policy, backoff, parse_quiet_hours, quiet_until
from velox.config import load_settings
from velox.errors import ConfigError

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NIGHT = (dt.time(22, 0), dt.time(7, 0))


@pytest.mark.parametrize(("now", "ends"), [
    (dt.datetime(2025, 5, 22, 21, 59, 59, tzinfo=IST), None),
    (dt.datetime(2025, 5, 22, 22, 0, tzinfo=IST), dt.datetime(2025, 5, 23, 7, 0, tzinfo=IST)),
    (dt.datetime(2025, 5, 23, 6, 59, tzinfo=IST), dt.datetime(2025, 5, 23, 7, 0, tzinfo=IST)),
    (dt.datetime(2025, 5, 23, 7, 0, tzinfo=IST), None),
    # 23:30 IST is 18:00 UTC: a UTC time is judged on the IST clock
    (dt.datetime(2025, 5, 22, 18, 0, tzinfo=dt.UTC), dt.datetime(2025, 5, 23, 7, 0, tzinfo=IST)),
])  # fmt: skip
def test_quiet_hours_across_midnight_on_the_ist_clock(now, ends) -> None:  # noqa: ANN001
    assert quiet_until(now, NIGHT) == ends


def test_a_daytime_window_and_critical_always_going() -> None:
    lunch = parse_quiet_hours("12:30-13:15")
    assert quiet_until(dt.datetime(2025, 5, 22, 12, 45, tzinfo=IST), lunch) == dt.datetime(
        2025, 5, 22, 13, 15, tzinfo=IST
    )
    assert quiet_until(dt.datetime(2025, 5, 22, 23, 0, tzinfo=IST), lunch) is None
    policy = Policy(quiet_hours=NIGHT)
    late = dt.datetime(2025, 5, 22, 23, 0, tzinfo=IST)
    assert policy.held_until("critical", late) is None
    assert policy.held_until("warning", late) == dt.datetime(2025, 5, 23, 7, 0, tzinfo=IST)


def test_backoff_doubles_to_a_cap_and_retry_after_wins() -> None:
    assert [backoff(n, base=5) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert backoff(30, base=5) == 900  # capped at 15 minutes
    assert backoff(3, retry_after=7, base=5) == 7


def test_settings_build_the_policy_and_refuse_bad_values() -> None:
    settings = load_settings({"VELOX_ALERT_QUIET_HOURS": "22:00-07:00",
                              "VELOX_ALERT_EMAIL_SEVERITY": "critical",
                              "VELOX_ALERT_DEDUP_MINUTES": "2.5",
                              "VELOX_ALERT_RATE_LIMIT": "7"})  # fmt: skip
    policy = Policy.from_settings(settings)
    assert policy.quiet_hours == NIGHT and policy.threshold("email") == "critical"
    assert policy.threshold("telegram") == "info"
    assert policy.dedup_window == dt.timedelta(seconds=150) and policy.rate_limit == 7
    with pytest.raises(ConfigError, match="alert_email_severity='urgent' must be one of"):
        load_settings({"VELOX_ALERT_EMAIL_SEVERITY": "urgent"})
    with pytest.raises(ConfigError, match="alert_rate_limit='0' must be a whole number >= 1"):
        load_settings({"VELOX_ALERT_RATE_LIMIT": "0"})
    with pytest.raises(ConfigError, match=r"smtp_password=\*\*\* has leading"):
        load_settings({"VELOX_SMTP_PASSWORD": " hunter2"})
    with pytest.raises(ConfigError, match="smtp_password is a secret"):
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp()) / "velox.toml"
        path.write_text('smtp_password = "hunter2"\n')
        load_settings({}, config_file=path)
