"""Decoding one inbound frame, side by side in one run (no sockets, no Redis):

(The hand-written path the hub used before messages.py, orjson.loads + a Python tokenizer for the
raw payload + per-field checks, was measured beside these before it was removed: bench/README.md
keeps those figures.)
- `msgspec`: one msgspec.json.Decoder of a Struct whose payload/result is msgspec.Raw, which
  validates every field in C and keeps the payload as the exact bytes it arrived as;
- `messages_decode`: empfast.decoding.decode, the whole of it (the role's tagged union, the byte
  and control-character checks of names, the check that the payload is given once, and for a
  refused frame the error with its code and field), then the hub's check_value of the payload or
  result (size, and that orjson, the SDKs' parser, reads it: a full parse, about 4 ns a byte);
- `orjson_loads_only`: orjson's plain parse of the frame, for reference (it validates nothing).

Frames: a small submit_job, a submit_job with a ~700 KB payload, a complete_job with a result, and
three refused frames (a payload over the limit in a ~1 MiB frame, a bad field after a big payload,
and a big frame that is not valid JSON). Each group holds the paths for one frame. The encode
groups compare orjson with msgspec for outbound frames. Figures and ratios: bench/README.md.
Run: python -m pytest bench/test_bench_decode.py --benchmark-only
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from empfast import decoding
from empfast import protocol as p
from empfast.errors import LIMIT_EXCEEDED, ProtocolError
from empfast.hub.clients import check_value
from empfast.limits import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_ATTEMPTS,
    MAX_DELAY_S,
    MAX_JOB_ID_BYTES,
    MAX_JOB_TYPE_BYTES,
    MAX_PRIORITY,
    payload_limit,
)

PAYLOAD_CAP = payload_limit(DEFAULT_MAX_FRAME_BYTES)

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_JOB_TYPE_BYTES)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_JOB_ID_BYTES)]


def _utf8_bytes(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


class SubmitJob(msgspec.Struct, kw_only=True):
    """The submit_job of docs/protocol.md 4.1, as empfast/messages.py declares it (without the tag,
    so that this bench measures the decoding alone)."""

    type: str
    req: str | int | float | None = None
    job_type: Name
    payload: msgspec.Raw = msgspec.Raw(b"{}")
    priority: Annotated[int, msgspec.Meta(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0
    job_id: JobId | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)] = 3
    delay_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY_S)] = 0.0
    subscribe: bool = True

    def __post_init__(self) -> None:
        # msgspec's max_length counts characters; the limits are bytes of UTF-8
        if _utf8_bytes(self.job_type) > MAX_JOB_TYPE_BYTES:
            raise ValueError("Field `job_type` is over 128 bytes")


class CompleteJob(msgspec.Struct, kw_only=True):
    type: str
    req: str | int | float | None = None
    job_id: JobId
    attempt: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    result: msgspec.Raw = msgspec.Raw(b"null")


SUBMIT = msgspec.json.Decoder(SubmitJob)
COMPLETE = msgspec.json.Decoder(CompleteJob)


def _check_size(value: msgspec.Raw, field: str) -> None:
    if len(value) > PAYLOAD_CAP:
        raise ProtocolError(LIMIT_EXCEEDED, f"the {field} is over the limit", field=field, limit=PAYLOAD_CAP)


def msgspec_submit(frame: bytes) -> SubmitJob:
    message = SUBMIT.decode(frame)
    _check_size(message.payload, "payload")
    return message


def msgspec_complete(frame: bytes) -> CompleteJob:
    message = COMPLETE.decode(frame)
    _check_size(message.result, "result")
    return message


# ---- frames --------------------------------------------------------------------------------------

def _records(count: int) -> list[dict[str, Any]]:
    """A realistic payload: records with ids, names, numbers, nested lists, escapes and non-ASCII."""
    return [{"id": i, "sku": f"SKU-{i:08d}", "name": f"item \"{i}\" caf\u00e9", "price": i * 0.25,
             "tags": ["red", "large", "sale"], "dims": {"w": 10, "h": 20, "d": i % 7},
             "active": i % 2 == 0, "note": None} for i in range(count)]


def _payload_of(size: int) -> bytes:
    count = 1
    while len(orjson.dumps({"rows": _records(count)})) < size:
        count *= 2
    lo, hi = count // 2, count
    while lo < hi:  # the largest payload not over `size`
        mid = (lo + hi + 1) // 2
        if len(orjson.dumps({"rows": _records(mid)})) <= size:
            lo = mid
        else:
            hi = mid - 1
    return orjson.dumps({"rows": _records(lo)})


SMALL_SUBMIT = (b'{"type":"submit_job","req":17,"job_type":"resize","job_id":"order-17","priority":5,'
                b'"payload":{"url":"https://example.org/a.png","w":640}}')
BIG_PAYLOAD = _payload_of(700_000)
BIG_SUBMIT = (b'{"type":"submit_job","req":18,"job_type":"resize","job_id":"order-18","payload":'
              + BIG_PAYLOAD + b',"priority":5}')
COMPLETE_FRAME = (b'{"type":"complete_job","req":3,"job_id":"order-17","attempt":1,'
                  b'"result":{"url":"https://example.org/a-small.png","bytes":48213,"ms":12.5}}')
# refused: a payload over the limit (frame limit minus 4 KiB) in a frame under the frame limit
OVER_LIMIT = (b'{"type":"submit_job","req":19,"job_type":"resize","payload":'
              + _payload_of(PAYLOAD_CAP + 2_000) + b"}")
# refused: a bad field that comes after a big payload
BAD_FIELD = (b'{"type":"submit_job","req":20,"job_type":"resize","payload":' + BIG_PAYLOAD
             + b',"priority":"high"}')
# refused: a big frame that is not JSON (cut off before its end)
BAD_JSON = BIG_SUBMIT[:-40]

assert len(OVER_LIMIT) <= DEFAULT_MAX_FRAME_BYTES < len(OVER_LIMIT) + 4096 + 2_000

def messages_submit(frame: bytes) -> Any:
    """empfast.decoding.decode: the client's tagged union, the role and byte checks, and the check
    that the payload is given once; then the hub's check of the payload (its copy to bytes, size,
    and that the SDKs' parser reads it)."""
    message = decoding.decode("client", frame)
    check_value(bytes(message.payload), "payload", DEFAULT_MAX_FRAME_BYTES)
    return message


