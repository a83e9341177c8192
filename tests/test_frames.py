"""The hub's outgoing frames (empfast/hub/frames.py) against the examples in docs/protocol.md: a
peer written from the document alone must receive exactly the members the examples show. Also:
the hub's handler table is the protocol's list of message types, role by role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from empfast import messages as m
from empfast.config import HubConfig
from empfast.errors import LeaseLost
from empfast.hub import Hub, frames
from empfast.hub.conn import error_for
from empfast.store import Added, ClaimedJob, Cursor, JobPage, Stats, Store, TypeLimit

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def doc_examples(kind: str) -> list[dict[str, Any]]:
    """Every JSON example of a frame of this type in docs/protocol.md, in order."""
    text = DOC.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    found, position = [], 0
    while (start := text.find('{"', position)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 2
            continue
        position = end
        if isinstance(value, dict) and value.get("type") == kind:
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
    doc = example("welcome")
    assert sent(frames.welcome(doc["role"], doc["hub_id"], doc["max_frame_bytes"], doc["queue"])) == doc


def test_error_frame_of_a_store_refusal() -> None:
    doc = example("error", code="lease_lost")
    frame = sent(error_for(LeaseLost(doc["job_id"], "w1", 1), doc["req"], "worker"))
    assert frame.keys() == doc.keys()
    assert {k: v for k, v in frame.items() if k != "error"} == {k: v for k, v in doc.items() if k != "error"}
    assert frame["error"].startswith(doc["error"].removesuffix(" ..."))


def test_client_replies() -> None:
    for req in (1, 8):  # a job, and a job with a group (the same reply)
        doc = example("job_accepted", status="pending", req=req)
        added = Added(doc["job_id"], doc["status"], doc["created"], position=doc["position"])
        assert sent(frames.job_accepted(added, doc["subscribed"]), doc["req"]) == doc
    for req in (2, 3):  # a batch, and a pipeline whose children wait (depends_on)
        doc = example("jobs_accepted", req=req)
        batch = [Added(job_id, status, created) for job_id, status, created
                 in zip(doc["job_ids"], doc["statuses"], doc["created"], strict=True)]
        assert sent(frames.jobs_accepted(batch, doc["subscribed"]), doc["req"]) == doc
    doc = example("subscribed", resumed=True)
    assert sent(frames.subscribed(doc["job_id"], True), doc["req"]) == doc
    doc = example("unsubscribed")
    assert sent(frames.unsubscribed(doc["job_id"]), doc.get("req")) == doc
    doc = example("pong")
    assert sent(frames.pong(), doc["req"]) == doc


def test_job_status() -> None:
    doc = example("job_status", job_type="resize")
    job = {"type": doc["job_type"], "worker": doc["worker_id"], "payload": b'{"url":"x"}',
           **{k: doc[k] for k in ("status", "priority", "progress", "message", "attempts", "max_attempts",
                                  "errors", "cancel_requested", "created_at", "updated_at", "started_at",
                                  "timeout_ms")}}
    result = orjson.dumps(doc["result"]) if doc["result"] is not None else None
    if result is not None:
        job["result"] = result
    assert sent(frames.job_status(doc["job_id"], job, doc.get("req"))) == doc
    doc = example("job_status", job_type="ocr")  # with logs
    job = {"type": doc["job_type"], "worker": doc["worker_id"], "logs": doc["logs"],
           **{k: doc[k] for k in ("status", "priority", "progress", "message", "attempts", "max_attempts",
                                  "errors", "cancel_requested", "created_at", "updated_at", "started_at")}}
    assert sent(frames.job_status(doc["job_id"], job, doc.get("req"))) == doc


def test_the_newest_log_lines_that_fit() -> None:
    lines = ["a" * 10, "b" * 10, "c" * 10]
    assert frames.newest_lines(lines, 1000) == lines
    assert frames.newest_lines(lines, 26) == lines[1:]  # 12 bytes of JSON and a comma each
    assert frames.newest_lines(lines, 5) == []


def test_worker_replies() -> None:
    doc = example("worker_registered")
    assert sent(frames.worker_registered(doc["worker_id"], doc["heartbeat_interval_s"], doc["lease_s"],
                                         doc["liveness_s"], doc["held"], False), doc.get("req")) == doc
    doc = example("job_log_ack")
    assert sent(frames.job_log_ack(doc["job_id"]), doc.get("req")) == doc
    doc = example("job_progress_ack")
    assert sent(frames.job_progress_ack(doc["job_id"], doc["cancel_requested"]), doc.get("req")) == doc
    doc = example("job_completed_ack")
    assert sent(frames.job_completed_ack(doc["job_id"]), doc.get("req")) == doc
    doc = example("job_feed", job_events=False)
    assert sent(frames.job_feed(doc["job_events"]), doc.get("req")) == doc
    doc = example("job_feed", job_events=True)
    assert sent(frames.job_feed(doc["job_events"], doc["job_types"]), doc.get("req")) == doc
    doc = example("jobs_completed_ack")
    assert sent(frames.jobs_completed_ack(doc["job_ids"], doc["refused"]), doc.get("req")) == doc
    doc = example("job_failed_ack", final=False)
    assert sent(frames.job_failed_ack(doc["job_id"], doc["status"], doc["final"], doc["retry_at"]),
                doc.get("req")) == doc
    doc = example("worker_heartbeat_ack")
    assert sent(frames.worker_heartbeat_ack(doc["worker_id"], doc["extended"], doc["lost"]),
                doc.get("req")) == doc
    doc = example("worker_status_ack")
    assert sent(frames.worker_status_ack(doc["worker_id"], doc["status"]), doc.get("req")) == doc
    doc = example("worker_unregistered")
    assert sent(frames.worker_unregistered(doc["worker_id"], doc["released"]), doc.get("req")) == doc


def test_pushes_to_workers() -> None:
    doc = example("job_assigned")
    payload = orjson.dumps(doc["payload"])
    job = ClaimedJob(doc["job_id"], doc["job_type"], doc["priority"], payload, doc["attempt"])
    assigned = frames.job_assigned(job, doc["lease_s"])
    assert sent(assigned) == doc
    assert payload in assigned  # spliced as stored, not re-encoded
    doc = example("jobs_assigned")
    payloads = [orjson.dumps(item["payload"]) for item in doc["jobs"]]
    jobs = [ClaimedJob(item["job_id"], item["job_type"], item["priority"], payload, item["attempt"])
            for item, payload in zip(doc["jobs"], payloads, strict=True)]
    (assigned,) = frames.jobs_assigned(jobs, doc["lease_s"], 1 << 20)
    assert sent(assigned) == doc
    assert all(payload in assigned for payload in payloads)
    doc = example("job_available")
    assert sent(frames.job_available(doc["job_id"], doc["job_type"], doc["priority"])) == doc
    doc = example("cancel_job", reason="cancelled")
    assert sent(frames.cancel_job(doc["job_id"], doc["reason"])) == doc


def test_a_page_of_jobs() -> None:
    doc = example("jobs")
    cursor = Cursor(*doc["cursor"].split(":", 1))
    page = JobPage(rows=[dict(row) for row in doc["rows"]], cursor=cursor, scanned=doc["scanned"],
                   scores=["0"] * len(doc["rows"]))
    assert sent(frames.jobs_listed(page, doc["req"], 1 << 20)) == doc
    # with payloads, cut short before the frame limit, with the cursor of its last row
    rows = [{**doc["rows"][0], "job_id": f"j{i}", "payload": b'"' + b"x" * 3000 + b'"', "result": None}
            for i in range(5)]
    page = JobPage(rows=rows, cursor=None, scanned=5, scores=[str(100 + i) for i in range(5)])
    cut = sent(frames.jobs_listed(page, None, 8000))
    assert [row["job_id"] for row in cut["rows"]] == ["j0", "j1"] and cut["cursor"] == "101:j1"
    assert cut["rows"][0]["payload"] == "x" * 3000 and cut["rows"][0]["result"] is None


def test_jobs_assigned_frames_stay_within_the_frame_limit() -> None:
    limit = 10_000
    jobs = [ClaimedJob(f"j{i}", "t", 0, b'"' + b"x" * 3_000 + b'"', 1) for i in range(7)]
    frames_sent = frames.jobs_assigned(jobs, 30.0, limit, reassigned=True)
    assert len(frames_sent) == 3 and all(len(frame) <= limit for frame in frames_sent)
    items = [item for frame in frames_sent for item in sent(frame)["jobs"]]
    assert [item["job_id"] for item in items] == [job.job_id for job in jobs]
    assert all(item["reassigned"] is True for item in items)
    # a job whose payload alone comes near the limit goes alone, as in a job_assigned
    (alone,) = frames.jobs_assigned([ClaimedJob("big", "t", 0, b'"' + b"x" * limit + b'"', 1)], 30.0, limit)
    assert sent(alone)["jobs"][0]["job_id"] == "big"


def _entry(**fields: Any) -> dict[bytes, bytes]:
    """An events-stream entry as the store reads it: every name and value bytes."""
    return {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()
            if v is not None}


def test_job_events_from_stream_entries() -> None:
    def check(doc: dict[str, Any], **fields: Any) -> None:
        frame = sent(frames.job_event(doc["event_id"], _entry(id=doc["job_id"], **fields)))
        assert frame == doc

    doc = example("job_update", status="pending")
    check(doc, ev="added", type="resize", status="pending")
    doc = next(e for e in doc_examples("job_update") if "worker_id" in e)
    check(doc, ev="assigned", type="resize", worker=doc["worker_id"], attempt=doc["attempt"])
    doc = next(e for e in doc_examples("job_update") if "progress" in e and "resumed" not in e)
    check(doc, ev="progress", progress=doc["progress"], message=doc["message"])
    doc = example("job_completed")
    check(doc, ev="completed", worker=doc["worker_id"], attempt=doc["attempt"],
          result=orjson.dumps(doc["result"]))
    doc = example("job_failed", final=False, status="scheduled")
    check(doc, ev="failed", type="ocr", error=doc["error"], final=0, attempt=doc["attempt"],
          run_at=doc["retry_at"])
    doc = example("job_failed", final=True, job_id="order-18")
    check(doc, ev="failed", type="ocr", error=doc["error"], final=1, attempt=doc["attempt"])
    doc = example("job_failed", error="timeout")  # the sweep names the worker of a timed-out attempt
    check(doc, ev="failed", type="render", error="timeout", final=0, attempt=doc["attempt"],
          worker=doc["worker_id"])
    doc = example("job_failed", error="expired")
    check(doc, ev="failed", type="render", error="expired", final=1, attempt=0)
    doc = example("job_failed", job_id="d")  # a child whose parent failed for good
    check(doc, ev="failed", type="report", error="dependency failed: b failed", final=1, attempt=0)
    doc = example("job_cancelled")
    check(doc, ev="cancelled")
    doc = example("job_log")
    check(doc, ev="log", type="ocr", worker=doc["worker_id"], attempt=doc["attempt"],
          lines=orjson.dumps(doc["lines"]))
    doc = example("worker_status")
    assert sent(frames.worker_status(doc["worker_id"], doc["status"], doc["event_id"])) == doc


def test_a_job_types_settings_as_every_monitor_is_told_of_them() -> None:
    """The frames of the stream's entries that setTypeLimits-2.lua and setTypePaused-2.lua write."""
    set_doc = example("type_limits", event_id="1796186600100-0")
    entry = {b"ev": b"limits", b"id": b"", b"type": b"render", b"pending": b"35", b"concurrency": b"4",
             b"rate": b"10", b"per_ms": b"60000"}
    assert sent(frames.type_setting_event(set_doc["event_id"], entry)) == set_doc
    cleared = example("type_limits", event_id="1796186650000-0")
    entry = {b"ev": b"limits", b"id": b"", b"type": b"render", b"pending": b"35"}
    assert sent(frames.type_setting_event(cleared["event_id"], entry)) == cleared
    paused = sent(frames.type_setting_event("1-0", {b"ev": b"paused", b"id": b"", b"type": b"resize",
                                                     b"pending": b"120"}))
    assert paused == {"type": "type_paused", "job_type": "resize", "paused": True, "pending": 120,
                      "event_id": "1-0"}


