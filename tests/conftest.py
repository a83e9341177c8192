"""Fixtures: a real redis-server started on a free port for the test session (when the binary
exists), and the embedded fakeredis; the store fixture runs every test on both."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
from certs import Certificates, make_certificates
from support import FAST_TIMINGS, MakeStore, RedisServer, free_port, running_redis_server

from empfast.config import HubConfig, QueueSettings
from empfast.hub import Hub
from empfast.store import Store, redis_from_options


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server("the real-Redis half of the suite is skipped") as server:
        yield server


BACKENDS = ["fakeredis", pytest.param("redis", marks=pytest.mark.real_redis)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def settings_for_tests(**overrides: object) -> QueueSettings:
    values: dict[str, object] = {"name": "test", "lease_ms": 10_000, "liveness_ms": 20_000,
                                 "backoff_base_ms": 1_000, "backoff_cap_ms": 60_000}
    values.update(overrides)
    return QueueSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def make_store(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """A factory of started stores on one backend; every store it makes shares one Redis."""
    made: list[Store] = []
    fake_server = fakeredis.FakeServer() if backend == "fakeredis" else None
    server: RedisServer | None = None
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        server.flush()

    async def make(**overrides: object) -> Store:
        settings = settings_for_tests(**overrides)
        if fake_server is not None:
            client = fakeredis.FakeAsyncRedis(server=fake_server)
        else:
            from empfast.config import RedisOptions

            assert server is not None
            client = redis_from_options(RedisOptions(url=server.url, retries=3))
        store = Store(client, settings)
        await store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> AsyncIterator[Store]:
    yield await make_store()


@pytest.fixture
async def hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    """A started hub on a free port with short lease (2 s) and liveness (3 s), on each backend."""
    store = await make_store(lease_ms=2_000, liveness_ms=3_000)
    h = Hub(store, HubConfig(port=0, http_port=0, sweep_interval_s=0.05, stats_interval_s=0.05,
                             events_block_ms=50))
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def two_hubs(make_store: MakeStore) -> AsyncIterator[tuple[Hub, Hub]]:
    """Two started hubs on one Redis (each backend), whose sweeps wait 30 s: what they do together
    is done by the scripts and the events, not by a sweep."""
    timings = {"sweep_interval_s": 30.0, "stats_interval_s": 0.05, "events_block_ms": 50}
    hubs = [Hub(await make_store(), HubConfig(port=0, http_port=0, **timings)) for _ in range(2)]
    for hub in hubs:
        await hub.start()
    yield hubs[0], hubs[1]
    for hub in hubs:
        await hub.stop()


@pytest.fixture
async def http_hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    """A started hub on queue "http" with its HTTP side on a free port, on each backend."""
    hub = Hub(await make_store(name="http"), HubConfig(port=0, http_port=free_port(), **FAST_TIMINGS))
    await hub.start()
    yield hub
    await hub.stop()


@pytest.fixture
async def secured_hub() -> AsyncIterator[Hub]:
    """A hub with tokens: m-tok (monitor), c-tok (client), a-tok (admin); its HTTP side on."""
    config = HubConfig(port=0, http_port=free_port(), monitor_tokens="m-tok", client_tokens="c-tok",
                       admin_tokens="a-tok", **FAST_TIMINGS)
    hub = Hub(Store.embedded(QueueSettings(name="secured")), config)
    await hub.start()
    yield hub
    await hub.stop()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (tests/certs.py)."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make the test certificates")
    return make_certificates(tmp_path_factory.mktemp("tls"))
