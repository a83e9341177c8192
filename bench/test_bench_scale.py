"""Connection scale: 10,000 idle client connections to one hub, and the hub's memory per connection
(issue 9; target: 10,000 idle connections in under 500 MiB of hub RSS).

`empfast serve` runs in its own process with room for the connections (`--max-connections`); the
connections are a crowd of minimal WebSocket clients in processes of their own (bench/crowd.py),
each having had its `welcome` and then sending nothing. The hub's RSS (VmRSS of /proc/<pid>/status)
is read before the crowd connects, once every connection is open and the hub is quiet again, and
after the crowd has left. The benchmark's time is opening all the connections.

The count comes from EMPFAST_BENCH_IDLE_CONNECTIONS (default 10000), so the CI smoke can run it small.
Run: python -m pytest bench/test_bench_scale.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
import time

from conftest import serving_hub
from crowd import Crowd, raise_descriptor_limit
from procfs import rss_mb
from pytest_benchmark.fixture import BenchmarkFixture
from support import RedisServer

CONNECTIONS = int(os.environ.get("EMPFAST_BENCH_IDLE_CONNECTIONS", "10000"))
SETTLE_S = 1.0  # after the last welcome: let the hub finish its per-connection work before reading RSS
TARGET_CONNECTIONS, TARGET_MIB = 10_000, 500


def test_idle_connections_hub_rss(benchmark: BenchmarkFixture, redis_server: RedisServer,
                                  hub_loop: asyncio.AbstractEventLoop) -> None:
    run = hub_loop.run_until_complete
    descriptors = raise_descriptor_limit()
    assert descriptors > CONNECTIONS + 256, f"the descriptor limit ({descriptors}) is too low"
    redis_server.flush()
    figures: dict[str, float] = {}
    with serving_hub(redis_server, "--max-connections", str(CONNECTIONS + 64)) as hub:
        time.sleep(SETTLE_S)
        before = rss_mb(hub.pid)
        crowds: list[Crowd] = []

        def connect_all() -> None:
            started = time.perf_counter()
            crowds.append(run(Crowd.start(hub.url, CONNECTIONS, ready_timeout_s=300)))
            figures["connections_per_s"] = round(CONNECTIONS / (time.perf_counter() - started))

        benchmark.group = "hub-connections"
        benchmark.pedantic(connect_all, rounds=1, iterations=1)
        (crowd,) = crowds
        time.sleep(SETTLE_S)
        connected = rss_mb(hub.pid)
        run(crowd.close())
        time.sleep(SETTLE_S)
        after = rss_mb(hub.pid)
    assert crowd.connections == CONNECTIONS  # Crowd.start returns once every one had its welcome
    per_connection_kib = (connected - before) * 1024 / CONNECTIONS
    benchmark.extra_info.update({
        "idle_connections": CONNECTIONS, "every_connection_welcomed": True,
        "hub_rss_before_mb": round(before, 1), "hub_rss_connected_mb": round(connected, 1),
        "hub_rss_after_close_mb": round(after, 1), "hub_rss_per_connection_kib": round(per_connection_kib, 1),
        **figures})
    if CONNECTIONS == TARGET_CONNECTIONS:
        benchmark.extra_info["issue_target"] = f"{TARGET_CONNECTIONS:,} idle in < {TARGET_MIB} MiB hub RSS"
        benchmark.extra_info["issue_measured"] = (f"{connected:.0f} MiB ({per_connection_kib:.1f} KiB "
                                                  "a connection)")
