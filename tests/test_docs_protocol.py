"""docs/protocol.md against a running hub: each test reads a claim from the page (a table, an
example) and checks it on real frames from an in-process hub on the embedded store, so the page
and the hub cannot drift apart silently. When one of these fails, fix whichever of the two is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import WSPeer, connect, register, submit, ws_url

from empfast.config import HubConfig, QueueSettings
from empfast.hub import Hub
from empfast.messages import ROLE_TYPES
from empfast.store import Store

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
NAME = re.compile(r"`([a-z_.]+)`")


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    settings = QueueSettings(name="docs", lease_ms=30_000, liveness_ms=30_000)
    h = Hub(Store.embedded(settings),
            HubConfig(port=0, http_port=0, sweep_interval_s=0.05, stats_interval_s=0.05, events_block_ms=50))
    await h.start()
    yield h
    await h.stop()


def doc_section(start: str, end: str = "\n\n") -> str:
    """The page's text from `start` up to the next `end` after it."""
    begin = DOC.index(start)
    return DOC[begin:DOC.index(end, begin + len(start))]


def table_rows(section: str) -> Iterator[list[str]]:
    """The cells of each body row of the first markdown table in `section`."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    for line in lines[2:]:
        yield [cell.strip() for cell in line.strip("|").split(" | ")]


def float_fields() -> dict[str, set[str]]:
    """Section 3's table of the fields the hub writes with a decimal point: frame -> fields."""
    table = doc_section("**Numbers in the hub's frames.**", "\n\nEvery other number")
    fields: dict[str, set[str]] = {}
    for frame, names in table_rows(table):
        fields[frame.strip("`")] = set(NAME.findall(names.split("(")[0]))
    return fields


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every number in a decoded frame, with its dotted path (lists count as one level)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


async def drain(peer: WSPeer, into: list[dict[str, Any]], wait_s: float = 0.3) -> None:
    """Every frame that arrives until none comes for `wait_s`."""
    while True:
        try:
            into.append(await peer.next(wait_s))
        except TimeoutError:
            return


async def test_numbers_have_the_json_types_of_section_3(hub: Hub) -> None:
    seen: list[dict[str, Any]] = []
    monitor = await connect(hub, "/ws/monitor")
    client = await connect(hub, "/ws/client")
    worker = await WSPeer.connect(ws_url(hub, "/ws/worker/gpu-7"))
    seen.append(await worker.next())  # welcome
    worker.send({"type": "register_worker", "req": "r", "job_types": ["resize"], "concurrency": 2})
    seen.append(await worker.until("worker_registered"))
    job_id = await submit(client, "resize", {"n": 1}, priority=5)
    seen.append(await worker.until("job_assigned"))
    worker.send({"type": "update_job_progress", "req": "p", "job_id": job_id, "progress": 40})
    worker.send({"type": "worker_heartbeat", "req": "h"})
    worker.send({"type": "fail_job", "req": "f", "job_id": job_id, "error": "upstream 503"})
    batch_worker = await WSPeer.connect(ws_url(hub, "/ws/worker/ocr-1"))
    seen.append(await batch_worker.next())  # welcome
    batch_worker.send({"type": "register_worker", "req": "r", "job_types": ["ocr"], "concurrency": 2,
                       "batch": True})
    seen.append(await batch_worker.until("worker_registered"))
    client.send({"type": "submit_jobs", "req": "b", "jobs": [{"job_type": "ocr"}, {"job_type": "ocr"}]})
    client.send({"type": "get_job_status", "req": "s", "job_id": job_id})
    client.send({"type": "get_stats", "req": "g"})
    client.send({"type": "list_jobs", "req": "l", "status": "scheduled"})  # the job failed: it waits
    monitor.send({"type": "get_workers", "req": "w"})
    for peer in (worker, batch_worker, client, monitor):
        await drain(peer, seen)
    kinds = {frame["type"] for frame in seen}
    assert {"job_status", "jobs_accepted", "job_failed", "worker_heartbeat_ack", "stats",
            "workers"} <= kinds, kinds
    assert any(f["type"] == "job_update" and "progress" in f for f in seen)

    floats = float_fields()
    assert floats, "the table of section 3 was not found"
    for frame_type in floats:
        assert frame_type in kinds, f"no {frame_type} frame seen to check section 3's table against"
    for frame in seen:
        listed = floats.get(frame["type"], set())
        for path, value in numbers(frame):
            if path == "req":
                continue
            if path in listed:
                assert isinstance(value, float), f"{frame['type']}.{path} is {value!r}: section 3 " \
                                                 "says it is written with a decimal point"
            else:
                assert isinstance(value, int), f"{frame['type']}.{path} is {value!r}: section 3 " \
                                               "says only its table's fields are not integers"
    accepted = next(f for f in seen if f["type"] == "jobs_accepted")
    assert accepted["subscribed"] is True  # one flag for the batch (section 4.1), not a list


