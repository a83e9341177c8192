"""empfast: a high-throughput distributed job hub over one JSON-over-WebSocket protocol, with Redis
Lua scripts as its only state.

The store's names are exported lazily: `import empfast.client` or `empfast.worker` must not load
redis-py and the Lua scripts, which only a hub (or a direct store user) needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Added", "ClaimedJob", "NewJob", "QueueSettings", "RedisOptions", "Stats", "Store",
           "__version__"]

if TYPE_CHECKING:
    from empfast.config import QueueSettings, RedisOptions
    from empfast.store import Added, ClaimedJob, NewJob, Stats, Store

_LAZY = {"QueueSettings": "empfast.config", "RedisOptions": "empfast.config", "Added": "empfast.store",
         "ClaimedJob": "empfast.store", "NewJob": "empfast.store", "Stats": "empfast.store",
         "Store": "empfast.store"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'empfast' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
