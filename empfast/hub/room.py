"""One queue a hub serves: its store, its events reader and sweep (dispatch.py), and the registries
of the connections bound to it (workers, monitors, job subscriptions, job feeds). A connection is
bound to one queue for its life (docs/protocol.md section 2), so the handlers find everything of
a message's queue in `peer.room`, with no lookup per message.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING

from empfast.hub.dispatch import Dispatcher
from empfast.store import Store

if TYPE_CHECKING:
    from empfast.hub.conn import Peer
    from empfast.hub.server import Hub


class QueueRoom:
    def __init__(self, hub: Hub, store: Store) -> None:
        self.hub = hub
        self.store = store
        self.name = store.settings.name
        self.workers: dict[str, Peer] = {}  # worker id -> its connection to this hub
        self.monitors: set[Peer] = set()
        self.job_feed: set[Peer] = set()  # the monitors that get every job event (set_job_feed)
        # job type -> the monitors that get the job events of that type only (set_job_feed)
        self.typed_feed: defaultdict[str, set[Peer]] = defaultdict(set)
        self.feed_types: dict[Peer, frozenset[str]] = {}  # such a monitor -> its types
        self.stats_subscribers: set[Peer] = set()
        self.subscribers: defaultdict[str, set[Peer]] = defaultdict(set)  # job id -> who follows it
        self.dispatch = Dispatcher(hub, self)
        # while a queue opened on first use starts (Hub._open_room): its connections wait for it
        self.opened: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Check the queue's layout and load the scripts (Store.start), and find where its events
        stream ends; the reader starts with run()."""
        await self.store.start()
        await self.dispatch.prepare()

    def run(self) -> None:
        self.dispatch.start()

    async def stop(self) -> None:
        await self.dispatch.stop()

    # ---- connections -------------------------------------------------------------------------

    def attach(self, peer: Peer) -> None:
        if peer.role == "monitor":
            self.monitors.add(peer)
            self.job_feed.add(peer)

    def detach(self, peer: Peer) -> None:
        self.monitors.discard(peer)
        self.set_job_feed(peer, False)
        self.stats_subscribers.discard(peer)
        for job_id in list(peer.subs.jobs):
            self.unsubscribe(peer, job_id)
        if peer.worker is not None and self.workers.get(peer.worker.worker_id) is peer:
            # its leases stay: a worker that reconnects in time keeps its jobs; else the sweep
            # takes them back when its liveness lapses
            del self.workers[peer.worker.worker_id]

    def set_job_feed(self, peer: Peer, on: bool, job_types: frozenset[str] = frozenset()) -> None:
        """A monitor's job events: all (on, no types), those of `job_types`, or none."""
        for job_type in self.feed_types.pop(peer, ()):
            followers = self.typed_feed[job_type]
            followers.discard(peer)
            if not followers:
                del self.typed_feed[job_type]
        self.job_feed.discard(peer)
        if on and job_types:
            self.feed_types[peer] = job_types
            for job_type in job_types:
                self.typed_feed[job_type].add(peer)
        elif on:
            self.job_feed.add(peer)

    # ---- job subscriptions -------------------------------------------------------------------

    def subscribe(self, peer: Peer, job_id: str) -> bool:
        """Subscribe unless the connection is at its limit; False when it is."""
        if job_id not in peer.subs.jobs and len(peer.subs.jobs) >= self.hub.config.max_subscriptions:
            return False
        peer.subs.jobs.add(job_id)
        self.subscribers[job_id].add(peer)
        return True

    def unsubscribe(self, peer: Peer, job_id: str) -> None:
        peer.subs.jobs.discard(job_id)
        peer.subs.buffered.pop(job_id, None)
        subs = self.subscribers.get(job_id)
        if subs is not None:
            subs.discard(peer)
            if not subs:
                del self.subscribers[job_id]
