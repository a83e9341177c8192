"""End-to-end benchmarks through a hub: `empfast serve` in its own process on the bench's redis-server,
workers and a client (the Python SDKs) in this process on a uvloop loop, all over loopback.

- hub-roundtrip: a `ping` through the hub (the WebSocket round-trip floor) next to one job's
  submit -> completed as the client sees it, one job at a time (the unloaded latency).
- hub-throughput: a backlog drained by two workers (jobs/s through the hub), and jobs submitted at a
  steady rate while workers run them (submit -> completed latency under load, p50/p99).
Run: python -m pytest bench --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

import pytest
import uvloop
from pytest_benchmark.fixture import BenchmarkFixture
from support import RedisServer, free_port

from empfast.bars import percentile
from empfast.client import Client
from empfast.worker import Job, Worker

ROUNDTRIP_GROUP = "hub-roundtrip"
THROUGHPUT_GROUP = "hub-throughput"
JOB_TYPE = "bench"
PAYLOAD = {"to": "someone@example.com", "template": "welcome", "n": 42}
ROUNDS = 1_000
WARMUP = 100
BACKLOG = 10_000
WORKERS = 2
CONCURRENCY = 64
STEADY_RATE = 1_000  # jobs/s submitted while the workers run
STEADY_S = 4.0


async def noop(job: Job) -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
def hub_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture
def hub_url(redis_server: RedisServer) -> Iterator[str]:
    """`empfast serve` on the bench's Redis (flushed first), as a user runs it."""
    redis_server.flush()
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "empfast", "serve", "--port", str(port), "--redis-url", redis_server.url,
             "--queue", "bench", "--lease-s", "600", "--log-level", "warning"],
            stderr=log, env={**os.environ, "EMPFAST_JSON_LOGS": ""})
        try:
            _wait_listening(port, proc, log)
            yield f"ws://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"empfast serve exited: {log.read().decode()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"empfast serve did not listen on port {port} within 20 s")


def _record_distribution(benchmark: BenchmarkFixture, name: str, seconds: list[float]) -> None:
    ordered = sorted(seconds)
    benchmark.extra_info[f"{name}_p50_ms"] = round(percentile(ordered, 50) * 1000, 3)
    benchmark.extra_info[f"{name}_p99_ms"] = round(percentile(ordered, 99) * 1000, 3)
    benchmark.extra_info[f"{name}_max_ms"] = round(ordered[-1] * 1000, 3)


