"""Flat with history: draining a backlog through a hub whose Redis already holds 1,000,000 finished
jobs, against the same drain on an empty Redis (issue 9; target: within 10 % of the empty Redis).

The history is written straight into the queue's keys by one seeding script (below), in the layout
completeJobs leaves behind (docs/data-model.md): each job's hash as completed, its PEXPIRE, its id in
`{bench}:completed`, and the type's counters and entry in `{bench}:types`. Running a million jobs
through the hub would take minutes; the keys are what any later call can see. The hub keeps them all
(`--keep-completed-max` above the history plus the drained jobs), so both runs do the same work per
job and only the size of the data differs; the figure tells whether any path of a job's life costs
more with a big keyspace, a big completed set or a big types/stats state.

Two redis-servers, one empty and one with the history, each with its hub. Each round, as
bench/test_bench_hub.py's test_drain_a_backlog: BACKLOG jobs added with submit_many (not timed),
2 workers x 64 slots run them, timed from the workers' start to the last acknowledged completion;
first on the empty Redis, then on the one with history. Other work on a 2-core machine moves
single rounds by a third, and moves two drains run back to back alike, so the wall-time figure is
the median over 5 rounds of each history drain against the empty drain just before it. The CPU
each redis-server and each hub used per job (INFO cpu, /proc) moves much less with other work, and
is the steadier answer to "does anything cost more with history".

The history size comes from EMPFAST_BENCH_HISTORY_JOBS (default 1000000), the backlog from
EMPFAST_BENCH_HISTORY_BACKLOG (default 10000), so the CI smoke can run this small.
Run: python -m pytest bench/test_bench_history.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from conftest import serving_hub
from procfs import cpu_s
from pytest_benchmark.fixture import BenchmarkFixture
from support import RedisServer, running_redis_server

from empfast import benchmark as load
from empfast.bars import percentile
from empfast.client import Client
from empfast.keys import QueueKeys
from empfast.worker import Worker

HISTORY = int(os.environ.get("EMPFAST_BENCH_HISTORY_JOBS", "1000000"))
BACKLOG = int(os.environ.get("EMPFAST_BENCH_HISTORY_BACKLOG", "10000"))
ROUNDS = 5
WORKERS, CONCURRENCY = 2, 64
SEED_BATCH = 20_000  # jobs per seeding call: each call blocks Redis for about a tenth of a second
KEEP_MS = 7 * 86_400_000  # the history outlives the run, as the default retention (a day) would
TARGET_PCT = 10.0
KEYS = QueueKeys.for_queue("bench")  # the queue of conftest's serving_hub

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


def cpu_of(server: RedisServer, hub_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the redis-server (INFO cpu) and by its hub (/proc)."""
    with redis.Redis(port=server.port) as client:
        cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), cpu_s(hub_pid)


def reset_command_stats(server: RedisServer) -> None:
    with redis.Redis(port=server.port) as client:
        client.config_resetstat()


def commands_run(server: RedisServer) -> int:
    """Commands the server ran since reset_command_stats (in scripts and out), but the bench's INFO."""
    with redis.Redis(port=server.port) as client:
        stats = client.info("commandstats")
    bench_own = ("cmdstat_info", "cmdstat_config|resetstat")
    return sum(int(v["calls"]) for name, v in stats.items() if name not in bench_own)


def redis_used_mb(server: RedisServer) -> float:
    with redis.Redis(port=server.port) as client:
        return int(client.info("memory")["used_memory"]) / (1 << 20)


Run = Callable[[Awaitable[Any]], Any]


def _prepare(run: Run, client: Client, url: str, name: str) -> tuple[list[Worker], load.Countdown]:
    """A backlog added (not timed) and the workers that will drain it."""
    run(load.submit_backlog(client, BACKLOG))
    countdown = load.Countdown(BACKLOG)
    return load.make_workers(url, WORKERS, CONCURRENCY, countdown, name), countdown


def _drain(run: Run, workers: list[Worker], countdown: load.Countdown) -> float:
    seconds = run(load.drain(workers, countdown))
    run(load.stop_workers(workers))
    return seconds


