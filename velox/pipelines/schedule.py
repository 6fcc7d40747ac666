"""Scheduling pipelines: ``[schedules]`` of velox.toml, which slots are due, APScheduler (private).

Public names are re-exported by :mod:`velox.pipelines`; see ``docs/pipelines.md``.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velox.calendar import IST, IST_NAME
from velox.errors import ConfigError, ValidationError
from velox.pipelines.execute import (
    PipelineError,
    PipelineRun,
    _check_parameters,
    _expand,
    _read_notebook,
    _run,
    _who,
)
from velox.store.pipelines import PipelineBusy, check_pipeline_name

if TYPE_CHECKING:
    from velox.store import Store

log = logging.getLogger(__name__)

#: Default misfire grace: a slot missed by at most this much (machine asleep, scheduler down)
#: still runs, once; later than that it is left (a 09:05 scan at noon helps nobody).
DEFAULT_GRACE = timedelta(minutes=30)
#: ``days`` values of a schedule: NSE sessions (regular and special), or every calendar day.
SCHEDULE_DAYS = ("trading", "every")


@dataclass(frozen=True, slots=True)
class Schedule:
    """One ``[[schedules.pipeline]]`` entry of ``velox.toml`` (see :func:`parse_schedules`).

    ``at`` holds IST wall-clock times; ``days`` is ``"trading"`` (NSE sessions, special ones
    such as a Muhurat Sunday included; holidays and ordinary weekends skipped) or ``"every"``.
    """

    name: str
    notebook: Path
    at: tuple[time, ...]
    parameters: Mapping[str, object] = field(default_factory=dict)
    days: str = "trading"
    grace: timedelta = DEFAULT_GRACE
    no_input: bool = False
    timeout: float | None = None

    def runs_on(self, day: date) -> bool:
        """Return whether the schedule has slots on ``day`` (an IST date)."""
        if self.days == "every":
            return True
        from velox.calendar import is_trading_day

        return is_trading_day(day)

    def slots_on(self, day: date) -> list[datetime]:
        """Return the slots (IST datetimes) of ``day``, or [] if the schedule skips it."""
        if not self.runs_on(day):
            return []
        return [datetime.combine(day, at, tzinfo=IST) for at in self.at]


_SCHEDULES_KEYS = ("grace_minutes", "pipeline")
_PIPELINE_KEYS = (
    "name", "notebook", "at", "parameters", "days", "grace_minutes", "no_input", "timeout",
)  # fmt: skip


def _unknown_key(where: str, key: object, allowed: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), allowed, n=1) or [
        name for name in allowed if name.startswith(str(key))
    ]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint} (allowed: {', '.join(allowed)})")


def _grace(raw: object, where: str) -> timedelta:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 24 * 60:
        raise ConfigError(
            f"{where}: grace_minutes={raw!r} must be minutes > 0 and at most 1440 (how late a "
            "missed run may still start), e.g. 30"
        )
    return timedelta(minutes=raw)


def _times(raw: object, where: str) -> tuple[time, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ConfigError(f'{where}: at=[] names no time; give e.g. at = "09:05"')
    out: list[time] = []
    for item in items:
        value = None
        if isinstance(item, time) and item.tzinfo is None:
            value = item
        elif isinstance(item, str):
            match = re.fullmatch(r"(\d{1,2}):(\d{2})", item.strip())
            if match and int(match[1]) < 24 and int(match[2]) < 60:
                value = time(int(match[1]), int(match[2]))
        if value is None or value.second or value.microsecond:
            raise ConfigError(
                f"{where}: at={item!r} must be an IST wall-clock time HH:MM (whole minutes), "
                'e.g. at = "09:05" or at = ["09:05", "12:30"]'
            )
        if value in out:
            raise ConfigError(f"{where}: at lists {value:%H:%M} twice")
        out.append(value)
    return tuple(sorted(out))


def _parameters(raw: object, where: str) -> dict[str, object]:
    from velox.store._values import jsonb_text

    if not isinstance(raw, dict):
        raise ConfigError(
            f'{where}: parameters must be a table, e.g. parameters = {{ universe = "nifty50" }}'
        )
    out: dict[str, object] = {}
    for key, value in raw.items():
        if not key.isidentifier():
            raise ConfigError(f"{where}: parameter name {key!r} is not a Python identifier")
        if isinstance(value, datetime | date | time):  # TOML dates: ISO text, as stored
            value = value.isoformat()
        out[key] = value
    try:
        jsonb_text("parameters", out)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return out


def parse_schedules(
    raw: object, *, source: str = "velox.toml", base: Path | None = None
) -> tuple[Schedule, ...]:
    """Return the schedules of a ``[schedules]`` table, checked; relative notebooks are read
    from ``base`` (the folder of ``velox.toml``).

    The shape (``docs/pipelines.md``)::

        [schedules]
        grace_minutes = 30                 # optional default for every pipeline

        [[schedules.pipeline]]
        name = "morning-scan"              # 1-64 letters, digits, _ . - (unique)
        notebook = "notebooks/05_scanner.ipynb"
        at = "09:05"                       # IST, or a list ["09:05", "12:30"]
        parameters = { universe = "nifty50" }
        days = "trading"                   # default; "every" = every calendar day
        no_input = false                   # true: code left out of the HTML
        timeout = 600                      # seconds per cell (optional)

    Raises
    ------
    ConfigError
        An unknown key (did you mean …?), a missing name/notebook/at, a malformed time,
        duplicate names, or parameters that are not a table of JSON-able values.
    """
    base = Path.cwd() if base is None else base.absolute()  # a run's row names it absolutely
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: schedules must be a [schedules] table (docs/pipelines.md)")
    for key in raw:
        if key not in _SCHEDULES_KEYS:
            raise _unknown_key(source, key, _SCHEDULES_KEYS)
    grace = _grace(raw["grace_minutes"], source) if "grace_minutes" in raw else DEFAULT_GRACE
    entries = raw.get("pipeline", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(
            f"{source}: pipelines are [[schedules.pipeline]] tables (one per pipeline)"
        )
    out: list[Schedule] = []
    for i, entry in enumerate(entries):
        where = f"{source} pipeline {entry.get('name', i + 1)!r}"
        for key in entry:
            if key not in _PIPELINE_KEYS:
                raise _unknown_key(where, key, _PIPELINE_KEYS)
        for key in ("name", "notebook", "at"):
            if key not in entry:
                raise ConfigError(f"{where}: {key} is missing")
        try:
            name = check_pipeline_name(entry["name"])
        except ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if any(s.name == name for s in out):
            raise ConfigError(f"{source}: two pipelines are named {name!r}; names must be unique")
        notebook = entry["notebook"]
        if not isinstance(notebook, str) or not notebook.strip():
            raise ConfigError(f"{where}: notebook={notebook!r} must be a path to an .ipynb")
        days = entry.get("days", "trading")
        if days not in SCHEDULE_DAYS:
            raise ConfigError(
                f"{where}: days={days!r} must be 'trading' (NSE sessions) or 'every' (every day)"
            )
        no_input = entry.get("no_input", False)
        if not isinstance(no_input, bool):
            raise ConfigError(f"{where}: no_input={no_input!r} must be true or false")
        timeout = entry.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ConfigError(f"{where}: timeout={timeout!r} must be seconds > 0")
        path = Path(notebook).expanduser()
        out.append(
            Schedule(
                name=name,
                notebook=path if path.is_absolute() else base / path,
                at=_times(entry["at"], where),
                parameters=_parameters(entry.get("parameters", {}), where),
                days=days,
                grace=_grace(entry["grace_minutes"], where) if "grace_minutes" in entry else grace,
                no_input=no_input,
                timeout=None if timeout is None else float(timeout),
            )
        )
    return tuple(out)


def check_schedules(schedules: Iterable[Schedule]) -> None:
    """Refuse schedules whose notebook is missing or does not declare their parameters.

    Run at scheduler start, so a typo fails in the terminal, not at 09:05 with nobody watching.
    """
    for schedule in schedules:
        try:
            _read_notebook(schedule.notebook)
            _check_parameters(schedule.notebook, schedule.parameters, strict=True)
        except PipelineError as exc:
            raise PipelineError(f"schedule {schedule.name!r}: {exc}") from None


# ---- which slots are due (pure) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A slot of a schedule that should run now."""

    schedule: Schedule
    slot: datetime