def messages_complete(frame: bytes) -> Any:
    message = decoding.decode("worker", frame)
    check_value(bytes(message.result), "result", DEFAULT_MAX_FRAME_BYTES)
    return message


PATHS: dict[str, dict[str, Callable[[bytes], Any]]] = {
    "submit": {"msgspec": msgspec_submit, "messages_decode": messages_submit,
               "orjson_loads_only": orjson.loads},
    "complete": {"msgspec": msgspec_complete, "messages_decode": messages_complete,
                 "orjson_loads_only": orjson.loads},
}

# name -> (frame, paths, rounds, iterations per round, refused with)
CASES: dict[str, tuple[bytes, str, int, int, type[Exception] | None]] = {
    "small_submit": (SMALL_SUBMIT, "submit", 300, 200, None),
    "submit_700kb": (BIG_SUBMIT, "submit", 15, 1, None),
    "complete_result": (COMPLETE_FRAME, "complete", 300, 200, None),
    "refused_over_limit_1mib": (OVER_LIMIT, "submit", 5, 1, ProtocolError),
    "refused_bad_field_700kb": (BAD_FIELD, "submit", 5, 1, Exception),
    "refused_bad_json_700kb": (BAD_JSON, "submit", 15, 1, Exception),
}


def _call(fn: Callable[[bytes], Any], frame: bytes, refused: type[Exception] | None) -> Callable[[], Any]:
    if refused is None:
        return lambda: fn(frame)

    def refuse() -> None:
        try:
            fn(frame)
        except refused:
            return
        raise AssertionError("the frame was not refused")
    return refuse


