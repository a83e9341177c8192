"""The hub's memory under a flood: 16 connections each send 64 valid `submit_job` frames of about
1 MiB (1 GiB in all) as fast as their sockets take them, while this test samples the RSS of the
`empfast serve` process. Each connection repeats one job id, so Redis stores one job per connection
and the hub still does the whole work of every frame (decode, Lua call with the 1 MiB payload,
reply). Without a byte bound on the inbound queues the hub holds whatever the peers sent before it
could handle it (issue 8 measured 2.4 GB for one such peer); with it, the peak stays near the
hub-wide budget (`max_inbound_total_bytes`, 256 MiB by default) plus the sockets' buffers.
Run: python -m pytest bench/test_bench_flood.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import time

import orjson
from conftest import ServedHub
from procfs import rss_mb
from pytest_benchmark.fixture import BenchmarkFixture
from support import WSPeer

CONNECTIONS = 16
FRAMES = 64
PAYLOAD_BYTES = (1 << 20) - 8192  # under the default frame limit with the frame around it


async def _flood(url: str, pid: int) -> dict[str, float]:
    payload = orjson.dumps("x" * PAYLOAD_BYTES)
    peers = [await WSPeer.connect(f"{url}/ws/client") for _ in range(CONNECTIONS)]
    for peer in peers:
        await peer.next()  # welcome
    baseline = peak = rss_mb(pid)
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    for i, peer in enumerate(peers):
        frame = (b'{"type":"submit_job","job_type":"flood","job_id":"flood-' + str(i).encode()
                 + b'","subscribe":false,"payload":' + payload + b"}")
        for _ in range(FRAMES):
            peer.send(frame)
    answered = 0
    async with asyncio.timeout(300):
        for peer in peers:
            for _ in range(FRAMES):
                reply = await peer.next(wait_s=300)
                assert reply["type"] == "job_accepted", reply
                answered += 1
    elapsed = time.perf_counter() - started
    done.set()
    await sampler
    for peer in peers:
        assert peer.transport is not None
        peer.transport.disconnect()
    return {"baseline_hub_rss_mb": round(baseline, 1), "peak_hub_rss_mb": round(peak, 1),
            "frames_per_s": round(answered / elapsed, 1)}


def test_hub_memory_under_a_flood_of_big_frames(benchmark: BenchmarkFixture, served_hub: ServedHub) -> None:
    figures: dict[str, float] = {}

    def run() -> None:
        figures.update(asyncio.run(_flood(served_hub.url, served_hub.pid)))

    benchmark.group = "hub-memory"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
