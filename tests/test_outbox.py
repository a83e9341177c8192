"""The worker's outbox on its own, against a scripted connection: an outcome is sent without a task,
sent again when its ack is overdue, waited out on a transient refusal, dropped on a final one, and
kept for the reconnect when the connection drops. No result is lost, none is counted twice."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from empfast.connection import Disconnected, HubError
from empfast.worker.job import Outcome
from empfast.worker.outbox import Outbox, WorkerStats


class ScriptedConnection:
    """The part of Connection the outbox uses: every request is recorded, and the test answers it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.connected = True
        self.sent: list[tuple[int, dict[str, Any]]] = []
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._req = 0

    def send_request(self, message: dict[str, Any]) -> tuple[int, asyncio.Future[dict[str, Any]]] | None:
        if not self.connected:
            return None
        self._req += 1
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.sent.append((self._req, message))
        self.waiting[self._req] = future
        return self._req, future

    def abandon_request(self, req: int) -> bool:
        future = self.waiting.pop(req, None)
        if future is None or future.done():
            return False
        future.cancel()
        return True

    async def request(self, message: dict[str, Any], **_: Any) -> dict[str, Any]:
        sent = self.send_request(message)
        if sent is None:
            raise Disconnected("not connected")
        reply = await sent[1]
        if reply.get("type") == "error":
            raise HubError(reply)
        return reply

    def answer(self, reply: dict[str, Any]) -> None:
        """Answer the oldest request still waiting."""
        req = min(self.waiting)
        self.waiting.pop(req).set_result({**reply, "req": req})

    def drop(self) -> None:
        self.connected = False
        for future in self.waiting.values():
            future.set_exception(Disconnected("the connection dropped"))
        self.waiting.clear()


def make_outbox(connection: ScriptedConnection, ack_timeout_s: float = 5.0) -> tuple[Outbox, WorkerStats]:
    stats = WorkerStats()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    outbox = Outbox(connection, stats, ack_timeout_s=ack_timeout_s,  # type: ignore[arg-type]
                    registered=lambda: connection.connected, spawn=spawn, on_change=lambda: None)
    return outbox, stats


def completion(job_id: str, attempt: int = 1) -> Outcome:
    return Outcome(job_id, attempt, {"type": "complete_job", "job_id": job_id, "attempt": attempt,
                                     "result": 1})


async def until(condition: Any, wait_s: float = 5.0) -> None:
    async with asyncio.timeout(wait_s):
        while not condition():  # noqa: ASYNC110 - the outbox has no event for most of these
            await asyncio.sleep(0.005)


async def test_an_outcome_goes_out_at_once_and_is_settled_by_its_ack() -> None:
    connection = ScriptedConnection()
    outbox, stats = make_outbox(connection)
    outbox.submit(completion("a"))
    outbox.submit(completion("b"))
    assert [m["job_id"] for _, m in connection.sent] == ["a", "b"]
    connection.answer({"type": "job_completed_ack", "job_id": "a"})
    connection.answer({"type": "job_completed_ack", "job_id": "b"})
    await until(lambda: not outbox.pending)
    assert stats.completed == 2 and outbox.all_acked.is_set()


async def test_an_overdue_ack_sends_the_outcome_again_and_a_late_ack_counts_once() -> None:
    connection = ScriptedConnection()
    outbox, stats = make_outbox(connection, ack_timeout_s=0.05)
    outbox.submit(completion("a"))
    await until(lambda: len(connection.sent) == 2)  # the first was never answered
    assert connection.sent[0][1] == connection.sent[1][1]
    connection.answer({"type": "job_completed_ack", "job_id": "a"})
    await until(lambda: not outbox.pending)
    await asyncio.sleep(0.1)  # no third send once acked
    assert len(connection.sent) == 2 and stats.completed == 1


async def test_a_transient_refusal_is_waited_out_and_a_final_one_drops_the_outcome() -> None:
    connection = ScriptedConnection()
    outbox, stats = make_outbox(connection)
    outbox.submit(completion("a"))
    outbox.submit(completion("b"))
    connection.answer({"type": "error", "code": "unavailable", "error": "Redis is down"})
    connection.answer({"type": "error", "code": "lease_lost", "error": "the job runs elsewhere"})
    await until(lambda: len(connection.sent) == 3)  # "a" again, after a pause
    assert connection.sent[2][1]["job_id"] == "a"
    connection.answer({"type": "job_completed_ack", "job_id": "a"})
    await until(lambda: not outbox.pending)
    assert stats.completed == 1 and stats.dropped == 1


async def test_outcomes_in_flight_when_the_connection_drops_are_sent_after_the_reconnect() -> None:
    connection = ScriptedConnection()
    outbox, stats = make_outbox(connection)
    outbox.submit(completion("a"))
    connection.drop()
    outbox.submit(completion("b"))  # while disconnected: kept, not sent
    await asyncio.sleep(0.01)
    assert set(outbox.pending) == {"a", "b"} and len(connection.sent) == 1
    connection.connected = True
    outbox.deliver_all()
    assert sorted(m["job_id"] for _, m in connection.sent[1:]) == ["a", "b"]
    connection.answer({"type": "job_completed_ack", "job_id": "a"})
    connection.answer({"type": "job_completed_ack", "job_id": "b"})
    await until(lambda: not outbox.pending)
    assert stats.completed == 2
