"""The message declarations (empfast/messages.py) against docs/protocol.md, and the answers a peer
gets for bad frames, without sockets."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from empfast import decoding
from empfast import errors as e
from empfast import messages as m
from empfast import protocol as p
from empfast.errors import ProtocolError
from empfast.hub.server import handler_table
from empfast.limits import MAX_BATCH, MAX_VALUE_DEPTH

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
SECTION_ROLES = {"4.1": "client", "4.2": "worker", "4.3": "monitor"}
# a message type given with its body only, e.g. **`unsubscribe_job`** `{"job_id":"order-17"}`
INLINE_BODY = re.compile(r"\*\*`(\w+)`\*\*\s+`(\{[^`]*\})`(?:\s+or\s+`(\{[^`]*\})`)?")
# the inbound types docs/protocol.md shows no example frame of
NO_EXAMPLE = {"request_job_status", "get_stats", "get_workers"}


def doc_examples() -> list[tuple[str, bytes]]:
    """(role, frame) of every example a peer sends in docs/protocol.md sections 4.1 to 4.3: the
    lines of its ```json blocks whose type the role may send, and the inline bodies."""
    examples: list[tuple[str, bytes]] = []
    role = None
    in_block = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            role = SECTION_ROLES.get(line.split()[1])
        if role is None:
            continue
        if line.startswith("```"):
            in_block = line == "```json"
            continue
        if in_block and line.strip():
            if orjson.loads(line)["type"] in m.ROLE_TYPES[role]:
                examples.append((role, line.encode()))
            continue
        for kind, *bodies in INLINE_BODY.findall(line):
            if kind in m.ROLE_TYPES[role]:
                examples += [(role, orjson.dumps({"type": kind, **orjson.loads(b)})) for b in bodies if b]
    return examples


EXAMPLES = doc_examples()


def test_the_doc_has_an_example_of_every_type_but_a_few() -> None:
    shown = {orjson.loads(frame)["type"] for _, frame in EXAMPLES}
    assert shown == set(m.ALL_MESSAGES) - NO_EXAMPLE
    assert len(EXAMPLES) >= 17


@pytest.mark.parametrize(("role", "frame"), EXAMPLES, ids=[f.decode()[:60] for _, f in EXAMPLES])
def test_every_example_of_the_doc_decodes(role: str, frame: bytes) -> None:
    wire = orjson.loads(frame)
    message = decoding.decode(role, frame)
    assert m.tag_of(type(message)) == wire["type"]
    assert type(message) in m.ROLE_MESSAGES[role]
    for name, value in wire.items():
        if name == "type":
            continue
        got = getattr(message, name)
        if isinstance(got, msgspec.Raw):
            assert bytes(got) in frame and orjson.loads(bytes(got)) == value
        elif name == "jobs":  # submit_jobs' jobs by type, complete_jobs' by id and result
            key = "job_type" if "job_type" in value[0] else "job_id"
            assert [getattr(job, key) for job in got] == [j[key] for j in value]
            if key == "job_id":
                assert [orjson.loads(bytes(job.result)) for job in got] == [j["result"] for j in value]
        else:
            assert got == value, name


