"""Identifiers shared by the store, the hub and the SDKs: job ids, event ids and default worker ids.
A leaf module."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket

_job_id_prefix = ""
_job_ids = itertools.count()


def _new_job_id_prefix() -> None:
    """80 random bits a process, drawn again in a forked child: ids of two processes never meet."""
    global _job_id_prefix, _job_ids
    _job_id_prefix, _job_ids = secrets.token_hex(10), itertools.count()


_new_job_id_prefix()
os.register_at_fork(after_in_child=_new_job_id_prefix)


def new_job_id() -> str:
    """A fresh job id (32 hex digits: this process's random prefix, then a counter); clients may
    also choose their own. Unique, not secret (docs/security.md), and no system call per id, as a
    uuid4 would make (a few per cent of a busy hub's time)."""
    return f"{_job_id_prefix}{next(_job_ids):012x}"


# each of the two numbers of a Redis stream id is unsigned 64-bit; Redis refuses a larger one
MAX_EVENT_ID_PART = (1 << 64) - 1
LAST_EVENT_KEY = (MAX_EVENT_ID_PART, MAX_EVENT_ID_PART)


def event_key(event_id: object) -> tuple[int, int] | None:
    """An event id ("<ms>-<seq>", a Redis stream id) as a pair that orders like the stream; None when
    it is not one (e.g. the "" of older hubs)."""
    if not isinstance(event_id, str) or not event_id:
        return None
    ms, _, seq = event_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return None


def default_worker_id() -> str:
    """host-pid-random: stable for one Worker object, unique across processes on one host."""
    host = re.sub(r"[^A-Za-z0-9._:@-]", "-", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
