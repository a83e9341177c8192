"""A worker's batch frames over real sockets (docs/protocol.md 4.2 `complete_jobs`, 4.4
`jobs_assigned`): jobs given out together come in one frame to a worker that asked for it, the
outcomes of many jobs go back in one frame, and each item is judged exactly as its own
`complete_job` would be: stored once, a repeat acknowledged and unchanged, a refused one changing
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import MakeStore, WSPeer, connect, register, submit

from empfast.config import HubConfig
from empfast.hub import Hub


async def status_of(client: WSPeer, job_id: str) -> dict[str, Any]:
    client.send({"type": "get_job_status", "job_id": job_id})
    return await client.until("job_status", job_id=job_id)


async def test_a_batch_worker_gets_jobs_together_and_each_item_of_its_complete_jobs_is_judged_alone(
        hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_jobs", "req": 1, "subscribe": False,
                 "jobs": [{"job_type": "a", "job_id": f"j{n}", "payload": {"n": n}} for n in range(5)]})
    await client.until("jobs_accepted")
    worker = await register(hub, "w1", ["a"], concurrency=3, batch=True)
    first = await worker.until("jobs_assigned")
    assert [(j["job_id"], j["attempt"], j["payload"]) for j in first["jobs"]] == [
        ("j0", 1, {"n": 0}), ("j1", 1, {"n": 1}), ("j2", 1, {"n": 2})]
    assert first["lease_s"] == hub.store.settings.lease_ms / 1000
    worker.send({"type": "complete_jobs", "req": "c", "jobs": [
        {"job_id": "j0", "attempt": 1, "result": {"ok": 0}},
        {"job_id": "j1", "result": "no attempt: the one assigned"},
        {"job_id": "missing", "attempt": 1, "result": 1},
        {"job_id": "j2", "attempt": 7, "result": "stale"},
        {"job_id": "j0", "attempt": 1, "result": "a repeat changes nothing"}]})
    ack = await worker.until("jobs_completed_ack")
    assert ack["req"] == "c" and ack["job_ids"] == ["j0", "j1", "j0"]
    assert [(r["job_id"], r["code"]) for r in ack["refused"]] == [("missing", "not_found"),
                                                                  ("j2", "lease_lost")]
    assert all(r["error"] for r in ack["refused"])
    # the two freed slots got the two jobs left, in one frame again
    second = await worker.until("jobs_assigned")
    assert [j["job_id"] for j in second["jobs"]] == ["j3", "j4"]
    assert (await status_of(client, "j0"))["result"] == {"ok": 0}
    assert (await status_of(client, "j1"))["result"] == "no attempt: the one assigned"
    assert (await status_of(client, "j2"))["status"] == "active"  # the stale item changed nothing
    worker.send({"type": "complete_jobs", "req": "d", "jobs": [
        {"job_id": "j2", "attempt": 1}, {"job_id": "j3", "attempt": 1}, {"job_id": "j4", "attempt": 1}]})
    assert (await worker.until("jobs_completed_ack"))["job_ids"] == ["j2", "j3", "j4"]
    assert (await status_of(client, "j4"))["status"] == "completed"


async def test_a_complete_jobs_with_a_bad_item_is_refused_whole_and_stores_nothing(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a")
    worker = await register(hub, "w1", ["a"], batch=True)
    await worker.until("jobs_assigned")
    worker.send({"type": "complete_jobs", "req": 1, "jobs": [{"job_id": job_id, "result": 1}, {"job_id": 5}]})
    error = await worker.until("error")
    assert (error["req"], error["code"], error["field"]) == (1, "bad_message", "jobs[1].job_id")
    worker.send({"type": "complete_jobs", "req": 2, "jobs": []})
    assert (await worker.until("error"))["field"] == "jobs"
    worker.send({"type": "complete_jobs", "req": 3, "jobs": [{"job_id": job_id}] * 1001})
    assert (await worker.until("error"))["code"] == "limit_exceeded"
    assert (await status_of(client, job_id))["status"] == "active"


@pytest.fixture
async def small_hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    """A hub with a 64 KiB frame limit."""
    h = Hub(await make_store(), HubConfig(port=0, http_port=0, max_frame_bytes=64 << 10, events_block_ms=50))
    await h.start()
    yield h
    await h.stop()


async def test_any_worker_may_send_complete_jobs_and_a_result_over_the_limit_refuses_only_its_item(
        small_hub: Hub) -> None:
    client = await connect(small_hub, "/ws/client")
    ids = [await submit(client, "a") for _ in range(2)]
    worker = await register(small_hub, "w1", ["a"], concurrency=2)  # not a batch worker
    assert {(await worker.until("job_assigned"))["job_id"] for _ in ids} == set(ids)
    worker.send({"type": "complete_jobs", "req": 1, "jobs": [
        {"job_id": ids[0], "result": "y" * (62 << 10)}, {"job_id": ids[1], "result": "fits"}]})
    ack = await worker.until("jobs_completed_ack")
    assert ack["job_ids"] == [ids[1]]
    ((refused,),) = [ack["refused"]]
    assert (refused["job_id"], refused["code"], refused["field"]) == (ids[0], "limit_exceeded", "result")
    assert (await status_of(client, ids[0]))["status"] == "active"
    assert (await status_of(client, ids[1]))["result"] == "fits"


async def test_a_batch_worker_back_on_a_new_connection_gets_its_held_jobs_in_one_frame(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    ids = [await submit(client, "a") for _ in range(3)]
    first = await register(hub, "w1", ["a"], concurrency=3, batch=True)
    held = [j["job_id"] for j in (await first.until("jobs_assigned"))["jobs"]]
    assert sorted(held) == sorted(ids)
    first.close()
    again = await register(hub, "w1", ["a"], concurrency=3, batch=True)
    resent = await again.until("jobs_assigned")
    assert sorted(j["job_id"] for j in resent["jobs"]) == sorted(ids)
    assert all(j["reassigned"] is True and j["attempt"] == 1 for j in resent["jobs"])
