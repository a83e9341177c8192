"""Workers, heartbeats and the sweep, on real Redis and on fakeredis."""

from __future__ import annotations

import asyncio

import pytest
from support import MakeStore, T

from empfast.errors import BadArgument, WorkerDraining, WorkerNotFound
from empfast.store import NewJob, Store


async def test_register_validates_and_reports_workers(store: Store) -> None:
    with pytest.raises(BadArgument, match="job_types"):
        await store.register_worker("w1", [], 1, now=T)
    with pytest.raises(BadArgument, match="concurrency"):
        await store.register_worker("w1", ["a"], -1, now=T)
    # worker 'w1:jobs' would have worker w1's job set ({Q}:worker:w1:jobs) for its hash
    with pytest.raises(BadArgument, match="must not end in ':jobs'"):
        await store.register_worker("w1:jobs", ["a"], 1, now=T)
    assert await store.register_worker("w1", ["a", "b"], 3, hub_id="hub-1", now=T) == {}
    (record,) = await store.get_workers()
    assert record["job_types"] == ["a", "b"] and record["concurrency"] == 3
    assert record["status"] == "idle" and record["hub"] == "hub-1"
    assert (await store.stats()).workers == {"idle": 1, "busy": 0, "draining": 0}


async def test_reregistering_keeps_the_leases_a_worker_still_holds(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j1"), NewJob("a", job_id="j2")], now=T)
    await store.register_worker("w1", ["a"], 2, now=T)
    await store.claim("w1", 2, now=T)
    held = await store.register_worker("w1", ["a"], 2, now=T + 1_000)
    assert held == {"j1": 1, "j2": 1}
    assert (await store.stats()).workers == {"idle": 0, "busy": 1, "draining": 0}


async def test_heartbeat_extends_every_lease_of_the_worker(store: Store) -> None:
    await store.add_jobs([NewJob("a"), NewJob("a")], now=T)
    await store.register_worker("w1", ["a"], 2, now=T)
    await store.claim("w1", 2, now=T)
    beat = await store.heartbeat("w1", now=T + 8_000)
    assert beat.extended == 2 and beat.lost == [] and beat.cancel == []
    swept = await store.sweep(now=T + 17_000)  # leases run to T + 18 s now, liveness to T + 28 s
    assert swept.expired == 0 and swept.workers_removed == 0
    assert (await store.stats()).active == 2


async def test_heartbeat_reports_jobs_taken_back_that_the_caller_thinks_it_holds(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="kept"), NewJob("a", job_id="taken")], now=T)
    await store.register_worker("w1", ["a"], 2, now=T)
    held = {j.job_id: j.attempt for j in await store.claim("w1", 2, now=T)}
    await store.heartbeat("w1", now=T + 9_000)  # extends both leases to T + 19 s
    await store.redis.zadd(store.keys.active, {"taken": T + 1})  # as if its lease had lapsed
    assert (await store.sweep(now=T + 12_000)).expired == 1
    beat = await store.heartbeat("w1", held, now=T + 12_500)
    assert beat.extended == 1 and beat.lost == ["taken"]
    assert (await store.heartbeat("w1", {"kept": 1}, now=T + 13_000)).lost == []
    assert (await store.heartbeat("w1", {"kept": 2}, now=T + 13_000)).lost == ["kept"]  # not that attempt


async def test_a_job_the_hub_does_not_list_is_not_extended_and_runs_again(store: Store) -> None:
    """A completion a Redis failover lost leaves its job active under the worker, which no longer
    runs it: the hub's heartbeat lists the jobs it gave out, so that job's lease is not extended,
    and the sweep gives it out again (it was stuck until the worker reconnected)."""
    await store.add_jobs([NewJob("a", job_id="running"), NewJob("a", job_id="finished")], now=T)
    await store.register_worker("w1", ["a"], 2, now=T)
    await store.claim("w1", 2, now=T)  # leases to T + 10 s
    beat = await store.heartbeat("w1", {"running": 1}, now=T + 8_000)
    assert beat.extended == 1 and beat.lost == []
    swept = await store.sweep(now=T + 10_001)
    assert swept.expired == 1
    again = await store.get_job("finished")
    assert again is not None and again["status"] == "pending"
    running = await store.get_job("running")
    assert running is not None and running["status"] == "active"  # its lease runs to T + 18 s


async def test_heartbeat_of_an_unknown_worker_says_register_again(store: Store) -> None:
    with pytest.raises(WorkerNotFound, match="register it again"):
        await store.heartbeat("ghost", now=T)


async def test_a_worker_past_its_liveness_gets_no_jobs_even_before_the_sweep_removes_it(
        store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="held"), NewJob("a", job_id="j")], now=T)
    await store.register_worker("w1", ["a"], 2, liveness_ms=10_000, now=T)
    (held,) = await store.claim("w1", now=T)
    lapsed = T + 10_000  # its liveness deadline; no sweep has run
    with pytest.raises(WorkerNotFound):
        await store.claim("w1", now=lapsed)
    with pytest.raises(WorkerNotFound):
        await store.claim_by_id("w1", "j", now=lapsed)
    with pytest.raises(WorkerNotFound):
        await store.heartbeat("w1", now=lapsed)
    # registering again before the sweep keeps what it still holds, and it takes jobs again
    assert await store.register_worker("w1", ["a"], 2, now=lapsed) == {held.job_id: held.attempt}
    assert [job.job_id for job in await store.claim("w1", now=lapsed)] == ["j"]


