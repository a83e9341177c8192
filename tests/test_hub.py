"""The hub over real sockets, on real Redis and on the embedded store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support import MakeStore, WSPeer

from empfast.config import HubConfig
from empfast.hub import Hub


@pytest.fixture
async def hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    store = await make_store(lease_ms=2_000, liveness_ms=3_000)
    h = Hub(store, HubConfig(port=0, sweep_interval_s=0.05, stats_interval_s=0.05, events_block_ms=50))
    await h.start()
    yield h
    await h.stop()


def url(hub: Hub, path: str) -> str:
    return f"ws://127.0.0.1:{hub.port}{path}"


async def test_submit_assign_progress_complete_as_the_client_sees_it(hub: Hub) -> None:
    client = await WSPeer.connect(url(hub, "/ws/client"))
    worker = await WSPeer.connect(url(hub, "/ws/worker/w1"))
    worker.send({"type": "register_worker", "job_types": ["echo"], "concurrency": 1, "req": 1})
    registered = await worker.until("worker_registered")
    assert registered["worker_id"] == "w1" and registered["req"] == 1

    client.send(b'{"type":"submit_job","job_type":"echo","req":"a","payload":{"x": 1.50, "y":[1,2]}}')
    accepted = await client.until("job_accepted")
    assert accepted["req"] == "a" and accepted["created"] is True
    job_id = accepted["job_id"]

    assigned = await worker.until("job_assigned")
    assert assigned["job_id"] == job_id and assigned["attempt"] == 1
    worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 50, "message": "half"})
    progress = await client.until("job_update", progress=50.0)
    assert progress["message"] == "half" and progress["event_id"]
    worker.send(b'{"type":"complete_job","job_id":"' + job_id.encode() + b'","result":{"z": 1.50}}')
    await worker.until("job_completed_ack", job_id=job_id)
    done = await client.until("job_completed", job_id=job_id)
    assert done["result"] == {"z": 1.5}
    client.send({"type": "get_job_status", "job_id": job_id})
    status = await client.until("job_status")
    assert status["status"] == "completed" and status["worker_id"] == "w1"
    client.close()
    worker.close()


@pytest.mark.parametrize(("frame", "code"), [
    (b"not json", "bad_json"),
    (b"[1]", "bad_message"),
    (b'{"job_type": "a"}', "bad_message"),
    (b'{"type": "nope"}', "unknown_type"),
    (b'{"type": "complete_job", "job_id": "x", "result": 1}', "forbidden"),
    (b'{"type": "submit_job", "job_type": "a", "priority": 99999}', "bad_message"),
    (b'{"type": "get_job_status", "job_id": "missing"}', "not_found"),
])
async def test_bad_input_gets_its_error_and_the_connection_stays(hub: Hub, frame: bytes, code: str) -> None:
    client = await WSPeer.connect(url(hub, "/ws/client"))
    client.send(frame)
    error = await client.until("error")
    assert error["code"] == code and error["error"]
    client.send({"type": "get_stats", "req": 2})
    stats = await client.until("stats")
    assert stats["req"] == 2 and stats["pending"] == 0
    client.close()
