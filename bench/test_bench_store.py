"""Benchmarks of the store's hot Lua scripts on a real redis-server, next to a round-trip floor.

Each benchmark runs a fixed number of rounds (benchmark.pedantic) over a queue pre-filled with more
pending jobs than the rounds can take, so no round ever finds the queue empty; every call checks its
outcome, so a broken script fails the bench instead of timing an error path.
Run: python -m pytest bench --benchmark-only
"""

from __future__ import annotations

import asyncio

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from empfast.store import ClaimedJob, NewJob, Store
from empfast.store.pipelined import command

JOB_TYPE = "bench"
PAYLOAD = b'{"to":"someone@example.com","template":"welcome","n":42}'
RESULT = b'{"ok":true}'
WORKER = "bench-worker"

ROUNDS = 5_000  # single-call benchmarks: a few tenths of a second each on loopback
WARMUP = 500
BATCH = 100
BATCH_ROUNDS = 300
BATCH_WARMUP = 30
FILL_CHUNK = 1_000

CLAIM_GROUP = "claim-complete"
ADD_GROUP = "add"


async def fill(store: Store, count: int) -> None:
    """Add `count` pending jobs of JOB_TYPE, in batches."""
    for start in range(0, count, FILL_CHUNK):
        added = await store.add_jobs(NewJob(JOB_TYPE, PAYLOAD) for _ in range(min(FILL_CHUNK, count - start)))
        assert all(a.created for a in added)


def test_claim(benchmark: BenchmarkFixture, bench_store: Store,
               bench_loop: asyncio.AbstractEventLoop) -> None:
    """claimJobs: one claim(worker, 1) per call; the worker's slots (10000) outnumber the claims."""
    calls = ROUNDS + WARMUP
    run = bench_loop.run_until_complete
    run(fill(bench_store, calls + 10))
    run(bench_store.register_worker(WORKER, [JOB_TYPE], 10_000))

    async def claim_one() -> None:
        jobs = await bench_store.claim(WORKER, 1)
        assert len(jobs) == 1, jobs

    benchmark.group = CLAIM_GROUP
    benchmark.extra_info["jobs_per_call"] = 1
    benchmark.pedantic(lambda: run(claim_one()), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


def test_complete_and_claim_next(benchmark: BenchmarkFixture, bench_store: Store,
                                 bench_loop: asyncio.AbstractEventLoop) -> None:
    """completeJobs with claim_next=1: finish the held job and take the next in the same round trip;
    each call completes the job the previous call handed out."""
    calls = ROUNDS + WARMUP
    run = bench_loop.run_until_complete
    run(fill(bench_store, calls + 10))
    run(bench_store.register_worker(WORKER, [JOB_TYPE], 1))
    (first,) = run(bench_store.claim(WORKER, 1))
    held: list[ClaimedJob] = [first]

    async def complete_and_claim() -> None:
        job = held[0]
        next_jobs = await bench_store.complete(job.job_id, WORKER, job.attempt, RESULT, claim_next=1)
        assert len(next_jobs) == 1, next_jobs
        held[0] = next_jobs[0]

    benchmark.group = CLAIM_GROUP
    benchmark.extra_info["jobs_per_call"] = 1
    benchmark.pedantic(lambda: run(complete_and_claim()), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert run(bench_store.stats()).completed == calls


def test_add_single(benchmark: BenchmarkFixture, bench_store: Store,
                    bench_loop: asyncio.AbstractEventLoop) -> None:
    """addJobs with one job per call (a fresh id each time, so every call creates a job)."""
    run = bench_loop.run_until_complete

    async def add_one() -> None:
        (added,) = await bench_store.add_jobs([NewJob(JOB_TYPE, PAYLOAD)])
        assert added.created, added

    benchmark.group = ADD_GROUP
    benchmark.extra_info["jobs_per_call"] = 1
    benchmark.pedantic(lambda: run(add_one()), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert run(bench_store.stats()).pending == ROUNDS + WARMUP


def test_add_batch_100(benchmark: BenchmarkFixture, bench_store: Store,
                       bench_loop: asyncio.AbstractEventLoop) -> None:
    """addJobs with a batch of 100 jobs per call (one round trip); per-job cost in extra_info."""
    run = bench_loop.run_until_complete

    async def add_batch() -> None:
        added = await bench_store.add_jobs([NewJob(JOB_TYPE, PAYLOAD) for _ in range(BATCH)])
        assert len(added) == BATCH and all(a.created for a in added), added

    benchmark.group = ADD_GROUP
    benchmark.extra_info["jobs_per_call"] = BATCH
    benchmark.pedantic(lambda: run(add_batch()), rounds=BATCH_ROUNDS, warmup_rounds=BATCH_WARMUP,
                       iterations=1)
    assert run(bench_store.stats()).pending == (BATCH_ROUNDS + BATCH_WARMUP) * BATCH
    if benchmark.stats is not None:
        stats = benchmark.stats.stats
        benchmark.extra_info["per_job_mean_us"] = round(stats.mean / BATCH * 1e6, 3)
        benchmark.extra_info["per_job_median_us"] = round(stats.median / BATCH * 1e6, 3)
        benchmark.extra_info["jobs_per_s"] = round(BATCH / stats.mean)


@pytest.mark.parametrize("group", [CLAIM_GROUP, ADD_GROUP])
def test_raw_evalsha_noop(benchmark: BenchmarkFixture, bench_store: Store,
                          bench_loop: asyncio.AbstractEventLoop, group: str) -> None:
    """The floor: EVALSHA of `return 1` through the connection the store's scripts run on
    (store/pipelined.py) and its loop, i.e. one round trip plus client and event-loop overhead and
    no script work. Run once per group so each group's table has its floor to compare with."""
    run = bench_loop.run_until_complete
    sha = run(bench_store.redis.script_load("return 1"))
    connection = bench_store.script_connection
    assert connection is not None  # a real redis-server: the scripts' own connection
    call = command("EVALSHA", sha, 0)

    async def noop() -> None:
        assert await connection.call(call) == 1

    benchmark.group = group
    benchmark.pedantic(lambda: run(noop()), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
