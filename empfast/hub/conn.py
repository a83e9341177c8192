"""One peer's WebSocket connection to the hub: its inbox, the batching of queued frames, backpressure
both ways and close codes, plus the small per-role state objects (a worker's slots and held jobs, a
subscriber's job subscriptions, a monitor's stats pushes). Frames are handled by the hub's routing
(server.py); nothing here talks to Redis.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from redis.exceptions import RedisError

from empfast import errors as e
from empfast.decoding import MessageError, decode
from empfast.errors import EmpfastError
from empfast.hub import frames
from empfast.hub.auth import OPEN, Identity
from empfast.messages import AnyMessage
from empfast.protocol import frame_header

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")

INBOX_BATCH = 256  # frames of one connection taken at once (completions among them share a call)
INBOX_HIGH = 2048  # frames queued on one connection before the hub stops reading from it
# batches of one connection whose store call may be in flight at once (see Peer._flush)
MAX_IN_FLIGHT = 4
# Bytes are bounded by HubConfig.max_inbound_bytes (per connection) and max_inbound_total_bytes (the
# hub); reading resumes below half of each, so a sender at the budget is not paused on every frame.
# WebSocket close codes (docs/protocol.md section 2)
NOT_REGISTERED_YET = "send register_worker first"
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_TEXT = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_REPLACED = 4001
CLOSE_SLOW_CONSUMER = 4002


@dataclass(slots=True)
class WorkerSlots:
    """A registered worker's state on this hub: what it runs, the jobs it holds, and when it was last
    heard from (dispatch skips a worker that went quiet, docs/protocol.md 4.4)."""

    worker_id: str
    job_types: frozenset[str]
    concurrency: int
    draining: bool = False
    jobs: dict[str, int] = field(default_factory=dict)  # job id -> attempt (the lease's fencing token)
    heard_at: float = 0.0  # loop time of its last registration or heartbeat the store accepted
    lapsed: bool = False  # its record in Redis is gone: no dispatch until it heartbeats or registers
    batch: bool = False  # it asked for jobs_assigned frames (register_worker)

    def free(self) -> int:
        return 0 if self.draining else max(0, self.concurrency - len(self.jobs))

    def heard(self, now: float) -> None:
        self.heard_at, self.lapsed = now, False

    def awake(self, now: float, quiet_after_s: float) -> bool:
        """Whether dispatch may give it jobs: registered, and heard from within `quiet_after_s`. A
        frozen worker's jobs would each wait out a whole lease."""
        return not self.lapsed and now - self.heard_at <= quiet_after_s

    def forget(self, job_id: str, attempt: int) -> None:
        """Drop a held job once its attempt ended; a message about an older attempt of the same job
        must not free the slot the newer attempt still takes."""
        if self.jobs.get(job_id) == attempt:
            del self.jobs[job_id]

    def takes_offers(self, job_type: str) -> bool:
        """A worker registered with concurrency 0 is offered jobs and claims them by id."""
        return self.concurrency == 0 and not self.draining and job_type in self.job_types


@dataclass(slots=True)
class Subscriptions:
    """The jobs a client or monitor follows, and live frames buffered while a subscribe reads its
    replay (so a resume has neither a gap nor a repeat)."""

    jobs: set[str] = field(default_factory=set)
    buffered: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # job id -> frames


@dataclass(slots=True)
class StatsPushes:
    """A monitor's subscribe_stats: how often it wants stats, the last stats it got, and when its
    next check is due (loop time): a push is never closer than `interval_s` to the one before."""

    interval_s: float
    sent: bytes
    next_at: float


