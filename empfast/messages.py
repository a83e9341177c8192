"""Every message a peer may send (docs/protocol.md section 4), declared once as a msgspec Struct.

A frame decodes straight into its Struct: msgspec parses and validates it in C (types, ranges,
lengths, patterns) and keeps `payload` and `result` (`msgspec.Raw`) as the exact bytes they came
as, never parsed. `decode(role, data)` is the one entry point: it returns the message, or raises
ProtocolError with the code of docs/protocol.md section 3 and, for `bad_message`, the bad field's
path (`jobs[2].priority`). Unknown fields are ignored (section 3), so no Struct forbids them.

What the Structs cannot say, and stays in code:
- names are limited in UTF-8 bytes (limits.py), max_length counts characters: decode() checks bytes
  and control characters of a frame with escapes, DEL or non-ASCII (no __post_init__: a call a Struct);
- a `payload` or `result` given twice (msgspec keeps the last; the hub must refuse it);
- the size of a payload or result (`limit_exceeded`), which depends on the hub's frame limit;
- whatever needs the connection: the worker id against the path, registration, subscriptions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from empfast.errors import BAD_JSON, BAD_MESSAGE, FORBIDDEN, LIMIT_EXCEEDED, UNKNOWN_TYPE, ProtocolError
from empfast.ids import MAX_EVENT_ID_PART
from empfast.limits import (
    MAX_AGE_S,
    MAX_ATTEMPT_NUMBER,
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_CONCURRENCY,
    MAX_DELAY_S,
    MAX_JOB_ID_BYTES,
    MAX_JOB_TYPE_BYTES,
    MAX_JOB_TYPES_PER_WORKER,
    MAX_PAGE,
    MAX_PRIORITY,
    MAX_REQ_BYTES,
    MAX_STATS_INTERVAL_S,
    MAX_TIMEOUT_S,
    MIN_STATS_INTERVAL_S,
)
from empfast.protocol import EVENT_ID_RE, WORKER_ID_RE, member_given_twice

# a page's cursor: a score (at most 24 characters) and a job id (MAX_JOB_ID_BYTES)
MAX_CURSOR_CHARS = 24 + 1 + MAX_JOB_ID_BYTES

# ---- field types -------------------------------------------------------------------------------

JobType = Annotated[str, Meta(min_length=1, max_length=MAX_JOB_TYPE_BYTES)]
JobTypes = Annotated[list[JobType], Meta(min_length=1, max_length=MAX_JOB_TYPES_PER_WORKER)]
JobId = Annotated[str, Meta(min_length=1, max_length=MAX_JOB_ID_BYTES)]
# ASCII, so characters are bytes; WORKER_ID_RE spells out MAX_WORKER_ID_BYTES
WorkerId = Annotated[str, Meta(pattern=WORKER_ID_RE.pattern)]
EventId = Annotated[str, Meta(pattern=EVENT_ID_RE.pattern)]
Priority = Annotated[int, Meta(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]
MaxAttempts = Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS)]
Attempt = Annotated[int, Meta(ge=0, le=MAX_ATTEMPT_NUMBER)]
# a request id: a string of at most 128 bytes (checked by decode()), or a JSON number (int64)
Req = (Annotated[str, Meta(max_length=MAX_REQ_BYTES)] | Annotated[int, Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
       | float | None)

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _utf8_len(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


# the names whose bytes and characters decode() checks, by field name
NAME_BYTES = {"job_id": MAX_JOB_ID_BYTES, "retry_id": MAX_JOB_ID_BYTES, "job_type": MAX_JOB_TYPE_BYTES}


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

    status: Literal["scheduled", "pending", "active", "completed", "failed", "cancelled"]
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


# ---- roles, handlers, decoding -------------------------------------------------------------------

AnyMessage = Message | SubmitJob | CompleteJob
_JOB_STATUS, _SUBSCRIBE = (GetJobStatus, RequestJobStatus), (SubscribeJob, UnsubscribeJob)
ROLE_MESSAGES: dict[str, tuple[type[AnyMessage], ...]] = {
    "client": (SubmitJob, SubmitJobs, *_JOB_STATUS, *_SUBSCRIBE, CancelJob, RetryJob, GetStats, ListJobs,
               Ping),
    "worker": (RegisterWorker, ClaimJob, UpdateJobProgress, CompleteJob, CompleteJobs, FailJob,
               WorkerHeartbeat, WorkerStatus, UnregisterWorker, Ping),
    "monitor": (SubscribeStats, GetStats, GetWorkers, GetQueues, SetJobFeed, *_SUBSCRIBE, *_JOB_STATUS,
                ListJobs, RetryJobs, RemoveJobs, PauseType, ResumeType, Ping),
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
RAW_FIELDS: dict[type[AnyMessage], str] = {SubmitJob: "payload", CompleteJob: "result"}
# list fields whose length over the limit is limit_exceeded (with `limit`), not bad_message
COUNT_LIMITS: dict[tuple[type[AnyMessage], str], int] = {(SubmitJobs, "jobs"): MAX_BATCH,
                                                         (CompleteJobs, "jobs"): MAX_BATCH}


def handler_name(cls: type[AnyMessage]) -> str:
    """The handler of a message type: `on_<wire name>` (of the type it is an alias of)."""
    return "on_" + tag_of(ALIASES.get(cls, cls))


def handler_table(*rooms: object) -> dict[type[AnyMessage], Any]:
    """Message class -> the bound `on_<wire name>` handler of the first room that has one, for every
    type of every role; a missing handler fails the start-up, not the first frame of that type."""
    table: dict[type[AnyMessage], Any] = {}
    for cls in ALL_MESSAGES.values():
        name = handler_name(cls)
        owner = next((room for room in rooms if hasattr(room, name)), None)
        if owner is None:
            raise AttributeError(f"no handler {name} for {tag_of(cls)!r} messages")
        table[cls] = getattr(owner, name)
    return table


# ---- decoding ------------------------------------------------------------------------------------

class MessageError(ProtocolError):
    """A refused frame. `req` is its request id when valid (the error echoes it), `kind` its type
    when the role may send it (the hub answers `not_registered` for it first)."""

    def __init__(self, code: str, message: str, req: Any = None, kind: str | None = None,
                 **extra: Any) -> None:
        super().__init__(code, message, **extra)
        self.req, self.kind = req, kind


class _Envelope(Struct):
    """What a refused frame is read for: its type and request id (other members are skipped)."""

    type: Any = None
    req: Any = None


_DECODERS = {role: msgspec.json.Decoder(Union[classes])  # noqa: UP007  # a tuple of types
             for role, classes in ROLE_MESSAGES.items()}
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ANY = msgspec.json.Decoder()
_AT = re.compile(r"(.*?)(?: - at `\$\.?(.*)`)?", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_BACKSLASH, _DEL = ord("\\"), 0x7F
_INT64 = (-(1 << 63), (1 << 63) - 1)


def decode(role: str, data: bytes) -> AnyMessage:
    """The message a peer of `role` sent in one text frame, validated; else MessageError."""
    try:
        message: AnyMessage = _DECODERS[role].decode(data)
    except msgspec.ValidationError as exc:
        raise _refusal(role, data, str(exc)) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad_json(exc) from None
    escapes = _BACKSLASH in data  # an int: memchr, several times faster than b"\\" in data
    # JSON text holds no raw control character but DEL: without escapes, DEL or non-ASCII, every
    # string is printable ASCII, so the Metas' character counts were byte counts
    if escapes or not data.isascii() or _DEL in data:
        _check_texts(message)
    if type(message) is SubscribeJob and message.since is not None:
        _check_since(message.since, message.req)
    key = RAW_FIELDS.get(type(message))
    if key is not None and member_given_twice(data, key, getattr(message, key), escapes):
        raise MessageError(BAD_MESSAGE, f"field {key!r} is given twice: give it once", message.req,
                           tag_of(type(message)), field=key)
    return message


def _check_texts(message: AnyMessage) -> None:
    """What the Metas cannot check: the bytes of a string req, and of each name (limits.py counts
    bytes of UTF-8, msgspec's max_length characters), and control characters in names."""
    req = message.req
    if type(req) is str and _utf8_len(req) > MAX_REQ_BYTES:
        raise MessageError(BAD_MESSAGE, f"field 'req' must be a string of at most {MAX_REQ_BYTES} bytes "
                                        "or a number", field="req")
    names = [(f, getattr(message, f), NAME_BYTES[f]) for f in message.__struct_fields__ if f in NAME_BYTES]
    if isinstance(message, SubmitJobs | CompleteJobs):
        names += [(f"jobs[{i}].{f}", getattr(job, f), NAME_BYTES[f])
                  for i, job in enumerate(message.jobs) for f in ("job_type", "job_id") if hasattr(job, f)]
    elif isinstance(message, RegisterWorker):
        names += [(f"job_types[{i}]", name, MAX_JOB_TYPE_BYTES) for i, name in enumerate(message.job_types)]
    for field, value, max_bytes in names:
        if value is None or (value.isascii() and value.isprintable()):
            continue  # one byte a character, bounded by the Meta
        why = (f"must be 1 to {max_bytes} bytes of UTF-8" if _utf8_len(value) > max_bytes
               else "must not contain control characters" if _CONTROL.search(value) else "")
        if why:
            raise MessageError(BAD_MESSAGE, f"field {field!r} {why}", req, tag_of(type(message)),
                               field=field)


def _check_since(since: str, req: Any) -> None:
    """The pattern bounds each number of the id to 20 digits, which reach past 2^64 - 1."""
    if any(int(part) > MAX_EVENT_ID_PART for part in since.split("-")):
        raise MessageError(BAD_MESSAGE, "field 'since' must be an event id '<ms>-<seq>' whose numbers are "
                                        f"at most {MAX_EVENT_ID_PART}", req, tag_of(SubscribeJob),
                           field="since")


def _bad_json(exc: BaseException) -> MessageError:
    why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    return MessageError(BAD_JSON, f"the frame is not valid JSON ({why}); send one JSON object per "
                                  "text frame")


def _valid_req(req: Any) -> bool:
    if req is None or type(req) is float:
        return True
    if type(req) is int:
        return _INT64[0] <= req <= _INT64[1]
    return type(req) is str and _utf8_len(req) <= MAX_REQ_BYTES


def _refusal(role: str, data: bytes, text: str) -> MessageError:
    """A refused frame's error, in the hub's order: JSON, object, type, req, type known, allowed, field."""
    try:
        envelope = _ENVELOPE.decode(data)
    except msgspec.ValidationError:  # not an object; but is it JSON at all?
        try:
            value = _ANY.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            return _bad_json(exc)
        return MessageError(BAD_MESSAGE, "a frame must be a JSON object with a 'type' field, got a "
                                         f"JSON {type(value).__name__}", field="")
    except (msgspec.DecodeError, RecursionError) as exc:
        return _bad_json(exc)
    kind, req = envelope.type, envelope.req
    if not isinstance(kind, str):
        return MessageError(BAD_MESSAGE, "field 'type' is missing or not a string", field="type")
    if not _valid_req(req):
        return MessageError(BAD_MESSAGE, f"field 'req' must be a string of at most {MAX_REQ_BYTES} "
                                         "bytes or a number", field="req")
    if kind not in ALL_MESSAGES:
        return MessageError(UNKNOWN_TYPE, f"unknown message type {kind!r}; see docs/protocol.md", req)
    if kind not in ROLE_TYPES[role]:
        return MessageError(FORBIDDEN, f"a {role} may not send {kind!r}: connect to the matching "
                                       "/ws/<role> endpoint", req)
    return _field_error(ALL_MESSAGES[kind], text, req)


def _field_error(cls: type[AnyMessage], text: str, req: Any) -> MessageError:
    """bad_message naming the field of msgspec's error (`... - at `$.jobs[2].priority`` -> field
    "jobs[2].priority"); a list over its count limit is limit_exceeded."""
    match = _AT.fullmatch(text)
    detail, path = (match[1], match[2] or "") if match else (text, "")
    kind = tag_of(cls)
    missing = _MISSING.match(detail)
    field = (f"{path}.{missing[1]}" if path else missing[1]) if missing else path
    if missing:
        return MessageError(BAD_MESSAGE, f"field {field!r} is required (see {kind} in docs/protocol.md)",
                            req, kind, field=field)
    if field == "type":  # decoded as one type, then given again as another
        return MessageError(BAD_MESSAGE, "field 'type' is given twice: give it once", req, field="type")
    limit = COUNT_LIMITS.get((cls, field))
    if limit is not None and "length <=" in detail:
        return MessageError(LIMIT_EXCEEDED, f"more than {limit} items in {field!r} of one {kind}; "
                                            "send several frames", req, kind, field=field, limit=limit)
    return MessageError(BAD_MESSAGE, f"field {field!r}: {detail} (see {kind} in docs/protocol.md)", req,
                        kind, field=field)
