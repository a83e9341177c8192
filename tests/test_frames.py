"""The hub's outgoing frames (empfast/hub/frames.py) against the examples in docs/protocol.md: a
peer written from the document alone must receive exactly the members the examples show. Also:
the hub's handler table is the protocol's list of message types, role by role."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from empfast import protocol as p
from empfast.config import HubConfig
from empfast.errors import LeaseLost
from empfast.hub import Hub, frames
from empfast.hub.conn import error_for
from empfast.store import Added, ClaimedJob, Store

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def doc_examples(kind: str) -> list[dict[str, Any]]:
    """Every JSON example of a frame of this type in docs/protocol.md, in order."""
    text = DOC.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r'\{"type":\s*"' + re.escape(kind) + '"', text):
        value, _ = decoder.raw_decode(text, match.start())
        found.append(value)
    assert found, f"docs/protocol.md has no example of {kind!r}"
    return found


def example(kind: str, **where: Any) -> dict[str, Any]:
    """The one example of `kind` whose members include `where`."""
    matching = [e for e in doc_examples(kind) if all(e.get(k) == v for k, v in where.items())]
    assert len(matching) == 1, f"expected one {kind!r} example with {where}, found {len(matching)}"
    return matching[0]


def sent(frame: bytes | dict[str, Any], req: Any = None) -> dict[str, Any]:
    """What the peer decodes: a reply dict gets its req as the connection sends it."""
    if isinstance(frame, dict):
        frame = frames.reply(frame, req)
    return orjson.loads(frame)


def test_welcome() -> None:
    assert sent(frames.welcome("worker", "h-3f2a", 1048576)) == example("welcome")


def test_error_frame_of_a_store_refusal() -> None:
    doc = example("error", code="lease_lost")
    frame = sent(error_for(LeaseLost("j1", "w1", 1), 7, "worker"))
    assert frame.keys() == doc.keys()
    assert {k: v for k, v in frame.items() if k != "error"} == {k: v for k, v in doc.items() if k != "error"}
    assert frame["error"].startswith(doc["error"].removesuffix(" ..."))


def test_client_replies() -> None:
    assert sent(frames.job_accepted(Added("order-17", "pending", True), True), 1) == example("job_accepted")
    doc = example("jobs_accepted")
    added = [Added(job_id, status, created)
             for job_id, status, created in zip(doc["job_ids"], doc["statuses"], doc["created"], strict=True)]
    assert sent(frames.jobs_accepted(added, True), 2) == doc
    assert sent(frames.subscribed("order-17", True), 4) == example("subscribed")
    assert sent(frames.unsubscribed("order-17")) == example("unsubscribed")
    assert sent(frames.pong(), 9) == example("pong")


def test_job_status() -> None:
    doc = example("job_status", req=3)
    job = {"type": "resize", "status": "active", "priority": 5, "progress": 40.0, "message": "resizing",
           "attempts": 1, "max_attempts": 3, "worker": "w1", "errors": [], "cancel_requested": False,
           "created_at": 1718000000000, "updated_at": 1718000001200, "started_at": 1718000000100,
           "payload": b'{"url":"https://example.org/a.png"}'}
    assert sent(frames.job_status("order-17", job, 3)) == doc


def test_worker_replies() -> None:
    assert sent(frames.worker_registered("gpu-7", 10.0, 30.0, 30.0, ["order-17"]), 1) == example(
        "worker_registered")
    assert sent(frames.job_progress_ack("order-17", False)) == example("job_progress_ack")
    assert sent(frames.job_completed_ack("order-17"), 3) == example("job_completed_ack")
    assert sent(frames.job_failed_ack("order-17", "scheduled", False, 1718000002731), 4) == example(
        "job_failed_ack")
    assert sent(frames.worker_heartbeat_ack("gpu-7", 3, [])) == example("worker_heartbeat_ack")
    assert sent(frames.worker_status_ack("gpu-7", "draining")) == example("worker_status_ack")
    assert sent(frames.worker_unregistered("gpu-7", 0)) == example("worker_unregistered")


def test_pushes_to_workers() -> None:
    payload = b'{"url":"https://example.org/a.png"}'
    assigned = frames.job_assigned(ClaimedJob("order-17", "resize", 5, payload, 1), 30.0)
    assert sent(assigned) == example("job_assigned")
    assert payload in assigned  # spliced as stored, not re-encoded
    assert sent(frames.job_available("order-18", "ocr", 0)) == example("job_available")
    assert sent(frames.cancel_job("order-17", "cancelled")) == example("cancel_job", reason="cancelled")


def test_job_events_from_stream_entries() -> None:
    progress = {b"ev": b"progress", b"id": b"order-17", b"progress": b"40", b"message": b"resizing"}
    completed = {b"ev": b"completed", b"id": b"order-17", b"worker": b"gpu-7", b"attempt": b"1",
                 b"result": b'{"url":"https://example.org/a-small.png"}'}
    retried = {b"ev": b"failed", b"id": b"order-18", b"type": b"ocr", b"error": b"upstream 503",
               b"final": b"0", b"attempt": b"1", b"run_at": b"1718000003700"}
    dead = {b"ev": b"failed", b"id": b"order-18", b"type": b"ocr", b"error": b"lease expired (attempt 3)",
            b"final": b"1", b"attempt": b"3"}
    cancelled = {b"ev": b"cancelled", b"id": b"order-19"}

    def event(event_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
        return sent(frames.job_event(event_id, {k.decode(): v for k, v in fields.items()}))

    assert event("1718000001200-0", progress) == example("job_update", progress=40)
    assert event("1718000002100-3", completed) == example("job_completed")
    assert event("1718000002731-0", retried) == example("job_failed", final=False)
    assert event("1718000009000-0", dead) == example("job_failed", final=True)
    assert event("1718000009500-0", cancelled) == example("job_cancelled")
    assert sent(frames.worker_status("gpu-7", "draining", "1718000003000-0")) == example("worker_status")


def test_a_state_event_after_a_trimmed_resume() -> None:
    job = {"status": "active", "progress": 55.0, "message": ""}
    frame = frames.job_state("order-17", job, "1718000400000-0", {"resumed": False})
    assert sent(frame) == example("job_update", resumed=False)


def test_stats_and_workers() -> None:
    doc = example("stats")
    assert sent(frames.stats({k: v for k, v in doc.items() if k != "type"})) == doc
    doc = example("workers")
    assert sent(frames.workers(doc["workers"])) == doc


async def test_the_handler_table_is_the_protocols_list_of_message_types() -> None:
    hub = Hub(Store.embedded(), HubConfig(port=0))
    assert set(hub.handlers) == p.ALL_TYPES
    assert set(hub.batch_handlers) <= p.ALL_TYPES
    for role, kinds in p.ROLE_TYPES.items():
        assert kinds <= set(hub.handlers), role


@pytest.mark.parametrize("kind", sorted(p.ALL_TYPES))
def test_every_message_type_has_an_example_in_the_document(kind: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"`{kind}`" in text or f'"type":"{kind}"' in text
