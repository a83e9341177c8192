"""The HTTP side's routes for managing a queue (docs/management.md sections 3 and 4), over a real
socket: bulk retry and removal as an SSE stream that ends with the action, pausing a type, its
limits (read, set, and told in the feed), a submit that waits for its job's result, the events of
some job types only, /api/info and /healthz, with each route's token role."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from http_support import HttpAnswer, http_request, sse
from support import connect, register, submit

from empfast.hub import Hub
from empfast.limits import BULK_SLICE
from empfast.store import NewJob, TypeLimit


async def call(hub: Hub, method: str, path: str, body: Any = None, token: str | None = None,
               headers: dict[str, str] | None = None) -> HttpAnswer:
    assert hub.http is not None
    extra = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return await http_request(hub.http.port, method, path, body=body, headers=extra)


def events_of(answer: HttpAnswer) -> list[dict[str, Any]]:
    """The frames of a finished SSE answer, in order."""
    frames = []
    for block in answer.body.decode().split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            frames.append(orjson.loads("\n".join(data)))
    return frames


async def cancelled(hub: Hub, job_type: str, count: int) -> None:
    await hub.store.add_jobs([NewJob(job_type, job_id=f"{job_type}-{n}") for n in range(count)])
    for start in range(0, count, 50):  # within the client's connection pool
        chunk = range(start, min(count, start + 50))
        await asyncio.gather(*(hub.store.cancel(f"{job_type}-{n}") for n in chunk))


async def test_a_bulk_retry_over_http_streams_its_progress_and_ends_with_the_action(http_hub: Hub) -> None:
    await cancelled(http_hub, "a", BULK_SLICE + 20)
    await cancelled(http_hub, "b", 3)
    answer = await call(http_hub, "POST", "/api/bulk/retry", {"status": "cancelled", "job_type": "a"})
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream")
    frames = events_of(answer)
    assert [f["type"] for f in frames] == ["bulk_started", "bulk_progress", "bulk_done"]
    assert frames[-1]["jobs"] == BULK_SLICE + 20 and frames[0]["total"] == BULK_SLICE + 23
    stats = await http_hub.store.stats()
    assert (stats.pending, stats.cancelled) == (BULK_SLICE + 20, 3)
    dry = events_of(await call(http_hub, "POST", "/api/bulk/remove",
                               {"status": "cancelled", "dry_run": True}))
    assert (dry[-1]["jobs"], dry[-1]["dry_run"]) == (3, True)
    removed = events_of(await call(http_hub, "POST", "/api/bulk/remove", {"status": "cancelled"}))
    assert removed[-1]["jobs"] == 3 and (await http_hub.store.stats()).cancelled == 0
    assert not http_hub.bulk.running and not http_hub.peers  # nothing left behind


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/api/bulk/retry", {"status": "completed"}, 400, "bad_message"),
    ("/api/bulk/remove", {}, 400, "bad_message"),
    ("/api/bulk/remove", {"status": "completed", "older_than_s": -1}, 400, "bad_message"),
    ("/api/bulk/retry", b"[1]", 400, "bad_message"),
    ("/api/bulk/retry?soon=1", {}, 400, "bad_message"),
])
async def test_a_bad_bulk_request_is_refused_and_changes_nothing(
        http_hub: Hub, path: str, body: Any, status: int, code: str) -> None:
    await cancelled(http_hub, "a", 2)
    answer = await call(http_hub, "POST", path, body)
    assert (answer.status, answer.json()["code"]) == (status, code), answer.body
    assert (await http_hub.store.stats()).cancelled == 2


async def test_pausing_a_type_over_http_holds_its_jobs_until_resumed(http_hub: Hub) -> None:
    worker = await register(http_hub, "w1", ["a"])
    paused = await call(http_hub, "POST", "/api/types/a/pause")
    assert paused.status == 200 and paused.json()["paused_types"] == ["a"]
    client = await connect(http_hub, "/ws/client")
    job_id = await submit(client, "a")
    with pytest.raises(TimeoutError):
        await worker.until("job_assigned", wait_s=0.4)
    assert (await call(http_hub, "GET", "/api/stats")).json()["paused"] == ["a"]
    resumed = await call(http_hub, "POST", "/api/types/a/resume")
    assert resumed.json()["paused_types"] == [] and resumed.json()["pending"] == 1
    assert (await worker.until("job_assigned"))["job_id"] == job_id
    worker.close()
    client.close()


async def test_a_types_limits_are_read_and_set_over_http(http_hub: Hub) -> None:
    none = await call(http_hub, "GET", "/api/types/a/limits")
    assert none.status == 200 and none.json() == {"type": "type_limits", "job_type": "a", "concurrency": None,
                                                  "rate": None, "per_s": None, "group_concurrency": None,
                                                  "pending": 0, "limits": {}}
    client = await connect(http_hub, "/ws/client")
    await submit(client, "a", subscribe=False)
    put = await call(http_hub, "PUT", "/api/types/a/limits", {"concurrency": 5, "rate": 10, "per_s": 2})
    assert put.status == 200, put.body
    limit = {"concurrency": 5, "rate": 10, "per_s": 2.0, "group_concurrency": None}
    assert put.json() == {"type": "type_limits", "job_type": "a", **limit, "pending": 1,
                          "limits": {"a": limit}}
    assert await http_hub.store.type_limits() == {"a": TypeLimit(5, 10, 2.0)}
    got = (await call(http_hub, "GET", "/api/types/a/limits")).json()
    assert (got["concurrency"], got["rate"], got["per_s"], got["pending"]) == (5, 10, 2.0, 1)
    assert (await call(http_hub, "GET", "/api/stats")).json()["limits"] == {"a": limit}
    only_rate = await call(http_hub, "PUT", "/api/types/a/limits", {"rate": 3})  # the rest is cleared
    rate_only = only_rate.json()
    assert (rate_only["concurrency"], rate_only["rate"], rate_only["per_s"]) == (None, 3, 1.0)
    cleared = await call(http_hub, "PUT", "/api/types/a/limits", {})
    assert cleared.status == 200 and cleared.json()["limits"] == {}
    assert await http_hub.store.type_limits() == {}
    client.close()


@pytest.mark.parametrize(("body", "field"), [
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 2, "rate": "ten"}, "rate"),
    ({"rate": 5, "per_s": 0}, "per_s"),
    ({"rate": 5, "per_s": 86_401}, "per_s"),
    ({"concurrency": 1_000_001}, "concurrency"),
])
async def test_a_bad_limit_over_http_is_refused_naming_its_field_and_changes_nothing(
        http_hub: Hub, body: dict[str, Any], field: str) -> None:
    await call(http_hub, "PUT", "/api/types/a/limits", {"concurrency": 7})
    answer = await call(http_hub, "PUT", "/api/types/a/limits", body)
    assert (answer.status, answer.json()["code"], answer.json()["field"]) == (400, "bad_message", field)
    assert field in answer.json()["error"]
    assert await http_hub.store.type_limits() == {"a": TypeLimit(7, None, None)}


async def test_the_event_feed_carries_limit_changes_and_replays_them_after_a_drop(http_hub: Hub) -> None:
    assert http_hub.http is not None
    async with sse(http_hub.http.port, "/api/events?interval_s=3600&jobs=off") as stream:
        assert (await stream.next()) is not None  # its first stats
        await call(http_hub, "PUT", "/api/types/a/limits", {"concurrency": 2})
        event = await stream.next()
        assert event is not None and event.event == "type_limits", event
        told = event.json()
        assert (told["job_type"], told["concurrency"], told["rate"], event.id) == ("a", 2, None,
                                                                                   told["event_id"])
    await call(http_hub, "POST", "/api/types/a/pause")
    await call(http_hub, "PUT", "/api/types/a/limits", {})  # while the feed is away
    async with sse(http_hub.http.port, "/api/events?interval_s=3600&jobs=off",
                   {"Last-Event-ID": told["event_id"]}) as resumed:
        kinds = []
        while len(kinds) < 3:
            event = await resumed.next()
            assert event is not None
            if event.event != "stats":
                kinds.append((event.event, event.json().get("paused"), event.json().get("concurrency")))
    assert kinds == [("subscribed", None, None), ("type_paused", True, None), ("type_limits", None, None)]


async def test_a_submit_may_wait_for_its_result(http_hub: Hub) -> None:
    worker = await register(http_hub, "w1", ["a"])

    async def run_it() -> None:
        job = await worker.until("job_assigned")
        worker.send({"type": "complete_job", "job_id": job["job_id"], "result": {"done": True}})

    running = asyncio.ensure_future(run_it())
    answer = await call(http_hub, "POST", "/api/jobs?wait_s=10", {"job_type": "a", "job_id": "w-1"})
    await running
    assert answer.status == 201, answer.body
    state = answer.json()
    assert (state["type"], state["status"], state["result"], state["created"]) == (
        "job_status", "completed", {"done": True}, True)
    # a job that does not end in time: its state when the wait ran out
    answer = await call(http_hub, "POST", "/api/jobs?wait_s=0.3", {"job_type": "nobody", "job_id": "w-2"})
    assert (answer.status, answer.json()["status"]) == (201, "pending")
    # the same id again, finished: answered at once, not created
    answer = await call(http_hub, "POST", "/api/jobs?wait_s=10", {"job_type": "a", "job_id": "w-1"})
    assert (answer.status, answer.json()["status"], answer.json()["created"]) == (200, "completed", False)
    bad = await call(http_hub, "POST", "/api/jobs?wait_s=9999", {"job_type": "a"})
    assert (bad.status, bad.json()["field"]) == (400, "wait_s")
    assert not http_hub.default_room.subscribers
    assert not http_hub.peers - {p for p in http_hub.peers if p.role == "worker"}
    worker.close()


async def test_the_event_feed_can_carry_some_job_types_only(http_hub: Hub) -> None:
    assert http_hub.http is not None
    async with sse(http_hub.http.port, "/api/events?type=b&interval_s=3600") as stream:
        assert stream.status == 200
        assert (await stream.next()) is not None  # its first stats
        client = await connect(http_hub, "/ws/client")
        await submit(client, "a", subscribe=False)
        wanted = await submit(client, "b", subscribe=False)
        event = await stream.next()
        assert event is not None and event.json()["job_id"] == wanted
    client.close()


async def test_info_and_healthz(http_hub: Hub) -> None:
    info = (await call(http_hub, "GET", "/api/info")).json()
    assert info["queue"] == "http" and info["hub_id"] == http_hub.hub_id and info["version"]
    assert (await call(http_hub, "GET", "/healthz")).json() == {"status": "ok"}




@pytest.mark.parametrize(("path", "token", "status"), [
    ("/api/types/a/pause", None, 401),
    ("/api/types/a/pause", "c-tok", 403),  # pausing is a monitor's message, as on the WebSocket
    ("/api/types/a/pause", "m-tok", 200),
    ("/api/types/a/resume", "a-tok", 200),
    ("/api/bulk/retry", "c-tok", 403),
    ("/api/bulk/retry", "m-tok", 200),
])
async def test_managing_routes_take_a_monitor_or_admin_token(secured_hub: Hub, path: str, token: str | None,
                                                            status: int) -> None:
    answer = await call(secured_hub, "POST", path, {}, token)
    assert answer.status == status, answer.body


@pytest.mark.parametrize(("method", "token", "status"), [
    ("GET", None, 401), ("GET", "c-tok", 403), ("GET", "m-tok", 200), ("GET", "a-tok", 200),
    ("PUT", None, 401), ("PUT", "c-tok", 403), ("PUT", "m-tok", 200), ("PUT", "a-tok", 200),
])
async def test_a_types_limits_take_a_monitor_or_admin_token(secured_hub: Hub, method: str, token: str | None,
                                                           status: int) -> None:
    answer = await call(secured_hub, method, "/api/types/a/limits", {"rate": 4} if method == "PUT" else None,
                        token)
    assert answer.status == status, answer.body
    assert await secured_hub.store.type_limits() == ({"a": TypeLimit(None, 4, 1.0)}
                                                     if method == "PUT" and status == 200 else {})


async def test_a_cross_site_page_cannot_pause_limit_or_bulk_act(http_hub: Hub) -> None:
    elsewhere = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    for path in ("/api/types/a/pause", "/api/bulk/remove"):
        answer = await call(http_hub, "POST", path, {"status": "completed"}, headers=elsewhere)
        assert (answer.status, answer.json()["code"]) == (403, "forbidden")
    answer = await call(http_hub, "PUT", "/api/types/a/limits", {"concurrency": 1}, headers=elsewhere)
    assert (answer.status, answer.json()["code"]) == (403, "forbidden")
    assert (await http_hub.store.stats()).paused == []
    assert await http_hub.store.type_limits() == {}


async def test_a_feed_without_job_events_still_follows_the_jobs_it_names(http_hub: Hub) -> None:
    # what a dashboard's page asks: stats and workers, and the events of the jobs it lists only
    assert http_hub.http is not None
    client = await connect(http_hub, "/ws/client")
    listed = await submit(client, "a", subscribe=False)
    feed = f"/api/events?interval_s=3600&jobs=off&job={listed}&job=gone"
    async with sse(http_hub.http.port, feed) as stream:
        assert stream.status == 200
        kinds = []
        while "subscribed" not in kinds:  # the listed job's; the unknown one is left out
            event = await stream.next()
            assert event is not None
            kinds.append(event.event)
        other = await submit(client, "a", subscribe=False)
        worker = await register(http_hub, "w1", ["a"], concurrency=2)
        for _ in range(2):
            job = await worker.until("job_assigned")
            worker.send({"type": "complete_job", "job_id": job["job_id"], "result": 1})
        seen = []
        while not any(e.get("type") == "job_completed" for e in seen):
            event = await stream.next()
            assert event is not None
            if event.event.startswith("job_"):
                seen.append(event.json())
    assert {e["job_id"] for e in seen} == {listed} and other != listed
    assert kinds.count("subscribed") == 1
    bad = await call(http_hub, "GET", "/api/events?jobs=maybe")
    assert (bad.status, bad.json()["field"]) == (400, "jobs")
    worker.close()
    client.close()
