"""The client SDK against a real hub, on real Redis and the embedded store. Workers are raw WSPeers,
so these tests depend on the protocol only, not on the worker SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from support import WSPeer, connect, register, ws_url

from empfast.client import (
    Client,
    FrameTooLarge,
    HubError,
    JobCancelledError,
    JobFailedError,
    JobSpec,
    NotRetryableError,
    SubmitManyError,
)
from empfast.config import HubConfig
from empfast.hub import Hub

HUB_TIMINGS = {"http_port": 0, "sweep_interval_s": 0.05, "stats_interval_s": 0.05, "events_block_ms": 50}




async def complete(worker: WSPeer, job_id: str, result: Any) -> None:
    worker.send({"type": "complete_job", "job_id": job_id, "result": result, "req": "done"})
    await worker.until("job_completed_ack", job_id=job_id)


async def collect(events: AsyncIterator[dict[str, Any]], wait_s: float = 5.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(wait_s):
        return [event async for event in events]


def stream_keys(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    keys = []
    for event in events:
        ms, _, seq = event["event_id"].partition("-")
        keys.append((int(ms), int(seq)))
    return keys


async def test_a_submitted_job_runs_and_every_waiter_and_iterator_gets_everything(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        worker = await register(hub, "w1", ["echo"])
        handle = await client.submit("echo", {"x": 1})
        assert handle.created is True and handle.status == "pending" and len(handle.job_id) == 32
        from_handle = asyncio.create_task(collect(handle.events()))
        from_client = asyncio.create_task(collect(client.events(handle.job_id)))
        waiter = asyncio.create_task(client.result(handle.job_id, timeout=5))

        assigned = await worker.until("job_assigned", job_id=handle.job_id)
        assert assigned["payload"] == {"x": 1}
        worker.send({"type": "update_job_progress", "job_id": handle.job_id, "progress": 50,
                     "message": "half", "req": 1})
        await worker.until("job_progress_ack")
        await complete(worker, handle.job_id, {"y": [1, 2]})

        assert await handle.result(timeout=5) == {"y": [1, 2]}
        assert await waiter == {"y": [1, 2]}
        events = await from_handle
        assert await from_client == events
        kinds = [event["type"] for event in events]
        assert kinds[-1] == "job_completed" and set(kinds[:-1]) == {"job_update"}
        assert [e["progress"] for e in events if "progress" in e] == [50.0]
        assert any(e.get("worker_id") == "w1" for e in events[:-1])
        keys = stream_keys(events)
        assert keys == sorted(set(keys))  # in stream order, none twice
        worker.close()


async def test_a_handle_knows_its_position_and_status_reads_logs(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        first = await client.submit("ocr", job_id="first")
        second = await client.submit("ocr", job_id="second", priority=-1)
        top = await client.submit("ocr", job_id="top", priority=3)
        later = await client.submit("ocr", job_id="later", delay_s=60)
        assert (first.position, second.position, top.position, later.position) == (0, 1, 0, None)
        assert (await client.status("second"))["position"] == 2
        worker = await register(hub, "w1", ["ocr"])
        assigned = await worker.until("job_assigned")
        assert assigned["job_id"] == "top"
        worker.send({"type": "append_job_log", "job_id": "top", "lines": ["a", "b"], "req": 1})
        await worker.until("job_log_ack")
        assert [e["lines"] async for e in _logs(top.events())] == [["a", "b"]]
        state = await client.status("top", logs=True)
        assert state["logs"] == ["a", "b"] and "position" not in state
        assert (await client.status("top", logs=1))["logs"] == ["b"]
        assert "logs" not in await client.status("top")
        worker.close()


async def _logs(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """The job_log events of an iterator, up to the first one."""
    async with asyncio.timeout(5):
        async for event in events:
            if event["type"] == "job_log":
                yield event
                return


async def test_payload_json_reaches_the_worker_byte_for_byte(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        worker = await register(hub, "w1", ["raw"])
        await client.submit("raw", payload_json=b'{"price": 1.50, "tags":[ "a" ]}')
        async with asyncio.timeout(5):
            frame = await worker.frames.get()
        assert b'"payload":{"price": 1.50, "tags":[ "a" ]}' in frame
        with pytest.raises(ValueError, match="not valid JSON"):
            await client.submit("raw", payload_json=b"{nope")
        worker.close()


async def test_the_requests_of_one_loop_turn_go_out_masked_in_one_socket_write(hub: Hub) -> None:
    """Frames an SDK sends in one event-loop turn share a socket write (docs/performance.md), each
    masked as RFC 6455 requires of a client; payloads at every frame-header size (7-bit, 16-bit and
    64-bit lengths) reach the worker byte for byte."""
    async with Client(ws_url(hub)) as client:
        sizes = [0, 1, 2, 3, 4, 5, 100, 117, 118, 119, 120, 65_520, 65_530, 70_000]
        worker = await register(hub, "w1", ["raw"], concurrency=len(sizes))
        payloads = [b'"' + b"x" * size + b'"' for size in sizes]
        writes = client.connection.writes
        await asyncio.gather(*(client.submit("raw", payload_json=p) for p in payloads))
        assert client.connection.writes - writes < len(payloads) // 2, client.connection.writes - writes
        async with asyncio.timeout(5):
            got = [(await worker.until("job_assigned"))["payload"] for _ in payloads]
        assert sorted(got, key=len) == [p[1:-1].decode() for p in payloads]
        worker.close()


async def test_payload_json_in_a_batch_reaches_the_worker_byte_for_byte(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        worker = await register(hub, "w1", ["raw"])
        await client.submit_many([JobSpec("raw", payload_json=b'{"price": 1.50, "name":"caf\\u00e9"}')])
        async with asyncio.timeout(5):
            frame = await worker.frames.get()
        assert b'"payload":{"price": 1.50, "name":"caf\\u00e9"}' in frame
        worker.close()


async def test_result_of_a_job_that_finished_before_anyone_asked(hub: Hub) -> None:
    async with Client(ws_url(hub)) as submitter:
        done = (await submitter.submit("a", job_id="done-1")).job_id
        failed = (await submitter.submit("a", job_id="failed-1")).job_id
    worker = await register(hub, "w1", ["a"])
    await worker.until("job_assigned", job_id=done)
    await complete(worker, done, "the result")
    await worker.until("job_assigned", job_id=failed)
    worker.send({"type": "fail_job", "job_id": failed, "error": "disk full", "retry": False, "req": 2})
    await worker.until("job_failed_ack")

    async with Client(ws_url(hub)) as late:
        assert await late.result(done, timeout=5) == "the result"
        events = await collect(late.events(done))
        assert [e["type"] for e in events] == ["job_completed"] and events[0]["result"] == "the result"
        with pytest.raises(JobFailedError) as info:
            await late.result(failed, timeout=5)
        assert info.value.error == "disk full" and "disk full" in str(info.value)
    worker.close()


async def test_the_same_job_id_twice_is_one_job(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        first = await client.submit("a", {"n": 1}, job_id="order-17")
        second = await client.submit("a", {"n": 2}, job_id="order-17")
        assert (first.created, second.created) == (True, False)
        assert second.job_id == "order-17" and second.status == "pending"
        assert (await client.stats())["pending"] == 1


async def test_a_submit_whose_reply_is_lost_is_sent_again_and_adds_one_job(hub: Hub) -> None:
    async with Client(ws_url(hub), backoff_base_s=0.05) as client:
        connection = client.connection
        original = connection.send

        def send_then_drop(message: dict[str, Any] | bytes) -> bool:
            sent = original(message)
            frame = orjson.loads(message) if isinstance(message, bytes) else message
            if frame.get("type") == "submit_job" and connection.connects == 1:
                assert connection.transport is not None
                connection.transport.disconnect()
            return sent

        connection.send = send_then_drop  # type: ignore[method-assign]
        handle = await client.submit("a", job_id="lost-reply")
        assert connection.connects == 2 and handle.job_id == "lost-reply"
        assert (await client.stats())["pending"] == 1
        assert (await client.status("lost-reply"))["status"] == "pending"


async def test_submit_many_sends_batches_of_1000_and_every_job_is_added(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        frames: list[str] = []
        original = client.connection.send

        def counting(message: dict[str, Any] | bytes) -> bool:
            frames.append((orjson.loads(message) if isinstance(message, bytes) else message)["type"])
            return original(message)

        client.connection.send = counting  # type: ignore[method-assign]
        jobs: list[JobSpec | dict[str, Any]] = [{"job_type": "bulk", "payload": {"i": i}}
                                                for i in range(2_498)]
        jobs.append(JobSpec("bulk", job_id="mine", priority=5))
        jobs.append(JobSpec("bulk", payload_json=b"[1, 2.50]"))
        ids = await client.submit_many(jobs)
        assert frames == ["submit_jobs"] * 3
        assert len(ids) == 2_500 and len(set(ids)) == 2_500 and ids[2_498] == "mine"
        stats = await client.stats()
        assert stats["pending"] == 2_500 and stats["by_type"]["bulk"]["added"] == 2_500
        assert (await client.status("mine"))["priority"] == 5
        # the same ids again: nothing new (safe to repeat after a lost reply)
        assert await client.submit_many([{"job_type": "bulk", "job_id": i} for i in ids[:10]]) == ids[:10]
        assert (await client.stats())["pending"] == 2_500


async def test_submit_many_names_the_bad_job_and_what_was_added(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        jobs = [JobSpec("bulk") for _ in range(1_600)]
        jobs[1_500] = JobSpec("bulk", priority=99_999)
        with pytest.raises(SubmitManyError) as info:
            await client.submit_many(jobs)
        assert info.value.code == "bad_message" and info.value.frame["field"] == "jobs[1500].priority"
        assert len(info.value.accepted) == 1_000
        assert (await client.stats())["pending"] == 1_000


async def test_a_final_failure_raises_with_its_error_text(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        worker = await register(hub, "w1", ["a"])
        handle = await client.submit("a")
        await worker.until("job_assigned")
        worker.send({"type": "fail_job", "job_id": handle.job_id, "error": "upstream 503", "retry": False})
        with pytest.raises(JobFailedError, match="upstream 503") as info:
            await handle.result(timeout=5)
        assert info.value.job_id == handle.job_id and info.value.error == "upstream 503"
        last = (await collect(handle.events()))[-1]
        assert last["type"] == "job_failed" and last["final"] is True
        worker.close()


async def test_a_failed_job_retried_runs_again_and_its_handle_follows_the_new_run(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        worker = await register(hub, "w1", ["a"])
        first = await client.submit("a", max_attempts=1)
        await worker.until("job_assigned")
        worker.send({"type": "fail_job", "job_id": first.job_id, "error": "flaky", "retry": True})
        with pytest.raises(JobFailedError):
            await first.result(timeout=5)
        again = await client.retry(first.job_id)
        assigned = await worker.until("job_assigned", job_id=first.job_id)
        assert assigned["attempt"] == 2
        await complete(worker, first.job_id, "fine now")
        assert await again.result(timeout=5) == "fine now"
        with pytest.raises(NotRetryableError, match="completed"):
            await client.retry(first.job_id)
        with pytest.raises(HubError) as info:
            await client.retry("no-such-job")
        assert info.value.code == "not_found"
        worker.close()


async def test_a_submit_larger_than_the_hub_accepts_is_refused_before_it_is_sent(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        limit = hub.config.max_frame_bytes
        with pytest.raises(FrameTooLarge, match="object storage"):
            await client.submit("a", {"blob": "x" * limit})
        assert client.connection.connects == 1  # the connection was never dropped
        assert (await client.stats())["pending"] == 0


async def test_cancel_of_a_pending_job(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        handle = await client.submit("nobody-runs-this")
        state = await client.cancel(handle.job_id)
        assert state["status"] == "cancelled" and state["job_id"] == handle.job_id
        with pytest.raises(JobCancelledError):
            await handle.result(timeout=5)
        assert (await collect(handle.events()))[-1]["type"] == "job_cancelled"
        assert (await client.stats())["pending"] == 0


async def test_unknown_jobs_and_bad_input_get_the_hubs_error_and_change_nothing(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        for call in (client.status("missing"), client.result("missing", timeout=5)):
            with pytest.raises(HubError) as info:
                await call
            assert info.value.code == "not_found" and "missing" in str(info.value)
        with pytest.raises(HubError) as info:
            await client.submit("a", priority=99_999, job_id="too-urgent")
        assert info.value.code == "bad_message" and info.value.frame["field"] == "priority"
        assert "priority" in str(info.value)
        assert (await client.stats())["pending"] == 0
        with pytest.raises(HubError, match="not_found"):
            await client.status("too-urgent")


async def test_waiting_longer_than_the_timeout_raises_timeout_error(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        handle = await client.submit("nobody-runs-this")
        with pytest.raises(TimeoutError, match=handle.job_id):
            await handle.result(timeout=0.1)
        # the job and its watch go on: cancelling still ends the wait
        await handle.cancel()
        with pytest.raises(JobCancelledError):
            await handle.result(timeout=5)


async def test_events_missed_while_disconnected_arrive_once_and_in_order(hub: Hub) -> None:
    # a 1.5-3 s backoff keeps the client away while the worker reports, also on a loaded machine
    # (with 0.5-1 s it could be back before the last report, failing the `not connected` check)
    async with Client(ws_url(hub), backoff_base_s=3.0) as client:
        worker = await register(hub, "w1", ["a"])
        handle = await client.submit("a")
        job_id = handle.job_id
        events = handle.events()
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not any(e.get("worker_id") for e in seen):  # it has an event id to resume from
                seen.append(await anext(events))
        assert client.connection.transport is not None
        client.connection.transport.disconnect()
        for progress in (10, 20, 30):
            worker.send({"type": "update_job_progress", "job_id": job_id, "progress": progress,
                         "req": progress})
            await worker.until("job_progress_ack", job_id=job_id)
        await complete(worker, job_id, "finished")
        assert not client.connection.connected  # all of it happened while the client was away

        seen += await collect(events)
        assert [e["progress"] for e in seen if "progress" in e] == [10.0, 20.0, 30.0]
        assert seen[-1]["type"] == "job_completed"
        keys = stream_keys(seen)
        assert keys == sorted(set(keys))
        assert await handle.result(timeout=5) == "finished"
        assert client.connection.connects == 2
        worker.close()


async def test_an_event_the_hub_sends_twice_is_seen_once(hub: Hub) -> None:
    # a resume's replay can overlap events its hub reads later; here the hub's connection repeats them
    async with Client(ws_url(hub)) as client:
        worker = await register(hub, "w1", ["a"])
        handle = await client.submit("a")
        events = handle.events()
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not any(e.get("worker_id") for e in seen):
                seen.append(await anext(events))
        (conn,) = [c for c in hub.peers if c.role == "client"]
        for event in seen:
            conn.send(orjson.dumps(event))
        await complete(worker, handle.job_id, "once")
        seen += await collect(events)
        last_ms, _ = stream_keys(seen)[-1]
        conn.send(orjson.dumps({**seen[-1], "event_id": f"{last_ms + 1}-0", "result": "twice"}))
        assert await client.ping() is None  # the repeat arrived before the pong
        keys = stream_keys(seen)
        assert keys == sorted(set(keys)) and [e["type"] for e in seen].count("job_completed") == 1
        assert await handle.result(timeout=5) == "once"
        assert await collect(handle.events()) == seen
        worker.close()


async def test_the_client_rides_through_a_hub_restart(hub: Hub) -> None:
    port = hub.port
    async with Client(ws_url(hub), backoff_base_s=0.05) as client:
        handle = await client.submit("a", {"n": 7})
        await hub.stop()
        restarted = Hub(hub.store, HubConfig(port=port, **HUB_TIMINGS))  # type: ignore[arg-type]
        await restarted.start()
        try:
            worker = await register(restarted, "w1", ["a"])
            assigned = await worker.until("job_assigned", job_id=handle.job_id)
            assert assigned["payload"] == {"n": 7}
            await complete(worker, handle.job_id, {"n": 8})
            assert await handle.result(timeout=10) == {"n": 8}
            assert client.connection.connects >= 2
            events = await collect(handle.events())
            keys = stream_keys([e for e in events if e["event_id"]])
            assert keys == sorted(set(keys)) and events[-1]["type"] == "job_completed"
            assert (await client.stats())["completed"] == 1
            worker.close()
        finally:
            await restarted.stop()


async def test_a_wrong_token_is_refused_at_connect(hub: Hub) -> None:
    secured = Hub(hub.store, HubConfig(port=0, token="s3cret", **HUB_TIMINGS))  # type: ignore[arg-type]
    await secured.start()
    try:
        with pytest.raises(HubError) as info:
            async with Client(ws_url(secured), token="wrong"):
                pass
        assert info.value.code == "unauthorized"
        async with Client(ws_url(secured), token="s3cret") as client:
            assert (await client.stats())["pending"] == 0
    finally:
        await secured.stop()


async def test_a_token_refused_on_reconnect_ends_waits_with_the_hubs_error(hub: Hub) -> None:
    secured = Hub(hub.store, HubConfig(port=0, token="old", **HUB_TIMINGS))  # type: ignore[arg-type]
    await secured.start()
    port = secured.port
    rotated: Hub | None = None
    try:
        async with Client(ws_url(secured), token="old", backoff_base_s=0.05) as client:
            handle = await client.submit("a")
            waiter = asyncio.create_task(handle.result())  # no timeout of its own
            await secured.stop()
            rotated = Hub(hub.store, HubConfig(port=port, token="new", **HUB_TIMINGS))  # type: ignore[arg-type]
            await rotated.start()
            with pytest.raises(HubError) as info:
                async with asyncio.timeout(5):
                    await waiter
            assert info.value.code == "unauthorized"
            with pytest.raises(HubError, match="unauthorized"):
                await client.stats()
    finally:
        await secured.stop()
        if rotated is not None:
            await rotated.stop()


async def test_a_jobs_status_has_its_payload_only_when_asked(hub: Hub) -> None:
    payload = b'{"url": "https://example.org/a.png", "n": 1.50}'
    async with Client(ws_url(hub)) as client:
        handle = await client.submit("later", payload_json=payload, delay_s=60)
        assert "payload" not in await client.status(handle.job_id)
        state = await client.status(handle.job_id, payload=True)
        assert state["payload"] == {"url": "https://example.org/a.png", "n": 1.5}
    raw = await connect(hub, "/ws/client")
    raw.send({"type": "get_job_status", "req": 1, "job_id": handle.job_id, "payload": True})
    frame = await asyncio.wait_for(raw.frames.get(), 5)
    assert payload in frame  # spliced as submitted, not re-encoded
    raw.close()


async def test_a_submit_resent_after_a_resubscribe_brings_no_second_final_event(hub: Hub) -> None:
    # the order of a reconnect: the job's events were seen, the submit's reply was not; the
    # resubscribe (with since) goes first and replays the completion, then the submit is sent again.
    # Were the submit to subscribe again, the hub would send the finished job's final state too
    async with Client(ws_url(hub), backoff_base_s=0.05) as client:
        worker = await register(hub, "w1", ["a"])
        connection = client.connection
        deliver_frame, deliver_push = connection._on_frame, connection.on_push
        completed_frames: list[dict[str, Any]] = []

        def lose_the_first_accept(data: bytes) -> None:
            frame = orjson.loads(data)
            if frame.get("type") == "job_accepted" and connection.connects == 1:
                return
            deliver_frame(data)

        def count(frame: dict[str, Any], data: bytes) -> None:
            if frame.get("type") == "job_completed":
                completed_frames.append(frame)
            deliver_push(frame, data)

        connection._on_frame = lose_the_first_accept  # type: ignore[method-assign]
        connection.on_push = count
        submitting = asyncio.ensure_future(client.submit("a", job_id="resent"))
        assigned = await worker.until("job_assigned", job_id="resent")
        watch = client._watches["resent"]
        async with asyncio.timeout(5):
            while watch.last_id is None:  # the client saw the assignment's event
                await watch.changed()
        assert not submitting.done()
        assert connection.transport is not None
        connection.transport.disconnect()
        await complete(worker, assigned["job_id"], "once")
        handle = await asyncio.wait_for(submitting, 5)
        assert await handle.result(timeout=5) == "once"
        assert await client.ping() is None  # any frame the hub sent after the reply is in
        assert connection.connects == 2
        assert [f["type"] for f in completed_frames] == ["job_completed"]
        worker.close()


async def test_submit_and_submit_many_carry_timeouts_start_times_and_expiries(hub: Hub) -> None:
    from datetime import UTC, datetime, timedelta

    async with Client(ws_url(hub)) as client:
        in_a_minute = datetime.now(UTC) + timedelta(minutes=1)
        handle = await client.submit("later", timeout_s=2.5, run_at=in_a_minute,
                                     expires_at=in_a_minute + timedelta(minutes=1))
        assert handle.status == "scheduled"
        state = await client.status(handle.job_id)
        assert state["timeout_ms"] == 2_500
        assert abs(state["run_at"] - in_a_minute.timestamp() * 1000) < 2
        assert state["expires_at"] - state["run_at"] == pytest.approx(60_000, abs=2)
        ids = await client.submit_many([JobSpec("later", ttl_s=30), {"job_type": "later", "timeout_s": 1}])
        first, second = [await client.status(job_id) for job_id in ids]
        assert first["expires_at"] - first["created_at"] == 30_000 and second["timeout_ms"] == 1_000
        with pytest.raises(ValueError, match="time zone"):
            await client.submit("later", run_at=datetime(2030, 1, 1))  # naive on purpose
        with pytest.raises(HubError) as refused:
            await client.submit("later", delay_s=5, run_at=in_a_minute)
        assert refused.value.code == "bad_message"
