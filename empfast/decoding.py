"""Decoding a peer's frame into its message (empfast/messages.py): `decode(role, data)` is the one
entry point. It returns the message, or raises MessageError (a ProtocolError) with the code of
docs/protocol.md section 3 and, for `bad_message`, the bad field's path (`jobs[2].priority`).

What the Structs cannot say, and is checked here:
- names are limited in UTF-8 bytes (limits.py), max_length counts characters: decode() checks bytes
  and control characters of a frame with escapes, DEL or non-ASCII (no __post_init__: a call a Struct);
- a `payload` or `result` given twice (msgspec keeps the last; the hub must refuse it).
The hub checks what needs its settings or the connection: a payload's size against the frame limit,
the worker id against the path, registration, subscriptions.
"""

from __future__ import annotations

import re
from typing import Any, Union

import msgspec
from msgspec import Struct

from empfast.errors import BAD_JSON, BAD_MESSAGE, FORBIDDEN, LIMIT_EXCEEDED, UNKNOWN_TYPE, ProtocolError
from empfast.ids import MAX_EVENT_ID_PART
from empfast.limits import MAX_GROUP_BYTES, MAX_JOB_ID_BYTES, MAX_JOB_TYPE_BYTES, MAX_REQ_BYTES
from empfast.messages import (
    ALL_MESSAGES,
    COUNT_LIMITS,
    RAW_FIELDS,
    ROLE_MESSAGES,
    ROLE_TYPES,
    AnyMessage,
    CompleteJobs,
    RegisterWorker,
    SubmitJobs,
    SubscribeJob,
    tag_of,
)
from empfast.protocol import member_given_twice

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _utf8_len(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


# the names whose bytes and characters decode() checks, by field name
NAME_BYTES = {"job_id": MAX_JOB_ID_BYTES, "retry_id": MAX_JOB_ID_BYTES, "job_type": MAX_JOB_TYPE_BYTES,
              "group": MAX_GROUP_BYTES}


class MessageError(ProtocolError):
    """A refused frame. `req` is its request id when valid (the error echoes it), `kind` its type
    when the role may send it (the hub answers `not_registered` for it first)."""

    def __init__(self, code: str, message: str, req: Any = None, kind: str | None = None,
                 **extra: Any) -> None:
        super().__init__(code, message, **extra)
        self.req, self.kind = req, kind


class _Envelope(Struct):
    """What a refused frame is read for: its type and request id (other members are skipped)."""

    type: Any = None
    req: Any = None


_DECODERS = {role: msgspec.json.Decoder(Union[classes])  # noqa: UP007  # a tuple of types
             for role, classes in ROLE_MESSAGES.items()}
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ANY = msgspec.json.Decoder()
_AT = re.compile(r"(.*?)(?: - at `\$\.?(.*)`)?", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_BACKSLASH, _DEL = ord("\\"), 0x7F
_INT64 = (-(1 << 63), (1 << 63) - 1)


def decode(role: str, data: bytes) -> AnyMessage:
    """The message a peer of `role` sent in one text frame, validated; else MessageError."""
    try:
        message: AnyMessage = _DECODERS[role].decode(data)
    except msgspec.ValidationError as exc:
        raise _refusal(role, data, str(exc)) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad_json(exc) from None
    escapes = _BACKSLASH in data  # an int: memchr, several times faster than b"\\" in data
    # JSON text holds no raw control character but DEL: without escapes, DEL or non-ASCII, every
    # string is printable ASCII, so the Metas' character counts were byte counts
    if escapes or not data.isascii() or _DEL in data:
        _check_texts(message)
    if type(message) is SubscribeJob and message.since is not None:
        _check_since(message.since, message.req)
    key = RAW_FIELDS.get(type(message))
    if key is not None and member_given_twice(data, key, getattr(message, key), escapes):
        raise MessageError(BAD_MESSAGE, f"field {key!r} is given twice: give it once", message.req,
                           tag_of(type(message)), field=key)
    return message


def _check_texts(message: AnyMessage) -> None:
    """What the Metas cannot check: the bytes of a string req, and of each name (limits.py counts
    bytes of UTF-8, msgspec's max_length characters), and control characters in names."""
    req = message.req
    if type(req) is str and _utf8_len(req) > MAX_REQ_BYTES:
        raise MessageError(BAD_MESSAGE, f"field 'req' must be a string of at most {MAX_REQ_BYTES} bytes "
                                        "or a number", field="req")
    names = [(f, getattr(message, f), NAME_BYTES[f]) for f in message.__struct_fields__ if f in NAME_BYTES]
    if isinstance(message, SubmitJobs | CompleteJobs):
        names += [(f"jobs[{i}].{f}", getattr(job, f), NAME_BYTES[f]) for i, job in enumerate(message.jobs)
                  for f in ("job_type", "job_id", "group") if hasattr(job, f)]
    elif isinstance(message, RegisterWorker):
        names += [(f"job_types[{i}]", name, MAX_JOB_TYPE_BYTES) for i, name in enumerate(message.job_types)]
    for field, value, max_bytes in names:
        if type(value) is not str or (value.isascii() and value.isprintable()):  # None, UNSET
            continue  # one byte a character, bounded by the Meta
        why = (f"must be 1 to {max_bytes} bytes of UTF-8" if _utf8_len(value) > max_bytes
               else "must not contain control characters" if _CONTROL.search(value) else "")
        if why:
            raise MessageError(BAD_MESSAGE, f"field {field!r} {why}", req, tag_of(type(message)),
                               field=field)


def _check_since(since: str, req: Any) -> None:
    """The pattern bounds each number of the id to 20 digits, which reach past 2^64 - 1."""
    if any(int(part) > MAX_EVENT_ID_PART for part in since.split("-")):
        raise MessageError(BAD_MESSAGE, "field 'since' must be an event id '<ms>-<seq>' whose numbers are "
                                        f"at most {MAX_EVENT_ID_PART}", req, tag_of(SubscribeJob),
                           field="since")


def _bad_json(exc: BaseException) -> MessageError:
    why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    return MessageError(BAD_JSON, f"the frame is not valid JSON ({why}); send one JSON object per "
                                  "text frame")


def _valid_req(req: Any) -> bool:
    if req is None or type(req) is float:
        return True
    if type(req) is int:
        return _INT64[0] <= req <= _INT64[1]
    return type(req) is str and _utf8_len(req) <= MAX_REQ_BYTES


def _refusal(role: str, data: bytes, text: str) -> MessageError:
    """A refused frame's error, in the hub's order: JSON, object, type, req, type known, allowed, field."""
    try:
        envelope = _ENVELOPE.decode(data)
    except msgspec.ValidationError:  # not an object; but is it JSON at all?
        try:
            value = _ANY.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            return _bad_json(exc)
        return MessageError(BAD_MESSAGE, "a frame must be a JSON object with a 'type' field, got a "
                                         f"JSON {type(value).__name__}", field="")
    except (msgspec.DecodeError, RecursionError) as exc:
        return _bad_json(exc)
    kind, req = envelope.type, envelope.req
    if not isinstance(kind, str):
        return MessageError(BAD_MESSAGE, "field 'type' is missing or not a string", field="type")
    if not _valid_req(req):
        return MessageError(BAD_MESSAGE, f"field 'req' must be a string of at most {MAX_REQ_BYTES} "
                                         "bytes or a number", field="req")
    if kind not in ALL_MESSAGES:
        return MessageError(UNKNOWN_TYPE, f"unknown message type {kind!r}; see docs/protocol.md", req)
    if kind not in ROLE_TYPES[role]:
        return MessageError(FORBIDDEN, f"a {role} may not send {kind!r}: connect to the matching "
                                       "/ws/<role> endpoint", req)
    return _field_error(ALL_MESSAGES[kind], text, req)


def _field_error(cls: type[AnyMessage], text: str, req: Any) -> MessageError:
    """bad_message naming the field of msgspec's error (`... - at `$.jobs[2].priority`` -> field
    "jobs[2].priority"); a list over its count limit is limit_exceeded."""
    match = _AT.fullmatch(text)
    detail, path = (match[1], match[2] or "") if match else (text, "")
    kind = tag_of(cls)
    missing = _MISSING.match(detail)
    field = (f"{path}.{missing[1]}" if path else missing[1]) if missing else path
    if missing:
        return MessageError(BAD_MESSAGE, f"field {field!r} is required (see {kind} in docs/protocol.md)",
                            req, kind, field=field)
    if field == "type":  # decoded as one type, then given again as another
        return MessageError(BAD_MESSAGE, "field 'type' is given twice: give it once", req, field="type")
    limit = COUNT_LIMITS.get((cls, field))
    if limit is not None and "length <=" in detail:
        return MessageError(LIMIT_EXCEEDED, f"more than {limit} items in {field!r} of one {kind}; "
                                            "send several frames", req, kind, field=field, limit=limit)
    return MessageError(BAD_MESSAGE, f"field {field!r}: {detail} (see {kind} in docs/protocol.md)", req,
                        kind, field=field)
