"""One peer must not be able to take the hub down (issue 8, section 2): what a connection may queue
in the hub (bytes, per connection and in total), how fast it may send, how many jobs it may follow,
how many connections the hub takes, and what happens to a peer that goes silent."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support import MakeStore, WSPeer, connect, submit

from empfast.config import HubConfig
from empfast.decoding import MessageError, decode
from empfast.errors import TooManyJobTypes
from empfast.hub import Hub
from empfast.hub.server import raise_descriptor_limit
from empfast.store import NewJob, Store

MakeHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def make_hub(make_store: MakeStore) -> AsyncIterator[MakeHub]:
    """Started hubs with these settings, on each backend."""
    made: list[Hub] = []

    async def make(queue: dict[str, Any] | None = None, **config: Any) -> Hub:
        """`queue`: QueueSettings overrides; the rest are HubConfig's."""
        store = await make_store(**(queue or {}))
        hub = Hub(store, HubConfig(port=0, http_port=0, sweep_interval_s=0.05, events_block_ms=50, **config))
        await hub.start()
        made.append(hub)
        return hub

    yield make
    for hub in made:
        await hub.stop()


def slow_down_submits(store: Store, delay_s: float) -> None:
    """Each add_jobs call takes `delay_s` longer: a hub busier than its senders are fast."""
    add_jobs = store.add_jobs

    async def slow_add_jobs(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(delay_s)
        return await add_jobs(*args, **kwargs)

    store.add_jobs = slow_add_jobs  # type: ignore[method-assign]


class PeakInbox:
    """Samples the hub's queued inbound bytes at every turn of the event loop."""

    def __init__(self, hub: Hub) -> None:
        self.hub, self.peak = hub, 0
        self.task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.hub.inbox_bytes)
            await asyncio.sleep(0)

    def stop(self) -> int:
        self.task.cancel()
        return self.peak


FRAME_BYTES = 256 << 10
RECEIVE_BYTES = 256 << 10
# What picows has read from a socket when the hub pauses reading is still delivered: up to one read
# (at most the socket's receive buffer, which the kernel doubles), completing a frame begun before
READ_ALLOWANCE = 2 * RECEIVE_BYTES + 2 * FRAME_BYTES


def flood(peer: WSPeer, tag: str, count: int) -> None:
    """`count` valid submit_job frames of nearly FRAME_BYTES each, sent at once."""
    payload = '"' + "x" * (FRAME_BYTES - (8 << 10)) + '"'
    for i in range(count):
        peer.send(f'{{"type":"submit_job","job_type":"big","req":"{tag}{i}","payload":{payload}}}'.encode())


async def accepted(peer: WSPeer, count: int, wait_s: float = 10.0) -> None:
    for _ in range(count):
        frame = await peer.until_any(("job_accepted", "error"), wait_s)
        assert frame["type"] == "job_accepted", frame


async def test_a_peer_flooding_big_frames_queues_at_most_its_byte_budget(make_hub: MakeHub) -> None:
    budget = 1 << 20
    hub = await make_hub(max_frame_bytes=FRAME_BYTES, socket_receive_bytes=RECEIVE_BYTES,
                         max_inbound_bytes=budget, max_inbound_total_bytes=8 * budget)
    slow_down_submits(hub.store, 0.02)
    bystander = await connect(hub, "/ws/client")
    flooder = await connect(hub, "/ws/client")
    sampler = PeakInbox(hub)
    flood(flooder, "f", 96)
    await asyncio.sleep(0.1)  # the flood is under way
    started = time.monotonic()
    bystander.send({"type": "ping", "req": "p"})
    await bystander.until("pong", 2.0)
    ping_s = time.monotonic() - started
    await accepted(flooder, 96)
    peak = sampler.stop()
    assert peak <= budget + READ_ALLOWANCE, peak  # of 24 MiB sent
    assert ping_s < 0.5
    assert hub.inbox_bytes == 0 and not hub.reading_paused


