"""Acting on many jobs at once, a slice at a time, and pausing a job type (docs/management.md,
section 3), and a job type's limits (docs/job-control.md 3): the part of the Store the management
side uses to change jobs in bulk. A mixin of Store
(store.py), which owns the scripts. Each slice is one script call over at most BULK_SLICE jobs
(lua/retryJobs-6.lua, lua/removeJobs-1.lua), so a bulk action over 100,000 jobs never holds Redis
for long; the hub calls slice after slice (hub/bulk.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from empfast.errors import BadArgument
from empfast.limits import BULK_SLICE, MAX_RATE_PER_S, MIN_RATE_PER_S
from empfast.store.listing import Cursor
from empfast.store.records import TypeLimit, parse_limits, text

if TYPE_CHECKING:
    from redis import asyncio as aioredis

    from empfast.keys import QueueKeys

FINISHED = ("completed", "failed", "cancelled")
RETRYABLE = ("failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Slice:
    """What one slice did: the set entries it looked at, the jobs it acted on (or, in a dry run,
    would have), and the cursor of the next slice (None when the action is at its end)."""

    looked: int
    jobs: int
    cursor: Cursor | None


@dataclass(frozen=True, slots=True)
class PauseState:
    """After a pause or resume: whether it changed anything, the type's pending jobs, and every
    paused type of the queue."""

    changed: bool
    pending: int
    paused: list[str]


@dataclass(frozen=True, slots=True)
class LimitsState:
    """After set_type_limits: whether it changed anything, the type's pending jobs, and the limits
    of every limited type of the queue."""

    changed: bool
    pending: int
    limits: dict[str, TypeLimit]


class BulkActions:
    redis: aioredis.Redis
    keys: QueueKeys
    if TYPE_CHECKING:
        async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def clock_ms(self) -> int:
        """Redis's clock, which the scripts stamp finish times with: a bulk action's bounds use it."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def count_finished(self, status: str, until_ms: int) -> int:
        """Jobs in a finished set that finished at or before `until_ms` (any type): what a bulk
        action over that set looks at."""
        _check_status(status, FINISHED)
        return int(await self.redis.zcount(getattr(self.keys, status), "-inf", until_ms))

    async def retry_jobs_slice(self, *, status: str = "failed", job_type: str | None = None,
                               attempts: int = 1, until_ms: int, cursor: Cursor | None = None,
                               size: int = BULK_SLICE, dry_run: bool = False,
                               now: int | None = None) -> Slice:
        """Retry the next slice of the jobs of `status` (failed or cancelled) that finished at or
        before `until_ms`, of `job_type` or all, each with `attempts` more attempts."""
        _check_status(status, RETRYABLE)
        k = self.keys
        out = await self._run("retryJobs", (k.meta, k.seq, k.failed, k.cancelled, k.stats, k.events), (
            k.prefix, "" if now is None else now, status, job_type or "", attempts,
            *_cursor_args(cursor), until_ms, size, "1" if dry_run else "0"))
        return _slice(out)

    async def remove_jobs_slice(self, status: str, *, job_type: str | None = None, until_ms: int,
                                cursor: Cursor | None = None, size: int = BULK_SLICE,
                                dry_run: bool = False) -> Slice:
        """Remove the next slice of the jobs of a finished `status` that finished at or before
        `until_ms`, of `job_type` or all: their hashes and their entries in the set."""
        _check_status(status, FINISHED)
        k = self.keys
        out = await self._run("removeJobs", (getattr(k, status),), (
            k.prefix, status, job_type or "", *_cursor_args(cursor), until_ms, size,
            "1" if dry_run else "0"))
        return _slice(out)

    async def set_type_paused(self, job_type: str, paused: bool) -> PauseState:
        """Pause (no worker is given a job of the type; its jobs wait, pending) or resume it."""
        k = self.keys
        out = await self._run("setTypePaused", (k.meta, k.events),
                              (k.prefix, job_type, "1" if paused else "0"))
        return PauseState(out[0] == 1, int(out[1]), orjson.loads(out[2]))

    async def set_type_limits(self, job_type: str, concurrency: int | None, rate: int | None,
                              per_s: float = 1.0, group_concurrency: int | None = None) -> LimitsState:
        """Set a job type's limits (None clears one; all None clear the type's limits):
        `group_concurrency` bounds the active jobs of each of its groups. Bad values are
        BadArgument, nothing changed."""
        if rate is not None and not MIN_RATE_PER_S <= per_s <= MAX_RATE_PER_S:
            raise BadArgument(f"per_s is from {MIN_RATE_PER_S} to {MAX_RATE_PER_S:g} seconds")
        k = self.keys
        out = await self._run("setTypeLimits", (k.meta, k.events), (
            k.prefix, job_type, "" if concurrency is None else concurrency, "" if rate is None else rate,
            round(per_s * 1000), "" if group_concurrency is None else group_concurrency))
        return LimitsState(out[0] == 1, int(out[1]), parse_limits(out[2]))

    async def type_limits(self) -> dict[str, TypeLimit]:
        """Every limited job type's limits (one HGET; a hub loads them at start, then follows the
        `limits` events)."""
        return parse_limits(await self.redis.hget(self.keys.meta, "limits"))


def _check_status(status: str, allowed: tuple[str, ...]) -> None:
    if status not in allowed:
        raise BadArgument(f"status must be one of {', '.join(allowed)}, not {status!r}")


def _cursor_args(cursor: Cursor | None) -> tuple[str, str]:
    return (cursor.score, cursor.job_id) if cursor is not None else ("", "")


def _slice(out: Sequence[Any]) -> Slice:
    looked, jobs, more, last_score, last_id = out
    cursor = Cursor(text(last_score), text(last_id)) if int(more) and last_id else None
    return Slice(int(looked), int(jobs), cursor)
