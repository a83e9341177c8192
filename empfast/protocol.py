"""The wire protocol's shared vocabulary: its version, which statuses and events are final, the
id patterns, the raw-JSON splicing that lets payloads and results cross the hub as the exact
text they arrived as, and the check that such a text is one every SDK can read. What each
inbound message looks like is declared in messages.py;
docs/protocol.md is the contract. No I/O here.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from typing import Any

import msgspec
import orjson

from empfast.errors import BAD_MESSAGE, ProtocolError
from empfast.limits import MAX_VALUE_DEPTH

PROTOCOL_VERSION = 1

# a job in one of these has finished: no event follows its final one
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# the job events a client receives for a job it follows
JOB_EVENT_TYPES = frozenset({"job_update", "job_log", "job_completed", "job_failed", "job_cancelled"})

EVENT_ID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
# not ending in ':jobs': {Q}:worker:<id>:jobs is a worker's job set, so worker 'w:jobs' would have
# the key of worker 'w''s set for its hash (docs/data-model.md)
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}(?<!:jobs)$")
WORKER_ID_RULE = "1 to 128 characters of [A-Za-z0-9._:@-], not ending in ':jobs'"


def is_final_event(frame: dict[str, Any]) -> bool:
    """Whether a job event frame is the job's last (completed, cancelled, or failed for good)."""
    kind = frame.get("type")
    return kind in ("job_completed", "job_cancelled") or (kind == "job_failed" and frame.get("final") is True)


def frame_header(size: int, mask_key: bytes = b"") -> bytes:
    """The header of one whole text frame of `size` bytes (RFC 6455 5.2): a server's frames go
    unmasked; a client's carry the 4-byte key their data is masked with (masked_data)."""
    masked = 0x80 if mask_key else 0
    if size < 126:
        return bytes((0x81, masked | size)) + mask_key
    if size < 65536:
        return bytes((0x81, masked | 126)) + size.to_bytes(2, "big") + mask_key
    return bytes((0x81, masked | 127)) + size.to_bytes(8, "big") + mask_key


def masked_data(data: bytes, mask_key: bytes) -> bytes:
    """A client frame's data XORed with its 4-byte key repeated (RFC 6455 5.3), in C: one big-integer
    XOR instead of a loop over the bytes."""
    size = len(data)
    key = (mask_key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def splice(head: dict[str, Any], key: str, raw: bytes) -> bytes:
    """A frame of `head` plus one member whose value is raw JSON text, added without parsing it."""
    return add_member(orjson.dumps(head), key, raw)


def add_member(encoded: bytes, key: str, raw: bytes | None) -> bytes:
    """A JSON object's text with one more member whose value is raw JSON text (None: null)."""
    return encoded[:-1] + b',"' + key.encode() + b'":' + (raw if raw is not None else b"null") + b"}"


def check_readable(value: bytes, field: str) -> None:
    """A payload or result every SDK can read inside the frame that carries it; else ProtocolError.

    msgspec's skip of a Raw value checks the syntax only: a number beyond a double (`1e400`)
    passes, and nesting as deep as its recursion guard allows. orjson is the SDKs' parser: a value
    it reads one level down (every frame splices it in as a top-level member) is one they read. Its
    full parse costs about 6 ns a byte, so a long value is parsed only when it could fail: when
    msgspec's guard (the recursion limit) lets nesting reach the SDKs' limit, or when a number could
    be out of range: its exponent has 3 digits or more, or, with at most 2, it has 210 digits or
    more before the point (a run of 209 digits is enough to look closer)."""
    if len(value) >= _CHEAP_BYTES and sys.getrecursionlimit() <= MAX_VALUE_DEPTH:
        shape = value.translate(_DIGITS_AS_ZERO)
        if not any(mark in shape for mark in _BIG_NUMBER_MARKS):
            return
    try:
        orjson.loads(value if len(value) < 2 * MAX_VALUE_DEPTH else b"[" + value + b"]")
    except orjson.JSONDecodeError as exc:
        why = str(exc).split(": line ", 1)[0]
        raise ProtocolError(BAD_MESSAGE, f"field {field!r} cannot be read by a standard JSON parser ({why}): "
                                         "numbers must fit a double and nesting must stay within "
                                         f"{MAX_VALUE_DEPTH:,} levels", field=field) from None


_CHEAP_BYTES = 4096  # below, orjson's parse costs less than the scan that could skip it
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
_BIG_NUMBER_MARKS = (b"e000", b"e+000", b"0" * 209)


# ---- a member given twice ------------------------------------------------------------------------

_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ESCAPED_LETTER = re.compile(rb"\\u00[67]")  # a \u escape of a letter: a key may be spelled so
_COLON = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*")


@functools.cache
def _quoted(key: str) -> bytes:
    return orjson.dumps(key)


def member_given_twice(data: bytes, key: str, raw: msgspec.Raw | bytes, escapes: bool) -> bool:
    """Whether the top-level member `key` of a frame occurs more than once; `raw` is the value a
    decoder kept (msgspec keeps the last; not copied), `escapes` whether the frame has a backslash. The raw
    text the hub passes on must be the only one in the frame (docs/protocol.md section 3)."""
    quoted = _quoted(key)
    if len(data) <= 4096 and not escapes and data.count(quoted) == 1:
        return False  # a small frame without escapes: two scans cost less than finding the value
    first = data.find(quoted)
    if first < 0:  # not spelled plainly: once at most, unless spelled with a \\u escape
        return _escaped_letter(data) and _top_level_keys(data, key) > 1
    colon = _COLON.match(data, first + len(quoted))
    if colon is not None and data.startswith(raw, colon.end()):
        # the first plain spelling is followed by the value msgspec kept, so it is that value's
        # key; another key could only be after the value, or spelled with a \\u escape before
        end = colon.end() + len(raw)
        if (data.find(quoted, end) < 0 and not _escaped_letter(data, 0, first)
                and not _escaped_letter(data, end)):
            return False
    return _given_twice_slow(data, key, quoted)


def _escaped_letter(data: bytes, start: int = 0, end: int = -1) -> bool:
    end = len(data) if end < 0 else end
    return data.find(b"\\", start, end) >= 0 and _ESCAPED_LETTER.search(data, start, end) is not None


def _given_twice_slow(data: bytes, key: str, quoted: bytes) -> bool:
    if not _escaped_letter(data):
        members = _MEMBERS.decode(data)
        # each plain spelling is a top-level key or inside a member's value; a value lost to a
        # repeated key is not in `members`, so more than one left over is only a suspicion (and a
        # key that holds a quote could hold the quoted key: left to json below)
        if (not any('"' in name for name in members)
                and data.count(quoted) - sum(bytes(v).count(quoted) for v in members.values()) <= 1):
            return False
    return _top_level_keys(data, key) > 1


def _top_level_keys(data: bytes, key: str) -> int:
    """How often `key` is a top-level key, escapes decoded: the last resort (a parse into Python
    objects, still 5x to 50x faster than protocol.raw_member's scanner)."""
    try:
        members = json.loads(data, object_pairs_hook=list)
    except RecursionError:  # as deep as msgspec allows, deeper than json: count plain spellings
        return data.count(_quoted(key))
    return sum(name == key for name, _ in members)
