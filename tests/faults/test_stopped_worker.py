"""A worker process stopped with SIGSTOP in the middle of a job, past its lease (and, in the
second case, past its liveness too), then resumed with SIGCONT: the job ran again elsewhere and
completed there; the stopped run's late outcome is refused (lease_lost), so the job completed
once, with the new run's result, as its client saw it; and the resumed worker carries on."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import orjson
import pytest

from .harness import KEYS, Cluster, Follower, check, hub_client, tally

pytestmark = pytest.mark.real_redis

LEASE_MS = 1500


async def first_start(cluster: Cluster, job_id: str, timeout_s: float = 20) -> int:
    """The pid of the worker that started the job's first run."""
    async with asyncio.timeout(timeout_s):
        while True:
            runs = cluster.runs().get(job_id)
            if runs:
                return runs[0][1]
            await asyncio.sleep(0.02)


async def refusal_logged(log_text: Callable[[], str], job_id: str, timeout_s: float = 15) -> str:
    """The resumed worker's log line saying its run of the job was fenced off: the hub refused its
    outcome (lease_lost), or told it the lease was lost before it sent one."""
    patterns = (f"lost the lease on job {job_id} ", f"refused the outcome of job {job_id} ")
    async with asyncio.timeout(timeout_s):
        while True:
            found = [line for line in log_text().splitlines() if any(p in line for p in patterns)]
            if found:
                return found[0]
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("case", "liveness_ms"), [("past its lease", 20_000),
                                                   ("past its lease and its liveness", 1500)])
async def test_a_worker_stopped_past_its_lease_has_its_late_outcome_refused(
        make_cluster: Callable[..., Cluster], case: str, liveness_ms: int) -> None:
    cluster = make_cluster(lease_ms=LEASE_MS, liveness_ms=liveness_ms)
    cluster.start_redis()
    port = cluster.start_hub()
    workers = [cluster.start_worker(port, 1), cluster.start_worker(port, 1)]
    cluster.wait_workers_registered(2)
    job_id = "stopped-0"
    async with hub_client(port) as submitter:
        follower = Follower(submitter)
        await follower.submit([job_id], seconds=1.0)
        victim_pid = await first_start(cluster, job_id)
        victim, other = workers if workers[0].pid == victim_pid else workers[::-1]
        victim.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        # the lease runs out, the sweep takes the job back, the other worker runs it (attempt 2)
        rerun = await asyncio.wait_for(asyncio.shield(follower.waits[job_id]), 30)
        stopped_s = time.monotonic() - stopped_at
        victim.signal(signal.SIGCONT)
        refusal = await refusal_logged(lambda: victim.log.read_text(errors="replace"), job_id)
        print(f"{case}: the resumed worker logged: {refusal.strip()}")
        after = [f"after-{i}" for i in range(4)]  # the resumed worker and the other one carry on
        await follower.submit(after, seconds=0.2)
        outcomes = await follower.outcomes(60)
        await asyncio.sleep(0.5)  # room for any late frame about the job to arrive
    with cluster.redis_client() as redis:
        stored = orjson.loads(redis.hget(KEYS.job(job_id), "result") or "null")
    result = tally(f"SIGSTOP of a worker {case}", 1, cluster, [job_id, *after], [follower], [outcomes])
    check(result, max_run_twice=1)
    assert stopped_s * 1000 > LEASE_MS and (liveness_ms > LEASE_MS or stopped_s * 1000 > liveness_ms)
    assert rerun == stored == {"pid": other.pid, "attempt": 2}, refusal
    assert result.run_twice == 1 and [pid for _, pid, what in cluster.runs()[job_id] if what == "start"] == [
        victim.pid, other.pid]
    assert len(follower.completed_ids[job_id]) == 1
