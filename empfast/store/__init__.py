"""The store: the only code in empfast that talks to Redis, an async API over the Lua scripts.

- store.py: the Store (start-up, one EVALSHA per transition)
- events.py: reading the events stream (a mixin of the Store)
- listing.py: listing jobs by status, a page after a cursor (a mixin of the Store)
- bulk.py: retrying and removing jobs in slices, pausing and limiting a job type (a mixin of the Store)
- records.py: the values it takes and returns, read from the scripts' replies
- redis_client.py: the redis-py client made from RedisOptions
- pipelined.py: the auto-pipelined connection the scripts and the events reader run on
"""

from empfast.store.bulk import LimitsState, PauseState, Slice, TypeLimit
from empfast.store.listing import Cursor, JobPage
from empfast.store.records import (
    Added,
    CancelOutcome,
    ClaimedJob,
    Completion,
    EventEntry,
    EventFields,
    FailOutcome,
    Heartbeat,
    NewJob,
    Stats,
    SweepResult,
    entry_events,
    event_fields,
    event_limit,
)
from empfast.store.redis_client import redis_from_options
from empfast.store.store import Store

__all__ = ["Added", "CancelOutcome", "ClaimedJob", "Completion", "Cursor", "EventEntry", "EventFields",
           "FailOutcome", "Heartbeat", "JobPage", "LimitsState", "NewJob", "PauseState", "Slice", "Stats",
           "Store", "SweepResult", "TypeLimit", "entry_events", "event_fields", "event_limit",
           "redis_from_options"]
