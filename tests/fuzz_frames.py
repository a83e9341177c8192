"""Hypothesis strategies for tests/test_fuzz.py: frames of every inbound message type of
`empfast.messages.ROLE_MESSAGES`, valid ones built from each Struct's fields, and mutations of them
(wrong types, out-of-range numbers, huge strings, unicode and control characters, duplicate and
escaped keys, missing fields, unknown types, another role's types, broken JSON, frames over the
hub's size limit).

A frame is built as raw bytes from (key text, value text) members, so that a key can be given twice
or spelled with a \\u escape, and a payload keeps any spelling of its JSON."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson
from hypothesis import strategies as st

from empfast.limits import (
    MAX_ATTEMPT_NUMBER,
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_CONCURRENCY,
    MAX_DELAY_S,
    MAX_GROUP_BYTES,
    MAX_LOG_LINES,
    MAX_PRIORITY,
    MAX_RATE_PER_S,
    MAX_STATS_INTERVAL_S,
    MAX_TIMEOUT_S,
    MIN_RATE_PER_S,
    MIN_STATS_INTERVAL_S,
)
from empfast.messages import (
    ALL_MESSAGES,
    ROLE_MESSAGES,
    CompleteJobs,
    Completion,
    GetJobStatus,
    JobBody,
    ListJobs,
    RemoveJobs,
    RequestJobStatus,
    RetryJobs,
    SetTypeLimits,
    tag_of,
)

Member = tuple[bytes, bytes]  # the key's JSON text (quoted), the value's JSON text

NOW = time.time()  # for run_at and expires_at, which are times since the epoch
WORKER_ID = "fuzz-w"  # the fuzz worker connection's id (its path suffix)
JOB_TYPES = ["fz", "other", "é型"]  # shared by clients and the worker, so submits meet claims


def obj(members: list[Member]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in members) + b"}"


def key(name: str) -> bytes:
    return orjson.dumps(name)


def escaped_key(name: str) -> bytes:
    """The key with its first letter written as a \\u escape: the same key to a JSON parser."""
    return b'"\\u%04x' % ord(name[0]) + name[1:].encode() + b'"'


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# ---- values ------------------------------------------------------------------------------------

PRINTABLE = st.characters(exclude_categories=("Cs", "Cc"))
CONTROL = st.sampled_from([chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))])
# few distinct names, so that submits, statuses, claims and completions meet the same jobs
NAMES = st.one_of(st.sampled_from(["a", "b", "job-1", "é", "日本", "x" * 256, "😀"]),
                  st.text(PRINTABLE, min_size=1, max_size=12))
JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
RAW_JSON = st.one_of(JSON_VALUES.map(dumps), st.sampled_from([
    b' { "a" : [1, 2.50, -0, 1e2, "\\u00e9"] } ', b"[]", b"{}", b'"\\ud83d\\ude00"', b"-0.0", b"1E+2",
    b'{"payload": 1, "payload": 2}', b"[" * 200 + b"]" * 200,
    b"[1e400]", b'{"n": -2e308}', b"1" + b"0" * 400]))  # valid JSON no SDK reads: bad_message


def _names_of(size: int) -> st.SearchStrategy[bytes]:
    return st.lists(NAMES, min_size=1, max_size=size).map(dumps)


def _event_id() -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, 1 << 50), st.integers(0, 9)).map(lambda t: dumps(f"{t[0]}-{t[1]}"))


VALID_VALUES: dict[str, st.SearchStrategy[bytes]] = {
    "job_type": st.sampled_from(JOB_TYPES).map(dumps),
    "job_id": NAMES.map(dumps),
    "retry_id": NAMES.map(dumps),
    "payload": RAW_JSON,
    "result": RAW_JSON,
    "priority": st.integers(-MAX_PRIORITY, MAX_PRIORITY).map(dumps),
    "max_attempts": st.integers(1, MAX_ATTEMPTS).map(dumps),
    "attempts": st.integers(1, MAX_ATTEMPTS).map(dumps),
    "delay_s": st.one_of(st.integers(0, 3), st.floats(0, MAX_DELAY_S)).map(dumps),
    # times since the epoch: past (runs at once), near, or anywhere up to past the year ahead the
    # store takes (then bad_message, which tests/test_fuzz.py expects of such times)
    "run_at": st.one_of(st.floats(0, NOW), st.floats(NOW, NOW + 60),
                        st.floats(0, NOW + 2 * MAX_DELAY_S)).map(dumps),
    "expires_at": st.one_of(st.floats(NOW + 3600, NOW + MAX_DELAY_S / 2), st.floats(0, 2 * NOW)).map(dumps),
    "timeout_s": st.one_of(st.integers(1, 60), st.floats(0.001, MAX_TIMEOUT_S)).map(dumps),
    "ttl_s": st.one_of(st.integers(1, 3), st.floats(0.001, MAX_DELAY_S)).map(dumps),
    # parents: names the other frames use, so some exist and some do not (then bad_message)
    "depends_on": st.lists(NAMES, min_size=1, max_size=3).map(dumps),
    "subscribe": st.booleans().map(dumps),
    # tenants: few, so claims go round-robin across them; one at the byte limit, with ':' as a
    # type may have
    "group": st.sampled_from(["A", "B", "t:1", "\u00e9" * (MAX_GROUP_BYTES // 2)]).map(dumps),
    "since": _event_id(),
    "job_types": st.lists(st.sampled_from(JOB_TYPES), min_size=1, max_size=3).map(dumps),
    "worker_id": st.sampled_from([WORKER_ID, WORKER_ID, "other-w"]).map(dumps),
    "concurrency": st.integers(0, 3).map(dumps),
    "batch": st.booleans().map(dumps),
    "progress": st.one_of(st.integers(0, 100), st.floats(0, 100)).map(dumps),
    "message": st.text(max_size=30).map(dumps),
    "error": st.text(max_size=30).map(dumps),
    "attempt": st.integers(0, 3).map(dumps),
    # log lines: a few, some long enough to be cut, or occasionally over MAX_LOG_LINES of them
    "lines": st.one_of(st.lists(st.one_of(st.text(max_size=30), st.text(min_size=1100, max_size=1200)),
                                min_size=1, max_size=4),
                       st.just([""] * (MAX_LOG_LINES + 1))).map(dumps),
    "logs": st.one_of(st.booleans(), st.integers(1, MAX_LOG_LINES)).map(dumps),
    "retry": st.booleans().map(dumps),
    "status": st.sampled_from(["idle", "draining"]).map(dumps),
    "interval_s": st.floats(MIN_STATS_INTERVAL_S, MAX_STATS_INTERVAL_S).map(dumps),
    "order": st.sampled_from(["oldest", "newest"]).map(dumps),
    "limit": st.integers(1, 500).map(dumps),
    "payloads": st.booleans().map(dumps),
    "job_events": st.booleans().map(dumps),
    "dry_run": st.booleans().map(dumps),
    "older_than_s": st.one_of(st.integers(0, 3), st.floats(0, 1e6)).map(dumps),
    # schedules that never come due while the fuzz runs (a run would add jobs no submit accepted),
    # and expressions and zones that do not parse
    "name": st.sampled_from(["nightly", "s-1", "other"]).map(dumps),
    "cron": st.sampled_from(["0 0 1 1 *", "0 3 1 1 *", "bad cron", "61 * * * *"]).map(dumps),
    "every_s": st.one_of(st.floats(86_400, MAX_DELAY_S), st.sampled_from([0.5, 86_400])).map(dumps),
    "tz": st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus"]).map(dumps),
    "paused": st.booleans().map(dumps),
    # a type's limits (set_type_limits): small, or null to clear; per_s within its bounds
    "rate": st.one_of(st.none(), st.integers(1, 5)).map(dumps),
    "per_s": st.one_of(st.sampled_from([0.5, 1, 60]), st.floats(MIN_RATE_PER_S, MAX_RATE_PER_S)).map(dumps),
    "group_concurrency": st.one_of(st.none(), st.integers(1, 2)).map(dumps),  # low: groups get parked
    # a cursor of the right shape (a score and a job id), whether or not such a job exists, or not one
    "cursor": st.one_of(st.tuples(st.integers(0, 1 << 53), NAMES).map(lambda t: dumps(f"{t[0]}:{t[1]}")),
                        NAMES.map(dumps)),
}
# fields whose valid values depend on the message (`status` of worker_status is another field)
VALID_FOR: dict[tuple[type[msgspec.Struct], str], st.SearchStrategy[bytes]] = {
    (ListJobs, "status"): st.sampled_from(["waiting", "scheduled", "pending", "active", "completed", "failed",
                                           "cancelled"]).map(dumps),
    (GetJobStatus, "payload"): st.booleans().map(dumps),
    (RequestJobStatus, "payload"): st.booleans().map(dumps),
    (RetryJobs, "status"): st.sampled_from(["failed", "cancelled"]).map(dumps),
    (RemoveJobs, "status"): st.sampled_from(["completed", "failed", "cancelled"]).map(dumps),
    (SetTypeLimits, "concurrency"): st.one_of(st.none(), st.integers(1, 3)).map(dumps),
}
# a valid request id, other than none (tests/test_fuzz.py adds a unique one when none is drawn)
VALID_REQ = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)).map(dumps)
WRONG_VALUES = st.one_of(
    JSON_VALUES.map(dumps),
    st.sampled_from([b"null", b"true", b"1.0", b"-1", b"0", b"1e400", b"-1e400", b"9223372036854775808",
                     b"-9223372036854775809", b"18446744073709551616", b'""', b'"5"', b"[]", b"{}",
                     b'"\\u0000"', b'"\\ud800"', b'"a\\u0085b"', b"1.5", b"-0"]),
    st.sampled_from([MAX_PRIORITY + 1, -MAX_PRIORITY - 1, MAX_ATTEMPTS + 1, MAX_CONCURRENCY + 1,
                     MAX_DELAY_S + 1, MAX_ATTEMPT_NUMBER + 1, MAX_BATCH + 1, 101, 3601, 0.2]).map(dumps),
)
HUGE_TEXT = st.one_of(
    st.tuples(st.sampled_from(["x", "é", "😀", "\x00", "\x85"]), st.integers(100, 3000))
    .map(lambda t: t[0] * t[1]),
    st.text(min_size=129, max_size=400),
).map(dumps)


@st.composite
def job_bodies(draw: st.DrawFn) -> bytes:
    """The jobs of a submit_jobs: 1..4 bodies, or occasionally over MAX_BATCH of them."""
    count = draw(st.one_of(st.integers(1, 4), st.just(MAX_BATCH + 1)))
    if count > MAX_BATCH:
        return b"[" + b",".join([b'{"job_type":"fz"}'] * count) + b"]"
    bodies = [obj(draw(members_of(JobBody))) for _ in range(count)]
    return b"[" + b",".join(bodies) + b"]"


@st.composite
def completion_bodies(draw: st.DrawFn) -> bytes:
    """The items of a complete_jobs: 1..4 outcomes, or occasionally over MAX_BATCH of them."""
    count = draw(st.one_of(st.integers(1, 4), st.just(MAX_BATCH + 1)))
    if count > MAX_BATCH:
        return b"[" + b",".join([b'{"job_id":"a"}'] * count) + b"]"
    return b"[" + b",".join(obj(draw(members_of(Completion))) for _ in range(count)) + b"]"


VALID_VALUES["jobs"] = job_bodies()
VALID_FOR[(CompleteJobs, "jobs")] = completion_bodies()


@st.composite
def members_of(draw: st.DrawFn, cls: type[msgspec.Struct]) -> list[Member]:
    """The fields of a message (without type and req): every required one, some optional ones."""
    members = []
    for field in msgspec.structs.fields(cls):
        if field.name == "req":
            continue
        if field.required or draw(st.booleans()):
            value = VALID_FOR.get((cls, field.name), VALID_VALUES[field.name])
            members.append((key(field.name), draw(value)))
    return members


@st.composite
def valid_frame(draw: st.DrawFn, role: str) -> list[Member]:
    cls = draw(st.sampled_from(ROLE_MESSAGES[role]))
    members = [(key("type"), dumps(tag_of(cls))), *draw(members_of(cls))]
    if draw(st.booleans()):
        members.append((key("req"), draw(VALID_REQ)))
    return draw(st.permutations(members))


# ---- mutations ---------------------------------------------------------------------------------

def _at(draw: st.DrawFn, members: list[Member]) -> int:
    return draw(st.integers(0, len(members) - 1))


@st.composite
def mutated(draw: st.DrawFn, members: list[Member]) -> list[Member]:
    """One mutation of a valid frame's members (never empty: every frame has its type)."""
    members = list(members)
    kind = draw(st.sampled_from(["wrong", "wrong", "huge", "control", "duplicate", "escaped", "missing",
                                 "unknown_field", "type", "req"]))
    i = _at(draw, members)
    name = members[i][0]
    if kind == "wrong":
        members[i] = (name, draw(WRONG_VALUES))
    elif kind == "huge":
        members[i] = (name, draw(HUGE_TEXT))
    elif kind == "control":
        text = draw(st.text(PRINTABLE, max_size=8))
        at = draw(st.integers(0, len(text)))
        members[i] = (name, dumps(text[:at] + draw(CONTROL) + text[at:]))
    elif kind == "duplicate":
        value = draw(st.one_of(st.just(members[i][1]), WRONG_VALUES))
        members.insert(draw(st.integers(0, len(members))), (name, value))
    elif kind == "escaped":
        plain = orjson.loads(name)
        members.append((escaped_key(plain), members[i][1]))
    elif kind == "missing":
        del members[i]
    elif kind == "unknown_field":
        members.append((key(draw(st.sampled_from(["zzz", "Type", "payload ", "jobs[0]"]))), draw(RAW_JSON)))
    elif kind == "type":
        members = [m for m in members if m[0] != b'"type"']
        members.append((key("type"), draw(st.one_of(st.text(max_size=20).map(dumps), WRONG_VALUES))))
    else:
        members.append((key("req"), draw(st.one_of(WRONG_VALUES, HUGE_TEXT, VALID_REQ))))
    return members


