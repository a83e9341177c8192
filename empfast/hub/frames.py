"""Every frame the hub sends, built by pure functions: no I/O, no state. Replies are built as dicts
(the connection adds the request's `req`); pushes, and frames with raw JSON inside, as bytes.
Payloads and results are spliced in as the raw JSON text they are stored as, never parsed.
docs/protocol.md is the contract; tests/test_frames.py compares these frames with its examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from empfast.protocol import PROTOCOL_VERSION, add_member, splice
from empfast.store.listing import Cursor
from empfast.store.records import TypeLimit, event_limit

if TYPE_CHECKING:
    from empfast.store import Added, ClaimedJob, EventFields, JobPage


def reply(frame: dict[str, Any], req: Any) -> bytes:
    """A reply frame, echoing the request id when the request had one."""
    if req is not None:
        frame["req"] = req
    return orjson.dumps(frame)


def error(code: str, message: str, req: Any = None, **extra: Any) -> bytes:
    """An error frame; `extra` adds members such as field, job_id, status or limit."""
    return reply({"type": "error", "code": code, "error": message, **extra}, req)


def welcome(role: str, hub_id: str, max_frame_bytes: int, queue: str) -> bytes:
    return orjson.dumps({"type": "welcome", "protocol": PROTOCOL_VERSION, "role": role, "hub_id": hub_id,
                         "queue": queue, "max_frame_bytes": max_frame_bytes})


def pong() -> dict[str, Any]:
    return {"type": "pong"}


# ---- client replies ----------------------------------------------------------------------------

def job_accepted(added: Added, subscribed: bool) -> dict[str, Any]:
    frame = {"type": "job_accepted", "job_id": added.job_id, "status": added.status,
             "created": added.created, "subscribed": subscribed}
    if added.position is not None:  # pending: its rank among its type's pending jobs
        frame["position"] = added.position
    return frame


def jobs_accepted(added: list[Added], subscribed: bool) -> dict[str, Any]:
    return {"type": "jobs_accepted", "job_ids": [a.job_id for a in added],
            "statuses": [a.status for a in added], "created": [a.created for a in added],
            "subscribed": subscribed}


def subscribed(job_id: str, resumed: bool | None) -> dict[str, Any]:
    """`resumed` only for a subscribe with `since`: whether the replay is complete."""
    frame: dict[str, Any] = {"type": "subscribed", "job_id": job_id}
    if resumed is not None:
        frame["resumed"] = resumed
    return frame


def unsubscribed(job_id: str) -> dict[str, Any]:
    return {"type": "unsubscribed", "job_id": job_id}


def job_status(job_id: str, job: dict[str, Any], req: Any = None, *, with_payload: bool = False,
               **extra: Any) -> bytes:
    """A job's record as the store reads it (payload and result as raw JSON bytes); the result is
    spliced in, and the payload when asked for."""
    frame = {"type": "job_status", "job_id": job_id, "job_type": job.get("type"),
             "status": job.get("status"), "priority": job.get("priority"),
             "progress": job.get("progress", 0.0), "message": job.get("message", ""),
             "attempts": job.get("attempts", 0), "max_attempts": job.get("max_attempts"),
             "worker_id": job.get("worker"), "error": job.get("error"), "errors": job["errors"],
             "cancel_requested": job["cancel_requested"], "created_at": job.get("created_at"),
             "updated_at": job.get("updated_at"), "started_at": job.get("started_at"),
             "finished_at": job.get("finished_at"), "run_at": job.get("run_at"),
             "timeout_ms": job.get("timeout_ms"), "expires_at": job.get("expires_at"),
             "group": job.get("group"), **extra}
    if "depends_on" in job:  # a job with parents: them, and how many have not completed yet
        frame["depends_on"] = job["depends_on"]
        frame["open_parents"] = job.get("open_parents", 0)
    if "position" in job:  # pending (Store.get_job)
        frame["position"] = job["position"]
    if "logs" in job:  # asked for: its newest lines, oldest first
        frame["logs"] = job["logs"]
    if req is not None:
        frame["req"] = req
    result = job.get("result")
    data = splice(frame, "result", result if result is not None else b"null")
    return add_member(data, "payload", job.get("payload")) if with_payload else data


def newest_lines(lines: list[str], budget: int) -> list[str]:
    """The newest of a job's log lines whose JSON fits in `budget` bytes, oldest first: a log of
    long, escaped lines may not fit in one frame."""
    kept = len(lines)
    while kept > 0 and budget >= 0:
        budget -= len(orjson.dumps(lines[kept - 1])) + 1
        if budget >= 0:
            kept -= 1
    return lines[kept:]


RAW_MEMBERS = ("payload", "result")  # a listed row's members kept as raw JSON


def jobs_listed(page: JobPage, req: Any, max_bytes: int) -> bytes:
    """A page of list_jobs: its rows (payload and result spliced in raw when the page has them),
    cut short, with the cursor of its last row, where the frame would pass `max_bytes`."""
    rows: list[bytes] = []
    size = 200
    cursor = page.cursor
    for i, row in enumerate(page.rows):
        data = orjson.dumps({key: value for key, value in row.items() if key not in RAW_MEMBERS})
        for key in RAW_MEMBERS:
            if key in row:
                data = add_member(data, key, row[key])
        if rows and size + len(data) > max_bytes:
            cursor = Cursor(page.scores[i - 1], page.rows[i - 1]["job_id"])
            break
        rows.append(data)
        size += len(data) + 1
    head = {"type": "jobs", "cursor": cursor.encode() if cursor else None, "scanned": page.scanned}
    if req is not None:
        head["req"] = req
    return orjson.dumps(head)[:-1] + b',"rows":[' + b",".join(rows) + b"]}"


def stats(counts: dict[str, Any], req: Any = None) -> bytes:
    return reply({"type": "stats", **counts}, req)


def workers(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "workers", "workers": records}


def queues(stats_of: dict[str, dict[str, Any]], default: str) -> dict[str, Any]:
    """Every queue of the hub with the members of its `stats`, and which is the default."""
    return {"type": "queues", "default": default,
            "queues": [{"queue": name, **counts} for name, counts in stats_of.items()]}


def job_feed(job_events: bool, job_types: list[str] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "job_feed", "job_events": job_events}
    if job_types is not None:
        frame["job_types"] = job_types
    return frame


def bulk_started(action_id: str, action: str, total: int, dry_run: bool) -> dict[str, Any]:
    return {"type": "bulk_started", "action_id": action_id, "action": action, "total": total,
            "dry_run": dry_run}


def bulk_progress(action_id: str, action: str, looked: int, jobs: int, total: int) -> bytes:
    return orjson.dumps({"type": "bulk_progress", "action_id": action_id, "action": action,
                         "looked": looked, "jobs": jobs, "total": total})


def bulk_done(action_id: str, action: str, looked: int, jobs: int, dry_run: bool,
              error: tuple[str, str] | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "bulk_done", "action_id": action_id, "action": action,
                             "looked": looked, "jobs": jobs, "dry_run": dry_run}
    if error is not None:
        frame["code"], frame["error"] = error
    return orjson.dumps(frame)


def type_paused(job_type: str, paused: bool, pending: int, paused_types: list[str]) -> dict[str, Any]:
    """The reply to pause_type and resume_type."""
    return {"type": "type_paused", "job_type": job_type, "paused": paused, "pending": pending,
            "paused_types": paused_types}


def type_limits(job_type: str, limits: dict[str, TypeLimit], pending: int) -> dict[str, Any]:
    """The reply to set_type_limits: the type's limits (nulls when it has none) and every limited type's."""
    return {"type": "type_limits", "job_type": job_type, **limits.get(job_type, TypeLimit()).as_dict(),
            "pending": pending, "limits": {t: limit.as_dict() for t, limit in sorted(limits.items())}}


def schedule(described: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A schedule as peers see it (Schedule.describe): the reply to set, pause and resume."""
    return {"type": "schedule", **described, **extra}


