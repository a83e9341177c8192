"""Redis key names of one queue. Every key shares the hash tag {queue}, so each script's keys live in
one Redis Cluster slot. docs/data-model.md describes every key."""

from __future__ import annotations

from dataclasses import dataclass

from empfast.config import check_queue_name

# Bump when the meaning of a key or field changes; the loader refuses to run against another layout.
LAYOUT_VERSION = "1"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    prefix: str
    meta: str
    seq: str
    types: str
    scheduled: str
    active: str
    completed: str
    failed: str
    cancelled: str
    workers: str
    worker_states: str
    stats: str
    events: str
    schedules: str  # repeating jobs: name -> its JSON (empfast/schedules.py)
    schedule_due: str  # name -> its next due time (ms)
    deadlines: str  # the running attempts' deadlines of the jobs with a timeout
    expiries: str  # the waiting jobs with an expiry (ttl_s, expires_at)
    waiting: str  # the jobs waiting for their parents (depends_on), by the time they were added

    @classmethod
    def for_queue(cls, queue: str) -> QueueKeys:
        prefix = "{" + check_queue_name(queue) + "}:"
        names = {f: prefix + f for f in cls.__slots__ if f != "prefix"}
        return cls(prefix=prefix, **names)

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def job_logs(self, job_id: str) -> str:
        """A job's log lines (appendJobLog), deleted with its hash; in a namespace of its own, as
        any job id may end in ':logs'."""
        return f"{self.prefix}logs:{job_id}"

    def children(self, job_id: str) -> str:
        """The ids of the jobs waiting for this one (depends_on), deleted with its hash; in a
        namespace of its own, as any job id may end in ':children'."""
        return f"{self.prefix}children:{job_id}"

    def pending(self, job_type: str) -> str:
        return f"{self.prefix}pending:{job_type}"

    # a grouped job type's bookkeeping (docs/job-control.md 4), written by the scripts alone (lua
    # includes groupKey, groupedQueue); named here for the code that reads it
    def group(self, job_type: str, group: str) -> str:
        """A group's pending jobs of a type; the type's length in bytes leads, so no type and group
        pair names another pair's key (group '': the type's jobs without one)."""
        return f"{self.prefix}group:{len(job_type.encode())}:{job_type}:{group}"

    def groups(self, job_type: str) -> str:
        """The type's line: its groups with pending jobs, scored by turn."""
        return f"{self.prefix}groups:{job_type}"

    def parked(self, job_type: str) -> str:
        """The type's groups at their per-group limit, out of the line."""
        return f"{self.prefix}parked:{job_type}"

    def group_active(self, job_type: str) -> str:
        """The type's active jobs by group."""
        return f"{self.prefix}group_active:{job_type}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    def worker_jobs(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}:jobs"
