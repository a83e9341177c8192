"""The wire protocol's shapes: frame parsing, field validation, error frames, which role may send
which type, and the raw-JSON splicing that lets payloads and results cross the hub as the exact
text they arrived as. docs/protocol.md is the contract; this module holds no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from empfast.errors import BAD_JSON, BAD_MESSAGE, FORBIDDEN, UNKNOWN_TYPE, ProtocolError
from empfast.limits import MAX_JOB_TYPE_BYTES

PROTOCOL_VERSION = 1

CLIENT_TYPES = frozenset({
    "submit_job", "submit_jobs", "get_job_status", "request_job_status", "subscribe_job",
    "unsubscribe_job", "cancel_job", "retry_job", "get_stats", "ping",
})
WORKER_TYPES = frozenset({
    "register_worker", "claim_job", "update_job_progress", "complete_job", "fail_job",
    "worker_heartbeat", "worker_status", "unregister_worker", "ping",
})
MONITOR_TYPES = frozenset({"subscribe_stats", "get_stats", "get_workers", "subscribe_job",
                           "unsubscribe_job", "get_job_status", "request_job_status", "ping"})
ROLE_TYPES = {"client": CLIENT_TYPES, "worker": WORKER_TYPES, "monitor": MONITOR_TYPES}
ALL_TYPES = CLIENT_TYPES | WORKER_TYPES | MONITOR_TYPES

# a job in one of these has finished: no event follows its final one
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# the job events a client receives for a job it follows
JOB_EVENT_TYPES = frozenset({"job_update", "job_completed", "job_failed", "job_cancelled"})

EVENT_ID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def is_final_event(frame: dict[str, Any]) -> bool:
    """Whether a job event frame is the job's last (completed, cancelled, or failed for good)."""
    kind = frame.get("type")
    return kind in ("job_completed", "job_cancelled") or (kind == "job_failed" and frame.get("final") is True)


def parse_frame(data: bytes | str) -> dict[str, Any]:
    """A frame's JSON object, or ProtocolError(bad_json | bad_message)."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"the frame is not valid JSON ({exc}); send one JSON object "
                                      "per text frame") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, "a frame must be a JSON object with a 'type' field, "
                                         f"got a JSON {type(message).__name__}", field="")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_MESSAGE, "field 'type' is missing or not a string", field="type")
    return message


def check_role(role: str, kind: str) -> None:
    if kind not in ALL_TYPES:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind!r}; see docs/protocol.md")
    if kind not in ROLE_TYPES[role]:
        raise ProtocolError(FORBIDDEN, f"a {role} may not send {kind!r}: connect to the matching "
                                       "/ws/<role> endpoint")


# ---- field validation ------------------------------------------------------------------------

def _bad(field: str, what: str) -> ProtocolError:
    return ProtocolError(BAD_MESSAGE, f"field {field!r} {what}", field=field)


def req_id(message: dict[str, Any]) -> Any:
    """The request id to echo: a string or a number, else None (and the frame is refused)."""
    req = message.get("req")
    if req is None or (isinstance(req, (str, int, float)) and not isinstance(req, bool)):
        return req
    raise _bad("req", "must be a string or a number")


def _utf8_len(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def get_str(message: dict[str, Any], field: str, *, max_bytes: int = MAX_JOB_TYPE_BYTES,
            default: str | None = None) -> str:
    """A required string of 1 to `max_bytes` bytes of UTF-8 (what Redis and the scripts measure)."""
    value = message.get(field, default)
    if value is None:
        raise _bad(field, "is required")
    if not isinstance(value, str) or not value or _utf8_len(value) > max_bytes:
        raise _bad(field, f"must be a string of 1 to {max_bytes} bytes (UTF-8)")
    return value


def get_opt_str(message: dict[str, Any], field: str, *, max_bytes: int = MAX_JOB_TYPE_BYTES) -> str | None:
    if message.get(field) is None:
        return None
    return get_str(message, field, max_bytes=max_bytes)


def get_int(message: dict[str, Any], field: str, default: int, lo: int, hi: int) -> int:
    value = message.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(field, f"must be an integer from {lo} to {hi}")
    return value


def get_number(message: dict[str, Any], field: str, default: float, lo: float, hi: float) -> float:
    value = message.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _bad(field, f"must be a number from {lo:g} to {hi:g}")
    return float(value)


def get_bool(message: dict[str, Any], field: str, default: bool) -> bool:
    value = message.get(field, default)
    if not isinstance(value, bool):
        raise _bad(field, "must be true or false")
    return value


def get_str_list(message: dict[str, Any], field: str, *, max_items: int = 256) -> list[str]:
    value = message.get(field)
    if (not isinstance(value, list) or not 0 < len(value) <= max_items
            or not all(isinstance(v, str) and v and _utf8_len(v) <= MAX_JOB_TYPE_BYTES for v in value)):
        raise _bad(field, f"must be a list of 1 to {max_items} strings of 1 to {MAX_JOB_TYPE_BYTES} "
                          "bytes (UTF-8)")
    return value


# ---- raw JSON values -------------------------------------------------------------------------

# Strings (with escapes) and the structural characters: everything a scanner needs to find where a
# value ends. Numbers, literals and white space are never matched, so they cost nothing.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]', re.DOTALL)


def raw_member(frame: bytes, key: str) -> bytes | None:
    """The exact text of a top-level member's value in a JSON object frame (already validated by
    parse_frame), or None when the key is absent. The value is not parsed: the hub forwards
    payloads and results as the bytes they arrived as. The key given twice is bad_message: the
    parsed frame would hold the last value and the raw text the first.

    A key written with escapes (e.g. "pay\\u006coad") is not recognised; callers fall back to
    re-encoding the parsed value, which is equal JSON though not the same bytes.
    """
    wanted = orjson.dumps(key)
    depth = 0
    start = -1
    found: bytes | None = None
    expect_value = False
    for token in _TOKEN.finditer(frame):
        text = token.group()
        if start >= 0:
            if text in (b"{", b"["):
                depth += 1
            elif text in (b"}", b"]"):
                if depth == 1:
                    found, start = frame[start:token.start()].strip(), -1
                depth -= 1
            elif text == b"," and depth == 1:
                found, start = frame[start:token.start()].strip(), -1
            continue
        if text in (b"{", b"["):
            depth += 1
        elif text in (b"}", b"]"):
            depth -= 1
        elif expect_value and text == b":":
            if found is not None:
                raise ProtocolError(BAD_MESSAGE, f"field {key!r} is given twice", field=key)
            start = token.end()
        expect_value = depth == 1 and text == wanted and not expect_value
    return found


def splice(head: dict[str, Any], key: str, raw: bytes) -> bytes:
    """A frame of `head` plus one member whose value is raw JSON text, added without parsing it."""
    return orjson.dumps(head)[:-1] + b',"' + key.encode() + b'":' + raw + b"}"


def raw_or_dumped(frame: bytes, message: dict[str, Any], key: str, default: bytes) -> bytes:
    """The member's exact text when it can be found, else its parsed value re-encoded."""
    if key not in message:
        return default
    raw = raw_member(frame, key)
    return raw if raw is not None else orjson.dumps(message[key])
