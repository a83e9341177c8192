"""The hub's HTTP side (docs/management.md section 4) over a real socket, against a started hub:
health probes, metrics, the REST routes and their OpenAPI description, SSE streams."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest
from http_support import HttpAnswer, http_request, sse
from in_process import run_in_process
from prometheus_client.parser import text_string_to_metric_families
from support import FAST_TIMINGS, WSPeer, connect, free_port, register, running_redis_server, submit

from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.hub import Hub, streams
from empfast.hub.auth import OPEN
from empfast.hub.streams import StreamPeer
from empfast.store import Store, redis_from_options


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
        hub = Hub(store, HubConfig(port=0, http_port=free_port(), **FAST_TIMINGS))
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
        again = samples((await get(http_hub, "/metrics")).body.decode())
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
    # run and wait times of the two completed jobs, read from the completed set: once each, also
    # over a second scrape
    timing = frozenset({("queue", queue), ("type", "resize")})
    for name in ("empfast_job_duration_seconds_count", "empfast_job_wait_seconds_count"):
        assert got[name, timing] == again[name, timing] == 2
    assert got["empfast_job_duration_seconds_bucket", timing | {("le", "+Inf")}] == 2
    assert value("empfast_events_reader_lag_seconds", queue=queue) >= 0
    # register, 4 submits, 2 completions, a failure, a cancel
    assert value("empfast_frames_total", direction="in") == 9
    assert value("empfast_frames_total", direction="out") >= 9  # their answers, the jobs, the events
    assert value("empfast_redis_script_call_seconds_count") >= 8
    assert 0 < value("empfast_redis_script_call_seconds_sum") < 30


async def test_two_hubs_in_one_process_keep_their_own_metrics(http_hub: Hub) -> None:
    other = Hub(Store.embedded(QueueSettings(name="other")),
                HubConfig(port=0, http_port=free_port(), **FAST_TIMINGS))
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


# ---- REST ------------------------------------------------------------------------------------------

async def call(hub: Hub, method: str, path: str, body: Any = None,
               token: str | None = None) -> HttpAnswer:
    assert hub.http is not None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await http_request(hub.http.port, method, path, body=body, headers=headers)


async def test_a_job_submitted_over_rest_can_be_read_listed_cancelled_and_retried(http_hub: Hub) -> None:
    raw = b'{"job_type": "resize", "payload": {"w": 1.50,  "h": [1, 2]}, "job_id": "r-1", "delay_s": 60}'
    created = await call(http_hub, "POST", "/api/jobs", raw)
    assert created.status == 201
    assert created.json() == {"type": "job_accepted", "job_id": "r-1", "status": "scheduled", "created": True,
                              "subscribed": False}
    again = await call(http_hub, "POST", "/api/jobs", raw)  # the same id: nothing new
    assert again.status == 200 and again.json()["created"] is False

    status = await call(http_hub, "GET", "/api/jobs/r-1?payload=true")
    assert status.status == 200 and status.json()["status"] == "scheduled"
    assert b'"payload":{"w": 1.50,  "h": [1, 2]}' in status.body  # the payload as it was sent
    assert "payload" not in (await call(http_hub, "GET", "/api/jobs/r-1")).json()

    listed = await call(http_hub, "GET", "/api/jobs?status=scheduled&type=resize&limit=10&payloads=true")
    assert listed.status == 200
    assert [row["job_id"] for row in listed.json()["rows"]] == ["r-1"] and listed.json()["cursor"] is None

    cancelled = await call(http_hub, "POST", "/api/jobs/r-1/cancel")
    assert cancelled.status == 200 and cancelled.json()["status"] == "cancelled"
    again = await call(http_hub, "POST", "/api/jobs/r-1/cancel")  # finished: nothing changes
    assert again.status == 409 and again.json()["status"] == "cancelled"
    retried = await call(http_hub, "POST", "/api/jobs/r-1/retry", {"attempts": 2})
    assert retried.status == 200 and retried.json()["retried"] is True
    assert retried.json()["status"] == "pending"
    not_retryable = await call(http_hub, "POST", "/api/jobs/r-1/retry")  # pending: nothing to retry
    assert not_retryable.status == 409
    assert (not_retryable.json()["retried"], not_retryable.json()["status"]) == (False, "pending")
    assert http_hub.default_room.subscribers == {}  # the request's retry subscription ended with it

    stats = await call(http_hub, "GET", "/api/stats")
    assert stats.status == 200 and stats.json()["pending"] == 1
    workers = await call(http_hub, "GET", "/api/workers")
    assert workers.status == 200 and workers.json() == {"type": "workers", "workers": []}


async def test_a_job_id_with_slashes_works_in_every_job_route(http_hub: Hub) -> None:
    assert http_hub.http is not None
    job_id = "tenant/7/report"
    created = await call(http_hub, "POST", "/api/jobs", {"job_type": "a", "job_id": job_id, "delay_s": 60})
    assert created.status == 201 and created.json()["job_id"] == job_id
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id.replace('/', '%2F')}"):
        got = await call(http_hub, "GET", path)
        assert (got.status, got.json()["job_id"]) == (200, job_id), path
    # an id that ends like the events route: read with its last "/" sent as %2F
    await call(http_hub, "POST", "/api/jobs", {"job_type": "a", "job_id": "t/events", "delay_s": 60})
    got = await call(http_hub, "GET", "/api/jobs/t%2Fevents")
    assert (got.status, got.json()["type"], got.json()["job_id"]) == (200, "job_status", "t/events")
    cancelled = await call(http_hub, "POST", f"/api/jobs/{job_id}/cancel")
    assert (cancelled.status, cancelled.json()["job_id"], cancelled.json()["status"]) == (200, job_id,
                                                                                          "cancelled")
    retried = await call(http_hub, "POST", f"/api/jobs/{job_id}/retry")
    assert (retried.status, retried.json()["retried"]) == (200, True)
    async with sse(http_hub.http.port, f"/api/jobs/{job_id}/events") as stream:
        assert stream.status == 200
        event = await stream.next()
        assert event is not None and (event.event, event.json()["job_id"]) == ("subscribed", job_id)
    assert (await call(http_hub, "GET", "/api/jobs/tenant/8")).status == 404  # another id, not found


async def test_a_jobs_logs_and_position_over_rest(http_hub: Hub) -> None:
    store = http_hub.store
    for job_id in ("first", "second"):
        accepted = await call(http_hub, "POST", "/api/jobs", {"job_type": "ocr", "job_id": job_id})
        assert accepted.status == 201 and accepted.json()["position"] == (job_id == "second")
    assert (await call(http_hub, "GET", "/api/jobs/second")).json()["position"] == 1
    await store.register_worker("w1", ["ocr"], 1)
    (job,) = await store.claim("w1")
    await store.append_log(job.job_id, "w1", job.attempt, ["one", "two", "three"])
    every = (await call(http_hub, "GET", f"/api/jobs/{job.job_id}?logs=true")).json()
    assert every["logs"] == ["one", "two", "three"] and "position" not in every
    assert (await call(http_hub, "GET", f"/api/jobs/{job.job_id}?logs=2")).json()["logs"] == ["two", "three"]
    assert "logs" not in (await call(http_hub, "GET", f"/api/jobs/{job.job_id}?logs=false")).json()
    assert (await call(http_hub, "GET", "/api/jobs/second")).json()["position"] == 0


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "field"), [
    ("GET", "/api/jobs/x?logs=0", None, 400, "bad_message", "logs"),
    ("GET", "/api/jobs/x?logs=some", None, 400, "bad_message", "logs"),
    ("GET", "/api/jobs?status=sleeping", None, 400, "bad_message", "status"),
    ("GET", "/api/jobs?status=pending&limit=many", None, 400, "bad_message", "limit"),
    ("GET", "/api/jobs?status=pending&limit=501", None, 400, "bad_message", "limit"),
    ("GET", "/api/jobs?status=pending&cursor=nonsense", None, 400, "bad_message", "cursor"),
    ("GET", "/api/jobs?stauts=pending", None, 400, "bad_message", "stauts"),
    ("GET", "/api/jobs/nobody", None, 404, "not_found", None),
    ("POST", "/api/jobs/nobody/cancel", None, 404, "not_found", None),
    ("POST", "/api/jobs/nobody/retry", None, 404, "not_found", None),
    ("POST", "/api/jobs", b'{"payload": {}}', 400, "bad_message", "job_type"),
    ("POST", "/api/jobs", b'{"job_type": "a", "priority": "high"}', 400, "bad_message", "priority"),
    ("POST", "/api/jobs", b'["job_type", "a"]', 400, "bad_message", ""),
    ("POST", "/api/jobs", b'{"job_type": "a", "payload": {', 400, "bad_json", None),
    ("POST", "/api/jobs", b'{"job_type": "a", "payload": "' + b"x" * (1 << 20) + b'"}', 413, "too_large",
     None),
    ("POST", "/api/jobs/x/retry", b'{"attempts": 0}', 400, "bad_message", "attempts"),
])
async def test_bad_requests_get_the_protocols_error_and_change_nothing(
        http_hub: Hub, method: str, path: str, body: bytes | None, status: int, code: str,
        field: str | None) -> None:
    before = (await http_hub.store.stats()).as_dict()
    answer = await call(http_hub, method, path, body)
    assert answer.status == status, answer.body
    assert answer.json()["code"] == code and answer.json()["error"]
    if field is not None:
        assert answer.json()["field"] == field
    assert (await http_hub.store.stats()).as_dict() == before




@pytest.mark.parametrize(("method", "path", "token", "status"), [
    ("GET", "/api/stats", None, 401),
    ("GET", "/api/stats", "wrong", 401),
    ("GET", "/api/stats", "m-tok", 200),
    ("GET", "/api/workers", "c-tok", 403),  # workers are a monitor's business
    ("GET", "/metrics", None, 401),
    ("GET", "/metrics", "m-tok", 200),
    ("POST", "/api/jobs", "m-tok", 403),  # a viewer changes nothing
    ("POST", "/api/jobs", "c-tok", 201),
    ("POST", "/api/jobs", "a-tok", 201),
    ("GET", "/livez", None, 200),  # probes are open: an orchestrator has no token
    ("GET", "/readyz", None, 200),
    ("GET", "/openapi.json", None, 200),
])
async def test_with_tokens_configured_each_route_takes_the_role_of_its_message(
        secured_hub: Hub, method: str, path: str, token: str | None, status: int) -> None:
    body = {"job_type": "a"} if method == "POST" else None
    answer = await call(secured_hub, method, path, body, token)
    assert answer.status == status, answer.body
    if status == 401:
        assert answer.json()["code"] == "unauthorized" and answer.headers["www-authenticate"] == "Bearer"
    if status == 403:
        assert answer.json()["code"] == "forbidden"


# ---- OpenAPI ---------------------------------------------------------------------------------------

REQUIRED_EXAMPLES = {"status": "scheduled"}  # a value for each required query parameter
# ... and for each required body member
BODY_EXAMPLES = {"job_type": "a", "status": "completed", "every_s": 3600}


async def test_openapi_lists_every_route_served_and_each_answers_as_it_says(http_hub: Hub) -> None:
    assert http_hub.http is not None
    spec = (await call(http_hub, "GET", "/openapi.json")).json()
    assert spec["openapi"] == "3.1.0"
    # a job id may hold "/": its routes take {job_id:path}, a parameter named job_id all the same
    served = {(route.path.replace(":path}", "}"), method) for route in http_hub.http.app.routes
              for method in (getattr(route, "methods", None) or set()) - {"HEAD"}}
    described = {(path, method.upper()) for path, operations in spec["paths"].items()
                 for method in operations}
    assert described == served
    await call(http_hub, "POST", "/api/jobs", {"job_type": "a", "job_id": "o-1", "delay_s": 60})
    await call(http_hub, "PUT", "/api/schedules/nightly", {"job_type": "a", "cron": "0 3 * * *"})
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            required = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
                        and p.get("required")]
            target = path.replace("{job_id}", "o-1").replace("{job_type}", "a").replace("{name}", "nightly")
            if required:
                target += "?" + "&".join(f"{name}={REQUIRED_EXAMPLES[name]}" for name in required)
            body = None
            if "requestBody" in operation:
                body = {name: BODY_EXAMPLES[name] for name in operation["requestBody"]["content"]
                        ["application/json"]["schema"].get("required", [])}
            ok = [status for status in operation["responses"] if status.startswith("2")]
            if "text/event-stream" in operation["responses"][ok[0]].get("content", {}) and method == "post":
                answer = await call(http_hub, "POST", target, body)  # a bulk action's stream ends
                assert answer.status == 200 and b"event: bulk_done" in answer.body, (target, answer.body)
                continue
            if "text/event-stream" in operation["responses"][ok[0]].get("content", {}):
                async with sse(http_hub.http.port, target) as stream:
                    assert stream.status == 200, target
                    assert await stream.next() is not None, target
                continue
            answer = await call(http_hub, method.upper(), target, body)
            assert str(answer.status) in ok, (method, target, answer.status, answer.body)


# ---- SSE -------------------------------------------------------------------------------------------

async def run_one_job(hub: Hub, job_id: str) -> WSPeer:
    """A worker takes `job_id`, reports progress 50, completes it; returns the worker."""
    worker = await register(hub, "w-sse", ["resize"])
    job = await worker.until("job_assigned", job_id=job_id)
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 50, "message": "half",
                 "attempt": job["attempt"]})
    worker.send({"type": "complete_job", "job_id": job_id, "result": {"url": "a.png"},
                 "attempt": job["attempt"]})
    await worker.until("job_completed_ack")
    return worker


async def test_a_jobs_events_arrive_in_order_and_its_final_event_ends_the_stream(http_hub: Hub) -> None:
    assert http_hub.http is not None
    port = http_hub.http.port
    assert (await call(http_hub, "POST", "/api/jobs", {"job_type": "resize", "job_id": "s-1"})).status == 201
    async with sse(port, "/api/jobs/s-1/events") as stream:
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        first = await stream.next()
        assert first is not None and first.event == "subscribed" and first.id is None
        worker = await run_one_job(http_hub, "s-1")
        seen = []
        while (event := await stream.next()) is not None:
            seen.append(event)
        worker.close()
    assert [(e.event, e.json().get("status")) for e in seen] == [
        ("job_update", "active"), ("job_update", "active"), ("job_completed", None)]
    assert seen[1].json()["progress"] == 50 and seen[2].json()["result"] == {"url": "a.png"}
    ids = [e.id for e in seen]
    assert all(ids) and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))  # type: ignore[union-attr]
    assert [e.json()["event_id"] for e in seen] == ids
    assert stream.ended and http_hub.default_room.subscribers == {}

    # resumed after the assignment: only the later events, then the end
    async with sse(port, "/api/jobs/s-1/events", {"Last-Event-ID": str(ids[0])}) as resumed:
        subscribed = await resumed.next()
        assert subscribed is not None and subscribed.json() == {"type": "subscribed", "job_id": "s-1",
                                                                "resumed": True}
        later = []
        while (event := await resumed.next()) is not None:
            later.append(event)
    assert [e.id for e in later] == ids[1:]

    # a finished job without Last-Event-ID: its final state, marked synthetic, and the end
    async with sse(port, "/api/jobs/s-1/events") as finished:
        events = [await finished.next(), await finished.next(), await finished.next()]
    assert [e.event if e else None for e in events] == ["subscribed", "job_completed", None]
    assert events[1] is not None and events[1].json()["synthetic"] is True


@pytest.mark.parametrize(("path", "headers", "status", "code"), [
    ("/api/jobs/nobody/events", {}, 404, "not_found"),
    ("/api/jobs/j/events", {"Last-Event-ID": "yesterday"}, 400, "bad_message"),
    ("/api/events?interval_s=0", {}, 400, "bad_message"),
    ("/api/events?interval=1", {}, 400, "bad_message"),
])
async def test_a_stream_that_cannot_start_is_refused_with_the_protocols_error(
        http_hub: Hub, path: str, headers: dict[str, str], status: int, code: str) -> None:
    assert http_hub.http is not None
    answer = await http_request(http_hub.http.port, "GET", path, headers=headers)
    assert answer.status == status and answer.json()["code"] == code
    assert http_hub.default_room.subscribers == {} and not http_hub.default_room.monitors


async def test_the_event_feed_has_stats_and_every_jobs_events_from_the_hubs_one_reader(http_hub: Hub) -> None:
    assert http_hub.http is not None
    async with sse(http_hub.http.port, "/api/events?interval_s=0.25") as feed:
        stats = await feed.next()
        assert stats is not None and stats.event == "stats" and stats.json()["pending"] == 0
        # one more subscriber, no reader
        assert len(http_hub.http.streams) == 1 and http_hub.default_room.job_feed
        await call(http_hub, "POST", "/api/jobs", {"job_type": "resize", "job_id": "f-1"})
        added = await until_event(feed, "job_update")
        assert added.json() == {"job_id": "f-1", "event_id": added.id, "type": "job_update",
                                "status": "pending"}
        assert (await until_event(feed, "stats")).json()["pending"] == 1  # pushed as it changed
    async with asyncio.timeout(5):
        while http_hub.default_room.job_feed:  # noqa: ASYNC110  # the client went: its peer leaves the feed
            await asyncio.sleep(0.01)
    assert len(http_hub.http.streams) == 0


async def until_event(stream: Any, kind: str) -> Any:
    while True:
        event = await stream.next()
        assert event is not None, f"the stream ended before a {kind} event"
        if event.event == kind:
            return event


async def test_a_stream_that_falls_behind_is_dropped_not_buffered(http_hub: Hub) -> None:
    assert http_hub.http is not None
    peer = StreamPeer(http_hub, "monitor", OPEN)
    await http_hub.http.streams.job_feed(peer, 1.0)
    assert peer in http_hub.default_room.job_feed
    frame = b'{"type":"job_update","job_id":"x","event_id":"1-0"}'
    for _ in range(http_hub.config.max_outbound_bytes // len(frame) + 1):
        peer.send(frame)
    assert peer.ended and peer.overflowed
    await asyncio.sleep(0)
    assert peer not in http_hub.default_room.job_feed and peer not in http_hub.default_room.monitors


async def test_stopping_the_hub_ends_its_open_streams() -> None:
    config = HubConfig(port=0, http_port=free_port(), **FAST_TIMINGS)
    hub = Hub(Store.embedded(QueueSettings(name="stop")), config)
    await hub.start()
    assert hub.http is not None
    async with sse(hub.http.port, "/api/events") as feed:
        assert await feed.next() is not None
        stopping = asyncio.create_task(hub.stop())
        async with asyncio.timeout(5):
            while await feed.next() is not None:
                pass
        await asyncio.wait_for(stopping, 10)


async def test_an_idle_stream_gets_keep_alive_comments(http_hub: Hub,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert http_hub.http is not None
    monkeypatch.setattr(streams, "KEEPALIVE_S", 0.05)
    await call(http_hub, "POST", "/api/jobs", {"job_type": "resize", "job_id": "k-1", "delay_s": 60})
    async with sse(http_hub.http.port, "/api/jobs/k-1/events") as stream:
        assert (await stream.next()) is not None  # subscribed; then nothing happens to the job
        async with asyncio.timeout(5):
            while (line := await stream._line()) != ": keep-alive":
                assert line is not None


async def test_the_feed_resumes_after_last_event_id_with_each_later_event_once(http_hub: Hub) -> None:
    assert http_hub.http is not None
    port = http_hub.http.port
    async with sse(port, "/api/events") as feed:
        await call(http_hub, "POST", "/api/jobs", {"job_type": "resize", "job_id": "f-1"})
        seen_last = (await until_event(feed, "job_update")).id
    await call(http_hub, "POST", "/api/jobs", {"job_type": "crop", "job_id": "f-2"})  # while away
    worker = await run_one_job(http_hub, "f-1")  # assigned, progress, completed: also while away
    worker.close()
    async with sse(port, "/api/events", {"Last-Event-ID": str(seen_last)}) as resumed:
        subscribed = await resumed.next()
        assert subscribed is not None and subscribed.json() == {"type": "subscribed", "resumed": True}
        await call(http_hub, "POST", "/api/jobs", {"job_type": "crop", "job_id": "f-3"})  # live
        got: list[tuple[str, str, str]] = []
        while ("f-3", "job_update", "pending") not in got:
            event = await resumed.next()
            assert event is not None
            if event.event.startswith("job_"):
                frame = event.json()
                got.append((frame["job_id"], event.event, frame.get("status", "")))
                assert event.id is not None and key(event.id) > key(str(seen_last))
    assert got == [("f-2", "job_update", "pending"), ("f-1", "job_update", "active"),
                   ("f-1", "job_update", "active"), ("f-1", "job_completed", ""),
                   ("f-3", "job_update", "pending")]


def key(event_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in event_id.split("-"))


async def test_a_live_event_that_the_replay_covered_is_sent_once(http_hub: Hub) -> None:
    """The reader may fan out an entry after the resume's XRANGE read it: it is not sent twice."""
    assert http_hub.http is not None
    await http_hub.store.add_job("crop", job_id="d-1")
    peer = StreamPeer(http_hub, "monitor", OPEN)
    await http_hub.http.streams.job_feed(peer, 1.0, since="0-0")
    late_copy = peer.replay[-1]
    assert b'"job_id":"d-1"' in late_copy
    peer.send(late_copy)
    newer = b'{"job_id":"d-2","event_id":"99999999999999-0","type":"job_update","status":"pending"}'
    peer.send(newer)
    peer.end()
    body = b"".join([chunk async for chunk in http_hub.http.streams.events(peer)])
    assert body.count(b'"job_id":"d-1"') == 1 and body.count(b'"job_id":"d-2"') == 1
    assert peer not in http_hub.default_room.job_feed  # the stream's end took it out of the feed