def _same_outcome(frame: bytes, kind: str) -> None:
    """The hub's decoder and the bare Struct take the same values and payload bytes from a frame."""
    if kind == "submit":
        s, h = msgspec_submit(frame), messages_submit(frame)
        assert (s.req, s.job_type, bytes(s.payload), s.priority, s.job_id, s.max_attempts, s.delay_s,
                s.subscribe) == (h.req, h.job_type, bytes(h.payload), h.priority, h.job_id, h.max_attempts,
                                 h.delay_s, h.subscribe)
    else:
        c, h = msgspec_complete(frame), messages_complete(frame)
        assert (c.req, c.job_id, c.attempt, bytes(c.result)) == (h.req, h.job_id, h.attempt, bytes(h.result))


@pytest.mark.parametrize("path", ["msgspec", "messages_decode", "orjson_loads_only"])
@pytest.mark.parametrize("case", list(CASES))
def test_decode(benchmark: BenchmarkFixture, case: str, path: str) -> None:
    frame, kind, rounds, iterations, refused = CASES[case]
    if path == "orjson_loads_only" and case in ("refused_over_limit_1mib", "refused_bad_field_700kb"):
        pytest.skip("orjson.loads alone refuses no field: a reference for the parse only")
    fn = PATHS[kind][path]
    if refused is None:
        _same_outcome(frame, kind)
    benchmark.group = f"decode-{case}"
    benchmark.extra_info["frame_bytes"] = len(frame)
    benchmark.pedantic(_call(fn, frame, refused), rounds=rounds, iterations=iterations,
                       warmup_rounds=1)


# ---- encoding outbound frames: orjson (today) against msgspec --------------------------------------

class JobAssigned(msgspec.Struct, tag_field="type", tag="job_assigned"):
    job_id: str
    job_type: str
    priority: int
    attempt: int
    lease_s: float
    payload: msgspec.Raw


ENCODER = msgspec.json.Encoder()
HEAD = {"type": "job_assigned", "job_id": "order-17", "job_type": "resize", "priority": 5, "attempt": 1,
        "lease_s": 30.0}
SMALL_PAYLOAD = b'{"url":"https://example.org/a.png","w":640}'
ENCODE_CASES: dict[str, dict[str, Callable[[], bytes]]] = {
    # a push with a raw payload: protocol.splice (orjson + bytes concatenation) or a Struct with Raw
    "job_assigned_small": {
        "orjson_splice": lambda: p.splice(HEAD, "payload", SMALL_PAYLOAD),
        "msgspec_struct": lambda: ENCODER.encode(JobAssigned("order-17", "resize", 5, 1, 30.0,
                                                             msgspec.Raw(SMALL_PAYLOAD))),
    },
    "job_assigned_700kb": {
        "orjson_splice": lambda: p.splice(HEAD, "payload", BIG_PAYLOAD),
        "msgspec_struct": lambda: ENCODER.encode(JobAssigned("order-17", "resize", 5, 1, 30.0,
                                                             msgspec.Raw(BIG_PAYLOAD))),
    },
    # a reply built as a dict, as the hub builds them
    "job_accepted_dict": {
        "orjson_splice": lambda: orjson.dumps({"type": "job_accepted", "req": 1, "job_id": "order-17",
                                               "status": "pending", "created": True, "subscribed": True}),
        "msgspec_struct": lambda: ENCODER.encode({"type": "job_accepted", "req": 1, "job_id": "order-17",
                                                  "status": "pending", "created": True, "subscribed": True}),
    },
}


@pytest.mark.parametrize("path", ["orjson_splice", "msgspec_struct"])
@pytest.mark.parametrize("case", list(ENCODE_CASES))
def test_encode(benchmark: BenchmarkFixture, case: str, path: str) -> None:
    encode = ENCODE_CASES[case][path]
    assert orjson.loads(encode()) == orjson.loads(ENCODE_CASES[case]["orjson_splice"]())
    benchmark.group = f"encode-{case}"
    big = case.endswith("700kb")
    benchmark.pedantic(encode, rounds=30 if big else 300, iterations=1 if big else 200, warmup_rounds=1)
