"""Fixtures of the store benchmarks: a real redis-server of the bench's own on a free loopback port
(never 6379), and a started Store on it with its own event loop (pytest-benchmark's `benchmark`
fixture is synchronous, so each benchmark drives its coroutines with loop.run_until_complete).

At the end of the run a short table puts every benchmark next to the EVALSHA round-trip floor of its
group, with the cost per job for the batch calls."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import uvloop
from pytest_benchmark.fixture import BenchmarkFixture

from empfast.config import QueueSettings, RedisOptions
from empfast.store import Store, redis_from_options

# RedisServer, running_redis_server and empfast_serve live in tests/support.py: reuse them, do not
# copy them.
TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support import RedisServer, ServedHub, empfast_serve, running_redis_server  # noqa: E402

# Leases and worker liveness far longer than any benchmark, so nothing lapses mid-run.
BENCH_SETTINGS = QueueSettings(name="bench", lease_ms=600_000, liveness_ms=600_000)
# the round-trip floor of each group: a call that does no work, through the same client and loop
FLOOR_TESTS = ("test_raw_evalsha_noop", "test_hub_ping")


class Result(NamedTuple):
    name: str
    group: str
    mean: float  # seconds per call
    median: float
    jobs_per_call: int | None
    extra: dict[str, object]


RESULTS = pytest.StashKey[list[Result]]()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server("the store benchmarks need a real Redis") as server:
        yield server


@pytest.fixture
def served_hub(redis_server: RedisServer) -> Iterator[ServedHub]:
    """`empfast serve` on the bench's Redis (flushed first), as a user runs it."""
    redis_server.flush()
    with serving_hub(redis_server) as hub:
        yield hub


@contextlib.contextmanager
def serving_hub(redis_server: RedisServer, *options: str) -> Iterator[ServedHub]:
    """`empfast serve` on queue "bench" of the bench's Redis (not flushed here), with these extra
    options (e.g. a retention setting), stopped at the end."""
    with empfast_serve(redis_server.url, "bench", "--lease-s", "600", *options) as hub:
        yield hub


def _fresh_loop(factory: Callable[[], asyncio.AbstractEventLoop]) -> Iterator[asyncio.AbstractEventLoop]:
    loop = factory()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture
def bench_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per benchmark: the store's client is created, used and closed on it."""
    yield from _fresh_loop(asyncio.new_event_loop)


@pytest.fixture
def hub_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A uvloop loop per hub benchmark, as the SDKs run under `empfast worker` and `empfast bench`."""
    yield from _fresh_loop(uvloop.new_event_loop)


@pytest.fixture
def bench_store(redis_server: RedisServer, bench_loop: asyncio.AbstractEventLoop) -> Iterator[Store]:
    """A started Store on an empty database (flushed before each benchmark)."""
    redis_server.flush()
    store = Store(redis_from_options(RedisOptions(url=redis_server.url)), BENCH_SETTINGS)
    bench_loop.run_until_complete(store.start())
    try:
        yield store
    finally:
        bench_loop.run_until_complete(store.close())


@pytest.fixture(autouse=True)
def _collect_result(request: pytest.FixtureRequest, benchmark: BenchmarkFixture) -> Iterator[None]:
    """After each benchmark, keep its figures for the floor-ratio table of the terminal summary."""
    yield
    meta = benchmark.stats  # None when the benchmark did not run (--benchmark-disable, a failure)
    if meta is None:
        return
    jobs = benchmark.extra_info.get("jobs_per_call")
    request.config.stash.setdefault(RESULTS, []).append(Result(
        request.node.name, benchmark.group or "", meta.stats.mean, meta.stats.median, jobs,
        dict(benchmark.extra_info)))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, [])
    if not results:
        return
    floors = {r.group: r for r in results if r.name.startswith(FLOOR_TESTS)}
    tr = terminalreporter
    tr.write_sep("-", "each benchmark vs its group's round-trip floor (EVALSHA 'return 1' for the "
                      "store, ping through the hub for the hub; same client, same loop)")
    tr.write_line(f"{'group':<15} {'benchmark':<38} {'mean us':>9} {'median us':>9} {'ops/s':>8} "
                  f"{'x floor':>8} {'us/job':>8} {'jobs/s':>9}")
    for r in sorted(results, key=lambda r: (r.group, r.mean)):
        floor = floors.get(r.group)
        ratio = f"{r.mean / floor.mean:7.2f}x" if floor else f"{'n/a':>8}"
        per_job = f"{r.mean / r.jobs_per_call * 1e6:8.2f} {r.jobs_per_call / r.mean:9.0f}" \
            if r.jobs_per_call else ""
        tr.write_line(f"{r.group:<15} {r.name:<38} {r.mean * 1e6:9.1f} {r.median * 1e6:9.1f} "
                      f"{1 / r.mean:8.0f} {ratio} {per_job}".rstrip())
    units = ("_ms", "_per_s", "_mb", "_kib", "_per_job", "_pct", "_us")
    extras = [r for r in results if any(k.endswith(units) for k in r.extra)]
    if extras:
        tr.write_sep("-", "distributions and rates (extra_info)")
        for r in extras:
            figures = "  ".join(f"{k} {v}" for k, v in r.extra.items() if k.endswith(units))
            tr.write_line(f"{r.name:<42} {figures}")
    targeted = [r for r in results if "issue_target" in r.extra]
    if targeted:
        tr.write_sep("-", "against issue 9's targets (reported, not asserted)")
        for r in targeted:
            tr.write_line(f"{r.name:<42} target: {r.extra['issue_target']:<40} measured: "
                          f"{r.extra.get('issue_measured', 'n/a')}")
