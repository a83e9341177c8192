"""Events from every hub, and what follows from them: the events reader (the queue's Redis stream),
fan-out to subscribers and monitors, waking local workers for new jobs (in its own task, so a slow
claim never delays anyone's events), offers to offer-mode workers, the reader-gap check, and the
sweep with its safety-net claims.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import TYPE_CHECKING

from empfast import errors as e
from empfast.errors import EmpfastError
from empfast.hub import frames
from empfast.hub.conn import CLOSE_REPLACED, Peer
from empfast.ids import event_key
from empfast.protocol import frame_header
from empfast.store import EventFields, TypeLimit, entry_events, event_fields, event_limit

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")
# a job event for more connections than this is written to each at once: 1,000 subscribers had it
# 10 ms after the send (p50; p99 48 ms) when queued, 7.5 ms (p99 11.5 ms) written at once
FAN_OUT_AT_ONCE = 32
# kinds of job events (an entry may hold a batch of jobs) that matter to a hub only for a job someone
# here follows, or one counted for a wake-up in the same read (`assigned`): an entry that concerns
# no one is skipped whole, not split into its jobs (most entries of a busy queue nobody watches)
QUIET_KINDS = frozenset({b"completed", b"assigned"})
# job events that free a slot of a type's concurrency limit (docs/job-control.md 3): for a limited
# type, local workers claim again, not waiting for the sweep's safety net
FREEING_KINDS = frozenset({b"completed", b"failed", b"cancelled"})


class Dispatcher:
    def __init__(self, hub: Hub, room: QueueRoom) -> None:
        self.hub = hub
        self.room = room
        self.store = room.store
        self.last_event_id = "0-0"  # the newest entry of the events stream this hub has read
        self.reader_interrupted = False  # set when the events reader failed or stalled
        self.tasks: list[asyncio.Task[None]] = []
        self._wanted: Counter[str] = Counter()  # job type -> new pending jobs not yet claimed for
        self._wake_signal = asyncio.Event()
        self._wake_turn = 0
        self.limits: dict[str, TypeLimit] = {}  # the limited job types, kept by the `limits` events
        self._rate_timers: dict[str, asyncio.TimerHandle] = {}  # job type -> the claim at its next token

    async def prepare(self) -> None:
        """Start reading after the newest event: a starting hub has no one to tell of older ones."""
        self.last_event_id = await self.store.last_event_id()
        self.limits = await self.store.type_limits()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._events_loop()), loop.create_task(self._wake_loop()),
                      loop.create_task(self._sweep_loop())]

    async def stop(self) -> None:
        for timer in self._rate_timers.values():
            timer.cancel()
        self._rate_timers.clear()
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)

    # ---- the events reader -----------------------------------------------------------------------

    async def _events_loop(self) -> None:
        loop = asyncio.get_running_loop()
        hub = self.hub
        last_read = loop.time()
        while hub.running:
            try:
                # a pause much longer than a blocking read (a stalled process) counts as an
                # interruption: the stream may have been trimmed past this hub's position meanwhile
                if loop.time() - last_read > max(10.0, hub.config.events_block_ms / 100):
                    self.reader_interrupted = True
                if self.reader_interrupted:
                    await self._check_reader_gap()
                entries = await self.store.read_event_entries(self.last_event_id, count=1000,
                                                              block_ms=hub.config.events_block_ms)
                last_read = loop.time()
                wake: Counter[str] = Counter()
                woken: set[str] = set()  # the job ids counted in `wake`
                for entry_id, flat in entries:
                    self.last_event_id = entry_id.decode()
                    if flat[1] in QUIET_KINDS and not self._followed(flat, woken):
                        continue
                    for event in entry_events(flat):
                        self._on_event(self.last_event_id, event, wake, woken)
                wanted = +wake  # the types with jobs still to claim for
                if wanted:
                    self.request_wake(wanted)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not hub.running:
                    return
                log.exception("reading the events stream failed; retrying in 1 s")
                self.reader_interrupted = True
                await asyncio.sleep(1)

    def _followed(self, flat: list[bytes], woken: set[str]) -> bool:
        """Whether an entry of a quiet kind concerns anyone here: a monitor, a subscriber of one of
        its jobs, or a job of this read counted for a wake-up (docs/data-model.md, "Events")."""
        if self.room.job_feed or self.room.typed_feed:
            return True
        if self.limits and flat[1] == b"completed" and self._limited_in(flat):
            return True  # a slot of a limited type is free: its jobs are claimed for (_on_event)
        subscribers = self.room.subscribers
        if not subscribers and not woken:
            return False
        for i in range(2, len(flat), 2):
            if flat[i] == b"id":
                job_id = flat[i + 1].decode()
                if job_id in subscribers or job_id in woken:
                    return True
        return False

    def _limited_in(self, flat: list[bytes]) -> bool:
        limits = self.limits
        return any(flat[i] == b"type" and flat[i + 1].decode() in limits for i in range(2, len(flat), 2))

    def _on_event(self, event_id: str, flat: list[bytes], wake: Counter[str], woken: set[str]) -> None:
        """One event of the stream, its fields flat: b"ev" and b"id" come first in every event, so
        most (an assignment, a completion that nobody follows) are routed without a dict. `wake`
        counts by type the jobs of this read that became pending (their ids in `woken`), for the
        wake task to claim."""
        ev = flat[1]
        if ev == b"worker":
            self._on_worker_event(event_id, event_fields(flat))
            return
        if ev in frames.TYPE_SETTING_KINDS:  # a job type's setting, by a monitor on any hub
            self._on_type_event(event_id, ev, event_fields(flat), wake)
            return
        job_id = flat[3].decode()
        f = self._freed(ev, flat, wake) if self.limits and ev in FREEING_KINDS else None
        if ev in (b"added", b"pending"):
            f = event_fields(flat)
            if f.get(b"status", b"pending") == b"pending":
                job_type = f[b"type"].decode()
                wake[job_type] += 1
                woken.add(job_id)
                self._offer(job_id, job_type, int(f.get(b"priority", b"0")))
        elif ev == b"failed":
            f = event_fields(flat)
            if f.get(b"final") == b"0" and b"run_at" not in f:
                wake[f[b"type"].decode()] += 1  # retried at once: pending again
                woken.add(job_id)
            if b"worker" in f:  # a timeout (the sweep, on any hub): its worker may be ours
                self._on_timeout(job_id, f, wake)
        elif ev == b"assigned" and job_id in woken:
            # claimed already, later in the same read (a submit that claimed for the idle worker,
            # a claim of the next jobs): no one needs waking for it
            woken.discard(job_id)
            wake[event_fields(flat)[b"type"].decode()] -= 1
        elif ev == b"cancel_requested":
            f = event_fields(flat)
            worker = self.room.workers.get(f[b"worker"].decode())
            if worker is not None and worker.worker is not None and job_id in worker.worker.jobs:
                worker.send(frames.cancel_job(job_id, "cancelled"))
        subs = self.room.subscribers.get(job_id)
        if subs or self.room.job_feed or self.room.typed_feed:
            self._fan_out(job_id, event_id, f or event_fields(flat), subs)

    def _on_timeout(self, job_id: str, f: EventFields, wake: Counter[str]) -> None:
        """An attempt failed `timeout`: its worker, if connected here and still on that attempt,
        is told to stop (cancel_job reason timeout) and its slot is free again, so the type's
        pending jobs are claimed for this hub's workers."""
        peer = self.room.workers.get(f[b"worker"].decode())
        slots = peer.worker if peer is not None else None
        if slots is None or slots.jobs.get(job_id) != int(f[b"attempt"]):
            return  # not ours, or a newer attempt of the job was given to it meanwhile
        del slots.jobs[job_id]
        peer.send(frames.cancel_job(job_id, "timeout"))
        wake[f[b"type"].decode()] += 1

    def _fan_out(self, job_id: str, event_id: str, f: EventFields, subs: set[Peer] | None) -> None:
        """A job event to its subscribers and the monitors; a final event ends the subscriptions."""
        room = self.room
        frame = frames.job_event(event_id, f)
        # a monitor that also subscribed to the job gets each event once
        feed = room.job_feed
        if room.typed_feed:
            typed = room.typed_feed.get(f.get(b"type", b"").decode())
            if typed:
                feed = feed | typed
        targets = feed.union(subs) if subs and feed else (subs or feed)
        # to many connections: framed once and written to each at once (Peer.send_framed); to a
        # few, queued with their other frames of the loop turn (a client following many jobs gets
        # a read's events in one write)
        framed = frame_header(len(frame)) + frame if len(targets) > FAN_OUT_AT_ONCE else None
        for peer in targets:
            buffered = peer.subs.buffered.get(job_id)
            if buffered is not None:
                buffered.append((event_id, frame))
            elif framed is not None:
                peer.send_framed(framed)
            else:
                peer.send(frame)
        if subs is not None and frames.is_final_entry(f):
            for peer in list(subs):
                if job_id not in peer.subs.buffered:  # a subscribe in progress ends it itself
                    room.unsubscribe(peer, job_id)

    def _on_worker_event(self, event_id: str, f: EventFields) -> None:
        hub, room = self.hub, self.room
        worker_id, status = f[b"id"].decode(), f[b"status"].decode()
        frame = frames.worker_status(worker_id, status, event_id)
        for peer in room.monitors:
            peer.send(frame)
        other_hub = f.get(b"hub", b"").decode()
        local = room.workers.get(worker_id)
        if status == "gone" and local is not None:
            hub.worker_handlers.record_gone(local)
        if status == "registered" and other_hub and other_hub != hub.hub_id and local is not None:
            # one connection per worker id, across hubs: the newer registration wins
            del room.workers[worker_id]
            if local.worker is not None:
                local.worker.jobs.clear()
            local.close(e.REPLACED, f"worker id {worker_id!r} registered on hub {other_hub!r}; this "
                                    "connection is replaced (two processes share one id?)", CLOSE_REPLACED)

    def _on_type_event(self, event_id: str, ev: bytes, f: EventFields, wake: Counter[str]) -> None:
        """A job type paused, resumed, or its limits set or cleared, on any hub: every monitor here
        is told. The limits are kept (for the wake-ups on the type's completions); on a resume, or
        a limit raised or cleared, the type's waiting jobs are claimed for the workers here, as if
        they had just been added."""
        job_type, pending = f[b"type"].decode(), int(f[b"pending"])
        if ev == b"limits":
            self._keep_limit(job_type, event_limit(f))
        if ev != b"paused" and pending:
            wake[job_type] += pending
        frame = frames.type_setting_event(event_id, f)
        for peer in self.room.monitors:
            peer.send(frame)

    def _freed(self, ev: bytes, flat: list[bytes], wake: Counter[str]) -> EventFields:
        """A job that ended (or failed an attempt) frees a slot of its type's concurrency limit: if
        the type is limited, local workers claim for it. Returns the event's fields."""
        f = event_fields(flat)
        job_type = f.get(b"type", b"").decode()
        if job_type in self.limits and not (ev == b"failed" and f.get(b"final") == b"0"):
            wake[job_type] += 1  # (a retried failure is counted by _on_event, as pending again)
        return f

    def _keep_limit(self, job_type: str, limit: TypeLimit | None) -> None:
        """A type's limits as its `limits` event sets them; once cleared, its rate timer goes too."""
        if limit is not None:
            self.limits[job_type] = limit
            return
        self.limits.pop(job_type, None)
        timer = self._rate_timers.pop(job_type, None)
        if timer is not None:
            timer.cancel()

    def wake_at_next_token(self, waits: dict[str, int]) -> None:
        """A claim was held back by a type's rate: claim for the type again when its next token is
        due, once per type and hub (a due timer that comes earlier replaces a later one)."""
        loop = asyncio.get_running_loop()
        for job_type, ms in waits.items():
            due = loop.time() + ms / 1000
            timer = self._rate_timers.get(job_type)
            if timer is not None and timer.when() <= due:
                continue
            if timer is not None:
                timer.cancel()
            self._rate_timers[job_type] = loop.call_at(due, self._token_due, job_type)

    def _token_due(self, job_type: str) -> None:
        self._rate_timers.pop(job_type, None)
        limit = self.limits.get(job_type)
        self.request_wake(Counter({job_type: limit.rate if limit is not None and limit.rate else 1}))

    def _offer(self, job_id: str, job_type: str, priority: int) -> None:
        frame = None
        for peer in self.room.workers.values():
            if peer.worker is not None and peer.worker.takes_offers(job_type):
                frame = frame or frames.job_available(job_id, job_type, priority)
                peer.send(frame)

    # ---- waking workers ------------------------------------------------------------------------

    def request_wake(self, wake: Counter[str]) -> None:
        """Ask the wake task to claim new pending jobs (by type) for local workers."""
        self._wanted.update(wake)
        self._wake_signal.set()

    async def _wake_loop(self) -> None:
        while self.hub.running:
            await self._wake_signal.wait()
            self._wake_signal.clear()
            wanted, self._wanted = self._wanted, Counter()
            try:
                await self._wake(wanted)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self.hub.running:
                    return
                log.exception("claiming new jobs for this hub's workers failed; the sweep's safety net "
                              "tries again")

    async def _wake(self, wanted: Counter[str]) -> None:
        """Claim for local workers that can run the new jobs and have free slots, sharing the jobs
        among them and starting with a different worker each time, so that the first worker to
        register does not take every new job while the others idle."""
        self._wake_turn += 1
        handlers = self.hub.worker_handlers
        for job_type, count in wanted.items():
            eligible = [peer for peer in self.room.workers.values() if peer.worker is not None
                        and job_type in peer.worker.job_types and handlers.dispatchable(peer)]
            if not eligible:
                continue
            turn = self._wake_turn % len(eligible)
            share = -(-count // len(eligible))  # ceiling
            for peer in eligible[turn:] + eligible[:turn]:
                if count <= 0:
                    break
                if peer.worker is None or not handlers.dispatchable(peer):
                    continue
                asked = min(share, count, handlers.dispatchable(peer))
                try:
                    got = await handlers.fill(peer, min(share, count))
                except EmpfastError as exc:  # this worker only: the others still get their share
                    log.warning("could not claim for worker %s: %s", peer.worker.worker_id, exc)
                    continue
                count -= got
                if got < asked and job_type in self.limits:
                    break  # the type's limit (or its pending jobs) ran out: the others would get none

    # ---- after an interruption -----------------------------------------------------------------

    async def _check_reader_gap(self) -> None:
        """After the reader was interrupted: if the stream was trimmed past the last entry this hub
        read, its subscribers may have missed events, so each gets its job's state as an event
        marked `resumed: false`, and monitors get fresh stats (docs/protocol.md section 6)."""
        hub, room = self.hub, self.room
        first = await self.store.first_event_id()
        self.reader_interrupted = False
        self.limits = await self.store.type_limits()  # a `limits` event may be among those missed
        behind = first is not None and _order(first) > _order(self.last_event_id)
        if not behind or self.last_event_id == "0-0":
            return
        log.warning("the events stream was trimmed past this hub's position (%s < %s): sending each "
                    "subscription its job's state", self.last_event_id, first)
        for job_id, subs in list(room.subscribers.items()):
            job = await self.store.get_job(job_id)
            if job is None:
                continue
            frame = frames.job_state(job_id, job, self.last_event_id, {"resumed": False})
            for peer in list(subs):
                peer.send(frame)
                hub.clients.end_if_final(peer, job_id, job)
        if room.monitors:
            stats = frames.stats((await self.store.stats()).as_dict())
            for peer in list(room.monitors):
                peer.send(stats)

    # ---- upkeep ------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while self.hub.running:
            await asyncio.sleep(self.hub.config.sweep_interval_s)
            try:
                while (await self.store.sweep()).more:
                    pass
                await self.hub.schedules.fire_due(self.room)
                await self._safety_net()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; trying again next interval")

    async def _safety_net(self) -> None:
        """Claim for local workers with free slots whose types have pending jobs. Dispatch is
        driven by events; this covers what no event announced to this hub (jobs back from an
        expired lease, a reader that fell behind), at the cost of one read a tick of the pending
        counts of the hungry workers' types only (so not growing with the queue's types)."""
        dispatchable = self.hub.worker_handlers.dispatchable
        hungry = {t for peer in self.room.workers.values()
                  if peer.worker is not None and dispatchable(peer) for t in peer.worker.job_types}
        if not hungry:
            return
        waiting = Counter(await self.store.pending_counts(sorted(hungry)))
        if waiting:
            self.request_wake(waiting)


def _order(event_id: str) -> tuple[int, int]:
    """Ids of entries read from the stream (always well formed), in stream order."""
    return event_key(event_id) or (0, 0)
