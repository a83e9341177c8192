"""Property-based fuzz of the hub (issue 8, section 4): batches of frames of every inbound message
type, valid and mutated (tests/fuzz_frames.py), sent over real sockets to a running hub. For each
frame the answer is the one `empfast.decoding.decode` says (its error code, field and req, or the
message's normal reply, or one of the refusals the protocol lists for it); the hub answers a ping
after every batch; at the end Redis holds exactly the jobs whose submit was accepted (less finished
ones once a remove_jobs ran), each with the payload it was submitted with, byte for byte.

On the embedded store EMPFAST_FUZZ_EXAMPLES examples (3,000 by default, 100,000 with
EMPFAST_LONG=1), on real Redis a quarter as many. Derandomized (a fixed seed) unless EMPFAST_LONG=1;
a failure prints the smallest failing batch and a @reproduce_failure blob to replay it."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
import pytest
from figures import figure, long_mode, summarize
from fuzz_frames import WORKER_ID, batches
from hypothesis import HealthCheck, given, settings
from support import DISCONNECTED, RedisServer, WSPeer, assert_groups_consistent

from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.decoding import MessageError, decode
from empfast.hub import Hub
from empfast.messages import (
    AnyMessage,
    CompleteJobs,
    ListJobs,
    RegisterWorker,
    RemoveJobs,
    SetSchedule,
    SubmitJob,
    SubmitJobs,
    UnregisterWorker,
    tag_of,
)
from empfast.schedules import Schedule, ScheduleError
from empfast.store import Cursor, Store, redis_from_options

MAX_FRAME_BYTES = 64 * 1024  # a small limit, so frames over it (and payloads near it) are cheap
EXAMPLES = figure("EMPFAST_FUZZ_EXAMPLES", 3000, 100_000)
CHUNK = 5000  # examples per hypothesis run; the long mode's chunks each draw a random seed
SETTINGS = QueueSettings(name="fuzz", lease_ms=3_600_000, liveness_ms=3_600_000,
                         keep_completed_max=10_000_000, keep_failed_max=10_000_000)

# a message's normal reply, and the refusals the protocol lists for a valid one (docs/protocol.md 4)
REPLIES: dict[str, tuple[str, frozenset[str]]] = {
    "submit_job": ("job_accepted", frozenset({"limit_exceeded", "bad_message"})),  # bad_message: unreadable
    "submit_jobs": ("jobs_accepted", frozenset({"limit_exceeded", "bad_message"})),  # payload (1e400)
    "get_job_status": ("job_status", frozenset({"not_found"})),
    "request_job_status": ("job_status", frozenset({"not_found"})),
    "subscribe_job": ("subscribed", frozenset({"not_found"})),
    "unsubscribe_job": ("unsubscribed", frozenset()),
    "cancel_job": ("job_status", frozenset({"not_found"})),
    "retry_job": ("job_status", frozenset({"not_found"})),
    "get_stats": ("stats", frozenset()),
    "list_jobs": ("jobs", frozenset({"bad_message"})),  # a cursor this hub did not make
    "ping": ("pong", frozenset()),
    "register_worker": ("worker_registered", frozenset({"bad_message"})),  # another worker_id
    "claim_job": ("job_assigned", frozenset({"not_found", "already_claimed", "wrong_job_type", "draining",
                                             "paused", "type_limited"})),
    "update_job_progress": ("job_progress_ack", frozenset({"lease_lost", "not_found"})),
    "append_job_log": ("job_log_ack", frozenset({"lease_lost", "not_found"})),
    "complete_job": ("job_completed_ack",
                     frozenset({"lease_lost", "not_found", "limit_exceeded", "bad_message"})),
    "complete_jobs": ("jobs_completed_ack", frozenset()),  # each item's refusal is inside the ack
    "fail_job": ("job_failed_ack", frozenset({"lease_lost", "not_found"})),
    "worker_heartbeat": ("worker_heartbeat_ack", frozenset()),
    "worker_status": ("worker_status_ack", frozenset()),
    "unregister_worker": ("worker_unregistered", frozenset()),
    "subscribe_stats": ("stats", frozenset()),
    "get_workers": ("workers", frozenset()),
    "get_queues": ("queues", frozenset()),
    "set_job_feed": ("job_feed", frozenset()),
    # one bulk action at a time per connection: another one while it runs is limit_exceeded
    "retry_jobs": ("bulk_started", frozenset({"limit_exceeded"})),
    "remove_jobs": ("bulk_started", frozenset({"limit_exceeded"})),
    "pause_type": ("type_paused", frozenset()),
    "resume_type": ("type_paused", frozenset()),
    "set_type_limits": ("type_limits", frozenset()),
    # bad_message: a cron expression or zone that does not parse, or an unreadable payload
    "set_schedule": ("schedule", frozenset({"bad_message", "limit_exceeded"})),
    "list_schedules": ("schedules", frozenset()),
    "pause_schedule": ("schedule", frozenset({"not_found"})),
    "resume_schedule": ("schedule", frozenset({"not_found"})),
    "remove_schedule": ("schedule_removed", frozenset()),
}
# frames the hub pushes without a request; a reply of one of these types is told apart by its req
PUSHES = frozenset({"job_update", "job_completed", "job_failed", "job_cancelled", "job_assigned",
                    "jobs_assigned", "job_available", "cancel_job", "stats", "worker_status",
                    "bulk_progress", "bulk_done", "type_paused", "type_limits", "job_log"})
# (a frame answered only when it has a req, so without one the fuzz could not tell what it answered)
NEEDS_REQ = (frozenset(tag for tag, (reply, _) in REPLIES.items() if reply in PUSHES)
             | {"update_job_progress", "append_job_log"})
# refusals a run of 1,000 examples or more must have produced
COVERED_CODES = ("bad_json", "bad_message", "unknown_type", "forbidden", "not_found", "lease_lost",
                 "limit_exceeded", "too_large")
STATUSES = {"waiting", "scheduled", "pending", "active", "completed", "failed", "cancelled"}


def is_cursor(value: str | None) -> bool:
    try:
        Cursor.decode(value or "")
    except ValueError:
        return False
    return True


def test_the_fuzz_sees_every_message_type() -> None:
    from empfast.messages import ALL_MESSAGES

    assert set(REPLIES) == set(ALL_MESSAGES)


@dataclass
class Expected:
    """What the hub must answer to one frame."""

    data: bytes
    message: AnyMessage | None = None
    refusal: MessageError | None = None
    too_large: bool = False

    @property
    def closes(self) -> bool:
        return self.too_large or isinstance(self.message, UnregisterWorker)


_reqs = itertools.count(1)


def bad_times(message: AnyMessage, reply: dict[str, Any]) -> bool:
    """Whether a submit's bad_message is for its times (docs/protocol.md 4.1): two that exclude
    each other (the hub names the second), or a start or expiry the store refuses on its clock
    (too far ahead, an expiry passed or before the start; its error names the time)."""
    jobs = message.jobs if isinstance(message, SubmitJobs) else [message]
    for job in jobs if isinstance(message, SubmitJob | SubmitJobs) else ():
        given = {name for name in ("delay_s", "run_at", "ttl_s", "expires_at")
                 if getattr(job, name) is not msgspec.UNSET}
        if ({"delay_s", "run_at"} <= given or {"ttl_s", "expires_at"} <= given) and str(
                reply.get("field", "")).endswith(("run_at", "expires_at")):
            return True
        if given & {"run_at", "ttl_s", "expires_at"} and re.search(r"run_at|expires_at|ttl|expire",
                                                                     reply["error"]):
            return True
    return False


def bad_parents(message: AnyMessage, reply: dict[str, Any]) -> bool:
    """Whether a submit's bad_message is for its depends_on (docs/protocol.md 4.1): a parent that is
    no job of the queue (nor an earlier job of the batch), or the job itself; the store names it."""
    jobs = message.jobs if isinstance(message, SubmitJobs) else [message]
    return isinstance(message, SubmitJob | SubmitJobs) and "depends_on" in reply["error"] and any(
        job.depends_on is not msgspec.UNSET for job in jobs)


def unreadable(message: AnyMessage, field: str) -> bool:
    """Whether the payload or result `field` names is one orjson (the SDKs' parser) cannot read in
    the frame that carries it, a level down: the one bad_message a decoded submit or outcome gets."""
    if isinstance(message, SubmitJobs):
        index = re.fullmatch(r"jobs\[(\d+)\]\.payload", field)
        raw = message.jobs[int(index[1])].payload if index else None
    else:
        raw = getattr(message, field, None) if field in ("payload", "result") else None
    if raw is None:
        return False
    try:
        orjson.loads(b"[" + bytes(raw) + b"]")
    except orjson.JSONDecodeError:
        return True
    return False


def schedule_refusal(message: SetSchedule) -> str | None:
    """The field a schedule of these values is refused for (empfast/schedules.py), or None."""
    try:
        Schedule(message.name, message.job_type, "{}", message.priority, message.max_attempts,
                 message.cron, message.every_s, message.tz)
    except ScheduleError as exc:
        return exc.field
    return None


def expect(role: str, data: bytes) -> Expected:
    """The answer `decode` implies; a valid frame whose reply could pass for a push gets a req."""
    if len(data) > MAX_FRAME_BYTES:
        return Expected(data, too_large=True)
    try:
        message = decode(role, data)
    except MessageError as exc:
        return Expected(data, refusal=exc)
    if message.req is None and tag_of(type(message)) in NEEDS_REQ:
        data = data[:-1] + b',"req":' + str(next(_reqs)).encode() + b"}"
        message = decode(role, data)
    return Expected(data, message)


@dataclass
class Fuzz:
    """A hub on `store`, one connection per role, and what the hub accepted."""

    store: Store
    hub: Hub | None = None
    peers: dict[str, WSPeer] = field(default_factory=dict)
    accepted: dict[str, bytes | None] = field(default_factory=dict)  # job id -> payload when created
    removals: bool = False  # a remove_jobs (not a dry run) was accepted
    frames: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # reply type, or error:<code>
    valid: Counter[str] = field(default_factory=Counter)  # valid frames by type
    unparsable: list[str] = field(default_factory=list)  # frames of the hub the SDKs cannot parse

    async def start(self) -> None:
        self.hub = Hub(self.store, HubConfig(port=0, http_port=0, max_frame_bytes=MAX_FRAME_BYTES,
                                             sweep_interval_s=0.5,
                                             stats_interval_s=0.25, events_block_ms=100))
        await self.hub.start()
        for role in ("client", "worker", "monitor"):
            await self.connect(role)

    async def stop(self) -> None:
        for peer in self.peers.values():
            peer.close()
        if self.hub is not None:
            await self.hub.stop()
        await self.store.close()

    async def connect(self, role: str) -> None:
        assert self.hub is not None
        suffix = f"/{WORKER_ID}" if role == "worker" else ""
        peer = self.peers[role] = await WSPeer.connect(f"ws://127.0.0.1:{self.hub.port}/ws/{role}{suffix}")
        assert (await peer.next())["type"] == "welcome"
        if role == "worker":
            peer.send({"type": "register_worker", "job_types": ["fz"], "concurrency": 2, "req": "register"})
            assert (await peer.until("worker_registered"))["req"] == "register"

    async def exchange(self, role: str, batch: list[bytes]) -> None:
        """Send the batch and check each answer; after a failure, fresh connections, so that the
        next example (hypothesis replays and shrinks a failing one) starts clean."""
        try:
            await self.exchange_checked(role, batch)
        except BaseException:
            for peer in self.peers.values():
                peer.close()
            for each in ("client", "worker", "monitor"):
                await self.connect(each)
            raise

    async def exchange_checked(self, role: str, batch: list[bytes]) -> None:
        """A frame that closes the connection (too large, an unregister) ends a segment; a too large
        one goes alone, as the hub refuses it on arrival."""
        segment: list[Expected] = []
        for data in batch:
            expected = expect(role, data)
            if expected.too_large and segment:
                await self.send(role, segment)
                segment = []
            segment.append(expected)
            if expected.closes:
                await self.send(role, segment)
                segment = []
        if segment:
            await self.send(role, segment)

    async def send(self, role: str, segment: list[Expected]) -> None:
        peer = self.peers[role]
        for expected in segment:
            peer.send(expected.data)
        self.frames += len(segment)
        closes = segment[-1].closes
        sentinel = f"sentinel-{next(_reqs)}"
        if not closes:
            peer.send({"type": "ping", "req": sentinel})
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while True:
                raw = await peer.frames.get()
                if raw == DISCONNECTED:
                    assert closes, f"the hub closed the {role} connection after {[e.data for e in segment]}"
                    break
                try:
                    frame = orjson.loads(raw)  # what the SDKs parse a frame with
                except orjson.JSONDecodeError as exc:
                    # a frame no SDK could read (a payload the hub accepted holding 1e400 was
                    # one): counted, failed at the end, read on here as Python does
                    self.unparsable.append(f"{exc}: {raw[:200]!r}")
                    frame = json.loads(raw)
                if frame.get("req") == sentinel:
                    break
                if "req" in frame or frame["type"] == "error" or frame["type"] not in PUSHES:
                    replies.append(frame)
        assert len(replies) == len(segment), (replies, [e.data for e in segment])
        for expected, reply in zip(segment, replies, strict=True):
            self.check(expected, reply)
        if closes:
            await self.connect(role)

    def check(self, expected: Expected, reply: dict[str, Any]) -> None:
        assert reply.get("code") != "internal", (expected.data, reply)
        self.answers[f"error:{reply['code']}" if reply["type"] == "error" else reply["type"]] += 1
        if expected.message is not None:
            self.valid[tag_of(type(expected.message))] += 1
        if expected.too_large:
            assert (reply["type"], reply["code"], reply["limit"]) == ("error", "too_large", MAX_FRAME_BYTES)
            return
        if expected.refusal is not None:
            exc = expected.refusal
            assert (reply["type"], reply["code"]) == ("error", exc.code), (expected.data, reply)
            assert {k: reply.get(k) for k in exc.extra} == exc.extra, (expected.data, reply)
            assert reply.get("req") == exc.req and ("req" in reply) == (exc.req is not None)
            return
        message = expected.message
        assert message is not None
        assert ("req" in reply) == (message.req is not None) and reply.get("req") == message.req, reply
        kind, refusals = REPLIES[tag_of(type(message))]
        if reply["type"] == "error":
            assert reply["code"] in refusals, (expected.data, reply)
            if reply["code"] == "bad_message" and isinstance(message, RegisterWorker):  # another worker id
                assert reply["field"] == "worker_id" and message.worker_id != WORKER_ID
            elif reply["code"] == "bad_message" and isinstance(message, ListJobs):  # not a page's cursor
                assert reply["field"] == "cursor" and not is_cursor(message.cursor), (expected.data, reply)
            elif reply["code"] == "bad_message" and isinstance(message, SetSchedule) \
                    and reply["field"] != "payload":  # what empfast/schedules.py refuses, and why
                assert schedule_refusal(message) == reply["field"], (expected.data, reply)
            elif reply["code"] == "bad_message" and bad_times(message, reply):  # times out of order
                self.answers["error:bad_message:times"] += 1
            elif reply["code"] == "bad_message" and bad_parents(message, reply):  # no such parent
                self.answers["error:bad_message:parents"] += 1
            elif reply["code"] == "bad_message":  # a payload or result no SDK could read
                assert unreadable(message, reply["field"]), (expected.data, reply)
                self.answers["error:bad_message:unreadable_value"] += 1
            if reply["code"] == "limit_exceeded":  # a payload or result too large, or a count limit
                assert "limit" in reply, (expected.data, reply)
            return
        assert reply["type"] == kind, (expected.data, reply)
        self.record(message, reply)

    def record(self, message: AnyMessage, reply: dict[str, Any]) -> None:
        if isinstance(message, ListJobs):
            # a page: at most `limit` rows, each in the status (and of the type) asked for
            assert len(reply["rows"]) <= message.limit, reply
            for row in reply["rows"]:
                assert row["status"] == message.status, (message, row)
                assert message.job_type is None or row["job_type"] == message.job_type, (message, row)
        elif isinstance(message, CompleteJobs):
            # every item answered: acknowledged, or refused as its complete_job would be (a
            # bad_message only for an item whose result no SDK could read)
            assert len(reply["job_ids"]) + len(reply["refused"]) == len(message.jobs), reply
            for refused in reply["refused"]:
                assert refused["code"] in REPLIES["complete_job"][1], reply
                if refused["code"] == "bad_message":
                    assert any(item.job_id == refused["job_id"] and unreadable(item, "result")
                               for item in message.jobs), (message, reply)
        elif isinstance(message, RemoveJobs) and not message.dry_run:
            self.removals = True  # finished jobs may be gone from here on
        elif isinstance(message, SubmitJob):
            self.accepted.setdefault(reply["job_id"], None)
            if reply["created"]:
                self.accepted[reply["job_id"]] = bytes(message.payload)
        elif isinstance(message, SubmitJobs):
            for job, job_id, created in zip(message.jobs, reply["job_ids"], reply["created"], strict=True):
                self.accepted.setdefault(job_id, None)
                if created:
                    self.accepted[job_id] = bytes(job.payload)

    async def check_store(self) -> int:
        """Redis holds exactly the accepted jobs, each well formed with its payload as sent; and the
        hub still answers a new connection. Returns the number of jobs."""
        assert self.hub is not None
        prefix = self.store.keys.job("")
        found = {key.decode()[len(prefix):] async for key in self.store.redis.scan_iter(match=prefix + "*",
                                                                                        count=1000)}
        logs_prefix = self.store.keys.job_logs("")
        logs = {key.decode()[len(logs_prefix):]
                async for key in self.store.redis.scan_iter(match=logs_prefix + "*", count=1000)}
        assert logs <= found, logs - found  # a job's log goes with it: no log outlives its job
        await assert_groups_consistent(self.store)  # no pending job unreachable through its group
        children_prefix = self.store.keys.children("")
        parents = {key.decode()[len(children_prefix):]
                   async for key in self.store.redis.scan_iter(match=children_prefix + "*", count=1000)}
        assert parents <= found, parents - found  # nor a children set its job
        waiting = {member.decode()
                   for member in await self.store.redis.zrange(self.store.keys.waiting, 0, -1)}
        if self.removals:  # remove_jobs took finished jobs; every other job is still here
            assert found <= set(self.accepted), found - set(self.accepted)
        else:
            assert found == set(self.accepted), (found ^ set(self.accepted))
        for job_id, payload in self.accepted.items():
            status, stored = await self.store.redis.hmget(self.store.keys.job(job_id), "status", "payload")
            if status is None and self.removals:
                continue
            assert status.decode() in STATUSES
            # the waiting zset holds exactly the jobs waiting for their parents
            assert (status == b"waiting") == (job_id in waiting), (job_id, status)
            if job_id in parents:  # a finished job's children were settled, and its set deleted
                assert status.decode() not in ("completed", "failed", "cancelled"), (job_id, status)
            assert payload is None or stored == payload, (job_id, stored, payload)
        peer = await WSPeer.connect(f"ws://127.0.0.1:{self.hub.port}/ws/client")
        assert (await peer.next())["type"] == "welcome"
        peer.send({"type": "ping", "req": "still-up"})
        assert (await peer.until("pong"))["req"] == "still-up"
        peer.close()
        return len(found)


def run_fuzz(store: Store, examples: int, backend: str) -> None:
    """Run `examples` hypothesis examples against a hub on `store`, in an event loop of our own
    (hypothesis drives a plain function; each example runs one batch in that loop)."""
    with asyncio.Runner() as runner:
        fuzz = Fuzz(store)
        runner.run(fuzz.start())
        try:
            # hypothesis slows down as one test's examples pile up: a long run is chunks of CHUNK
            for start in range(0, examples, CHUNK):
                @settings(max_examples=min(CHUNK, examples - start), deadline=None,
                          derandomize=not long_mode(), database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.filter_too_much, HealthCheck.large_base_example])
                @given(batches(MAX_FRAME_BYTES))
                def one_batch(batch: tuple[str, list[bytes]]) -> None:
                    runner.run(fuzz.exchange(*batch))

                one_batch()
            jobs = runner.run(fuzz.check_store())
            summarize(f"fuzz on {backend}: {examples} examples, {fuzz.frames} frames, {len(fuzz.accepted)} "
                      f"jobs accepted, {jobs} in Redis, {len(fuzz.unparsable)} hub frames the SDKs cannot "
                      f"parse; answers {dict(fuzz.answers.most_common())}")
            assert fuzz.frames >= examples
            assert fuzz.unparsable == []
            if examples >= 1000:  # enough for every kind of frame to have come up
                assert set(fuzz.valid) == set(REPLIES), set(REPLIES) - set(fuzz.valid)
                assert {f"error:{code}" for code in COVERED_CODES} <= set(fuzz.answers), fuzz.answers
                assert fuzz.answers["error:bad_message:unreadable_value"] > 0, fuzz.answers
        finally:
            runner.run(fuzz.stop())


def test_fuzzed_frames_get_their_documented_answer_on_the_embedded_store() -> None:
    run_fuzz(Store.embedded(SETTINGS), EXAMPLES, "the embedded store")


@pytest.mark.real_redis
def test_fuzzed_frames_get_their_documented_answer_on_real_redis(redis_server: RedisServer) -> None:
    redis_server.flush()
    run_fuzz(Store(redis_from_options(RedisOptions(url=redis_server.url)), SETTINGS), max(1, EXAMPLES // 4),
             "real Redis")


def test_an_expected_answer_follows_decode() -> None:
    """The oracle itself: a refused frame expects decode's error; a frame whose reply could pass for
    a push is given a req; a frame over the limit expects too_large."""
    refused = expect("client", b'{"type":"submit_job","job_type":"fz","priority":5000}')
    assert refused.refusal is not None and refused.refusal.extra == {"field": "priority"}
    stats = expect("client", b'{"type":"get_stats"}')
    assert stats.message is not None and stats.message.req is not None and stats.data.endswith(b"}")
    assert expect("client", b'{"type":"ping","x":"' + b"y" * MAX_FRAME_BYTES + b'"}').too_large
    assert orjson.loads(stats.data)["type"] == "get_stats"
