"""The values the store takes and returns, and how a script's reply (or a job's hash) becomes one
of them. No Redis calls here: store.py makes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import orjson

Text = str | bytes
JOB_FIELDS = 5  # id, type, priority, payload, attempt: what a claim returns per job
INT_FIELDS = frozenset({"priority", "attempts", "max_attempts", "created_at", "updated_at", "run_at",
                        "started_at", "finished_at", "lease_until", "timeout_ms", "expires_at",
                        "open_parents"})


class NewJob(NamedTuple):
    """A job to add. Its start is `delay_ms` from now or at `run_at_ms` (ms since the epoch; give
    one); `timeout_ms` None takes the type's or the queue's default; an expiry is `ttl_ms` from now
    or at `expires_at_ms` (give at most one). Redis's clock judges them all (addJobs). `group`: the
    tenant it is fairly shared with (docs/job-control.md 4). `depends_on`: the ids of its parents
    (docs/job-control.md 5); it waits until they have all completed."""

    job_type: str
    payload: Text = b"{}"
    priority: int = 0
    job_id: str | None = None
    max_attempts: int = 3
    delay_ms: float = 0
    timeout_ms: float | None = None
    run_at_ms: float | None = None
    ttl_ms: float | None = None
    expires_at_ms: float | None = None
    group: str = ""  # a tenant: claims of a type go round-robin across its groups ("": none)
    depends_on: Sequence[str] | None = None

    def flow(self) -> tuple[str, str]:
        """addJobs' group and depends_on values ("": none)."""
        return self.group, orjson.dumps(list(self.depends_on)).decode() if self.depends_on else ""

    def timing(self) -> tuple[Any, Any, Any]:
        """addJobs' start, timeout and expiry values: ms from now, or '@' and ms since the epoch."""
        start = self.delay_ms if self.run_at_ms is None else f"@{self.run_at_ms!r}"
        expiry = ("" if self.expires_at_ms is None else f"@{self.expires_at_ms!r}") if self.ttl_ms is None \
            else self.ttl_ms
        return start, "" if self.timeout_ms is None else self.timeout_ms, expiry


class Added(NamedTuple):
    job_id: str
    status: str
    created: bool
    foreign: bool = False  # it existed already, submitted by another owner (docs/security.md)
    position: int | None = None  # its rank among its type's pending jobs, when asked and pending


class ClaimedJob(NamedTuple):
    job_id: str
    job_type: str
    priority: int
    payload: bytes
    attempt: int


class Completion(NamedTuple):
    job_id: str
    attempt: int
    result: Text = b"null"


class FailOutcome(NamedTuple):
    status: str  # "scheduled", "pending" (retried), "failed" (final) or "cancelled"
    run_at: int  # when a scheduled retry is due, in ms; 0 otherwise
    next_jobs: list[ClaimedJob]

    @property
    def final(self) -> bool:
        return self.status in ("failed", "cancelled")


class CancelOutcome(NamedTuple):
    status: str  # "cancelled", "cancel_requested" or the finished status
    worker_id: str | None  # the worker to tell, when the job is running
    changed: bool = True  # False for a job that had finished (its status is the one it ended with)


class Heartbeat(NamedTuple):
    extended: int
    lost: list[str]
    cancel: list[str]


class SweepResult(NamedTuple):
    promoted: int
    expired: int  # leases
    workers_removed: int
    trimmed: int
    more: bool
    timed_out: int = 0  # attempts past their timeout
    expired_waiting: int = 0  # pending or scheduled jobs past their expiry


@dataclass(frozen=True, slots=True)
class TypeLimit:
    """A job type's limits (docs/job-control.md 3): jobs active at once, starts per `per_s`
    seconds, and jobs active at once per group (4); None where unset."""

    concurrency: int | None = None
    rate: int | None = None
    per_s: float | None = None
    group_concurrency: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "rate": self.rate, "per_s": self.per_s,
                "group_concurrency": self.group_concurrency}


def parse_limits(raw: bytes | str | None) -> dict[str, TypeLimit]:
    """The meta hash's `limits` field (setTypeLimits-2.lua) as TypeLimits by job type."""
    if not raw:
        return {}
    out = {}
    for job_type, f in orjson.loads(raw).items():
        per_ms = f.get("per_ms")
        out[job_type] = TypeLimit(f.get("concurrency"), f.get("rate"),
                                  per_ms / 1000 if per_ms is not None else None, f.get("group_concurrency"))
    return out


def event_limit(f: dict[bytes, bytes]) -> TypeLimit | None:
    """The limits a `limits` event of the stream sets (setTypeLimits-2.lua writes only the ones set),
    None when it clears the type's."""
    if b"concurrency" not in f and b"rate" not in f and b"group_concurrency" not in f:
        return None
    per_ms, group = f.get(b"per_ms"), f.get(b"group_concurrency")
    return TypeLimit(int(f[b"concurrency"]) if b"concurrency" in f else None,
                     int(f[b"rate"]) if b"rate" in f else None,
                     int(per_ms) / 1000 if per_ms is not None else None,
                     int(group) if group is not None else None)


