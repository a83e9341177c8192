"""Reading the queue's events stream: the part of the Store that the events reader of every hub,
and a client that resumes, use. A mixin of Store (store.py), which owns the connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from empfast.ids import LAST_EVENT_KEY, event_key
from empfast.store.pipelined import PipelinedConnection, command
from empfast.store.records import EventEntry, EventFields, entry_events, event_fields, stream_events, text

if TYPE_CHECKING:
    from redis import asyncio as aioredis

    from empfast.keys import QueueKeys


class EventReads:
    redis: aioredis.Redis
    keys: QueueKeys
    script_connection: PipelinedConnection | None
    _events_connection: PipelinedConnection | None

    # Entries may hold several jobs' events whose field names repeat (records.entry_events), which
    # redis-py's dicts would merge: the store's client hands stream replies over as Redis sends them.
    STREAM_COMMANDS = ("XRANGE", "XREVRANGE", "XREAD")

    def _read_streams_flat(self) -> None:
        for name in self.STREAM_COMMANDS:
            self.redis.response_callbacks.pop(name, None)

    async def read_event_entries(self, last_id: str = "$", *, count: int = 1000,
                                 block_ms: int | None = None) -> list[EventEntry]:
        """Entries after last_id ("$": only new ones), oldest first, as Redis sends them: each
        entry's id and its fields flat, parsed in C. The events reader routes most events by two
        fields at fixed places (b"ev" first, then b"id": every script writes them so) and makes a
        dict of an event only when someone gets it. An entry may hold several events
        (records.entry_events)."""
        args: tuple[str | int, ...] = ("XREAD", "COUNT", count)
        if block_ms is not None:
            args += ("BLOCK", block_ms)
        args += ("STREAMS", self.keys.events, last_id)
        if self.script_connection is None:  # the embedded store: through fakeredis
            reply = await self.redis.execute_command(*args)
            if isinstance(reply, dict):  # fakeredis answers XREAD as a map
                return list(reply.get(self.keys.events.encode(), []))
            return reply[0][1] if reply else []
        if self._events_connection is None:  # a blocking read holds its connection: one of its own
            self._events_connection = PipelinedConnection.like(self.redis, self.keys.events)
            assert self._events_connection is not None
        connection = self._events_connection
        connection.command_timeout_s = self.script_connection.command_timeout_s + (block_ms or 0) / 1000
        reply = await connection.call(command(*args))
        return reply[0][1] if reply else []

    async def read_events(self, last_id: str = "$", *, count: int = 1000,
                          block_ms: int | None = None) -> list[tuple[str, EventFields]]:
        """Events after last_id ("$": only new ones), oldest first, each as its entry's id and a
        dict (the events of one entry share its id)."""
        entries = await self.read_event_entries(last_id, count=count, block_ms=block_ms)
        return [event for entry in entries for event in stream_events(entry)]

    async def last_event_id(self) -> str:
        """The id of the newest event, so a starting hub reads only what comes after it."""
        newest = await self.redis.xrevrange(self.keys.events, count=1)
        return text(newest[0][0]) if newest else "0-0"

    async def first_event_id(self) -> str | None:
        """The id of the oldest event still in the stream (None when it is empty)."""
        oldest = await self.redis.xrange(self.keys.events, count=1)
        return text(oldest[0][0]) if oldest else None

    async def newest_event_id(self) -> str | None:
        """The id of the newest event in the stream (None when it is empty)."""
        newest = await self.redis.xrevrange(self.keys.events, count=1)
        return text(newest[0][0]) if newest else None

    async def entries_since(self, since: str, *, scan: int = 10_000) -> tuple[list[EventEntry], bool]:
        """The entries after `since`, oldest first, at most `scan` (an XRANGE from there), in one
        round trip: for a job's subscriber or a whole feed that resumes. The flag is False when
        `since` is older than the stream's first entry: trimmed events may be missing."""
        since_key = event_key(since)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrange(self.keys.events, count=1)
        if since_key != LAST_EVENT_KEY:  # nothing comes after it, and Redis refuses "(" of it
            pipe.xrange(self.keys.events, min=f"({since}", count=scan)
        first, *after = await pipe.execute()
        first_key = event_key(text(first[0][0])) if first else None
        complete = first_key is None or since_key is None or first_key <= since_key
        return (after[0] if after else []), complete

    async def job_events_since(self, job_id: str, since: str, *,
                               scan: int = 10_000) -> tuple[list[tuple[str, EventFields]], bool]:
        """Events of one job after `since` (for a client that resumes), in one round trip. It scans
        the oldest `scan` entries after `since` (the default is the stream's trimmed length), so a
        job's later events past that window are not returned. The flag: as entries_since's."""
        entries, complete = await self.entries_since(since, scan=scan)
        wanted = job_id.encode()
        events = []
        for entry_id, flat in entries:
            if flat[1] == b"worker" or wanted not in flat:  # most entries: a cheap test in C first
                continue
            events.extend((text(entry_id), event_fields(one)) for one in entry_events(flat)
                          if one[3] == wanted)
        return events, complete
