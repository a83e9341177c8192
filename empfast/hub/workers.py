"""What the hub does for workers: register (and re-send held jobs), claim by id, progress, complete
(batched, with the next claims in the same call), fail, heartbeat, status, unregister, and filling
a worker's free slots.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from empfast import errors as e
from empfast import messages as m
from empfast import protocol as p
from empfast.errors import EmpfastError, LeaseLost, ProtocolError, WorkerNotFound
from empfast.hub import frames
from empfast.hub.clients import check_value
from empfast.hub.conn import CLOSE_REPLACED, Peer, WorkerSlots, error_for
from empfast.limits import MAX_ERROR_CHARS, MAX_PROGRESS_MESSAGE_CHARS
from empfast.store import ClaimedJob, Completion, NewJob

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")


# a worker not heard from for this many heartbeat intervals gets no jobs from dispatch: it missed a
# heartbeat and is late for the next, so it is likely frozen (its liveness is at least 3 intervals)
QUIET_AFTER_HEARTBEATS = 2
# most completions in one completeJobs call: a worker's whole window in one call made Redis, hub and
# worker take turns (docs/performance.md, "Latest")
COMPLETIONS_PER_CALL = 16


def registered(peer: Peer) -> WorkerSlots:
    """The worker state of a connection the hub let through (register_worker came first)."""
    assert peer.worker is not None, "handle() lets only registered workers through"
    return peer.worker


class WorkerHandlers:
    """Handlers are named `on_<message type>` (server.handler_table finds them)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # ---- giving jobs out -------------------------------------------------------------------------

    def assign(self, peer: Peer, jobs: list[ClaimedJob], req: Any = None, reassigned: bool = False) -> None:
        """Give jobs to a worker: one job_assigned each, or, to a batch worker, jobs_assigned frames
        (the reply to claim_job, which has a `req`, stays a job_assigned)."""
        slots = registered(peer)
        lease_s = peer.room.store.settings.lease_ms / 1000
        for job in jobs:
            slots.jobs[job.job_id] = job.attempt
        if slots.batch and req is None:
            for frame in frames.jobs_assigned(jobs, lease_s, self.hub.config.max_frame_bytes, reassigned):
                peer.send(frame)
            return
        for job in jobs:
            peer.send(frames.job_assigned(job, lease_s, req, reassigned))

    def ready_for(self, room: QueueRoom, jobs: list[NewJob]) -> Peer | None:
        """The one local worker that can start some of these new jobs now (free slots, awake), so
        that a submit claims them for it in its own store call (Store.add_and_claim) instead of
        waiting for its `added` events to come back. None when there is no such worker, or several:
        then the events wake them and the jobs are shared among them (Dispatcher._wake)."""
        job_types = {job.job_type for job in jobs}
        found = None
        for peer in room.workers.values():
            if peer.worker is not None and not peer.worker.job_types.isdisjoint(job_types) \
                    and self.dispatchable(peer):
                if found is not None:
                    return None
                found = peer
        return found

    async def fill(self, peer: Peer, most: int | None = None) -> int:
        """Claim jobs for a worker's free slots (at most `most`); returns how many it got."""
        slots = registered(peer)
        free = slots.free() if most is None else min(most, slots.free())
        if free <= 0:
            return 0
        try:
            jobs, waits = await peer.room.store.claim_waits(slots.worker_id, free)
        except WorkerNotFound:
            self.lapse(peer)
            return 0
        if waits:  # a type's rate held jobs back: claim again when its next token is due
            peer.room.dispatch.wake_at_next_token(waits)
        self.assign(peer, jobs)
        return len(jobs)

    # ---- who gets jobs -----------------------------------------------------------------------

    def heartbeat_interval_s(self) -> float:
        """The interval worker_registered asks for: the hub's setting, but at most a third of the
        shorter of lease and liveness (docs/protocol.md 4.2), so it never outlasts a short lease.
        Every queue of a hub has the same timings (Store.for_queue)."""
        settings = self.hub.store.settings
        return min(self.hub.config.heartbeat_interval_s, min(settings.lease_ms, settings.liveness_ms) / 3000)

    def dispatchable(self, peer: Peer) -> int:
        """The free slots dispatch may fill: none for a worker not heard from within two heartbeat
        intervals (frozen, or not heartbeating), whose jobs would each wait out a lease, nor for one
        whose record lapsed (docs/protocol.md 4.4)."""
        slots = peer.worker
        return slots.free() if slots is not None and self._awake(slots) else 0

    def _awake(self, slots: WorkerSlots) -> bool:
        return slots.awake(asyncio.get_running_loop().time(),
                           QUIET_AFTER_HEARTBEATS * self.heartbeat_interval_s())

    def record_gone(self, peer: Peer) -> None:
        """The sweep removed the record of a worker connected here. One heard from since then
        registered again (the event is older than its heartbeat); any other is told."""
        slots = peer.worker
        if slots is not None and not self._awake(slots):
            self.lapse(peer)

    def lapse(self, peer: Peer) -> None:
        """The worker's record in Redis is gone (missed heartbeats): no dispatch to it until it
        heartbeats or registers, and it is told so once (docs/protocol.md 4.2)."""
        slots = registered(peer)
        if slots.lapsed:
            return
        slots.lapsed = True
        liveness_s = peer.room.store.settings.liveness_ms / 1000
        log.warning("worker %s sent no heartbeat for %g s: its record lapsed and its jobs were taken "
                    "back", slots.worker_id, liveness_s)
        peer.send(frames.error(e.NOT_REGISTERED, f"worker {slots.worker_id!r} is no longer registered: "
                               f"it sent no heartbeat for {liveness_s:g} s and its jobs were taken back; "
                               "send worker_heartbeat or register_worker to register again"))

    # ---- registration ------------------------------------------------------------------------

    async def on_register_worker(self, peer: Peer, message: m.RegisterWorker) -> None:
        hub, worker_id = self.hub, message.worker_id
        if worker_id is not None and peer.path_id is not None and worker_id != peer.path_id:
            raise ProtocolError(e.BAD_MESSAGE, f"field 'worker_id' ({worker_id!r}) differs from the id "
                                f"in the path ({peer.path_id!r}): give one or make them equal",
                                field="worker_id")
        current = peer.worker.worker_id if peer.worker is not None else None
        worker_id = worker_id or peer.path_id or current or f"w-{uuid.uuid4().hex}"
        if not p.WORKER_ID_RE.match(worker_id):
            raise ProtocolError(e.BAD_MESSAGE, f"a worker id is {p.WORKER_ID_RULE}", field="worker_id")
        if not peer.identity.may_register(worker_id):
            # before the replacement below: a token bound to other ids can never take over a worker
            raise ProtocolError(e.FORBIDDEN, f"this connection's token may not register worker id "
                                f"{worker_id!r} (it is bound to {peer.identity.worker_ids})",
                                field="worker_id")
        if current is not None and worker_id != current:
            raise ProtocolError(e.BAD_MESSAGE, f"this connection is worker {current!r}; open "
                                "another connection for another worker id", field="worker_id")
        job_types, concurrency = message.job_types, message.concurrency
        previous = peer.room.workers.get(worker_id)
        if previous is not None and previous is not peer:
            previous.close(e.REPLACED, f"worker id {worker_id!r} registered on another connection; "
                                       "this one is replaced (two processes share one id?)", CLOSE_REPLACED)
        held = await peer.room.store.register_worker(worker_id, job_types, concurrency, hub_id=hub.hub_id)
        known = peer.worker.jobs if peer.worker is not None else {}
        reassigned = [job_id for job_id in held if job_id not in known]
        peer.worker = WorkerSlots(worker_id, frozenset(job_types), concurrency, jobs=held,
                                  heard_at=asyncio.get_running_loop().time(), batch=message.batch)
        peer.room.workers[worker_id] = peer
        log.info("worker %s registered: types %s, concurrency %d%s", worker_id, ",".join(job_types),
                 concurrency, f", holding {len(held)} jobs from before" if held else "")
        settings = peer.room.store.settings
        peer.reply(message.req, frames.worker_registered(
            worker_id, self.heartbeat_interval_s(), settings.lease_ms / 1000, settings.liveness_ms / 1000,
            list(held), message.batch))
        await self._resend_held(peer, reassigned)
        await self.fill(peer)

    async def _resend_held(self, peer: Peer, job_ids: list[str]) -> None:
        """Jobs a worker still holds from an earlier connection go to it again, marked reassigned:
        a worker still running one ignores it, a restarted worker runs it (docs/protocol.md 5)."""
        slots = registered(peer)
        jobs: list[ClaimedJob] = []
        for job_id in job_ids:
            job = await peer.room.store.get_job(job_id)
            if job is None or job.get("status") != "active" or job.get("worker") != slots.worker_id:
                slots.jobs.pop(job_id, None)
                continue
            jobs.append(ClaimedJob(job_id, job["type"], job.get("priority", 0), job.get("payload") or b"{}",
                                   slots.jobs[job_id]))
        self.assign(peer, jobs, reassigned=True)

    async def on_unregister_worker(self, peer: Peer, message: m.UnregisterWorker) -> None:
        slots = registered(peer)
        try:
            released = await peer.room.store.deregister_worker(slots.worker_id)
        except WorkerNotFound:
            released = 0
        peer.reply(message.req, frames.worker_unregistered(slots.worker_id, released))
        if peer.room.workers.get(slots.worker_id) is peer:
            del peer.room.workers[slots.worker_id]
        slots.jobs.clear()
        peer.close_quietly()

    async def on_worker_status(self, peer: Peer, message: m.WorkerStatus) -> None:
        slots = registered(peer)
        status = await peer.room.store.set_worker_status(slots.worker_id, message.status)
        slots.draining = status == "draining"
        peer.reply(message.req, frames.worker_status_ack(slots.worker_id, status))
        await self.fill(peer)

    # ---- running jobs ------------------------------------------------------------------------

    async def on_claim_job(self, peer: Peer, message: m.ClaimJob) -> None:
        slots = registered(peer)
        self.assign(peer, [await peer.room.store.claim_by_id(slots.worker_id, message.job_id)], message.req)

    @staticmethod
    def _attempt(slots: WorkerSlots,
                 message: m.UpdateJobProgress | m.AppendJobLog | m.Completion | m.FailJob) -> int:
        # the attempt a worker names is the fencing token: the store refuses a stale one lease_lost
        # and answers a re-sent one as a repeat; only a frame without it (0) takes the attempt this
        # connection was assigned (0 again when there is none, which the store refuses)
        return message.attempt or slots.jobs.get(message.job_id, 0)

    async def on_update_job_progress(self, peer: Peer, message: m.UpdateJobProgress) -> None:
        slots, job_id = registered(peer), message.job_id
        attempt = self._attempt(slots, message)
        try:
            cancel = await peer.room.store.progress(job_id, slots.worker_id, attempt, message.progress,
                                               message.message[:MAX_PROGRESS_MESSAGE_CHARS])
        except LeaseLost:
            slots.forget(job_id, attempt)
            raise
        if cancel:
            peer.send(frames.cancel_job(job_id, "cancelled"))
        if message.req is not None:
            peer.reply(message.req, frames.job_progress_ack(job_id, cancel))

    async def on_append_job_log(self, peer: Peer, message: m.AppendJobLog) -> None:
        """Log lines of a job the worker holds, fenced by attempt as progress is; they extend no
        lease. An ack only when the frame has a `req` (the SDK sends none: errors come anyway)."""
        slots, job_id = registered(peer), message.job_id
        attempt = self._attempt(slots, message)
        try:
            await peer.room.store.append_log(job_id, slots.worker_id, attempt, message.lines)
        except LeaseLost:
            slots.forget(job_id, attempt)
            raise
        if message.req is not None:
            peer.reply(message.req, frames.job_log_ack(job_id))

    async def on_complete_job(self, peer: Peer, message: m.CompleteJob) -> None:
        await self.complete_batch(peer, [message])

    async def on_complete_jobs(self, peer: Peer, message: m.CompleteJobs) -> None:
        await self.complete_batch(peer, [message])

    async def complete_batch(self, peer: Peer, requests: list[m.CompleteJob | m.CompleteJobs],
                             after: asyncio.Future[None] | None = None) -> None:
        """The completions of consecutive `complete_job` frames, or of `complete_jobs` frames, of
        one worker: COMPLETIONS_PER_CALL to a store call (completeJobs), which also claims the
        worker's next jobs. Replies go out in request order, each with its own outcomes, and only
        once `after` (the connection's batch before this one, when pipelined) has answered. A
        worker that finished its whole window at once gets the first part's next jobs while Redis
        runs the next part, instead of the window going round in one piece."""
        items = [(request, item) for request in requests
                 for item in (request.jobs if type(request) is m.CompleteJobs else (request,))]
        replies = CompletionReplies(peer)
        for start in range(0, len(items), COMPLETIONS_PER_CALL):
            await self._complete_part(peer, items[start:start + COMPLETIONS_PER_CALL], after, replies)
            after = None

    async def _complete_part(self, peer: Peer, items: list[tuple[m.AnyMessage, m.Completion]],
                             after: asyncio.Future[None] | None, replies: CompletionReplies) -> None:
        slots = registered(peer)
        refused_early: list[Exception | None] = []  # None: the item goes to the store
        completions: list[Completion] = []
        for _, item in items:
            attempt = self._attempt(slots, item)
            result = bytes(item.result)
            try:
                check_value(result, "result", self.hub.config.max_frame_bytes)
            except ProtocolError as exc:
                refused_early.append(exc)
                continue
            slots.forget(item.job_id, attempt)
            completions.append(Completion(item.job_id, attempt, result))
            refused_early.append(None)
        next_jobs: list[ClaimedJob] = []
        stored: list[Exception | None] = []
        if completions:
            try:
                refused, next_jobs = await peer.room.store.complete_many(slots.worker_id, completions,
                                                                    claim_next=slots.free())
                stored = list(refused)
            except Exception as exc:
                stored = [exc] * len(completions)
        if after is not None and not after.done():
            await asyncio.wait([after])  # its answers first, whatever it raised
        outcomes = iter(stored)
        for (request, item), early in zip(items, refused_early, strict=True):
            replies.add(request, item, early if early is not None else next(outcomes))
        self.assign(peer, next_jobs)

    async def on_fail_job(self, peer: Peer, message: m.FailJob) -> None:
        slots, job_id = registered(peer), message.job_id
        attempt = self._attempt(slots, message)
        slots.forget(job_id, attempt)
        outcome = await peer.room.store.fail(job_id, slots.worker_id, attempt,
                                             message.error[:MAX_ERROR_CHARS], retry=message.retry,
                                             claim_next=slots.free())
        peer.reply(message.req, frames.job_failed_ack(job_id, outcome.status, outcome.final, outcome.run_at))
        self.assign(peer, outcome.next_jobs)

    # ---- liveness ----------------------------------------------------------------------------

    def _drop_lost(self, peer: Peer, lost: list[str]) -> None:
        slots = registered(peer)
        for job_id in lost:
            slots.jobs.pop(job_id, None)
            peer.send(frames.cancel_job(job_id, "lease_lost"))

    async def on_worker_heartbeat(self, peer: Peer, message: m.WorkerHeartbeat) -> None:
        slots = registered(peer)
        missed_dispatch = not self._awake(slots)
        try:
            beat = await peer.room.store.heartbeat(slots.worker_id, slots.jobs)
        except WorkerNotFound:
            # its record expired after missed heartbeats: register it again with its last values;
            # the jobs it held were taken back
            held = await peer.room.store.register_worker(slots.worker_id, sorted(slots.job_types),
                                                         slots.concurrency, hub_id=self.hub.hub_id)
            self._drop_lost(peer, [job_id for job_id in slots.jobs if job_id not in held])
            beat = await peer.room.store.heartbeat(slots.worker_id, slots.jobs)
        slots.heard(asyncio.get_running_loop().time())
        self._drop_lost(peer, beat.lost)
        for job_id in beat.cancel:
            peer.send(frames.cancel_job(job_id, "cancelled"))
        peer.reply(message.req, frames.worker_heartbeat_ack(slots.worker_id, beat.extended, beat.lost))
        if beat.lost or missed_dispatch:  # slots freed, or new jobs went by while it was quiet
            await self.fill(peer)


