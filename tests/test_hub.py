"""The hub over real sockets, on real Redis and on the embedded store."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from support import MakeStore, connect, register, submit

from empfast.config import HubConfig
from empfast.hub import Hub
from empfast.hub.dispatch import FAN_OUT_AT_ONCE
from empfast.hub.workers import COMPLETIONS_PER_CALL
from empfast.protocol import frame_header, masked_data


async def test_submit_assign_progress_complete_as_the_client_sees_it(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await connect(hub, "/ws/worker/w1")
    worker.send({"type": "register_worker", "job_types": ["echo"], "concurrency": 1, "req": 1})
    registered = await worker.until("worker_registered")
    assert registered["worker_id"] == "w1" and registered["req"] == 1

    client.send(b'{"type":"submit_job","job_type":"echo","req":"a","payload":{"x": 1.50, "y":[1,2]}}')
    accepted = await client.until("job_accepted")
    assert accepted["req"] == "a" and accepted["created"] is True
    job_id = accepted["job_id"]

    assigned = await worker.until("job_assigned")
    assert assigned["job_id"] == job_id and assigned["attempt"] == 1
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 50, "message": "half"})
    progress = await client.until("job_update", progress=50.0)
    assert progress["message"] == "half" and progress["event_id"]
    worker.send(b'{"type":"complete_job","job_id":"' + job_id.encode() + b'","result":{"z": 1.50}}')
    await worker.until("job_completed_ack", job_id=job_id)
    done = await client.until("job_completed", job_id=job_id)
    assert done["result"] == {"z": 1.5}
    client.send({"type": "get_job_status", "job_id": job_id})
    status = await client.until("job_status")
    assert status["status"] == "completed" and status["worker_id"] == "w1"
    client.close()
    worker.close()


@pytest.mark.parametrize(("frame", "code"), [
    (b"not json", "bad_json"),
    (b"[1]", "bad_message"),
    (b'{"job_type": "a"}', "bad_message"),
    (b'{"type": "nope"}', "unknown_type"),
    (b'{"type": "complete_job", "job_id": "x", "result": 1}', "forbidden"),
    (b'{"type": "submit_job", "job_type": "a", "priority": 99999}', "bad_message"),
    (b'{"type": "submit_job", "job_type": "a", "payload": 1, "payload": 2}', "bad_message"),
    (b'{"type": "get_job_status", "job_id": "missing"}', "not_found"),
])
async def test_bad_input_gets_its_error_and_the_connection_stays(hub: Hub, frame: bytes, code: str) -> None:
    client = await connect(hub, "/ws/client")
    client.send(frame)
    error = await client.until("error")
    assert error["code"] == code and error["error"]
    client.send({"type": "get_stats", "req": 2})
    stats = await client.until("stats")
    assert stats["req"] == 2 and stats["pending"] == 0
    client.close()




async def test_priority_then_fifo_and_capability_matching(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    for job_id, priority in [("low", 0), ("high1", 5), ("other", 100), ("high2", 5)]:
        await submit(client, "other" if job_id == "other" else "a", job_id=job_id, priority=priority)
    worker = await register(hub, "w1", ["a"], concurrency=1)
    order = []
    for _ in range(3):
        job = await worker.until("job_assigned")
        assert job["job_type"] == "a"
        order.append(job["job_id"])
        worker.send({"type": "complete_job", "job_id": job["job_id"], "result": None})
    assert order == ["high1", "high2", "low"]
    client.close()
    worker.close()


async def test_two_clients_on_one_job_both_get_every_event(hub: Hub) -> None:
    first = await connect(hub, "/ws/client")
    second = await connect(hub, "/ws/client")
    job_id = await submit(first, "a")
    second.send({"type": "subscribe_job", "job_id": job_id})
    await second.until("subscribed")
    worker = await register(hub, "w1", ["a"])
    await worker.until("job_assigned")
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 10})
    worker.send({"type": "complete_job", "job_id": job_id, "result": [1]})
    for peer in (first, second):
        assert (await peer.until("job_update", progress=10.0))["job_id"] == job_id
        assert (await peer.until("job_completed"))["result"] == [1]


async def test_a_job_followed_by_many_clients_reaches_each_once_and_in_order(hub: Hub) -> None:
    """More subscribers than FAN_OUT_AT_ONCE: each event is written to each connection at once
    instead of with its other frames of the loop turn; none may be lost, doubled or reordered."""
    owner = await connect(hub, "/ws/client")
    job_id = await submit(owner, "a")
    followers = [await connect(hub, "/ws/client") for _ in range(FAN_OUT_AT_ONCE + 8)]
    for peer in followers:
        peer.send({"type": "subscribe_job", "job_id": job_id})
        await peer.until("subscribed")
    worker = await register(hub, "w1", ["a"])
    await worker.until("job_assigned")
    for pct in (10, 20, 30):
        worker.send({"type": "update_job_progress", "job_id": job_id, "progress": pct})
    worker.send({"type": "complete_job", "job_id": job_id, "result": "done"})
    for peer in [owner, *followers]:
        seen = []
        while not seen or seen[-1] != "completed":
            frame = await peer.next()
            if frame["type"] == "job_completed":
                seen.append("completed")
            elif frame["type"] == "job_update" and "progress" in frame:
                seen.append(frame["progress"])
        assert seen == [10.0, 20.0, 30.0, "completed"]
        peer.close()


async def test_offer_mode_two_racing_claimers_one_wins(hub: Hub) -> None:
    one = await register(hub, "o1", ["a"], concurrency=0)
    two = await register(hub, "o2", ["a"], concurrency=0)
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a")
    for peer in (one, two):
        assert (await peer.until("job_available"))["job_id"] == job_id
    one.send({"type": "claim_job", "job_id": job_id, "req": 1})
    two.send({"type": "claim_job", "job_id": job_id, "req": 2})
    answers = [await one.next(), await two.next()]
    kinds = sorted(a["type"] if a["type"] != "error" else a["code"] for a in answers)
    assert kinds == ["already_claimed", "job_assigned"]


async def test_a_vanished_workers_job_reruns_and_its_late_result_is_refused(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    hung = await register(hub, "hung", ["a"])
    job_id = await submit(client, "a")
    assert (await hung.until("job_assigned"))["job_id"] == job_id
    healthy = await register(hub, "healthy", ["a"])
    # "hung" keeps its socket open but sends no heartbeat: its lease (2 s) expires; "healthy"
    # heartbeats, as every worker must (dispatch skips a worker quiet for two intervals)
    await asyncio.sleep(1.0)
    healthy.send({"type": "worker_heartbeat"})
    again = await healthy.until("job_assigned", wait_s=10)
    assert again["job_id"] == job_id and again["attempt"] == 2
    failed = await client.until("job_failed")
    assert failed["final"] is False and "lease expired" in failed["error"]
    assert failed["status"] == "pending" and "retry_at" not in failed  # taken back: due at once
    hung.send({"type": "complete_job", "job_id": job_id, "result": "late", "req": 9})
    late = await hung.until("error")
    assert late["code"] == "lease_lost" and late["req"] == 9
    healthy.send({"type": "complete_job", "job_id": job_id, "result": "fresh"})
    assert (await client.until("job_completed"))["result"] == "fresh"
    client.send({"type": "get_job_status", "job_id": job_id})
    assert (await client.until("job_status"))["result"] == "fresh"


async def test_cancel_of_a_running_job_reaches_the_worker(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["a"])
    job_id = await submit(client, "a")
    await worker.until("job_assigned")
    client.send({"type": "cancel_job", "job_id": job_id})
    assert (await client.until("job_status"))["cancel_requested"] is True
    assert (await worker.until("cancel_job"))["job_id"] == job_id
    worker.send({"type": "fail_job", "job_id": job_id, "error": "cancelled", "retry": False})
    assert (await worker.until("job_failed_ack"))["status"] == "cancelled"
    await client.until("job_cancelled", job_id=job_id)


async def test_a_client_that_reconnects_with_since_gets_what_it_missed(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["a"])
    job_id = await submit(client, "a")
    await worker.until("job_assigned")
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 30})
    seen = await client.until("job_update", progress=30.0)
    client.close()
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 60})
    worker.send({"type": "complete_job", "job_id": job_id, "result": "done"})
    await worker.until("job_completed_ack")
    back = await connect(hub, "/ws/client")
    back.send({"type": "subscribe_job", "job_id": job_id, "since": seen["event_id"]})
    await back.until("subscribed")
    assert (await back.until("job_update"))["progress"] == 60.0
    assert (await back.until("job_completed"))["result"] == "done"


async def test_two_hubs_on_one_redis_act_as_one(backend: str, make_store: MakeStore) -> None:
    if backend != "redis":
        pytest.skip("the embedded store lives in one process: several hubs need a real Redis")
    hubs = []
    for _ in range(2):
        store = await make_store()
        h = Hub(store, HubConfig(port=0, http_port=0, sweep_interval_s=0.05, events_block_ms=50))
        await h.start()
        hubs.append(h)
    try:
        client = await connect(hubs[0], "/ws/client")
        worker = await register(hubs[1], "w1", ["a"])
        job_id = await submit(client, "a")
        assert (await worker.until("job_assigned"))["job_id"] == job_id
        worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 42})
        assert (await client.until("job_update", progress=42.0))["job_id"] == job_id
        client.send({"type": "cancel_job", "job_id": job_id})
        assert (await worker.until("cancel_job"))["job_id"] == job_id
    finally:
        for h in hubs:
            await h.stop()


async def test_a_job_for_the_one_idle_worker_is_claimed_by_the_submit_itself(make_store: MakeStore) -> None:
    """With one idle worker for the type on the hub, the submit's own store call claims the job for
    it (addJobs claims after adding): the worker gets it without the events reader or the sweep,
    which this hub never runs here, and the client's events still arrive in order once it reads."""
    store = await make_store()
    hub = Hub(store, HubConfig(port=0, http_port=0, sweep_interval_s=3600, stats_interval_s=3600,
                               events_block_ms=50))
    await hub.start()
    try:
        reader = hub.default_room.dispatch.tasks[0]
        reader.cancel()  # no events read back, no wake-ups: only the submit can hand the job out
        await asyncio.gather(reader, return_exceptions=True)
        worker = await register(hub, "w1", ["a"], concurrency=2)
        client = await connect(hub, "/ws/client")
        job_id = await submit(client, "a", {"n": 1})
        assigned = await worker.until("job_assigned", wait_s=2)
        assert assigned["job_id"] == job_id and assigned["payload"] == {"n": 1}
        assert (await store.get_job(job_id) or {})["status"] == "active"
        events = [(f[b"ev"], f[b"id"]) for _, f in await store.read_events("0") if f[b"ev"] != b"worker"]
        assert events == [(b"added", job_id.encode()), (b"assigned", job_id.encode())]
        client.close()
        worker.close()
    finally:
        await hub.stop()


