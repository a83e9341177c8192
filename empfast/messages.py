"""Every message a peer may send (docs/protocol.md section 4), declared once as a msgspec Struct,
and which role may send which. A frame decodes straight into its Struct (empfast/decoding.py): msgspec
parses and validates it in C (types, ranges, lengths, patterns) and keeps `payload` and `result`
(`msgspec.Raw`) as the exact bytes they came as, never parsed. Unknown fields are ignored (section
3), so no Struct forbids them. What the Structs cannot say is checked by the decoding.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from empfast.limits import (
    MAX_AGE_S,
    MAX_ATTEMPT_NUMBER,
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_CONCURRENCY,
    MAX_DELAY_S,
    MAX_DEPENDENCIES,
    MAX_GROUP_BYTES,
    MAX_JOB_ID_BYTES,
    MAX_JOB_TYPE_BYTES,
    MAX_JOB_TYPES_PER_WORKER,
    MAX_LOG_LINES,
    MAX_PAGE,
    MAX_PRIORITY,
    MAX_RATE,
    MAX_RATE_PER_S,
    MAX_REQ_BYTES,
    MAX_STATS_INTERVAL_S,
    MAX_TIMEOUT_S,
    MAX_TYPE_CONCURRENCY,
    MIN_RATE_PER_S,
    MIN_STATS_INTERVAL_S,
)
from empfast.protocol import EVENT_ID_RE, WORKER_ID_RE
from empfast.schedules import SCHEDULE_NAME_RE

# a page's cursor: a score (at most 24 characters) and a job id (MAX_JOB_ID_BYTES)
MAX_CURSOR_CHARS = 24 + 1 + MAX_JOB_ID_BYTES

# ---- field types -------------------------------------------------------------------------------

JobType = Annotated[str, Meta(min_length=1, max_length=MAX_JOB_TYPE_BYTES)]
JobTypes = Annotated[list[JobType], Meta(min_length=1, max_length=MAX_JOB_TYPES_PER_WORKER)]
JobId = Annotated[str, Meta(min_length=1, max_length=MAX_JOB_ID_BYTES)]
GroupName = Annotated[str, Meta(min_length=1, max_length=MAX_GROUP_BYTES)]
# ASCII, so characters are bytes; WORKER_ID_RE spells out MAX_WORKER_ID_BYTES
WorkerId = Annotated[str, Meta(pattern=WORKER_ID_RE.pattern)]
EventId = Annotated[str, Meta(pattern=EVENT_ID_RE.pattern)]
ScheduleName = Annotated[str, Meta(pattern=SCHEDULE_NAME_RE.pattern)]
Priority = Annotated[int, Meta(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]
MaxAttempts = Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS)]
Attempt = Annotated[int, Meta(ge=0, le=MAX_ATTEMPT_NUMBER)]
# a request id: a string of at most 128 bytes (checked by decode()), or a JSON number (int64)
Req = (Annotated[str, Meta(max_length=MAX_REQ_BYTES)] | Annotated[int, Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
       | float | None)

class Message(Struct, tag_field="type", kw_only=True):
    """A frame from a peer: tagged by its `type`; `req`, when given, is echoed in the reply."""

    req: Req = None


class JobBody(Struct, kw_only=True):
    """One job of submit_job and of submit_jobs' `jobs` (protocol.md 4.1); UNSET: not given, null refused."""

    job_type: JobType
    payload: Raw = Raw(b"{}")
    priority: Priority = 0
    job_id: JobId | None = None
    max_attempts: MaxAttempts = 3
    delay_s: Annotated[float, Meta(ge=0, le=MAX_DELAY_S)] | UnsetType = UNSET
    run_at: Annotated[float, Meta(ge=0)] | UnsetType = UNSET  # s since the epoch; not with delay_s
    timeout_s: Annotated[float, Meta(ge=0.001, le=MAX_TIMEOUT_S)] | UnsetType = UNSET  # absent: the default
    ttl_s: Annotated[float, Meta(ge=0.001, le=MAX_DELAY_S)] | UnsetType = UNSET
    expires_at: Annotated[float, Meta(ge=0)] | UnsetType = UNSET  # s since the epoch; not with ttl_s
    group: GroupName | UnsetType = UNSET  # a tenant: claims go round-robin across a type's groups
    # its parents (docs/job-control.md 5): it waits until each has completed
    depends_on: Annotated[list[JobId], Meta(min_length=1, max_length=MAX_DEPENDENCIES)] | UnsetType = UNSET


# ---- client -> hub (4.1) -------------------------------------------------------------------------

class SubmitJob(JobBody, tag_field="type", tag="submit_job"):
    """A JobBody with the envelope of a Message (msgspec allows one base with fields)."""

    req: Req = None
    subscribe: bool = True