def test_defaults_are_the_documented_ones() -> None:
    job = decoding.decode("client", b'{"type":"submit_job","job_type":"a"}')
    assert isinstance(job, m.SubmitJob)
    assert (bytes(job.payload), job.priority, job.job_id, job.max_attempts, job.delay_s, job.subscribe,
            job.req) == (b"{}", 0, None, 3, msgspec.UNSET, True, None)  # no delay_s: at once (or run_at)
    assert {job.run_at, job.timeout_s, job.ttl_s, job.expires_at} == {msgspec.UNSET}
    done = decoding.decode("worker", b'{"type":"complete_job","job_id":"j"}')
    assert isinstance(done, m.CompleteJob) and (bytes(done.result), done.attempt) == (b"null", 0)
    worker = decoding.decode("worker", b'{"type":"register_worker","job_types":["a"]}')
    assert isinstance(worker, m.RegisterWorker) and (worker.worker_id, worker.concurrency) == (None, 1)
    retry = decoding.decode("client", b'{"type":"retry_job","job_id":"j"}')
    assert isinstance(retry, m.RetryJob) and (retry.attempts, retry.retry_id) == (1, None)
    stats = decoding.decode("monitor", b'{"type":"subscribe_stats"}')
    assert isinstance(stats, m.SubscribeStats) and stats.interval_s == 1.0
    fail = decoding.decode("worker", b'{"type":"fail_job","job_id":"j","error":"x"}')
    assert isinstance(fail, m.FailJob) and (fail.retry, fail.attempt) == (True, 0)
    alias = decoding.decode("monitor", b'{"type":"request_job_status","job_id":"j","req":"r1"}')
    assert isinstance(alias, m.GetJobStatus) and alias.req == "r1"


@pytest.mark.parametrize("payload", [
    b'{"url": "https://example.org/a.png"}',
    b'{ "a" : [ 1 ,\n 2 ] ,"b":null }',
    b'"caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" \\\\ \\/ \\n"',
    b'"caf\xc3\xa9 direct UTF-8"',
    b"12345678901234567890123.50",
    b"-0.0e+00",
    b"[ ]",
    b"true",
    b'{"payload": {"payload": 1}, "x": "\\"payload\\""}',
])
def test_raw_payloads_come_through_byte_exact(payload: bytes) -> None:
    for frame in (
        b'{"type": "submit_job", "payload": ' + payload + b', "job_type": "a"}',
        b'{"type":"submit_job","job_type":"a","payload":' + payload + b"}",
        b'{"x": {"payload": 0}, "type": "submit_job", "job_type": "a", "payload" :\n ' + payload + b"\n}",
        b'{"type":"submit_job","job_type":"pay\\u006coad","payload":\t' + payload + b"\r\n}",
    ):
        message = decoding.decode("client", frame)
        assert isinstance(message, m.SubmitJob) and bytes(message.payload) == payload
    done = decoding.decode("worker", b'{"type":"complete_job","job_id":"j","result":  ' + payload + b"  }")
    assert isinstance(done, m.CompleteJob) and bytes(done.result) == payload
    batch = decoding.decode("client",
                            b'{"type":"submit_jobs","jobs":[{"job_type":"a","payload":' + payload + b"}]}")
    assert isinstance(batch, m.SubmitJobs) and bytes(batch.jobs[0].payload) == payload


def refusal(role: str, frame: bytes) -> tuple[str, str | None, Any]:
    with pytest.raises(ProtocolError) as caught:
        decoding.decode(role, frame)
    exc = caught.value
    assert isinstance(exc, decoding.MessageError)
    return exc.code, exc.extra.get("field"), exc.req


LONG_NAME = "é" * 65  # 65 characters, 130 bytes
LONG_REQ = b'{"type":"ping","req":"' + b"r" * 129 + b'"}'
LONG_UTF8_REQ = b'{"type":"ping","req":"' + "é".encode() * 65 + b'"}'  # 65 characters, 130 bytes
DEL_TYPE = b'{"type":"submit_job","job_type":"a\x7fb"}'
C1_JOB_ID = b'{"type":"submit_job","job_type":"a","job_id":"\xc2\x85"}'  # U+0085, a C1 control
TAB_IN_BATCH = b'{"type":"submit_jobs","jobs":[{"job_type":"a"},{"job_type":"a","job_id":"\\t"}]}'
LONG_JOB_TYPES = b'{"type":"register_worker","job_types":["a","' + "é".encode() * 65 + b'"]}'
ESCAPED_REQ = b'{"type":"ping","req":"' + b"\\u00e9" * 65 + b'"}'  # 130 bytes once decoded
BATCH = b'{"type":"submit_jobs","req":2,"jobs":[' + b",".join([b'{"job_type":"a"}'] * (MAX_BATCH + 1)) + b"]}"


