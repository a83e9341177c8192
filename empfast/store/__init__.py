"""The store: the only code in empfast that talks to Redis, an async API over the Lua scripts.

- store.py: the Store (start-up, one EVALSHA per transition) and the Redis client it makes
- records.py: the values it takes and returns, read from the scripts' replies
"""

from empfast.store.records import (
    Added,
    CancelOutcome,
    ClaimedJob,
    Completion,
    FailOutcome,
    Heartbeat,
    NewJob,
    Stats,
    SweepResult,
)
from empfast.store.store import Store, redis_from_options

__all__ = ["Added", "CancelOutcome", "ClaimedJob", "Completion", "FailOutcome", "Heartbeat", "NewJob",
           "Stats", "Store", "SweepResult", "redis_from_options"]
