"""A job type's limits through the hubs (docs/job-control.md 3): set by a monitor, enforced across
workers of two hubs, a freed slot filled at once (no sweep: the hubs' safety net is 30 s away
here), a rate held back until its next token, and a cleared limit releasing the waiting jobs. Real
Redis and the embedded store (two hubs share one fakeredis server through make_store)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from support import WSPeer, connect, register, submit

from empfast.hub import Hub


async def assigned(worker: WSPeer, wait_s: float) -> list[dict[str, Any]]:
    """Every job_assigned frame the worker gets within wait_s."""
    frames = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await worker.until("job_assigned", wait_s=wait_s))
    return frames


async def set_limits(monitor: WSPeer, req: int, **limits: object) -> dict[str, Any]:
    monitor.send({"type": "set_type_limits", "req": req, "job_type": "a", **limits})
    return await monitor.until_any(("type_limits", "error"))


async def test_a_concurrency_limit_holds_across_two_hubs_and_a_freed_slot_is_filled_at_once(
        two_hubs: tuple[Hub, Hub]) -> None:
    one, two = two_hubs
    monitor = await connect(one, "/ws/monitor")
    reply = await set_limits(monitor, 1, concurrency=2)
    assert reply["type"] == "type_limits" and (reply["concurrency"], reply["rate"]) == (2, None)
    assert reply["limits"] == {"a": {"concurrency": 2, "rate": None, "per_s": None,
                                     "group_concurrency": None}}
    workers = [await register(one, "w1", ["a"], 5), await register(two, "w2", ["a"], 5)]
    client = await connect(two, "/ws/client")
    for _ in range(6):
        await submit(client, "a", subscribe=False)
    running = [f for w in workers for f in await assigned(w, 0.5)]
    assert len(running) == 2  # of 10 free slots, two hubs
    stats = await one.store.stats()
    assert (stats.by_type["a"]["active"], stats.by_type["a"]["pending"]) == (2, 4)
    # a completion frees one slot: a worker (of either hub) gets the next job, well before a sweep
    done = running[0]
    job = await one.store.get_job(done["job_id"]) or {}
    owner = workers[0] if job.get("worker") == "w1" else workers[1]
    owner.send({"type": "complete_job", "job_id": done["job_id"], "attempt": done["attempt"], "result": 1})
    refill = [f for w in workers for f in await assigned(w, 0.5)]
    assert len(refill) == 1
    assert (await one.store.stats()).by_type["a"]["active"] == 2
    # clearing the limit releases the three still waiting at once
    reply = await set_limits(monitor, 2, concurrency=None)
    assert (reply["concurrency"], reply["limits"]) == (None, {})
    rest = [f for w in workers for f in await assigned(w, 0.5)]
    assert len(rest) == 3
    assert (await one.store.stats()).by_type["a"]["pending"] == 0


async def test_a_rate_limit_starts_jobs_as_tokens_come_due_and_bad_values_are_refused(
        two_hubs: tuple[Hub, Hub]) -> None:
    one, _ = two_hubs
    monitor = await connect(one, "/ws/monitor")
    bad = await set_limits(monitor, 1, rate=0)
    assert (bad["type"], bad["code"]) == ("error", "bad_message")
    bad = await set_limits(monitor, 2, rate=3, per_s=0)
    assert (bad["type"], bad["code"]) == ("error", "bad_message")
    assert await one.store.type_limits() == {}
    reply = await set_limits(monitor, 3, rate=3, per_s=0.6)  # a token every 0.2 s
    assert (reply["rate"], reply["per_s"]) == (3, 0.6)
    worker = await register(one, "w1", ["a"], 20)
    client = await connect(one, "/ws/client")
    for _ in range(5):
        await submit(client, "a", subscribe=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    first = await assigned(worker, 0.1)
    assert len(first) == 3  # the full bucket
    # the other two, one per token (the hub's timer for the type), not waiting for a sweep
    more = [await worker.until("job_assigned", wait_s=2), await worker.until("job_assigned", wait_s=2)]
    took = loop.time() - start
    assert len(more) == 2 and 0.3 <= took < 1.5
    stats = await one.store.stats()
    assert stats.as_dict()["limits"] == {"a": {"concurrency": None, "rate": 3, "per_s": 0.6,
                                               "group_concurrency": None}}