def test_drain_with_history(benchmark: BenchmarkFixture, redis_server: RedisServer,
                            hub_loop: asyncio.AbstractEventLoop) -> None:
    """The benchmark's rounds are the drains on the Redis with history; before each, the same drain
    runs on the empty Redis (timed by hand), so both see the same load from the rest of the machine."""
    run = hub_loop.run_until_complete
    redis_server.flush()
    keep = str(HISTORY + (ROUNDS + 1) * BACKLOG)  # retain everything: no run trims, whatever its size
    with running_redis_server("the history bench needs a second Redis") as history_server:
        seed_s = seed_history(history_server, HISTORY)
        with serving_hub(redis_server, "--keep-completed-max", keep) as empty_hub, \
                serving_hub(history_server, "--keep-completed-max", keep) as history_hub:
            empty_client, history_client = Client(empty_hub.url), Client(history_hub.url)
            run(empty_client.connect())
            run(history_client.connect())
            empty_s: list[float] = []
            rounds = iter(range(ROUNDS))
            servers = {"empty": (redis_server, empty_hub.pid), "history": (history_server, history_hub.pid)}
            cpu_before = {side: cpu_of(server, pid) for side, (server, pid) in servers.items()}
            for server, _pid in servers.values():
                reset_command_stats(server)

            def setup() -> tuple[tuple[list[Worker], load.Countdown], dict[str, Any]]:
                n = next(rounds)
                empty_s.append(_drain(run, *_prepare(run, empty_client, empty_hub.url, f"bench-empty-{n}")))
                return _prepare(run, history_client, history_hub.url, f"bench-history-{n}"), {}

            try:
                benchmark.group = "hub-history"
                benchmark.extra_info["jobs_per_call"] = BACKLOG
                benchmark.pedantic(lambda workers, countdown: _drain(run, workers, countdown), setup=setup,
                                   rounds=ROUNDS, iterations=1)
                cpu_after = {side: cpu_of(server, pid) for side, (server, pid) in servers.items()}
                calls = {side: commands_run(server) for side, (server, _pid) in servers.items()}
                empty_stats, history_stats = run(empty_client.stats()), run(history_client.stats())
            finally:
                run(empty_client.close())
                run(history_client.close())
            history_mb = redis_used_mb(history_server)
    for stats in (empty_stats, history_stats):
        assert stats["pending"] == 0 and stats["active"] == 0
    # every job completed, none trimmed
    assert empty_stats["completed"] == ROUNDS * BACKLOG, empty_stats
    assert history_stats["completed"] == HISTORY + ROUNDS * BACKLOG, history_stats
    history_s = list(benchmark.stats.stats.data)
    # each round against the empty drain just before it: the other load moves both alike
    paired_pct = [(h / e - 1) * 100 for h, e in zip(history_s, empty_s, strict=True)]  # in round order
    slower_pct = percentile(sorted(paired_pct), 50)
    empty_jobs_per_s = BACKLOG / percentile(sorted(empty_s), 50)
    history_jobs_per_s = BACKLOG / percentile(sorted(history_s), 50)
    jobs = ROUNDS * BACKLOG  # each side's; its submits and drains, and its idle hub while the other runs
    redis_us = {side: (cpu_after[side][0] - cpu_before[side][0]) * 1e6 / jobs for side in servers}
    hub_us = {side: (cpu_after[side][1] - cpu_before[side][1]) * 1e6 / jobs for side in servers}
    redis_cpu_more_pct = (redis_us["history"] / redis_us["empty"] - 1) * 100
    benchmark.extra_info.update({
        "empty_redis_cpu_us_per_job": round(redis_us["empty"], 1),
        "history_redis_cpu_us_per_job": round(redis_us["history"], 1),
        "history_redis_cpu_more_pct": round(redis_cpu_more_pct, 1),
        # the same work per job on both sides, or a path that grows with the history
        "empty_commands_per_job": round(calls["empty"] / jobs, 2),
        "history_commands_per_job": round(calls["history"] / jobs, 2),
        "empty_hub_cpu_us_per_job": round(hub_us["empty"], 1),
        "history_hub_cpu_us_per_job": round(hub_us["history"], 1)})
    benchmark.extra_info.update({
        "finished_jobs_before": HISTORY, "completed_after": history_stats["completed"],
        "empty_completed_after": empty_stats["completed"],
        "history_jobs_per_s": round(history_jobs_per_s), "empty_jobs_per_s": round(empty_jobs_per_s),
        "slower_than_empty_pct": round(slower_pct, 1),
        "paired_slower_pct": [round(p, 1) for p in paired_pct],
        "empty_round_s": [round(e, 2) for e in empty_s], "history_round_s": [round(h, 2) for h in history_s],
        "history_redis_used_mb": round(history_mb, 1), "seed_s": round(seed_s, 1)})
    benchmark.extra_info["issue_target"] = f"drain within {TARGET_PCT:g} % of an empty Redis"
    benchmark.extra_info["issue_measured"] = (f"{history_jobs_per_s:,.0f} vs {empty_jobs_per_s:,.0f} jobs/s, "
                                              f"paired median {slower_pct:+.1f} %; Redis CPU/job "
                                              f"{redis_cpu_more_pct:+.1f} %")