class OverRate:
    """A frame that came over the connection's rate (HubConfig.max_frames_per_s): it keeps its
    place in the inbox, so its refusal is answered in order, but it is not handled."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Peer(WSListener):
    """One WebSocket connection (a client, worker or monitor). Callbacks stay synchronous and short;
    frames are handled in order by one task per connection, so a worker's progress never overtakes
    its completion."""

    def __init__(self, hub: Hub, room: QueueRoom, role: str, path_id: str | None, authorized: bool) -> None:
        self.hub, self.role, self.path_id, self.authorized = hub, role, path_id, authorized
        self.room = room  # the queue this connection is bound to (its URL's ?queue=)
        # the loop, kept: asyncio.get_running_loop() makes a getpid() system call on Python 3.11
        self.loop = asyncio.get_running_loop()
        self.transport: WSTransport | None = None
        self.inbox: asyncio.Queue[bytes | OverRate] = asyncio.Queue()
        self.inbox_bytes = 0  # received and not yet handled: queued, or in the batch being handled
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.reading_paused = False
        # the rate's token bucket: a full burst to start with
        self.tokens = float(hub.config.max_frame_burst)
        self.tokens_at = time.monotonic()
        self.subs = Subscriptions()
        self.worker: WorkerSlots | None = None  # set by register_worker
        self.stats: StatsPushes | None = None  # set by subscribe_stats
        self.identity: Identity = OPEN  # what its token allows, set by the hub's routing (auth.py)
        self._outgoing: list[bytes] = []  # frames of this loop turn, headers and data (send)
        self._in_flight: collections.deque[asyncio.Task[None]] = collections.deque()  # see _flush
        self.writes = 0  # socket writes so far: tests count the batching

    # ---- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.hub.connections += 1
        if not self.authorized:
            self.close(e.UNAUTHORIZED, f"missing or wrong token for the {self.role} role: connect with an "
                                       "'Authorization: Bearer ...' header or ?token=...", CLOSE_POLICY)
            return
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.hub.attach(self)
        self.send(frames.welcome(self.role, self.hub.hub_id, self.hub.config.max_frame_bytes, self.room.name))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self.flush()
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind in (WSMsgType.PING, WSMsgType.PONG) or not self.authorized:
            return
        if kind != WSMsgType.TEXT or not frame.fin:
            self.send(frames.error(e.BAD_JSON, "only whole JSON text frames are accepted "
                                               "(no binary, no fragments)"))
            return
        data = frame.get_payload_as_bytes()
        self.hub.frames_in += 1
        limit = self.hub.config.max_frame_bytes
        if len(data) > limit:
            self.close(e.TOO_LARGE, f"frame of {len(data)} bytes is over the limit of {limit}; keep "
                                    "big data in object storage and send its URL", CLOSE_TOO_BIG,
                       limit=limit)
            return
        if not data.isascii() and not _is_utf8(data):
            # RFC 6455 8.1: text that is not UTF-8 fails the connection (a parser would only see it
            # in keys and plain strings, not inside a payload kept as raw bytes)
            self.close_quietly(CLOSE_INVALID_TEXT, "a text frame must be valid UTF-8")
            return
        self.inbox.put_nowait(data if self._take_token() else OverRate(data))
        self.inbox_bytes += len(data)
        hub = self.hub
        hub.inbox_bytes += len(data)
        if not self.reading_paused and (self.inbox.qsize() >= INBOX_HIGH
                                        or self.inbox_bytes >= hub.config.max_inbound_bytes
                                        or hub.inbox_bytes >= hub.config.max_inbound_total_bytes):
            # a peer that sends faster than its frames are handled waits in its own TCP window
            # instead of growing the hub's memory (frames picows has already read still arrive)
            self.reading_paused = True
            hub.reading_paused.add(self)
            transport.underlying_transport.pause_reading()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.hub.connections -= 1
        if self.task:
            self.task.cancel()
        for batch in self._in_flight:
            batch.cancel()
        # a closed connection's frames are dropped: they no longer count against the hub's budget
        self.hub.inbox_released(self.inbox_bytes)
        self.inbox_bytes = 0
        self.hub.detach(self)

    def _take_token(self) -> bool:
        """One frame's worth from the rate's token bucket; False when the connection is over it."""
        config = self.hub.config
        now = time.monotonic()
        self.tokens = min(float(config.max_frame_burst),
                          self.tokens + (now - self.tokens_at) * config.max_frames_per_s)
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def resume_if_caught_up(self) -> None:
        """Read again once this connection, and the hub as a whole, are under half their budgets."""
        hub, transport = self.hub, self.transport
        if (not self.reading_paused or self.inbox.qsize() > INBOX_HIGH // 4
                or self.inbox_bytes > hub.config.max_inbound_bytes // 2
                or hub.inbox_bytes > hub.config.max_inbound_total_bytes // 2):
            return
        self.reading_paused = False
        hub.reading_paused.discard(self)
        if transport is not None and not transport.is_disconnected:
            transport.underlying_transport.resume_reading()

    # ---- sending ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one text frame. The frames of one event-loop turn go out in one socket write (a
        batch of assignments and acks, a fan-out), framed here: a server's frames are unmasked,
        so the frame is a 2- to 10-byte header and the data."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        self.hub.frames_out += 1
        outgoing = self._outgoing
        if not outgoing:
            self.loop.call_soon(self.flush)
        outgoing.append(frame_header(len(data)))
        outgoing.append(data)

    def send_framed(self, framed: bytes) -> None:
        """Send one frame already framed (frame_header + data), built once for many connections (a
        fan-out): written at once when nothing is queued for this connection, else queued after
        what is, so the order holds either way; one call and one write a connection, no callback."""
        self.hub.frames_out += 1
        if self._outgoing:
            self._outgoing.append(framed)
        else:
            self._write(framed)

    def flush(self) -> None:
        """Write the queued frames; before a close frame, or at the end of the loop turn."""
        outgoing = self._outgoing
        if not outgoing:
            return
        data = b"".join(outgoing)
        outgoing.clear()
        self._write(data)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected or transport.is_close_frame_sent:
            return
        transport.underlying_transport.write(data)
        self.writes += 1
        # a peer that stops reading must not grow the hub's memory without bound
        limit = self.hub.config.max_outbound_bytes
        if transport.underlying_transport.get_write_buffer_size() > limit:
            self.transport = None
            transport.send_close(WSCloseCode(CLOSE_SLOW_CONSUMER), b"slow consumer")
            # a graceful close would wait for the buffer to drain, which is what it never does
            transport.underlying_transport.abort()
            log.warning("closed a %s connection that stopped reading (over %d bytes queued)",
                        self.role, limit)

    def reply(self, req: Any, frame: dict[str, Any]) -> None:
        self.send(frames.reply(frame, req))

    def close(self, code: str, message: str, close_code: int, **extra: Any) -> None:
        """Send an error frame, then close with a WebSocket close code (docs/protocol.md 2)."""
        self.send(frames.error(code, message, **extra))
        self.close_quietly(close_code, message)

    def close_quietly(self, close_code: int = WSCloseCode.OK, reason: str = "") -> None:
        self.flush()
        if self.transport is not None:
            self.transport.send_close(WSCloseCode(close_code), reason.encode()[:120])
            self.transport.disconnect()

    def answer_in_order(self, requests: list[AnyMessage], refused_early: list[bytes | None],
                        answers: list[dict[str, Any] | Exception]) -> None:
        """Reply to a batch in request order: a request refused before the store call has its error
        frame in `refused_early`; each of the others (None there) takes the next of `answers`, a
        reply frame or the exception that refused it."""
        pending = iter(answers)
        for request, early in zip(requests, refused_early, strict=True):
            if early is not None:
                self.send(early)
                continue
            answer = next(pending)
            if isinstance(answer, Exception):
                self.send(error_for(answer, request.req, self.role))
            else:
                self.reply(request.req, answer)

    # ---- the inbox ----------------------------------------------------------------------------

    async def _run(self) -> None:
        if self.room.opened is not None:  # a queue opened on first use: its frames wait for it
            try:
                await self.room.opened
            except Exception as exc:
                self.close(e.UNAVAILABLE, f"queue {self.room.name!r} could not be opened ({exc}); try "
                                          "again after a pause", CLOSE_GOING_AWAY)
                return
        # `closed` as well as the cancel: redis-py may turn a cancel inside a read into an error
        while not self.closed:
            batch = [await self.inbox.get()]
            while len(batch) < INBOX_BATCH and not self.inbox.empty():
                batch.append(self.inbox.get_nowait())
            size = sum(len(data) if type(data) is bytes else len(data.data) for data in batch)
            try:
                await self._handle_frames(batch)
            finally:
                if not self.closed:  # else on_ws_disconnected released them all
                    self.inbox_bytes -= size
                    self.hub.inbox_released(size)
            self.resume_if_caught_up()

    async def _handle_frames(self, batch: list[bytes | OverRate]) -> None:
        """Handle frames in order. Each is decoded and validated into its message (messages.py);
        a refused one is answered with its error. A run of consecutive frames of one batchable type
        (a worker's `complete_job`s, a client's `submit_job`s), which queue up when they come faster
        than one round trip each, shares one store call; each frame still gets its own reply, in
        order."""
        run: list[AnyMessage] = []
        for data in batch:
            if type(data) is OverRate:
                await self._flush(run)
                self.send(self._over_rate(data.data))
                continue
            try:
                message = decode(self.role, data)
            except MessageError as exc:
                await self._flush(run)
                self.send(self._refusal(exc))
                continue
            try:
                if run and type(run[0]) is not type(message):
                    await self._flush(run)
                if self.hub.batchable(self, message):
                    run.append(message)
                    continue
                await self._flush(run)  # a batch still in flight answers before this message
                await self.hub.handle(self, message)
            except Exception as exc:
                await self._flush(run)
                self.send(error_for(exc, message.req, self.role))
        await self._flush(run, settle=False)

    def must_register_first(self, kind: str | None) -> bool:
        """A worker may send only register_worker and ping before it has registered; that answer
        comes before any other, for a valid frame (Hub.handle) or a refused one (_refusal)."""
        return self.role == "worker" and self.worker is None and kind not in (None, "register_worker", "ping")

    def _refusal(self, exc: MessageError) -> bytes:
        if self.must_register_first(exc.kind):
            return frames.error(e.NOT_REGISTERED, NOT_REGISTERED_YET, exc.req)
        return frames.error(exc.code, exc.message, exc.req, **exc.extra)

    def _over_rate(self, data: bytes) -> bytes:
        """The refusal of a frame over the rate; it echoes the frame's `req` when it has a valid one
        (decoding is cheap next to handling, which is what the rate limit saves)."""
        try:
            req = decode(self.role, data).req
        except MessageError as exc:
            req = exc.req
        config = self.hub.config
        # when the bucket will hold a whole token again: a peer may send the frame again then
        retry_after_s = round(max(1.0 - self.tokens, 0.0) / config.max_frames_per_s, 3) or 0.001
        return frames.error(e.LIMIT_EXCEEDED, f"this connection sends more than max_frames_per_s "
                            f"({config.max_frames_per_s:g} frames/s, bursts of {config.max_frame_burst}): "
                            f"this frame was not handled; send it again in {retry_after_s:g} s or later, "
                            "more slowly", req, limit=config.max_frames_per_s, retry_after_s=retry_after_s)

    async def _flush(self, run: list[AnyMessage], *, settle: bool = True) -> None:
        """Handle a run of batchable messages. A worker's completions are pipelined: their batch
        is handed to a task and the next frames are read while its store call is in flight, up to
        MAX_IN_FLIGHT batches. Their calls reach Redis in order on the store's one script
        connection, and each batch answers only after the one before it has (a batch whose frames
        were all refused before any store call would otherwise answer first: found by the long
        fuzz). Anything else first waits for them all (`settle`), so its answer never overtakes
        theirs."""
        if run:
            requests = run[:]
            run.clear()
            if self.hub.pipelined(requests[0]):
                before = self._in_flight[-1] if self._in_flight else None
                task = self.loop.create_task(self.hub.handle_pipelined(self, requests, before))
                self._in_flight.append(task)
                self.hub.peer_tasks.add(task)  # the hub's stop waits for it, as for the connection's
                task.add_done_callback(self._batch_done)
                if len(self._in_flight) >= MAX_IN_FLIGHT:
                    await self._in_flight.popleft()
            else:
                await self._settle()
                await self.hub.handle_batch(self, requests)
        if settle:
            await self._settle()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self.hub.peer_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and task not in self._in_flight:
            log.error("a %s batch failed after its connection closed", self.role, exc_info=task.exception())

    async def _settle(self) -> None:
        while self._in_flight:
            await self._in_flight.popleft()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def error_for(exc: Exception, req: Any, role: str) -> bytes:
    """The error frame that answers a request which raised `exc`: its code comes from the errors
    table (empfast/errors.py); a Redis failure is `unavailable`, anything else `internal`."""
    if isinstance(exc, EmpfastError):
        return frames.error(exc.code, str(exc), req, **exc.wire_extra())
    if isinstance(exc, (RedisError, OSError)):
        log.warning("Redis failed on a %s frame: %s", role, exc)
        return frames.error(e.UNAVAILABLE, f"the hub cannot reach Redis ({exc}); the outcome is unknown: "
                            "retry after a pause", req)
    log.error("internal error handling a %s frame", role, exc_info=exc)
    return frames.error(e.INTERNAL, "the hub failed on this message; it was logged", req)
