"""The hub's edges over real sockets: the welcome frame, auth, close codes, limits, bad frames from
every role, worker identity (replacement, re-registration, unregister) and resume edge cases."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import orjson
import pytest
from picows import WSMsgType
from redis.exceptions import ConnectionError as RedisConnectionError
from support import MakeStore, WSPeer, connect, register, submit, ws_url

from empfast.config import HubConfig
from empfast.hub import Hub


async def pending(peer: WSPeer) -> int:
    peer.send({"type": "get_stats", "req": "stats"})
    return (await peer.until("stats", req="stats"))["pending"]


@pytest.fixture
async def small_hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    """A hub with a token, a 64 KiB frame limit and a 64 KiB outbound limit."""
    store = await make_store(lease_ms=2_000, liveness_ms=3_000)
    h = Hub(store, HubConfig(port=0, http_port=0, token="s3cret", max_frame_bytes=64 << 10,
                             max_outbound_bytes=64 << 10, sweep_interval_s=0.05, events_block_ms=50))
    await h.start()
    yield h
    await h.stop()


async def test_the_first_frame_is_welcome_with_the_role_and_the_limits(hub: Hub) -> None:
    for role in ("client", "worker", "monitor"):
        peer = await WSPeer.connect(ws_url(hub, f"/ws/{role}"))
        assert await peer.next() == {"type": "welcome", "protocol": 1, "role": role,
                                     "hub_id": hub.hub_id, "queue": hub.store.settings.name,
                                     "max_frame_bytes": hub.config.max_frame_bytes}
        peer.close()


async def test_a_missing_or_wrong_token_is_refused_then_closed(small_hub: Hub) -> None:
    for path in ("/ws/client", "/ws/worker?token=wrong"):
        peer = await WSPeer.connect(ws_url(small_hub, path))
        error = await peer.next()
        assert error["code"] == "unauthorized" and "token" in error["error"]
        assert (await peer.next())["type"] == "<disconnected>"
    by_query = await connect(small_hub, "/ws/client?token=s3cret")
    by_header = await connect(small_hub, "/ws/client", {"Authorization": "Bearer s3cret"})
    for peer in (by_query, by_header):
        assert await pending(peer) == 0


async def test_a_frame_over_the_limit_closes_only_its_own_connection(small_hub: Hub) -> None:
    bystander = await connect(small_hub, "/ws/client?token=s3cret")
    sender = await connect(small_hub, "/ws/client?token=s3cret")
    sender.send({"type": "submit_job", "job_type": "a", "payload": "x" * (70 << 10)})
    error = await sender.next()
    assert error["code"] == "too_large" and error["limit"] == 64 << 10
    assert (await sender.next())["type"] == "<disconnected>"
    assert await pending(bystander) == 0


async def test_a_payload_over_the_cap_is_refused_and_the_connection_stays(small_hub: Hub) -> None:
    client = await connect(small_hub, "/ws/client?token=s3cret")
    client.send({"type": "submit_job", "job_type": "a", "payload": "x" * (62 << 10), "req": 1})
    error = await client.until("error")
    assert error["code"] == "limit_exceeded" and error["field"] == "payload" and error["req"] == 1
    assert await pending(client) == 0


async def test_binary_frames_are_bad_json_and_change_nothing(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    assert client.transport is not None
    client.transport.send(WSMsgType.BINARY, orjson.dumps({"type": "submit_job", "job_type": "a"}))
    assert (await client.until("error"))["code"] == "bad_json"
    assert await pending(client) == 0


async def test_bad_fields_name_the_field_and_a_bad_batch_adds_nothing(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_jobs", "req": 1,
                 "jobs": [{"job_type": "a"}, {"job_type": "a", "priority": "high"}]})
    error = await client.until("error")
    assert error["code"] == "bad_message" and error["field"] == "jobs[1].priority" and error["req"] == 1
    client.send({"type": "submit_jobs", "jobs": [{"job_type": "a"}] * 1001})
    error = await client.until("error")
    assert error["code"] == "limit_exceeded" and error["limit"] == 1000
    client.send({"type": "subscribe_job", "job_id": "x", "since": "yesterday"})
    assert (await client.until("error"))["field"] == "since"
    client.send(b'{"type": 7}')
    assert (await client.until("error"))["field"] == "type"
    assert await pending(client) == 0


@pytest.mark.parametrize(("role", "kind"), [
    ("client", "complete_job"), ("client", "get_workers"), ("worker", "submit_job"),
    ("monitor", "cancel_job"), ("monitor", "register_worker"),
])
async def test_a_type_of_another_role_is_forbidden(hub: Hub, role: str, kind: str) -> None:
    peer = await connect(hub, f"/ws/{role}")
    peer.send({"type": kind, "job_id": "j", "job_type": "a", "job_types": ["a"], "req": 3})
    error = await peer.until("error")
    assert error["code"] == "forbidden" and error["req"] == 3
    peer.send({"type": "ping", "req": 4})
    assert (await peer.until("pong"))["req"] == 4


async def test_a_worker_must_register_before_anything_else(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a")
    worker = await connect(hub, "/ws/worker")
    worker.send({"type": "complete_job", "job_id": job_id, "result": 1, "req": 1})
    assert (await worker.until("error"))["code"] == "not_registered"
    client.send({"type": "get_job_status", "job_id": job_id})
    assert (await client.until("job_status"))["status"] == "pending"


async def test_a_worker_id_ending_in_jobs_is_refused_and_registers_nothing(hub: Hub) -> None:
    """Worker 'gpu:jobs' would have worker gpu's job set ({Q}:worker:gpu:jobs) for its hash: refused
    in the frame and in the path, and worker gpu's jobs stay its own."""
    gpu = await register(hub, "gpu", ["a"])
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a")
    assert (await gpu.until("job_assigned"))["job_id"] == job_id
    worker = await connect(hub, "/ws/worker")
    worker.send({"type": "register_worker", "req": 1, "worker_id": "gpu:jobs", "job_types": ["a"]})
    refused = await worker.until("error")
    assert (refused["code"], refused["field"]) == ("bad_message", "worker_id"), refused
    by_path = await connect(hub, "/ws/worker/gpu:jobs")
    by_path.send({"type": "register_worker", "req": 2, "job_types": ["a"]})
    refused = await by_path.until("error")
    assert (refused["code"], refused["field"]) == ("bad_message", "worker_id"), refused
    assert "not ending in ':jobs'" in refused["error"]
    assert [w["worker_id"] for w in await hub.store.get_workers()] == ["gpu"]
    assert await hub.store.redis.smembers(hub.store.keys.worker_jobs("gpu")) == {job_id.encode()}


