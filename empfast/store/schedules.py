"""Repeating jobs' schedules in Redis (docs/job-control.md section 2): kept, listed, and found due.
A mixin of Store (store.py), which owns the scripts (lua/setSchedule-2.lua, removeSchedule-2,
advanceSchedule-1). What a schedule means and when it is due next is empfast/schedules.py's; the
hubs fire due runs (hub/schedules.py) through `due_schedules`, `add_jobs` with the run's job id and
`advance_schedule`, so a run is added once whatever the number of hubs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from empfast.errors import TooManySchedules
from empfast.limits import MAX_SCHEDULES
from empfast.schedules import Schedule
from empfast.store.records import text

if TYPE_CHECKING:
    from redis import asyncio as aioredis

    from empfast.keys import QueueKeys


class ScheduleRecords:
    redis: aioredis.Redis
    keys: QueueKeys
    if TYPE_CHECKING:
        async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def set_schedule(self, schedule: Schedule, next_due_ms: int | None) -> bool:
        """Create or replace a schedule (paused: `next_due_ms` None). True when the name is new;
        LimitExceeded for a new one past MAX_SCHEDULES (nothing written)."""
        k = self.keys
        due = "" if next_due_ms is None else next_due_ms
        out = await self._run("setSchedule", (k.schedules, k.schedule_due),
                              (k.prefix, schedule.name, schedule.to_json(), due, MAX_SCHEDULES))
        if out[0] != b"OK":
            raise TooManySchedules(MAX_SCHEDULES)
        return bool(out[1])

    async def remove_schedule(self, name: str) -> bool:
        k = self.keys
        return bool(await self._run("removeSchedule", (k.schedules, k.schedule_due), (k.prefix, name)))

    async def advance_schedule(self, name: str, due_ms: int, next_due_ms: int) -> bool:
        """Move a schedule from `due_ms` on to `next_due_ms`; False when another hub did, or it was
        removed, paused or replaced meanwhile."""
        k = self.keys
        out = await self._run("advanceSchedule", (k.schedule_due,), (k.prefix, name, due_ms, next_due_ms))
        return bool(out)

    async def get_schedule(self, name: str) -> tuple[Schedule, int | None] | None:
        """A schedule and its next due time (None while paused), or None when there is none."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(k.schedules, name)
        pipe.zscore(k.schedule_due, name)
        spec, due = await pipe.execute()
        return None if spec is None else (Schedule.from_json(spec), None if due is None else int(due))

    async def get_schedules(self) -> list[tuple[Schedule, int | None]]:
        """Every schedule of the queue (at most MAX_SCHEDULES), by name, with its next due time."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.schedules)
        pipe.zrange(k.schedule_due, 0, -1, withscores=True)
        specs, dues = await pipe.execute()
        due_of = {text(name): int(score) for name, score in dues}
        return [(Schedule.from_json(spec), due_of.get(text(name)))
                for name, spec in sorted(specs.items())]

    async def due_schedules(self, now_ms: int, limit: int) -> list[tuple[Schedule, int]]:
        """The schedules due at `now_ms` (at most `limit`, the most overdue first), each with the
        due time it is at."""
        k = self.keys
        due = await self.redis.zrangebyscore(k.schedule_due, "-inf", now_ms, start=0, num=limit,
                                             withscores=True)
        if not due:
            return []
        specs = await self.redis.hmget(k.schedules, [name for name, _ in due])
        return [(Schedule.from_json(spec), int(score))
                for (_, score), spec in zip(due, specs, strict=True) if spec is not None]