@st.composite
def broken_json(draw: st.DrawFn, role: str) -> bytes:
    """Frames that are not one JSON object: truncated, garbage text, other JSON values, deep nesting."""
    kind = draw(st.sampled_from(["truncated", "text", "value", "nested", "trailing"]))
    if kind == "truncated":
        data = obj(draw(valid_frame(role)))
        cut = data[:draw(st.integers(0, max(0, len(data) - 1)))]
        # whole characters only: text that is not UTF-8 fails the WebSocket connection (1007), which
        # is the WebSocket layer's answer, not a message's
        return cut.decode("utf-8", "ignore").encode() or b" "
    if kind == "text":
        return draw(st.text(min_size=1, max_size=30)).encode()
    if kind == "value":
        return draw(JSON_VALUES.map(dumps))
    if kind == "nested":
        # far from msgspec's limit, which moves with the recursion limit (hypothesis raises it) and
        # the stack depth at the decode, so the oracle and the hub could differ near it
        depth = draw(st.sampled_from([50, 500, 10_000]))
        return b'{"type":"submit_job","job_type":"fz","payload":' + b"[" * depth + b"]" * depth + b"}"
    return obj(draw(valid_frame(role))) + draw(st.sampled_from([b" x", b"{}", b",", b"\x00"]))


