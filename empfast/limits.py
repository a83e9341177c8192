"""Every limit of the protocol and the state machine, defined once (docs/protocol.md section 8).

The hub, the SDKs and the store import them from here; the Lua scripts read the ones they enforce
from the queue's meta hash, where the store writes `LUA_LIMITS` at start-up, so no number is
restated in lua/. A leaf module: it imports nothing of empfast's.
"""

from __future__ import annotations

# ---- sizes of names and texts (UTF-8 bytes, which is what Redis and Lua measure) -------------
MAX_JOB_ID_BYTES = 256
MAX_JOB_TYPE_BYTES = 128
MAX_GROUP_BYTES = 128  # a job's group (a tenant: docs/job-control.md 4)
MAX_WORKER_ID_BYTES = 128
MAX_REQ_BYTES = 128  # a request id that is a string; echoed back in the reply
# nesting of a payload or result: orjson, the SDKs' parser, reads 1,024 levels, and the frame
# that carries the value is one of them
MAX_VALUE_DEPTH = 1023
MAX_PROGRESS_MESSAGE_CHARS = 4096  # a progress message, truncated beyond
MAX_ERROR_CHARS = 16_384  # a failure's error text, truncated beyond
# a job's log (append_job_log): the newest MAX_LOG_LINES lines are kept, each cut to at most
# MAX_LOG_LINE_BYTES bytes (at a character boundary, ending with LOG_CUT_MARKER); so a job's log
# is at most about 1 MiB of Redis memory, and one append_job_log frame carries at most that many lines
MAX_LOG_LINES = 1000
MAX_LOG_LINE_BYTES = 1024
LOG_CUT_MARKER = " [cut]"

# ---- frames --------------------------------------------------------------------------------
DEFAULT_MAX_FRAME_BYTES = 1 << 20
# room for the frame built around a payload or result: each may be the frame limit minus this
FRAME_HEADROOM_BYTES = 4096
MAX_BATCH = 1000  # jobs in one submit_jobs frame; jobs claimed in one script call
MAX_PAGE = 500  # rows of one list_jobs page (docs/management.md)
BULK_SLICE = 500  # jobs a bulk action looks at in one script call, so Redis is never held long
MAX_AGE_S = 10 * 365 * 86400  # remove_jobs' older_than_s: ten years
MAX_BULK_ACTIONS = 4  # bulk actions running at once on one hub (one per connection)
MAX_JOB_TYPES_PER_WORKER = 100
# distinct job types of a queue (QueueSettings.max_job_types): stats read every type, so each stats
# call, and the stats frame, grow with them (100,000 types: 305 ms of Redis, a 19.6 MB frame)
DEFAULT_MAX_JOB_TYPES = 1000

# ---- job and worker values -------------------------------------------------------------------
MAX_PRIORITY = 1000  # priorities are -MAX_PRIORITY..MAX_PRIORITY, higher first
MAX_ATTEMPTS = 1000  # max_attempts of a job, and attempts added by one retry
MAX_DELAY_S = 365 * 86_400  # delay_s of a submit: one year; also how far ahead run_at and an expiry may be
MAX_TIMEOUT_S = 7 * 86_400  # timeout_s of a job (and the queue's and types' defaults): a week
# repeating jobs (docs/job-control.md 2): schedules of one queue, and the bounds of every_s
MAX_SCHEDULES = 1000
MIN_EVERY_S, MAX_EVERY_S = 1.0, float(MAX_DELAY_S)
SCHEDULES_PER_SWEEP = 100  # due schedules one hub fires in one sweep tick
MAX_CONCURRENCY = 10_000  # slots of one worker
# parents one job may name in depends_on (docs/job-control.md 5): each costs the add a read and, while
# it is open, a set entry
MAX_DEPENDENCIES = 100
# a job type's limits (set_type_limits, docs/job-control.md 3): jobs active at once across every
# worker, and starts per period (rate / per_s); a period is 1 ms to a day
MAX_TYPE_CONCURRENCY = 1_000_000
MAX_RATE = 1_000_000
MIN_RATE_PER_S, MAX_RATE_PER_S = 0.001, 86_400.0
MAX_ATTEMPT_NUMBER = 1_000_000  # `attempt` a worker names on a re-sent outcome
MIN_STATS_INTERVAL_S, MAX_STATS_INTERVAL_S = 0.25, 3600.0  # `interval_s` of subscribe_stats

# The limits the scripts enforce, under the meta-hash field names they read (getQueueConfig).
LUA_LIMITS: dict[str, int] = {
    "max_job_id_bytes": MAX_JOB_ID_BYTES,
    "max_job_type_bytes": MAX_JOB_TYPE_BYTES,
    "max_group_bytes": MAX_GROUP_BYTES,
    "max_worker_id_bytes": MAX_WORKER_ID_BYTES,
    "max_priority": MAX_PRIORITY,
    "max_attempts": MAX_ATTEMPTS,
    "max_delay_ms": MAX_DELAY_S * 1000,
    "max_timeout_ms": MAX_TIMEOUT_S * 1000,
    "max_concurrency": MAX_CONCURRENCY,
    "max_claim": MAX_BATCH,
    "max_log_lines": MAX_LOG_LINES,
    "max_log_line_bytes": MAX_LOG_LINE_BYTES,
    "max_dependencies": MAX_DEPENDENCIES,
    "max_type_concurrency": MAX_TYPE_CONCURRENCY,
    "max_rate": MAX_RATE,
    "max_rate_per_ms": int(MAX_RATE_PER_S * 1000),
}


def payload_limit(max_frame_bytes: int) -> int:
    """The largest payload or result, in bytes, under a hub's frame limit."""
    return max_frame_bytes - FRAME_HEADROOM_BYTES
