"""Load through a hub with the SDKs, measured from the outside: used by `empfast bench` and by
bench/test_bench_hub.py against a hub of its own. Workers run a no-op handler, so the figures are the
cost of empfast itself: the client, the hub, the Lua scripts and Redis.

The bench adds thousands of jobs, and retention then drops the oldest finished ones, so it never runs
in a queue that holds someone's jobs: with a Redis URL it starts a hub of its own on a fresh queue
of that Redis and deletes the queue afterwards (`own_queue_hub`); against a running hub, whose one
queue it cannot change, it refuses unless that queue holds no job (`refuse_a_queue_in_use`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from empfast.bars import Board, bar, percentile
from empfast.client import Client
from empfast.config import QueueSettings, RedisOptions
from empfast.keys import QueueKeys
from empfast.store import Store, redis_from_options
from empfast.worker import Handler, Job, Worker

JOB_TYPE = "empfast-bench"
BENCH_QUEUE_PREFIX = "bench-"
STATUSES = ("pending", "scheduled", "active", "completed", "failed", "cancelled")
HUB_START_TIMEOUT_S = 30.0
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
                 token: str | None = None, queue: str | None = None) -> list[Worker]:
    return [Worker(url, {JOB_TYPE: handler}, queue=queue, worker_id=f"{name}-{i}", concurrency=concurrency,
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


class QueueInUse(ValueError):
    """The hub's queue holds jobs: the bench would mix its own among them (a ValueError, so that the
    command line says it in one line with exit code 2)."""


async def refuse_a_queue_in_use(url: str, token: str | None = None) -> None:
    """Raise QueueInUse unless the queue behind the hub at `url` holds no job in any state."""
    async with Client(url, token=token) as client:
        stats = await client.stats()
    held = {status: stats.get(status, 0) for status in STATUSES if stats.get(status, 0)}
    if held:
        counts = ", ".join(f"{count} {status}" for status, count in held.items())
        raise QueueInUse(
            f"the queue behind {url} holds jobs ({counts}); the bench would add thousands of its own "
            "and retention would then drop finished jobs that are not its own. Give --redis-url to "
            "run on a fresh queue of that Redis with a hub of the bench's own (deleted afterwards), "
            "or point --url at a hub serving an empty queue (empfast serve --queue bench)")


class OwnHubFailed(RuntimeError):
    """The bench's own hub did not start; the message has its log."""


@dataclass(frozen=True)
class OwnQueueHub:
    url: str
    queue: str
    pid: int
    token: str  # made up for this hub alone


@contextlib.asynccontextmanager
async def own_queue_hub(redis: RedisOptions, variables: Mapping[str, str]) -> AsyncIterator[OwnQueueHub]:
    """`empfast serve` in a child process on loopback, on a fresh queue `bench-<12 hex>` of that
    Redis; at the end the hub is stopped and every key of the queue deleted. `variables` reach the
    child's environment (its Redis options as EMPFAST_REDIS_*, so no password shows in `ps`).

    The hub takes one token made up here, for every role, and none of the user's: their tokens
    (EMPFAST_TOKEN, EMPFAST_CLIENT_TOKENS...) are for their hubs, and the bench's peers would not
    know which to send; the made-up one keeps other local users off the bench's port."""
    queue = f"{BENCH_QUEUE_PREFIX}{secrets.token_hex(6)}"
    token = secrets.token_urlsafe(24)
    environment = {name: value for name, value in os.environ.items()
                   if not (name.startswith("EMPFAST_") and "TOKEN" in name)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "empfast", "serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
        "--queue", queue,
        "--log-level", "info", stderr=asyncio.subprocess.PIPE,
        env={**environment, **variables, "EMPFAST_JSON_LOGS": "", "EMPFAST_TOKEN": token})
    log_reader: asyncio.Future[None] | None = None
    try:
        url = await _listening_url(proc)
        assert proc.stderr is not None
        log_reader = asyncio.ensure_future(_read_to_end(proc.stderr))  # a full pipe would stall the hub
        yield OwnQueueHub(url, queue, proc.pid, token)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if log_reader is not None:
            await log_reader
        await delete_queue(redis, queue)


async def _listening_url(proc: asyncio.subprocess.Process) -> str:
    """The hub's address, from its start-up line (it chose the port); its log when it did not start."""
    assert proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(HUB_START_TIMEOUT_S):
        while raw := await proc.stderr.readline():
            lines.append(raw.decode(errors="replace").rstrip())
            found = re.search(r"on ws://([\d.]+):(\d+)/ws/", lines[-1])
            if found:
                return f"ws://{found[1]}:{found[2]}"
    await proc.wait()
    raise OwnHubFailed(f"the bench's hub did not start (exit code {proc.returncode}): " + " / ".join(lines))


async def _read_to_end(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def delete_queue(redis: RedisOptions, queue: str) -> int:
    """Delete every key of `queue` (all share the prefix `{queue}:`); how many there were. Only for
    the bench's own queue, whose name the bench made up."""
    if not queue.startswith(BENCH_QUEUE_PREFIX):
        raise ValueError(f"refusing to delete queue {queue!r}: not a queue of the bench")
    # The store has no call that deletes a queue; its client reaches the keys. A SCAN walks the whole
    # keyspace in slices, so it never blocks Redis, however many keys other queues hold.
    store = Store(redis_from_options(redis), QueueSettings(name=queue))
    deleted = 0
    try:
        pattern = QueueKeys.for_queue(queue).prefix + "*"
        batch: list[bytes] = []
        async for key in store.redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await store.redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await store.redis.unlink(*batch)
    finally:
        await store.close()
    return deleted
