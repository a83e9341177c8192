"""The hub: WebSocket connections, routing and fan-out, as a package of small rooms.

- server.py: start/stop, routing by path, auth, the table from message type to handler, registries
- conn.py: one peer's connection (inbox, batching, backpressure, close codes) and per-role state
- frames.py: every outgoing frame, built by pure functions
- clients.py / workers.py / monitors.py: what each role's messages do
- dispatch.py: the events reader, fan-out, waking workers, offers, the reader-gap check, the sweep

docs/architecture.md follows one job through these files. All job state lives in Redis.
"""

from empfast.hub.server import Hub

__all__ = ["Hub"]