@dataclass(slots=True)
class Stats:
    pending: int
    scheduled: int
    active: int
    completed: int
    failed: int
    cancelled: int
    workers: dict[str, int]
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)  # job types no worker is given (setTypePaused)
    limits: dict[str, TypeLimit] = field(default_factory=dict)  # the limited job types (setTypeLimits)
    waiting: int = 0  # jobs waiting for their parents (depends_on)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending, "scheduled": self.scheduled, "active": self.active,
            "completed": self.completed, "failed": self.failed, "cancelled": self.cancelled,
            "waiting": self.waiting, "workers": self.workers, "by_type": self.by_type, "paused": self.paused,
            "limits": {t: limit.as_dict() for t, limit in self.limits.items()},
        }


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def claimed_jobs(flat: Sequence[Any], start: int) -> list[ClaimedJob]:
    return [
        ClaimedJob(text(flat[i]), text(flat[i + 1]), int(flat[i + 2]), flat[i + 3], int(flat[i + 4]))
        for i in range(start, len(flat), JOB_FIELDS)
    ]


EventFields = dict[bytes, bytes]  # one entry of the events stream: b"ev", b"id", then its own fields
EventEntry = tuple[bytes, list[bytes]]  # an entry as Redis sends it: its id, its fields flat


def event_fields(flat: list[bytes]) -> EventFields:
    """The fields of an entry sent flat (field, value, field, value, ...) as a dict, in C."""
    values = iter(flat)
    return dict(zip(values, values, strict=True))


def entry_events(flat: list[bytes]) -> list[list[bytes]]:
    """The events of one entry sent flat, each flat as an entry of its own (b"ev", kind, b"id", id,
    its fields). A script that moves many jobs writes their events of one kind as one entry: b"ev",
    kind, then each job's group of fields, every group starting with b"id" (docs/data-model.md,
    "Events"); any other entry is one event. Field names sit at the even places, so a value that
    happens to read b"id" is never taken for the start of a group."""
    starts = [i for i in range(4, len(flat), 2) if flat[i] == b"id"]
    if not starts:
        return [flat]
    head = flat[:2]
    bounds = [2, *starts, len(flat)]
    return [head + flat[begin:end] for begin, end in pairwise(bounds)]


def stream_events(entry: EventEntry) -> list[tuple[str, EventFields]]:
    """One entry as its events: each with the entry's id and its fields as a dict."""
    entry_id = text(entry[0])
    return [(entry_id, event_fields(flat)) for flat in entry_events(entry[1])]


def job_from_hash(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """A job's hash as a dict: numbers as numbers, payload and result as raw JSON bytes, the errors
    of every attempt as a list, and `cancel_requested`."""
    job: dict[str, Any] = {}
    errors: dict[int, str] = {}
    for key, value in raw.items():
        name = text(key)
        if name in ("payload", "result"):
            job[name] = value
        elif name.startswith("error:"):
            errors[int(name[6:])] = text(value)
        elif name in INT_FIELDS:
            job[name] = int(value)
        elif name == "progress":
            job[name] = float(value)
        elif name == "parents":  # depends_on, as the job was added with it (a JSON array)
            job["depends_on"] = orjson.loads(value)
        else:
            job[name] = text(value)
    job["errors"] = [errors[n] for n in sorted(errors)]
    job["cancel_requested"] = job.pop("cancel", "0") == "1"
    job.pop("children", None)  # a flag for the scripts: some job waits for this one
    return job


def stats_from_reply(out: Sequence[Any]) -> Stats:
    """getStats' reply: the set sizes, the counters hash, each type's pending count, the paused and
    the limited types."""
    scheduled, active, completed, failed, cancelled, _workers = (int(x) for x in out[:6])
    counters = {text(out[6][i]): int(out[6][i + 1]) for i in range(0, len(out[6]), 2)}
    by_type: dict[str, dict[str, int]] = {}
    pending_total = 0
    for i in range(0, len(out[7]), 2):
        job_type, pending = text(out[7][i]), int(out[7][i + 1])
        pending_total += pending
        by_type[job_type] = {"pending": pending}
    worker_counts = {"idle": 0, "busy": 0, "draining": 0}
    for name, value in counters.items():
        kind, _, rest = name.partition(":")
        if kind == "workers":
            worker_counts[rest] = value
        elif rest in by_type:
            by_type[rest][kind] = value
    for counts in by_type.values():
        for kind in ("active", "scheduled", "waiting", "added", "completed", "failed", "retried",
                     "cancelled"):
            counts.setdefault(kind, 0)
        # kept by the scripts since this counter exists: a job scheduled before then may take it below 0
        counts["scheduled"] = max(0, counts["scheduled"])
    paused = orjson.loads(out[8]) if len(out) > 8 and out[8] else []
    limits = parse_limits(out[9]) if len(out) > 9 else {}
    waiting = int(out[10]) if len(out) > 10 else 0
    return Stats(pending_total, scheduled, active, completed, failed, cancelled, worker_counts, by_type,
                 paused, limits, waiting)
