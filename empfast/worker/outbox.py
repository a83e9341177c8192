"""Outcomes kept until acknowledged: each complete_job / fail_job is sent with its attempt and
re-sent (after a timeout, a transient refusal or a reconnect) until the hub answers it, so no result
is lost; the hub judges a repeat by job and attempt, so none is applied twice. An outcome is sent
without a task of its own (a callback takes the reply, one timer watches for the ack); only one the
hub refuses gets a task, which waits and sends it again (the same way) or drops it. To a hub that
takes batch frames (docs/protocol.md 4.2), the completions of one event-loop turn go as one
complete_jobs frame, whose ack answers each of them."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from empfast.connection import (
    Connection,
    FrameTooLarge,
    HubError,
    backoff_delays,
)
from empfast.errors import LIMIT_EXCEEDED, TRANSIENT_CODES
from empfast.limits import DEFAULT_MAX_FRAME_BYTES, MAX_BATCH
from empfast.worker.job import Outcome

log = logging.getLogger("empfast.worker")


@dataclass
class WorkerStats:
    """Counters of one Worker object; outcomes are counted when the hub acknowledges them."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    lease_lost: int = 0
    timed_out: int = 0  # attempts the hub failed `timeout` while they ran
    dropped: int = 0  # outcomes the hub refused for good (lease lost meanwhile)
    in_flight: int = 0