class CompletionReplies:
    """The answers to a batch of completion frames, in request order: a complete_job's as soon as
    its outcome is known, a complete_jobs' (jobs_completed_ack) once its last item's is."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.job_ids: list[str] = []  # of the complete_jobs being answered: its items stored
        self.refused: list[dict[str, Any]] = []
        self.failed: Exception | None = None  # a store call of its items failed as a whole
        self.seen = 0

    def add(self, request: m.AnyMessage, item: m.Completion, outcome: Exception | None) -> None:
        peer = self.peer
        if type(request) is not m.CompleteJobs:
            if outcome is None:
                peer.reply(request.req, frames.job_completed_ack(item.job_id))
            else:
                peer.send(error_for(outcome, request.req, peer.role))
            return
        if outcome is None:
            self.job_ids.append(item.job_id)
        elif isinstance(outcome, EmpfastError):
            self.refused.append({**outcome.wire_extra(), "job_id": item.job_id, "code": outcome.code,
                                 "error": str(outcome)})
        else:
            self.failed = self.failed or outcome
        self.seen += 1
        if self.seen < len(request.jobs):
            return
        if self.failed is not None:  # the outcome of every item is unknown: the worker sends them again
            peer.send(error_for(self.failed, request.req, peer.role))
        else:
            peer.reply(request.req, frames.jobs_completed_ack(self.job_ids, self.refused))
        self.job_ids, self.refused, self.failed, self.seen = [], [], None, 0
