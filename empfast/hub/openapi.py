"""The OpenAPI 3.1 description of the HTTP side, served at /openapi.json. Written by hand, next to
the route table (http.py), and kept true by a test that calls every route it lists
(tests/test_http.py). Bodies are the protocol's frames: docs/protocol.md describes each member."""

from __future__ import annotations

from typing import Any

FRAME = {"type": "object", "description": "a frame of docs/protocol.md (its `type` names it)"}
ERROR = {"type": "object", "required": ["type", "code", "error"], "properties": {
    "type": {"const": "error"}, "code": {"type": "string", "description": "docs/protocol.md section 3"},
    "error": {"type": "string"}, "field": {"type": "string"}}}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "may hold '/' (the routes take the rest of the path up to their own suffix)"}
JOB_TYPE = {"name": "job_type", "in": "path", "required": True, "schema": {"type": "string"}}
SCHEDULE = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
SCHEDULE_BODY = {"type": "object", "required": ["job_type", "every_s"], "properties": {
    "job_type": {"type": "string"}, "payload": {}, "cron": {"type": "string"}, "tz": {"type": "string"},
    "every_s": {"type": "number", "description": "or cron (with tz) instead"}, "paused": {"type": "boolean"}}}
LIMITS_BODY = {"type": "object", "properties": {
    "concurrency": {"type": ["integer", "null"], "minimum": 1},
    "rate": {"type": ["integer", "null"], "minimum": 1},
    "per_s": {"type": "number", "description": "the rate's period in seconds, default 1"},
    "group_concurrency": {"type": ["integer", "null"], "minimum": 1,
                          "description": "at most this many running at once of each group"}}}
BULK = {"type": "object", "properties": {"job_type": {"type": "string"}, "dry_run": {"type": "boolean"}}}
JSON = "application/json"


