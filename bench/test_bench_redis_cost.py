"""The Redis cost of a job's life through a hub (issue 9): Redis commands, script calls and Redis CPU
per job, from the server's own counters, with the hub's CPU per job next to it. The Redis figures are
the physical floor of the design: every hub in front of one Redis shares it. Target of the issue: a
lifecycle (add, claim, complete, default retention) in at most 50 us of Redis CPU and about 12
redis.calls (then about 130 us and 29).

`empfast serve` runs in its own process (default retention) on the bench's Redis; the SDK client and
workers run in this process. After the peers are connected, `CONFIG RESETSTAT` zeroes INFO
commandstats; the Redis CPU (INFO cpu) and the hub's CPU (utime + stime of /proc/<pid>/stat) are read
before and after the run. Everything the server ran in that time counts: the scripts, the commands
inside them, the hub's events-stream reads, and its background loops (sweep, stats) at this rate.

- one_at_a_time: submit, wait for the result, repeat (one worker, one slot): no batching at all.
- backlog: JOBS added with submit_many, then 2 workers x 64 slots run them: the batched paths
  (addJobs of a whole batch, completeJobs of several completions that also claims the next jobs).

extra_info: jobs, every job completed, the per-job figures, and the per-job calls of each command
(`calls_by_command`, per job). `redis_commands_per_job` is every command but the script calls
themselves; `calls_in_scripts_per_job` leaves out the ones the store only sends directly (XREAD of the
events stream, HGETALL of a status...), so it is the redis.call count the issue names.
The count comes from EMPFAST_BENCH_COST_JOBS (default 5000).
Run: python -m pytest bench/test_bench_redis_cost.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from conftest import ServedHub
from procfs import cpu_s
from pytest_benchmark.fixture import BenchmarkFixture
from support import RedisServer

from empfast import benchmark as load
from empfast.client import Client

JOBS = int(os.environ.get("EMPFAST_BENCH_COST_JOBS", "5000"))
WORKERS, CONCURRENCY = 2, 64
SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro")
# the bench's own reads of the counters, not the hub's work
OWN_COMMANDS = ("config|resetstat", "info", "config")
# commands the store sends itself, never from a script: the events reader, replays, job status, the
# handshake; what remains ran inside the scripts (ZCARD and SCARD may be either: counted as inside)
DIRECT_COMMANDS = ("xread", "xrange", "xrevrange", "hgetall", "ping", "hello", "client|setinfo", "select")
TARGET_REDIS_CPU_US, TARGET_CALLS = 50, 12


def redis_cpu_s(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def command_stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """INFO commandstats as {command: {"calls": n, "usec": n}}; subcommands as "config|resetstat"."""
    stats = {name.removeprefix("cmdstat_"): values for name, values in client.info("commandstats").items()}
    return {name: values for name, values in stats.items() if name not in OWN_COMMANDS}


async def _one_at_a_time(url: str, client: Client, reset: Callable[[], None]) -> None:
    workers = load.make_workers(url, 1, 1, load.Countdown(0), "bench-cost-one")
    await workers[0].start()
    try:
        reset()
        await load.one_at_a_time(client, JOBS)
    finally:
        await load.stop_workers(workers)


async def _backlog(url: str, client: Client, reset: Callable[[], None]) -> None:
    reset()
    await load.submit_backlog(client, JOBS)
    countdown = load.Countdown(JOBS)
    workers = load.make_workers(url, WORKERS, CONCURRENCY, countdown, "bench-cost-drain")
    await load.drain(workers, countdown)
    await load.stop_workers(workers)


SCENARIOS: dict[str, Callable[[str, Client, Callable[[], None]], Awaitable[None]]] = {
    "one_at_a_time": _one_at_a_time, "backlog": _backlog}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_redis_cost_per_job(benchmark: BenchmarkFixture, served_hub: ServedHub, redis_server: RedisServer,
                            hub_loop: asyncio.AbstractEventLoop, scenario: str) -> None:
    run = hub_loop.run_until_complete
    counters = redis.Redis(port=redis_server.port, decode_responses=True)
    started: dict[str, float] = {}

    def reset() -> None:
        """Zero the command counters once the peers are connected; note where both CPUs stand."""
        counters.config_resetstat()
        started["redis_cpu_s"] = redis_cpu_s(counters)
        started["hub_cpu_s"] = cpu_s(served_hub.pid)

    async def lifecycle() -> dict[str, Any]:
        async with Client(served_hub.url) as client:
            await SCENARIOS[scenario](served_hub.url, client, reset)
            return await client.stats()

    outcome: list[dict[str, Any]] = []
    try:
        benchmark.group = "redis-cost"
        benchmark.extra_info["jobs_per_call"] = JOBS
        benchmark.pedantic(lambda: outcome.append(run(lifecycle())), rounds=1, iterations=1)
        stats = command_stats(counters)
        redis_cpu_us = (redis_cpu_s(counters) - started["redis_cpu_s"]) * 1e6
        hub_cpu_us = (cpu_s(served_hub.pid) - started["hub_cpu_s"]) * 1e6
    finally:
        counters.close()
    (queue,) = outcome
    assert queue["completed"] == JOBS and queue["pending"] == 0 and queue["active"] == 0, queue
    assert stats, "INFO commandstats is empty"
    script_calls = sum(v["calls"] for k, v in stats.items() if k in SCRIPT_COMMANDS)
    commands = sum(v["calls"] for k, v in stats.items() if k not in SCRIPT_COMMANDS)
    direct = sum(v["calls"] for k, v in stats.items() if k in DIRECT_COMMANDS)
    script_usec = sum(v["usec"] for k, v in stats.items() if k in SCRIPT_COMMANDS)
    per_command = {k: round(v["calls"] / JOBS, 3)
                   for k, v in sorted(stats.items(), key=lambda kv: -kv[1]["calls"])}
    benchmark.extra_info.update({
        "jobs": JOBS, "every_job_completed": True,
        "redis_commands_per_job": round(commands / JOBS, 2),
        "script_calls_per_job": round(script_calls / JOBS, 3),
        "calls_in_scripts_per_job": round((commands - direct) / JOBS, 2),
        "redis_cpu_us_per_job": round(redis_cpu_us / JOBS, 1),
        "script_us_per_job": round(script_usec / JOBS, 1),
        "hub_cpu_us_per_job": round(hub_cpu_us / JOBS, 1),
        "calls_by_command": per_command})
    in_scripts, outside = (commands - direct) / JOBS, direct / JOBS
    benchmark.extra_info["issue_target"] = f"<= {TARGET_REDIS_CPU_US} us Redis CPU, ~{TARGET_CALLS} calls"
    benchmark.extra_info["issue_measured"] = (f"{redis_cpu_us / JOBS:.0f} us, {in_scripts:.1f} calls in "
                                              f"scripts + {outside:.1f} direct "
                                              f"(hub {hub_cpu_us / JOBS:.0f} us)")