def schedules(described: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "schedules", "schedules": described}


# the events stream's entries of a job type's settings (setTypePaused-2, setTypeLimits-2.lua): every
# monitor is told of them (type_setting_event), on every hub
TYPE_SETTING_KINDS = frozenset({b"paused", b"resumed", b"limits"})


def type_paused_event(job_type: str, paused: bool, pending: int, event_id: str) -> bytes:
    """What every monitor is told when a job type is paused or resumed, on any hub."""
    return orjson.dumps({"type": "type_paused", "job_type": job_type, "paused": paused, "pending": pending,
                         "event_id": event_id})


def type_limits_event(job_type: str, limit: TypeLimit | None, pending: int, event_id: str) -> bytes:
    """What every monitor is told when a job type's limits are set or cleared, on any hub: its
    limits as set_type_limits's reply gives them (nulls once cleared), without every type's."""
    return orjson.dumps({"type": "type_limits", "job_type": job_type, **(limit or TypeLimit()).as_dict(),
                         "pending": pending, "event_id": event_id})


def type_setting_event(event_id: str, f: EventFields) -> bytes:
    """The frame of a `paused`, `resumed` or `limits` entry (TYPE_SETTING_KINDS): the live reader
    and a feed's replay build it alike."""
    job_type, pending = f[b"type"].decode(), int(f[b"pending"])
    if f[b"ev"] == b"limits":
        return type_limits_event(job_type, event_limit(f), pending, event_id)
    return type_paused_event(job_type, f[b"ev"] == b"paused", pending, event_id)