def event_fields(ev: str) -> set[str]:
    """The fields that section 4.5's table gives the frame of a stream event, besides job_id and
    event_id (which every job event has) and type."""
    table = doc_section("| stream `ev` | frame |")
    for row in table_rows(table):
        if row[0] == f"`{ev}`":
            inside = row[1][row[1].index("{") + 1:row[1].index("}")]
            return {part.split(":")[0].strip() for part in inside.split(",") if part.strip()}
    raise AssertionError(f"no row for {ev!r} in section 4.5's table")


async def test_job_events_carry_the_fields_of_section_4_5(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["resize"])
    job_id = await submit(client, "resize", priority=7)
    await worker.until("job_assigned", job_id=job_id)
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 10, "message": "m"})
    client.send({"type": "cancel_job", "req": 1, "job_id": job_id})
    frames: list[dict[str, Any]] = []
    await drain(client, frames)
    updates = [f for f in frames if f["type"] == "job_update"]
    added, assigned, progress, cancel = updates[:4]
    for ev, frame in (("added", added), ("assigned", assigned), ("progress", progress),
                      ("cancel_requested", cancel)):
        assert set(frame) - {"type", "job_id", "event_id"} == event_fields(ev), (ev, frame)
    assert added == {"type": "job_update", "job_id": job_id, "event_id": added["event_id"],
                     "status": "pending"}  # no priority (issue 7)


def test_each_roles_types_are_the_ones_section_2_lists() -> None:
    table = doc_section("| role | may send |")
    rows = {row[0]: set(NAME.findall(row[1])) for row in table_rows(table)}
    assert rows == {role: set(types) for role, types in ROLE_TYPES.items()}


async def test_a_monitor_may_follow_a_job(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "resize", subscribe=False)
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "subscribe_job", "req": 1, "job_id": job_id})
    assert (await monitor.until("subscribed", req=1))["job_id"] == job_id
    monitor.send({"type": "get_job_status", "req": 2, "job_id": job_id})
    assert (await monitor.until("job_status", req=2))["status"] == "pending"
    monitor.send({"type": "unsubscribe_job", "req": 3, "job_id": job_id})
    assert (await monitor.until("unsubscribed", req=3))["job_id"] == job_id


async def test_a_monitor_that_follows_a_job_gets_each_event_once(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "resize", subscribe=False)
    monitor.send({"type": "subscribe_job", "req": 1, "job_id": job_id})
    await monitor.until("subscribed", req=1)
    worker = await register(hub, "w1", ["resize"])
    await worker.until("job_assigned", job_id=job_id)
    worker.send({"type": "complete_job", "req": 2, "job_id": job_id, "result": 1})
    await worker.until("job_completed_ack", req=2)
    frames: list[dict[str, Any]] = []
    await drain(monitor, frames)
    ids = [f["event_id"] for f in frames if f.get("job_id") == job_id and "event_id" in f]
    assert ids and len(ids) == len(set(ids)), frames
    assert [f["type"] for f in frames].count("job_completed") == 1


