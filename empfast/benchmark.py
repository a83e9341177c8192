"""Load through a hub with the SDKs, measured from the outside: used by `empfast bench` against any
hub, and by bench/test_bench_hub.py against a hub of its own. Workers run a no-op handler, so the
figures are the cost of empfast itself: the client, the hub, the Lua scripts and Redis."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from empfast.bars import Board, bar, percentile
from empfast.client import Client
from empfast.worker import Handler, Job, Worker

JOB_TYPE = "empfast-bench"
PAYLOAD = {"to": "someone@example.com", "template": "welcome", "n": 42}
RESULT = {"ok": True}


class Countdown:
    """A no-op handler that sets `done` once it has run `total` jobs."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.done = asyncio.Event()

    async def __call__(self, job: Job) -> dict[str, bool]:
        self.left -= 1
        if self.left <= 0:
            self.done.set()
        return RESULT


@dataclass
class Latencies:
    seconds: list[float]
    elapsed_s: float

    @property
    def rate(self) -> float:
        return len(self.seconds) / self.elapsed_s if self.elapsed_s else 0.0

    def ms(self, pct: float) -> float:
        return percentile(sorted(self.seconds), pct) * 1000


def make_workers(url: str, count: int, concurrency: int, handler: Handler, name: str,
                 token: str | None = None) -> list[Worker]:
    return [Worker(url, {JOB_TYPE: handler}, worker_id=f"{name}-{i}", concurrency=concurrency,
                   token=token, grace_s=2) for i in range(count)]


async def stop_workers(workers: list[Worker]) -> None:
    await asyncio.gather(*(w.stop(grace_s=2) for w in workers))


async def submit_backlog(client: Client, jobs: int) -> float:
    """Add `jobs` jobs with submit_many; the seconds it took."""
    started = time.perf_counter()
    ids = await client.submit_many([{"job_type": JOB_TYPE, "payload": PAYLOAD}] * jobs)
    assert len(ids) == jobs
    return time.perf_counter() - started


async def drain(workers: list[Worker], countdown: Countdown) -> float:
    """Start the workers and wait until they have run the countdown's jobs and every outcome is
    acknowledged; the seconds it took."""
    started = time.perf_counter()
    await asyncio.gather(*(w.start() for w in workers))
    await countdown.done.wait()
    await asyncio.gather(*(w.wait_idle() for w in workers))
    return time.perf_counter() - started


async def one_at_a_time(client: Client, rounds: int) -> Latencies:
    """Submit, wait for the result, repeat: the unloaded submit -> completed latency."""
    seconds = []
    began = time.perf_counter()
    for _ in range(rounds):
        started = time.perf_counter()
        handle = await client.submit(JOB_TYPE, PAYLOAD)
        if await handle.result(timeout=30) != RESULT:
            raise AssertionError("a bench job returned the wrong result")
        seconds.append(time.perf_counter() - started)
    return Latencies(seconds, time.perf_counter() - began)


async def steady_rate(client: Client, rate: float, duration_s: float,
                      on_tick: Callable[[int, int], None] | None = None) -> Latencies:
    """Offer `rate` jobs/s for `duration_s` (each submit in its own task, so a slow reply does not
    slow the rate) and time each job from its submit to its result."""
    seconds: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        handle = await client.submit(JOB_TYPE, PAYLOAD)
        if await handle.result(timeout=60) != RESULT:
            raise AssertionError("a bench job returned the wrong result")
        seconds.append(time.perf_counter() - started)

    total = int(rate * duration_s)
    tasks = []
    began = time.perf_counter()
    for n in range(total):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
        if on_tick is not None and n % 100 == 0:
            on_tick(n, len(seconds))
    await asyncio.gather(*tasks)
    return Latencies(seconds, time.perf_counter() - began)


async def run_bench(url: str, *, token: str | None = None, jobs: int = 10_000, workers: int = 2,
                    concurrency: int = 64, rounds: int = 200, rate: float = 1_000, duration_s: float = 4.0,
                    out: TextIO = sys.stdout, progress: TextIO = sys.stderr) -> None:
    """`empfast bench`: the three measurements of bench/test_bench_hub.py against the hub at `url`,
    with progress, then a summary. Jobs are of type JOB_TYPE; the queue should have no other
    workers for it."""
    board = Board(progress)
    async with Client(url, token=token) as client:
        print(f"empfast bench against {url}: {workers} workers x {concurrency} slots in this process",
              file=out, flush=True)
        one = make_workers(url, 1, 1, Countdown(0), "bench-one", token)
        await one[0].start()
        try:
            unloaded = await one_at_a_time(client, rounds)
        finally:
            await stop_workers(one)
        print(f"one job at a time ({rounds}): submit -> completed p50 {unloaded.ms(50):.2f} ms, "
              f"p99 {unloaded.ms(99):.2f} ms", file=out, flush=True)

        submit_s = await submit_backlog(client, jobs)
        countdown = Countdown(jobs)
        pool = make_workers(url, workers, concurrency, countdown, "bench-drain", token)
        draining = asyncio.ensure_future(drain(pool, countdown))
        while not draining.done():
            await asyncio.wait({draining}, timeout=0.1)
            board.show([f"draining {bar((jobs - countdown.left) / jobs)} {jobs - countdown.left}/{jobs}"])
        drain_s = draining.result()
        await stop_workers(pool)
        print(f"backlog of {jobs}: submit_many {jobs / submit_s:,.0f} jobs/s; drained at "
              f"{jobs / drain_s:,.0f} jobs/s", file=out, flush=True)

        pool = make_workers(url, workers, concurrency, Countdown(0), "bench-steady", token)
        await asyncio.gather(*(w.start() for w in pool))
        try:
            loaded = await steady_rate(client, rate, duration_s, lambda sent, done: board.show(
                [f"steady {bar(sent / (rate * duration_s))} offered {sent}, completed {done}"]))
        finally:
            await stop_workers(pool)
        print(f"{rate:,.0f} jobs/s offered for {duration_s:g} s: {loaded.rate:,.0f} jobs/s achieved, "
              f"submit -> completed p50 {loaded.ms(50):.2f} ms, p99 {loaded.ms(99):.2f} ms", file=out)
