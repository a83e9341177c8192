"""Exceptions raised by the store. Each names what went wrong and what to do next."""

from __future__ import annotations


class EmpfastError(Exception):
    """Base of every empfast error."""


class BadArgument(EmpfastError):
    """A value was refused before anything changed (e.g. a priority out of range)."""


class JobNotFound(EmpfastError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist (never added, or removed by retention)")
        self.job_id = job_id


class LeaseLost(EmpfastError):
    def __init__(self, job_id: str, worker_id: str, attempt: int) -> None:
        super().__init__(
            f"worker {worker_id!r} no longer holds job {job_id!r} at attempt {attempt}: its lease "
            "expired or the job was cancelled or taken back; drop the job, its outcome is not kept"
        )
        self.job_id, self.worker_id, self.attempt = job_id, worker_id, attempt


class NotPending(EmpfastError):
    """Claim by id of a job that is not pending (someone else claimed it, or it finished)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} is {status}, not pending: it cannot be claimed")
        self.job_id, self.status = job_id, status


class WrongJobType(EmpfastError):
    def __init__(self, job_id: str, job_type: str) -> None:
        super().__init__(f"job {job_id!r} has type {job_type!r}, which this worker did not register")
        self.job_id, self.job_type = job_id, job_type


class WorkerNotFound(EmpfastError):
    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"worker {worker_id!r} is not registered (or missed its heartbeats): register it again"
        )
        self.worker_id = worker_id


class WorkerDraining(EmpfastError):
    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} is draining and takes no new jobs")
        self.worker_id = worker_id


class LayoutMismatch(EmpfastError):
    """The queue's data in Redis was written by an incompatible version of empfast."""


class ScriptError(EmpfastError):
    """A Lua script could not be assembled (missing or circular include, bad header)."""