@pytest.mark.parametrize(("role", "frame", "code", "field", "req"), [
    ("client", b"not json", e.BAD_JSON, None, None),
    ("client", b'{"type":"ping"', e.BAD_JSON, None, None),
    ("client", b'{"type":"ping","req":true, oops', e.BAD_JSON, None, None),
    ("client", b'{"type":"ping"} {}', e.BAD_JSON, None, None),
    ("client", b'{"type":"submit_job","job_type":"a","payload":' + b"[" * 5000 + b"]" * 5000 + b"}",
     e.BAD_JSON, None, None),
    ("client", b"[1, 2]", e.BAD_MESSAGE, "", None),
    ("client", b'"text"', e.BAD_MESSAGE, "", None),
    ("client", b'{"job_type": "a", "req": 1}', e.BAD_MESSAGE, "type", None),
    ("client", b'{"type": 5, "req": 1}', e.BAD_MESSAGE, "type", None),
    ("client", b'{"type": "ping", "req": true}', e.BAD_MESSAGE, "req", None),
    ("client", b'{"type": "ping", "req": [1]}', e.BAD_MESSAGE, "req", None),
    ("client", LONG_REQ, e.BAD_MESSAGE, "req", None),
    ("client", LONG_UTF8_REQ, e.BAD_MESSAGE, "req", None),
    ("client", b'{"type": "launch_rockets", "req": 3}', e.UNKNOWN_TYPE, None, 3),
    ("client", b'{"type": "launch_rockets", "req": true}', e.BAD_MESSAGE, "req", None),
    ("client", b'{"type": "complete_job", "req": "c", "job_id": 5}', e.FORBIDDEN, None, "c"),
    ("worker", b'{"type": "submit_job", "req": 4}', e.FORBIDDEN, None, 4),
    ("monitor", b'{"type": "cancel_job", "job_id": "j"}', e.FORBIDDEN, None, None),
    ("client", b'{"type":"submit_job","req":1}', e.BAD_MESSAGE, "job_type", 1),
    ("client", b'{"type":"submit_job","req":1,"job_type":""}', e.BAD_MESSAGE, "job_type", 1),
    ("client", b'{"type":"submit_job","req":1,"job_type":"' + LONG_NAME.encode() + b'"}',
     e.BAD_MESSAGE, "job_type", 1),
    # names are measured in bytes of UTF-8, whether written as UTF-8 or as escapes; no control characters
    ("client", b'{"type":"submit_job","req":1,"job_type":"' + b"\\u00e9" * 65 + b'"}', e.BAD_MESSAGE,
     "job_type", 1),
    ("client", b'{"type":"submit_job","job_type":"' + b"\\u00e9" * 64 + b'"}', None, None, None),
    ("client", DEL_TYPE, e.BAD_MESSAGE, "job_type", None),
    ("client", C1_JOB_ID, e.BAD_MESSAGE, "job_id", None),
    ("client", TAB_IN_BATCH, e.BAD_MESSAGE, "jobs[1].job_id", None),
    ("worker", LONG_JOB_TYPES, e.BAD_MESSAGE, "job_types[1]", None),
    ("client", ESCAPED_REQ, e.BAD_MESSAGE, "req", None),
    ("client", b'{"type":"submit_job","job_type":"a","priority":1001}', e.BAD_MESSAGE, "priority", None),
    ("client", b'{"type":"submit_job","job_type":"a","priority":true}', e.BAD_MESSAGE, "priority", None),
    ("client", b'{"type":"submit_job","job_type":"a","priority":"5"}', e.BAD_MESSAGE, "priority", None),
    ("client", b'{"type":"submit_job","job_type":"a","priority":5.0}', e.BAD_MESSAGE, "priority", None),
    ("client", b'{"type":"submit_job","job_type":"a","max_attempts":0}', e.BAD_MESSAGE, "max_attempts", None),
    ("client", b'{"type":"submit_job","job_type":"a","delay_s":-1}', e.BAD_MESSAGE, "delay_s", None),
    ("client", b'{"type":"submit_job","job_type":"a","delay_s":true}', e.BAD_MESSAGE, "delay_s", None),
    ("client", b'{"type":"submit_job","job_type":"a","job_id":""}', e.BAD_MESSAGE, "job_id", None),
    ("client", b'{"type":"submit_job","job_type":"a","job_id":"' + b"j" * 257 + b'"}',
     e.BAD_MESSAGE, "job_id", None),
    ("client", b'{"type":"submit_job","job_type":"a","subscribe":1}', e.BAD_MESSAGE, "subscribe", None),
    ("client", b'{"type":"submit_job","req":7,"payload":1,"job_type":"a","payload":2}',
     e.BAD_MESSAGE, "payload", 7),
    ("client", b'{"type":"submit_jobs","req":2,"jobs":[{"job_type":"a"},{"job_type":"b","priority":5000}]}',
     e.BAD_MESSAGE, "jobs[1].priority", 2),
    ("client", b'{"type":"submit_jobs","req":2,"jobs":[{"job_type":"a"},{"priority":5}]}',
     e.BAD_MESSAGE, "jobs[1].job_type", 2),
    ("client", b'{"type":"submit_jobs","req":2,"jobs":[{"job_type":"a"},[]]}', e.BAD_MESSAGE, "jobs[1]", 2),
    ("client", b'{"type":"submit_jobs","req":2,"jobs":[]}', e.BAD_MESSAGE, "jobs", 2),
    ("client", b'{"type":"submit_jobs","req":2,"jobs":{}}', e.BAD_MESSAGE, "jobs", 2),
    ("client", b'{"type":"submit_jobs","req":2}', e.BAD_MESSAGE, "jobs", 2),
    ("client", BATCH, e.LIMIT_EXCEEDED, "jobs", 2),
    ("client", b'{"type":"subscribe_job","job_id":"j","since":"yesterday"}', e.BAD_MESSAGE, "since", None),
    ("client", b'{"type":"get_job_status","job_id":5}', e.BAD_MESSAGE, "job_id", None),
    ("client", b'{"type":"retry_job","job_id":"j","attempts":0}', e.BAD_MESSAGE, "attempts", None),
    ("client", b'{"type":"retry_job","job_id":"j","retry_id":""}', e.BAD_MESSAGE, "retry_id", None),
    ("worker", b'{"type":"register_worker","job_types":[]}', e.BAD_MESSAGE, "job_types", None),
    ("worker", b'{"type":"register_worker","job_types":["a",3]}', e.BAD_MESSAGE, "job_types[1]", None),
    ("worker", b'{"type":"register_worker","job_types":["a"],"worker_id":"w 1"}',
     e.BAD_MESSAGE, "worker_id", None),
    ("worker", b'{"type":"register_worker","job_types":["a"],"concurrency":10001}',
     e.BAD_MESSAGE, "concurrency", None),
    ("worker", b'{"type":"update_job_progress","job_id":"j"}', e.BAD_MESSAGE, "progress", None),
    ("worker", b'{"type":"update_job_progress","job_id":"j","progress":101}', e.BAD_MESSAGE, "progress",
     None),
    ("worker", b'{"type":"complete_job","req":3,"job_id":"j","result":1,"result":2}', e.BAD_MESSAGE,
     "result", 3),
    ("worker", b'{"type":"complete_job","job_id":"j","attempt":-1}', e.BAD_MESSAGE, "attempt", None),
    ("worker", b'{"type":"fail_job","job_id":"j"}', e.BAD_MESSAGE, "error", None),
    ("worker", b'{"type":"fail_job","job_id":"j","error":"x","retry":"no"}', e.BAD_MESSAGE, "retry", None),
    ("worker", b'{"type":"worker_status","status":"busy"}', e.BAD_MESSAGE, "status", None),
    ("monitor", b'{"type":"subscribe_stats","interval_s":0.1}', e.BAD_MESSAGE, "interval_s", None),
])
def test_bad_frames_get_the_documented_code_and_field(role: str, frame: bytes, code: str | None,
                                                      field: str | None, req: Any) -> None:
    if code is None:
        assert isinstance(decoding.decode(role, frame), m.ALL_MESSAGES[orjson.loads(frame)["type"]])
    else:
        assert refusal(role, frame) == (code, field, req)


