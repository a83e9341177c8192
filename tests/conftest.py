"""Fixtures: a real redis-server started on a free port for the test session (when the binary
exists), and the embedded fakeredis; the store fixture runs every test on both."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import pytest
import redis
from support import MakeStore

from empfast.config import QueueSettings
from empfast.store import Store, redis_from_options

REDIS_BINARY = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A redis-server of the tests' own, on a free port, that a test may kill and start again."""

    port: int
    workdir: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_BINARY
        self.process = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--logfile", str(Path(self.workdir) / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        with redis.Redis(port=self.port) as client:
            client.flushall()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not REDIS_BINARY:
        if os.environ.get("EMPFAST_REQUIRE_REAL_REDIS"):
            pytest.fail("no redis-server binary, and EMPFAST_REQUIRE_REAL_REDIS is set: install redis-server")
        pytest.skip("no redis-server binary: the real-Redis half of the suite is skipped")
    with tempfile.TemporaryDirectory(prefix="empfast-redis-") as workdir:
        server = RedisServer(free_port(), workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


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