async def test_new_jobs_are_shared_among_idle_workers(hub: Hub) -> None:
    for worker_id in ("first", "second"):
        await register(hub, worker_id, ["a"], concurrency=10)
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_jobs", "jobs": [{"job_type": "a"}] * 8, "req": 1})
    runs_on: list[str] = []
    accepted = False
    while not accepted or len(runs_on) < 8:  # events may come before the reply (protocol.md 4.1)
        frame = await client.until_any(("jobs_accepted", "job_update"))
        accepted = accepted or frame["type"] == "jobs_accepted"
        if frame.get("status") == "active":
            runs_on.append(frame["worker_id"])
    assert runs_on.count("first") >= 3 and runs_on.count("second") >= 3, runs_on


async def test_the_frames_of_one_loop_turn_go_out_in_one_socket_write(hub: Hub) -> None:
    """A fan-out of 20 events read in one batch reaches the client as 20 frames, in order, in far
    fewer socket writes (docs/performance.md: many frames per write)."""
    client = await connect(hub, "/ws/client")
    (peer,) = [p for p in hub.peers if p.role == "client"]
    jobs = [{"job_type": "nobody-runs-it", "job_id": f"j{i:02}"} for i in range(20)]
    writes = peer.writes
    client.send({"type": "submit_jobs", "req": 1, "jobs": jobs, "subscribe": True})
    # the events may come before the reply: the reader and the reply race on real Redis
    frames = [await client.next() for _ in range(len(jobs) + 1)]
    updates = [f for f in frames if f["type"] == "job_update"]
    assert [f["type"] for f in frames].count("jobs_accepted") == 1
    assert [u["job_id"] for u in updates] == [job["job_id"] for job in jobs]
    assert all(u["status"] == "pending" for u in updates)
    assert peer.writes - writes < len(frames) // 2, (peer.writes - writes)
    client.close()


