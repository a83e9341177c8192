"""The hub's HTTP side (docs/management.md section 4) over a real socket, against a started hub:
health probes, metrics, the REST routes and their OpenAPI description, SSE streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_support import HttpAnswer, http_request
from prometheus_client.parser import text_string_to_metric_families
from support import WSPeer, connect, free_port, register, running_redis_server, submit

from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.hub import Hub
from empfast.store import Store, redis_from_options

FAST = {"sweep_interval_s": 0.05, "stats_interval_s": 0.05, "events_block_ms": 50}


@pytest.fixture
async def http_hub() -> AsyncIterator[Hub]:
    """A started hub on the embedded store with its HTTP side on a free port."""
    hub = Hub(Store.embedded(QueueSettings(name="http")), HubConfig(port=0, http_port=free_port(), **FAST))
    await hub.start()
    yield hub
    await hub.stop()


async def get(hub: Hub, path: str, **options: Any) -> HttpAnswer:
    assert hub.http is not None
    return await http_request(hub.http.port, "GET", path, **options)


async def test_livez_and_readyz_answer_ok_on_a_running_hub(http_hub: Hub) -> None:
    live = await get(http_hub, "/livez")
    assert (live.status, live.json()) == (200, {"status": "ok"})
    ready = await get(http_hub, "/readyz")
    assert ready.status == 200
    assert ready.json() == {"status": "ready",
                            "checks": {"redis": "ok", "scripts": "ok", "events_reader": "ok"}}


async def test_a_hub_with_http_port_0_opens_no_http_side() -> None:
    hub = Hub(Store.embedded(), HubConfig(port=0, http_port=0))
    await hub.start()
    try:
        assert hub.http is None
    finally:
        await hub.stop()


async def test_a_port_in_use_fails_the_start_and_names_the_setting(http_hub: Hub) -> None:
    assert http_hub.http is not None
    other = Hub(Store.embedded(), HubConfig(port=0, http_port=http_hub.http.port))
    with pytest.raises(OSError, match=r"HTTP side cannot listen .* choose another --http-port"):
        await other.start()
    assert not other.running


@pytest.mark.real_redis
async def test_readyz_is_503_while_redis_is_down_and_ready_again_after() -> None:
    """A server of this test's own, so stopping it disturbs no other test."""
    with running_redis_server("readiness needs a Redis to stop") as server:
        store = Store(redis_from_options(RedisOptions(url=server.url, retries=1, connect_timeout_s=0.5,
                                                      socket_timeout_s=0.5)), QueueSettings(name="ready"))
        hub = Hub(store, HubConfig(port=0, http_port=free_port(), **FAST))
        await hub.start()
        try:
            assert (await get(hub, "/readyz")).status == 200
            server.stop()
            down = await get(hub, "/readyz")
            assert down.status == 503 and down.json()["status"] == "not_ready"
            assert down.json()["checks"]["redis"].startswith(("unreachable", "no answer"))
            live = await get(hub, "/livez")
            assert live.status == 200  # a Redis outage is no reason to restart the hub
            metrics = await get(hub, "/metrics")  # this hub's own metrics still, and the outage
            assert metrics.status == 200
            assert samples(metrics.body.decode())["empfast_store_up", frozenset()] == 0
            server.start()  # empty: the scripts are loaded again by the next call (the sweep's)
            await until_ready(hub)
        finally:
            await hub.stop()
            await store.close()


async def until_ready(hub: Hub, wait_s: float = 10.0) -> None:
    answer = None
    async with asyncio.timeout(wait_s):
        while answer is None or answer.status != 200:
            await asyncio.sleep(0.05)
            answer = await get(hub, "/readyz")
    assert answer.json()["checks"] == {"redis": "ok", "scripts": "ok", "events_reader": "ok"}


async def test_readyz_is_503_while_the_hub_stops(http_hub: Hub) -> None:
    http_hub.running = False  # what Hub.stop sets first; the HTTP side stops last
    stopping = await get(http_hub, "/readyz")
    assert stopping.status == 503 and stopping.json()["checks"] == {"hub": "stopping: it takes no new work"}


def test_http_port_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="http_port must be 0 to 65535"):
        HubConfig(http_port=70000)


# ---- metrics ---------------------------------------------------------------------------------------

async def run_jobs(hub: Hub) -> tuple[WSPeer, WSPeer]:
    """Through the WebSocket side: 3 `resize` jobs run (2 complete, 1 fails for good), 1 delayed job
    is cancelled. The client and the worker stay connected."""
    worker = await register(hub, "w-1", ["resize"])
    client = await connect(hub, "/ws/client")
    for n in range(3):
        await submit(client, "resize", {"n": n})
    for n in range(3):
        job = await worker.until("job_assigned")
        if n < 2:
            worker.send({"type": "complete_job", "job_id": job["job_id"], "result": {"n": n},
                         "attempt": job["attempt"]})
        else:
            worker.send({"type": "fail_job", "job_id": job["job_id"], "error": "boom", "retry": False,
                         "attempt": job["attempt"]})
        await worker.until_any(("job_completed_ack", "job_failed_ack"))
    later = await submit(client, "resize", {"n": 3}, delay_s=60)
    client.send({"type": "cancel_job", "job_id": later})
    assert (await client.until("job_status", job_id=later))["status"] == "cancelled"
    return client, worker


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_metrics_count_the_jobs_run_and_this_hubs_connections(http_hub: Hub) -> None:
    client, worker = await run_jobs(http_hub)
    try:
        answer = await get(http_hub, "/metrics")
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain")
        got = samples(answer.body.decode())
    finally:
        client.close()
        worker.close()

    def value(name: str, **labels: str) -> float:
        return got[name, frozenset(labels.items())]

    queue = "http"
    assert value("empfast_store_up") == 1
    assert value("empfast_jobs", queue=queue, state="completed") == 2
    assert value("empfast_jobs", queue=queue, state="failed") == 1
    assert value("empfast_jobs", queue=queue, state="cancelled") == 1
    assert value("empfast_jobs", queue=queue, state="pending") == 0
    for outcome, count in (("completed", 2), ("failed", 1), ("cancelled", 1)):
        assert value("empfast_jobs_finished_total", queue=queue, type="resize", outcome=outcome) == count
    assert value("empfast_jobs_enqueued_total", queue=queue, type="resize") == 4
    assert value("empfast_type_jobs", queue=queue, type="resize", state="active") == 0
    assert value("empfast_workers", queue=queue) == 1
    assert value("empfast_queue_workers", queue=queue, state="idle") == 1
    assert value("empfast_connections", role="client") == 1
    assert value("empfast_connections", role="worker") == 1
    assert value("empfast_connections", role="sse") == 0


async def test_two_hubs_in_one_process_keep_their_own_metrics(http_hub: Hub) -> None:
    other = Hub(Store.embedded(QueueSettings(name="other")),
                HubConfig(port=0, http_port=free_port(), **FAST))
    await other.start()
    try:
        worker = await register(http_hub, "w-2", ["a"])
        mine = samples((await get(http_hub, "/metrics")).body.decode())
        theirs = samples((await get(other, "/metrics")).body.decode())
        worker.close()
    finally:
        await other.stop()
    assert mine["empfast_workers", frozenset({("queue", "http")})] == 1
    assert theirs["empfast_workers", frozenset({("queue", "other")})] == 0
