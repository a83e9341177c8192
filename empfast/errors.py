"""Every error of empfast in one table: the wire's error codes (docs/protocol.md section 3), and for
each refusal of the state machine its Lua reply code, its exception and its wire code. Each
exception's text names what went wrong and what to do next. A leaf module.
"""

from __future__ import annotations

from typing import Any, ClassVar

# ---- wire error codes: part of the contract; add, never rename ------------------------------
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
ALREADY_CLAIMED = "already_claimed"
LEASE_LOST = "lease_lost"
TOO_LARGE = "too_large"
UNAUTHORIZED = "unauthorized"
INTERNAL = "internal"
NOT_REGISTERED = "not_registered"
WRONG_JOB_TYPE = "wrong_job_type"
DRAINING = "draining"
REPLACED = "replaced"
LIMIT_EXCEEDED = "limit_exceeded"
UNAVAILABLE = "unavailable"
PAUSED = "paused"
TYPE_LIMITED = "type_limited"

# answers after which the same request may succeed later (a peer retries them after a pause)
TRANSIENT_CODES = frozenset({UNAVAILABLE, INTERNAL})
# answers after which reconnecting as is cannot help (the SDKs stop)
FATAL_CODES = frozenset({UNAUTHORIZED, REPLACED})


class EmpfastError(Exception):
    """Base of every empfast error. `code` is the wire code a hub answers it with."""

    code: ClassVar[str] = INTERNAL

    def wire_extra(self) -> dict[str, Any]:
        """The error frame's extra members (job_id, status, ...)."""
        return {}


class ProtocolError(EmpfastError):
    """Bad input from a peer: answered with an error frame; nothing changes. `extra` holds the
    error frame's extra members (field, job_id, status, limit)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # per instance: the code a peer's mistake gets
        self.message = message
        self.extra = extra

    def wire_extra(self) -> dict[str, Any]:
        return self.extra


class StoreRefusal(EmpfastError):
    """A transition the state machine refused; nothing changed. `lua_reply` is the first element
    of the script's reply that means this refusal."""

    lua_reply: ClassVar[str] = ""


class BadArgument(StoreRefusal):
    """A value was refused before anything changed (e.g. a priority out of range). Scripts raise
    it as an error reply starting `ERR_BAD_ARG `."""

    code = BAD_MESSAGE
    lua_reply = "ERR_BAD_ARG"


class TooManyJobTypes(BadArgument):
    """A job of a type the queue has never seen, when it has `max_job_types` types already
    (QueueSettings). Scripts raise it as an error reply `ERR_TOO_MANY_TYPES <limit>`."""

    code = LIMIT_EXCEEDED
    lua_reply = "ERR_TOO_MANY_TYPES"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue has {limit} job types already (max_job_types), and a job type is "
                         "never forgotten: use one of its types, or raise --max-job-types")
        self.limit = limit

    def wire_extra(self) -> dict[str, Any]:
        return {"limit": self.limit}


class TooManySchedules(StoreRefusal):
    """A new schedule past MAX_SCHEDULES of the queue (setSchedule answers `LIMIT`)."""

    code = LIMIT_EXCEEDED
    lua_reply = "LIMIT"

    def __init__(self, limit: int) -> None:
        super().__init__(f"this queue has {limit} schedules already: remove one first, or replace one "
                         "by its name")
        self.limit = limit

    def wire_extra(self) -> dict[str, Any]:
        return {"limit": self.limit}


class JobNotFound(StoreRefusal):
    code = NOT_FOUND
    lua_reply = "NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist (never added, or removed by retention)")
        self.job_id = job_id

    def wire_extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class LeaseLost(StoreRefusal):
    code = LEASE_LOST
    lua_reply = "LEASE_LOST"

    def __init__(self, job_id: str, worker_id: str, attempt: int) -> None:
        super().__init__(
            f"worker {worker_id!r} no longer holds job {job_id!r} at attempt {attempt}: its lease "
            "expired or the job was cancelled or taken back; drop the job, its outcome is not kept"
        )
        self.job_id, self.worker_id, self.attempt = job_id, worker_id, attempt

    def wire_extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class NotPending(StoreRefusal):
    """Claim by id of a job that is not pending (someone else claimed it, or it finished)."""

    code = ALREADY_CLAIMED
    lua_reply = "NOT_PENDING"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} is {status}, not pending: it cannot be claimed")
        self.job_id, self.status = job_id, status

    def wire_extra(self) -> dict[str, Any]:
        return {"status": self.status, "job_id": self.job_id}