class Outbox:
    def __init__(self, connection: Connection, stats: WorkerStats, *, ack_timeout_s: float,
                 registered: Callable[[], bool],
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
                 on_change: Callable[[], None]) -> None:
        self.connection, self.stats, self.ack_timeout_s = connection, stats, ack_timeout_s
        self._registered, self._spawn, self._on_change = registered, spawn, on_change
        self.pending: dict[str, Outcome] = {}  # job id -> its outcome, until acknowledged
        self._sending: set[str] = set()  # job ids whose outcome is in flight or waiting out a refusal
        self._pauses: dict[str, Iterator[float]] = {}  # job id -> its pauses after refusals
        # job id -> (loop time sent, req) of each outcome awaiting its ack, oldest first: one timer
        # for them all (_check_acks) instead of a timer per outcome
        self._awaiting: dict[str, tuple[float, int]] = {}
        self._ack_timer: asyncio.TimerHandle | None = None
        self.batch = False  # the hub takes complete_jobs (its worker_registered said batch)
        self._batch: list[Outcome] = []  # completions of this loop turn, for one complete_jobs
        self.all_acked = asyncio.Event()
        self.all_acked.set()

    def submit(self, outcome: Outcome) -> None:
        self.pending[outcome.job_id] = outcome
        self.all_acked.clear()
        self._on_change()
        self.deliver_soon(outcome.job_id)

    def forget(self, outcome: Outcome) -> None:
        if self.pending.get(outcome.job_id) is outcome:
            del self.pending[outcome.job_id]
            self._pauses.pop(outcome.job_id, None)
        if not self.pending:
            self.all_acked.set()
        self._on_change()

    def deliver_all(self) -> None:
        """After a (re)registration: send every outcome still unacknowledged."""
        for job_id in list(self.pending):
            self.deliver_soon(job_id)

    def deliver_soon(self, job_id: str) -> None:
        """Send a job's outcome now, without a task: the reply's callback settles it (_on_reply).
        While disconnected nothing is sent, and deliver_all sends it after the reconnect."""
        outcome = self.pending.get(job_id)
        if outcome is None or job_id in self._sending or not self._registered():
            return
        self._sending.add(job_id)
        if self.batch and outcome.batchable:
            if not self._batch:
                self.connection.loop.call_soon(self._send_batch)
            self._batch.append(outcome)
            return
        self._send([outcome], outcome.message, functools.partial(self._on_reply, outcome))

    def _send(self, outcomes: list[Outcome], message: dict[str, Any],
              on_reply: Callable[[asyncio.Future[dict[str, Any]]], None]) -> None:
        try:
            sent = self.connection.send_request(message)
        except FrameTooLarge as exc:  # completion() keeps results under the limit: a bug if it comes
            log.error("the outcome of jobs %s cannot be sent, dropped: %s", [o.job_id for o in outcomes], exc)
            for outcome in outcomes:
                self.stats.dropped += 1
                self._sending.discard(outcome.job_id)
                self.forget(outcome)
            return
        if sent is None:  # disconnected: deliver_all sends them after the reconnect
            for outcome in outcomes:
                self._sending.discard(outcome.job_id)
            return
        req, future = sent
        loop = self.connection.loop
        now = loop.time()
        for outcome in outcomes:
            self._awaiting[outcome.job_id] = (now, req)
        if self._ack_timer is None:
            self._ack_timer = loop.call_later(self.ack_timeout_s, self._check_acks)
        future.add_done_callback(on_reply)

    def _send_batch(self) -> None:
        """The completions of this loop turn, in complete_jobs frames of at most MAX_BATCH items
        whose results fit the hub's frame limit together."""
        batch, self._batch = self._batch, []
        if not self._registered():
            for outcome in batch:
                self._sending.discard(outcome.job_id)
            return
        budget = int(self.connection.welcome.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES)) // 2
        start = size = 0
        for end, outcome in enumerate(batch):
            if end > start and (end - start >= MAX_BATCH or size + outcome.result_bytes > budget):
                self._send_completions(batch[start:end])
                start, size = end, 0
            size += outcome.result_bytes + 300  # an item's members besides its result, at most
        if start < len(batch):
            self._send_completions(batch[start:])

    def _send_completions(self, outcomes: list[Outcome]) -> None:
        items = [{"job_id": o.job_id, "attempt": o.attempt, "result": o.message["result"]} for o in outcomes]
        self._send(outcomes, {"type": "complete_jobs", "jobs": items},
                   functools.partial(self._on_batch_reply, outcomes))

    def _on_batch_reply(self, outcomes: list[Outcome], future: asyncio.Future[dict[str, Any]]) -> None:
        """A complete_jobs answered: each item acknowledged or refused on its own (a refused one
        is waited out or dropped as a complete_job's refusal would be); the whole frame refused,
        lost or overdue: each outcome as if its own frame had been."""
        if future.cancelled() or future.exception() is not None or future.result().get("type") == "error":
            for outcome in outcomes:
                self._on_reply(outcome, future)
            return
        reply = future.result()
        refused = {item.get("job_id"): item for item in reply.get("refused") or ()}
        for outcome in outcomes:
            refusal = refused.get(outcome.job_id)
            self._on_reply(outcome, future, {"type": "error", **refusal} if refusal is not None
                           else {"type": "job_completed_ack"})

    def _check_acks(self) -> None:
        """Abandon the requests whose ack is overdue (their callbacks send them again), then wait
        for the oldest one left."""
        self._ack_timer = None
        loop = self.connection.loop
        now = loop.time()
        for job_id, (sent_at, req) in list(self._awaiting.items()):
            if now - sent_at < self.ack_timeout_s:
                self._ack_timer = loop.call_at(sent_at + self.ack_timeout_s, self._check_acks)
                return
            del self._awaiting[job_id]
            if self.connection.abandon_request(req):
                log.warning("no ack for the outcome of job %s in %.0f s; sending it again (a repeat "
                            "is safe)", job_id, self.ack_timeout_s)

    def _on_reply(self, outcome: Outcome, future: asyncio.Future[dict[str, Any]],
                  reply: dict[str, Any] | None = None) -> None:
        """`reply`: this outcome's part of a complete_jobs answer, else the future's result."""
        job_id = outcome.job_id
        self._awaiting.pop(job_id, None)
        self._sending.discard(job_id)
        if future.cancelled():  # no ack in time
            self.deliver_soon(job_id)
            return
        if future.exception() is not None:
            return  # the connection dropped or ended: deliver_all sends it after the reconnect
        if reply is None:
            reply = future.result()
        if reply.get("type") == "error":
            # a refusal to wait out (transient, over the frame rate) or to drop
            self._sending.add(job_id)
            self._spawn(self._wait_out(outcome, HubError(reply)))
            return
        self._count_ack(reply)
        self.forget(outcome)
        if job_id in self.pending:  # a newer attempt's outcome came meanwhile
            self.deliver_soon(job_id)

    async def _wait_out(self, outcome: Outcome, refused: HubError) -> None:
        """An outcome the hub refused: sent again (deliver_soon) after a pause while the refusal is
        transient or over the frame rate, the pauses growing over a job's consecutive refusals;
        dropped otherwise."""
        job_id = outcome.job_id
        pauses = self._pauses.setdefault(job_id, backoff_delays(0.2, 5.0))
        retry_after_s = refused.frame.get("retry_after_s")
        try:
            if refused.code in TRANSIENT_CODES:
                await asyncio.sleep(next(pauses))
            elif refused.code == LIMIT_EXCEEDED and isinstance(retry_after_s, int | float):
                # over the connection's frame rate: not handled, so sent again when allowed
                await asyncio.sleep(max(float(retry_after_s), next(pauses)))
            else:
                log.warning("the hub refused the outcome of job %s (attempt %d), dropped: %s",
                            job_id, outcome.attempt, refused)
                self.stats.dropped += 1
                self.forget(outcome)
                return
        finally:
            self._sending.discard(job_id)
        self.deliver_soon(job_id)

    def _count_ack(self, reply: dict[str, Any]) -> None:
        if reply.get("type") == "job_completed_ack":
            self.stats.completed += 1
        elif reply.get("status") == "cancelled":
            self.stats.cancelled += 1
        else:
            self.stats.failed += 1
