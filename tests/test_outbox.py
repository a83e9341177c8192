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
        self.welcome = {"max_frame_bytes": 4096}

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


def completion(job_id: str, attempt: int = 1, result: str = "1") -> Outcome:
    return Outcome(job_id, attempt, {"type": "complete_job", "job_id": job_id, "attempt": attempt,
                                     "result": result}, result_bytes=len(result))


def failure(job_id: str) -> Outcome:
    return Outcome(job_id, 1, {"type": "fail_job", "job_id": job_id, "attempt": 1, "error": "boom"})


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


async def test_to_a_batch_hub_a_turns_completions_go_in_one_frame_and_each_item_settles_alone() -> None:
    connection = ScriptedConnection()
    outbox, stats = make_outbox(connection)
    outbox.batch = True
    for job_id in ("a", "b", "c"):
        outbox.submit(completion(job_id))
    outbox.submit(failure("f"))  # a failure still goes alone
    await asyncio.sleep(0)  # the end of the loop turn
    kinds = [(m["type"], [j["job_id"] for j in m.get("jobs", [m])]) for _, m in connection.sent]
    assert kinds == [("fail_job", ["f"]), ("complete_jobs", ["a", "b", "c"])]
    assert connection.sent[1][1]["jobs"][0] == {"job_id": "a", "attempt": 1, "result": "1"}
    connection.answer({"type": "job_failed_ack", "job_id": "f", "status": "failed", "final": True})
    connection.answer({"type": "jobs_completed_ack", "job_ids": ["a", "c"],
                       "refused": [{"job_id": "b", "code": "lease_lost", "error": "runs elsewhere"}]})
    await until(lambda: not outbox.pending)
    assert (stats.completed, stats.failed, stats.dropped) == (2, 1, 1)


async def test_a_refused_or_overdue_complete_jobs_is_sent_again_whole_and_each_counts_once() -> None:
    connection = ScriptedConnection()
    outbox, stats = make_outbox(connection, ack_timeout_s=0.2)
    outbox.batch = True
    outbox.submit(completion("a"))
    outbox.submit(completion("b"))
    await until(lambda: len(connection.sent) == 2)  # never answered: overdue, sent again
    assert connection.sent[0][1] == connection.sent[1][1]
    connection.answer({"type": "error", "code": "unavailable", "error": "Redis is down"})
    # each waits out its own pause, so they may come back in one frame or two
    resent = lambda: sorted(j["job_id"] for _, m in connection.sent[2:] for j in m["jobs"])  # noqa: E731
    await until(lambda: resent() == ["a", "b"])
    while connection.waiting:
        req = min(connection.waiting)
        job_ids = [j["job_id"] for r, m in connection.sent if r == req for j in m["jobs"]]
        connection.answer({"type": "jobs_completed_ack", "job_ids": job_ids, "refused": []})
    await until(lambda: not outbox.pending)
    await asyncio.sleep(0.3)  # no send once acked
    assert resent() == ["a", "b"] and stats.completed == 2 and stats.dropped == 0


async def test_completions_over_the_frame_budget_go_in_several_frames() -> None:
    connection = ScriptedConnection()  # frames of 4,096 bytes: half of it for results
    outbox, _ = make_outbox(connection)
    outbox.batch = True
    for job_id in ("a", "b", "c"):
        outbox.submit(completion(job_id, result='"' + "x" * 1200 + '"'))
    await asyncio.sleep(0)
    assert [[j["job_id"] for j in m["jobs"]] for _, m in connection.sent] == [["a"], ["b"], ["c"]]
