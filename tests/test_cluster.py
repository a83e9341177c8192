"""Redis Cluster (docs/deployment.md section 3): a hub on a 3-master cluster the test starts, its
queues on different masters (each queue one hash tag, so one slot), jobs through one hub and
through two, a master killed with -9 and restarted, and a queue's slot moved to another master
while its jobs run. Real Redis only: fakeredis has no cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cluster_support import ClusterNodes, queue_slot
from support import FAST_TIMINGS, require_redis_binary, ws_url

from empfast.client import Client
from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.hub import Hub
from empfast.store import Store, redis_from_options
from empfast.worker import Worker

JOBS_PER_QUEUE = 20


@pytest.mark.parametrize(("options", "says"), [
    ({"url": "redis://10.0.0.1:7000/2"}, "only database 0, not 2"),
    ({"url": "unix:///run/redis.sock"}, "reached on TCP"),
    ({"url": "redis+sentinel://10.0.0.1:26379/main"}, "cluster or Sentinels, not both"),
    ({"sentinels": "10.0.0.1:26379", "master_name": "main"}, "cluster or Sentinels, not both"),
])
def test_a_cluster_setting_that_cannot_work_is_refused_at_start(options: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RedisOptions(cluster=True, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    require_redis_binary("a Redis Cluster of three masters")
    nodes = ClusterNodes(Path(tmp_path_factory.mktemp("cluster")))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.close()


@contextlib.asynccontextmanager
async def cluster_hub(cluster: ClusterNodes, queues: list[str]) -> AsyncIterator[Hub]:
    """A hub on the cluster serving `queues` (the first its default)."""
    options = RedisOptions(url=cluster.url, cluster=True, retries=8)
    store = Store(redis_from_options(options), QueueSettings(name=queues[0], lease_ms=5_000))
    hub = Hub(store, HubConfig(port=0, http_port=0, queues=",".join(queues[1:]), **FAST_TIMINGS))
    try:
        await hub.start()
        yield hub
    finally:
        await hub.stop()
        await store.close()


async def echo(job: Any) -> Any:
    return job.payload


async def run_jobs(url: str, queue: str, count: int, tag: str) -> list[Any]:
    """Submit `count` jobs to a queue and wait for each result."""
    async with Client(url, queue=queue, request_timeout_s=30) as client:
        handles = [await client.submit("echo", {"tag": tag, "n": n}) for n in range(count)]
        return [await handle.result(timeout=30) for handle in handles]


def expected(tag: str, count: int) -> list[dict[str, Any]]:
    return [{"tag": tag, "n": n} for n in range(count)]


@pytest.mark.real_redis
async def test_queues_on_different_masters_through_one_hub_and_through_two(cluster: ClusterNodes) -> None:
    placed = cluster.queues_on_each_master("one-")
    queues = list(placed.values())
    async with cluster_hub(cluster, queues) as first, cluster_hub(cluster, queues) as second:
        workers = [Worker(ws_url(second), {"echo": echo}, queue=queue, concurrency=4) for queue in queues]
        for worker in workers:
            await worker.start()
        try:
            results = await asyncio.gather(*(run_jobs(ws_url(hub), queue, JOBS_PER_QUEUE, f"{queue}@{i}")
                                             for i, hub in enumerate((first, second)) for queue in queues))
        finally:
            for worker in workers:
                await worker.stop()
    for (i, queue), got in zip([(i, q) for i in range(2) for q in queues], results, strict=True):
        assert got == expected(f"{queue}@{i}", JOBS_PER_QUEUE)
    # each queue's keys are on the master that serves its slot, and nowhere else
    for port, queue in placed.items():
        for other in cluster.ports:
            with redis.Redis(port=other, socket_timeout=5) as node:
                keys = node.execute_command("CLUSTER", "COUNTKEYSINSLOT", queue_slot(queue))
                assert (keys > 0) is (other == port), (queue, port, other, keys)


@pytest.mark.real_redis
async def test_a_master_killed_and_restarted_loses_no_job_and_stops_only_its_queues(
        cluster: ClusterNodes) -> None:
    placed = cluster.queues_on_each_master("restart-")
    victim_port = next(iter(placed))
    victim, others = placed[victim_port], [q for port, q in placed.items() if port != victim_port]
    async with cluster_hub(cluster, list(placed.values())) as hub:
        workers = [Worker(ws_url(hub), {"echo": echo}, queue=queue, concurrency=4)
                   for queue in placed.values()]
        for worker in workers:
            await worker.start()
        try:
            async with Client(ws_url(hub), queue=victim, request_timeout_s=60) as client:
                before = [await client.submit("echo", {"n": n}) for n in range(10)]
                assert [await h.result(timeout=30) for h in before] == [{"n": n} for n in range(10)]
                cluster.kill(victim_port)
                # the other masters' queues work on meanwhile
                others_done = await asyncio.gather(*(run_jobs(ws_url(hub), q, 10, q) for q in others))
                assert others_done == [expected(q, 10) for q in others]
                cluster.start_node(victim_port)
                cluster.wait_ok()
                after = [await client.submit("echo", {"n": n}) for n in range(10, 20)]
                assert [await h.result(timeout=30) for h in after] == [{"n": n} for n in range(10, 20)]
                stats = await client.stats()
                assert (stats["completed"], stats["pending"], stats["active"]) == (20, 0, 0)
        finally:
            for worker in workers:
                await worker.stop()


@pytest.mark.real_redis
async def test_a_queue_whose_slot_moves_to_another_master_carries_on(cluster: ClusterNodes) -> None:
    placed = cluster.queues_on_each_master("moving-")
    (source_port, queue), (target_port, _) = list(placed.items())[:2]
    async with cluster_hub(cluster, [queue]) as hub, \
            Worker(ws_url(hub), {"echo": echo}, queue=queue, concurrency=4), \
            Client(ws_url(hub), queue=queue, request_timeout_s=60) as client:
        before = [await client.submit("echo", {"n": n}) for n in range(10)]
        assert [await h.result(timeout=30) for h in before] == [{"n": n} for n in range(10)]
        cluster.move_slot(queue_slot(queue), target_port)
        assert cluster.owner(queue_slot(queue)) == target_port != source_port
        after = [await client.submit("echo", {"n": n}) for n in range(10, 20)]
        assert [await h.result(timeout=30) for h in after] == [{"n": n} for n in range(10, 20)]
        stats = await client.stats()
        assert (stats["completed"], stats["pending"]) == (20, 0)
