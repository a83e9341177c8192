"""Job dependencies through the hub (docs/job-control.md section 5): a pipeline submitted in one
submit_jobs runs in order, idle workers get a released child at once, a failure reaches the
children's subscribers, bad parents are bad_message, and the rule holds across two hubs and over a
hub restart (it lives in Redis). Real Redis and the embedded store."""

from __future__ import annotations

from support import MakeStore, WSPeer, connect, register, started_hub, submit

from empfast.hub import Hub


async def finish(worker: WSPeer, job_id: str, *, ok: bool = True) -> None:
    """Wait for `job_id` to be assigned to this worker, then complete it (or fail it for good)."""
    assigned = await worker.until("job_assigned", job_id=job_id, wait_s=5)
    if ok:
        worker.send({"type": "complete_job", "job_id": job_id, "attempt": assigned["attempt"], "result": 1})
    else:
        worker.send({"type": "fail_job", "job_id": job_id, "attempt": assigned["attempt"], "error": "boom",
                     "retry": False})


async def finish_all(worker: WSPeer, job_ids: set[str]) -> None:
    """Complete each of these jobs as it is assigned, in whatever order they come."""
    left = set(job_ids)
    while left:
        assigned = await worker.until("job_assigned", wait_s=5)
        assert assigned["job_id"] in left
        left.discard(assigned["job_id"])
        worker.send({"type": "complete_job", "job_id": assigned["job_id"], "attempt": assigned["attempt"],
                     "result": 1})


async def test_a_pipeline_in_one_submit_jobs_runs_in_order(hub: Hub) -> None:
    worker = await register(hub, "w1", ["a"], concurrency=4)
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_jobs", "req": 1, "jobs": [
        {"job_type": "a", "job_id": "root"},
        {"job_type": "a", "job_id": "left", "depends_on": ["root"]},
        {"job_type": "a", "job_id": "right", "depends_on": ["root"]},
        {"job_type": "a", "job_id": "join", "depends_on": ["left", "right"]},
    ]})
    accepted = await client.until("jobs_accepted")
    assert accepted["statuses"] == ["pending", "waiting", "waiting", "waiting"]
    await finish(worker, "root")
    # both released at once to the idle worker (the `pending` event wakes this hub's claims)
    await finish_all(worker, {"left", "right"})
    await finish(worker, "join")
    client.send({"type": "subscribe_job", "job_id": "join"})
    assert (await client.until("job_completed", job_id="join", wait_s=5))["job_id"] == "join"
    client.send({"type": "get_job_status", "req": 2, "job_id": "join"})
    status = await client.until("job_status")
    assert status["depends_on"] == ["left", "right"] and status["open_parents"] == 0


async def test_a_waiting_child_and_its_failure_are_told_to_its_subscriber(hub: Hub) -> None:
    worker = await register(hub, "w1", ["a"])
    client = await connect(hub, "/ws/client")
    parent = await submit(client, "a", subscribe=False)
    client.send({"type": "submit_job", "req": 1, "job_type": "a", "job_id": "child", "depends_on": [parent]})
    accepted = await client.until("job_accepted")
    assert accepted["status"] == "waiting" and "position" not in accepted
    client.send({"type": "get_job_status", "req": 2, "job_id": "child"})
    assert (await client.until("job_status"))["status"] == "waiting"
    await finish(worker, parent, ok=False)
    failed = await client.until("job_failed", job_id="child", wait_s=5)
    assert (failed["error"], failed["final"]) == (f"dependency failed: {parent} failed", True)


async def test_a_child_of_a_failed_parent_is_accepted_failed(hub: Hub) -> None:
    worker = await register(hub, "w1", ["a"])
    client = await connect(hub, "/ws/client")
    parent = await submit(client, "a", subscribe=False)
    await finish(worker, parent, ok=False)
    await worker.until("job_failed_ack")  # the parent is failed now
    client.send({"type": "submit_job", "req": 1, "job_type": "a", "job_id": "late", "depends_on": [parent]})
    assert (await client.until("job_accepted"))["status"] == "failed"
    failed = await client.until("job_failed", job_id="late", wait_s=5)
    assert failed["error"] == f"dependency failed: {parent} failed"


async def test_bad_parents_are_bad_message_and_add_nothing(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_job", "req": 1, "job_type": "a", "job_id": "c", "depends_on": ["ghost"]})
    error = await client.until("error", req=1)
    assert error["code"] == "bad_message" and "ghost" in str(error["error"])
    client.send({"type": "submit_job", "req": 2, "job_type": "a", "job_id": "c", "depends_on": []})
    assert (await client.until("error", req=2))["field"] == "depends_on"
    client.send({"type": "submit_jobs", "req": 3, "jobs": [
        {"job_type": "a", "job_id": "x"}, {"job_type": "a", "job_id": "y", "depends_on": ["y"]}]})
    error = await client.until("error", req=3)
    assert error["code"] == "bad_message" and "itself" in str(error["error"])
    for job_id in ("c", "x", "y"):
        assert await hub.store.get_job(job_id) is None


async def test_a_child_added_on_one_hub_runs_when_its_parent_completes_on_another(
        make_store: MakeStore) -> None:
    async with started_hub(make_store) as first, started_hub(make_store) as second:
        client = await connect(first, "/ws/client")
        parent = await submit(client, "a", subscribe=False)
        child = await submit(client, "b", depends_on=[parent])
        parent_worker = await register(second, "w1", ["a"])
        child_worker = await register(second, "w2", ["b"])  # idle: woken by first's release
        await finish(parent_worker, parent)
        await finish(child_worker, child)
        assert (await client.until("job_completed", job_id=child, wait_s=5))["job_id"] == child


async def test_the_rule_outlives_a_hub_restart(make_store: MakeStore) -> None:
    async with started_hub(make_store) as first:
        client = await connect(first, "/ws/client")
        parent = await submit(client, "a", subscribe=False)
        child = await submit(client, "a", subscribe=False, depends_on=[parent])
    async with started_hub(make_store) as again:
        worker = await register(again, "w1", ["a"])
        await finish(worker, parent)
        await finish(worker, child)
        watcher = await connect(again, "/ws/client")
        watcher.send({"type": "subscribe_job", "job_id": child})
        assert (await watcher.until("job_completed", job_id=child, wait_s=5))["job_id"] == child


async def test_list_jobs_and_stats_show_waiting_jobs(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    client = await connect(hub, "/ws/client")
    parent = await submit(client, "a", subscribe=False)
    await submit(client, "a", subscribe=False, job_id="c", depends_on=[parent])
    monitor.send({"type": "list_jobs", "req": 1, "status": "waiting"})
    page = await monitor.until("jobs")
    assert [row["job_id"] for row in page["rows"]] == ["c"]
    monitor.send({"type": "get_stats", "req": 2})
    stats = await monitor.until("stats")
    assert stats["waiting"] == 1 and stats["by_type"]["a"]["waiting"] == 1
