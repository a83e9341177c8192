"""Groups through the hub (docs/job-control.md 4): `group` on submit_job and submit_jobs, in
job_status, from the Python SDKs and REST; a worker gets a late tenant's jobs before the earlier
tenant's backlog; a bad group is refused and adds nothing. Real Redis and the embedded store."""

from __future__ import annotations

import asyncio

from support import connect, register, submit
from test_http import call
from test_hub_type_limits import assigned

from empfast.client import Client, JobSpec
from empfast.hub import Hub
from empfast.worker import Job, Worker


async def test_a_worker_gets_the_tenants_jobs_in_turn(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    backlog = [{"job_type": "report", "job_id": f"a{i}", "group": "A"} for i in range(20)]
    client.send({"type": "submit_jobs", "req": 1, "jobs": backlog, "subscribe": False})
    assert (await client.until("jobs_accepted"))["statuses"] == ["pending"] * 20
    late = await submit(client, "report", job_id="b0", group="B")
    worker = await register(hub, "w", ["report"], concurrency=1)
    order = []
    for _ in range(3):
        assigned = await worker.until("job_assigned")
        order.append(assigned["job_id"])
        worker.send({"type": "complete_job", "job_id": assigned["job_id"], "attempt": assigned["attempt"],
                     "result": None})
    assert order == ["a0", late, "a1"]
    client.send({"type": "get_job_status", "req": 2, "job_id": late})
    status = await client.until("job_status")
    assert (status["group"], status["status"]) == ("B", "completed")
    client.send({"type": "get_job_status", "req": 3, "job_id": "a5"})
    assert (await client.until("job_status"))["group"] == "A"


async def test_a_bad_group_is_refused_and_adds_nothing(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    bad = [("x" * 129, "length <= 128"), ("a\u0007b", "control characters"), ("\u00e9" * 65, "1 to 128"),
           ("", "length >= 1")]
    for group, why in bad:
        jobs = [{"job_type": "t", "job_id": "fine"}, {"job_type": "t", "job_id": "bad", "group": group}]
        client.send({"type": "submit_jobs", "req": 4, "jobs": jobs})
        error = await client.until("error")
        assert (error["code"], error["field"]) == ("bad_message", "jobs[1].group"), error
        assert why in error["error"], error
    assert await hub.store.get_job("fine") is None
    assert await hub.store.redis.hget(hub.store.keys.meta, "grouped") is None


async def test_the_sdks_and_rest_carry_the_group(http_hub: Hub) -> None:
    url = f"ws://127.0.0.1:{http_hub.port}"
    ran: list[str] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        ran.append(job.payload["tenant"])
        if len(ran) == 12:
            done.set()

    async with Client(url) as client:
        await client.submit_many([JobSpec("mail", {"tenant": "big"}, group="big")] * 10)
        late = await client.submit("mail", {"tenant": "small"}, group="small")
        posted = await call(http_hub, "POST", "/api/jobs", {"job_type": "mail", "payload": {"tenant": "rest"},
                                                            "group": "rest"})
        assert posted.status == 201
        rest_id = posted.json()["job_id"]
        read = await call(http_hub, "GET", f"/api/jobs/{rest_id}")
        assert read.json()["group"] == "rest"
        worker = Worker(url, {"mail": handler}, worker_id="sdk-w", concurrency=1)
        await worker.start()
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await worker.stop()
        # one of big's jobs, then the late tenants' in their turn, not after big's backlog
        assert ran[:3] == ["big", "small", "rest"], ran
        assert (await client.status(late.job_id))["group"] == "small"


async def test_a_group_limit_holds_across_two_hubs_and_a_freed_slot_is_filled_at_once(
        two_hubs: tuple[Hub, Hub]) -> None:
    """group_concurrency, set by a monitor on one hub, holds for the workers of both; a job of a
    group at its limit starts as soon as one of the group's jobs ends, with no sweep."""
    one, two = two_hubs
    monitor = await connect(one, "/ws/monitor")
    monitor.send({"type": "set_type_limits", "req": 1, "job_type": "a", "group_concurrency": 1})
    reply = await monitor.until("type_limits", req=1)  # (its push may come first)
    assert reply["group_concurrency"] == 1 and reply["limits"]["a"]["group_concurrency"] == 1
    workers = [await register(one, "w1", ["a"], 5), await register(two, "w2", ["a"], 5)]
    client = await connect(two, "/ws/client")
    jobs = [{"job_type": "a", "job_id": f"{g}{i}", "group": g} for g in "AB" for i in range(3)]
    client.send({"type": "submit_jobs", "req": 2, "jobs": jobs, "subscribe": False})
    await client.until("jobs_accepted")
    running = {w: [f["job_id"] for f in await assigned(w, 0.5)] for w in workers}
    assert sorted(j for ids in running.values() for j in ids) == ["A0", "B0"]  # one of each group
    holder = next(w for w, ids in running.items() if "A0" in ids)
    holder.send({"type": "complete_job", "job_id": "A0", "attempt": 1, "result": None})
    after = [f["job_id"] for w in workers for f in await assigned(w, 1.0)]
    assert after == ["A1"]
