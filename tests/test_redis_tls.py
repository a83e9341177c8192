"""TLS to Redis (issue 11, section 4; docs/deployment.md): a redis-server the tests start with a TLS
port only and certificates they make (openssl): a hub on its rediss:// URL runs jobs with the CA
as a setting; a certificate from another CA is refused at start; a server that requires client
certificates (mTLS) is refused without one and served with one."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import Certificates
from redis.exceptions import ConnectionError as RedisConnectionError
from support import REDIS_BINARY, free_port, listening

from empfast.client import Client
from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.hub import Hub
from empfast.store import Store
from empfast.worker import Worker

pytestmark = pytest.mark.real_redis

def tls_redis_server(folder: Path, certs: Certificates, *, require_client_cert: bool) -> Iterator[int]:
    """A redis-server with a TLS port only (no plain port); its port."""
    assert REDIS_BINARY
    port = free_port()
    process = subprocess.Popen(
        [REDIS_BINARY, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--tls-cert-file", str(certs.server_cert),
         "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
         "--tls-auth-clients", "yes" if require_client_cert else "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the TLS redis-server did not start (is redis-server built with TLS?)")
            time.sleep(0.02)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_port(certificates: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not REDIS_BINARY:
        pytest.skip("no redis-server binary")
    yield from tls_redis_server(tmp_path_factory.mktemp("tls-redis"), certificates, require_client_cert=False)


@pytest.fixture(scope="module")
def mtls_port(certificates: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not REDIS_BINARY:
        pytest.skip("no redis-server binary")
    yield from tls_redis_server(tmp_path_factory.mktemp("mtls-redis"), certificates, require_client_cert=True)


async def run_a_job(options: RedisOptions) -> Any:
    """A hub on Redis through `options`, a worker and a client: one job's result."""
    store = await Store.connect(options, QueueSettings(name="tls"))
    hub = Hub(store, HubConfig(port=0, http_port=0))
    await hub.start()
    url = f"ws://127.0.0.1:{hub.port}"

    async def handler(job: Any) -> Any:
        return {"over": "tls", "n": job.payload["n"]}

    try:
        async with Worker(url, {"a": handler}, concurrency=2), Client(url) as client:
            handle = await client.submit("a", {"n": 7})
            return await handle.result(timeout=10)
    finally:
        await hub.stop()
        await store.close()


async def test_a_hub_runs_jobs_on_redis_over_tls_with_the_ca_as_a_setting(certificates: Certificates,
                                                                          tls_port: int) -> None:
    options = RedisOptions(url=f"rediss://127.0.0.1:{tls_port}/0", ssl_ca_certs=str(certificates.ca))
    assert await run_a_job(options) == {"over": "tls", "n": 7}


async def test_a_server_certificate_of_another_ca_is_refused_at_start(certificates: Certificates,
                                                                      tls_port: int) -> None:
    options = RedisOptions(url=f"rediss://127.0.0.1:{tls_port}/0", ssl_ca_certs=str(certificates.other_ca),
                           retries=0, connect_timeout_s=2)
    with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
        await asyncio.wait_for(Store.connect(options, QueueSettings(name="tls")), 20)


async def test_a_server_that_requires_client_certificates_takes_ours(certificates: Certificates,
                                                                     mtls_port: int) -> None:
    url = f"rediss://127.0.0.1:{mtls_port}/0"
    without = RedisOptions(url=url, ssl_ca_certs=str(certificates.ca), retries=0, connect_timeout_s=2)
    with pytest.raises(RedisConnectionError):  # the server ends the handshake: reset by peer
        await asyncio.wait_for(Store.connect(without, QueueSettings(name="tls")), 20)
    with_cert = RedisOptions(url=url, ssl_ca_certs=str(certificates.ca),
                             ssl_certfile=str(certificates.client_cert),
                             ssl_keyfile=str(certificates.client_key))
    assert await run_a_job(with_cert) == {"over": "tls", "n": 7}