def test_a_refused_field_names_its_type_and_the_limit() -> None:
    with pytest.raises(decoding.MessageError) as caught:
        decoding.decode("client", BATCH)
    assert caught.value.kind == "submit_jobs" and caught.value.extra["limit"] == MAX_BATCH
    with pytest.raises(decoding.MessageError) as caught:
        decoding.decode("worker", b'{"type":"fail_job","job_id":"j","req":9}')
    assert caught.value.kind == "fail_job" and caught.value.req == 9
    assert "'error'" in caught.value.message and "required" in caught.value.message


# ---- a payload or result given twice ------------------------------------------------------------

@pytest.mark.parametrize(("frame", "twice"), [
    (b'{"type":"submit_job","job_type":"a","payload":1}', False),
    (b'{"type":"submit_job","job_type":"a"}', False),
    (b'{"type":"submit_job","job_type":"a","payload":1,"payload":1}', True),
    (b'{"type":"submit_job","job_type":"a","pay\\u006coad":1,"payload":2}', True),
    (b'{"type":"submit_job","job_type":"a","pay\\u006Coad":1,"pay\\u006coad":2}', True),
    (b'{"type":"submit_job","job_type":"a","pay\\u006coad":{"payload":1}}', False),
    (b'{"x":{"payload":1},"type":"submit_job","job_type":"a","payload":{"payload":1}}', False),
    (b'{"x":"\\"payload\\"","type":"submit_job","job_type":"payload","payload":["payload"]}', False),
    (b'{"x":{"payload":1},"type":"submit_job","payload":2,"job_type":"a","payload":{"payload":1}}', True),
    (b'{"\\"payload":1,"type":"submit_job","job_type":"a","payload":2}', False),
    (b'{"\\u0022payload":1,"type":"submit_job","payload":0,"job_type":"a","payload":2}', True),
    (b'{"type":"submit_job","job_type":"a","payload":2,"y":"\\u0070","payload":3}', True),
    (b'{"type":"submit_job","job_type":"a","payload":"' + b"x" * 5000 + b'","payload":3}', True),
    (b'{"type":"submit_job","payload":"' + b"x" * 5000 + b'","job_type":"a","z":{"payload":3}}', False),
])
def test_a_payload_given_twice_is_refused(frame: bytes, twice: bool) -> None:
    assert top_level_count(frame, "payload") > 1 if twice else top_level_count(frame, "payload") <= 1
    if twice:
        assert refusal("client", frame)[:2] == (e.BAD_MESSAGE, "payload")
    else:
        assert isinstance(decoding.decode("client", frame), m.SubmitJob)


