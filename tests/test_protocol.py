"""Frame decoding (decoding.decode), validation and raw-JSON payloads, without sockets."""

from __future__ import annotations

import orjson
import pytest

from empfast import decoding
from empfast import errors as e
from empfast import messages as m
from empfast import protocol as p
from empfast.hub import frames


@pytest.mark.parametrize(("frame", "code"), [
    (b"not json", e.BAD_JSON),
    (b"[1, 2]", e.BAD_MESSAGE),
    (b'"text"', e.BAD_MESSAGE),
    (b'{"job_type": "a"}', e.BAD_MESSAGE),
    (b'{"type": 5}', e.BAD_MESSAGE),
])
def test_bad_frames_get_their_code(frame: bytes, code: str) -> None:
    with pytest.raises(e.ProtocolError) as caught:
        decoding.decode("client", frame)
    assert caught.value.code == code


def test_roles_limit_types() -> None:
    assert isinstance(decoding.decode("client", b'{"type": "submit_job", "job_type": "a"}'), m.SubmitJob)
    with pytest.raises(e.ProtocolError) as caught:
        decoding.decode("client", b'{"type": "complete_job", "job_id": "j"}')
    assert caught.value.code == e.FORBIDDEN
    with pytest.raises(e.ProtocolError) as caught:
        decoding.decode("worker", b'{"type": "launch_rockets"}')
    assert caught.value.code == e.UNKNOWN_TYPE


def test_field_errors_name_the_field() -> None:
    with pytest.raises(e.ProtocolError, match="'priority'"):
        decoding.decode("client", b'{"type": "submit_job", "job_type": "a", "priority": 5000}')
    with pytest.raises(e.ProtocolError, match="'priority'"):
        decoding.decode("client", b'{"type": "submit_job", "job_type": "a", "priority": true}')
    with pytest.raises(e.ProtocolError, match="'job_type' is required"):
        decoding.decode("client", b'{"type": "submit_job"}')
    with pytest.raises(e.ProtocolError, match="'job_types"):
        decoding.decode("worker", b'{"type": "register_worker", "job_types": ["a", 3]}')
    message = decoding.decode("client", b'{"type": "submit_job", "job_type": "a", "delay_s": 1}')
    assert isinstance(message, m.SubmitJob) and message.delay_s == 1.0


@pytest.mark.parametrize("payload", [
    b'{"a": [1, {"b": "}],"}], "c": null}',
    b'"a string with \\" quote and , comma"',
    b"12345678901234567890123.50",
    b"[ ]",
    b"true",
    b'{"payload": {"payload": 1}}',
])
def test_a_payload_arrives_as_its_exact_text(payload: bytes) -> None:
    for frame in (
        b'{"type": "submit_job", "payload": ' + payload + b', "job_type": "a"}',
        b'{"job_type":"a","type":"submit_job","payload":' + payload + b"}",
        b'{"x": {"payload": 0}, "type": "submit_job", "job_type": "a", "payload" :\n ' + payload + b"\n}",
    ):
        message = decoding.decode("client", frame)
        assert isinstance(message, m.SubmitJob)
        assert bytes(message.payload) == payload


def test_an_absent_payload_is_the_default() -> None:
    message = decoding.decode("client", b'{"type": "submit_job", "job_type": "payload"}')
    assert isinstance(message, m.SubmitJob) and bytes(message.payload) == b"{}"


def test_a_payload_given_twice_is_refused() -> None:
    frame = b'{"type": "submit_job", "payload": {"a": 1}, "job_type": "a", "payload": 2}'
    with pytest.raises(e.ProtocolError) as info:
        decoding.decode("client", frame)
    assert info.value.code == e.BAD_MESSAGE and info.value.extra["field"] == "payload"
    nested = b'{"type": "submit_job", "job_type": "a", "payload": {"payload": 1, "x": {"payload": 2}}}'
    message = decoding.decode("client", nested)
    assert isinstance(message, m.SubmitJob)
    assert bytes(message.payload) == b'{"payload": 1, "x": {"payload": 2}}'


def test_splice_adds_a_raw_member() -> None:
    frame = p.splice({"type": "job_assigned", "job_id": "j"}, "payload", b'{"n": 1.50}')
    assert frame == b'{"type":"job_assigned","job_id":"j","payload":{"n": 1.50}}'


def test_error_frame_echoes_req() -> None:
    assert orjson.loads(frames.error(e.NOT_FOUND, "no job", req=7)) == {
        "type": "error", "code": "not_found", "error": "no job", "req": 7}


def test_job_ids_are_32_hex_digits_unique_in_a_process_and_across_a_fork() -> None:
    """Ids the hub or the client SDK makes (no uuid4 per id): a counter after a random prefix that
    a forked child draws again, so a parent and its child never make the same id."""
    import os
    import re

    from empfast.ids import new_job_id

    ours = [new_job_id() for _ in range(10_000)]
    assert len(set(ours)) == len(ours) and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ours)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next ids, back through the pipe
        os.write(write, " ".join(new_job_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = pipe.read().split()
    os.waitpid(child, 0)
    mine = [new_job_id() for _ in range(100)]
    assert len(theirs) == 100 and not set(theirs) & set(mine + ours)