class WrongJobType(StoreRefusal):
    code = WRONG_JOB_TYPE
    lua_reply = "WRONG_TYPE"

    def __init__(self, job_id: str, job_type: str) -> None:
        super().__init__(f"job {job_id!r} has type {job_type!r}, which this worker did not register")
        self.job_id, self.job_type = job_id, job_type

    def wire_extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class WorkerNotFound(StoreRefusal):
    code = NOT_REGISTERED
    lua_reply = "NO_WORKER"

    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"worker {worker_id!r} is not registered (or missed its heartbeats): register it again"
        )
        self.worker_id = worker_id


class WorkerDraining(StoreRefusal):
    code = DRAINING
    lua_reply = "DRAINING"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} is draining and takes no new jobs: send worker_status "
                         "idle first")
        self.worker_id = worker_id


class TypePaused(StoreRefusal):
    """Claim by id of a job whose type is paused (setTypePaused): it stays pending."""

    code = PAUSED
    lua_reply = "PAUSED"

    def __init__(self, job_id: str, job_type: str) -> None:
        super().__init__(f"job {job_id!r} is of type {job_type!r}, which is paused: it is given to a "
                         "worker once the type is resumed")
        self.job_id, self.job_type = job_id, job_type

    def wire_extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "job_type": self.job_type}


class TypeLimited(StoreRefusal):
    """Claim by id of a job whose type is at its concurrency or rate limit (setTypeLimits): it
    stays pending."""

    code = TYPE_LIMITED
    lua_reply = "LIMITED"

    def __init__(self, job_id: str, job_type: str) -> None:
        super().__init__(f"job {job_id!r} is of type {job_type!r}, which is at its concurrency or rate "
                         "limit: it is given to a worker when a job of the type ends or a start is due")
        self.job_id, self.job_type = job_id, job_type

    def wire_extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "job_type": self.job_type}


class LayoutMismatch(EmpfastError):
    """The queue's data in Redis was written by an incompatible version of empfast."""


class ScriptError(EmpfastError):
    """A Lua script could not be assembled (missing or circular include, bad header)."""


# Lua reply code -> the refusal it means (the store turns a script's reply into its exception)
REFUSALS: dict[str, type[StoreRefusal]] = {
    cls.lua_reply: cls
    for cls in (BadArgument, JobNotFound, LeaseLost, NotPending, WrongJobType, WorkerNotFound,
                WorkerDraining, TypePaused, TypeLimited)
}


def refusal(lua_reply: str, *, job_id: str = "", worker_id: str = "", attempt: int = 0,
            detail: str = "") -> StoreRefusal:
    """The exception for a script's refusal reply; `detail` is the value the reply carries after
    its code (a status, a job type, a message)."""
    cls = REFUSALS.get(lua_reply)
    if cls is JobNotFound:
        return JobNotFound(job_id)
    if cls is LeaseLost:
        return LeaseLost(job_id, worker_id, attempt)
    if cls is NotPending:
        return NotPending(job_id, detail)
    if cls is WrongJobType:
        return WrongJobType(job_id, detail)
    if cls is WorkerDraining:
        return WorkerDraining(worker_id)
    if cls is TypePaused:
        return TypePaused(job_id, detail)
    if cls is TypeLimited:
        return TypeLimited(job_id, detail)
    if cls is WorkerNotFound:
        return WorkerNotFound(worker_id)
    if cls is BadArgument:
        return BadArgument(detail)
    raise ValueError(f"unknown refusal {lua_reply!r} from a script: are the Lua scripts and the "
                     "Python package of the same empfast version?")
