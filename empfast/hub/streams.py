"""The HTTP side's peers and Server-Sent Events (docs/management.md section 4).

An HTTP request is answered by the hub's own handlers, as a WebSocket frame is: a `RequestPeer` is a
Peer without a socket that collects what the handlers send. An SSE stream is a `StreamPeer`, one
more subscriber of the hub's events reader (a monitor in the job feed, or a subscriber of one job),
so a browser tab costs Redis nothing of its own: the reader's fan-out queues frames into it, and the
response writes them out. Its queue is bounded (HubConfig.max_outbound_bytes, as for a WebSocket
peer): a client that does not read is dropped, not buffered without end.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson
from picows import WSCloseCode

from empfast.hub import frames
from empfast.hub.auth import Identity
from empfast.hub.conn import Peer
from empfast.ids import event_key
from empfast.messages import SubscribeStats
from empfast.store import entry_events, event_fields

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
EVENT_ID = b'"event_id":"'
TYPE = b'"type":"'


class RequestPeer(Peer):
    """One HTTP request as a connection of `role` with the identity its token gives: what the
    hub's handlers send it (a reply, or an error frame) is kept in `sent`."""

    def __init__(self, hub: Hub, role: str, identity: Identity, room: QueueRoom | None = None) -> None:
        super().__init__(hub, room or hub.default_room, role, None, True)
        self.identity = identity
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def send_framed(self, framed: bytes) -> None:
        self.send(unframed(framed))

    def flush(self) -> None:
        pass

    def close_quietly(self, close_code: int = WSCloseCode.OK, reason: str = "") -> None:
        pass

    def forget_subscriptions(self) -> None:
        """A request is over: the jobs a handler subscribed it to (a retry does) are dropped."""
        for job_id in list(self.subs.jobs):
            self.room.unsubscribe(self, job_id)


class StreamPeer(RequestPeer):
    """An SSE response's peer: frames wait in a queue of at most `max_bytes` until written."""

    def __init__(self, hub: Hub, role: str, identity: Identity, room: QueueRoom | None = None) -> None:
        super().__init__(hub, role, identity, room)
        self.queued: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.max_bytes = hub.config.max_outbound_bytes
        self.wake = asyncio.Event()
        self.ended = False
        self.overflowed = False
        # a resumed feed: the frames read back from the stream, sent first, and the last entry they
        # cover (a live frame up to it is one of them, come late through the reader)
        self.replay: list[bytes] = []
        self.replayed_through: tuple[int, int] | None = None

    def send(self, data: bytes) -> None:
        if self.ended:
            return
        self.queued_bytes += len(data)
        if self.queued_bytes > self.max_bytes:
            self.overflowed = True  # a slow reader: dropped, as a WebSocket peer would be (4002)
            self.end()
            # out of the registries at once, even if its response never runs again (a fan-out may be
            # iterating over them now, hence not inside this call)
            self.loop.call_soon(self.hub.detach, self)
            return
        self.queued.append(data)
        self.wake.set()

    def close_quietly(self, close_code: int = WSCloseCode.OK, reason: str = "") -> None:
        self.end()  # the hub stops, or replaces this subscriber

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def take(self) -> bytes:
        frame = self.queued.popleft()
        self.queued_bytes -= len(frame)
        return frame


def unframed(framed: bytes) -> bytes:
    """The data of one unmasked WebSocket frame (protocol.frame_header + data): a fan-out to many
    connections frames its frame once."""
    size = framed[1] & 0x7F
    return framed[2 + (2 if size == 126 else 8 if size == 127 else 0):]


def member(frame: bytes, key: bytes) -> str | None:
    """A string member of a frame's head, found without parsing it. Raw payloads and results are
    spliced in at a frame's end, after its own members, and a JSON string cannot hold an unescaped
    quote, so the first match is the frame's own."""
    start = frame.find(key)
    if start < 0:
        return None
    start += len(key)
    return frame[start:frame.index(b'"', start)].decode()


def replayed(frame: bytes, through: tuple[int, int] | None) -> bool:
    """Whether a live frame was sent already in a resumed feed's replay (its entry is not later than
    the replay's last); stats, which have no event id, never were."""
    if through is None:
        return False
    event_id = member(frame, EVENT_ID)
    key = event_key(event_id)
    return key is not None and key <= through


