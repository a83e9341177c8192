"""Timeouts, run_at and expiry through the hub (docs/job-control.md sections 1 and 2): the worker is
told, its late outcome is refused, and the deadline holds across hubs and a hub restart. Real Redis
and the embedded store (several hubs share one fakeredis server through make_store)."""

from __future__ import annotations

import asyncio
import time

from support import MakeStore, WSPeer, connect, register, submit

from empfast.config import HubConfig
from empfast.hub import Hub
from empfast.limits import MAX_DELAY_S

FAST = {"sweep_interval_s": 0.05, "stats_interval_s": 0.05, "events_block_ms": 50}


async def test_a_timed_out_attempt_is_cancelled_refused_retried_then_dead_lettered(hub: Hub) -> None:
    worker = await register(hub, "w1", ["a"])
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a", timeout_s=0.4, max_attempts=2)
    assigned = await worker.until("job_assigned")
    assert (assigned["job_id"], assigned["attempt"]) == (job_id, 1)
    # neither a heartbeat nor progress extends the deadline
    worker.send({"type": "worker_heartbeat"})
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 50})
    cancel = await worker.until("cancel_job", wait_s=3)
    assert cancel == {"type": "cancel_job", "job_id": job_id, "reason": "timeout"}
    failed = await client.until("job_failed")
    assert (failed["error"], failed["final"], failed["attempt"]) == ("timeout", False, 1)
    assert failed["worker_id"] == "w1"
    # the late completion of the timed-out attempt is refused; its slot was freed, so the retry
    # (pending at once) comes back to it, before or after that answer
    worker.send({"type": "complete_job", "req": 9, "job_id": job_id, "attempt": 1, "result": "late"})
    seen: dict[str, dict[str, object]] = {}
    while len(seen) < 2:
        frame = await worker.until_any(("error", "job_assigned"), wait_s=3)
        seen[str(frame["type"])] = frame
    assert seen["error"]["code"] == "lease_lost" and seen["error"]["req"] == 9
    assert (seen["job_assigned"]["job_id"], seen["job_assigned"]["attempt"]) == (job_id, 2)
    assert (await worker.until("cancel_job", wait_s=3))["reason"] == "timeout"
    final = await client.until("job_failed", final=True, wait_s=3)
    assert (final["error"], final["attempt"]) == ("timeout", 2)
    job = await hub.store.get_job(job_id) or {}
    assert (job["status"], job["errors"], job.get("result")) == ("failed", ["timeout", "timeout"], None)


async def test_the_job_status_shows_the_timeout_and_the_expiry(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "nobody-runs-this", timeout_s=2.5, ttl_s=60)
    client.send({"type": "get_job_status", "req": 2, "job_id": job_id})
    status = await client.until("job_status")
    assert status["timeout_ms"] == 2_500 and status["expires_at"] - status["created_at"] == 60_000


async def test_a_deadline_outlives_the_workers_hub_and_a_hub_started_later_enforces_it(
        make_store: MakeStore) -> None:
    long_lease = {"lease_ms": 20_000, "liveness_ms": 20_000}
    first = Hub(await make_store(**long_lease), HubConfig(port=0, http_port=0, **FAST))
    await first.start()
    worker = await register(first, "w1", ["a"])
    client = await connect(first, "/ws/client")
    job_id = await submit(client, "a", timeout_s=1.0, subscribe=False)
    await worker.until("job_assigned")
    await first.stop()  # the worker's hub is gone: its lease (20 s) and liveness stand meanwhile
    # a hub started afterwards on the same Redis (a restart, or another hub of the queue) enforces it
    second = Hub(await make_store(**long_lease), HubConfig(port=0, http_port=0, **FAST))
    await second.start()
    try:
        watcher = await connect(second, "/ws/client")
        watcher.send({"type": "subscribe_job", "job_id": job_id})
        await watcher.until("subscribed")
        failed = await watcher.until("job_failed", wait_s=5)
        assert (failed["error"], failed["worker_id"], failed["final"]) == ("timeout", "w1", False)
    finally:
        await second.stop()


