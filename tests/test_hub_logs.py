"""Job logs and queue position through the hub over real sockets (docs/protocol.md 4.1, 4.2, 4.5),
on real Redis and on the embedded store."""

from __future__ import annotations

from support import connect, register, submit

from empfast.hub import Hub
from empfast.limits import LOG_CUT_MARKER, MAX_LOG_LINE_BYTES, MAX_LOG_LINES


async def test_logs_reach_subscribers_and_monitors_and_read_back(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    monitor = await connect(hub, "/ws/monitor")
    job_id = await submit(client, "ocr", job_id="j1")
    worker = await register(hub, "w1", ["ocr"])
    assigned = await worker.until("job_assigned")
    worker.send({"type": "append_job_log", "job_id": job_id, "attempt": assigned["attempt"],
                 "lines": ["page 1", "x" * (MAX_LOG_LINE_BYTES + 1)]})
    worker.send({"type": "append_job_log", "job_id": job_id, "lines": ["page 2"], "req": 7})
    ack = await worker.until("job_log_ack")
    assert ack == {"type": "job_log_ack", "job_id": job_id, "req": 7}
    cut = "x" * (MAX_LOG_LINE_BYTES - len(LOG_CUT_MARKER)) + LOG_CUT_MARKER
    for peer in (client, monitor):
        first = await peer.until("job_log", job_id=job_id)
        assert first["lines"] == ["page 1", cut] and first["worker_id"] == "w1" and first["attempt"] == 1
        assert first["event_id"]
        assert (await peer.until("job_log", job_id=job_id))["lines"] == ["page 2"]
    client.send({"type": "get_job_status", "job_id": job_id, "logs": True, "req": 1})
    status = await client.until("job_status", req=1)
    assert status["logs"] == ["page 1", cut, "page 2"] and "position" not in status
    monitor.send({"type": "get_job_status", "job_id": job_id, "logs": 1, "req": 2})
    assert (await monitor.until("job_status", req=2))["logs"] == ["page 2"]
    client.send({"type": "get_job_status", "job_id": job_id, "req": 3})
    assert "logs" not in await client.until("job_status", req=3)
    for peer in (client, monitor, worker):
        peer.close()


async def test_a_log_of_another_attempt_or_worker_is_lease_lost_and_not_stored(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    job_id = await submit(client, "ocr", job_id="j2")
    worker = await register(hub, "w1", ["ocr"])
    await worker.until("job_assigned")
    other = await register(hub, "w2", ["other"])
    worker.send({"type": "append_job_log", "job_id": job_id, "attempt": 2, "lines": ["stale"], "req": 1})
    error = await worker.until("error", req=1)
    assert error["code"] == "lease_lost" and error["job_id"] == job_id
    other.send({"type": "append_job_log", "job_id": job_id, "lines": ["not mine"], "req": 2})
    assert (await other.until("error", req=2))["code"] == "lease_lost"
    other.send({"type": "append_job_log", "job_id": "nothing", "lines": ["x"], "req": 3})
    assert (await other.until("error", req=3))["code"] == "not_found"
    other.send({"type": "append_job_log", "job_id": job_id, "lines": ["x"] * (MAX_LOG_LINES + 1), "req": 4})
    too_many = await other.until("error", req=4)
    assert too_many["code"] == "limit_exceeded" and too_many["limit"] == MAX_LOG_LINES
    other.send({"type": "append_job_log", "job_id": job_id, "lines": [], "req": 5})
    assert (await other.until("error", req=5))["code"] == "bad_message"
    client.send({"type": "get_job_status", "job_id": job_id, "logs": True, "req": 6})
    assert (await client.until("job_status", req=6))["logs"] == []
    client.send({"type": "get_job_status", "job_id": job_id, "logs": 0, "req": 7})
    assert (await client.until("error", req=7))["field"] == "logs"
    for peer in (client, worker, other):
        peer.close()


async def test_pending_jobs_know_their_position_until_they_run(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    positions = {}
    for job_id, priority in (("low", -1), ("mid", 0), ("top", 5), ("mid2", 0)):
        client.send({"type": "submit_job", "job_type": "p", "job_id": job_id, "priority": priority})
        accepted = await client.until("job_accepted", job_id=job_id)
        positions[job_id] = accepted["position"]
    assert positions == {"low": 0, "mid": 0, "top": 0, "mid2": 2}
    client.send({"type": "submit_job", "job_type": "p", "job_id": "later", "delay_s": 60})
    assert "position" not in await client.until("job_accepted", job_id="later")
    client.send({"type": "submit_jobs", "jobs": [{"job_type": "p"}], "req": "batch"})
    assert "positions" not in await client.until("jobs_accepted", req="batch")  # the bulk path pays nothing
    for job_id, rank in (("top", 0), ("mid", 1), ("mid2", 2), ("low", 4)):
        client.send({"type": "get_job_status", "job_id": job_id, "req": job_id})
        assert (await client.until("job_status", req=job_id))["position"] == rank
    worker = await register(hub, "w1", ["p"])
    assert (await worker.until("job_assigned"))["job_id"] == "top"
    client.send({"type": "get_job_status", "job_id": "top", "req": "ran"})
    assert "position" not in await client.until("job_status", req="ran")
    client.send({"type": "get_job_status", "job_id": "mid", "req": "next"})
    assert (await client.until("job_status", req="next"))["position"] == 0
    client.close()
    worker.close()