# ---- worker frames -------------------------------------------------------------------------------

def job_assigned(job: ClaimedJob, lease_s: float, req: Any = None, reassigned: bool = False) -> bytes:
    head: dict[str, Any] = {"type": "job_assigned", "job_id": job.job_id, "job_type": job.job_type,
                            "priority": job.priority, "attempt": job.attempt, "lease_s": lease_s}
    if reassigned:
        head["reassigned"] = True
    if req is not None:
        head["req"] = req
    return splice(head, "payload", job.payload)


def jobs_assigned(jobs: list[ClaimedJob], lease_s: float, max_frame_bytes: int,
                  reassigned: bool = False) -> list[bytes]:
    """A batch worker's assignments: as few frames as hold the jobs within max_frame_bytes (a job
    whose payload alone comes near it goes alone, as in a job_assigned)."""
    head = b'{"type":"jobs_assigned","lease_s":' + orjson.dumps(lease_s) + b',"jobs":['
    out: list[bytes] = []
    items: list[bytes] = []
    size = len(head) + 2
    for job in jobs:
        fields: dict[str, Any] = {"job_id": job.job_id, "job_type": job.job_type, "priority": job.priority,
                                  "attempt": job.attempt}
        if reassigned:
            fields["reassigned"] = True
        item = splice(fields, "payload", job.payload)
        if items and size + len(item) + 1 > max_frame_bytes:
            out.append(head + b",".join(items) + b"]}")
            items, size = [], len(head) + 2
        items.append(item)
        size += len(item) + 1
    if items:
        out.append(head + b",".join(items) + b"]}")
    return out


def worker_registered(worker_id: str, heartbeat_interval_s: float, lease_s: float, liveness_s: float,
                      held: list[str], batch: bool) -> dict[str, Any]:
    frame = {"type": "worker_registered", "worker_id": worker_id,
             "heartbeat_interval_s": heartbeat_interval_s, "lease_s": lease_s, "liveness_s": liveness_s,
             "held": held}
    if batch:
        frame["batch"] = True
    return frame


def worker_unregistered(worker_id: str, released: int) -> dict[str, Any]:
    return {"type": "worker_unregistered", "worker_id": worker_id, "released": released}


def worker_status_ack(worker_id: str, status: str) -> dict[str, Any]:
    return {"type": "worker_status_ack", "worker_id": worker_id, "status": status}


def worker_heartbeat_ack(worker_id: str, extended: int, lost: list[str]) -> dict[str, Any]:
    return {"type": "worker_heartbeat_ack", "worker_id": worker_id, "extended": extended, "lost": lost}


def job_log_ack(job_id: str) -> dict[str, Any]:
    return {"type": "job_log_ack", "job_id": job_id}


def job_progress_ack(job_id: str, cancel_requested: bool) -> dict[str, Any]:
    return {"type": "job_progress_ack", "job_id": job_id, "cancel_requested": cancel_requested}


def job_completed_ack(job_id: str) -> dict[str, Any]:
    return {"type": "job_completed_ack", "job_id": job_id}


def jobs_completed_ack(job_ids: list[str], refused: list[dict[str, Any]]) -> dict[str, Any]:
    """The reply to complete_jobs: the items stored (or repeated), and each refused one with the
    code and error its complete_job would have got."""
    return {"type": "jobs_completed_ack", "job_ids": job_ids, "refused": refused}


