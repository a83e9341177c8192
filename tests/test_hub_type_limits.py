"""A job type's limits through the hubs (docs/job-control.md 3): set by a monitor, enforced across
workers of two hubs, a freed slot filled at once (no sweep: the hubs' safety net is 30 s away
here), a rate held back until its next token, a cleared limit releasing the waiting jobs, and every
monitor of every hub told of a change (the wire and the Monitor SDK's on_event). Real
Redis and the embedded store (two hubs share one fakeredis server through make_store)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from support import WSPeer, connect, register, submit

from empfast.client import Monitor
from empfast.hub import Hub


async def assigned(worker: WSPeer, wait_s: float) -> list[dict[str, Any]]:
    """Every job_assigned frame the worker gets within wait_s."""
    frames = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await worker.until("job_assigned", wait_s=wait_s))
    return frames


async def set_limits(monitor: WSPeer, req: int, pushes: list[dict[str, Any]] | None = None,
                     **limits: object) -> dict[str, Any]:
    """The reply (type_limits or error) to a set_type_limits of type a. The push that every monitor
    gets of a change (type_limits too, without req) may come before it: put in `pushes`, if given."""
    monitor.send({"type": "set_type_limits", "req": req, "job_type": "a", **limits})
    async with asyncio.timeout(5):
        while True:
            frame = await monitor.until_any(("type_limits", "error"))
            if frame.get("req") == req:
                return frame
            if pushes is not None:
                pushes.append(frame)


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


async def test_every_monitor_of_every_hub_is_told_when_a_types_limits_change(
        two_hubs: tuple[Hub, Hub]) -> None:
    one, two = two_hubs
    setter = await connect(one, "/ws/monitor")
    elsewhere = await connect(two, "/ws/monitor")
    client = await connect(two, "/ws/client")
    await submit(client, "a", subscribe=False)
    own: list[dict[str, Any]] = []
    await set_limits(setter, 1, own, concurrency=3, rate=10, per_s=2)
    told = await elsewhere.until("type_limits")
    assert "req" not in told and "limits" not in told and told["event_id"]
    assert {k: told[k] for k in ("job_type", "concurrency", "rate", "per_s", "pending")} == {
        "job_type": "a", "concurrency": 3, "rate": 10, "per_s": 2.0, "pending": 1}
    if not own:  # the setter's monitor is told too, besides its reply (before or after it)
        own.append(await setter.until("type_limits"))
    assert [push["event_id"] for push in own] == [told["event_id"]]
    await set_limits(setter, 2, concurrency=3, rate=10, per_s=2)  # the same again: no push
    await set_limits(setter, 3)  # cleared
    cleared = await elsewhere.until("type_limits")
    assert (cleared["concurrency"], cleared["rate"], cleared["per_s"]) == (None, None, None)
    assert cleared["event_id"] != told["event_id"]
    with pytest.raises(TimeoutError):  # one push per change
        await elsewhere.until("type_limits", wait_s=0.3)
    for peer in (setter, elsewhere, client):
        peer.close()


async def test_the_monitor_sdk_hands_a_types_changes_on_another_hub_to_on_event(
        two_hubs: tuple[Hub, Hub]) -> None:
    one, two = two_hubs
    seen: list[dict[str, Any]] = []
    three_seen = asyncio.Event()

    def on_event(frame: dict[str, Any]) -> None:
        seen.append(frame)
        if len(seen) == 3:
            three_seen.set()

    async with Monitor(f"ws://127.0.0.1:{one.port}", on_event=on_event) as watching, \
            Monitor(f"ws://127.0.0.1:{two.port}") as setting:
        await watching.set_job_feed(False)
        await setting.set_type_limits("a", concurrency=2)
        await setting.pause_type("a")
        await setting.set_type_limits("a")
        await asyncio.wait_for(three_seen.wait(), 5)
    assert [(f["type"], f.get("concurrency"), f.get("paused")) for f in seen] == [
        ("type_limits", 2, None), ("type_paused", None, True), ("type_limits", None, None)]