async def test_a_whole_window_of_completions_gets_its_first_next_jobs_before_its_last_acks(hub: Hub) -> None:
    """A worker that finishes all its jobs at once: the hub completes them in parts
    (COMPLETIONS_PER_CALL), so the next jobs of the first part reach the worker while the later
    parts are still being stored, instead of the whole window going round in one piece
    (docs/performance.md). Every frame is still answered in order and each job completes once."""
    window = 3 * COMPLETIONS_PER_CALL
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["t"], concurrency=window)
    client.send({"type": "submit_jobs", "req": 1, "jobs": [{"job_type": "t"}] * (2 * window)})
    await client.until("jobs_accepted")
    assigned: dict[str, int] = {}
    while len(assigned) < window:
        frame = await worker.until("job_assigned")
        assigned[frame["job_id"]] = frame["attempt"]
    held = list(assigned)
    burst = []  # in one socket write, so the hub reads them as one run
    for n, job_id in enumerate(held):
        data = orjson.dumps({"type": "complete_job", "req": n, "job_id": job_id,
                             "attempt": assigned[job_id], "result": n})
        burst += [frame_header(len(data), b"mask"), masked_data(data, b"mask")]
    assert worker.transport is not None
    worker.transport.underlying_transport.write(b"".join(burst))
    seen: list[dict[str, Any]] = []
    while sum(f["type"] == "job_completed_ack" for f in seen) < window:
        seen.append(await worker.until_any(("job_completed_ack", "job_assigned", "error")))
    acks = [f["req"] for f in seen if f["type"] == "job_completed_ack"]
    assert acks == list(range(window))
    first_new = next(i for i, f in enumerate(seen) if f["type"] == "job_assigned")
    assert first_new < len(seen) - COMPLETIONS_PER_CALL, [f["type"] for f in seen]
    fresh = [f["job_id"] for f in seen if f["type"] == "job_assigned"]
    while len(fresh) < window:
        fresh.append((await worker.until("job_assigned"))["job_id"])
    assert len(set(fresh)) == window and not set(fresh) & set(held)  # no completed job came back
    assert (await hub.store.stats()).completed == window
    client.close()
    worker.close()


async def test_a_workers_pipelined_completions_are_answered_in_the_order_sent(hub: Hub) -> None:
    """Completion batches of one worker may be in flight together (Peer._flush): every frame is
    still answered in the order it was sent, a ping behind them included, and each job completes."""
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["t"], concurrency=40)
    ids = [await submit(client, "t") for _ in range(40)]
    assigned = {}
    while len(assigned) < len(ids):
        frame = await worker.until("job_assigned")
        assigned[frame["job_id"]] = frame["attempt"]
    for burst in (ids[:20], ids[20:]):  # two bursts, so the second can arrive while the first is in flight
        for job_id in burst:
            worker.send({"type": "complete_job", "req": ids.index(job_id), "job_id": job_id,
                         "attempt": assigned[job_id], "result": job_id})
        await asyncio.sleep(0)
    worker.send({"type": "ping", "req": "last"})
    replies = [await worker.until_any(("job_completed_ack", "pong", "error")) for _ in range(len(ids) + 1)]
    assert [r["req"] for r in replies] == [*range(len(ids)), "last"]
    assert all(r["type"] == "job_completed_ack" for r in replies[:-1])
    assert (await hub.store.stats()).completed == len(ids)
    client.close()
    worker.close()
