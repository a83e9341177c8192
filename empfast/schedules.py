"""What a repeating job is (docs/job-control.md section 2): a named schedule of a queue that adds a
job of a type, with a payload, on a cron expression in a time zone or every N seconds. Checked here
(the hub refuses a bad one with the field named) and its due times computed here: cron is read by
croniter (pallets-eco), never in Lua. The store keeps a schedule as the JSON of `Schedule.to_json`
and its next due time apart (store/schedules.py); each hub's sweep fires the due ones
(hub/schedules.py)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import croniter

from empfast.limits import MAX_EVERY_S, MIN_EVERY_S

SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class ScheduleError(ValueError):
    """A schedule that cannot be kept, and the field that says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    job_type: str
    payload: str = "{}"  # JSON text, kept as given
    priority: int = 0
    max_attempts: int = 3
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    paused: bool = False

    def __post_init__(self) -> None:
        if not SCHEDULE_NAME_RE.match(self.name):
            raise ScheduleError("name", "a schedule's name is 1 to 128 characters of [A-Za-z0-9._:@-]")
        if (self.cron is None) == (self.every_s is None):
            raise ScheduleError("cron", "give cron (a cron expression) or every_s (seconds), one of them")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ScheduleError("cron", f"{self.cron!r} is not a cron expression (five fields: minute "
                                "hour day-of-month month day-of-week, e.g. '*/5 * * * *')")
        if self.every_s is not None and not MIN_EVERY_S <= self.every_s <= MAX_EVERY_S:
            raise ScheduleError("every_s", f"every_s must be {MIN_EVERY_S:g} to {MAX_EVERY_S:g} seconds")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError("tz", f"{self.tz!r} is not a time zone name (e.g. UTC, "
                                "Europe/Paris)") from None

    def next_due_ms(self, after_ms: int) -> int:
        """The first due time after `after_ms` (ms since the epoch): on the cron expression in the
        schedule's time zone, or every_s after `after_ms` rounded to the interval's grid (so every
        hub computes the same times)."""
        if self.every_s is not None:
            step = round(self.every_s * 1000)
            return (after_ms // step + 1) * step
        start = datetime.fromtimestamp(after_ms / 1000, tz=ZoneInfo(self.tz))
        due: datetime = croniter(self.cron, start).get_next(datetime)
        return round(due.astimezone(UTC).timestamp() * 1000)

    def job_id(self, due_ms: int) -> str:
        """The id of the job of one due time: the same on every hub, so a run is added once."""
        return f"sched:{self.name}:{due_ms}"

    def with_paused(self, paused: bool) -> Schedule:
        return replace(self, paused=paused)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> Schedule:
        return cls(**orjson.loads(data))

    def describe(self, next_due_ms: int | None) -> dict[str, Any]:
        """The schedule as peers see it (the `schedule` frame's members)."""
        shown = {k: v for k, v in asdict(self).items() if v is not None and k != "payload"}
        return {**shown, "payload": orjson.Fragment(self.payload.encode()), "next_run_at_ms": next_due_ms}
