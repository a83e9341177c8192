"""Bulk actions and pausing through the hub (docs/management.md section 3; docs/protocol.md 4.3), on
real Redis and the embedded store: a monitor's retry_jobs and remove_jobs reply at once, report
progress per slice and end with the counts; one action at a time per connection; a paused type's
jobs wait while its workers stay idle, and resuming hands them out at once, on every hub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import MakeStore, WSPeer, connect, register, started_hub, submit

from empfast.client import Disconnected, Monitor
from empfast.hub import Hub
from empfast.limits import BULK_SLICE
from empfast.store import NewJob


async def cancelled_jobs(hub: Hub, job_type: str, count: int) -> list[str]:
    """`count` jobs of `job_type`, each cancelled while pending."""
    ids = [f"{job_type}-{n}" for n in range(count)]
    for start in range(0, count, 1000):
        await hub.store.add_jobs([NewJob(job_type, job_id=job_id) for job_id in ids[start:start + 1000]])
    for start in range(0, count, 50):  # within the client's connection pool
        await asyncio.gather(*(hub.store.cancel(job_id) for job_id in ids[start:start + 50]))
    return ids


async def frames_until_done(monitor: WSPeer, action_id: str) -> list[dict[str, Any]]:
    """The bulk_progress frames of an action and its bulk_done, in order."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = await monitor.until_any(("bulk_progress", "bulk_done"), wait_s=20)
        assert frame["action_id"] == action_id
        seen.append(frame)
        if frame["type"] == "bulk_done":
            return seen


async def test_a_bulk_retry_reports_each_slice_and_makes_every_job_pending(hub: Hub) -> None:
    count = 2 * BULK_SLICE + 100
    await cancelled_jobs(hub, "a", count)
    await cancelled_jobs(hub, "b", 10)
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "retry_jobs", "status": "cancelled", "job_type": "a", "req": 1})
    started = await monitor.until("bulk_started")
    assert (started["req"], started["action"], started["total"], started["dry_run"]) == (
        1, "retry_jobs", count + 10, False)
    progress = await frames_until_done(monitor, started["action_id"])
    assert [f["type"] for f in progress] == ["bulk_progress", "bulk_progress", "bulk_done"]
    assert [f["looked"] for f in progress] == [BULK_SLICE, 2 * BULK_SLICE, count + 10]
    assert progress[-1]["jobs"] == count and "error" not in progress[-1]
    stats = await hub.store.stats()
    assert (stats.pending, stats.cancelled) == (count, 10)
    assert stats.by_type["a"]["retried"] == count
    monitor.close()


async def test_a_dry_run_counts_and_a_removal_then_takes_the_jobs(hub: Hub) -> None:
    await cancelled_jobs(hub, "a", 30)
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "remove_jobs", "status": "cancelled", "dry_run": True, "req": "dry"})
    started = await monitor.until("bulk_started")
    (done,) = await frames_until_done(monitor, started["action_id"])
    assert (done["jobs"], done["dry_run"]) == (30, True)
    assert (await hub.store.stats()).cancelled == 30
    # older_than_s: the jobs were cancelled just now, so none is a day old
    monitor.send({"type": "remove_jobs", "status": "cancelled", "older_than_s": 86400, "req": "old"})
    started = await monitor.until("bulk_started")
    assert started["total"] == 0
    (done,) = await frames_until_done(monitor, started["action_id"])
    assert done["jobs"] == 0
    monitor.send({"type": "remove_jobs", "status": "cancelled", "req": "all"})
    started = await monitor.until("bulk_started")
    (done,) = await frames_until_done(monitor, started["action_id"])
    assert done["jobs"] == 30
    assert (await hub.store.stats()).cancelled == 0 and await hub.store.get_job("a-7") is None
    monitor.close()


async def test_one_bulk_action_at_a_time_per_connection(hub: Hub) -> None:
    await cancelled_jobs(hub, "a", 3 * BULK_SLICE)
    monitor = await connect(hub, "/ws/monitor")
    # both in one write: the second is handled while the first's slices run
    monitor.transport.send(  # type: ignore[union-attr]
        1, b'{"type":"retry_jobs","status":"cancelled","dry_run":true,"req":1}')
    monitor.send({"type": "retry_jobs", "status": "cancelled", "req": 2})
    started = await monitor.until("bulk_started")
    refused = await monitor.until("error")
    assert (refused["req"], refused["code"], refused["limit"]) == (2, "limit_exceeded", 1)
    await frames_until_done(monitor, started["action_id"])
    assert (await hub.store.stats()).cancelled == 3 * BULK_SLICE  # the refused retry changed nothing
    monitor.send({"type": "retry_jobs", "status": "cancelled", "req": 3})  # the first is done: room again
    started = await monitor.until("bulk_started")
    assert (await frames_until_done(monitor, started["action_id"]))[-1]["jobs"] == 3 * BULK_SLICE
    monitor.close()


