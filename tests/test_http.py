"""The hub's HTTP side (docs/management.md section 4) over a real socket, against a started hub:
health probes, metrics, the REST routes and their OpenAPI description, SSE streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_support import HttpAnswer, http_request
from support import free_port, running_redis_server

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