async def test_a_second_connection_with_the_same_worker_id_replaces_the_first(hub: Hub) -> None:
    first = await register(hub, "w1", ["a"])
    second = await register(hub, "w1", ["a"])
    error = await first.until("error")
    assert error["code"] == "replaced"
    assert (await first.next())["type"] == "<disconnected>"
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a")
    assert (await second.until("job_assigned"))["job_id"] == job_id


async def test_a_worker_that_reconnects_gets_its_held_jobs_again(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["a"])
    job_id = await submit(client, "a")
    assert (await worker.until("job_assigned"))["attempt"] == 1
    worker.close()
    back = await connect(hub, "/ws/worker/w1")
    back.send({"type": "register_worker", "job_types": ["a"], "req": 1})
    registered = await back.until("worker_registered")
    assert registered["held"] == [job_id]
    again = await back.until("job_assigned")
    assert again["job_id"] == job_id and again["attempt"] == 1 and again["reassigned"] is True
    back.send({"type": "complete_job", "job_id": job_id, "result": "ok", "req": 2})
    await back.until("job_completed_ack")
    done = await client.until("job_completed")
    assert done["result"] == "ok" and done["attempt"] == 1


async def test_unregister_releases_held_jobs_to_other_workers(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    leaving = await register(hub, "leaving", ["a"])
    job_id = await submit(client, "a")
    await leaving.until("job_assigned")
    staying = await register(hub, "staying", ["a"])
    leaving.send({"type": "unregister_worker", "req": 1})
    assert (await leaving.until("worker_unregistered"))["released"] == 1
    assert (await leaving.next())["type"] == "<disconnected>"
    assert (await staying.until("job_assigned"))["job_id"] == job_id


async def test_subscribing_to_a_finished_job_sends_its_final_state_at_once(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a", subscribe=False)
    client.send({"type": "cancel_job", "job_id": job_id})
    assert (await client.until("job_status"))["status"] == "cancelled"
    watcher = await connect(hub, "/ws/client")
    watcher.send({"type": "subscribe_job", "job_id": job_id})
    await watcher.until("subscribed")
    final = await watcher.next()
    assert final["type"] == "job_cancelled" and final["synthetic"] is True
    # a `since` older than the stream's first entry cannot be replayed: the state stands for it
    watcher.send({"type": "subscribe_job", "job_id": job_id, "since": "1-0"})
    assert (await watcher.until("subscribed"))["resumed"] is False
    state = await watcher.next()
    assert state["type"] == "job_cancelled" and state["resumed"] is False and state["event_id"]


async def test_a_fire_and_forget_submit_gets_no_events(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_job", "job_type": "a", "subscribe": False, "req": 1})
    accepted = await client.until("job_accepted")
    assert accepted["subscribed"] is False
    worker = await register(hub, "w1", ["a"])
    await worker.until("job_assigned")
    worker.send({"type": "complete_job", "job_id": accepted["job_id"], "result": 1, "req": 2})
    await worker.until("job_completed_ack")
    client.send({"type": "ping", "req": "after"})
    assert (await client.next())["type"] == "pong"  # no job event came before it


async def test_monitors_get_stats_pushed_when_they_change(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "subscribe_stats", "interval_s": 0.25, "req": 1})
    assert (await monitor.until("stats", req=1))["pending"] == 0
    client = await connect(hub, "/ws/client")
    await submit(client, "a")
    pushed = await monitor.until("stats", pending=1)
    assert "req" not in pushed and pushed["by_type"]["a"]["pending"] == 1


async def test_a_peer_that_stops_reading_is_closed_as_a_slow_consumer(small_hub: Hub) -> None:
    client = await connect(small_hub, "/ws/client?token=s3cret")
    client.send({"type": "submit_job", "job_type": "a", "job_id": "big", "payload": "x" * (50 << 10)})
    await client.until("job_accepted")
    worker = await connect(small_hub, "/ws/worker/w1?token=s3cret")
    worker.send({"type": "register_worker", "job_types": ["a"]})
    await worker.until("job_assigned")
    worker.send({"type": "complete_job", "job_id": "big", "result": "y" * (50 << 10), "req": 1})
    await worker.until("job_completed_ack")
    (conn,) = [c for c in small_hub.peers if c.role == "client"]
    server_side = conn.transport
    assert client.transport is not None and server_side is not None
    client.transport.underlying_transport.pause_reading()
    for _ in range(600):  # ~30 MB of replies that nobody reads
        client.send({"type": "get_job_status", "job_id": "big"})
    async with asyncio.timeout(10):
        await server_side.wait_disconnected()
    assert conn not in small_hub.peers
    client.transport.underlying_transport.abort()
    worker.close()


async def test_a_worker_id_registered_on_another_hub_replaces_this_hubs_connection(
        backend: str, make_store: MakeStore) -> None:
    if backend != "redis":
        pytest.skip("the embedded store lives in one process: several hubs need a real Redis")
    hubs = [Hub(await make_store(), HubConfig(port=0, http_port=0, events_block_ms=50)) for _ in range(2)]
    for h in hubs:
        await h.start()
    try:
        old = await register(hubs[0], "w1", ["a"])
        new = await register(hubs[1], "w1", ["a"])
        assert (await old.until("error"))["code"] == "replaced"
        client = await connect(hubs[0], "/ws/client")
        job_id = await submit(client, "a")
        assert (await new.until("job_assigned"))["job_id"] == job_id
    finally:
        for h in hubs:
            await h.stop()


async def test_completions_sent_together_are_answered_in_order_each_on_its_own(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    for n in range(3):
        await submit(client, "a", job_id=f"j{n}")
    worker = await register(hub, "w1", ["a"], concurrency=3)
    for _ in range(3):
        await worker.until("job_assigned")
    # sent in one go, so the hub takes them together: runs of completions share a store call
    frames = [{"type": "complete_job", "job_id": "j0", "result": 0, "req": 1},
              {"type": "complete_job", "job_id": "j1", "result": 1, "req": 2},
              {"type": "complete_job", "job_id": "missing", "result": 1, "req": 3},
              {"type": "ping", "req": 4},
              {"type": "complete_job", "job_id": "j2", "result": 2, "req": 5},
              {"type": "complete_job", "job_id": "j2", "result": "changed", "attempt": 1, "req": 6},
              {"type": "complete_job", "job_id": "j1", "result": "late", "attempt": 5, "req": 7}]
    for frame in frames:
        worker.send(frame)
    replies = [await worker.next() for _ in frames]
    assert [(r["req"], r["type"], r.get("code")) for r in replies] == [
        (1, "job_completed_ack", None), (2, "job_completed_ack", None), (3, "error", "not_found"),
        (4, "pong", None), (5, "job_completed_ack", None), (6, "job_completed_ack", None),
        (7, "error", "lease_lost")]
    for job_id, result in (("j0", 0), ("j1", 1), ("j2", 2)):
        client.send({"type": "get_job_status", "job_id": job_id})
        status = await client.until("job_status", job_id=job_id)
        assert status["status"] == "completed" and status["result"] == result


async def test_submits_sent_together_are_answered_in_order_each_on_its_own(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    frames = [{"type": "submit_job", "job_type": "a", "job_id": "s1", "req": 1},
              {"type": "submit_job", "job_type": "a", "job_id": "s2", "priority": "high", "req": 2},
              {"type": "submit_job", "job_type": "a", "job_id": "s1", "req": 3},
              {"type": "submit_job", "job_type": "a", "job_id": "s3", "subscribe": False, "req": 4},
              {"type": "get_stats", "req": 5},
              {"type": "submit_job", "job_type": "a", "job_id": "s4", "delay_s": 60, "req": 6}]
    for frame in frames:
        client.send(frame)
    replies = [await client.until_any(("job_accepted", "error", "stats")) for _ in frames]
    assert [(r["req"], r["type"]) for r in replies] == [
        (1, "job_accepted"), (2, "error"), (3, "job_accepted"), (4, "job_accepted"), (5, "stats"),
        (6, "job_accepted")]
    assert replies[1]["field"] == "priority"
    assert (replies[0]["created"], replies[2]["created"]) == (True, False)  # one job s1
    assert replies[3]["subscribed"] is False and replies[5]["status"] == "scheduled"
    assert replies[4]["pending"] == 2  # s1 and s3; s2 was refused, s4 waits


async def test_claim_job_refusals_name_their_reason(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    other = await submit(client, "b")
    mine = await submit(client, "a")
    worker = await register(hub, "offers", ["a"], concurrency=0)
    worker.send({"type": "claim_job", "job_id": other, "req": 1})
    error = await worker.until("error", req=1)
    assert error["code"] == "wrong_job_type" and error["job_id"] == other
    worker.send({"type": "worker_status", "status": "draining", "req": 2})
    assert (await worker.until("worker_status_ack", req=2))["status"] == "draining"
    worker.send({"type": "claim_job", "job_id": mine, "req": 3})
    assert (await worker.until("error", req=3))["code"] == "draining"
    worker.send({"type": "worker_status", "status": "idle", "req": 4})
    await worker.until("worker_status_ack", req=4)
    worker.send({"type": "claim_job", "job_id": mine, "req": 5})
    assert (await worker.until("job_assigned", req=5))["job_id"] == mine
    worker.send({"type": "claim_job", "job_id": mine, "req": 6})
    refused = await worker.until("error", req=6)
    assert refused["code"] == "already_claimed" and refused["status"] == "active"


async def test_while_redis_is_down_requests_get_unavailable_and_the_hub_recovers(
        backend: str, hub: Hub, request: pytest.FixtureRequest) -> None:
    if backend != "redis":
        pytest.skip("the embedded store cannot go down")
    server = request.getfixturevalue("redis_server")
    client = await connect(hub, "/ws/client")
    server.stop()
    try:
        client.send({"type": "submit_job", "job_type": "a", "job_id": "during", "req": 1})
        error = await client.until("error", wait_s=20, req=1)
        assert error["code"] == "unavailable" and "retry" in error["error"]
    finally:
        server.start()  # no persistence: an empty Redis, as after a crash without AOF
    client.send({"type": "submit_job", "job_type": "a", "job_id": "during", "req": 2})
    accepted = await client.until("job_accepted", wait_s=20, req=2)
    assert accepted["created"] is True  # the retry is safe: the same id is one job
    worker = await register(hub, "after", ["a"])
    assert (await worker.until("job_assigned", wait_s=10))["job_id"] == "during"
    # the hub's reader of the events stream came back too
    assert (await client.until("job_update", wait_s=10, status="active"))["worker_id"] == "after"


async def test_a_monitor_can_turn_its_job_feed_off_and_on(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "set_job_feed", "req": 1, "job_events": False})
    assert (await monitor.until("job_feed", req=1))["job_events"] is False
    worker = await register(hub, "w1", ["a"])
    assert (await monitor.until("worker_status", worker_id="w1"))["status"] == "registered"  # still
    client = await connect(hub, "/ws/client")
    quiet = await submit(client, "a", subscribe=False)
    await worker.until("job_assigned")
    worker.send({"type": "complete_job", "job_id": quiet, "result": 1, "req": "q"})
    await worker.until("job_completed_ack", req="q")
    await asyncio.sleep(0.2)  # the events reader has had the quiet job's events
    monitor.send({"type": "set_job_feed", "req": 2, "job_events": True})
    seen = []  # everything the monitor got while its feed was off
    while (frame := await monitor.next())["type"] != "job_feed":
        seen.append(frame)
    assert not any(frame.get("job_id") == quiet for frame in seen), seen
    loud = await submit(client, "a", subscribe=False)
    await worker.until("job_assigned")
    worker.send({"type": "complete_job", "job_id": loud, "result": 2})
    assert (await monitor.until("job_completed", job_id=loud))["result"] == 2


async def test_a_monitor_can_follow_the_job_events_of_some_types_only(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    monitor.send({"type": "set_job_feed", "req": 1, "job_events": True, "job_types": ["b", "c"]})
    assert (await monitor.until("job_feed", req=1))["job_types"] == ["b", "c"]
    worker = await register(hub, "w1", ["a", "b", "c"], concurrency=3)
    client = await connect(hub, "/ws/client")
    ids = {job_type: await submit(client, job_type, subscribe=False) for job_type in ("a", "b", "c")}
    for _ in ids:
        job_id = (await worker.until("job_assigned"))["job_id"]
        worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 50})
        worker.send({"type": "complete_job", "job_id": job_id, "result": 1})
    done = set()
    seen = []
    while done != {ids["b"], ids["c"]}:
        frame = await monitor.next()
        seen.append(frame)
        if frame["type"] == "job_completed":
            done.add(frame["job_id"])
    assert {f.get("job_id") for f in seen if "job_id" in f} == {ids["b"], ids["c"]}, seen
    assert [f.get("progress") for f in seen if f.get("job_id") == ids["b"] and "progress" in f] == [50.0]
    # the whole feed again, then none: each replaces the one before
    monitor.send({"type": "set_job_feed", "req": 2, "job_events": True})
    assert "job_types" not in await monitor.until("job_feed", req=2)
    other = await submit(client, "a", subscribe=False)
    assert (await monitor.until("job_update", job_id=other))["status"] == "pending"
    monitor.send({"type": "set_job_feed", "req": 3, "job_events": False, "job_types": ["a"]})
    assert "job_types" not in await monitor.until("job_feed", req=3)  # off is off
    room = hub.default_room
    assert not room.typed_feed and not room.job_feed and not room.feed_types


async def test_a_monitor_sees_every_job_event_and_worker_changes(hub: Hub) -> None:
    monitor = await connect(hub, "/ws/monitor")
    worker = await register(hub, "w1", ["a"])
    assert (await monitor.until("worker_status", worker_id="w1"))["status"] == "registered"
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "a", subscribe=False)  # nobody subscribed: the monitor still sees it
    await worker.until("job_assigned")
    worker.send({"type": "complete_job", "job_id": job_id, "result": {"ok": 1}})
    assert (await monitor.until("job_update", job_id=job_id, status="active"))["worker_id"] == "w1"
    assert (await monitor.until("job_completed", job_id=job_id))["result"] == {"ok": 1}
    worker.send({"type": "worker_status", "status": "draining"})
    assert (await monitor.until("worker_status", worker_id="w1", status="draining"))["event_id"]
    monitor.send({"type": "get_workers", "req": 1})
    (record,) = (await monitor.until("workers", req=1))["workers"]
    assert record["worker_id"] == "w1" and record["status"] == "draining"
    worker.send({"type": "unregister_worker"})
    assert (await monitor.until("worker_status", worker_id="w1", status="gone"))["type"] == "worker_status"


async def test_a_dead_lettered_job_retried_by_a_client_runs_again(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["a"])
    job_id = await submit(client, "a", max_attempts=1)
    await worker.until("job_assigned")
    worker.send({"type": "fail_job", "job_id": job_id, "error": "boom", "req": 1})
    assert (await worker.until("job_failed_ack", req=1))["final"] is True
    await client.until("job_failed", job_id=job_id, final=True)
    client.send({"type": "retry_job", "job_id": "missing", "req": 1})
    assert (await client.until("error", req=1))["code"] == "not_found"
    client.send({"type": "retry_job", "job_id": job_id, "attempts": 2, "req": 2})
    status = await client.until("job_status", req=2)
    assert status["retried"] is True and status["max_attempts"] == 3
    assert status["status"] in ("pending", "active")  # a free worker may have taken it already
    again = await worker.until("job_assigned", job_id=job_id)
    assert again["attempt"] == 2
    worker.send({"type": "complete_job", "job_id": job_id, "result": "second time lucky"})
    done = await client.until("job_completed", job_id=job_id)  # the retrier follows the new run
    assert done["result"] == "second time lucky"
    client.send({"type": "retry_job", "job_id": job_id, "req": 3})
    unchanged = await client.until("job_status", req=3)
    assert unchanged["retried"] is False and unchanged["status"] == "completed"


async def test_a_retry_sent_again_after_its_run_ended_changes_nothing_and_leaves_no_watch(hub: Hub) -> None:
    """A retry_job whose reply was lost is sent again (same retry_id) on a new connection after
    the run it started has failed again: the job is not retried a second time, and the new
    connection is not left following a job that will send no more events."""
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["a"])
    job_id = await submit(client, "a", max_attempts=1, subscribe=False)
    await worker.until("job_assigned")
    worker.send({"type": "fail_job", "job_id": job_id, "error": "boom", "req": 1})
    await worker.until("job_failed_ack", req=1)
    client.send({"type": "retry_job", "job_id": job_id, "retry_id": "r-1", "req": 2})
    assert (await client.until("job_status", req=2))["retried"] is True
    assert (await worker.until("job_assigned"))["attempt"] == 2
    worker.send({"type": "fail_job", "job_id": job_id, "error": "boom again", "req": 3})
    await client.until("job_failed", job_id=job_id, final=True)
    again = await connect(hub, "/ws/client")
    again.send({"type": "retry_job", "job_id": job_id, "retry_id": "r-1", "req": 4})
    repeat = await again.until("job_status", req=4)
    assert (repeat["retried"], repeat["status"], repeat["attempts"]) == (True, "failed", 2)
    assert not hub.default_room.subscribers.get(job_id)  # nobody follows the ended job
    with pytest.raises(TimeoutError):  # no third run
        await worker.until("job_assigned", wait_s=0.3)


async def test_a_flood_of_frames_is_answered_in_full_and_in_order(hub: Hub) -> None:
    """More frames than the hub queues per connection: it stops reading until it catches up."""
    client = await connect(hub, "/ws/client")
    count = 6_000
    for n in range(count):  # each one a store read, so they queue up behind each other
        client.send({"type": "get_job_status", "job_id": "missing", "req": n})
    replies = [await client.next(wait_s=30) for _ in range(count)]
    assert [(r["req"], r["code"]) for r in replies] == [(n, "not_found") for n in range(count)]
    client.send({"type": "get_stats", "req": "after"})
    assert (await client.until("stats"))["req"] == "after"


async def test_a_hub_whose_reader_fell_behind_a_trimmed_stream_tells_its_subscribers(
        backend: str, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend != "redis":
        pytest.skip("fakeredis does not trim streams")
    client = await connect(hub, "/ws/client")
    client.send({"type": "submit_job", "job_type": "a", "job_id": "behind"})
    # the job's first event may come before or after the reply: the submitter is subscribed first
    seen = {(await client.until_any(("job_accepted", "job_update")))["type"] for _ in range(2)}
    assert seen == {"job_accepted", "job_update"}

    reader_failed = asyncio.Event()

    async def cut_off(*args: object, **kwargs: object) -> None:
        reader_failed.set()
        raise RedisConnectionError("the test cut the reader off")

    monkeypatch.setattr(hub.store, "read_event_entries", cut_off)
    async with asyncio.timeout(5):
        await reader_failed.wait()  # the read in flight has ended: the reader now sees nothing
    other = await connect(hub, "/ws/client")
    await submit(other, "b")  # events this hub's reader does not see...
    await hub.store.redis.xtrim(hub.store.keys.events, maxlen=1, approximate=False)  # ...and lose
    monkeypatch.undo()
    state = await client.until("job_update", wait_s=10, job_id="behind", resumed=False)
    assert state["status"] == "pending"


async def test_only_a_job_claimed_in_the_same_read_cancels_its_wake_up(hub: Hub) -> None:
    """The events reader asks for a claim for each job that became pending in a read, except one
    claimed later in that read (a submit that claimed for the idle worker): another job's claim
    (a busy worker taking an older job) must not cancel the wake-up a new job needs."""
    def read(*events: list[bytes]) -> Counter[str]:
        wake: Counter[str] = Counter()
        woken: set[str] = set()
        for flat in events:
            hub.default_room.dispatch._on_event("1-0", flat, wake, woken)
        return +wake

    added = [b"ev", b"added", b"id", b"new", b"type", b"t", b"status", b"pending", b"priority", b"0"]

    def assigned(job_id: bytes) -> list[bytes]:
        return [b"ev", b"assigned", b"id", job_id, b"type", b"t", b"worker", b"w", b"attempt", b"1"]

    assert read(added) == Counter({"t": 1})
    assert read(added, assigned(b"new")) == Counter()
    assert read(added, assigned(b"older")) == Counter({"t": 1})


async def test_firefoxs_websocket_upgrade_gets_the_documented_400(hub: Hub) -> None:
    # docs/protocol.md section 2, "Browsers": a browser page uses the HTTP side (REST and SSE)
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(b"GET /ws/monitor HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"User-Agent: Mozilla/5.0 Firefox/140.0\r\n"
                     b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read(4096)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"CONNECTION header value is not 'upgrade'" in answer, answer