class SubmitJobs(Message, tag="submit_jobs"):
    jobs: Annotated[list[JobBody], Meta(min_length=1, max_length=MAX_BATCH)]
    subscribe: bool = True


class GetJobStatus(Message, tag="get_job_status"):
    job_id: JobId
    payload: bool = False  # add the job's payload, raw as submitted
    logs: Annotated[int, Meta(ge=1, le=MAX_LOG_LINES)] | bool = False  # its newest log lines (true: all)


class RequestJobStatus(GetJobStatus, tag="request_job_status"):
    """The older name of get_job_status."""


class SubscribeJob(Message, tag="subscribe_job"):
    job_id: JobId
    since: EventId | None = None  # the event_id of the last event seen


class UnsubscribeJob(Message, tag="unsubscribe_job"):
    job_id: JobId


class CancelJob(Message, tag="cancel_job"):
    job_id: JobId


class RetryJob(Message, tag="retry_job"):
    job_id: JobId
    attempts: MaxAttempts = 1
    retry_id: JobId | None = None


class GetStats(Message, tag="get_stats"):
    pass


class ListJobs(Message, tag="list_jobs"):
    """A page of the jobs of one status (docs/management.md section 2)."""

    status: Literal["waiting", "scheduled", "pending", "active", "completed", "failed", "cancelled"]
    job_type: JobType | None = None
    order: Literal["oldest", "newest"] = "oldest"
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE)] = 50
    cursor: Annotated[str, Meta(min_length=1, max_length=MAX_CURSOR_CHARS)] | None = None
    payloads: bool = False


class Ping(Message, tag="ping"):
    pass


# ---- worker -> hub (4.2) -------------------------------------------------------------------------

class RegisterWorker(Message, tag="register_worker"):
    job_types: JobTypes
    worker_id: WorkerId | None = None  # default: the path's suffix, else one the hub makes
    concurrency: Annotated[int, Meta(ge=0, le=MAX_CONCURRENCY)] = 1
    batch: bool = False  # jobs given out together come in one jobs_assigned frame


class ClaimJob(Message, tag="claim_job"):
    job_id: JobId


class UpdateJobProgress(Message, tag="update_job_progress"):
    job_id: JobId
    progress: Annotated[float, Meta(ge=0, le=100)]
    message: str = ""  # truncated by the hub at MAX_PROGRESS_MESSAGE_CHARS, not refused
    attempt: Attempt = 0  # only when the hub may no longer track the job (docs/protocol.md 5)


class AppendJobLog(Message, tag="append_job_log"):
    job_id: JobId
    lines: Annotated[list[str], Meta(min_length=1, max_length=MAX_LOG_LINES)]  # cut by the store
    attempt: Attempt = 0


class Completion(Struct, kw_only=True):
    """One job's outcome: a complete_job, and each item of complete_jobs' `jobs`."""

    job_id: JobId
    result: Raw = Raw(b"null")
    attempt: Attempt = 0


class CompleteJob(Completion, tag_field="type", tag="complete_job"):
    req: Req = None


class CompleteJobs(Message, tag="complete_jobs"):
    jobs: Annotated[list[Completion], Meta(min_length=1, max_length=MAX_BATCH)]


class FailJob(Message, tag="fail_job"):
    job_id: JobId
    error: str  # truncated by the hub at MAX_ERROR_CHARS, not refused
    retry: bool = True
    attempt: Attempt = 0


class WorkerHeartbeat(Message, tag="worker_heartbeat"):
    pass


class WorkerStatus(Message, tag="worker_status"):
    status: Literal["idle", "draining"]


class UnregisterWorker(Message, tag="unregister_worker"):
    pass


# ---- monitor -> hub (4.3) ------------------------------------------------------------------------

class SubscribeStats(Message, tag="subscribe_stats"):
    interval_s: Annotated[float, Meta(ge=MIN_STATS_INTERVAL_S, le=MAX_STATS_INTERVAL_S)] = 1.0


class GetWorkers(Message, tag="get_workers"):
    pass


class GetQueues(Message, tag="get_queues"):  # every queue of the hub with its stats
    pass


class SetJobFeed(Message, tag="set_job_feed"):
    """Every job event of the queue (a monitor's default), those of some job types only, or none."""

    job_events: bool
    job_types: JobTypes | None = None


class RetryJobs(Message, tag="retry_jobs"):
    """Retry every failed (dead-lettered) or cancelled job, or those of a type (management.md 3)."""

    status: Literal["failed", "cancelled"] = "failed"
    job_type: JobType | None = None
    attempts: MaxAttempts = 1
    dry_run: bool = False


class RemoveJobs(Message, tag="remove_jobs"):
    """Remove the jobs that finished in a status (of a type) at least `older_than_s` ago."""

    status: Literal["completed", "failed", "cancelled"]
    job_type: JobType | None = None
    older_than_s: Annotated[float, Meta(ge=0, le=MAX_AGE_S)] = 0.0
    dry_run: bool = False


