"""What one hub process and one Redis shard can carry (issue 11; docs/deployment.md section 1 sizes
a deployment from these figures). A backlog of JOBS no-op jobs is added and drained through one
`empfast serve` on the bench's Redis, in one queue or spread over two queues of the same hub (each
queue has its own events reader and script connection): the hub's and Redis's CPU per job (a job's
whole life: add, claim, complete) give the jobs per second one core of each can carry, whatever
else this shared 2-core machine runs meanwhile; the wall-clock rate is reported too.

extra_info: jobs, queues, jobs_per_s (wall clock), hub_cpu_us_per_job, redis_cpu_us_per_job and
the capacities they imply, hub_jobs_per_core_s and redis_jobs_per_core_s (1e6 / us per job).
The count comes from EMPFAST_BENCH_CAPACITY_JOBS (default 20000).
Run: python -m pytest bench/test_bench_capacity.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import redis
from conftest import serving_hub
from procfs import cpu_s
from pytest_benchmark.fixture import BenchmarkFixture
from support import RedisServer
from test_bench_redis_cost import redis_cpu_s

from empfast import benchmark as load
from empfast.client import Client

JOBS = int(os.environ.get("EMPFAST_BENCH_CAPACITY_JOBS", "20000"))
WORKERS_PER_QUEUE, CONCURRENCY = 2, 64


@pytest.mark.parametrize("queues", [1, 2])
def test_capacity_of_a_hub_and_a_redis_shard(benchmark: BenchmarkFixture, redis_server: RedisServer,
                                             hub_loop: asyncio.AbstractEventLoop, queues: int) -> None:
    redis_server.flush()
    names = [f"capacity-{i}" for i in range(queues)]
    per_queue = JOBS // queues
    counters = redis.Redis(port=redis_server.port, decode_responses=True)
    measured: dict[str, float] = {}
    # every completed job kept, so the stats can show each one ran
    with serving_hub(redis_server, "--queues", ",".join(names), "--keep-completed-max", str(JOBS)) as hub:

        async def backlog_and_drain() -> list[dict[str, Any]]:
            async with Client(hub.url) as client:
                clients = [await client.for_queue(name) for name in names]
                countdowns = [load.Countdown(per_queue) for _ in names]
                workers = [load.make_workers(hub.url, WORKERS_PER_QUEUE, CONCURRENCY, countdown,
                                             f"capacity-{name}", queue=name)
                           for name, countdown in zip(names, countdowns, strict=True)]
                redis_before, hub_before, started = redis_cpu_s(counters), cpu_s(hub.pid), time.perf_counter()
                await asyncio.gather(*(load.submit_backlog(one, per_queue) for one in clients))
                await asyncio.gather(*(load.drain(group, countdown)
                                       for group, countdown in zip(workers, countdowns, strict=True)))
                measured.update(seconds=time.perf_counter() - started,
                                redis_cpu_s=redis_cpu_s(counters) - redis_before,
                                hub_cpu_s=cpu_s(hub.pid) - hub_before)
                for group in workers:
                    await load.stop_workers(group)
                return [await one.stats() for one in clients]

        outcome: list[list[dict[str, Any]]] = []
        try:
            benchmark.group = "capacity"
            benchmark.pedantic(lambda: outcome.append(hub_loop.run_until_complete(backlog_and_drain())),
                               rounds=1, iterations=1)
        finally:
            counters.close()
    (stats,) = outcome
    jobs = per_queue * queues
    for one in stats:
        assert (one["completed"], one["pending"], one["active"]) == (per_queue, 0, 0), one
    hub_us, redis_us = measured["hub_cpu_s"] * 1e6 / jobs, measured["redis_cpu_s"] * 1e6 / jobs
    benchmark.extra_info.update({
        "jobs": jobs, "queues": queues, "every_job_completed": True,
        "jobs_per_s": round(jobs / measured["seconds"]),
        "hub_cpu_us_per_job": round(hub_us, 1), "redis_cpu_us_per_job": round(redis_us, 1),
        "hub_jobs_per_core_s": round(1e6 / hub_us), "redis_jobs_per_core_s": round(1e6 / redis_us)})