def top_level_count(frame: bytes, key: str) -> int:
    return sum(name == key for name, _ in json.loads(frame, object_pairs_hook=list))


def test_the_duplicate_check_agrees_with_a_full_parse_on_random_frames() -> None:
    rng = random.Random(7)
    keys = ['"payload"', '"pay\\u006coad"', '"x"', '"p\\"ayload"', '"\\u0022payload"']
    values = ['1', '"payload"', '{"payload":2}', '["payload", {"payload": [3]}]', '"\\u0070"',
              '" \\"payload\\" "', '"' + "y" * 3000 + '"', '{"a":{"payload":{"payload":4}}}']
    for _ in range(3000):
        members = ['"type":"submit_job"', '"job_type":"a"']
        members += [f"{rng.choice(keys)}:{rng.choice(values)}" for _ in range(rng.randint(0, 4))]
        rng.shuffle(members)
        frame = ("{" + ",".join(members) + "}").encode()
        expected = top_level_count(frame, "payload") > 1
        try:
            decoding.decode("client", frame)
            refused = False
        except decoding.MessageError as exc:
            assert (exc.code, exc.extra.get("field")) == (e.BAD_MESSAGE, "payload")
            refused = True
        assert refused == expected, frame


# ---- the handler table ----------------------------------------------------------------------------

