"""Bulk actions a monitor asks for (retry_jobs, remove_jobs; docs/management.md section 3): each
runs in a task of the hub, one store call per slice of at most BULK_SLICE jobs, one after the
other, so Redis is never held long and the WebSocket hot path keeps its turns. The monitor gets
`bulk_started` as the reply, a `bulk_progress` after each slice and `bulk_done` at the end. An
action runs while the connection that asked for it is open (one at a time per connection,
MAX_BULK_ACTIONS per hub); what it did stays done when it stops, and running it again goes on
where it stopped (retried and removed jobs have left the set it reads)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from empfast import errors as e
from empfast.errors import EmpfastError, ProtocolError
from empfast.hub import frames
from empfast.hub.conn import Peer
from empfast.limits import MAX_BULK_ACTIONS
from empfast.store import Cursor, Slice

if TYPE_CHECKING:
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")

SliceCall = Callable[[Cursor | None], Awaitable[Slice]]


class BulkRunner:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.running: dict[Peer, asyncio.Task[None]] = {}
        self._numbers = itertools.count(1)

    def check_room(self, peer: Peer) -> None:
        """Refuse (limit_exceeded) before any work when the connection or the hub runs enough."""
        if peer in self.running:
            raise ProtocolError(e.LIMIT_EXCEEDED, "this connection runs a bulk action already: wait for "
                                "its bulk_done, or use another connection", limit=1)
        if len(self.running) >= MAX_BULK_ACTIONS:
            raise ProtocolError(e.LIMIT_EXCEEDED, f"this hub runs {MAX_BULK_ACTIONS} bulk actions already: "
                                "try again when one is done", limit=MAX_BULK_ACTIONS)

    def start(self, peer: Peer, req: Any, action: str, total: int, dry_run: bool,
              next_slice: SliceCall) -> None:
        """Reply bulk_started and run the action's slices in a task of their own."""
        self.check_room(peer)
        action_id = f"{self.hub.hub_id}-{next(self._numbers)}"
        peer.reply(req, frames.bulk_started(action_id, action, total, dry_run))
        log.info("%s %s started for a monitor (%d jobs to look at%s)", action, action_id, total,
                 ", dry run" if dry_run else "")
        task = asyncio.get_running_loop().create_task(
            self._run(peer, action_id, action, total, dry_run, next_slice))
        self.running[peer] = task
        task.add_done_callback(lambda _: self.running.pop(peer, None))

    async def _run(self, peer: Peer, action_id: str, action: str, total: int, dry_run: bool,
                   next_slice: SliceCall) -> None:
        looked = jobs = 0
        cursor: Cursor | None = None
        error: tuple[str, str] | None = None
        while True:
            try:
                done = await next_slice(cursor)
            except asyncio.CancelledError:
                raise
            except EmpfastError as exc:
                error = (exc.code, f"{exc}; the slices before this one are done, run the action again "
                         "to go on")
                break
            except Exception as exc:  # Redis unreachable or timed out: this slice may not have run
                error = (e.UNAVAILABLE, f"the store failed ({type(exc).__name__}: {exc}); the slices "
                         "before this one are done, run the action again to go on")
                break
            looked, jobs, cursor = looked + done.looked, jobs + done.jobs, done.cursor
            if cursor is None:
                break
            peer.send(frames.bulk_progress(action_id, action, looked, jobs, total))
        peer.send(frames.bulk_done(action_id, action, looked, jobs, dry_run, error))
        log.info("%s %s %s: %d jobs%s of %d looked at", action, action_id,
                 "stopped" if error else "done", jobs, " (dry run)" if dry_run else "", looked)

    def forget(self, peer: Peer) -> None:
        """The connection closed: its action stops after the slice in flight."""
        task = self.running.pop(peer, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
