"""Flat with history: draining a backlog through a hub whose Redis already holds 1,000,000 finished
jobs, against the same drain on an empty Redis (issue 9; target: within 10 % of the empty Redis).

The history is written straight into the queue's keys by one seeding script (below), in the layout
completeJobs leaves behind (docs/data-model.md): each job's hash as completed, its PEXPIRE, its id in
`{bench}:completed`, and the type's counters and entry in `{bench}:types`. Running a million jobs
through the hub would take minutes; the keys are what any later call can see. The hub keeps them all
(`--keep-completed-max` above the history plus the drained jobs), so both runs do the same work per
job and only the size of the data differs; the figure tells whether any path of a job's life costs
more with a big keyspace, a big completed set or a big types/stats state.

Then, as bench/test_bench_hub.py's test_drain_a_backlog: BACKLOG jobs added with submit_many (not
timed), 2 workers x 64 slots run them, timed from the workers' start to the last acknowledged
completion, 3 rounds.

The history size comes from EMPFAST_BENCH_HISTORY_JOBS (default 1000000), the backlog from
EMPFAST_BENCH_HISTORY_BACKLOG (default 10000), so the CI smoke can run this small.
Run: python -m pytest bench/test_bench_history.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import redis
from conftest import serving_hub
from pytest_benchmark.fixture import BenchmarkFixture
from support import RedisServer

from empfast import benchmark as load
from empfast.client import Client
from empfast.keys import QueueKeys
from empfast.worker import Worker

HISTORY = int(os.environ.get("EMPFAST_BENCH_HISTORY_JOBS", "1000000"))
BACKLOG = int(os.environ.get("EMPFAST_BENCH_HISTORY_BACKLOG", "10000"))
ROUNDS = 3
WORKERS, CONCURRENCY = 2, 64
SEED_BATCH = 20_000  # jobs per seeding call: each call blocks Redis for about a tenth of a second
KEEP_MS = 7 * 86_400_000  # the history outlives the run, as the default retention (a day) would
TARGET_PCT = 10.0
KEYS = QueueKeys.for_queue("bench")  # the queue of conftest's serving_hub
# drain jobs/s of the empty-Redis run, for the ratio of the history run (parametrize keeps the order)
EMPTY_JOBS_PER_S: list[float] = []

# Bench data, not a transition of the state machine: a completed job's keys as completeJobs leaves
# them (fields of addJobs, activateJob and completeJobs; trimFinished's ZADD and PEXPIRE; the
# counters of addJobs and completeJobs).
SEED_COMPLETED_JOBS = """
local rcall = redis.call
local completedKey, statsKey, typesKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, first, count, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local keepMs, jobType, payload, result = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
for i = first, first + count - 1 do
  local id = 'history-' .. i
  local jobKey = prefix .. 'job:' .. id
  rcall('HSET', jobKey, 'id', id, 'type', jobType, 'payload', payload, 'priority', 0, 'max_attempts', 3,
    'attempts', 1, 'created_at', now, 'status', 'completed', 'updated_at', now, 'worker', 'history-w',
    'started_at', now, 'progress', 100, 'message', '', 'result', result, 'done_by', 'history-w/1',
    'finished_at', now)
  rcall('PEXPIRE', jobKey, keepMs)
  rcall('ZADD', completedKey, now, id)
end
rcall('HINCRBY', statsKey, 'added:' .. jobType, count)
rcall('HINCRBY', statsKey, 'completed:' .. jobType, count)
rcall('SADD', typesKey, jobType)
return count
"""


def seed_history(server: RedisServer, jobs: int) -> float:
    """Write `jobs` completed jobs of type "history" into the bench queue; the seconds it took."""
    started = time.perf_counter()
    with redis.Redis(port=server.port) as client:
        seed = client.register_script(SEED_COMPLETED_JOBS)
        now = int(time.time() * 1000)
        payload, result = b'{"to":"someone@example.com","n":42}', b'{"ok":true}'
        for first in range(0, jobs, SEED_BATCH):
            count = min(SEED_BATCH, jobs - first)
            assert seed(keys=[KEYS.completed, KEYS.stats, KEYS.types],
                        args=[KEYS.prefix, first, count, now, KEEP_MS, "history", payload, result]) == count
        assert client.zcard(KEYS.completed) == jobs
    return time.perf_counter() - started


def redis_used_mb(server: RedisServer) -> float:
    with redis.Redis(port=server.port) as client:
        return int(client.info("memory")["used_memory"]) / (1 << 20)


@pytest.mark.parametrize("history", [0, HISTORY], ids=["empty", f"{HISTORY}-finished"])
def test_drain_with_history(benchmark: BenchmarkFixture, redis_server: RedisServer,
                            hub_loop: asyncio.AbstractEventLoop, history: int) -> None:
    run = hub_loop.run_until_complete
    redis_server.flush()
    seed_s = seed_history(redis_server, history) if history else 0.0
    keep = str(history + (ROUNDS + 1) * BACKLOG)  # retain everything: no run trims, whatever its size
    with serving_hub(redis_server, "--keep-completed-max", keep) as hub:
        client = Client(hub.url)
        run(client.connect())
        rounds = iter(range(ROUNDS))

        def setup() -> tuple[tuple[list[Worker], load.Countdown], dict[str, Any]]:
            run(load.submit_backlog(client, BACKLOG))
            countdown = load.Countdown(BACKLOG)
            return (load.make_workers(hub.url, WORKERS, CONCURRENCY, countdown,
                                      f"bench-history-{next(rounds)}"), countdown), {}

        def drain(workers: list[Worker], countdown: load.Countdown) -> None:
            run(load.drain(workers, countdown))
            run(load.stop_workers(workers))

        try:
            benchmark.group = "hub-history"
            benchmark.extra_info["jobs_per_call"] = BACKLOG
            benchmark.pedantic(drain, setup=setup, rounds=ROUNDS, iterations=1)
            stats = run(client.stats())
        finally:
            run(client.close())
    assert stats["pending"] == 0 and stats["active"] == 0
    assert stats["completed"] == history + ROUNDS * BACKLOG, stats  # every job completed, none trimmed
    jobs_per_s = BACKLOG / benchmark.stats.stats.median
    benchmark.extra_info.update({
        "finished_jobs_before": history, "completed_after": stats["completed"],
        "jobs_per_s": round(jobs_per_s), "redis_used_mb": round(redis_used_mb(redis_server), 1),
        "seed_s": round(seed_s, 1)})
    if not history:
        EMPTY_JOBS_PER_S.append(jobs_per_s)
    elif EMPTY_JOBS_PER_S:
        slower_pct = (1 - jobs_per_s / EMPTY_JOBS_PER_S[-1]) * 100
        benchmark.extra_info["slower_than_empty_pct"] = round(slower_pct, 1)
        benchmark.extra_info["issue_target"] = f"drain within {TARGET_PCT:g} % of an empty Redis"
        benchmark.extra_info["issue_measured"] = (f"{jobs_per_s:,.0f} vs {EMPTY_JOBS_PER_S[-1]:,.0f} jobs/s "
                                                  f"({slower_pct:+.1f} % slower)")