class PauseType(Message, tag="pause_type"):
    job_type: JobType  # no worker is given a job of it until resume_type; its jobs wait


class ResumeType(Message, tag="resume_type"):
    job_type: JobType


class SetTypeLimits(Message, tag="set_type_limits"):
    """A job type's limits (docs/job-control.md 3): at most `concurrency` jobs active at once
    across every worker, at most `rate` starts per `per_s` seconds, at most `group_concurrency`
    active at once of each group (4); null clears one."""

    job_type: JobType
    concurrency: Annotated[int, Meta(ge=1, le=MAX_TYPE_CONCURRENCY)] | None = None
    rate: Annotated[int, Meta(ge=1, le=MAX_RATE)] | None = None
    per_s: Annotated[float, Meta(ge=MIN_RATE_PER_S, le=MAX_RATE_PER_S)] = 1.0
    group_concurrency: Annotated[int, Meta(ge=1, le=MAX_TYPE_CONCURRENCY)] | None = None


class SetSchedule(Message, tag="set_schedule"):
    """Create or replace a repeating job (docs/job-control.md 2): `cron` in `tz`, or `every_s`
    (empfast/schedules.py checks what a Struct cannot: one of the two, the expression, the zone)."""

    name: ScheduleName
    job_type: JobType
    payload: Raw = Raw(b"{}")
    priority: Priority = 0
    max_attempts: MaxAttempts = 3
    cron: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    every_s: float | None = None
    tz: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    paused: bool = False


class ListSchedules(Message, tag="list_schedules"):
    pass


class NamedSchedule(Message):
    name: ScheduleName


class PauseSchedule(NamedSchedule, tag="pause_schedule"):
    pass


class ResumeSchedule(NamedSchedule, tag="resume_schedule"):
    pass


class RemoveSchedule(NamedSchedule, tag="remove_schedule"):
    pass


# ---- roles and handlers ---------------------------------------------------------------------------

AnyMessage = Message | SubmitJob | CompleteJob
_JOB_STATUS, _SUBSCRIBE = (GetJobStatus, RequestJobStatus), (SubscribeJob, UnsubscribeJob)
ROLE_MESSAGES: dict[str, tuple[type[AnyMessage], ...]] = {
    "client": (SubmitJob, SubmitJobs, *_JOB_STATUS, *_SUBSCRIBE, CancelJob, RetryJob, GetStats, ListJobs,
               Ping),
    "worker": (RegisterWorker, ClaimJob, UpdateJobProgress, AppendJobLog, CompleteJob, CompleteJobs,
               FailJob, WorkerHeartbeat, WorkerStatus, UnregisterWorker, Ping),
    "monitor": (SubscribeStats, GetStats, GetWorkers, GetQueues, SetJobFeed, *_SUBSCRIBE, *_JOB_STATUS,
                ListJobs, RetryJobs, RemoveJobs, PauseType, ResumeType, SetTypeLimits, SetSchedule,
                ListSchedules, PauseSchedule, ResumeSchedule, RemoveSchedule, Ping),
}


def tag_of(cls: type[AnyMessage]) -> str:
    """The wire name (`type`) of a message class."""
    return str(cls.__struct_config__.tag)


ALL_MESSAGES: dict[str, type[AnyMessage]] = {tag_of(c): c for cs in ROLE_MESSAGES.values() for c in cs}
# the message types each role may send, by wire name (the role table of docs/protocol.md section 2)
ROLE_TYPES: dict[str, frozenset[str]] = {role: frozenset(map(tag_of, classes))
                                         for role, classes in ROLE_MESSAGES.items()}
# a message type whose handler is another's (request_job_status is get_job_status)
ALIASES: dict[type[AnyMessage], type[AnyMessage]] = {RequestJobStatus: GetJobStatus}
# the members kept raw, which a frame must not give twice
RAW_FIELDS: dict[type[AnyMessage], str] = {SubmitJob: "payload", CompleteJob: "result",
                                          SetSchedule: "payload"}
# list fields whose length over the limit is limit_exceeded (with `limit`), not bad_message
COUNT_LIMITS: dict[tuple[type[AnyMessage], str], int] = {(SubmitJobs, "jobs"): MAX_BATCH,
                                                         (CompleteJobs, "jobs"): MAX_BATCH,
                                                         (AppendJobLog, "lines"): MAX_LOG_LINES}


def handler_name(cls: type[AnyMessage]) -> str:
    """The handler of a message type: `on_<wire name>` (of the type it is an alias of); the hub's
    handler table (hub/server.py) is made of these."""
    return "on_" + tag_of(ALIASES.get(cls, cls))