def _json(description: str, schema: dict[str, Any] = FRAME) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "bad_message: a parameter or member is not valid (`field` names it); nothing changed",
               401: "unauthorized: no token, or not one of this hub's",
               403: "forbidden: the token does not open the role this route needs",
               404: "not_found: no such job (or not visible to this client token)",
               409: "nothing changed: the job is finished (cancel) or not failed or cancelled "
                    "(retry); the body is its job_status, as for 200",
               413: "too_large / limit_exceeded: over the frame limit",
               503: "unavailable: Redis does not answer; retry after a pause"}
    return {str(status): _json(meaning[status], ERROR) for status in statuses}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _op(summary: str, ok: dict[str, Any], *errors: int, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, ok_status: str = "200", auth: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok_status: ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": body}}}
    if not auth:
        op["security"] = []
    return op


SSE = {"description": "Server-Sent Events: `id:` the event id (send it back as Last-Event-ID), "
                      "`event:` the frame's type, `data:` the frame", "content": {"text/event-stream": {}}}
STATUSES = ["waiting", "scheduled", "pending", "active", "completed", "failed", "cancelled"]
READ_ERRORS = (401, 403, 503)

PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": _op("the dashboard (HTML; its files are under /dashboard/)",
                     {"description": "the page", "content": {"text/html": {}}}, auth=False)},
    "/livez": {"get": _op("the process answers (never checks Redis)", _json("ok"), auth=False)},
    "/healthz": {"get": _op("the same as /livez (the name some orchestrators expect)", _json("ok"),
                            auth=False)},
    "/readyz": {"get": _op("Redis answers a PING and holds the scripts, the events reader runs, the hub "
                           "is not stopping", _json("ready"), auth=False)
                | {"responses": {"200": _json("ready"), "503": _json("not ready: `checks` says why")}}},
    "/metrics": {"get": _op("Prometheus metrics (text format 0.0.4)",
                            {"description": "metrics", "content": {"text/plain": {}}}, 401, 403)},
    "/openapi.json": {"get": _op("this description", _json("OpenAPI 3.1"), auth=False)},
    "/api/stats": {"get": _op("get_stats: counts by status and type, workers by state", _json("stats"),
                              *READ_ERRORS)},
    "/api/workers": {"get": _op("get_workers: every registered worker", _json("workers"), *READ_ERRORS)},
    "/api/queues": {"get": _op("get_queues: every queue the hub serves, each with its stats",
                               _json("queues"), *READ_ERRORS)},
    "/api/schedules": {"get": _op("list_schedules: the queue's repeating jobs", _json("schedules"),
                                  *READ_ERRORS)},
    "/api/schedules/{name}/pause": {"post": _op("pause_schedule", _json("schedule"), 401, 403, 404, 503,
                                                params=[SCHEDULE])},
    "/api/schedules/{name}/resume": {"post": _op("resume_schedule", _json("schedule"), 401, 403, 404, 503,
                                                 params=[SCHEDULE])},
    "/api/schedules/{name}": {
        "put": _op("set_schedule: create or replace a repeating job; the body is set_schedule's members "
                   "(cron with tz, or every_s)", _json("schedule"), 400, 401, 403, 503, params=[SCHEDULE],
                   body=SCHEDULE_BODY),
        "delete": _op("remove_schedule", _json("schedule_removed"), 401, 403, 503, params=[SCHEDULE])},
    "/api/jobs": {
        "get": _op("list_jobs: a page of the jobs of one status (docs/management.md section 2)",
                   _json("jobs: rows and the next page's cursor"), 400, *READ_ERRORS, params=[
                       _query("status", "the jobs of this status", {"enum": STATUSES}) | {"required": True},
                       _query("type", "only jobs of this type", {"type": "string"}),
                       _query("order", "oldest (default) or newest", {"enum": ["oldest", "newest"]}),
                       _query("limit", "1..500, default 50", {"type": "integer"}),
                       _query("cursor", "the previous page's cursor", {"type": "string"}),
                       _query("payloads", "add payload and result", {"type": "boolean"})]),
        "post": _op("submit_job: add a job; the body is submit_job's members; with wait_s, wait up "
                    "to that long for its end and answer with its state (job_status)",
                    _json("job_accepted"), 400, 401, 403, 413, 503, ok_status="201",
                    params=[_query("wait_s", "wait for the job's end, at most this many seconds "
                                             "(up to 300)", {"type": "number"})], body={
                        "type": "object", "required": ["job_type"], "properties": {
                            "job_type": {"type": "string"}, "payload": {}, "priority": {"type": "integer"},
                            "job_id": {"type": "string"}, "max_attempts": {"type": "integer"},
                            "delay_s": {"type": "number"}, "run_at": {"type": "number"},
                            "timeout_s": {"type": "number"}, "ttl_s": {"type": "number"},
                            "expires_at": {"type": "number"}, "group": {"type": "string"},
                            "depends_on": {"type": "array", "items": {"type": "string"}}}})
        | {"responses": {"201": _json("job_accepted: created"),
                         "200": _json("job_accepted: a job of that id existed; nothing changed"),
                         **_errors(400, 401, 403, 413, 503)}},
    },
    "/api/jobs/{job_id}": {"get": _op("get_job_status", _json("job_status"), 400, 404, *READ_ERRORS,
                                      params=[JOB_ID, _query("payload", "add the payload",
                                                             {"type": "boolean"}),
                                              _query("logs", "add its log: true for every kept line, "
                                                     "N for the newest N",
                                                     {"oneOf": [{"type": "boolean"},
                                                                {"type": "integer", "minimum": 1}]})])},
    "/api/jobs/{job_id}/cancel": {"post": _op("cancel_job; a finished job stays as it is (409, its "
                                              "status says so)", _json("job_status"), 404, 409, 401,
                                              403, 503, params=[JOB_ID])},
    "/api/jobs/{job_id}/retry": {"post": _op("retry_job: a failed or cancelled job runs again; "
                                             "`retried` false (and 409) when it was in another state",
                                             _json("job_status with retried"), 400, 404, 409, 401, 403,
                                             503,
                                             params=[JOB_ID], body={"type": "object", "properties": {
                                                 "attempts": {"type": "integer"},
                                                 "retry_id": {"type": "string"}}})},
    "/api/info": {"get": _op("the queue's name, this hub's id and the version (the dashboard's header)",
                             _json("info", {"type": "object", "properties": {
                                 "queue": {"type": "string"}, "hub_id": {"type": "string"},
                                 "version": {"type": "string"}}}), *READ_ERRORS)},
    "/api/types/{job_type}/pause": {"post": _op(
        "pause_type: no worker is given a job of this type until it is resumed (a monitor or admin "
        "token)", _json("type_paused"), 400, 401, 403, 503, params=[JOB_TYPE])},
    "/api/types/{job_type}/resume": {"post": _op(
        "resume_type: the type's waiting jobs go to idle workers at once", _json("type_paused"),
        400, 401, 403, 503, params=[JOB_TYPE])},
    "/api/types/{job_type}/limits": {
        "get": _op("the type's limits (nulls where unset), its waiting jobs and every limited type's, "
                   "as set_type_limits answers", _json("type_limits"), 400, *READ_ERRORS,
                   params=[JOB_TYPE]),
        "put": _op("set_type_limits: at most `concurrency` of its jobs running at once across every "
                   "worker and hub, at most `rate` starts per `per_s` seconds; null or absent clears "
                   "one (a monitor or admin token)", _json("type_limits"), 400, 401, 403, 503,
                   params=[JOB_TYPE], body=LIMITS_BODY)},
    "/api/bulk/retry": {"post": _op(
        "retry_jobs: every failed (or cancelled) job, or those of a type, in slices; the answer is "
        "an SSE stream of bulk_started, bulk_progress and bulk_done (its end); closing it stops the "
        "action", SSE, 400, 401, 403, 503, body=BULK | {"properties": {
            **BULK["properties"], "status": {"enum": ["failed", "cancelled"]},
            "attempts": {"type": "integer"}}})},
    "/api/bulk/remove": {"post": _op(
        "remove_jobs: the finished jobs of a status, or of a type, finished at least older_than_s "
        "ago, in slices; an SSE stream as for /api/bulk/retry", SSE, 400, 401, 403, 503,
        body=BULK | {"required": ["status"], "properties": {
            **BULK["properties"], "status": {"enum": ["completed", "failed", "cancelled"]},
            "older_than_s": {"type": "number"}}})},
    "/api/events": {"get": _op("every job event and worker_status (a monitor's feed), and stats every "
                               "interval_s while they change; with type, the job events of those "
                               "types only; Last-Event-ID (or ?since=) first replays the events after "
                               "it", SSE, 400, *READ_ERRORS,
                               params=[_query("interval_s", "stats at most this often, 0.25..3600, "
                                                            "default 1", {"type": "number"}),
                                       _query("type", "a job type whose events to send (repeat for "
                                                      "several)", {"type": "string"}),
                                       _query("since", "an event id, as Last-Event-ID",
                                              {"type": "string"})])},
    "/api/jobs/{job_id}/events": {"get": _op(
        "subscribe_job: one job's events, ending after its final one; Last-Event-ID (or ?since=) "
        "resumes after that event", SSE, 400, 404, *READ_ERRORS,
        params=[JOB_ID, _query("since", "an event id, as Last-Event-ID", {"type": "string"})])},
}


QUEUE = _query("queue", "the queue (one the hub serves); default: the hub's default queue",
               {"type": "string"})
for _path, _operations in PATHS.items():  # every /api route takes ?queue= (rest.room_of)
    if _path.startswith("/api/"):
        for _operation in _operations.values():
            _operation["parameters"] = [*_operation.get("parameters", []), QUEUE]


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "empfast hub HTTP side", "version": version,
                 "description": "REST and SSE over the protocol's messages (docs/management.md section 4). "
                                "With tokens configured, send 'Authorization: Bearer TOKEN': a monitor "
                                "or admin token to read, a client or admin token to act on jobs."},
        "paths": PATHS,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
