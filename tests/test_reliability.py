"""What a worker or client relies on when things go wrong, through a real hub with raw peers, on real
Redis and on the embedded store: a lost attempt's result never counts, a worker that stops
heartbeating holds up no one, bad frames are refused one by one."""

from __future__ import annotations

import asyncio

import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from support import MakeStore, WSPeer, connect, register, started_hub, submit, ws_url

from empfast.hub import Hub


async def test_a_lost_attempts_result_is_refused_and_the_newer_attempts_result_is_kept(
        make_store: MakeStore) -> None:
    async with started_hub(make_store, lease_ms=400, liveness_ms=5_000) as hub:
        client = await connect(hub, "/ws/client")
        worker = await register(hub, "w1", ["a"])
        job_id = await submit(client, "a")
        assert (await worker.until("job_assigned", job_id=job_id))["attempt"] == 1
        worker.close()  # the socket drops while it holds attempt 1, and the lease runs out
        await client.until("job_failed", job_id=job_id, final=False)

        worker = await register(hub, "w1", ["a"])  # the same id again: it is given attempt 2
        assert (await worker.until("job_assigned", job_id=job_id))["attempt"] == 2
        worker.send({"type": "complete_job", "req": 1, "job_id": job_id, "attempt": 1, "result": "stale"})
        refused = await worker.until_any(("error", "job_completed_ack"))
        assert refused["type"] == "error" and refused["req"] == 1
        assert refused["code"] == "lease_lost" and refused["job_id"] == job_id
        worker.send({"type": "update_job_progress", "req": 2, "job_id": job_id, "attempt": 1, "progress": 9})
        assert (await worker.until("error", req=2))["code"] == "lease_lost"
        worker.send({"type": "fail_job", "req": 3, "job_id": job_id, "attempt": 1, "error": "stale"})
        assert (await worker.until("error", req=3))["code"] == "lease_lost"

        # the stale frames left attempt 2 alone: a frame without `attempt` still reports on it
        worker.send({"type": "complete_job", "req": 4, "job_id": job_id, "result": "fresh"})
        await worker.until("job_completed_ack", req=4, job_id=job_id)
        done = await client.until("job_completed", job_id=job_id)
        assert done["result"] == "fresh" and done["attempt"] == 2
        worker.send({"type": "complete_job", "req": 5, "job_id": job_id, "attempt": 1, "result": "stale"})
        assert (await worker.until("error", req=5))["code"] == "lease_lost"
        worker.send({"type": "complete_job", "req": 6, "job_id": job_id, "attempt": 2, "result": "again"})
        await worker.until("job_completed_ack", req=6, job_id=job_id)  # a repeat of attempt 2
        client.send({"type": "get_job_status", "req": 7, "job_id": job_id})
        status = await client.until("job_status", req=7)
        assert status["result"] == "fresh" and status["attempts"] == 2
        client.close()
        worker.close()


async def heartbeat_every(worker: WSPeer, interval_s: float) -> None:
    """What a healthy worker does until it is stopped (docs/protocol.md 4.2)."""
    while True:
        worker.send({"type": "worker_heartbeat"})
        await asyncio.sleep(interval_s)


async def test_a_worker_that_stops_heartbeating_holds_up_no_one_and_is_told_to_register_again(
        make_store: MakeStore) -> None:
    # heartbeat interval 0.5 s (a third of 1.5 s), so a worker is quiet after 1 s and gone after 1.5 s
    async with started_hub(make_store, lease_ms=1_500, liveness_ms=1_500) as hub:
        client = await connect(hub, "/ws/client")
        healthy = await register(hub, "healthy", ["a"], concurrency=3)
        beats = asyncio.create_task(heartbeat_every(healthy, 0.2))
        try:
            quiet = await register(hub, "quiet", ["a"], concurrency=3)  # frozen from here on
            await asyncio.sleep(1.2)

            loop = asyncio.get_running_loop()
            submitted_at = loop.time()
            job_ids = {await submit(client, "a", subscribe=False) for _ in range(3)}
            got = {(await healthy.until("job_assigned", wait_s=2))["job_id"] for _ in range(3)}
            assert got == job_ids and loop.time() - submitted_at < 1.0  # no job waits on the quiet one

            told = await quiet.next(wait_s=3)  # nothing before it: no job_assigned
            assert told["type"] == "error" and told["code"] == "not_registered"
            assert "send worker_heartbeat or register_worker" in told["error"]

            waiting = await submit(client, "a", subscribe=False)  # "healthy" is full: only "quiet" could
            with pytest.raises(TimeoutError):
                await quiet.next(wait_s=0.3)
            quiet.send({"type": "worker_heartbeat", "req": "back"})
            await quiet.until("worker_heartbeat_ack", req="back")
            assert (await quiet.until("job_assigned", wait_s=1))["job_id"] == waiting
        finally:
            beats.cancel()
        client.close()
        healthy.close()
        quiet.close()


async def test_a_worker_whose_record_vanished_is_told_once_and_gets_jobs_after_its_heartbeat(
        hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["a"])
    # as if Redis lost the record (restarted without persistence): no sweep, no gone event
    keys = hub.store.keys
    await hub.store.redis.delete(keys.worker("w1"))
    await hub.store.redis.zrem(keys.workers, "w1")
    job_id = await submit(client, "a", subscribe=False)
    told = await worker.next()  # dispatch's claim found no worker: it says so, and assigns nothing
    assert told["type"] == "error" and told["code"] == "not_registered" and "req" not in told
    await asyncio.sleep(0.3)  # several sweeps, each with its safety net: no second error, no retry
    assert worker.frames.empty()
    worker.send({"type": "worker_heartbeat", "req": 1})
    await worker.until("worker_heartbeat_ack", req=1)
    assert (await worker.until("job_assigned", wait_s=2))["job_id"] == job_id
    client.close()
    worker.close()


