"""`empfast demo`: a hub on the embedded store, a few workers and a client, all in this process and
all speaking the real protocol over loopback WebSockets. It runs a mix of jobs with live progress
and ends with a summary (jobs/s through the hub, submit-to-completed latency)."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from empfast.bars import Board, bar, percentile
from empfast.client import Client
from empfast.config import HubConfig, QueueSettings
from empfast.handlers import BUILTIN_HANDLERS
from empfast.hub import Hub
from empfast.store import Store
from empfast.worker import Worker


@dataclass
class JobState:
    job_type: str
    status: str = "pending"
    progress: float = 0.0
    submitted_at: float = 0.0
    finished_at: float = 0.0


@dataclass
class DemoRun:
    total: int
    jobs: dict[str, JobState] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    retried: int = 0
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> int:
        return self.completed + self.failed

    def lines(self, width: int = 30) -> list[str]:
        elapsed = max(time.perf_counter() - self.started_at, 1e-9)
        running = [(job_id, s) for job_id, s in self.jobs.items() if s.status == "active"]
        head = (f"{bar(self.done / self.total, width)} {self.done}/{self.total} jobs  "
                f"{self.done / elapsed:,.0f} jobs/s  running {len(running)}  "
                f"completed {self.completed}  failed {self.failed}  retried {self.retried}")
        slow = sorted((s for _, s in running if s.job_type == "sleep"), key=lambda s: -s.progress)[:4]
        return [head] + [f"  sleep {bar(s.progress / 100, 20)} {s.progress:5.1f}%" for s in slow]


def plan_jobs(count: int, rng: random.Random) -> list[tuple[str, dict[str, Any], int]]:
    """Mostly quick echo jobs, some sleeps that report progress, a few failures that retry once."""
    jobs: list[tuple[str, dict[str, Any], int]] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.03:
            jobs.append(("fail", {"message": f"job {n} fails on purpose"}, 2))
        elif roll < 0.15:
            jobs.append(("sleep", {"seconds": round(rng.uniform(0.3, 1.5), 2), "steps": 10}, 3))
        else:
            jobs.append(("echo", {"n": n, "text": "hello from empfast"}, 3))
    return jobs


async def _follow(client: Client, run: DemoRun, job_type: str, payload: dict[str, Any],
                  max_attempts: int) -> None:
    state = JobState(job_type, submitted_at=time.perf_counter())
    handle = await client.submit(job_type, payload, max_attempts=max_attempts)
    run.jobs[handle.job_id] = state
    async for event in handle.events():
        kind = event["type"]
        if kind == "job_update":
            state.status = event.get("status", state.status)
            state.progress = event.get("progress", state.progress)
        elif kind == "job_failed" and not event.get("final"):
            run.retried += 1
            state.status, state.progress = "pending", 0.0
    state.finished_at = time.perf_counter()
    state.status = {"job_completed": "completed", "job_failed": "failed"}.get(kind, "cancelled")
    if state.status == "completed":
        run.completed += 1
    else:
        run.failed += 1


async def run_demo(jobs: int = 300, workers: int = 3, concurrency: int = 8, seed: int | None = None,
                   out: TextIO = sys.stdout, progress: TextIO = sys.stderr) -> DemoRun:
    settings = QueueSettings(name="demo", lease_ms=10_000, liveness_ms=10_000, backoff_base_ms=200)
    store = Store.embedded(settings)
    hub = Hub(store, HubConfig(port=0, http_port=0, sweep_interval_s=0.2, events_block_ms=100))
    await hub.start()
    url = f"ws://127.0.0.1:{hub.port}"
    print(f"empfast demo: a hub at {url} on the embedded store (fakeredis with Lua, in this process; "
          f"not durable), {workers} workers x {concurrency} slots, {jobs} jobs", file=out, flush=True)
    pool = [Worker(url, BUILTIN_HANDLERS, worker_id=f"demo-worker-{i}", concurrency=concurrency, grace_s=5)
            for i in range(workers)]
    board = Board(progress)
    run = DemoRun(jobs)
    # the 'fail' jobs fail on purpose: their tracebacks would bury the progress lines
    worker_log = logging.getLogger("empfast.worker")
    worker_level = worker_log.level
    worker_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.gather(*(w.start() for w in pool))
        async with Client(url) as client:
            run.started_at = time.perf_counter()
            tasks = [asyncio.ensure_future(_follow(client, run, *job))
                     for job in plan_jobs(jobs, random.Random(seed))]
            pending = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=0.1)
                board.show(run.lines())
            for task in tasks:
                task.result()  # surface the first error, if any
            board.close(run.lines())
            elapsed = time.perf_counter() - run.started_at
    finally:
        await asyncio.gather(*(w.stop(grace_s=1) for w in pool), return_exceptions=True)
        await hub.stop()
        await store.close()
        worker_log.setLevel(worker_level)
    _summary(run, elapsed, workers, concurrency, out)
    return run


def _summary(run: DemoRun, elapsed: float, workers: int, concurrency: int, out: TextIO) -> None:
    echo_ms = sorted((s.finished_at - s.submitted_at) * 1000 for s in run.jobs.values()
                     if s.job_type == "echo" and s.status == "completed")
    print(f"{run.total} jobs in {elapsed:.2f} s: {run.total / elapsed:,.0f} jobs/s through the hub "
          f"({workers} workers x {concurrency} slots)", file=out)
    print(f"completed {run.completed}, failed for good {run.failed} (the 'fail' jobs, after one retry "
          f"each), retries {run.retried}", file=out)
    if echo_ms:
        print(f"submit -> completed, as the client saw it (echo jobs, {len(echo_ms)}): "
              f"p50 {percentile(echo_ms, 50):.1f} ms, p99 {percentile(echo_ms, 99):.1f} ms "
              "(all jobs were submitted at once, so this includes their wait in the queue)", file=out)
    print("The embedded store runs each Lua script in fakeredis (about 2 ms each): with Redis, "
          "`empfast serve --redis-url ...` is many times faster; see bench/README.md.", file=out)