async def test_any_hubs_sweep_times_out_a_worker_of_another_hub(make_store: MakeStore) -> None:
    """The worker's hub does not sweep here: the other hub's sweep fails the attempt, and the
    `failed` event brings cancel_job to the worker through its own hub."""
    quiet = Hub(await make_store(), HubConfig(port=0, http_port=0, **{**FAST, "sweep_interval_s": 3600}))
    sweeping = Hub(await make_store(), HubConfig(port=0, http_port=0, **FAST))
    await quiet.start()
    await sweeping.start()
    try:
        worker = await register(quiet, "w1", ["a"])
        client = await connect(sweeping, "/ws/client")
        job_id = await submit(client, "a", timeout_s=0.3)
        await worker.until("job_assigned")
        assert await worker.until("cancel_job", wait_s=3) == {"type": "cancel_job", "job_id": job_id,
                                                               "reason": "timeout"}
        assert (await client.until("job_failed"))["error"] == "timeout"
    finally:
        await quiet.stop()
        await sweeping.stop()


async def test_run_at_schedules_a_job_and_a_past_one_runs_at_once(hub: Hub) -> None:
    worker = await register(hub, "w1", ["a"], concurrency=2)
    client = await connect(hub, "/ws/client")
    started = time.time()
    client.send({"type": "submit_job", "req": 1, "job_type": "a", "job_id": "later", "run_at": started + 0.6})
    assert (await client.until("job_accepted"))["status"] == "scheduled"
    client.send({"type": "submit_job", "req": 2, "job_type": "a", "job_id": "past", "run_at": started - 60})
    assert (await client.until("job_accepted"))["status"] == "pending"
    assert (await worker.until("job_assigned"))["job_id"] == "past"
    assert (await worker.until("job_assigned", wait_s=3))["job_id"] == "later"
    assert time.time() - started >= 0.5  # Redis's clock and ours are one here


async def refused(client: WSPeer, req: int, **body: object) -> dict[str, object]:
    client.send({"type": "submit_job", "req": req, "job_type": "a", "job_id": f"bad-{req}", **body})
    error = await client.until("error", req=req)
    assert error["code"] == "bad_message"
    return error


async def test_bad_times_are_bad_message_and_add_nothing(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    now = time.time()
    both = await refused(client, 1, delay_s=5, run_at=now + 5)
    assert both["field"] == "run_at" and "not both" in str(both["error"])
    both = await refused(client, 2, ttl_s=5, expires_at=now + 5)
    assert both["field"] == "expires_at"
    far = await refused(client, 3, run_at=now + MAX_DELAY_S + 3600)
    assert f"at most {MAX_DELAY_S} s from now" in str(far["error"])
    assert (await refused(client, 4, timeout_s=0))["field"] == "timeout_s"
    assert (await refused(client, 5, ttl_s=MAX_DELAY_S + 1))["field"] == "ttl_s"
    assert (await refused(client, 6, run_at=None))["field"] == "run_at"
    await refused(client, 7, expires_at=now - 10)
    client.send({"type": "submit_jobs", "req": 8, "jobs": [{"job_type": "a", "job_id": "ok"},
                                                          {"job_type": "a", "timeout_s": 1e9}]})
    assert (await client.until("error", req=8))["field"] == "jobs[1].timeout_s"
    for job_id in ("ok", *(f"bad-{i}" for i in range(1, 8))):
        assert await hub.store.get_job(job_id) is None


async def test_an_expired_job_ends_failed_and_its_subscriber_is_told(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "nobody-runs-this", ttl_s=0.3)
    scheduled = await submit(client, "nobody-runs-this", delay_s=0.2, expires_at=time.time() + 0.4)
    for one in (job_id, scheduled):
        failed = await client.until("job_failed", job_id=one, wait_s=3)
        assert (failed["error"], failed["final"]) == ("expired", True)
    await asyncio.sleep(0.1)
    assert (await hub.store.stats()).failed == 2
