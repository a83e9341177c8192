"""What the hub does for clients (and, for following jobs, monitors): submit one job or a batch,
subscribe with replay, unsubscribe, cancel, retry, job status, stats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from msgspec import UNSET, UnsetType

from empfast import errors as e
from empfast import messages as m
from empfast import protocol as p
from empfast.errors import BadArgument, JobNotFound, ProtocolError
from empfast.hub import frames
from empfast.hub.conn import Peer, error_for
from empfast.ids import event_key, new_job_id
from empfast.limits import MAX_LOG_LINES, payload_limit
from empfast.store import Added, Cursor, NewJob

if TYPE_CHECKING:
    from empfast.hub.server import Hub


class ClientHandlers:
    """Handlers are named `on_<message type>` (server.handler_table finds them)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # ---- submit --------------------------------------------------------------------------------

    def new_job(self, body: m.JobBody, where: str = "") -> NewJob:
        """A job to add; `where` prefixes the field name of an error inside a batch ("jobs[2].")."""
        payload = bytes(body.payload)
        check_value(payload, where + "payload", self.hub.config.max_frame_bytes)
        # one start and one expiry: the store judges their times on Redis's clock (addJobs)
        for one, other in (("delay_s", "run_at"), ("ttl_s", "expires_at")):
            if getattr(body, one) is not UNSET and getattr(body, other) is not UNSET:
                raise ProtocolError(e.BAD_MESSAGE, f"give {one} or {other}, not both", field=where + other)
        return NewJob(job_type=body.job_type, payload=payload, priority=body.priority,
                      job_id=body.job_id or new_job_id(), max_attempts=body.max_attempts,
                      delay_ms=(body.delay_s or 0) * 1000, timeout_ms=ms(body.timeout_s),
                      run_at_ms=ms(body.run_at), ttl_ms=ms(body.ttl_s), expires_at_ms=ms(body.expires_at),
                      group=body.group or "", depends_on=body.depends_on or None)

    async def _add(self, peer: Peer, jobs: list[NewJob], subscribe: list[bool],
                   positions: bool = False) -> tuple[list[Added], list[bool]]:
        """Add jobs, with the submitter subscribed before the store call so it misses no event.
        Under client scope `own`, those events wait until the job is known to be the submitter's:
        an id that exists already may be another owner's job. `positions`: each pending job's rank
        too (submit_job's job_accepted; a submit_jobs batch does not pay for it)."""
        scoped = self.scoped(peer)
        if scoped:
            await self._check_parents(peer, jobs)
        subscribed = [wanted and peer.room.subscribe(peer, job.job_id or "")
                      for job, wanted in zip(jobs, subscribe, strict=True)]
        if scoped:
            for job, sub in zip(jobs, subscribed, strict=True):
                if sub:
                    peer.subs.buffered[job.job_id or ""] = []
        # a local worker that can start one of these now gets its jobs from the same store call
        handlers = self.hub.worker_handlers
        worker = handlers.ready_for(peer.room, jobs)
        try:
            if worker is None or worker.worker is None:
                added, claimed = await peer.room.store.add_jobs(jobs, owner=peer.identity.owner,
                                                                positions=positions), []
            else:
                added, claimed = await peer.room.store.add_and_claim(
                    jobs, owner=peer.identity.owner, worker_id=worker.worker.worker_id,
                    max_claim=min(len(jobs), handlers.dispatchable(worker)), positions=positions)
        except BaseException:
            for job, sub in zip(jobs, subscribed, strict=True):
                if sub:
                    peer.room.unsubscribe(peer, job.job_id or "")
            raise
        if claimed and worker is not None and worker.worker is not None:
            handlers.assign(worker, claimed)
        if scoped:
            subscribed = [sub and self._release(peer, one)
                          for one, sub in zip(added, subscribed, strict=True)]
        return added, subscribed

    async def _check_parents(self, peer: Peer, jobs: list[NewJob]) -> None:
        """Under client scope own, a job may depend only on the submitter's own jobs: another
        owner's is refused as one that does not exist (addJobs' words), so nothing tells that it
        does. Parents earlier in the batch are the submitter's; one round trip, only for parents."""
        earlier: set[str] = set()
        named: list[tuple[int, str]] = []
        for i, job in enumerate(jobs, start=1):
            named += [(i, parent) for parent in job.depends_on or () if parent not in earlier]
            earlier.add(job.job_id or "")
        if not named:
            return
        owners = await peer.room.store.owners_of([parent for _, parent in named])
        for i, parent in named:
            if owners[parent] != peer.identity.owner:
                raise BadArgument(f"job {i}: depends_on names {parent}, which is no job of this queue")

    def _release(self, peer: Peer, added: Added) -> bool:
        """The events held back during a scoped submit: sent if the job is the submitter's (True),
        dropped with the subscription if it is another owner's."""
        held = peer.subs.buffered.pop(added.job_id, [])
        if added.foreign:
            peer.room.unsubscribe(peer, added.job_id)
            return False
        for _, frame in held:
            peer.send(frame)
        if any(p.is_final_event(orjson.loads(frame)) for _, frame in held):
            peer.room.unsubscribe(peer, added.job_id)
        return True

    def scoped(self, peer: Peer) -> bool:
        """Whether this connection sees only its own jobs (client scope own; monitors and admin
        tokens see every job)."""
        return self.hub.config.client_scope == "own" and peer.role == "client" and not peer.identity.admin

    def check_visible(self, peer: Peer, job_id: str, job: dict[str, Any] | None) -> dict[str, Any]:
        """The job, if this connection may see it; another owner's job is `not_found`, as a job
        that does not exist, so its existence is not revealed."""
        if job is None or (self.scoped(peer) and job.get("owner") != peer.identity.owner):
            raise JobNotFound(job_id)
        return job

    async def on_submit_job(self, peer: Peer, message: m.SubmitJob) -> None:
        await self.submit_batch(peer, [message])

    async def submit_batch(self, peer: Peer, requests: list[m.SubmitJob]) -> None:
        """`submit_job` frames of one client in one store call (addJobs). The script refuses a batch
        as a whole, so if it refuses one, each job is added on its own to answer each frame."""
        refused_early: list[bytes | None] = []
        jobs: list[NewJob] = []
        wanted: list[bool] = []
        for message in requests:
            try:
                jobs.append(self.new_job(message))
            except ProtocolError as exc:
                refused_early.append(error_for(exc, message.req, peer.role))
                continue
            wanted.append(message.subscribe)
            refused_early.append(None)
        outcomes: list[tuple[Added, bool] | Exception] = []
        if jobs:
            try:
                outcomes = list(zip(*await self._add(peer, jobs, wanted, positions=True), strict=True))
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
            if added.foreign and self.scoped(peer):
                answers.append(taken(added.job_id))
                continue
            answers.append(frames.job_accepted(added, subscribed))
            if subscribed and added.status in p.FINAL_STATUSES:
                finished.append(added.job_id)
        peer.answer_in_order(requests, refused_early, answers)
        for job_id in finished:
            await self.send_final(peer, job_id)

    async def _add_one(self, peer: Peer, job: NewJob, subscribe: bool) -> tuple[Added, bool] | Exception:
        try:
            (added,), (subscribed,) = await self._add(peer, [job], [subscribe], positions=True)
        except Exception as exc:
            return exc
        return added, subscribed

    async def on_submit_jobs(self, peer: Peer, message: m.SubmitJobs) -> None:
        jobs = [self.new_job(body, f"jobs[{i}].") for i, body in enumerate(message.jobs)]
        added, subscribed = await self._add(peer, jobs, [message.subscribe] * len(jobs))
        if self.scoped(peer):
            for i, one in enumerate(added):
                if one.foreign:
                    raise taken(one.job_id, f"jobs[{i}].job_id")
        peer.reply(message.req, frames.jobs_accepted(added, all(subscribed)))
        for a, sub in zip(added, subscribed, strict=True):
            if sub and a.status in p.FINAL_STATUSES:
                await self.send_final(peer, a.job_id)

    # ---- following a job ---------------------------------------------------------------------

    async def on_subscribe_job(self, peer: Peer, message: m.SubscribeJob) -> None:
        hub, room, job_id, since = self.hub, peer.room, message.job_id, message.since
        if not room.subscribe(peer, job_id):
            limit = hub.config.max_subscriptions
            raise ProtocolError(e.LIMIT_EXCEEDED, f"this connection already has {limit} subscriptions "
                                "(max_subscriptions): unsubscribe some first", limit=limit)
        # live events are buffered until we know what the replay (or the job's state) covers
        buffered = peer.subs.buffered[job_id] = []
        try:
            job = self.check_visible(peer, job_id, await peer.room.store.get_job(job_id))
            replay, resumed = ([], True) if since is None else await peer.room.store.job_events_since(job_id,
                                                                                               since)
        except BaseException:
            room.unsubscribe(peer, job_id)
            raise
        peer.subs.buffered.pop(job_id, None)
        peer.reply(message.req, frames.subscribed(job_id, resumed if since is not None else None))
        if since is not None and resumed:
            self._send_replay(peer, since, replay, buffered)
            self.end_if_final(peer, job_id, job)
            return
        if job["status"] in p.FINAL_STATUSES or since is not None:
            # the job's state stands for every event before it (final, or trimmed from the stream)
            flag = {"synthetic": True} if since is None else {"resumed": False}
            peer.send(frames.job_state(job_id, job, room.dispatch.last_event_id, flag))
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
            peer.room.unsubscribe(peer, job_id)
            return True
        return False

    async def send_final(self, peer: Peer, job_id: str) -> None:
        """A subscriber of a job that had already finished gets its final state as an event."""
        job = await peer.room.store.get_job(job_id)
        if job is not None:
            peer.send(frames.job_state(job_id, job, peer.room.dispatch.last_event_id, {"synthetic": True}))
        peer.room.unsubscribe(peer, job_id)

    async def on_unsubscribe_job(self, peer: Peer, message: m.UnsubscribeJob) -> None:
        peer.room.unsubscribe(peer, message.job_id)
        peer.reply(message.req, frames.unsubscribed(message.job_id))

    # ---- acting on a job -------------------------------------------------------------------------

    async def job_status(self, peer: Peer, job_id: str, req: Any, *, with_payload: bool = False,
                         logs: int = 0, **extra: Any) -> bytes:
        """A job_status frame: with a pending job's position, and its newest `logs` log lines
        that fit in the frame beside its result (and payload, when asked for)."""
        job = await self.visible_job(peer, job_id, logs)
        if logs:
            room = payload_limit(self.hub.config.max_frame_bytes) - len(job.get("result") or b"") - (
                len(job.get("payload") or b"") if with_payload else 0)
            job["logs"] = frames.newest_lines(job["logs"], room)
        return frames.job_status(job_id, job, req, with_payload=with_payload, **extra)

    async def visible_job(self, peer: Peer, job_id: str, logs: int = 0) -> dict[str, Any]:
        """The job as get_job reads it (with a pending job's position), if the peer may see it."""
        job = await peer.room.store.get_job(job_id, logs=logs, position=True)
        return self.check_visible(peer, job_id, job)

    async def on_get_job_status(self, peer: Peer, message: m.GetJobStatus) -> None:
        logs = message.logs
        lines = MAX_LOG_LINES if logs is True else int(logs)  # False: none
        peer.send(await self.job_status(peer, message.job_id, message.req, with_payload=message.payload,
                                        logs=lines))

    async def on_cancel_job(self, peer: Peer, message: m.CancelJob) -> bool:
        """Cancel a job; False for a finished one, which stays as it is (its status says so)."""
        if self.scoped(peer):  # checked before acting: the owner of a job never changes
            self.check_visible(peer, message.job_id, await peer.room.store.get_job(message.job_id))
        outcome = await peer.room.store.cancel(message.job_id)
        peer.send(await self.job_status(peer, message.job_id, message.req))
        return outcome.changed

    async def on_retry_job(self, peer: Peer, message: m.RetryJob) -> bool:
        """Run a failed or cancelled job again; False when it was in another state (`retried`)."""
        job_id = message.job_id
        if self.scoped(peer):
            self.check_visible(peer, job_id, await peer.room.store.get_job(job_id))
        # subscribed first, as for a submit, so the retrier misses none of the new run's events
        fresh = job_id not in peer.subs.jobs and peer.room.subscribe(peer, job_id)
        outcome = ""
        try:
            outcome = await peer.room.store.retry(job_id, message.attempts, retry_id=message.retry_id or "")
        finally:
            if fresh and not outcome:
                peer.room.unsubscribe(peer, job_id)
        job = await self.visible_job(peer, job_id)
        if fresh and outcome == "repeated" and job["status"] in p.FINAL_STATUSES:
            # a repeat after the run it started has ended: no event is left to end the watch
            peer.room.unsubscribe(peer, job_id)
        peer.send(frames.job_status(job_id, job, message.req, retried=bool(outcome)))
        return bool(outcome)

    async def on_get_stats(self, peer: Peer, message: m.GetStats) -> None:
        peer.send(frames.stats((await peer.room.store.stats()).as_dict(), message.req))

    async def on_list_jobs(self, peer: Peer, message: m.ListJobs) -> None:
        """A page of the jobs of a status, for monitors and clients that see every job (a client
        under client scope own would see other owners' jobs: refused)."""
        if self.scoped(peer):
            raise ProtocolError(e.FORBIDDEN, "under client scope own a client sees only its own jobs, "
                                "by id: list jobs from a monitor connection or with an admin token")
        try:
            cursor = Cursor.decode(message.cursor) if message.cursor is not None else None
        except ValueError as exc:
            raise ProtocolError(e.BAD_MESSAGE, f"field 'cursor' is {exc}", field="cursor") from None
        page = await peer.room.store.list_jobs(message.status, job_type=message.job_type,
                                          newest_first=message.order == "newest", limit=message.limit,
                                          cursor=cursor, payloads=message.payloads)
        peer.send(frames.jobs_listed(page, message.req, payload_limit(self.hub.config.max_frame_bytes)))


def ms(seconds: float | UnsetType) -> float | None:
    """Seconds of a message as the store's ms; None when not given."""
    return None if seconds is UNSET else seconds * 1000


def taken(job_id: str, field: str = "job_id") -> ProtocolError:
    """A submit whose job id is another owner's job (client scope own): nothing was changed."""
    return ProtocolError(e.FORBIDDEN, f"job id {job_id!r} cannot be used by this client: choose another "
                         "(or leave job_id out)", field=field, job_id=job_id)


def check_value(value: bytes, field: str, max_frame_bytes: int) -> None:
    """A payload or result fits the frames built around it (docs/protocol.md 8), and every SDK can
    read it (section 3): the size first, so an oversized value is refused without being parsed."""
    cap = payload_limit(max_frame_bytes)
    if len(value) > cap:
        raise ProtocolError(e.LIMIT_EXCEEDED, f"the {field} is {len(value)} bytes, over the limit "
                            f"of {cap}: keep big data elsewhere and send its URL", field=field, limit=cap)
    p.check_readable(value, field)
