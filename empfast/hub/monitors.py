"""What the hub does for monitors: the list of workers, and stats pushed to each subscriber at its
own interval, only when they changed; one stats read per tick serves every monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from empfast import protocol as p
from empfast.hub import frames
from empfast.hub.conn import Peer, Request, StatsPushes

if TYPE_CHECKING:
    from empfast.hub.server import FrameHandler, Hub

log = logging.getLogger("empfast.hub")

MIN_STATS_INTERVAL_S = 0.25


class MonitorHandlers:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.store = hub.store
        self.task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()  # wakes the stats loop early for a shorter interval

    def handlers(self) -> dict[str, FrameHandler]:
        return {"subscribe_stats": self.on_subscribe_stats, "get_workers": self.on_get_workers}

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._stats_loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task], timeout=5)

    async def on_subscribe_stats(self, peer: Peer, request: Request) -> None:
        interval_s = p.get_number(request.message, "interval_s", 1.0, MIN_STATS_INTERVAL_S, 3600)
        counts = (await self.store.stats()).as_dict()
        peer.stats = StatsPushes(interval_s, frames.stats(counts), asyncio.get_running_loop().time())
        self.hub.stats_subscribers.add(peer)
        self._subscribed.set()
        peer.send(frames.stats(counts, request.req))

    async def on_get_workers(self, peer: Peer, request: Request) -> None:
        peer.reply(request.req, frames.workers(await self.store.get_workers()))

    def _tick_s(self) -> float:
        """The loop wakes at the hub's stats interval, or sooner for a monitor that asked for less."""
        wanted = [peer.stats.interval_s for peer in self.hub.stats_subscribers if peer.stats is not None]
        return min([self.hub.config.stats_interval_s, *wanted])

    async def _stats_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.hub.running:
            self._subscribed.clear()
            # a new subscriber wakes the loop: its interval may shorten the tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout=self._tick_s())
            now = loop.time()
            # a little slack, so a push due a hair after this tick is not a whole tick late
            due = [peer for peer in self.hub.stats_subscribers if peer.stats is not None
                   and now - peer.stats.sent_at >= peer.stats.interval_s - MIN_STATS_INTERVAL_S / 2]
            if not due:
                continue
            try:
                frame = frames.stats((await self.store.stats()).as_dict())
            except Exception:
                log.exception("stats failed; trying again next interval")
                continue
            for peer in due:
                assert peer.stats is not None
                if frame != peer.stats.sent:
                    peer.stats.sent, peer.stats.sent_at = frame, now
                    peer.send(frame)
