"""Promises of docs/guarantees.md that no other test states whole, through a real hub with raw
peers, on real Redis and on the embedded store."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from support import MakeStore, connect, register, started_hub, submit

from empfast.hub import Hub
from empfast.limits import MAX_VALUE_DEPTH


async def test_a_stale_attempt_is_refused_and_every_subscriber_sees_the_newer_attempts_result(
        make_store: MakeStore) -> None:
    """The same worker, given the job again as attempt 2 after its lease on attempt 1 ran out, sends
    attempt 1's result: lease_lost; attempt 2's result is stored, and it is what the submitter and a
    monitor see, once each."""
    async with started_hub(make_store, lease_ms=400, liveness_ms=10_000) as hub:
        client = await connect(hub, "/ws/client")
        monitor = await connect(hub, "/ws/monitor")
        worker = await register(hub, "w1", ["t"])
        job_id = await submit(client, "t")
        assert (await worker.until("job_assigned", job_id=job_id))["attempt"] == 1
        worker.close()  # the socket drops; the lease on attempt 1 runs out
        await client.until("job_failed", job_id=job_id, final=False)
        worker = await register(hub, "w1", ["t"])
        assert (await worker.until("job_assigned", job_id=job_id))["attempt"] == 2
        worker.send({"type": "complete_job", "req": 1, "job_id": job_id, "attempt": 1, "result": "stale"})
        answer = await worker.until_any(("error", "job_completed_ack"))
        assert (answer["type"], answer.get("code"), answer["req"]) == ("error", "lease_lost", 1)
        worker.send({"type": "complete_job", "req": 2, "job_id": job_id, "attempt": 2, "result": "fresh"})
        await worker.until("job_completed_ack", req=2)
        for peer in (client, monitor):
            done = await peer.until("job_completed", job_id=job_id)
            assert (done["result"], done["attempt"]) == ("fresh", 2)
        client.send({"type": "ping", "req": "p"})
        monitor.send({"type": "ping", "req": "p"})
        for peer in (client, monitor):  # no second completion of the job came before the pong
            frame = await peer.until_any(("job_completed", "pong"))
            assert frame["type"] == "pong"
        for peer in (client, monitor, worker):
            peer.close()


DEEP = 1500  # levels: past orjson's 1,024, within msgspec's guard once the recursion limit is raised
UNREADABLE = {"a number beyond a double": b"[1e400]", "a negative one": b'{"x":-2e308}',
              "a 400-digit integer": b"[1" + b"0" * 400 + b"]",
              "nesting deeper than 1,024 levels": b"[" * DEEP + b"]" * DEEP}


@pytest.fixture
def raised_recursion_limit() -> Iterator[None]:
    """An application embedding the hub may have raised it (hypothesis does): msgspec's depth guard
    moves with it, the SDKs' parser (orjson, 1,024 levels) does not."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    yield
    sys.setrecursionlimit(limit)


@pytest.mark.usefixtures("raised_recursion_limit")
@pytest.mark.parametrize("what", list(UNREADABLE))
async def test_a_payload_the_sdks_cannot_read_is_refused_and_nothing_is_added(hub: Hub, what: str) -> None:
    """Every job the hub accepts is one a worker SDK can read: a payload the SDKs' parser refuses
    gets bad_message naming the field, alone or inside a batch, and no job of the frame is added."""
    payload = UNREADABLE[what]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payload)  # what the SDKs parse frames with
    client = await connect(hub, "/ws/client")
    client.send(b'{"type":"submit_job","job_type":"t","req":1,"payload":' + payload + b"}")
    client.send(b'{"type":"submit_jobs","req":2,"jobs":[{"job_type":"t","job_id":"fine"},'
                b'{"job_type":"t","payload":' + payload + b"}]}")
    for req, field in ((1, "payload"), (2, "jobs[1].payload")):
        answer = await client.until_any(("error", "job_accepted", "jobs_accepted"))
        assert (answer["type"], answer.get("code"), answer["req"], answer.get("field")) == (
            "error", "bad_message", req, field), answer
        assert "standard JSON parser" in answer["error"]
    stats = await hub.store.stats()
    client.close()
    assert (stats.pending, stats.by_type) == (0, {}), stats


@pytest.mark.usefixtures("raised_recursion_limit")
async def test_a_payload_as_deep_as_the_sdks_read_is_accepted(hub: Hub) -> None:
    """The bound is the SDKs' parser's, not a stricter one: a payload of 1,023 levels (1,024 in the
    frame that carries it) is accepted and assigned, in one piece; one level more is refused."""
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["t"])
    payload = b"[" * MAX_VALUE_DEPTH + b"]" * MAX_VALUE_DEPTH
    client.send(b'{"type":"submit_job","job_type":"t","req":1,"payload":[' + payload + b"]}")
    assert (await client.until("error", req=1))["field"] == "payload"
    client.send(b'{"type":"submit_job","job_type":"t","req":2,"payload":' + payload + b"}")
    job_id = (await client.until("job_accepted", req=2))["job_id"]
    assigned = await worker.until("job_assigned", job_id=job_id)
    assert json.dumps(assigned["payload"], separators=(",", ":")).encode() == payload  # orjson: 255 levels
    client.close()
    worker.close()


async def test_a_result_the_sdks_cannot_read_is_refused_and_the_job_stays_with_its_worker(hub: Hub) -> None:
    """A complete_job whose result holds 1e400 gets bad_message; the worker still holds the job and
    its next, readable result completes it, as every subscriber sees."""
    client = await connect(hub, "/ws/client")
    worker = await register(hub, "w1", ["t"])
    job_id = await submit(client, "t")
    attempt = (await worker.until("job_assigned", job_id=job_id))["attempt"]
    worker.send(b'{"type":"complete_job","req":1,"job_id":"' + job_id.encode() + b'","attempt":'
                + str(attempt).encode() + b',"result":{"n":1e400}}')
    answer = await worker.until_any(("error", "job_completed_ack"))
    assert (answer["type"], answer.get("code"), answer.get("field")) == ("error", "bad_message", "result")
    worker.send({"type": "complete_job", "req": 2, "job_id": job_id, "attempt": attempt, "result": {"n": 1}})
    await worker.until("job_completed_ack", req=2)
    assert (await client.until("job_completed", job_id=job_id))["result"] == {"n": 1}
    client.close()
    worker.close()


# tests that docs/guarantees.md names, which arrive with another branch (none since main has them all)
ON_OTHER_BRANCHES: set[str] = set()


def test_every_test_docs_guarantees_names_exists() -> None:
    """The page names the test behind each promise: each named test function must exist."""
    root = Path(__file__).parent.parent
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", (root / "docs" / "guarantees.md").read_text())
    assert len(named) >= 20
    missing = [f"{path}::{name}" for path, name in named if path not in ON_OTHER_BRANCHES
               and not re.search(rf"^(async )?def {name}\(", (root / path).read_text(), re.MULTILINE)]
    assert missing == []
