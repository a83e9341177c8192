"""The hub's own TLS (issue 11, section 4; docs/deployment.md): with tls_certfile and tls_keyfile,
workers and clients connect with wss:// and the SDKs' ssl_context, and the HTTP side answers on
https://; a plain ws:// connection to that port opens no session, and an SDK that does not trust
the certificate's CA is refused."""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from certs import Certificates
from in_process import run_in_process
from support import FAST_TIMINGS, free_port

from empfast.client import Client
from empfast.config import HubConfig, QueueSettings
from empfast.hub import Hub
from empfast.store import Store
from empfast.worker import Worker


@pytest.fixture
async def tls_hub(certificates: Certificates) -> AsyncIterator[Hub]:
    config = HubConfig(port=0, http_port=free_port(), tls_certfile=str(certificates.server_cert),
                       tls_keyfile=str(certificates.server_key), **FAST_TIMINGS)
    hub = Hub(Store.embedded(QueueSettings(name="tls")), config)
    await hub.start()
    yield hub
    await hub.stop()


def trusting(certificates: Certificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates.ca))


async def test_workers_and_clients_run_jobs_over_wss(tls_hub: Hub, certificates: Certificates) -> None:
    url = f"wss://127.0.0.1:{tls_hub.port}"

    async def handler(job: Any) -> Any:
        return {"echo": job.payload}

    context = trusting(certificates)
    async with Worker(url, {"a": handler}, ssl_context=context), Client(url, ssl_context=context) as client:
        handle = await client.submit("a", {"n": 1})
        assert await handle.result(timeout=10) == {"echo": {"n": 1}}


async def test_the_http_side_answers_on_https(tls_hub: Hub, certificates: Certificates) -> None:
    assert tls_hub.http is not None
    port, context = tls_hub.http.port, trusting(certificates)

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=10) as answer:
            return orjson.loads(answer.read())

    assert await asyncio.to_thread(get, "/livez") == {"status": "ok"}
    assert (await asyncio.to_thread(get, "/api/info"))["queue"] == "tls"


async def test_a_plain_or_untrusting_connection_gets_no_session(tls_hub: Hub,
                                                                certificates: Certificates) -> None:
    plain = Client(f"ws://127.0.0.1:{tls_hub.port}", connect_timeout_s=2)
    with pytest.raises((TimeoutError, OSError)):
        await plain.connect()
    strangers = ssl.create_default_context(cafile=str(certificates.other_ca))
    untrusting = Client(f"wss://127.0.0.1:{tls_hub.port}", connect_timeout_s=2, ssl_context=strangers)
    with pytest.raises((TimeoutError, OSError)):
        await untrusting.connect()
    assert not [peer for peer in tls_hub.peers if peer.role == "client"]


async def test_the_command_line_trusts_the_ca_of_ssl_cert_file(tls_hub: Hub, certificates: Certificates,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI has no CA option of its own: OpenSSL's SSL_CERT_FILE names the CA bundle to trust
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    url = f"wss://127.0.0.1:{tls_hub.port}"
    proc = await asyncio.to_thread(run_in_process, "submit", "echo", '{"n": 2}', "--url", url)
    assert proc.returncode == 0, proc.stderr
    assert (await tls_hub.store.stats()).pending == 1


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ValueError, match="tls_certfile and tls_keyfile together"):
        HubConfig(tls_certfile="server.crt")