async def test_flooding_peers_together_queue_at_most_the_hub_budget(make_hub: MakeHub) -> None:
    total = 3 << 19  # 1.5 MiB: less than the three connections' budgets together
    hub = await make_hub(max_frame_bytes=FRAME_BYTES, socket_receive_bytes=RECEIVE_BYTES,
                         max_inbound_bytes=1 << 20, max_inbound_total_bytes=total)
    slow_down_submits(hub.store, 0.02)
    flooders = [await connect(hub, "/ws/client") for _ in range(3)]
    sampler = PeakInbox(hub)
    for i, peer in enumerate(flooders):
        flood(peer, f"f{i}-", 40)
    # every frame is handled in the end: a connection paused for the hub's budget reads again
    await asyncio.gather(*(accepted(peer, 40) for peer in flooders))
    peak = sampler.stop()
    assert peak <= total + 3 * READ_ALLOWANCE, peak  # of 30 MiB sent
    assert hub.inbox_bytes == 0 and not hub.reading_paused


def test_a_hub_budget_below_one_connections_budget_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"max_inbound_total_bytes \(1048576\) must be at least "
                                         r"max_inbound_bytes \(2097152\)"):
        HubConfig(max_inbound_bytes=2 << 20, max_inbound_total_bytes=1 << 20)


# ---- rate and subscriptions --------------------------------------------------------------------

async def test_frames_over_the_rate_are_refused_in_order_and_not_handled(make_hub: MakeHub) -> None:
    hub = await make_hub(max_frames_per_s=2, max_frame_burst=3)
    client = await connect(hub, "/ws/client")
    for req in (1, 2, 3):
        client.send({"type": "ping", "req": req})
    client.send({"type": "submit_job", "job_type": "a", "job_id": "over-rate", "req": 4})
    client.send({"type": "ping", "req": 5})
    answers = [await client.next() for _ in range(5)]
    assert [(a["type"], a.get("req")) for a in answers] == [
        ("pong", 1), ("pong", 2), ("pong", 3), ("error", 4), ("error", 5)]
    refusal = answers[3]
    assert refusal["code"] == "limit_exceeded" and refusal["limit"] == 2
    assert "max_frames_per_s" in refusal["error"]
    assert 0 < refusal["retry_after_s"] <= 0.5  # a token comes back every 0.5 s
    assert await hub.store.get_job("over-rate") is None
    await asyncio.sleep(0.6)  # a token comes back every 0.5 s
    client.send({"type": "ping", "req": 6})
    assert (await client.next())["type"] == "pong"


async def test_a_worker_sdk_sends_an_outcome_refused_for_the_rate_again_and_none_is_lost(
        make_hub: MakeHub) -> None:
    """A worker's completions over the connection's frame rate are refused (not handled) with
    `retry_after_s`; the SDK sends each again then, so every job completes once and none runs twice."""
    from empfast.worker import Job, Worker

    hub = await make_hub(max_frames_per_s=20, max_frame_burst=5)
    runs: list[str] = []

    async def record(job: Job) -> str:
        runs.append(job.job_id)
        return job.job_id

    client = await connect(hub, "/ws/client")
    ids = [f"j{i}" for i in range(15)]
    client.send({"type": "submit_jobs", "req": 1, "jobs": [{"job_type": "a", "job_id": i} for i in ids],
                 "subscribe": True})
    worker = Worker(f"ws://127.0.0.1:{hub.port}", {"a": record}, worker_id="w1", concurrency=15,
                    ack_timeout_s=10)
    await worker.start()
    try:
        completed = {(await client.until("job_completed", wait_s=15))["job_id"] for _ in ids}
        await worker.wait_idle()  # every outcome acknowledged
        assert completed == set(ids) and sorted(runs) == sorted(ids) and worker.stats.dropped == 0
        assert worker.stats.completed == len(ids)
    finally:
        await worker.stop(grace_s=0)
        client.close()