def job_failed_ack(job_id: str, status: str, final: bool, retry_at: int) -> dict[str, Any]:
    """`retry_at` (ms) when a retry is scheduled; 0 leaves it out."""
    frame: dict[str, Any] = {"type": "job_failed_ack", "job_id": job_id, "final": final, "status": status}
    if retry_at:
        frame["retry_at"] = retry_at
    return frame


def cancel_job(job_id: str, reason: str) -> bytes:
    """Tell a worker to stop a job: reason "cancelled" (asked by a client), "lease_lost" or
    "timeout" (the attempt ran past its timeout and was failed; either way, send nothing more)."""
    return orjson.dumps({"type": "cancel_job", "job_id": job_id, "reason": reason})


def job_available(job_id: str, job_type: str, priority: int) -> bytes:
    return orjson.dumps({"type": "job_available", "job_id": job_id, "job_type": job_type,
                         "priority": priority})


# ---- events ----------------------------------------------------------------------------------------

def job_event(event_id: str, f: EventFields) -> bytes:
    """The frame subscribers and monitors get for one job entry of the events stream."""
    ev, job_id = f[b"ev"], f[b"id"].decode()
    if ev == b"completed":
        return splice({"type": "job_completed", "job_id": job_id, "event_id": event_id,
                       "worker_id": f[b"worker"].decode(), "attempt": int(f[b"attempt"])},
                      "result", f[b"result"])
    frame: dict[str, Any] = {"job_id": job_id, "event_id": event_id}
    if ev == b"failed":
        final = f[b"final"] == b"1"
        frame.update(type="job_failed", error=f[b"error"].decode(), final=final, attempt=int(f[b"attempt"]))
        if b"worker" in f:  # a timeout: the worker whose attempt it was
            frame["worker_id"] = f[b"worker"].decode()
        if not final:  # retried: now, or after a backoff
            frame["status"] = "scheduled" if b"run_at" in f else "pending"
            if b"run_at" in f:
                frame["retry_at"] = int(f[b"run_at"])
    elif ev == b"cancelled":
        frame["type"] = "job_cancelled"
    elif ev == b"progress":
        frame.update(type="job_update", status="active", progress=float(f[b"progress"]),
                     message=f[b"message"].decode())
    elif ev == b"assigned":
        frame.update(type="job_update", status="active", worker_id=f[b"worker"].decode(),
                     attempt=int(f[b"attempt"]))
    elif ev == b"cancel_requested":
        frame.update(type="job_update", status="active", cancel_requested=True)
    elif ev == b"log":  # the lines of one append_job_log, as stored (cut), a JSON array
        frame.update(type="job_log", worker_id=f[b"worker"].decode(), attempt=int(f[b"attempt"]),
                     lines=orjson.loads(f[b"lines"]))
    else:  # added, pending
        frame.update(type="job_update", status=(f.get(b"status") or b"pending").decode())
    return orjson.dumps(frame)


def is_final_entry(f: EventFields) -> bool:
    """Whether an events-stream entry ends its job (no event of the job follows it)."""
    ev = f[b"ev"]
    return ev in (b"completed", b"cancelled") or (ev == b"failed" and f.get(b"final") == b"1")


def job_state(job_id: str, job: dict[str, Any], event_id: str, flag: dict[str, bool]) -> bytes:
    """A synthetic event that tells a job's current state (docs/protocol.md section 6); `flag` is
    {"synthetic": True} or {"resumed": False}."""
    status = job["status"]
    if status == "completed":
        return splice({"type": "job_completed", "job_id": job_id, "event_id": event_id,
                       "worker_id": job.get("worker"), "attempt": job.get("attempts"), **flag},
                      "result", job.get("result") or b"null")
    if status == "failed":
        frame: dict[str, Any] = {"type": "job_failed", "error": job.get("error"), "final": True,
                                 "attempt": job.get("attempts")}
    elif status == "cancelled":
        frame = {"type": "job_cancelled"}
    else:
        frame = {"type": "job_update", "status": status, "progress": job.get("progress", 0.0),
                 "message": job.get("message", "")}
    return orjson.dumps({**frame, "job_id": job_id, "event_id": event_id, **flag})


def worker_status(worker_id: str, status: str, event_id: str) -> bytes:
    return orjson.dumps({"type": "worker_status", "worker_id": worker_id, "status": status,
                         "event_id": event_id})
