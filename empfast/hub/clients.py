"""What the hub does for clients (and, for following jobs, monitors): submit one job or a batch,
subscribe with replay, unsubscribe, cancel, retry, job status, stats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from empfast import errors as e
from empfast import protocol as p
from empfast.errors import BadArgument, JobNotFound, ProtocolError
from empfast.hub import frames
from empfast.hub.conn import Peer, Request, error_for
from empfast.ids import event_key, new_job_id
from empfast.limits import (
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_JOB_ID_BYTES,
    MAX_PRIORITY,
    MAX_SUBSCRIPTIONS,
    payload_limit,
)
from empfast.store import Added, NewJob

if TYPE_CHECKING:
    from empfast.hub.server import FrameHandler, Hub


class ClientHandlers:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.store = hub.store

    def handlers(self) -> dict[str, FrameHandler]:
        return {
            "submit_job": self.on_submit_job, "submit_jobs": self.on_submit_jobs,
            "get_job_status": self.on_get_job_status, "request_job_status": self.on_get_job_status,
            "subscribe_job": self.on_subscribe_job, "unsubscribe_job": self.on_unsubscribe_job,
            "cancel_job": self.on_cancel_job, "retry_job": self.on_retry_job,
            "get_stats": self.on_get_stats,
        }

    # ---- submit --------------------------------------------------------------------------------

    def new_job(self, body: dict[str, Any], payload: bytes, where: str = "") -> NewJob:
        """A validated job; `where` prefixes field names inside a batch (e.g. "jobs[2].")."""
        try:
            check_size(payload, "payload", self.hub.config.max_frame_bytes)
            return NewJob(
                job_type=p.get_str(body, "job_type"),
                payload=payload,
                priority=p.get_int(body, "priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
                job_id=p.get_opt_str(body, "job_id", max_bytes=MAX_JOB_ID_BYTES) or new_job_id(),
                max_attempts=p.get_int(body, "max_attempts", 3, 1, MAX_ATTEMPTS),
                delay_ms=p.get_number(body, "delay_s", 0, 0, MAX_DELAY_S) * 1000,
            )
        except ProtocolError as exc:
            if not where:
                raise
            field = where + exc.extra.get("field", "")
            raise ProtocolError(exc.code, f"{where.rstrip('.')}: {exc.message}",
                                **{**exc.extra, "field": field}) from None

    async def _add(self, peer: Peer, jobs: list[NewJob],
                   subscribe: list[bool]) -> tuple[list[Added], list[bool]]:
        """Add jobs, with the submitter subscribed before the store call so it misses no event."""
        subscribed = [wanted and self.hub.subscribe(peer, job.job_id or "")
                      for job, wanted in zip(jobs, subscribe, strict=True)]
        try:
            added = await self.store.add_jobs(jobs)
        except BaseException:
            for job, sub in zip(jobs, subscribed, strict=True):
                if sub:
                    self.hub.unsubscribe(peer, job.job_id or "")
            raise
        return added, subscribed

    async def on_submit_job(self, peer: Peer, request: Request) -> None:
        await self.submit_batch(peer, [request])

    async def submit_batch(self, peer: Peer, requests: list[Request]) -> None:
        """`submit_job` frames of one client in one store call (addJobs). The script refuses a batch
        as a whole, so if it refuses one, each job is added on its own to answer each frame."""
        refused_early: list[bytes | None] = []
        jobs: list[NewJob] = []
        wanted: list[bool] = []
        for message, data, req in requests:
            try:
                jobs.append(self.new_job(message, p.raw_or_dumped(data, message, "payload", b"{}")))
                wanted.append(p.get_bool(message, "subscribe", True))
            except ProtocolError as exc:
                refused_early.append(error_for(exc, req, peer.role))
                continue
            refused_early.append(None)
        outcomes: list[tuple[Added, bool] | Exception] = []
        if jobs:
            try:
                outcomes = list(zip(*await self._add(peer, jobs, wanted), strict=True))
            except BadArgument:
                outcomes = [await self._add_one(peer, job, sub)
                            for job, sub in zip(jobs, wanted, strict=True)]
            except Exception as exc:
                outcomes = [exc] * len(jobs)
        answers: list[dict[str, Any] | Exception] = []
        finished: list[str] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                answers.append(outcome)
                continue
            added, subscribed = outcome
            answers.append(frames.job_accepted(added, subscribed))
            if subscribed and added.status in p.FINAL_STATUSES:
                finished.append(added.job_id)
        peer.answer_in_order(requests, refused_early, answers)
        for job_id in finished:
            await self.send_final(peer, job_id)

    async def _add_one(self, peer: Peer, job: NewJob, subscribe: bool) -> tuple[Added, bool] | Exception:
        try:
            (added,), (subscribed,) = await self._add(peer, [job], [subscribe])
        except Exception as exc:
            return exc
        return added, subscribed

    async def on_submit_jobs(self, peer: Peer, request: Request) -> None:
        msg = request.message
        bodies = msg.get("jobs")
        if isinstance(bodies, list) and len(bodies) > MAX_BATCH:
            raise ProtocolError(e.LIMIT_EXCEEDED, f"{len(bodies)} jobs in one submit_jobs; send at most "
                                f"{MAX_BATCH} per frame", field="jobs", limit=MAX_BATCH)
        if not isinstance(bodies, list) or not bodies:
            raise ProtocolError(e.BAD_MESSAGE, f"field 'jobs' must be a list of 1 to {MAX_BATCH} jobs",
                                field="jobs")
        jobs = []
        for i, body in enumerate(bodies):
            if not isinstance(body, dict):
                raise ProtocolError(e.BAD_MESSAGE, f"jobs[{i}] must be an object", field=f"jobs[{i}]")
            # nested payloads are re-encoded: equal JSON, not the same bytes (docs/protocol.md)
            jobs.append(self.new_job(body, orjson.dumps(body.get("payload", {})), f"jobs[{i}]."))
        added, subscribed = await self._add(peer, jobs, [p.get_bool(msg, "subscribe", True)] * len(jobs))
        peer.reply(request.req, frames.jobs_accepted(added, all(subscribed)))
        for a, sub in zip(added, subscribed, strict=True):
            if sub and a.status in p.FINAL_STATUSES:
                await self.send_final(peer, a.job_id)

    # ---- following a job ---------------------------------------------------------------------

    async def on_subscribe_job(self, peer: Peer, request: Request) -> None:
        msg, hub = request.message, self.hub
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        since = p.get_opt_str(msg, "since", max_bytes=64)
        if since is not None and not p.EVENT_ID_RE.match(since):
            raise ProtocolError(e.BAD_MESSAGE, "field 'since' must be an event id like "
                                "\"1718000000100-0\", as sent in 'event_id'", field="since")
        if not hub.subscribe(peer, job_id):
            raise ProtocolError(e.LIMIT_EXCEEDED, f"this connection already has {MAX_SUBSCRIPTIONS} "
                                "subscriptions: unsubscribe some first", limit=MAX_SUBSCRIPTIONS)
        # live events are buffered until we know what the replay (or the job's state) covers
        buffered = peer.subs.buffered[job_id] = []
        try:
            job = await self.store.get_job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            replay, resumed = ([], True) if since is None else await self.store.job_events_since(job_id,
                                                                                               since)
        except BaseException:
            hub.unsubscribe(peer, job_id)
            raise
        peer.subs.buffered.pop(job_id, None)
        peer.reply(request.req, frames.subscribed(job_id, resumed if since is not None else None))
        if since is not None and resumed:
            self._send_replay(peer, since, replay, buffered)
            self.end_if_final(peer, job_id, job)
            return
        if job["status"] in p.FINAL_STATUSES or since is not None:
            # the job's state stands for every event before it (final, or trimmed from the stream)
            flag = {"synthetic": True} if since is None else {"resumed": False}
            peer.send(frames.job_state(job_id, job, hub.dispatch.last_event_id, flag))
            if self.end_if_final(peer, job_id, job):
                return
        for _, frame in buffered:
            peer.send(frame)

    @staticmethod
    def _send_replay(peer: Peer, since: str, replay: list[tuple[str, dict[str, bytes]]],
                     buffered: list[tuple[str, bytes]]) -> None:
        """The replayed events, then the buffered live ones the replay did not reach."""
        last = since
        for event_id, fields in replay:
            peer.send(frames.job_event(event_id, fields))
            last = event_id
        last_key = event_key(last) or (0, 0)
        for event_id, frame in buffered:
            if (event_key(event_id) or (0, 0)) > last_key:
                peer.send(frame)

    def end_if_final(self, peer: Peer, job_id: str, job: dict[str, Any]) -> bool:
        if job["status"] in p.FINAL_STATUSES:
            self.hub.unsubscribe(peer, job_id)
            return True
        return False

    async def send_final(self, peer: Peer, job_id: str) -> None:
        """A subscriber of a job that had already finished gets its final state as an event."""
        job = await self.store.get_job(job_id)
        if job is not None:
            peer.send(frames.job_state(job_id, job, self.hub.dispatch.last_event_id, {"synthetic": True}))
        self.hub.unsubscribe(peer, job_id)

    async def on_unsubscribe_job(self, peer: Peer, request: Request) -> None:
        job_id = p.get_str(request.message, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        self.hub.unsubscribe(peer, job_id)
        peer.reply(request.req, frames.unsubscribed(job_id))

    # ---- acting on a job -------------------------------------------------------------------------

    async def job_status(self, job_id: str, req: Any, **extra: Any) -> bytes:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return frames.job_status(job_id, job, req, **extra)

    async def on_get_job_status(self, peer: Peer, request: Request) -> None:
        job_id = p.get_str(request.message, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        peer.send(await self.job_status(job_id, request.req))

    async def on_cancel_job(self, peer: Peer, request: Request) -> None:
        job_id = p.get_str(request.message, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        await self.store.cancel(job_id)
        peer.send(await self.job_status(job_id, request.req))

    async def on_retry_job(self, peer: Peer, request: Request) -> None:
        msg = request.message
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        attempts = p.get_int(msg, "attempts", 1, 1, MAX_ATTEMPTS)
        retry_id = p.get_opt_str(msg, "retry_id", max_bytes=MAX_JOB_ID_BYTES) or ""
        # subscribed first, as for a submit, so the retrier misses none of the new run's events
        fresh = job_id not in peer.subs.jobs and self.hub.subscribe(peer, job_id)
        retried = False
        try:
            retried = await self.store.retry(job_id, attempts, retry_id=retry_id)
        finally:
            if fresh and not retried:
                self.hub.unsubscribe(peer, job_id)
        peer.send(await self.job_status(job_id, request.req, retried=retried))

    async def on_get_stats(self, peer: Peer, request: Request) -> None:
        peer.send(frames.stats((await self.store.stats()).as_dict(), request.req))


def check_size(value: bytes, field: str, max_frame_bytes: int) -> None:
    """Payloads and results leave room for the frame built around them (docs/protocol.md 8)."""
    cap = payload_limit(max_frame_bytes)
    if len(value) > cap:
        raise ProtocolError(e.LIMIT_EXCEEDED, f"the {field} is {len(value)} bytes, over the limit "
                            f"of {cap}: keep big data elsewhere and send its URL", field=field, limit=cap)