def sse_message(frame: bytes) -> bytes:
    """One frame as an SSE event: `event:` its type, `id:` its event id (what Last-Event-ID gives
    back on a reconnect), `data:` the frame. A raw payload may hold line breaks (whitespace in JSON,
    never inside a string), and each line of data needs its prefix."""
    head = b""
    event_id = member(frame, EVENT_ID)
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    kind = member(frame, TYPE)
    if kind is not None:
        head += b"event: " + kind.encode() + b"\n"
    if b"\r" in frame:
        frame = frame.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return head + b"data: " + frame.replace(b"\n", b"\ndata: ") + b"\n\n"


class Streams:
    """The open SSE streams of one hub's HTTP side."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.open: set[StreamPeer] = set()

    def __len__(self) -> int:
        return len(self.open)

    def end_all(self) -> None:
        for peer in list(self.open):
            peer.end()

    async def job_feed(self, peer: StreamPeer, interval_s: float, since: str | None = None,
                       job_types: frozenset[str] = frozenset(), *, on: bool = True) -> None:
        """Make `peer` a monitor in the job feed with stats pushes every `interval_s` (its first
        stats at once). With `since` (Last-Event-ID), the entries after it are read back once, after
        joining the feed so that nothing falls between the two: one XRANGE of at most the stream's
        length, not a reader. Raises what Redis raises (the caller detaches the peer)."""
        hub = self.hub
        await hub.monitor_handlers.on_subscribe_stats(peer, SubscribeStats(interval_s=interval_s))
        room = peer.room
        room.monitors.add(peer)
        room.set_job_feed(peer, on, job_types)
        if since is None:
            return
        scan = max(10_000, 2 * room.store.settings.events_maxlen)  # the stream is trimmed about there
        entries, complete = await room.store.entries_since(since, scan=scan)
        # a full scan may stop short of where the live feed began
        complete = complete and len(entries) < scan
        replay: list[bytes] = []
        size = 0
        for entry_id, flat in entries:
            event_id = entry_id.decode()
            if flat[1] == b"worker":
                fields = event_fields(flat)
                built = [frames.worker_status(fields[b"id"].decode(), fields[b"status"].decode(), event_id)]
            elif flat[1] in frames.TYPE_SETTING_KINDS:  # a pause or a limit, as the live feed has it
                built = [frames.type_setting_event(event_id, event_fields(flat))]
            else:
                built = [frames.job_event(event_id, event_fields(one)) for one in entry_events(flat)]
            size += sum(map(len, built))
            if size > peer.max_bytes:  # no more than a stream may queue: the rest is missing
                complete = False
                break
            replay += built
            peer.replayed_through = event_key(event_id)
        peer.replay = [orjson.dumps({"type": "subscribed", "resumed": complete}), *replay]

    async def events(self, peer: StreamPeer, job_id: str | None = None,
                     last_kind: str | None = None) -> AsyncIterator[bytes]:
        """The body of an SSE response: the peer's frames as they come, a keep-alive comment when
        none came for KEEPALIVE_S. A job's stream ends after its final event (the fan-out then ends
        the subscription), a bulk action's after `last_kind`; every stream ends when the hub stops
        or the client goes. The frames queued at a wake-up go out as one chunk: one write for a
        read's worth of events, not one per event."""
        self.open.add(peer)
        try:
            yield b"retry: 1000\n\n" + b"".join(map(sse_message, peer.replay))
            peer.replay.clear()
            while True:
                last = False
                chunk: list[bytes] = []
                while peer.queued and not last:
                    frame = peer.take()
                    last = last_kind is not None and member(frame, TYPE) == last_kind
                    if not replayed(frame, peer.replayed_through):
                        chunk.append(sse_message(frame))
                if chunk:
                    yield b"".join(chunk)
                if last or peer.ended or (job_id is not None and job_id not in peer.subs.jobs):
                    break
                peer.wake.clear()
                try:
                    await asyncio.wait_for(peer.wake.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            self.open.discard(peer)
            self.hub.detach(peer)
            if peer.overflowed:
                log.warning("dropped an SSE stream that did not read (over %d bytes queued)", peer.max_bytes)


def sse_headers() -> dict[str, str]:
    """What an SSE response sends besides its type: no caching, and no buffering by nginx."""
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
