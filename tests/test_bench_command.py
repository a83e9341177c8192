"""`empfast bench` never touches a user's queue (issue 9): with --redis-url it runs on a fresh queue
with a hub of its own and deletes that queue afterwards; against a hub whose queue holds jobs it
refuses. Either way the user's finished and pending jobs are exactly as they were."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from in_process import run_in_process
from support import RedisServer

from empfast.benchmark import JOB_TYPE
from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.hub import Hub
from empfast.keys import QueueKeys
from empfast.store import Store

pytestmark = pytest.mark.real_redis

USER_QUEUE = "default"
SMALL = ("--jobs", "200", "--rounds", "5", "--rate", "50", "--duration-s", "0.5", "--workers", "1",
         "--concurrency", "8")


async def users_queue(server: RedisServer) -> Store:
    """The user's queue: three completed jobs and two pending, one of them of the bench's own job type
    (a bench worker on this queue would run it)."""
    store = await Store.connect(RedisOptions(url=server.url), QueueSettings(name=USER_QUEUE))
    for n in range(3):
        await store.add_job("email", b'{"n":%d}' % n, job_id=f"done-{n}")
    await store.register_worker("user-worker", ["email"], concurrency=3)
    for job in await store.claim("user-worker", 3):
        await store.complete(job.job_id, "user-worker", job.attempt, b'{"sent":true}')
    await store.add_job("email", b'{"n":3}', job_id="waiting-email")
    await store.add_job(JOB_TYPE, b"{}", job_id="waiting-bench-type")
    return store


def users_jobs(server: RedisServer) -> dict[str, Any]:
    """Every job hash of the user's queue and every set that lists its jobs, as their contents."""
    keys = QueueKeys.for_queue(USER_QUEUE)
    with redis.Redis(port=server.port) as client:
        found: dict[str, Any] = {}
        for key in client.scan_iter(match=keys.prefix + "job:*"):
            found[key.decode()] = client.hgetall(key)
        for key in [*client.scan_iter(match=keys.prefix + "pending:*"), keys.completed, keys.active,
                    keys.failed, keys.scheduled, keys.cancelled]:
            name = key if isinstance(key, str) else key.decode()
            found[name] = client.zrange(key, 0, -1, withscores=True)
    return found


def other_keys(server: RedisServer) -> list[str]:
    with redis.Redis(port=server.port) as client:
        prefix = QueueKeys.for_queue(USER_QUEUE).prefix
        return sorted(k.decode() for k in client.scan_iter() if not k.decode().startswith(prefix))


async def test_bench_with_a_redis_url_runs_on_a_queue_of_its_own_and_deletes_it(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # the user's own hub token: the bench's hub takes a token of its own, which its peers send
    monkeypatch.setenv("EMPFAST_TOKEN", "the-users-hub-token")
    monkeypatch.setenv("EMPFAST_CLIENT_TOKENS", "another-users-token")
    redis_server.flush()
    store = await users_queue(redis_server)
    await store.close()
    before = users_jobs(redis_server)
    assert len([k for k in before if ":job:" in k]) == 5

    bench = await asyncio.to_thread(run_in_process, "bench", "--redis-url", redis_server.url, *SMALL)

    assert bench.returncode == 0, bench.stderr
    assert "on the fresh queue 'bench-" in bench.stdout and "backlog of 200" in bench.stdout
    assert "deleted" in bench.stdout.splitlines()[-1]
    assert users_jobs(redis_server) == before  # finished and pending alike, field for field
    assert other_keys(redis_server) == []  # nothing of the bench's queue is left


async def test_bench_refuses_a_hub_whose_queue_holds_jobs(redis_server: RedisServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMPFAST_REDIS_URL", raising=False)  # else bench would start a hub of its own
    redis_server.flush()
    store = await users_queue(redis_server)
    before = users_jobs(redis_server)
    hub = Hub(store, HubConfig(port=0, http_port=0))
    await hub.start()
    try:
        bench = await asyncio.to_thread(run_in_process, "bench", "--url", f"ws://127.0.0.1:{hub.port}",
                                        *SMALL)
        stats = await store.stats()
    finally:
        await hub.stop()
        await store.close()
    assert bench.returncode == 2, bench.stdout + bench.stderr
    assert "holds jobs (2 pending, 3 completed)" in bench.stderr and "--redis-url" in bench.stderr
    assert "one job at a time" not in bench.stdout  # refused before adding anything
    assert users_jobs(redis_server) == before
    assert stats.pending == 2 and stats.completed == 3
