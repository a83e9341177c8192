"""Reading the queue's events stream: the part of the Store that the events reader of every hub,
and a client that resumes, use. A mixin of Store (store.py), which owns the connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from empfast.ids import LAST_EVENT_KEY, event_key
from empfast.store.pipelined import PipelinedConnection, command
from empfast.store.records import EventEntry, EventFields, stream_entry, text

if TYPE_CHECKING:
    from redis import asyncio as aioredis

    from empfast.keys import QueueKeys


class EventReads:
    redis: aioredis.Redis
    keys: QueueKeys
    script_connection: PipelinedConnection | None
    _events_connection: PipelinedConnection | None

    async def read_event_entries(self, last_id: str = "$", *, count: int = 1000,
                                 block_ms: int | None = None) -> list[EventEntry]:
        """Events after last_id ("$": only new ones), oldest first, as Redis sends them: each
        entry's id and its fields flat, parsed in C. The events reader routes most entries by two
        fields at fixed places (b"ev" first, then b"id": every script writes them so) and makes
        a dict of an entry only when someone gets it."""
        if self.script_connection is None:  # the embedded store: redis-py's dicts, made flat
            reply = await self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
            return [(entry_id, [x for pair in fields.items() for x in pair])
                    for entry_id, fields in reply[0][1]] if reply else []
        if self._events_connection is None:  # a blocking read holds its connection: one of its own
            self._events_connection = PipelinedConnection.like(self.redis)
            assert self._events_connection is not None
        connection = self._events_connection
        connection.command_timeout_s = self.script_connection.command_timeout_s + (block_ms or 0) / 1000
        args: tuple[str | int, ...] = ("XREAD", "COUNT", count)
        if block_ms is not None:
            args += ("BLOCK", block_ms)
        reply = await connection.call(command(*args, "STREAMS", self.keys.events, last_id))
        return reply[0][1] if reply else []

    async def read_events(self, last_id: str = "$", *, count: int = 1000,
                          block_ms: int | None = None) -> list[tuple[str, EventFields]]:
        """Events after last_id ("$": only new ones), oldest first, each as its id and a dict."""
        return [stream_entry(entry)
                for entry in await self.read_event_entries(last_id, count=count, block_ms=block_ms)]

    async def last_event_id(self) -> str:
        """The id of the newest event, so a starting hub reads only what comes after it."""
        newest = await self.redis.xrevrange(self.keys.events, count=1)
        return text(newest[0][0]) if newest else "0-0"

    async def first_event_id(self) -> str | None:
        """The id of the oldest event still in the stream (None when it is empty)."""
        oldest = await self.redis.xrange(self.keys.events, count=1)
        return text(oldest[0][0]) if oldest else None

    async def job_events_since(self, job_id: str, since: str, *,
                               scan: int = 10_000) -> tuple[list[tuple[str, EventFields]], bool]:
        """Events of one job after `since` (for a client that resumes), in one round trip. It scans
        the oldest `scan` entries after `since` (an XRANGE from there; the default is the stream's
        trimmed length), so a job's later events past that window are not returned. The flag is
        False when `since` is older than the stream's first entry: trimmed events may be missing."""
        since_key = event_key(since)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrange(self.keys.events, count=1)
        if since_key != LAST_EVENT_KEY:  # nothing comes after it, and Redis refuses "(" of it
            pipe.xrange(self.keys.events, min=f"({since}", count=scan)
        first, *after = await pipe.execute()
        entries = after[0] if after else []
        first_key = event_key(text(first[0][0])) if first else None
        complete = first_key is None or since_key is None or first_key <= since_key
        wanted = job_id.encode()
        events = [(text(entry_id), fields) for entry_id, fields in entries
                  if fields.get(b"id") == wanted and fields.get(b"ev") != b"worker"]
        return events, complete