async def test_one_bad_field_in_a_burst_of_submits_refuses_that_frame_only(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    for n in range(41):  # back to back: the hub takes them as one batch
        client.send({"type": "submit_job", "req": n, "job_type": "a", "job_id": f"burst-{n}",
                     "subscribe": "yes" if n == 20 else False})
    answers = [await client.until_any(("job_accepted", "error")) for _ in range(41)]
    assert [a["req"] for a in answers] == list(range(41))
    refused = answers.pop(20)
    assert refused["type"] == "error" and refused["code"] == "bad_message"
    assert refused["field"] == "subscribe"
    assert all(a["type"] == "job_accepted" and a["created"] for a in answers)
    assert await hub.store.get_job("burst-20") is None
    assert (await hub.store.stats()).pending == 40
    client.close()


async def test_a_since_beyond_a_stream_ids_range_is_bad_message(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a")
    too_big = str(1 << 64)  # each part of a stream id is an unsigned 64-bit number
    for req, since in enumerate([f"{too_big}-0", f"1-{too_big}", f"{'9' * 20}-1"]):
        client.send({"type": "subscribe_job", "req": req, "job_id": job_id, "since": since})
        refused = await client.until_any(("error", "subscribed"))
        assert refused["type"] == "error" and refused["req"] == req
        assert refused["code"] == "bad_message" and refused["field"] == "since"
        assert "Redis" not in refused["error"] and "ERR" not in refused["error"]
    largest = f"{(1 << 64) - 1}-{(1 << 64) - 1}"
    client.send({"type": "subscribe_job", "req": "max", "job_id": job_id, "since": largest})
    assert (await client.until_any(("error", "subscribed")))["type"] == "subscribed"
    client.close()


@pytest.mark.parametrize(("path", "frame", "field"), [
    ("/ws/client", rb'{"type":"submit_job","job_type":"a","job_id":"x\u0000y"}', "job_id"),
    ("/ws/client", rb'{"type":"submit_job","job_type":"a","job_id":"x\n"}', "job_id"),
    ("/ws/client", b'{"type":"submit_job","job_type":"a\x7f"}', "job_type"),
    ("/ws/client", '{"type":"submit_job","job_type":"a","job_id":"x\u0085"}'.encode(), "job_id"),
    ("/ws/client", rb'{"type":"submit_jobs","jobs":[{"job_type":"a"},{"job_type":"b\u001f"}]}',
     "jobs[1].job_type"),
    ("/ws/client", rb'{"type":"retry_job","job_id":"j","retry_id":"r\u0007"}', "retry_id"),
    ("/ws/worker/w1", rb'{"type":"register_worker","job_types":["a","b\tc"]}', "job_types[1]"),
    ("/ws/client", b'{"type":"get_stats","req":"' + b"r" * 129 + b'"}', "req"),
    ("/ws/client", b'{"type":"get_stats","req":"' + "é".encode() * 65 + b'"}', "req"),  # 130 bytes
], ids=["escaped-NUL", "escaped-newline", "DEL", "C1", "in-a-batch", "retry-id", "job-type-list",
        "req-129-bytes", "req-130-bytes-in-65-chars"])
async def test_control_characters_and_long_reqs_are_refused_through_the_socket(
        hub: Hub, path: str, frame: bytes, field: str) -> None:
    peer = await connect(hub, path)
    peer.send(frame)
    refused = await peer.until_any(("error", "stats", "job_accepted", "jobs_accepted", "worker_registered"))
    assert refused["type"] == "error" and refused["code"] == "bad_message" and refused["field"] == field
    assert "req" not in refused
    peer.send({"type": "ping", "req": "r" * 128})  # the connection stays; 128 bytes is a valid req
    assert (await peer.until("pong"))["req"] == "r" * 128
    stats = await hub.store.stats()
    assert stats.pending == 0 and stats.workers == {"idle": 0, "busy": 0, "draining": 0}
    peer.close()


async def close_code_after(hub: Hub, frame: bytes) -> int | None:
    """The close code the hub answers a text frame with (None: it answered with a frame instead)."""
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    class Listener(WSListener):
        def on_ws_frame(self, transport: WSTransport, ws_frame: WSFrame) -> None:
            if ws_frame.msg_type == WSMsgType.CLOSE and not closed.done():
                closed.set_result(ws_frame.get_close_code())
            elif (ws_frame.msg_type == WSMsgType.TEXT and b'"welcome"' not in ws_frame.get_payload_as_bytes()
                  and not closed.done()):
                closed.set_result(None)

    transport, _ = await ws_connect(Listener, ws_url(hub, "/ws/client"))
    transport.send(WSMsgType.TEXT, frame)
    try:
        async with asyncio.timeout(5):
            return await closed
    finally:
        transport.disconnect()


@pytest.mark.parametrize("frame", [
    b'{"type":"ping","note":"\xff"}',
    b'{"type":"submit_job","job_type":"a","payload":{"text":"\xc3\x28"}}',  # inside a raw payload
    b'{"type":"submit_job","job_type":"a\xed\xa0\x80"}',  # an encoded surrogate
], ids=["stray-byte", "in-a-payload", "surrogate"])
async def test_a_text_frame_that_is_not_utf8_is_closed_with_1007(hub: Hub, frame: bytes) -> None:
    bystander = await connect(hub, "/ws/client")
    assert await close_code_after(hub, frame) == 1007
    assert await close_code_after(hub, '{"type":"ping","note":"é ✓"}'.encode()) is None
    bystander.send({"type": "get_stats", "req": 1})
    assert (await bystander.until("stats", req=1))["pending"] == 0
    bystander.close()
