"""empfast: a high-throughput distributed job hub over one JSON-over-WebSocket protocol, with Redis
Lua scripts as its only state."""

from empfast.config import QueueSettings, RedisOptions
from empfast.store import Added, ClaimedJob, NewJob, Stats, Store

__version__ = "0.1.0"
__all__ = ["Added", "ClaimedJob", "NewJob", "QueueSettings", "RedisOptions", "Stats", "Store",
           "__version__"]