async def test_bad_bulk_requests_are_refused_and_change_nothing(hub: Hub) -> None:
    await cancelled_jobs(hub, "a", 3)
    monitor = await connect(hub, "/ws/monitor")
    for bad in ({"type": "retry_jobs", "status": "completed"}, {"type": "remove_jobs"},
                {"type": "remove_jobs", "status": "cancelled", "older_than_s": -1},
                {"type": "pause_type", "job_type": ""}, {"type": "retry_jobs", "attempts": 0}):
        monitor.send({**bad, "req": "bad"})
        refused = await monitor.until("error")
        assert refused["code"] == "bad_message" and refused["field"], (bad, refused)
    client = await connect(hub, "/ws/client")
    client.send({"type": "remove_jobs", "status": "cancelled", "req": 1})
    assert (await client.until("error"))["code"] == "forbidden"
    assert (await hub.store.stats()).cancelled == 3
    monitor.close()
    client.close()


@pytest.mark.parametrize("hubs", [1, 2])
async def test_a_paused_type_waits_and_resuming_hands_its_jobs_out(make_store: MakeStore, hubs: int) -> None:
    # with two hubs, the worker and the pausing monitor are on different hubs
    async with started_hub(make_store) as first, started_hub(make_store) as second:
        worker_hub, monitor_hub = (first, second) if hubs == 2 else (first, first)
        worker = await register(worker_hub, "w1", ["a", "b"], concurrency=5)
        monitor = await connect(monitor_hub, "/ws/monitor")
        watcher = await connect(worker_hub, "/ws/monitor")
        monitor.send({"type": "pause_type", "job_type": "a", "req": 1})
        reply = await monitor.until("type_paused", req=1)
        assert (reply["paused"], reply["paused_types"], reply["pending"]) == (True, ["a"], 0)
        told = await watcher.until("type_paused")
        assert (told["job_type"], told["paused"]) == ("a", True) and told["event_id"]

        client = await connect(worker_hub, "/ws/client")
        waiting = [await submit(client, "a") for _ in range(3)]
        other = await submit(client, "b")
        assert (await worker.until("job_assigned"))["job_id"] == other  # b still runs
        with pytest.raises(TimeoutError):
            await worker.until("job_assigned", wait_s=0.5)
        monitor.send({"type": "get_stats", "req": 2})
        stats = await monitor.until("stats", req=2)
        assert stats["paused"] == ["a"] and stats["by_type"]["a"]["pending"] == 3

        monitor.send({"type": "resume_type", "job_type": "a", "req": 3})
        reply = await monitor.until("type_paused", req=3)
        assert (reply["paused"], reply["paused_types"], reply["pending"]) == (False, [], 3)
        got = [(await worker.until("job_assigned"))["job_id"] for _ in range(3)]
        assert got == waiting  # in their order, without a new submit to wake anyone
        for peer in (worker, monitor, watcher, client):
            peer.close()


async def test_the_monitor_sdk_follows_a_bulk_action_to_its_end(hub: Hub) -> None:
    await cancelled_jobs(hub, "a", BULK_SLICE + 5)
    seen: list[dict[str, Any]] = []
    async with Monitor(f"ws://127.0.0.1:{hub.port}") as monitor:
        would = await monitor.retry_jobs(status="cancelled", dry_run=True, on_progress=seen.append)
        assert (would.jobs, would.dry_run, would.code) == (BULK_SLICE + 5, True, None)
        assert [f["type"] for f in seen] == ["bulk_started", "bulk_progress"]
        removed = await monitor.remove_jobs("cancelled", job_type="a")
        assert (removed.action, removed.jobs) == ("remove_jobs", BULK_SLICE + 5)
        assert (await monitor.pause_type("a"))["paused_types"] == ["a"]
        assert (await monitor.stats())["paused"] == ["a"]
        assert (await monitor.resume_type("a"))["paused_types"] == []
        assert await monitor.workers() == []


async def test_a_bulk_action_whose_connection_drops_says_so(hub: Hub) -> None:
    await cancelled_jobs(hub, "a", 3 * BULK_SLICE)

    def drop(frame: dict[str, Any]) -> None:
        if frame["type"] == "bulk_started":
            assert monitor.connection.transport is not None
            monitor.connection.transport.disconnect()

    async with Monitor(f"ws://127.0.0.1:{hub.port}") as monitor:
        monitor.connection.backoff_base_s = 0.05
        with pytest.raises(Disconnected, match="run it again to go on"):
            await monitor.retry_jobs(status="cancelled", on_progress=drop)
        # the hub stopped the action with its connection; running it again finishes the rest
        outcome = await monitor.retry_jobs(status="cancelled")
    assert (await hub.store.stats()).cancelled == 0 and outcome.jobs <= 3 * BULK_SLICE
