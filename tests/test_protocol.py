"""Frame parsing, validation and raw-JSON splicing (no sockets)."""

from __future__ import annotations

import orjson
import pytest

from empfast import errors as e
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
        p.parse_frame(frame)
    assert caught.value.code == code


def test_roles_limit_types() -> None:
    p.check_role("client", "submit_job")
    with pytest.raises(e.ProtocolError) as caught:
        p.check_role("client", "complete_job")
    assert caught.value.code == e.FORBIDDEN
    with pytest.raises(e.ProtocolError) as caught:
        p.check_role("worker", "launch_rockets")
    assert caught.value.code == e.UNKNOWN_TYPE


def test_field_errors_name_the_field() -> None:
    with pytest.raises(e.ProtocolError, match="'priority'"):
        p.get_int({"priority": 5000}, "priority", 0, -1000, 1000)
    with pytest.raises(e.ProtocolError, match="'priority'"):
        p.get_int({"priority": True}, "priority", 0, -1000, 1000)
    with pytest.raises(e.ProtocolError, match="'job_type' is required"):
        p.get_str({}, "job_type")
    with pytest.raises(e.ProtocolError, match="'job_types'"):
        p.get_str_list({"job_types": ["a", 3]}, "job_types")
    assert p.get_number({"delay_s": 1}, "delay_s", 0, 0, 10) == 1.0


@pytest.mark.parametrize("payload", [
    b'{"a": [1, {"b": "}],"}], "c": null}',
    b'"a string with \\" quote and , comma"',
    b"12345678901234567890123.50",
    b"[ ]",
    b"true",
    b'{"payload": {"payload": 1}}',
])
def test_raw_member_returns_the_exact_text(payload: bytes) -> None:
    for frame in (
        b'{"type": "submit_job", "payload": ' + payload + b', "job_type": "a"}',
        b'{"type":"payload","job_type":"a","payload":' + payload + b"}",
        b'{"x": {"payload": 0}, "type": "x", "payload" :\n ' + payload + b"\n}",
    ):
        message = p.parse_frame(frame)
        assert p.raw_member(frame, "payload") == payload
        assert orjson.loads(p.raw_or_dumped(frame, message, "payload", b"{}")) == orjson.loads(payload)


def test_raw_member_absent_and_default() -> None:
    frame = b'{"type": "submit_job", "job_type": "payload"}'
    assert p.raw_member(frame, "payload") is None
    assert p.raw_or_dumped(frame, p.parse_frame(frame), "payload", b"{}") == b"{}"


def test_a_raw_member_given_twice_is_refused() -> None:
    frame = b'{"type": "submit_job", "payload": {"a": 1}, "job_type": "a", "payload": 2}'
    with pytest.raises(e.ProtocolError) as info:
        p.raw_member(frame, "payload")
    assert info.value.code == e.BAD_MESSAGE and info.value.extra["field"] == "payload"
    nested = b'{"type": "submit_job", "payload": {"payload": 1, "x": {"payload": 2}}}'
    assert p.raw_member(nested, "payload") == b'{"payload": 1, "x": {"payload": 2}}'


def test_error_frame_echoes_req() -> None:
    assert orjson.loads(frames.error(e.NOT_FOUND, "no job", req=7)) == {
        "type": "error", "code": "not_found", "error": "no job", "req": 7}
