"""The Store: the only code in empfast that talks to Redis.

Every state transition is one EVALSHA of a script from lua/ (one round trip; batch variants cost one
round trip per batch). Payloads and results go through as the bytes/str they came in as, never
parsed. Methods take an optional `now` (ms) so tests can drive leases and delays without sleeping;
in production the scripts read Redis's own clock.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from empfast.config import QueueSettings, RedisOptions
from empfast.errors import (
    BadArgument,
    JobNotFound,
    LayoutMismatch,
    StoreRefusal,
    TooManyJobTypes,
    refusal,
)
from empfast.ids import new_job_id
from empfast.keys import LAYOUT_VERSION, QueueKeys
from empfast.limits import LOG_CUT_MARKER, LUA_LIMITS
from empfast.scripts import Script, load_scripts, scripts_version
from empfast.store.bulk import BulkActions
from empfast.store.events import EventReads
from empfast.store.listing import JobListing
from empfast.store.pipelined import PipelinedConnection, command
from empfast.store.records import (
    Added,
    CancelOutcome,
    ClaimedJob,
    Completion,
    FailOutcome,
    NewJob,
    Stats,
    SweepResult,
    Text,
    claimed_jobs,
    job_from_hash,
    stats_from_reply,
    text,
)
from empfast.store.redis_client import redis_from_options
from empfast.store.schedules import ScheduleRecords
from empfast.store.workers import WorkerRecords

log = logging.getLogger("empfast.store")

# A script's error reply when the meta hash lacks a setting it reads (deleted under a running store,
# e.g. by FLUSHDB): the store writes the meta hash again and retries once, as after NOSCRIPT.
NO_CONFIG_REPLY = "ERR_NO_CONFIG"


class Store(EventReads, JobListing, BulkActions, WorkerRecords, ScheduleRecords):
    """Async API over the Lua scripts of one queue."""

    def __init__(self, redis: aioredis.Redis, settings: QueueSettings | None = None) -> None:
        self.redis = redis
        self._read_streams_flat()
        self.settings = settings or QueueSettings()
        self.keys = QueueKeys.for_queue(self.settings.name)
        self.scripts: dict[str, Script] = load_scripts()
        self.scripts_version = scripts_version(self.scripts)
        # the scripts run on a connection of their own, auto-pipelined (pipelined.py says why);
        # None on the embedded store, where they go through fakeredis
        self.script_connection = PipelinedConnection.like(redis, self.keys.meta)
        self._script_heads: dict[tuple[str, tuple[str, ...]], bytes] = {}
        self.script_calls = 0
        self.script_seconds = 0.0
        self._events_connection: PipelinedConnection | None = None
        self._started = False
        self._owns_redis = True  # a store of for_queue shares its parent's client

    @classmethod
    async def connect(cls, options: RedisOptions | None = None,
                      settings: QueueSettings | None = None) -> Store:
        store = cls(redis_from_options(options or RedisOptions()), settings)
        await store.start()
        return store

    @classmethod
    def embedded(cls, settings: QueueSettings | None = None) -> Store:
        """A store on fakeredis with Lua, in this process: no Redis needed, nothing durable.
        Call start() before use (a Hub does it)."""
        import fakeredis

        return cls(fakeredis.FakeAsyncRedis(), settings)

    def for_queue(self, name: str) -> Store:
        """Another queue's store on the same Redis and settings, sharing this one's redis-py client;
        its script and events connections are its own. Close it first; start() it before use."""
        store = Store(self.redis, replace(self.settings, name=name))
        store._owns_redis = False
        return store

    async def close(self) -> None:
        for connection in (self.script_connection, self._events_connection):
            if connection is not None:
                await connection.close()
        if not self._owns_redis:
            return
        # behind Sentinels, the client's pool holds the Sentinels' clients, which it does not close
        sentinels = getattr(getattr(self.redis, "connection_pool", None), "sentinel_manager", None)
        await self.redis.aclose()
        if sentinels is not None:
            await sentinels.aclose()

    # ---- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the data layout, record the settings and limits the scripts read (getQueueConfig),
        and load every script."""
        k, s = self.keys, self.settings
        # no MULTI: HSETNX alone is atomic, and redis-py 8.1's cluster client breaks after one
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(k.meta, "layout", LAYOUT_VERSION)
        pipe.hget(k.meta, "layout")
        _, layout = await pipe.execute()
        if text(layout) != LAYOUT_VERSION:
            raise LayoutMismatch(
                f"queue {s.name!r} in Redis has data layout {text(layout)!r}, but this empfast "
                f"uses layout {LAYOUT_VERSION!r}: run the matching empfast version, or use "
                "another queue name (or another Redis database) for this one"
            )
        await self.redis.hset(k.meta, mapping={
            "scripts": self.scripts_version,
            "events_maxlen": s.events_maxlen,
            "keep_completed_ms": s.keep_completed_ms,
            "keep_completed_max": s.keep_completed_max,
            "keep_failed_ms": s.keep_failed_ms,
            "keep_failed_max": s.keep_failed_max,
            "max_job_types": s.max_job_types,
            "job_timeout_ms": round(s.job_timeout_s * 1000),
            **LUA_LIMITS,
        })
        # present only when some job type has a default timeout: every other call reads nothing
        type_timeouts = s.type_timeout_ms()
        if type_timeouts:
            await self.redis.hset(k.meta, "type_timeouts", orjson.dumps(type_timeouts))
        else:
            await self.redis.hdel(k.meta, "type_timeouts")
        await self._load_scripts()
        self._started = True

    async def _load_scripts(self) -> None:
        if isinstance(self.redis, RedisCluster):  # SCRIPT LOAD goes to every master, not in a pipeline
            shas = [await self.redis.script_load(script.source) for script in self.scripts.values()]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for script in self.scripts.values():
                pipe.script_load(script.source)
            shas = await pipe.execute()
        for script, sha in zip(self.scripts.values(), shas, strict=True):
            if text(sha) != script.sha:
                raise RuntimeError(f"Redis gave SHA {text(sha)} for {script.name}, expected {script.sha}")

    async def _evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        connection = self.script_connection
        if connection is None:
            return await self.redis.evalsha(script.sha, script.num_keys, *keys, *args)
        head = self._script_heads.get((script.sha, tuple(keys)))
        if head is None:  # EVALSHA, the sha, the key count and the keys: the same on every call
            head = b"".join(command("EVALSHA", script.sha, script.num_keys, *keys)[1:])
            self._script_heads[script.sha, tuple(keys)] = head
        parts = command(*args)
        parts[0] = b"*%d\r\n" % (3 + len(keys) + len(args)) + head
        return await connection.call(parts)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self.scripts[name]
        started = time.perf_counter()
        try:
            try:
                return await self._evalsha(script, keys, args)
            except NoScriptError:
                # Redis restarted, failed over (a replica holds no scripts) or SCRIPT FLUSH: the meta
                # hash may be gone too, so start again
                log.warning("Redis lost the empfast scripts (restart, failover or SCRIPT FLUSH); loading "
                            "them again")
            except ResponseError as exc:
                if not str(exc).startswith(NO_CONFIG_REPLY + " "):
                    raise
                log.warning("the queue's meta hash lost its settings (%s); writing them again", exc)
            await self.start()
            return await self._evalsha(script, keys, args)
        except ResponseError as exc:
            text = str(exc)
            if text.startswith(TooManyJobTypes.lua_reply + " "):
                raise TooManyJobTypes(int(text.split()[1])) from None
            if text.startswith(BadArgument.lua_reply + " "):
                raise BadArgument(text.removeprefix(BadArgument.lua_reply + " ")) from None
            raise
        finally:
            # the time a script call takes, round trip included (metrics: Redis call latency)
            self.script_calls += 1
            self.script_seconds += time.perf_counter() - started

    # ---- jobs --------------------------------------------------------------------------------

    async def add_jobs(self, jobs: Iterable[NewJob], *, now: int | None = None,
                       owner: str = "", positions: bool = False) -> list[Added]:
        """Add a batch in one round trip. All or nothing: one bad job refuses the whole batch.
        `owner` (a hash of the submitter's token) is stored with each job added; an existing job
        with another owner comes back `foreign`. `positions`: each pending job's rank in its
        type's pending set too (one ZRANK a job: for replies to single submits only)."""
        added, _ = await self.add_and_claim(jobs, now=now, owner=owner, positions=positions)
        return added

    async def add_and_claim(self, jobs: Iterable[NewJob], *, worker_id: str = "", max_claim: int = 0,
                            lease_ms: int | None = None, now: int | None = None,
                            owner: str = "", positions: bool = False) -> tuple[list[Added], list[ClaimedJob]]:
        """add_jobs, then, in the same script call, claim up to max_claim of the best pending jobs
        for `worker_id` (as claim does; none when it is not live, draining or full)."""
        k = self.keys
        args: list[Any] = [k.prefix, "" if now is None else now, 0, owner, worker_id,
                           lease_ms or self.settings.lease_ms, max_claim if worker_id else 0,
                           "1" if positions else ""]
        count = 0
        for job in jobs:
            args += [job.job_id or new_job_id(), job.job_type, job.payload, job.priority,
                     job.max_attempts, *job.timing(), *job.flow()]
            count += 1
        args[2] = count
        if count == 0:
            return [], []
        out = await self._run("addJobs", (k.meta, k.seq, k.scheduled, k.stats, k.events, k.types, k.active,
                                          k.workers, k.worker_states, k.deadlines, k.expiries, k.waiting,
                                          k.failed), args)
        per = 4 if positions else 3
        end = 1 + per * count
        added = [Added(text(out[i]), text(out[i + 1]), out[i + 2] == 1, out[i + 2] == 2,
                       out[i + 3] if positions and out[i + 3] >= 0 else None)
                 for i in range(1, end, per)]
        return added, claimed_jobs(out, end)

    async def add_job(self, job_type: str, payload: Text = b"{}", *, priority: int = 0,
                      job_id: str | None = None, max_attempts: int = 3, delay_ms: float = 0,
                      now: int | None = None) -> Added:
        (added,) = await self.add_jobs(
            [NewJob(job_type, payload, priority, job_id, max_attempts, delay_ms)], now=now)
        return added

    async def claim(self, worker_id: str, max_jobs: int = 1, *, lease_ms: int | None = None,
                    now: int | None = None) -> list[ClaimedJob]:
        """Claim up to max_jobs of the best pending jobs the worker can run (within its free slots,
        the queue's max_claim and the job types' limits)."""
        return (await self.claim_waits(worker_id, max_jobs, lease_ms=lease_ms, now=now))[0]

    async def claim_waits(self, worker_id: str, max_jobs: int = 1, *, lease_ms: int | None = None,
                          now: int | None = None) -> tuple[list[ClaimedJob], dict[str, int]]:
        """claim, and for each job type whose rate held jobs back, the ms until its next token."""
        k = self.keys
        keys = (k.meta, k.active, k.workers, k.stats, k.events, k.worker_states, k.deadlines, k.expiries)
        out = await self._run("claimJobs", keys, (
            k.prefix, "" if now is None else now, worker_id, lease_ms or self.settings.lease_ms,
            max_jobs))
        if out[0] != b"OK":
            raise refusal(text(out[0]), worker_id=worker_id)
        end = 2 + 5 * int(out[1])
        waits = {text(out[i]): int(out[i + 1]) for i in range(end, len(out), 2)}
        return claimed_jobs(out[:end], 2), waits

    async def claim_by_id(self, worker_id: str, job_id: str, *, lease_ms: int | None = None,
                          now: int | None = None) -> ClaimedJob:
        k = self.keys
        keys = (k.meta, k.active, k.workers, k.stats, k.events, k.worker_states, k.deadlines, k.expiries)
        out = await self._run("claimJobById", keys, (
            k.prefix, "" if now is None else now, worker_id, lease_ms or self.settings.lease_ms,
            job_id))
        if out[0] == b"OK":
            return claimed_jobs(out, 2)[0]
        raise refusal(text(out[0]), job_id=job_id, worker_id=worker_id,
                      detail=text(out[1]) if len(out) > 1 else "")

    async def progress(self, job_id: str, worker_id: str, attempt: int, progress: float,
                       message: str = "", *, lease_ms: int | None = None,
                       now: int | None = None) -> bool:
        """Record progress and extend the lease. Returns True when a cancel of the job was asked."""
        k = self.keys
        out = await self._run("progressJob", (k.meta, k.active, k.workers, k.events), (
            k.prefix, "" if now is None else now, job_id, worker_id, attempt, progress, message,
            lease_ms or self.settings.lease_ms))
        if out[0] != b"OK":
            raise refusal(text(out[0]), job_id=job_id, worker_id=worker_id, attempt=attempt)
        return out[1] == 1

    async def append_log(self, job_id: str, worker_id: str, attempt: int, lines: Sequence[str]) -> int:
        """Append lines to the job's log, from its lease holder only (LeaseLost otherwise, nothing
        written); each cut to MAX_LOG_LINE_BYTES, the log kept to MAX_LOG_LINES. Returns the lines
        the log holds now."""
        k = self.keys
        out = await self._run("appendJobLog", (k.meta, k.events),
                              (k.prefix, job_id, worker_id, attempt, LOG_CUT_MARKER, *lines))
        if out[0] != b"OK":
            raise refusal(text(out[0]), job_id=job_id, worker_id=worker_id, attempt=attempt)
        return int(out[1])

    async def complete(self, job_id: str, worker_id: str, attempt: int, result: Text = b"null",
                       *, claim_next: int = 0, lease_ms: int | None = None,
                       now: int | None = None) -> list[ClaimedJob]:
        """Complete a job and claim up to claim_next next jobs for the worker, in one round trip."""
        (refused,), next_jobs = await self.complete_many(
            worker_id, [Completion(job_id, attempt, result)], claim_next=claim_next, lease_ms=lease_ms,
            now=now)
        if refused is not None:
            raise refused
        return next_jobs

    async def complete_many(self, worker_id: str, completions: Sequence[Completion], *,
                            claim_next: int = 0, lease_ms: int | None = None,
                            now: int | None = None) -> tuple[list[StoreRefusal | None], list[ClaimedJob]]:
        """Complete a batch of one worker's jobs and claim its next jobs, in one round trip. Each
        completion is judged on its own: the first list holds None for each accepted one (or a
        repeat) and the error for each refused one, in order."""
        k = self.keys
        args: list[Any] = [k.prefix, "" if now is None else now, worker_id,
                           lease_ms or self.settings.lease_ms, claim_next, len(completions)]
        for completion in completions:
            args += completion
        out = await self._run("completeJobs", (k.meta, k.active, k.completed, k.workers, k.stats, k.events,
                                               k.worker_states, k.deadlines, k.expiries, k.waiting, k.seq,
                                               k.scheduled), args)
        outcomes: list[StoreRefusal | None] = [
            None if code == b"OK" else refusal(text(code), job_id=c.job_id, worker_id=worker_id,
                                               attempt=c.attempt)
            for code, c in zip(out, completions, strict=False)]
        return outcomes, claimed_jobs(out, len(completions))

    async def fail(self, job_id: str, worker_id: str, attempt: int, error: str, *,
                   retry: bool = True, claim_next: int = 0, lease_ms: int | None = None,
                   jitter: float | None = None, now: int | None = None) -> FailOutcome:
        """Fail an attempt: retried after a backoff while attempts remain, else dead-lettered."""
        k, s = self.keys, self.settings
        out = await self._run(
            "failJob",
            (k.meta, k.active, k.scheduled, k.failed, k.cancelled, k.workers, k.seq, k.worker_states,
             k.stats, k.events, k.deadlines, k.expiries, k.waiting), (
                k.prefix, "" if now is None else now, job_id, worker_id, attempt, error,
                1 if retry else 0, s.backoff_base_ms, s.backoff_cap_ms,
                random.random() if jitter is None else jitter,
                lease_ms or s.lease_ms, claim_next))
        if out[0] != b"OK":
            raise refusal(text(out[0]), job_id=job_id, worker_id=worker_id, attempt=attempt)
        return FailOutcome(text(out[1]), int(out[2]), claimed_jobs(out, 4))

    async def cancel(self, job_id: str, *, now: int | None = None) -> CancelOutcome:
        k = self.keys
        out = await self._run(
            "cancelJob", (k.meta, k.scheduled, k.cancelled, k.stats, k.events, k.expiries, k.waiting,
                          k.failed),
            (k.prefix, "" if now is None else now, job_id))
        code = text(out[0])
        if code == JobNotFound.lua_reply:
            raise JobNotFound(job_id)
        if code == "CANCELLED":
            return CancelOutcome("cancelled", None)
        if code == "CANCEL_REQUESTED":
            return CancelOutcome("cancel_requested", text(out[1]))
        return CancelOutcome(text(out[1]), None, changed=False)

    async def retry(self, job_id: str, attempts: int = 1, *, retry_id: str = "",
                    now: int | None = None) -> str:
        """Make a failed (dead-lettered) or cancelled job pending again with `attempts` more
        attempts: "retried". "repeated" for a repeat of the last retry (the same `retry_id`), which
        changes nothing in any state (a run it started that failed again is not retried twice);
        "" when the job is in another state (nothing changed)."""
        k = self.keys
        out = await self._run("retryJob", (k.meta, k.seq, k.failed, k.cancelled, k.stats, k.events),
                              (k.prefix, "" if now is None else now, job_id, attempts, retry_id))
        if text(out[0]) == JobNotFound.lua_reply:
            raise JobNotFound(job_id)
        return {b"RETRIED": "retried", b"REPEATED": "repeated"}.get(out[0], "")

    async def get_job(self, job_id: str, *, logs: int = 0, position: bool = False) -> dict[str, Any] | None:
        """The job as a dict; payload and result stay raw JSON bytes. None when it does not exist.
        `logs`: the newest that many lines of its log too, oldest first (`logs`, in the same round
        trip). `position`: a pending job's rank among its type's pending jobs (`position`, 0:
        next; one ZRANK more, only when it is pending)."""
        key = self.keys.job(job_id)
        if logs <= 0:
            raw = await self.redis.hgetall(key)
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(key)
            pipe.lrange(self.keys.job_logs(job_id), -logs, -1)
            raw, lines = await pipe.execute()
        if not raw:
            return None
        job = job_from_hash(raw)
        if logs > 0:
            job["logs"] = [text(line) for line in lines]
        if position and job.get("status") == "pending":
            rank = await self.redis.zrank(self.keys.pending(job["type"]), job_id)
            if rank is not None:  # claimed meanwhile
                job["position"] = int(rank)
        return job

    # ---- upkeep and stats --------------------------------------------------------------------

    async def sweep(self, *, limit: int | None = None, now: int | None = None) -> SweepResult:
        k = self.keys
        out = await self._run("sweep", (
            k.meta, k.scheduled, k.active, k.workers, k.completed, k.failed, k.cancelled, k.seq,
            k.worker_states, k.stats, k.events, k.deadlines, k.expiries, k.waiting), (
                k.prefix, "" if now is None else now, limit or self.settings.sweep_limit))
        return SweepResult(int(out[0]), int(out[1]), int(out[2]), int(out[3]), out[4] == 1, int(out[5]),
                           int(out[6]))

    async def stats(self) -> Stats:
        k = self.keys
        return stats_from_reply(await self._run("getStats", (
            k.stats, k.types, k.scheduled, k.active, k.completed, k.failed, k.cancelled, k.workers,
            k.meta, k.waiting),
            (k.prefix,)))

    async def unloaded_scripts(self) -> list[str]:
        """For a readiness probe: the names of the scripts Redis does not hold (after a restart or
        SCRIPT FLUSH, until the next call loads them again), in one round trip that PINGs too.
        Raises the client's error when Redis does not answer."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.ping()
        pipe.script_exists(*(script.sha for script in self.scripts.values()))
        _, loaded = await pipe.execute()
        return [name for name, held in zip(self.scripts, loaded, strict=True) if not held]

    async def pending_counts(self, job_types: Iterable[str]) -> dict[str, int]:
        """How many jobs of each of these types are pending (types with none are left out), in one
        round trip whose cost grows with the types asked for, not with the queue's types."""
        wanted = list(job_types)
        pipe = self.redis.pipeline(transaction=False)
        for job_type in wanted:
            pipe.zcard(self.keys.pending(job_type))
        counts = await pipe.execute() if wanted else []
        return {job_type: count for job_type, count in zip(wanted, counts, strict=True) if count}
