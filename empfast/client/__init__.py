"""The client SDK: submit jobs, watch them, wait for their results (docs/protocol.md section 4.1).

    async with Client("ws://127.0.0.1:8765") as client:
        handle = await client.submit("resize", {"url": "https://example.org/a.png"})
        print(await handle.result(timeout=60))

Built on `Connection`, which reconnects by itself. Every request this client sends is safe to repeat
(job ids are made here, before the first send), so a request whose reply was lost to a dropped
socket is sent again on the next connection instead of surfacing `Disconnected`. Job events are
kept per watched job and fanned out to every waiter and iterator of that job; after a reconnect
each unfinished job is resubscribed with `since` = the last event id seen, so nothing is missed and
nothing is seen twice.

- client.py: the Client (connection, requests, watches, resubscribe after a reconnect)
- jobs.py: JobSpec, JobHandle, the per-job record of events, and the job errors
- monitor.py: the Monitor (the monitor role: workers, counts, bulk retry and removal, type pause, limits)
"""

from empfast.client.client import Client
from empfast.client.jobs import (
    JobCancelledError,
    JobError,
    JobFailedError,
    JobHandle,
    JobSpec,
    NotRetryableError,
    SubmitManyError,
)
from empfast.client.monitor import BulkOutcome, Monitor
from empfast.connection import ConnectionClosed, Disconnected, FrameTooLarge, HubError

__all__ = ["BulkOutcome", "Client", "ConnectionClosed", "Disconnected", "FrameTooLarge", "HubError",
           "JobCancelledError", "JobError", "JobFailedError", "JobHandle", "JobSpec", "Monitor",
           "NotRetryableError", "SubmitManyError"]
