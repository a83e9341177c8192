"""Listing jobs by status, a page at a time after a cursor (docs/management.md, section 2): the part
of the Store that the management side uses. A mixin of Store (store.py), which owns the scripts.
One read-only script call per page (lua/listJobs-1.lua)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from empfast.errors import BadArgument
from empfast.limits import MAX_PAGE
from empfast.store.records import INT_FIELDS, text

if TYPE_CHECKING:
    from empfast.keys import QueueKeys

STATUSES = ("waiting", "scheduled", "pending", "active", "completed", "failed", "cancelled")
# a type filter on a queue-wide set looks at no more than this many ids per row wanted
SCAN_PER_ROW = 10
_ROW_FIELDS = ("job_type", "status", "priority", "attempts", "max_attempts", "worker_id", "progress",
               "created_at", "started_at", "finished_at", "run_at", "error", "timeout_ms", "expires_at")
_RAW_FIELDS = ("payload", "result")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (score, id) of the last job looked at in its status's set."""

    score: str
    job_id: str

    def encode(self) -> str:
        return f"{self.score}:{self.job_id}"

    @classmethod
    def decode(cls, encoded: str) -> Cursor:
        """The cursor a page's reply gave; ValueError for anything else."""
        score, sep, job_id = encoded.partition(":")
        try:
            float(score)
        except ValueError:
            sep = ""
        if not sep or not job_id:
            raise ValueError("not the cursor of a page: pass back the `cursor` of the reply, or none "
                             "for the first page")
        return cls(score, job_id)


@dataclass(slots=True)
class JobPage:
    """One page: its rows (each a dict; `payload` and `result` raw JSON bytes when asked for), the
    cursor of the next page (None at the end), and how many ids the page looked at."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    cursor: Cursor | None = None
    scanned: int = 0
    scores: list[str] = field(default_factory=list)  # each row's score: a cursor after any row


class JobListing:
    keys: QueueKeys
    redis: Any
    if TYPE_CHECKING:
        async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def owners_of(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        """Each job's owner (docs/security.md section 4; None: none recorded, or no such job), in one
        round trip: the hub checks under client scope `own` that a job's parents (depends_on) are
        the submitter's own."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id), "owner")
        owners = await pipe.execute() if job_ids else []
        return {job_id: text(owner) if owner is not None else None
                for job_id, owner in zip(job_ids, owners, strict=True)}

    async def list_jobs(self, status: str, *, job_type: str | None = None, newest_first: bool = False,
                        limit: int = 50, cursor: Cursor | None = None,
                        payloads: bool = False) -> JobPage:
        """A page of the jobs of `status` (optionally of one type) after `cursor`, oldest first by
        the status's set (pending: in dispatch order) unless `newest_first`."""
        if status not in STATUSES:
            raise BadArgument(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if not 1 <= limit <= MAX_PAGE:
            raise BadArgument(f"limit must be 1 to {MAX_PAGE}, not {limit}")
        k = self.keys
        if status == "pending":
            key, mode, only_type = (k.pending(job_type), "set", "") if job_type else (k.types, "types", "")
        else:
            key, mode, only_type = getattr(k, status), "set", job_type or ""
        out = await self._run("listJobs", (key,), (
            k.prefix, mode, "desc" if newest_first else "asc", limit,
            cursor.score if cursor else "", cursor.job_id if cursor else "", only_type,
            "1" if payloads else "0", limit * SCAN_PER_ROW))
        scanned, more, last_score, last_id = int(out[0]), int(out[1]), out[2], out[3]
        width = 2 + len(_ROW_FIELDS) + (len(_RAW_FIELDS) if payloads else 0)
        page = JobPage(scanned=scanned)
        for i in range(4, len(out), width):
            page.scores.append(text(out[i]))
            page.rows.append(_row(text(out[i + 1]), out[i + 2:i + width], payloads))
        if more and last_id:
            page.cursor = Cursor(text(last_score), text(last_id))
        return page


def _row(job_id: str, values: Sequence[Any], payloads: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"job_id": job_id}
    for name, value in zip(_ROW_FIELDS, values, strict=False):
        if value is None:
            row[name] = None
        elif name == "progress":
            row[name] = float(value)
        elif name in INT_FIELDS:
            row[name] = int(value)
        else:
            row[name] = text(value)
    row["progress"] = row["progress"] or 0.0
    row["attempts"] = row["attempts"] or 0
    if payloads:
        payload, result = values[len(_ROW_FIELDS):]
        row["payload"], row["result"] = payload, result
    return row
