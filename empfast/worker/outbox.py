"""Outcomes kept until acknowledged: each complete_job / fail_job is sent with its attempt and
re-sent (after a timeout, a transient refusal or a reconnect) until the hub answers it, so no result
is lost; the hub judges a repeat by job and attempt, so none is applied twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from empfast.connection import Connection, ConnectionClosed, Disconnected, HubError, backoff_delays
from empfast.errors import LIMIT_EXCEEDED, TRANSIENT_CODES
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
        self._sending: set[str] = set()  # job ids whose outcome a delivery task is sending
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
        if not self.pending:
            self.all_acked.set()
        self._on_change()

    def deliver_all(self) -> None:
        """After a (re)registration: send every outcome still unacknowledged."""
        for job_id in list(self.pending):
            self.deliver_soon(job_id)

    def deliver_soon(self, job_id: str) -> None:
        # one delivery task per outcome; while disconnected none runs, and deliver_all starts them
        if job_id in self._sending or not self._registered():
            return
        self._sending.add(job_id)
        self._spawn(self._deliver(job_id))

    async def _deliver(self, job_id: str) -> None:
        pauses = backoff_delays(0.2, 5.0)
        try:
            while (outcome := self.pending.get(job_id)) is not None and self._registered():
                try:
                    reply = await self.connection.request(outcome.message, timeout_s=self.ack_timeout_s,
                                                          wait_connected=False)
                except (Disconnected, ConnectionClosed):
                    return  # re-sent by deliver_all after the reconnect
                except TimeoutError:
                    log.warning("no ack for the outcome of job %s in %.0f s; sending it again (a repeat "
                                "is safe)", job_id, self.ack_timeout_s)
                    continue
                except HubError as exc:
                    if exc.code in TRANSIENT_CODES:
                        await asyncio.sleep(next(pauses))
                        continue
                    retry_after_s = exc.frame.get("retry_after_s")
                    if exc.code == LIMIT_EXCEEDED and isinstance(retry_after_s, int | float):
                        # over the connection's frame rate: not handled, so sent again when allowed
                        await asyncio.sleep(max(float(retry_after_s), next(pauses)))
                        continue
                    log.warning("the hub refused the outcome of job %s (attempt %d), dropped: %s",
                                job_id, outcome.attempt, exc)
                    self.stats.dropped += 1
                    self.forget(outcome)
                    return
                self._count_ack(reply)
                self.forget(outcome)
                return
        finally:
            self._sending.discard(job_id)

    def _count_ack(self, reply: dict[str, Any]) -> None:
        if reply.get("type") == "job_completed_ack":
            self.stats.completed += 1
        elif reply.get("status") == "cancelled":
            self.stats.cancelled += 1
        else:
            self.stats.failed += 1