async def test_subscriptions_per_connection_are_a_setting(make_hub: MakeHub) -> None:
    hub = await make_hub(max_subscriptions=2)
    client = await connect(hub, "/ws/client")
    first, second = await submit(client, "a"), await submit(client, "a")
    client.send({"type": "submit_job", "job_type": "a"})
    third = await client.until("job_accepted")
    assert third["subscribed"] is False  # accepted all the same
    client.send({"type": "subscribe_job", "job_id": third["job_id"], "req": "s"})
    error = await client.until("error")
    assert error["code"] == "limit_exceeded" and error["limit"] == 2 and error["req"] == "s"
    assert "max_subscriptions" in error["error"]
    client.send({"type": "unsubscribe_job", "job_id": first})
    client.send({"type": "subscribe_job", "job_id": third["job_id"], "req": "t"})
    assert (await client.until_any(("subscribed", "error")))["type"] == "subscribed"
    assert hub.default_room.subscribers[second] and hub.default_room.subscribers[third["job_id"]]


# ---- connections -------------------------------------------------------------------------------

def upgrade_request(path: str = "/ws/client") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def raw_upgrade(hub: Hub, path: str = "/ws/client") -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                                   bytes]:
    """A plain TCP socket that asks for a WebSocket upgrade; the HTTP response head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    writer.write(upgrade_request(path))
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def connections_drop_to(hub: Hub, count: int) -> None:
    """Wait (5 s at most) until the hub has seen its connections close down to `count`."""
    async with asyncio.timeout(5):
        while hub.connections > count:  # noqa: ASYNC110 - the hub has no event for this
            await asyncio.sleep(0.01)


async def test_a_full_hub_refuses_the_upgrade_with_503_until_a_connection_closes(make_hub: MakeHub) -> None:
    hub = await make_hub(max_connections=2)
    first = await connect(hub, "/ws/client")
    await connect(hub, "/ws/monitor")
    reader, writer, head = await raw_upgrade(hub)
    assert head.startswith(b"HTTP/1.1 503")
    async with asyncio.timeout(5):
        body = await reader.read()
    assert b"full" in body and b"max_connections" in body
    writer.close()
    first.close()
    await connections_drop_to(hub, 1)
    await connect(hub, "/ws/client")


async def test_serve_says_at_start_how_many_connections_it_takes() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "empfast", "serve", "--port", "0", "--http-port", "0", "--max-connections", "3",
        stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert "takes up to 3 connections (max_connections 3; descriptor limit" in line, line
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


async def test_a_peer_silent_in_the_middle_of_a_frame_is_pinged_then_closed(make_hub: MakeHub) -> None:
    interval = 0.2
    hub = await make_hub(ping_interval_s=interval)
    reader, writer, head = await raw_upgrade(hub)
    assert head.startswith(b"HTTP/1.1 101")
    # a masked text frame announcing 1,000 bytes, of which 10 come
    writer.write(bytes([0x81, 0x80 | 126]) + (1000).to_bytes(2, "big") + os.urandom(4) + b"0123456789")
    started = time.monotonic()
    received = b""
    async with asyncio.timeout(10 * interval + 2):
        while chunk := await reader.read(4096):
            received += chunk
    closed_after = time.monotonic() - started
    assert interval <= closed_after < 4 * interval + 1
    assert b"\x89" in received  # the ping it did not answer
    writer.close()
    await connections_drop_to(hub, 0)


def test_the_hub_raises_its_descriptor_limit_for_its_connections(tmp_path: Path) -> None:
    """Run in a process of its own, whose soft limit the test may lower."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves no room to raise the soft one")
    script = tmp_path / "raise.py"
    script.write_text(textwrap.dedent("""
        import asyncio, resource
        from empfast.config import HubConfig
        from empfast.hub import Hub
        from empfast.store import Store

        async def main() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (512, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            hub = Hub(Store.embedded(), HubConfig(port=0, http_port=0, max_connections=3000))
            await hub.start()
            print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hub.connection_limit)
            await hub.stop()

        asyncio.run(main())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         check=True)
    raised, limit = map(int, out.stdout.split())
    assert raised >= 3000 and limit == 3000


def test_an_unlimited_descriptor_limit_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(resource, "getrlimit", lambda which: unlimited)

    def lower(which: int, limits: tuple[int, int]) -> None:
        raise AssertionError(f"the hub would set the descriptor limit to {limits}")

    monkeypatch.setattr(resource, "setrlimit", lower)
    assert raise_descriptor_limit(3000) >= 3000


def test_a_hub_out_of_descriptors_neither_spins_nor_floods_its_log_and_recovers(tmp_path: Path) -> None:
    """A hub in a process of its own with 300 descriptors (uvloop, as `empfast serve` runs), and
    more plain TCP connections than it can accept; then they close and a WebSocket upgrade works."""
    script = tmp_path / "out_of_descriptors.py"
    script.write_text(textwrap.dedent("""
        import asyncio, resource, sys
        import uvloop
        from empfast.config import HubConfig
        from empfast.hub import Hub
        from empfast.store import Store

        async def main() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))
            hub = Hub(Store.embedded(), HubConfig(port=0, http_port=0))
            await hub.start()
            print(hub.port, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            await hub.stop()

        uvloop.run(main())
    """))
    hub = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert hub.stdout is not None and hub.stdin is not None
        port = int(hub.stdout.readline())
        flood: list[socket.socket] = []
        for _ in range(350):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=3))
            except OSError:
                break  # the listen backlog is full
        time.sleep(0.5)
        for sock in flood:
            sock.close()
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(upgrade_request())
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        hub.stdin.write("stop\n")
        hub.stdin.flush()
        _, errors = hub.communicate(timeout=20)
    finally:
        hub.kill()
    assert "Traceback" not in errors, errors[:2000]


# ---- job types ---------------------------------------------------------------------------------

async def test_a_new_job_type_past_the_bound_is_refused_and_changes_nothing(make_store: MakeStore) -> None:
    store = await make_store(max_job_types=2)
    await store.add_jobs([NewJob("a", job_id="a1"), NewJob("b", job_id="b1")])
    with pytest.raises(TooManyJobTypes, match=r"2 job types already \(max_job_types\)") as refused:
        await store.add_jobs([NewJob("a", job_id="a2"), NewJob("c", job_id="c1")])
    assert refused.value.code == "limit_exceeded" and refused.value.limit == 2
    assert await store.get_job("a2") is None and await store.get_job("c1") is None
    await store.add_jobs([NewJob("b", job_id="b2"), NewJob("a", job_id="a3")])  # known types still go
    assert (await store.stats()).pending == 4


async def test_a_client_hears_which_limit_refused_a_new_job_type(make_hub: MakeHub) -> None:
    hub = await make_hub(queue={"max_job_types": 1})
    client = await connect(hub, "/ws/client")
    await submit(client, "known")
    # consecutive frames share one store call: the refused one does not take the others with it
    for req, job_type in enumerate(("known", "new", "known")):
        client.send({"type": "submit_job", "job_type": job_type, "req": req})
    answers = [await client.until_any(("job_accepted", "error")) for _ in range(3)]
    assert [a["type"] for a in answers] == ["job_accepted", "error", "job_accepted"]
    refusal = answers[1]
    assert refusal["code"] == "limit_exceeded" and refusal["limit"] == 1 and refusal["req"] == 1
    assert "max_job_types" in refusal["error"]


async def test_the_safety_net_reads_only_the_pending_counts_of_hungry_workers_types(
        make_hub: MakeHub) -> None:
    hub = await make_hub()
    worker = await connect(hub, "/ws/worker/w1")
    worker.send({"type": "register_worker", "job_types": ["a"], "concurrency": 1})
    await worker.until("worker_registered")

    async def no_full_stats() -> None:
        raise AssertionError("the safety net read the stats of every job type")

    hub.store.stats = no_full_stats  # type: ignore[method-assign,assignment]
    # this hub hears of no new job: only the safety net can dispatch now
    hub.default_room.dispatch._on_event = lambda *args: None  # type: ignore[method-assign]
    await hub.store.add_jobs([NewJob("other", job_id=f"o{i}") for i in range(3)])
    await hub.store.add_job("a", job_id="for-w1")
    assert (await worker.until("job_assigned"))["job_id"] == "for-w1"
    assert await hub.store.pending_counts(["a", "other", "none"]) == {"other": 3}


# ---- refusing is cheap -------------------------------------------------------------------------

BIG = b"x" * ((1 << 20) - (8 << 10))


@pytest.mark.parametrize("frame", [
    b'{"type":"submit_job","job_type":"a","payload":"' + BIG + b'","priority":"high"}',
    b'{"type":"submit_job","job_type":"a","payload":"' + BIG + b'",',
    b'{"type":"submit_job","job_type":"a","payload":1,"payload":"' + BIG + b'"}',
    b'{"type":"no_such_type","payload":"' + BIG + b'"}',
    b'{"type":"submit_job","job_type":"a\\u0001","payload":"' + BIG + b'"}',
], ids=["bad field after it", "cut short", "payload twice", "unknown type", "control character"])
def test_refusing_a_1_mib_frame_costs_about_a_millisecond_of_cpu(frame: bytes) -> None:
    """Decoding is the hub's first step for every frame; a refused frame goes no further. CPU time
    (not wall time) of the median of 15, so a busy machine does not make it flaky: about 0.3 to
    2 ms here, against a bound of 25 ms."""
    spent: list[float] = []
    for _ in range(15):
        started = time.process_time()
        with pytest.raises(MessageError):
            decode("client", frame)
        spent.append(time.process_time() - started)
    assert sorted(spent)[len(spent) // 2] < 0.025


async def test_a_refused_completion_is_answered_after_the_completions_before_it(make_hub: MakeHub) -> None:
    """Pipelined completion batches (Peer._flush): a batch whose only frame is refused before any
    store call (a result over the limit) still answers after the batch before it, in flight. Found
    by the long fuzz: the refusal overtook the earlier frames' acks."""
    hub = await make_hub(max_frame_bytes=65_536)
    client = await connect(hub, "/ws/client")
    worker = await connect(hub, "/ws/worker")
    worker.send({"type": "register_worker", "worker_id": "w1", "job_types": ["a"], "concurrency": 20,
                 "req": "r"})
    await worker.until("worker_registered")
    ids = [await submit(client, "a") for _ in range(20)]
    assigned = {}
    while len(assigned) < len(ids):
        frame = await worker.until("job_assigned")
        assigned[frame["job_id"]] = frame["attempt"]
    too_big = "x" * 63_000  # over the payload limit (the frame limit less 4 KiB), under the frame limit
    for round_ in range(5):
        done, refused = ids[4 * round_:4 * round_ + 3], ids[4 * round_ + 3]
        for job_id in done:
            worker.send({"type": "complete_job", "req": f"{job_id}-ok", "job_id": job_id,
                         "attempt": assigned[job_id], "result": 1})
        await asyncio.sleep(0)  # the next frame in a batch of its own, while these are in flight
        worker.send({"type": "complete_job", "req": f"{refused}-big", "job_id": refused,
                     "attempt": assigned[refused], "result": too_big})
        answers = [await worker.until_any(("job_completed_ack", "error")) for _ in range(4)]
        assert [a["req"] for a in answers] == [f"{j}-ok" for j in done] + [f"{refused}-big"], answers
        assert answers[-1]["code"] == "limit_exceeded"
    client.close()
    worker.close()
