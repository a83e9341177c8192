"""What the hub does for monitors: the list of workers; stats pushed to each subscriber at its
own interval (never closer together than that), only when they changed, one stats read serving
every monitor due at that moment; bulk retry and removal (run by hub/bulk.py); pausing job types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from empfast import messages as m
from empfast.hub import frames
from empfast.hub.conn import Peer, StatsPushes
from empfast.store import Cursor, Slice

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")

TIMER_SLACK_S = 0.001  # a loop timer may fire a hair before its time


class MonitorHandlers:
    """Handlers are named `on_<message type>` (server.handler_table finds them)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()  # wakes the stats loop early for a shorter interval

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._stats_loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task], timeout=5)

    async def on_subscribe_stats(self, peer: Peer, message: m.SubscribeStats) -> None:
        interval_s = message.interval_s
        counts = (await peer.room.store.stats()).as_dict()
        now = asyncio.get_running_loop().time()
        peer.stats = StatsPushes(interval_s, frames.stats(counts), now + interval_s)
        peer.room.stats_subscribers.add(peer)
        self._subscribed.set()
        peer.send(frames.stats(counts, message.req))

    async def on_get_workers(self, peer: Peer, message: m.GetWorkers) -> None:
        peer.reply(message.req, frames.workers(await peer.room.store.get_workers()))

    async def on_get_queues(self, peer: Peer, message: m.GetQueues) -> None:
        """Every queue this hub serves (by name), with its stats: one getStats each (a queue still
        opening on first use is left out). Stats per queue or all (docs/protocol.md 4.3)."""
        rooms = sorted(self.hub.rooms.values(), key=lambda room: room.name)
        stats_of = {room.name: (await room.store.stats()).as_dict() for room in rooms
                    if room.opened is None or room.opened.done()}
        peer.reply(message.req, frames.queues(stats_of, self.hub.default_room.name))

    async def on_set_job_feed(self, peer: Peer, message: m.SetJobFeed) -> None:
        """A monitor that wants stats and workers only (a dashboard's overview) stops the job
        events it would otherwise get, and the hub's work of sending them; one that follows some
        job types gets theirs only."""
        types = frozenset(message.job_types or ()) if message.job_events else frozenset()
        peer.room.set_job_feed(peer, message.job_events, types)
        peer.reply(message.req, frames.job_feed(message.job_events, sorted(types) or None))

    async def on_retry_jobs(self, peer: Peer, message: m.RetryJobs) -> None:
        self.hub.bulk.check_room(peer)
        store = peer.room.store
        until_ms = await store.clock_ms()  # jobs that fail again meanwhile are not retried twice
        total = await store.count_finished(message.status, until_ms)

        def next_slice(cursor: Cursor | None) -> Awaitable[Slice]:
            return store.retry_jobs_slice(status=message.status, job_type=message.job_type,
                                          attempts=message.attempts, until_ms=until_ms, cursor=cursor,
                                          dry_run=message.dry_run)

        self.hub.bulk.start(peer, message.req, "retry_jobs", total, message.dry_run, next_slice)

    async def on_remove_jobs(self, peer: Peer, message: m.RemoveJobs) -> None:
        self.hub.bulk.check_room(peer)
        store = peer.room.store
        until_ms = await store.clock_ms() - round(message.older_than_s * 1000)
        total = await store.count_finished(message.status, until_ms)

        def next_slice(cursor: Cursor | None) -> Awaitable[Slice]:
            return store.remove_jobs_slice(message.status, job_type=message.job_type, until_ms=until_ms,
                                           cursor=cursor, dry_run=message.dry_run)

        self.hub.bulk.start(peer, message.req, "remove_jobs", total, message.dry_run, next_slice)

    async def on_pause_type(self, peer: Peer, message: m.PauseType) -> None:
        await self._set_paused(peer, message.req, message.job_type, True)

    async def on_resume_type(self, peer: Peer, message: m.ResumeType) -> None:
        await self._set_paused(peer, message.req, message.job_type, False)

    async def _set_paused(self, peer: Peer, req: Any, job_type: str, paused: bool) -> None:
        state = await peer.room.store.set_type_paused(job_type, paused)
        if state.changed:
            log.info("job type %r %s (%d pending)", job_type, "paused" if paused else "resumed",
                     state.pending)
        peer.reply(req, frames.type_paused(job_type, paused, state.pending, state.paused))

    async def on_set_type_limits(self, peer: Peer, message: m.SetTypeLimits) -> None:
        state = await peer.room.store.set_type_limits(message.job_type, message.concurrency, message.rate,
                                                      message.per_s, message.group_concurrency)
        if state.changed:
            log.info("job type %r limits: concurrency %s, rate %s per %g s, per group %s (%d pending)",
                     message.job_type, message.concurrency, message.rate, message.per_s,
                     message.group_concurrency, state.pending)
        peer.reply(message.req, frames.type_limits(message.job_type, state.limits, state.pending))

    def _sleep_s(self, now: float) -> float:
        """Until the earliest monitor's next check; with none subscribed, the hub's interval."""
        due = [peer.stats.next_at for room in self.hub.rooms.values() for peer in room.stats_subscribers
               if peer.stats is not None]
        return max(0.0, min(due) - now) if due else self.hub.config.stats_interval_s

    async def _stats_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.hub.running:
            self._subscribed.clear()
            # a new subscriber wakes the loop: its interval may bring the next check forward
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout=self._sleep_s(loop.time()))
            now = loop.time()
            for room in list(self.hub.rooms.values()):
                due = [peer for peer in room.stats_subscribers
                       if peer.stats is not None and peer.stats.next_at <= now + TIMER_SLACK_S]
                if due:
                    await self._push_stats(room, due, now)

    async def _push_stats(self, room: QueueRoom, due: list[Peer], now: float) -> None:
        """One read of a queue's stats for its monitors whose push is due; each gets them if they
        changed since its last."""
        try:
            frame = frames.stats((await room.store.stats()).as_dict())
        except Exception:
            log.exception("stats of queue %r failed; trying again in %.1f s", room.name,
                          self.hub.config.stats_interval_s)
            for peer in due:
                assert peer.stats is not None
                peer.stats.next_at = now + self.hub.config.stats_interval_s
            return
        for peer in due:
            assert peer.stats is not None
            peer.stats.next_at = now + peer.stats.interval_s
            if frame != peer.stats.sent:
                peer.stats.sent = frame
                peer.send(frame)
