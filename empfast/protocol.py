"""The wire protocol's shared vocabulary: its version, which statuses and events are final, the
id patterns, and the raw-JSON splicing that lets payloads and results cross the hub as the exact
text they arrived as. What each inbound message looks like is declared in messages.py;
docs/protocol.md is the contract. No I/O here.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

PROTOCOL_VERSION = 1

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


def splice(head: dict[str, Any], key: str, raw: bytes) -> bytes:
    """A frame of `head` plus one member whose value is raw JSON text, added without parsing it."""
    return orjson.dumps(head)[:-1] + b',"' + key.encode() + b'":' + raw + b"}"
