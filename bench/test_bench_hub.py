"""End-to-end benchmarks through a hub: `empfast serve` in its own process on the bench's redis-server,
workers and a client (the Python SDKs) in this process on a uvloop loop, all over loopback. The load
itself is empfast.benchmark, the same code `empfast bench` runs against any hub.

- hub-roundtrip: a `ping` through the hub (the WebSocket round-trip floor) next to one job's
  submit -> completed as the client sees it, one job at a time (the unloaded latency).
- hub-throughput: a backlog drained by two workers (jobs/s through the hub), and jobs submitted at a
  steady rate while workers run them (submit -> completed latency under load, p50/p99).
Run: python -m pytest bench --benchmark-only
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import ServedHub
from pytest_benchmark.fixture import BenchmarkFixture

from empfast import benchmark as load
from empfast.client import Client
from empfast.worker import Worker

ROUNDTRIP_GROUP = "hub-roundtrip"
THROUGHPUT_GROUP = "hub-throughput"
ROUNDS = 1_000
WARMUP = 100
BACKLOG = 10_000
WORKERS = 2
CONCURRENCY = 64
STEADY_RATES = [1_000, 2_000]  # jobs/s submitted while the workers run
STEADY_S = 4.0


@pytest.fixture
def hub_url(served_hub: ServedHub) -> str:
    return served_hub.url


def _record(benchmark: BenchmarkFixture, latencies: load.Latencies) -> None:
    benchmark.extra_info["latency_p50_ms"] = round(latencies.ms(50), 3)
    benchmark.extra_info["latency_p99_ms"] = round(latencies.ms(99), 3)
    benchmark.extra_info["latency_max_ms"] = round(latencies.ms(100), 3)


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
    workers = load.make_workers(hub_url, 1, 1, load.Countdown(ROUNDS + WARMUP), "bench-one")
    run(client.connect())
    run(workers[0].start())
    try:
        benchmark.group = ROUNDTRIP_GROUP
        benchmark.extra_info["jobs_per_call"] = 1
        benchmark.pedantic(lambda: run(load.one_at_a_time(client, 1)), rounds=ROUNDS, warmup_rounds=WARMUP,
                           iterations=1)
        if benchmark.stats is not None:
            data = list(benchmark.stats.stats.data)
            _record(benchmark, load.Latencies(data, sum(data)))
    finally:
        run(load.stop_workers(workers))
        run(client.close())


def test_drain_a_backlog(benchmark: BenchmarkFixture, hub_url: str,
                         hub_loop: asyncio.AbstractEventLoop) -> None:
    """A backlog of BACKLOG jobs (added with submit_many, not timed) run by WORKERS workers of
    CONCURRENCY slots each, from their start to the last acknowledged completion."""
    run = hub_loop.run_until_complete
    client = Client(hub_url)
    run(client.connect())
    submit_s: list[float] = []

    def setup() -> tuple[tuple[list[Worker], load.Countdown], dict[str, Any]]:
        submit_s.append(run(load.submit_backlog(client, BACKLOG)))
        countdown = load.Countdown(BACKLOG)
        workers = load.make_workers(hub_url, WORKERS, CONCURRENCY, countdown, f"bench-drain-{len(submit_s)}")
        return (workers, countdown), {}

    def drain(workers: list[Worker], countdown: load.Countdown) -> None:
        run(load.drain(workers, countdown))
        run(load.stop_workers(workers))

    try:
        benchmark.group = THROUGHPUT_GROUP
        benchmark.extra_info["jobs_per_call"] = BACKLOG
        benchmark.pedantic(drain, setup=setup, rounds=3, iterations=1)
        stats = run(client.stats())
        assert stats["pending"] == 0 and stats["active"] == 0
        if benchmark.stats is not None:
            benchmark.extra_info["jobs_per_s"] = round(BACKLOG / benchmark.stats.stats.median)
            median_submit_s = sorted(submit_s)[len(submit_s) // 2]
            benchmark.extra_info["submit_many_jobs_per_s"] = round(BACKLOG / median_submit_s)
    finally:
        run(client.close())


async def _steady(hub_url: str, rate: int) -> load.Latencies:
    workers = load.make_workers(hub_url, WORKERS, CONCURRENCY, load.Countdown(0), "bench-steady")
    await asyncio.gather(*(w.start() for w in workers))
    try:
        async with Client(hub_url) as client:
            return await load.steady_rate(client, rate, STEADY_S)
    finally:
        await load.stop_workers(workers)


@pytest.mark.parametrize("rate", STEADY_RATES)
def test_latency_under_steady_load(benchmark: BenchmarkFixture, hub_url: str,
                                   hub_loop: asyncio.AbstractEventLoop, rate: int) -> None:
    """`rate` jobs/s for STEADY_S s; the benchmark's time is the whole run, extra_info has the
    submit -> completed distribution."""
    run = hub_loop.run_until_complete
    outcome: list[load.Latencies] = []
    benchmark.group = THROUGHPUT_GROUP
    benchmark.extra_info["jobs_per_call"] = int(rate * STEADY_S)
    benchmark.pedantic(lambda: outcome.append(run(_steady(hub_url, rate))), rounds=1, iterations=1)
    (latencies,) = outcome
    assert len(latencies.seconds) == int(rate * STEADY_S)
    benchmark.extra_info["offered_jobs_per_s"] = rate
    benchmark.extra_info["achieved_jobs_per_s"] = round(latencies.rate)
    _record(benchmark, latencies)
