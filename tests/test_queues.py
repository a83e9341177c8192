"""Many queues per hub (docs/protocol.md section 2, docs/deployment.md section 2): a connection is
bound to the queue of its URL; queues are independent (ids, workers, stats, events); a queue the
hub does not serve is refused before the upgrade unless queues_allowed opens it on first use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_support import http_request
from in_process import run_in_process
from picows import WSInvalidStatusError
from support import FAST_TIMINGS, MakeStore, WSPeer, free_port, ws_url

from empfast.client import Client, Monitor
from empfast.config import HubConfig
from empfast.connection import HubError
from empfast.hub import Hub
from empfast.worker import Worker


@contextlib.asynccontextmanager
async def queued_hub(make_store: MakeStore, **config: Any) -> AsyncIterator[Hub]:
    """A hub whose default queue is "a", with these HubConfig settings (queues, queues_allowed...)."""
    hub = Hub(await make_store(name="a"), HubConfig(port=0, http_port=config.pop("http_port", 0),
                                                    **FAST_TIMINGS, **config))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def echo(job: Any) -> Any:
    return {"echo": job.payload, "queue": "b"}


async def test_each_queue_has_its_own_jobs_workers_and_stats(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues="b") as hub:
        url = ws_url(hub)
        async with Worker(url, {"echo": echo}, queue="b", worker_id="w-b"), Client(url) as client:
            # a job of the default queue: no worker of "a" runs echo, so it waits there
            waiting = await client.submit("echo", {"n": 1}, job_id="same")
            # the same id in queue b is another job, run by b's worker
            done = await client.submit("echo", {"n": 2}, job_id="same", queue="b")
            assert done.created and waiting.created
            assert await done.result(timeout=10) == {"echo": {"n": 2}, "queue": "b"}
            assert (await client.status("same"))["status"] == "pending"
            on_b = await client.for_queue("b")
            assert (await on_b.status("same"))["status"] == "completed"
            stats_a, stats_b = await client.stats(), await on_b.stats()
            assert (stats_a["pending"], stats_a["completed"]) == (1, 0)
            assert (stats_b["pending"], stats_b["completed"]) == (0, 1)
        assert set(hub.rooms) == {"a", "b"}
        assert not hub.rooms["a"].workers  # b's worker never showed in a


async def test_a_monitor_sees_the_events_and_workers_of_its_queue_only(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues="b") as hub:
        url = ws_url(hub)
        monitor = await WSPeer.connect(ws_url(hub, "/ws/monitor?queue=b"))
        assert (await monitor.next())["queue"] == "b"
        async with Worker(url, {"echo": echo}, queue="b", worker_id="w-b"), \
                Worker(url, {"echo": echo}, worker_id="w-a"), Client(url) as client:
            on_a = await client.submit("echo", {"n": 1})
            on_b = await client.submit("echo", {"n": 2}, queue="b")
            await on_a.result(timeout=10)
            await on_b.result(timeout=10)
            completed = await monitor.until("job_completed", job_id=on_b.job_id)
            assert completed["job_id"] == on_b.job_id
            monitor.send({"type": "get_workers", "req": 1})
            workers = await monitor.until("workers")
            assert [w["worker_id"] for w in workers["workers"]] == ["w-b"]
            # the event of a's job went to a's subscribers only: never to this monitor
            while not monitor.frames.empty():
                frame = await monitor.next()
                assert frame.get("job_id") != on_a.job_id
        monitor.close()


async def test_a_queue_the_hub_does_not_serve_is_refused_before_the_upgrade(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues="b") as hub:
        for name, why in (("nope", "not served here (this hub serves a, b)"),
                          ("{x}", "is not valid")):
            with pytest.raises(WSInvalidStatusError) as refused:
                await WSPeer.connect(ws_url(hub, f"/ws/client?queue={name}"))
            assert refused.value.response is not None and refused.value.response.status == 404
            assert why in (refused.value.raw_body or b"").decode()
        # the SDK stops at once with the hub's reason, instead of reconnecting for ever
        client = Client(ws_url(hub), queue="nope", connect_timeout_s=10)
        with pytest.raises(HubError, match="not served here") as error:
            async with asyncio.timeout(5):
                await client.connect()
        assert error.value.code == "not_found"
        assert set(hub.rooms) == {"a", "b"}  # nothing was opened


async def test_allowed_queues_open_on_first_use_up_to_max_queues(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues_allowed="tenant-*", max_queues=3) as hub:
        url = ws_url(hub)
        async with Worker(url, {"echo": echo}, queue="tenant-1"), Client(url, queue="tenant-1") as client:
            handle = await client.submit("echo", {"n": 1})
            assert (await handle.result(timeout=10))["echo"] == {"n": 1}
        async with Client(url, queue="tenant-2") as second:
            assert (await second.stats())["pending"] == 0
        assert set(hub.rooms) == {"a", "tenant-1", "tenant-2"}
        for name, why in (("tenant-3", "max_queues"), ("other", "not served here")):
            with pytest.raises(HubError, match=why):
                async with Client(url, queue=name, connect_timeout_s=5):
                    pass


async def test_a_job_submitted_on_one_hub_runs_on_a_worker_of_another(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues="b") as first, queued_hub(make_store, queues="b") as second, \
            Worker(ws_url(second), {"echo": echo}, queue="b"), Client(ws_url(first), queue="b") as client:
        handle = await client.submit("echo", {"n": 3})
        assert (await handle.result(timeout=10))["echo"] == {"n": 3}
        # the other queue of the same Redis saw nothing
        async with Monitor(ws_url(second)) as monitor:
            assert (await monitor.stats())["completed"] == 0


async def test_the_http_side_answers_for_the_queue_it_is_asked_about(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues="b", http_port=free_port()) as hub:
        assert hub.http is not None
        async with Client(ws_url(hub), queue="b") as client:
            await client.submit("resize", {"n": 1})
        port = hub.http.port
        assert (await http_request(port, "GET", "/api/stats?queue=b")).json()["pending"] == 1
        assert (await http_request(port, "GET", "/api/stats")).json()["pending"] == 0
        missing = await http_request(port, "GET", "/api/stats?queue=c")
        assert missing.status == 404 and "not served" in missing.json()["error"]
        info = (await http_request(port, "GET", "/api/info?queue=b")).json()
        assert (info["queue"], info["queues"]) == ("b", ["a", "b"])
        metrics = (await http_request(port, "GET", "/metrics")).body.decode()
        assert 'empfast_jobs{queue="b",state="pending"} 1.0' in metrics
        assert 'empfast_jobs{queue="a",state="pending"} 0.0' in metrics
        assert (await http_request(port, "GET", "/readyz")).status == 200


async def test_a_monitor_sees_every_queue_with_its_counts_from_sdk_cli_and_http(
        make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues="b,c", http_port=free_port()) as hub:
        assert hub.http is not None
        async with Client(ws_url(hub), queue="b") as client:
            await client.submit("resize", {"n": 1})
            await client.submit("resize", {"n": 2})
        async with Monitor(ws_url(hub), queue="c") as monitor:  # its own queue need not be the one asked
            queues = await monitor.queues()
        assert [(q["queue"], q["pending"]) for q in queues] == [("a", 0), ("b", 2), ("c", 0)]
        assert queues[1]["by_type"]["resize"]["pending"] == 2
        answer = await http_request(hub.http.port, "GET", "/api/queues")
        assert answer.status == 200 and [q["queue"] for q in answer.json()["queues"]] == ["a", "b", "c"]
        printed = await asyncio.to_thread(run_in_process, "queues", "--url", ws_url(hub))
        assert printed.returncode == 0, printed.stderr
        rows = [line.split() for line in printed.stdout.splitlines()]
        assert rows[0][:3] == ["QUEUE", "SCHEDULED", "PENDING"]
        assert [row[:3] for row in rows[1:]] == [["a", "0", "0"], ["b", "0", "2"], ["c", "0", "0"]]


async def test_a_peer_without_a_valid_token_opens_no_queue_and_learns_none(make_store: MakeStore) -> None:
    async with queued_hub(make_store, queues_allowed="*", client_tokens="c-tok") as hub:
        for name in ("tenant-x", "{bad}"):
            peer = await WSPeer.connect(ws_url(hub, f"/ws/client?queue={name}&token=wrong"))
            refused = await peer.next()
            assert refused["code"] == "unauthorized" and name not in refused["error"]
            assert (await peer.next())["type"] == "<disconnected>"
        assert set(hub.rooms) == {"a"}  # nothing opened
        async with Client(ws_url(hub), queue="tenant-x", token="c-tok") as client:
            assert (await client.stats())["pending"] == 0
        assert set(hub.rooms) == {"a", "tenant-x"}
