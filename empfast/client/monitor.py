"""The monitor SDK: a connection in the monitor role, for operators' tools (the CLI's management
commands, a dashboard): the registered workers, the queue's counts, bulk retry and removal with
their progress, and pausing job types (docs/protocol.md 4.3, docs/management.md). Listing jobs and
acting on one job are the client SDK's (client.py), which a monitor's tools use beside it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from empfast.connection import Connection, Disconnected, endpoint

BULK_FRAMES = ("bulk_progress", "bulk_done")
Progress = Callable[[dict[str, Any]], None]
Pushed = Callable[[dict[str, Any]], None]


@dataclass
class BulkOutcome:
    """How a bulk action ended: the jobs it retried or removed (in a dry run: would have), the set
    entries it looked at, and, when a slice failed, the hub's error code and text (the slices
    before it are done)."""

    action: str
    jobs: int
    looked: int
    dry_run: bool
    code: str | None = None
    error: str | None = None


@dataclass
class _Action:
    """A bulk action's frames as they come: they may arrive before the reply is read."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Monitor:
    """`async with Monitor(url) as monitor:` then `await monitor.retry_jobs(...)` etc.; of one queue
    of the hub (`queue`; None: the hub's default). `on_event` gets each frame the hub pushes to
    monitors, decoded: a job type paused or resumed (`type_paused`) or its limits set or cleared
    (`type_limits`) by any monitor on any hub, `worker_status`, the job events of the feed
    (set_job_feed) and `stats` after subscribe_stats; a bulk action's frames go to its call."""

    def __init__(self, url: str, *, queue: str | None = None, token: str | None = None,
                 connect_timeout_s: float = 10.0, request_timeout_s: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, on_event: Pushed | None = None) -> None:
        self.url, self.queue = url, queue
        self.on_event = on_event
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.connection = Connection(endpoint(url, "monitor", queue=queue), on_push=self._on_push,
                                     on_connected=self._on_connected, token=token,
                                     connect_timeout_s=connect_timeout_s, ssl_context=ssl_context)
        self._actions: dict[str, _Action] = {}

    async def connect(self) -> Monitor:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self.connection.start()
        except TimeoutError:
            await self.connection.close()
            raise TimeoutError(f"could not connect to the hub at {self.url} within {self.connect_timeout_s} "
                               "s: is it running, and is the URL right?") from None
        except BaseException:
            await self.connection.close()
            raise
        return self

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Monitor:
        return await self.connect()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ---- requests ------------------------------------------------------------------------------

    async def workers(self) -> list[dict[str, Any]]:
        """The registered workers: id, status, job types, concurrency, jobs held, hub, last seen."""
        workers: list[dict[str, Any]] = (await self._request({"type": "get_workers"}))["workers"]
        return workers

    async def stats(self) -> dict[str, Any]:
        return await self._request({"type": "get_stats"})

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue the hub serves, each a `stats` frame's members with its name (`queue`)."""
        queues: list[dict[str, Any]] = (await self._request({"type": "get_queues"}))["queues"]
        return queues

    async def retry_jobs(self, *, status: str = "failed", job_type: str | None = None, attempts: int = 1,
                         dry_run: bool = False, on_progress: Progress | None = None) -> BulkOutcome:
        """Retry every job that ended `status` (failed: dead-lettered; or cancelled), or those of
        `job_type`, each with `attempts` more attempts. `on_progress` gets each bulk_started and
        bulk_progress frame."""
        message: dict[str, Any] = {"type": "retry_jobs", "status": status, "attempts": attempts,
                                   "dry_run": dry_run}
        if job_type is not None:
            message["job_type"] = job_type
        return await self._bulk(message, on_progress)

    async def remove_jobs(self, status: str, *, job_type: str | None = None, older_than_s: float = 0,
                          dry_run: bool = False, on_progress: Progress | None = None) -> BulkOutcome:
        """Remove the jobs that ended `status` (completed, failed or cancelled) at least
        `older_than_s` ago, or those of `job_type`."""
        message: dict[str, Any] = {"type": "remove_jobs", "status": status, "older_than_s": older_than_s,
                                   "dry_run": dry_run}
        if job_type is not None:
            message["job_type"] = job_type
        return await self._bulk(message, on_progress)

    async def pause_type(self, job_type: str) -> dict[str, Any]:
        """No worker is given a job of this type until resume_type; returns `type_paused`."""
        return await self._request({"type": "pause_type", "job_type": job_type})

    async def resume_type(self, job_type: str) -> dict[str, Any]:
        return await self._request({"type": "resume_type", "job_type": job_type})

    async def set_type_limits(self, job_type: str, *, concurrency: int | None = None, rate: int | None = None,
                              per_s: float = 1.0, group_concurrency: int | None = None) -> dict[str, Any]:
        """At most `concurrency` jobs of the type running at once across every worker, at most `rate`
        starts per `per_s` seconds, at most `group_concurrency` running at once of each of its groups;
        None clears one (all None: no limits). Returns `type_limits`."""
        return await self._request({"type": "set_type_limits", "job_type": job_type,
                                    "concurrency": concurrency, "rate": rate, "per_s": per_s,
                                    "group_concurrency": group_concurrency})

    async def set_schedule(self, name: str, job_type: str, payload: Any = None, *, cron: str | None = None,
                           every_s: float | None = None, tz: str = "UTC", priority: int = 0,
                           max_attempts: int = 3, paused: bool = False) -> dict[str, Any]:
        """Create or replace a repeating job (`cron` in `tz`, or `every_s`); returns the `schedule`
        frame (its `next_run_at_ms`, and `created`)."""
        message: dict[str, Any] = {"type": "set_schedule", "name": name, "job_type": job_type,
                                   "payload": {} if payload is None else payload, "tz": tz,
                                   "priority": priority, "max_attempts": max_attempts, "paused": paused}
        message.update({k: v for k, v in (("cron", cron), ("every_s", every_s)) if v is not None})
        return await self._request(message)

    async def schedules(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self._request({"type": "list_schedules"}))["schedules"]
        return found

    async def pause_schedule(self, name: str) -> dict[str, Any]:
        return await self._request({"type": "pause_schedule", "name": name})

    async def resume_schedule(self, name: str) -> dict[str, Any]:
        return await self._request({"type": "resume_schedule", "name": name})

    async def remove_schedule(self, name: str) -> bool:
        return bool((await self._request({"type": "remove_schedule", "name": name}))["removed"])

    async def set_job_feed(self, job_events: bool) -> None:
        """Turn off (or on again) the job events a monitor gets by default."""
        await self._request({"type": "set_job_feed", "job_events": job_events})

    # ---- internals -----------------------------------------------------------------------------

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        reply = await self.connection.request(message, timeout_s=self.request_timeout_s)
        reply.pop("req", None)
        return reply

    async def _bulk(self, message: dict[str, Any], on_progress: Progress | None) -> BulkOutcome:
        """Start a bulk action and follow it to its bulk_done. It runs on the hub while this
        connection is open: a dropped connection ends it (Disconnected; what it did stays done)."""
        started = await self._request(message)
        action_id = started["action_id"]
        action = self._actions.setdefault(action_id, _Action())
        if on_progress is not None:
            on_progress(started)
        try:
            seen = 0
            while True:
                while seen < len(action.frames):
                    frame = action.frames[seen]
                    seen += 1
                    if frame.get("dropped"):
                        raise Disconnected("the connection to the hub dropped during the bulk action, "
                                           "which stopped there (what it did stays done); run it again "
                                           "to go on")
                    if frame["type"] == "bulk_done":
                        return BulkOutcome(frame["action"], frame["jobs"], frame["looked"], frame["dry_run"],
                                           frame.get("code"), frame.get("error"))
                    if on_progress is not None:
                        on_progress(frame)
                if self.connection.fatal is not None:
                    raise self.connection.fatal
                action.changed.clear()
                await action.changed.wait()
        finally:
            self._actions.pop(action_id, None)

    def _on_push(self, frame: dict[str, Any], data: bytes) -> None:
        if frame.get("type") in BULK_FRAMES and isinstance(frame.get("action_id"), str):
            action = self._actions.setdefault(frame["action_id"], _Action())
            action.frames.append(frame)
            action.changed.set()
        elif self.on_event is not None and "req" not in frame:  # a late reply is no event
            self.on_event(frame)

    async def _on_connected(self) -> None:
        """After a reconnect: the hub stopped the actions of the dropped connection."""
        if self.connection.connects > 1:
            for action in self._actions.values():
                action.frames.append({"type": "bulk_done", "dropped": True})
                action.changed.set()


__all__ = ["BulkOutcome", "Monitor"]