def test_the_handler_table_covers_every_type() -> None:
    class Hub:
        pass

    names = {m.handler_name(cls) for cls in m.ALL_MESSAGES.values()}
    for name in names:
        setattr(Hub, name, lambda self, *args, name=name: name)
    table = handler_table(Hub())
    assert set(table) == set(m.ALL_MESSAGES.values())
    assert table[m.RequestJobStatus]() == table[m.GetJobStatus]() == "on_get_job_status"
    assert table[m.UpdateJobProgress]() == "on_update_job_progress"
    delattr(Hub, "on_ping")
    with pytest.raises(AttributeError, match="on_ping"):
        handler_table(Hub())


# ---- answers that changed when the hub moved to declared messages ----------------------------------

def now(role: str, data: bytes) -> tuple[str, str | None] | None:
    try:
        decoding.decode(role, data)
    except ProtocolError as exc:
        return exc.code, exc.extra.get("field")
    return None


# frame -> (the answer before the hub decoded into declared messages, the answer since): kept as
# the record of what changed for a peer (docs/protocol.md section 3 says the same)
CHANGED: dict[tuple[str, bytes], tuple[Any, Any]] = {
    # a null for an optional number or bool: today the default, now refused (not a JSON integer);
    # for an optional name (job_id, worker_id, since, retry_id) null is still "not given"
    ("client", b'{"type":"submit_job","job_type":"a","priority":null}'): (None, (e.BAD_MESSAGE, "priority")),
    ("client", b'{"type":"submit_job","job_type":"a","delay_s":null}'): (None, (e.BAD_MESSAGE, "delay_s")),
    ("worker", b'{"type":"register_worker","job_types":["a"],"concurrency":null}'):
        (None, (e.BAD_MESSAGE, "concurrency")),
    # progress `message`: today anything falsy is "", and a wrong type has no `field`
    ("worker", b'{"type":"update_job_progress","job_id":"j","progress":1,"message":null}'):
        (None, (e.BAD_MESSAGE, "message")),
    ("worker", b'{"type":"update_job_progress","job_id":"j","progress":1,"message":0}'):
        (None, (e.BAD_MESSAGE, "message")),
    ("worker", b'{"type":"update_job_progress","job_id":"j","progress":1,"message":5}'):
        ((e.BAD_MESSAGE, None), (e.BAD_MESSAGE, "message")),
    # errors that had no `field`
    ("worker", b'{"type":"fail_job","job_id":"j"}'): ((e.BAD_MESSAGE, None), (e.BAD_MESSAGE, "error")),
    ("worker", b'{"type":"worker_status","status":"busy"}'):
        ((e.BAD_MESSAGE, None), (e.BAD_MESSAGE, "status")),
    ("worker", b'{"type":"worker_status"}'): ((e.BAD_MESSAGE, None), (e.BAD_MESSAGE, "status")),
    # the path of a bad job type names the item, not the list
    ("worker", b'{"type":"register_worker","job_types":["a",3]}'):
        ((e.BAD_MESSAGE, "job_types"), (e.BAD_MESSAGE, "job_types[1]")),
    ("worker", LONG_JOB_TYPES): ((e.BAD_MESSAGE, "job_types"), (e.BAD_MESSAGE, "job_types[1]")),
    # documented limits the hub did not check: control characters in names, req over 128 bytes
    ("client", b'{"type":"submit_job","job_type":"a\\nb"}'): (None, (e.BAD_MESSAGE, "job_type")),
    ("client", b'{"type":"cancel_job","job_id":"j\\u0000"}'): (None, (e.BAD_MESSAGE, "job_id")),
    ("client", DEL_TYPE): (None, (e.BAD_MESSAGE, "job_type")),
    ("client", C1_JOB_ID): (None, (e.BAD_MESSAGE, "job_id")),
    ("client", TAB_IN_BATCH): (None, (e.BAD_MESSAGE, "jobs[1].job_id")),
    ("client", ESCAPED_REQ): (None, (e.BAD_MESSAGE, "req")),
    ("client", LONG_REQ): (None, (e.BAD_MESSAGE, "req")),
    ("client", LONG_UTF8_REQ): (None, (e.BAD_MESSAGE, "req")),
    # a req integer beyond 64 bits: orjson made it a float (echoed as 1.2345678901234568e+29)
    ("client", b'{"type":"ping","req":123456789012345678901234567890}'): (None, (e.BAD_MESSAGE, "req")),
    # a number beyond a double inside a payload: orjson refuses the frame, msgspec keeps it raw
    ("client", b'{"type":"submit_job","job_type":"a","payload":[1e999]}'): ((e.BAD_JSON, None), None),
    # a payload key spelled with an escape: the raw scanner did not see it (and passed on the other)
    ("client", b'{"type":"submit_job","job_type":"a","pay\\u006coad":1,"payload":2}'):
        (None, (e.BAD_MESSAGE, "payload")),
    # `type` given twice: today the last one counts; msgspec picks the Struct by the first
    ("client", b'{"type":"get_stats","type":"ping"}'): (None, (e.BAD_MESSAGE, "type")),
    # more than 1000 jobs with a bad one among them: the bad one is found first
    ("client", BATCH.replace(b'{"job_type":"a"}', b'{"job_type":5}', 1)):
        ((e.LIMIT_EXCEEDED, "jobs"), (e.BAD_MESSAGE, "jobs[0].job_type")),
}

