"""Fair sharing between tenants (docs/job-control.md 4), through a hub as users run it (`empfast
serve` in its own process, SDK workers and client here): tenant A submits a backlog of 10,000 jobs,
then tenant B submits 10. The figure is how many of A's jobs finish between B's submit and B's last
job finishing, and how long B waited, side by side in one run: the same jobs with `group` set
(claims go round-robin across the groups) and without (one FIFO queue: B waits behind A's backlog).

Run: python -m pytest bench/test_bench_fairness.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from conftest import ServedHub
from pytest_benchmark.fixture import BenchmarkFixture

from empfast.client import Client
from empfast.worker import Job, Worker

GROUP = "fairness"
BACKLOG_A = 10_000
JOBS_B = 10
BATCH = 1_000
WORKERS = 2
CONCURRENCY = 8
JOB_S = 0.002  # each job's work: the backlog must outlast the submits, as a real one does
GROUPED, PLAIN = "fair-grouped", "fair-plain"


@dataclass
class Race:
    a_done_meanwhile: int  # A's jobs finished between B's submit and B's last job finishing
    b_wait_s: float  # from B's submit to B's last job finishing
    a_left_at_b_submit: int  # A's jobs not yet finished when B submitted


class Tally:
    """The tenant of each finished job, in the order they finished."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.b_left = JOBS_B
        self.b_done = asyncio.Event()

    async def __call__(self, job: Job) -> None:
        await asyncio.sleep(JOB_S)
        tenant = job.payload["tenant"]
        self.order.append(tenant)
        if tenant == "B":
            self.b_left -= 1
            if self.b_left == 0:
                self.b_done.set()


async def race(url: str, job_type: str, grouped: bool) -> Race:
    tally = Tally()
    workers = [Worker(url, {job_type: tally}, worker_id=f"{job_type}-{i}", concurrency=CONCURRENCY, grace_s=2)
               for i in range(WORKERS)]
    await asyncio.gather(*(w.start() for w in workers))
    try:
        async with Client(url) as client:
            def jobs(tenant: str, count: int) -> list[dict[str, object]]:
                job: dict[str, object] = {"job_type": job_type, "payload": {"tenant": tenant}}
                if grouped:
                    job["group"] = tenant
                return [job] * count

            for _ in range(BACKLOG_A // BATCH):
                await client.submit_many(jobs("A", BATCH))
            left = BACKLOG_A - len(tally.order)
            await client.submit_many(jobs("B", JOBS_B))
            submitted, mark = time.perf_counter(), len(tally.order)
            await asyncio.wait_for(tally.b_done.wait(), 120)
            waited = time.perf_counter() - submitted
            finished = tally.order[mark:]
            last_b = len(finished) - finished[::-1].index("B")
            return Race(finished[:last_b].count("A"), waited, left)
    finally:
        await asyncio.gather(*(w.stop(grace_s=2) for w in workers))


def test_a_late_tenant_is_not_starved_by_a_backlog(benchmark: BenchmarkFixture, served_hub: ServedHub,
                                                   hub_loop: asyncio.AbstractEventLoop) -> None:
    """B's 10 jobs against A's backlog of 10,000, with groups and without, side by side."""
    results: dict[str, Race] = {}

    def both() -> None:
        results["grouped"] = hub_loop.run_until_complete(race(served_hub.url, GROUPED, True))
        results["plain"] = hub_loop.run_until_complete(race(served_hub.url, PLAIN, False))

    benchmark.group = GROUP
    benchmark.pedantic(both, rounds=1, iterations=1)
    grouped, plain = results["grouped"], results["plain"]
    for name, result in results.items():
        benchmark.extra_info[f"{name}_a_done_meanwhile"] = result.a_done_meanwhile
        benchmark.extra_info[f"{name}_b_wait_ms"] = round(result.b_wait_s * 1000, 1)
        benchmark.extra_info[f"{name}_a_left_at_b_submit"] = result.a_left_at_b_submit
    print(f"\nfairness: B's {JOBS_B} jobs behind A's backlog ({grouped.a_left_at_b_submit} / "
          f"{plain.a_left_at_b_submit} of A's left at B's submit): with groups {grouped.a_done_meanwhile} of "
          f"A's jobs finished first, B waited {grouped.b_wait_s * 1000:.0f} ms; without groups "
          f"{plain.a_done_meanwhile} and {plain.b_wait_s * 1000:.0f} ms")
    # the backlog was there (else the race shows nothing), and with groups B did not wait behind it
    assert grouped.a_left_at_b_submit > BACKLOG_A // 2 and plain.a_left_at_b_submit > BACKLOG_A // 2
    assert grouped.a_done_meanwhile <= 4 * WORKERS * CONCURRENCY
    assert plain.a_done_meanwhile >= plain.a_left_at_b_submit - WORKERS * CONCURRENCY