async def test_outcomes_keep_a_worker_live_refreshing_at_most_once_a_quarter_of_its_liveness(
        store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id=f"j{i}") for i in range(6)], now=T)
    await store.register_worker("w1", ["a"], 1, liveness_ms=10_000, now=T)

    async def deadline() -> float | None:
        return await store.redis.zscore(store.keys.workers, "w1")

    (job,) = await store.claim("w1", now=T)
    # within the first quarter nothing is written for it: the deadline stays where it was
    (job,) = await store.complete(job.job_id, "w1", job.attempt, claim_next=1, now=T + 2_000)
    assert await deadline() == T + 10_000
    # past it, an outcome refreshes it
    (job,) = await store.complete(job.job_id, "w1", job.attempt, claim_next=1, now=T + 3_000)
    assert await deadline() == T + 13_000
    # so a worker that only sends outcomes, one every 4 s, never lapses (liveness 10 s) ...
    for now in (T + 7_000, T + 11_000, T + 15_000):
        (job,) = await store.complete(job.job_id, "w1", job.attempt, claim_next=1, now=now)
    assert await deadline() == T + 25_000
    # ... and a heartbeat always refreshes it
    await store.heartbeat("w1", now=T + 16_000)
    assert await deadline() == T + 26_000


async def test_a_dead_workers_jobs_run_elsewhere_and_the_attempt_counts(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=2, now=T)
    await store.register_worker("dies", ["a"], 1, now=T)
    (first,) = await store.claim("dies", now=T)
    await store.register_worker("lives", ["a"], 1, now=T + 25_000)
    swept = await store.sweep(now=T + 25_000)  # past the liveness of "dies" (20 s)
    assert swept.workers_removed == 1
    (again,) = await store.claim("lives", now=T + 25_000)
    assert again.job_id == "j" and again.attempt == first.attempt + 1
    assert [w["worker_id"] for w in await store.get_workers()] == ["lives"]
    stats = await store.stats()
    assert stats.workers == {"idle": 0, "busy": 1, "draining": 0}


async def test_a_poison_job_ends_in_failed_instead_of_looping(store: Store) -> None:
    await store.add_job("a", job_id="poison", max_attempts=3, now=T)
    now = T
    for attempt in (1, 2, 3):
        await store.register_worker(f"w{attempt}", ["a"], 1, now=now)
        (job,) = await store.claim(f"w{attempt}", now=now)
        assert job.attempt == attempt
        now += 25_000  # the worker crashes: no heartbeat, lease and liveness lapse
        await store.sweep(now=now)
    job = await store.get_job("poison")
    assert job is not None and job["status"] == "failed"
    assert job["errors"] == [f"lease expired (attempt {n})" for n in (1, 2, 3)]


async def test_draining_worker_gets_no_new_jobs(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j1"), NewJob("a", job_id="j2")], now=T)
    await store.register_worker("w1", ["a"], 5, now=T)
    assert await store.set_worker_status("w1", "draining", now=T) == "draining"
    assert await store.claim("w1", 5, now=T) == []
    with pytest.raises(WorkerDraining):
        await store.claim_by_id("w1", "j1", now=T)
    assert (await store.stats()).workers["draining"] == 1
    assert await store.set_worker_status("w1", "idle", now=T) == "idle"
    assert len(await store.claim("w1", 5, now=T)) == 2
    with pytest.raises(BadArgument):
        await store.set_worker_status("w1", "sleepy", now=T)


async def test_deregister_gives_held_jobs_back(store: Store) -> None:
    await store.add_job("a", job_id="j", now=T)
    await store.register_worker("w1", ["a"], 1, now=T)
    await store.claim("w1", now=T)
    assert await store.deregister_worker("w1", now=T) == 1
    job = await store.get_job("j")
    assert job is not None and job["status"] == "pending"
    assert (await store.stats()).workers == {"idle": 0, "busy": 0, "draining": 0}
    with pytest.raises(WorkerNotFound):
        await store.claim("w1", now=T)


async def test_cancel_of_a_job_whose_worker_dies_ends_cancelled(store: Store) -> None:
    await store.add_job("a", job_id="j", now=T)
    await store.register_worker("w1", ["a"], 1, now=T)
    await store.claim("w1", now=T)
    await store.cancel("j", now=T)
    await store.sweep(now=T + 30_000)
    job = await store.get_job("j")
    assert job is not None and job["status"] == "cancelled"


async def test_sweep_of_a_large_expired_backlog_runs_in_bounded_slices(make_store: MakeStore) -> None:
    store = await make_store(sweep_limit=200)
    n = 1_000
    await store.add_jobs([NewJob("a", job_id=f"j{i}") for i in range(n)], now=T)
    await store.register_worker("w1", ["a"], n, liveness_ms=10**9, now=T)
    assert len(await store.claim("w1", n, now=T)) == n
    later = T + 60_000
    slices = []
    while True:
        result = await store.sweep(now=later)
        slices.append(result.expired)
        if not result.more:
            break
    assert max(slices) <= 200 and sum(slices) == n
    stats = await store.stats()
    assert stats.active == 0 and stats.pending == n


async def test_two_sweepers_at_once_release_each_job_once(make_store: MakeStore) -> None:
    a, b = await make_store(), await make_store()
    await a.add_jobs([NewJob("a", job_id=f"j{i}") for i in range(100)], now=T)
    await a.register_worker("w1", ["a"], 100, liveness_ms=10**9, now=T)
    await a.claim("w1", 100, now=T)
    results = await asyncio.gather(*[s.sweep(limit=7, now=T + 60_000) for s in (a, b) * 10])
    assert sum(r.expired for r in results) <= 100
    while (await a.sweep(now=T + 60_000)).more:
        pass
    stats = await a.stats()
    assert stats.pending == 100 and stats.by_type["a"]["retried"] == 100