async def _http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def _upgrade(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def test_an_unknown_path_gets_the_404_of_section_2(hub: Hub) -> None:
    documented = doc_section("HTTP/1.1 404 Not Found", "```").strip().split("\n\n", 1)
    head, body = documented[0], documented[1] + "\n"
    for path in ("/", "/ws", "/ws/admin", "/ws/client/a/b"):
        answer = (await _http(hub.port, _upgrade(path))).decode()
        got_head, got_body = answer.split("\r\n\r\n", 1)
        assert got_head.split("\r\n") == head.split("\n"), path
        assert got_body == body, path


async def _close_answer(port: int, close_payload: bytes) -> bytes:
    """Open a client socket, send a close frame with this payload, return the hub's close payload."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_upgrade("/ws/client"))
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
            while True:
                head = await reader.readexactly(2)
                size = head[1] & 0x7F
                if size == 126:
                    size = struct.unpack(">H", await reader.readexactly(2))[0]
                payload = await reader.readexactly(size)
                if head[0] & 0x0F == 0x8:
                    return payload
                # the welcome frame: answer it with our close frame (masked, as a client must)
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(close_payload))
                writer.write(bytes([0x88, 0x80 | len(close_payload)]) + mask + masked)
    finally:
        writer.close()


async def test_close_codes_are_answered_as_section_2_says(hub: Hub) -> None:
    closing = doc_section("**A peer that closes should send close code 1000**")
    assert "answered with code **0**" in closing
    assert await _close_answer(hub.port, struct.pack(">H", 1000)) == struct.pack(">H", 1000)
    assert await _close_answer(hub.port, struct.pack(">H", 1001) + b"bye") == struct.pack(">H", 1001)
    # no code: answered with 0, which strict clients refuse (hence: always send 1000)
    assert await _close_answer(hub.port, b"") == b"\x00\x00"


async def test_stats_pushes_come_at_most_every_interval_and_only_on_change(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "subscribe_stats", "req": 1, "interval_s": 0.2})
    assert (await monitor.until("error", req=1))["field"] == "interval_s"  # below 0.25
    monitor.send({"type": "subscribe_stats", "req": 2, "interval_s": 0.5})
    await monitor.until("stats", req=2)
    client = await connect(hub, "/ws/client")
    loop = asyncio.get_running_loop()
    pushes: list[float] = []
    end = loop.time() + 1.6
    while loop.time() < end:  # the stats change all the time
        client.send({"type": "submit_job", "job_type": "t", "subscribe": False})
        await asyncio.sleep(0.02)
        while not monitor.frames.empty():
            if (await monitor.next())["type"] == "stats":
                pushes.append(loop.time())
    gaps = [b - a for a, b in itertools.pairwise(pushes)]
    assert len(pushes) >= 2 and min(gaps) > 0.4, gaps
    await asyncio.sleep(0.7)  # let the last change go out
    while not monitor.frames.empty():
        await monitor.next()
    with pytest.raises(TimeoutError):  # nothing changes: nothing is sent
        await monitor.until("stats", wait_s=1.2)


async def test_an_idle_worker_that_does_not_heartbeat_is_dropped_as_section_4_2_says() -> None:
    settings = QueueSettings(name="docs", lease_ms=30_000, liveness_ms=500)
    h = Hub(Store.embedded(settings),
            HubConfig(port=0, http_port=0, sweep_interval_s=0.05, events_block_ms=50))
    await h.start()
    try:
        monitor = await connect(h, "/ws/monitor")
        worker = await register(h, "idle-1", ["resize"])
        gone = await monitor.until("worker_status", status="gone", wait_s=3)
        assert gone["worker_id"] == "idle-1"
        told = await worker.next()  # no close: an error that says to register again, once
        assert told["type"] == "error" and told["code"] == "not_registered" and "req" not in told
        assert "send worker_heartbeat or register_worker" in told["error"]
        client = await connect(h, "/ws/client")
        job_id = await submit(client, "resize", subscribe=False)
        with pytest.raises(TimeoutError):  # no job
            await worker.next(wait_s=0.5)
        worker.send({"type": "claim_job", "req": 1, "job_id": job_id})
        assert (await worker.until("error", req=1))["code"] == "not_registered"
        worker.send({"type": "worker_heartbeat", "req": 2})
        assert (await worker.until("worker_heartbeat_ack", req=2))["worker_id"] == "idle-1"
        assert (await worker.until("job_assigned", wait_s=3))["job_id"] == job_id
    finally:
        await h.stop()