async def test_a_resume_replays_no_more_than_a_stream_may_queue_and_says_so(http_hub: Hub) -> None:
    assert http_hub.http is not None
    for n in range(10):
        await http_hub.store.add_job("crop", job_id=f"big-{n}")
    peer = StreamPeer(http_hub, "monitor", OPEN)
    peer.max_bytes = 300  # room for a few events
    await http_hub.http.streams.job_feed(peer, 1.0, since="0-0")
    assert orjson.loads(peer.replay[0]) == {"type": "subscribed", "resumed": False}
    assert 1 < len(peer.replay) < 11 and sum(map(len, peer.replay[1:])) <= 300
    http_hub.detach(peer)


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403),
    ({"Origin": "https://evil.example"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Sec-Fetch-Site": "same-origin"}, 201),
    ({}, 201),  # curl, the SDKs: no browser headers
])
async def test_a_browsers_cross_site_request_changes_nothing(http_hub: Hub, headers: dict[str, str],
                                                             status: int) -> None:
    """With auth off, a web page the operator opens must not submit or cancel jobs on localhost."""
    assert http_hub.http is not None
    answer = await http_request(http_hub.http.port, "POST", "/api/jobs", body={"job_type": "a"},
                                headers=headers)
    assert answer.status == status, answer.body
    assert (await http_hub.store.stats()).pending == (1 if status == 201 else 0)


def test_serve_with_its_http_port_taken_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = run_in_process("serve", "--port", "0", "--http-port", str(taken.getsockname()[1]))
    assert proc.returncode == 2 and "choose another --http-port, or 0 to turn it off" in proc.stderr
    assert "Traceback" not in proc.stderr
