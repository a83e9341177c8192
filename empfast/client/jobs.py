"""A job as the client SDK sees it: the spec of a submit, the record of a watched job's events
(fanned out to every waiter), the handle users hold, and the errors a job can end with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from empfast.connection import HubError
from empfast.ids import event_key
from empfast.protocol import is_final_event, splice

if TYPE_CHECKING:
    from empfast.client.client import Client

When = float | datetime  # a time: seconds since the epoch, or an aware datetime


class JobError(Exception):
    """A job ended without a result."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailedError(JobError):
    """The job failed for good: no attempts left, or its worker refused a retry."""

    def __init__(self, job_id: str, error: str, attempt: int | None = None) -> None:
        after = f" after attempt {attempt}" if attempt else ""
        super().__init__(job_id, f"job {job_id!r} failed{after}: {error}")
        self.error, self.attempt = error, attempt


class JobCancelledError(JobError):
    """The job was cancelled before it completed."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id!r} was cancelled; it has no result")


class NotRetryableError(JobError):
    """Only a job that failed for good or was cancelled can be retried."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(job_id, f"job {job_id!r} is {status}: only a failed or cancelled job can be retried")
        self.status = status


class SubmitManyError(HubError):
    """The hub refused one batch of a submit_many. Batches are all-or-nothing: nothing of the refused
    batch was added, and `accepted` holds the ids of the jobs of the batches before it, which were."""

    def __init__(self, frame: dict[str, Any], accepted: list[str]) -> None:
        super().__init__(frame)
        self.accepted = accepted


@dataclass(slots=True)
class JobSpec:
    """One job for `submit_many`; the fields mean what `Client.submit`'s arguments mean."""

    job_type: str
    payload: Any = None
    priority: int = 0
    job_id: str | None = None
    max_attempts: int = 3
    delay_s: float = 0
    payload_json: bytes | str | None = None
    timeout_s: float | None = None
    run_at: When | None = None
    ttl_s: float | None = None
    expires_at: When | None = None
    group: str | None = None  # its tenant: a type's jobs go round-robin by group
    depends_on: Sequence[str] | None = None  # its parents: it waits until each has completed


_SPEC_FIELDS = frozenset(f.name for f in fields(JobSpec))


def spec_arguments(spec: JobSpec) -> dict[str, Any]:
    """The spec as keyword arguments of Client.submit (the payload as it is, not copied)."""
    return {name: getattr(spec, name) for name in _SPEC_FIELDS}