def _ist(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValidationError(
            f"now={now} is naive; pass a tz-aware time (tzinfo=velox.calendar.IST)"
        )
    return now.astimezone(IST)


def slots_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Return the schedule's slots ``start < slot <= end`` (IST), oldest first."""
    start, end = _ist(start), _ist(end)
    out: list[datetime] = []
    day = start.date()
    while day <= end.date():
        out += [s for s in schedule.slots_on(day) if start < s <= end]
        day += timedelta(days=1)
    return out


def next_slot(schedule: Schedule, after: datetime, *, horizon_days: int = 400) -> datetime | None:
    """Return the first slot strictly after ``after`` (IST), or None within ``horizon_days``."""
    after = _ist(after)
    day = after.date()
    for _ in range(horizon_days):
        for slot in schedule.slots_on(day):
            if slot > after:
                return slot
        day += timedelta(days=1)
    return None


def due_slots(
    schedules: Iterable[Schedule], now: datetime, last_slots: Mapping[str, datetime]
) -> list[Due]:
    """Return the slots to run at ``now``: per schedule, at most its latest slot in
    ``(now - grace, now]``, and only if it is later than the last slot recorded for it.

    ``last_slots`` maps a pipeline name to its latest slot with a row in the store (ran,
    running, failed or skipped; :meth:`~velox.store.Store.last_pipeline_slots`). Several slots
    missed inside the grace window coalesce into the latest one; a slot older than the grace
    window is never due (it is not caught up late). This is the whole "which slots are due"
    logic: APScheduler only decides when to ask.

    Examples
    --------
    >>> from datetime import datetime, time
    >>> s = Schedule("scan", Path("scan.ipynb"), (time(9, 5),))
    >>> now = datetime(2024, 11, 4, 9, 20, tzinfo=IST)          # a Monday, 15 min late
    >>> [d.slot.strftime("%d %H:%M") for d in due_slots([s], now, {})]
    ['04 09:05']
    >>> due_slots([s], now, {"scan": datetime(2024, 11, 4, 9, 5, tzinfo=IST)})  # ran already
    []
    >>> due_slots([s], datetime(2024, 11, 2, 9, 20, tzinfo=IST), {})            # a Saturday
    []
    """
    now = _ist(now)
    due: list[Due] = []
    for schedule in schedules:
        window = slots_between(schedule, now - schedule.grace, now)
        if not window:
            continue
        slot, last = window[-1], last_slots.get(schedule.name)
        if last is None or slot > last:
            due.append(Due(schedule, slot))
    return sorted(due, key=lambda d: (d.slot, d.schedule.name))


# ---- the scheduler ---------------------------------------------------------------------------


def trading_day_trigger(schedule: Schedule):  # noqa: ANN201  (an APScheduler BaseTrigger)
    """Return an APScheduler trigger firing at ``schedule``'s IST times on the days it runs.

    One ``CronTrigger(hour, minute, timezone="Asia/Kolkata")`` per time, combined as
    APScheduler's ``OrTrigger`` does, with the dates :meth:`Schedule.runs_on` refuses (NSE
    holidays, ordinary weekends) skipped: its fire times are :func:`slots_between`'s slots.
    """
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.cron import CronTrigger

    class TradingDayTrigger(BaseTrigger):
        def __init__(self) -> None:
            self.schedule = schedule
            self.crons = [
                CronTrigger(hour=at.hour, minute=at.minute, timezone=IST_NAME) for at in schedule.at
            ]

        def get_next_fire_time(
            self, previous_fire_time: datetime | None, now: datetime
        ) -> datetime | None:
            fire = self._next(previous_fire_time, now)
            for _ in range(400 * len(self.crons)):  # a year of holidays and weekends at most
                if fire is None or schedule.runs_on(fire.astimezone(IST).date()):
                    return fire
                fire = self._next(fire, fire)
            return None

        def _next(self, previous: datetime | None, now: datetime) -> datetime | None:
            fires = [c.get_next_fire_time(previous, now) for c in self.crons]
            return min((f for f in fires if f is not None), default=None)

        def __str__(self) -> str:
            times = ",".join(f"{at:%H:%M}" for at in schedule.at)
            return f"velox[{times} IST on {schedule.days} days]"

    return TradingDayTrigger()


#: How often the scheduler re-checks the store for due slots (catch-up after sleep or restart).
WAKE_SECONDS = 60


class PipelineScheduler:
    """Run schedules' due slots: once (:meth:`tick`) or continuously (:meth:`start`).

    Each due slot is run by :meth:`run_slot`: hold the pipeline (an advisory lock: no overlap
    across threads and processes), then claim ``(pipeline, slot)`` in the store (a unique key:
    no double run), then execute. A slot whose pipeline is still busy with an earlier run is
    recorded ``skipped``; one another scheduler is taking is left to it.

    Parameters
    ----------
    schedules
        Usually ``get_settings().schedules``.
    store
        The store (default :func:`velox.store.open_store`).
    clock
        Returns the current time (tz-aware); tests pass a frozen one.
    """

    def __init__(
        self,
        schedules: Sequence[Schedule],
        *,
        store: Store | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if store is None:
            from velox.store import open_store

            store = open_store()
        self.schedules = {s.name: s for s in schedules}
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self._scheduler: Any = None

    def due(self, now: datetime | None = None) -> list[Due]:
        """Return the slots due at ``now`` (default the clock), as :func:`due_slots` says."""
        now = self.clock() if now is None else now
        last = self.store.last_pipeline_slots(self.schedules)
        return due_slots(self.schedules.values(), now, last)

    def run_slot(self, due: Due) -> PipelineRun | None:
        """Run one due slot; return its row, or None if it had one already (or was skipped).

        A failure of the notebook is recorded (and alerted) and returned, not raised: the
        scheduler goes on with the next slot.
        """
        schedule = due.schedule
        try:
            return _run(
                schedule.notebook,
                _expand(schedule.parameters, due.slot),
                name=schedule.name,
                no_input=schedule.no_input,
                strict=True,
                timeout=schedule.timeout,
                progress=False,
                store=self.store,
                trigger="schedule",
                slot=due.slot,
            )
        except PipelineBusy as exc:
            # The holder is either an earlier run still going (this slot overlaps it: record
            # the slot skipped, so it is not run late either) or another scheduler taking this
            # very slot (or about to record its own run): then leave the slot to it.
            running = self.store.pipeline_runs(pipeline=schedule.name, status="running")
            earlier = [
                slot
                for slot in running["slot"]
                if slot is None or str(slot) == "NaT" or slot < due.slot
            ]
            if not earlier:
                return None
            self.store.skip_pipeline_run(
                pipeline=schedule.name,
                notebook=str(schedule.notebook),
                slot=due.slot,
                parameters=_expand(schedule.parameters, due.slot),
                reason="an earlier run was still running"
                + (f" ({exc.holder})" if exc.holder else ""),
                triggered_by=_who(),
            )
            return None

    def tick(self, now: datetime | None = None) -> list[PipelineRun | None]:
        """Run every slot due at ``now``, one after the other; return what each gave."""
        return [self.run_slot(due) for due in self.due(now)]

    def fire(self, name: str) -> PipelineRun | None:
        """Run ``name``'s slot if one is due now (what APScheduler calls at each fire time)."""
        now = self.clock()
        last = self.store.last_pipeline_slots([name])
        due = due_slots([self.schedules[name]], now, last)
        return self.run_slot(due[0]) if due else None

    def wake(self) -> None:
        """Ask APScheduler to fire every pipeline with a due slot now (after sleep or restart).

        APScheduler waits on a monotonic timer, which stops while the machine sleeps, so after a
        wake-up its next fire can come well past the grace window; this job, every
        :data:`WAKE_SECONDS`, asks the store instead.
        """
        if self._scheduler is None:
            return
        for due in self.due():
            self._scheduler.modify_job(due.schedule.name, next_run_time=datetime.now(UTC))

    def build(self, *, blocking: bool = True):  # noqa: ANN201  (an APScheduler scheduler)
        """Return an APScheduler scheduler (not started) with one job per schedule."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        cls = BlockingScheduler if blocking else BackgroundScheduler
        workers = max(1, len(self.schedules))
        scheduler = cls(timezone=IST_NAME, executors={"default": ThreadPoolExecutor(workers)})
        for schedule in self.schedules.values():
            scheduler.add_job(
                self.fire,
                trading_day_trigger(schedule),
                args=[schedule.name],
                id=schedule.name,
                name=f"pipeline {schedule.name}",
                misfire_grace_time=int(schedule.grace.total_seconds()),
                coalesce=True,
                max_instances=1,
            )
        scheduler.add_job(
            self.wake,
            IntervalTrigger(seconds=WAKE_SECONDS, timezone=IST_NAME),
            id="velox-wake",
            name="catch up due slots",
            next_run_time=datetime.now(UTC),  # at start: slots missed while it was down
            misfire_grace_time=None,  # however late the start-up is (the calendar loads first)
            coalesce=True,
            max_instances=1,
        )
        self._scheduler = scheduler
        return scheduler

    def start(self, *, blocking: bool = True):  # noqa: ANN201
        """Build and start the APScheduler scheduler; blocking runs until Ctrl-C."""
        scheduler = self.build(blocking=blocking)
        for schedule in self.schedules.values():
            upcoming = next_slot(schedule, self.clock())
            log.info(
                "pipeline %s: %s at %s IST on %s days; next %s",
                schedule.name,
                schedule.notebook,
                ", ".join(f"{at:%H:%M}" for at in schedule.at),
                schedule.days,
                "none" if upcoming is None else f"{upcoming:%Y-%m-%d %H:%M} IST",
            )
        scheduler.start()
        return scheduler

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=wait)


def iter_schedules(names: Iterable[str] | None = None) -> Iterator[Schedule]:
    """Yield the settings' schedules (all, or those named; an unknown name is an error)."""
    from velox.config import get_settings

    schedules = {s.name: s for s in get_settings().schedules}
    if not names:
        yield from schedules.values()
        return
    for name in names:
        if name not in schedules:
            close = difflib.get_close_matches(name, schedules, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PipelineError(
                f"no schedule named {name!r}{hint} (velox.toml has: "
                f"{', '.join(schedules) or 'no [[schedules.pipeline]] entries'})"
            )
        yield schedules[name]