@st.composite
def big_frame(draw: st.DrawFn, max_frame_bytes: int) -> bytes:
    """A submit_job or complete_job whose payload or result is about as large as the frame limit:
    over the payload limit (limit_exceeded), or a frame over the frame limit (too_large)."""
    size = draw(st.integers(max_frame_bytes - 5000, max_frame_bytes + 100))
    blob = b'"' + b"x" * size + b'"'
    if draw(st.booleans()):
        return b'{"type":"submit_job","job_type":"fz","payload":' + blob + b"}"
    return b'{"type":"complete_job","job_id":"a","result":' + blob + b"}"


@st.composite
def frames(draw: st.DrawFn, role: str, max_frame_bytes: int) -> bytes:
    """One frame a peer of `role` might send: mostly valid or one mutation away from valid; some of
    another role; some broken JSON; a few about as large as the frame limit."""
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "mutated", "mutated", "other_role", "broken",
                                 "unknown", "big"]))
    if kind == "big" and draw(st.integers(0, 3)) == 0:
        return draw(big_frame(max_frame_bytes))
    if kind == "broken":
        return draw(broken_json(role))
    if kind == "other_role":
        cls = draw(st.sampled_from(sorted(set(ALL_MESSAGES.values()) - set(ROLE_MESSAGES[role]), key=tag_of)))
        return obj([(key("type"), dumps(tag_of(cls))), *draw(members_of(cls))])
    if kind == "unknown":
        return obj([(key("type"), dumps(draw(st.text(max_size=12).filter(lambda t: t not in ALL_MESSAGES))))])
    members = draw(valid_frame(role))
    if kind == "mutated":
        members = draw(mutated(members))
    return obj(members)


ROLES = tuple(ROLE_MESSAGES)


@st.composite
def batches(draw: st.DrawFn, max_frame_bytes: int) -> tuple[str, list[bytes]]:
    """One role and 1..6 frames its connection sends at once (the hub handles them as one batch)."""
    role = draw(st.sampled_from(ROLES))
    return role, draw(st.lists(frames(role, max_frame_bytes), min_size=1, max_size=6))