def epoch_s(when: When) -> float:
    """A time as seconds since the epoch: a number is one already; a datetime must be aware."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError(f"{when!r} has no time zone: give an aware datetime (or epoch seconds)")
        return when.timestamp()
    return float(when)


def as_spec(job: JobSpec | Mapping[str, Any], index: int) -> JobSpec:
    if isinstance(job, JobSpec):
        return job
    unknown = set(job) - _SPEC_FIELDS
    if unknown:
        raise TypeError(f"jobs[{index}] has unknown keys {sorted(unknown)}; a job takes "
                        f"{sorted(_SPEC_FIELDS)}")
    return JobSpec(**job)


def job_body(spec: JobSpec, job_id: str) -> tuple[dict[str, Any], bytes | None]:
    """The submit_job fields of a job, and its pre-encoded payload if it came as JSON text. Fields
    at their default are left out: the hub applies the same defaults, and frames stay small."""
    body: dict[str, Any] = {"job_type": spec.job_type, "job_id": job_id}
    if spec.priority:
        body["priority"] = spec.priority
    if spec.max_attempts != 3:
        body["max_attempts"] = spec.max_attempts
    if spec.delay_s:
        body["delay_s"] = spec.delay_s
    for name in ("timeout_s", "ttl_s", "group", "depends_on"):
        if getattr(spec, name) is not None:
            body[name] = getattr(spec, name)
    for name in ("run_at", "expires_at"):
        if getattr(spec, name) is not None:
            body[name] = epoch_s(getattr(spec, name))
    raw = spec.payload_json
    if raw is None:
        if spec.payload is not None:
            body["payload"] = spec.payload
        return body, None
    if spec.payload is not None:
        raise TypeError("give payload or payload_json, not both")
    raw = raw.encode() if isinstance(raw, str) else bytes(raw)
    try:
        # checked here because the hub answers invalid JSON without the request's `req`, which
        # would leave the request waiting for its reply until it times out
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"payload_json is not valid JSON ({exc}); pass the value as payload= "
                         "to have it encoded") from None
    return body, raw


def job_bytes(spec: JobSpec, job_id: str) -> bytes:
    body, raw = job_body(spec, job_id)
    return orjson.dumps(body) if raw is None else splice(body, "payload", raw)


class Watch:
    """What this client knows of one job it watches: the events seen so far (every iterator reads
    all of them, so late iterators miss nothing), the last event id (the resume point after a
    reconnect), and the final event once it came."""

    __slots__ = ("__weakref__", "_last_key", "_pulse", "error", "events", "final", "job_id", "last_id",
                 "since", "submits", "submitting", "subscribing")

    def __init__(self, job_id: str, since: str | None = None) -> None:
        self.job_id = job_id
        self.since = since  # where the first subscription starts, when the caller gave one
        self.events: list[dict[str, Any]] = []
        self.last_id: str | None = None
        self._last_key: tuple[int, int] | None = None
        self.final: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.submitting = 0  # submits (or retries) of this id in flight: they subscribe by themselves
        # the submit_job frames in flight, sent again as they are after a reconnect; a resubscribe
        # turns their `subscribe` off, so the job is followed once on the new connection
        self.submits: list[dict[str, Any]] = []
        self.subscribing: asyncio.Future[None] | None = None
        self._pulse = asyncio.Event()

    @property
    def live(self) -> bool:
        return self.final is None and self.error is None

    def add(self, frame: dict[str, Any]) -> bool:
        """Record an event; False for a repeat (a replay overlapping live events, a second final)."""
        if self.final is not None:
            return False
        key = event_key(frame.get("event_id"))
        if key is not None:
            if self._last_key is not None and key <= self._last_key:
                return False
            self._last_key, self.last_id = key, frame["event_id"]
        self.events.append(frame)
        if is_final_event(frame):
            self.final = frame
        self._wake()
        return True

    def fail(self, exc: BaseException) -> None:
        if self.live:
            self.error = exc
            self._wake()

    def _wake(self) -> None:
        # set then clear: wakes every current waiter; each re-checks the state before waiting again
        self._pulse.set()
        self._pulse.clear()

    async def changed(self) -> None:
        await self._pulse.wait()


class JobHandle:
    """A submitted job. Holding it keeps the job's events recorded in this client, so `result()` and
    `events()` see everything from the submit on, however late they are called."""

    __slots__ = ("_watch", "client", "created", "job_id", "position", "status")

    def __init__(self, client: Client, watch: Watch, status: str, created: bool,
                 position: int | None = None) -> None:
        self.client = client
        self._watch = watch
        self.job_id = watch.job_id
        self.status = status  # as the hub answered the submit
        self.created = created  # False: a job with this id existed already (or a resent submit landed)
        # pending: its rank among its type's pending jobs at the submit (0: next); else None.
        # Client.status(job_id)["position"] tells it now
        self.position = position

    # a timeout argument, as in Celery's get(timeout=) and arq's result(timeout=): the error then
    # names the job, and the job keeps its subscription for a later wait
    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """The job's result; JobFailedError, JobCancelledError, or TimeoutError after `timeout` s."""
        return await self.client._wait_result(self._watch, timeout)

    def events(self, since: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The job's events from the submit on (after `since`, if given); ends after the final one."""
        return self.client._iterate(self._watch, since)

    async def cancel(self) -> dict[str, Any]:
        return await self.client.cancel(self.job_id)

    def __repr__(self) -> str:
        return (f"JobHandle(job_id={self.job_id!r}, status={self.status!r}, created={self.created}, "
                f"position={self.position})")
