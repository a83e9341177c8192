"""A job as the worker SDK runs it: the `Job` a handler receives, the handler contract, and the
outcome of one run (the complete_job or fail_job frame the hub must acknowledge)."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from empfast.limits import MAX_ERROR_CHARS, MAX_JOB_TYPE_BYTES, MAX_PROGRESS_MESSAGE_CHARS

Handler = Callable[["Job"], Awaitable[Any]]
ProgressReporter = Callable[[float, str], None]
LogWriter = Callable[[list[str]], None]

SHUTDOWN_ERROR = "worker shutting down"
CANCELLED_ERROR = "cancelled"
# cancel_job reasons after which the attempt is no longer ours (docs/protocol.md 4.4)
LOST_REASONS = frozenset({"lease_lost", "timeout"})


class NonRetryableError(Exception):
    """Raise from a handler to fail the job for good: it is dead-lettered, not retried."""


class Job:
    """One attempt of a job, handed to its handler. `payload` is the submitted JSON, decoded."""

    __slots__ = ("_log", "_report", "attempt", "job_id", "job_type", "lease_s", "payload", "priority",
                 "reassigned")

    def __init__(self, job_id: str, job_type: str, payload: Any = None, *, attempt: int = 1,
                 priority: int = 0, reassigned: bool = False, lease_s: float = 30.0,
                 report: ProgressReporter | None = None, log: LogWriter | None = None) -> None:
        self.job_id, self.job_type, self.payload = job_id, job_type, payload
        self.attempt, self.priority, self.reassigned, self.lease_s = attempt, priority, reassigned, lease_s
        # None for a Job built by hand (e.g. to unit-test a handler): progress and logs are then no-ops
        self._report, self._log = report, log

    async def progress(self, pct: float, message: str = "") -> None:
        """Report progress (0..100) and extend the lease. Cheap to call in a tight loop: frames are
        coalesced per job and the latest value is always sent."""
        if isinstance(pct, bool) or not isinstance(pct, int | float) or math.isnan(pct):
            raise TypeError(f"progress must be a number from 0 to 100, got {pct!r}")
        if not isinstance(message, str):
            raise TypeError(f"a progress message must be a string, got {type(message).__name__}")
        if self._report is not None:
            self._report(min(100.0, max(0.0, float(pct))), message[:MAX_PROGRESS_MESSAGE_CHARS])
        # a yield point, so a CPU-bound loop that reports progress still lets heartbeats and
        # cancellation through
        await asyncio.sleep(0)

    def log(self, *lines: str) -> None:
        """Append lines to the job's log (kept with the job, shown live to its watchers and on
        the dashboard). Cheap in a loop: lines are coalesced per job with progress, sent at most
        once an interval and always before the outcome; a line over MAX_LOG_LINE_BYTES is cut."""
        for line in lines:
            if not isinstance(line, str):
                raise TypeError(f"a log line must be a string, got {type(line).__name__}")
        if self._log is not None and lines:
            self._log(list(lines))

    def __repr__(self) -> str:
        return f"Job({self.job_id!r}, {self.job_type!r}, attempt={self.attempt})"


def check_handler(job_type: str, handler: object) -> Handler:
    """A handler is an `async def handler(job)`; refuse anything else before any job is lost."""
    if not isinstance(job_type, str) or not job_type or len(job_type.encode()) > MAX_JOB_TYPE_BYTES:
        raise ValueError(f"a job type is a string of 1 to {MAX_JOB_TYPE_BYTES} bytes, got {job_type!r}")
    # an instance of a class with an `async def __call__` is a handler too
    call = type(handler).__call__ if callable(handler) else None
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
    if not is_async:
        raise TypeError(f"the handler for {job_type!r} must be an `async def handler(job)`, got "
                        f"{handler!r}; wrap blocking code in `await asyncio.to_thread(...)`")
    return handler  # type: ignore[return-value]


async def no_handler(job: Job) -> Any:
    # the hub only assigns registered types, so this means a hub bug or a mixed-up deploy: retryable,
    # so that a worker that has the handler can still run the job
    raise LookupError(f"worker has no handler for job type {job.job_type!r}")


@dataclass(eq=False)
class Run:
    """A job's handler task and its progress coalescing state."""

    job: Job
    handler: Handler
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None  # "cancelled", "lease_lost", "timeout" or "shutdown" once cancelled
    unsent_progress: tuple[float, str] | None = None
    unsent_logs: list[str] = field(default_factory=list)
    progress_sent_at: float = -math.inf
    flush_timer: asyncio.TimerHandle | None = None

    @property
    def lost(self) -> bool:
        """The attempt is over in the store (its lease lost, or failed `timeout`): nothing more may
        be sent about it, and a new attempt of the job may come."""
        return self.cancel_reason in LOST_REASONS

    def cancel(self, reason: str) -> None:
        # a lost attempt overrides any earlier reason: nothing more may be sent about the job
        if self.cancel_reason is None or reason in LOST_REASONS:
            self.cancel_reason = reason
        if self.task is not None:
            self.task.cancel()


@dataclass(eq=False)
class Outcome:
    """A complete_job or fail_job kept until the hub acknowledges it, re-sent after reconnects."""

    job_id: str
    attempt: int
    message: dict[str, Any]
    result_bytes: int = -1  # a completion's result size; -1 for a failure

    @property
    def batchable(self) -> bool:
        """A completion, which may go with others in one complete_jobs frame."""
        return self.result_bytes >= 0


def completion(job: Job, result: Any, max_result_bytes: int) -> Outcome:
    """The outcome of a handler that returned `result`: encoded once (a re-send after a reconnect
    reuses the bytes), or a final failure when it cannot be encoded or is too big."""
    try:
        raw = orjson.dumps(result)
    except TypeError as exc:
        return failure(job, f"the handler's result cannot be encoded as JSON: {exc}", retry=False)
    if len(raw) > max_result_bytes:
        return failure(job, f"the result is {len(raw)} bytes, over the hub's limit of {max_result_bytes}: "
                            "keep big data in object storage and return its URL", retry=False)
    return Outcome(job.job_id, job.attempt, {"type": "complete_job", "job_id": job.job_id,
                                             "attempt": job.attempt, "result": orjson.Fragment(raw)},
                   len(raw))


def failure(job: Job, error: str, *, retry: bool) -> Outcome:
    return Outcome(job.job_id, job.attempt, {"type": "fail_job", "job_id": job.job_id,
                                             "attempt": job.attempt, "error": error[:MAX_ERROR_CHARS],
                                             "retry": retry})


def cancelled_outcome(run: Run) -> Outcome | None:
    """What a cancelled run reports: nothing after a lost lease or a timeout (the store ended the
    attempt: anything sent would be refused), else a failure that says why."""
    if run.lost:
        return None
    if run.cancel_reason == "cancelled":
        # any retry value works: a job whose cancel was asked ends cancelled
        return failure(run.job, CANCELLED_ERROR, retry=False)
    if run.cancel_reason == "shutdown":
        return failure(run.job, SHUTDOWN_ERROR, retry=True)
    return failure(run.job, "the handler's task was cancelled", retry=True)