def test_hub_ping(benchmark: BenchmarkFixture, hub_url: str, hub_loop: asyncio.AbstractEventLoop) -> None:
    """The floor: one `ping` -> `pong` through the hub with the client SDK (no Redis involved)."""
    run = hub_loop.run_until_complete
    client = Client(hub_url)
    run(client.connect())
    try:
        benchmark.group = ROUNDTRIP_GROUP
        benchmark.pedantic(lambda: run(client.ping()), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    finally:
        run(client.close())


def test_submit_to_completed_one_at_a_time(benchmark: BenchmarkFixture, hub_url: str,
                                           hub_loop: asyncio.AbstractEventLoop) -> None:
    """One job's whole life as the client sees it: submit, a worker runs it, the result arrives.
    Redis round trips: add; claim (dispatch); complete; the events stream read by the hub."""
    run = hub_loop.run_until_complete
    client = Client(hub_url)
    worker = Worker(hub_url, {JOB_TYPE: noop}, worker_id="bench-w1", concurrency=1)
    run(client.connect())
    run(worker.start())

    async def one_job() -> None:
        handle = await client.submit(JOB_TYPE, PAYLOAD)
        assert await handle.result(timeout=10) == {"ok": True}

    try:
        benchmark.group = ROUNDTRIP_GROUP
        benchmark.extra_info["jobs_per_call"] = 1
        benchmark.pedantic(lambda: run(one_job()), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
        if benchmark.stats is not None:
            _record_distribution(benchmark, "latency", list(benchmark.stats.stats.data))
    finally:
        run(worker.stop(grace_s=1))
        run(client.close())


class Countdown:
    """A noop handler that sets `done` when it has run `total` jobs."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.done = asyncio.Event()

    async def __call__(self, job: Job) -> dict[str, bool]:
        self.left -= 1
        if self.left == 0:
            self.done.set()
        return {"ok": True}


async def _stop(workers: list[Worker]) -> None:
    await asyncio.gather(*(w.stop(grace_s=1) for w in workers))


async def _drain(workers: list[Worker], countdown: Countdown) -> None:
    await asyncio.gather(*(w.start() for w in workers))
    await countdown.done.wait()
    await asyncio.gather(*(w.wait_idle() for w in workers))  # the last outcomes acknowledged


def test_drain_a_backlog(benchmark: BenchmarkFixture, hub_url: str,
                         hub_loop: asyncio.AbstractEventLoop) -> None:
    """A backlog of BACKLOG jobs (added with submit_many, not timed) run by WORKERS workers of
    CONCURRENCY slots each, from their start to the last acknowledged completion."""
    run = hub_loop.run_until_complete
    client = Client(hub_url)
    run(client.connect())
    rounds: list[dict[str, Any]] = []

    def setup() -> tuple[tuple[list[Worker], Countdown], dict[str, Any]]:
        started = time.perf_counter()
        ids = run(client.submit_many([{"job_type": JOB_TYPE, "payload": PAYLOAD}] * BACKLOG))
        rounds.append({"submit_s": time.perf_counter() - started})
        assert len(set(ids)) == BACKLOG
        countdown = Countdown(BACKLOG)
        workers = [Worker(hub_url, {JOB_TYPE: countdown}, worker_id=f"bench-drain-{len(rounds)}-{i}",
                          concurrency=CONCURRENCY) for i in range(WORKERS)]
        return (workers, countdown), {}

    def drain(workers: list[Worker], countdown: Countdown) -> None:
        run(_drain(workers, countdown))
        run(_stop(workers))

    try:
        benchmark.group = THROUGHPUT_GROUP
        benchmark.extra_info["jobs_per_call"] = BACKLOG
        benchmark.pedantic(drain, setup=setup, rounds=3, iterations=1)
        stats = run(client.stats())
        assert stats["pending"] == 0 and stats["active"] == 0
        if benchmark.stats is not None:
            benchmark.extra_info["jobs_per_s"] = round(BACKLOG / benchmark.stats.stats.median)
            submit_s = sorted(r["submit_s"] for r in rounds)[len(rounds) // 2]
            benchmark.extra_info["submit_many_jobs_per_s"] = round(BACKLOG / submit_s)
    finally:
        run(client.close())


async def _steady(hub_url: str) -> tuple[list[float], float]:
    """Submit STEADY_RATE jobs/s for STEADY_S seconds (each submit in its own task, so a slow reply
    does not slow the rate) and time each from its submit to its result."""
    workers = [Worker(hub_url, {JOB_TYPE: noop}, worker_id=f"bench-steady-{i}", concurrency=CONCURRENCY)
               for i in range(WORKERS)]
    await asyncio.gather(*(w.start() for w in workers))
    latencies: list[float] = []
    async with Client(hub_url) as client:

        async def one() -> None:
            started = time.perf_counter()
            handle = await client.submit(JOB_TYPE, PAYLOAD)
            assert await handle.result(timeout=30) == {"ok": True}
            latencies.append(time.perf_counter() - started)

        total = int(STEADY_RATE * STEADY_S)
        begin = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = begin + n / STEADY_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    await _stop(workers)
    return latencies, elapsed


def test_latency_under_steady_load(benchmark: BenchmarkFixture, hub_url: str,
                                   hub_loop: asyncio.AbstractEventLoop) -> None:
    """STEADY_RATE jobs/s for STEADY_S s; the benchmark's time is the whole run, extra_info has the
    submit -> completed distribution."""
    run = hub_loop.run_until_complete
    outcome: list[tuple[list[float], float]] = []
    benchmark.group = THROUGHPUT_GROUP
    benchmark.extra_info["jobs_per_call"] = int(STEADY_RATE * STEADY_S)
    benchmark.pedantic(lambda: outcome.append(run(_steady(hub_url))), rounds=1, iterations=1)
    latencies, elapsed = outcome[0]
    assert len(latencies) == int(STEADY_RATE * STEADY_S)
    benchmark.extra_info["offered_jobs_per_s"] = STEADY_RATE
    benchmark.extra_info["achieved_jobs_per_s"] = round(len(latencies) / elapsed)
    _record_distribution(benchmark, "latency", latencies)