@pytest.mark.parametrize(("role", "frame"), list(CHANGED))
def test_the_answers_that_changed_are_the_documented_ones(role: str, frame: bytes) -> None:
    assert now(role, frame) == CHANGED[role, frame][1]


FILLER = b'"' + b"x" * 5000 + b'"'  # past the size below which every value is parsed whole
READABILITY = [
    (b"[1e400]", False), (b"[-2E+308]", False), (b"[1e0000400]", False), (b"[1" + b"0" * 400 + b"]", False),
    (b"[1" + b"0" * 309 + b".5]", False), (b"[1" + b"0" * 250 + b"e99]", False),
    (b"[1e308, -1.7e308, 1e-400, 1e99]", True), (b"[1" + b"0" * 250 + b"]", True),
    (b"[1" + b"0" * 208 + b"e99]", True),
    (b'["1e400 and E+0999 are text here", "' + b"9" * 400 + b'"]', True),
    (b"[0." + b"0" * 400 + b"1]", True),
]


@pytest.mark.parametrize("long", [False, True], ids=["short", "long"])
@pytest.mark.parametrize(("value", "readable"), READABILITY, ids=range(len(READABILITY)))
def test_a_value_is_refused_exactly_when_the_sdks_parser_cannot_read_it(value: bytes, readable: bool,
                                                                       long: bool) -> None:
    """protocol.check_readable agrees with orjson (the SDKs' parser) on numbers at the edge of a double,
    also for a long value, where it parses only what a scan finds suspect."""
    if long:
        value = b"[" + value + b"," + FILLER + b"]"
        assert sys.getrecursionlimit() <= MAX_VALUE_DEPTH  # so the scan decides what is parsed
    try:
        orjson.loads(value)
        truth = True
    except orjson.JSONDecodeError:
        truth = False
    assert truth == readable
    if readable:
        p.check_readable(value, "payload")
    else:
        with pytest.raises(ProtocolError) as refused:
            p.check_readable(value, "result")
        assert (refused.value.code, refused.value.extra.get("field")) == (e.BAD_MESSAGE, "result")
        assert "fit a double" in str(refused.value)