def test_a_state_event_after_a_trimmed_resume() -> None:
    doc = example("job_update", resumed=False)
    job = {"status": doc["status"], "progress": doc["progress"], "message": doc["message"]}
    frame = frames.job_state(doc["job_id"], job, doc["event_id"], {"resumed": False})
    assert sent(frame) == doc


def test_stats_and_workers() -> None:
    doc = example("stats")
    counts = {k: v for k, v in doc.items() if k not in ("type", "req")}
    assert sent(frames.stats(counts, doc.get("req"))) == doc
    # the members the store's counts have, `waiting` among them
    assert set(Stats(0, 0, 0, 0, 0, 0, {}).as_dict()) == set(counts)
    doc = example("workers")
    assert sent(frames.workers(doc["workers"]), doc.get("req")) == doc


async def test_the_handler_table_is_derived_from_the_declared_messages() -> None:
    hub = Hub(Store.embedded(), HubConfig(port=0, http_port=0))
    assert {m.tag_of(cls) for cls in hub.handlers} == set(m.ALL_MESSAGES)
    for cls, handler in hub.handlers.items():
        assert handler.__name__ == m.handler_name(cls), cls
    assert set(hub.batch_handlers) <= set(hub.handlers)


@pytest.mark.parametrize("kind", sorted(m.ALL_MESSAGES))
def test_every_message_type_has_an_example_in_the_document(kind: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"`{kind}`" in text or f'"type":"{kind}"' in text


def test_queues() -> None:
    doc = example("queues")
    stats_of = {q["queue"]: {k: v for k, v in q.items() if k != "queue"} for q in doc["queues"]}
    assert sent(frames.queues(stats_of, doc["default"]), doc["req"]) == doc


def test_type_limits() -> None:
    for req in (21, 22):  # limits of a type, and a per-group limit beside them
        doc = example("type_limits", req=req)
        limits = {job_type: TypeLimit(**values) for job_type, values in doc["limits"].items()}
        assert sent(frames.type_limits(doc["job_type"], limits, doc["pending"]), req) == doc
