"""The hub: WebSocket connections, routing and fan-out. A thin router: parse a frame, validate it,
make one store call, send the replies. All state lives in Redis; the hub keeps only what belongs to
its own connections (which jobs a connected worker holds, who subscribed to what). Events of every
hub reach every hub through the queue's Redis events stream. docs/protocol.md is the contract.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from redis.exceptions import RedisError

from empfast import errors as e
from empfast import protocol as p
from empfast.config import HubConfig
from empfast.errors import BadArgument, EmpfastError, JobNotFound, LeaseLost, ProtocolError, WorkerNotFound
from empfast.ids import event_key, new_job_id
from empfast.limits import (
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_CONCURRENCY,
    MAX_DELAY_S,
    MAX_ERROR_CHARS,
    MAX_JOB_ID_BYTES,
    MAX_JOB_TYPES_PER_WORKER,
    MAX_PRIORITY,
    MAX_PROGRESS_MESSAGE_CHARS,
    MAX_SUBSCRIPTIONS,
    payload_limit,
)
from empfast.store import Added, ClaimedJob, Completion, NewJob, Store

log = logging.getLogger("empfast.hub")

INBOX_BATCH = 256  # frames of one connection taken at once (completions among them share a call)
INBOX_HIGH = 2048  # frames queued on one connection before the hub stops reading from it
TERMINAL_EVENTS = frozenset({b"completed", b"cancelled"})
# WebSocket close codes (docs/protocol.md section 2)
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_REPLACED = 4001
CLOSE_SLOW_CONSUMER = 4002


def _store_error(exc: EmpfastError) -> ProtocolError:
    """The wire error for a store refusal (its code is in the errors table)."""
    return ProtocolError(exc.code, str(exc), **exc.wire_extra())


class Conn(WSListener):
    """One WebSocket connection. Callbacks stay synchronous and short; frames are handled in order
    by one task per connection, so a worker's progress never overtakes its completion."""

    def __init__(self, hub: Hub, role: str, path_id: str | None, authorized: bool) -> None:
        self.hub, self.role, self.path_id, self.authorized = hub, role, path_id, authorized
        self.transport: WSTransport | None = None
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.reading_paused = False
        self.subscriptions: set[str] = set()
        # job id -> live frames held back while its replay is read (resume without gap or repeat)
        self.held_back: dict[str, list[tuple[str, bytes]]] = {}
        # monitors: the last stats pushed, when, and how often they want them
        self.stats_sent = b""
        self.stats_sent_at = 0.0
        self.stats_interval_s = 1.0
        # worker connections only
        self.worker_id: str | None = None
        self.job_types: frozenset[str] = frozenset()
        self.concurrency = 0
        self.draining = False
        self.jobs: dict[str, int] = {}  # job id -> attempt (the lease's fencing token)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self.authorized:
            self.close(e.UNAUTHORIZED, "missing or wrong token: connect with ?token=... or an "
                                       "'Authorization: Bearer ...' header", CLOSE_POLICY)
            return
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.hub.conn_tasks.add(self.task)
        self.task.add_done_callback(self.hub.conn_tasks.discard)
        self.hub.attach(self)
        self.send(orjson.dumps({"type": "welcome", "protocol": p.PROTOCOL_VERSION, "role": self.role,
                                "hub_id": self.hub.hub_id,
                                "max_frame_bytes": self.hub.config.max_frame_bytes}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind in (WSMsgType.PING, WSMsgType.PONG) or not self.authorized:
            return
        if kind != WSMsgType.TEXT or not frame.fin:
            self.send(p.error_frame(e.BAD_JSON, "only whole JSON text frames are accepted "
                                                "(no binary, no fragments)"))
            return
        data = frame.get_payload_as_bytes()
        limit = self.hub.config.max_frame_bytes
        if len(data) > limit:
            self.close(e.TOO_LARGE, f"frame of {len(data)} bytes is over the limit of {limit}; keep "
                                    "big data in object storage and send its URL", CLOSE_TOO_BIG,
                       limit=limit)
            return
        self.inbox.put_nowait(data)
        if not self.reading_paused and self.inbox.qsize() >= INBOX_HIGH:
            # a peer that sends faster than its frames are handled waits in its own TCP window
            # instead of growing the hub's memory
            self.reading_paused = True
            transport.underlying_transport.pause_reading()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self.task:
            self.task.cancel()
        self.hub.detach(self)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        transport.send(WSMsgType.TEXT, data)
        # a peer that stops reading must not grow the hub's memory without bound
        limit = self.hub.config.max_outbound_bytes
        if transport.underlying_transport.get_write_buffer_size() > limit:
            self.transport = None
            transport.send_close(WSCloseCode(CLOSE_SLOW_CONSUMER), b"slow consumer")
            # a graceful close would wait for the buffer to drain, which is what it never does
            transport.underlying_transport.abort()
            log.warning("closed a %s connection that stopped reading (over %d bytes queued)",
                        self.role, limit)

    def close(self, code: str, message: str, close_code: int, **extra: Any) -> None:
        """Send an error frame, then close with a WebSocket close code (docs/protocol.md 2)."""
        self.send(p.error_frame(code, message, **extra))
        if self.transport is not None:
            self.transport.send_close(WSCloseCode(close_code), message.encode()[:120])
            self.transport.disconnect()

    async def _run(self) -> None:
        # `closed` as well as the cancel: redis-py may turn a cancel inside a read into an error
        while not self.closed:
            frames = [await self.inbox.get()]
            while len(frames) < INBOX_BATCH and not self.inbox.empty():
                frames.append(self.inbox.get_nowait())
            await self._handle_frames(frames)
            if self.reading_paused and self.inbox.qsize() <= INBOX_HIGH // 4 and self.transport is not None:
                self.reading_paused = False
                self.transport.underlying_transport.resume_reading()

    async def _handle_frames(self, frames: list[bytes]) -> None:
        """Handle frames in order. A run of consecutive frames of one batchable type (a worker's
        `complete_job`s, a client's `submit_job`s), which queue up when they come faster than one
        round trip each, shares one store call; each frame still gets its own reply, in order."""
        batch: list[Request] = []
        for data in frames:
            req = None
            try:
                message = p.parse_frame(data)
                req = p.req_id(message)
                kind = message["type"]
                if batch and batch[0].message["type"] != kind:
                    await self._flush(batch)
                if self.hub.batchable(self, kind):
                    batch.append(Request(message, data, req))
                    continue
                await self.hub.handle(self, message, data, req)
            except Exception as exc:
                await self._flush(batch)
                self.send(error_for(exc, req, self.role))
        await self._flush(batch)

    async def _flush(self, batch: list[Request]) -> None:
        if batch:
            requests = batch[:]
            batch.clear()
            await self.hub.handle_batch(self, requests)


class Request(NamedTuple):
    message: dict[str, Any]
    data: bytes
    req: Any


def error_for(exc: Exception, req: Any, role: str) -> bytes:
    """The error frame that answers a request which raised `exc`."""
    if isinstance(exc, ProtocolError):
        return p.error_frame(exc.code, exc.message, req, **exc.extra)
    if isinstance(exc, EmpfastError):
        err = _store_error(exc)
        return p.error_frame(err.code, err.message, req, **err.extra)
    if isinstance(exc, (RedisError, OSError)):
        log.warning("Redis failed on a %s frame: %s", role, exc)
        return p.error_frame(e.UNAVAILABLE, f"the hub cannot reach Redis ({exc}); the outcome is unknown: "
                             "retry after a pause", req)
    log.error("internal error handling a %s frame", role, exc_info=exc)
    return p.error_frame(e.INTERNAL, "the hub failed on this message; it was logged", req)


Handler = Callable[[Conn, dict[str, Any], bytes, Any], Awaitable[None]]


class Hub:
    """Shared state of one hub process and its background loops."""

    def __init__(self, store: Store, config: HubConfig | None = None) -> None:
        self.store = store
        self.config = config or HubConfig()
        self.hub_id = self.config.hub_id or f"hub-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.conns: set[Conn] = set()
        self.workers: dict[str, Conn] = {}
        self.monitors: set[Conn] = set()
        self.stats_subscribers: set[Conn] = set()
        self.job_subscribers: defaultdict[str, set[Conn]] = defaultdict(set)
        self.server: asyncio.Server | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.conn_tasks: set[asyncio.Task[None]] = set()  # each connection's frame handler
        self._wake_turn = 0
        self.reader_interrupted = False  # set when the events reader failed or stalled
        self.last_event_id = "0-0"
        self.running = False
        self.handlers: dict[str, Handler] = {
            "submit_job": self.on_submit_job, "submit_jobs": self.on_submit_jobs,
            "get_job_status": self.on_get_job_status, "request_job_status": self.on_get_job_status,
            "subscribe_job": self.on_subscribe_job, "unsubscribe_job": self.on_unsubscribe_job,
            "cancel_job": self.on_cancel_job, "retry_job": self.on_retry_job,
            "get_stats": self.on_get_stats,
            "register_worker": self.on_register_worker, "claim_job": self.on_claim_job,
            "update_job_progress": self.on_progress, "complete_job": self.on_complete_job,
            "fail_job": self.on_fail_job, "worker_heartbeat": self.on_heartbeat,
            "worker_status": self.on_worker_status, "subscribe_stats": self.on_subscribe_stats,
            "get_workers": self.on_get_workers, "unregister_worker": self.on_unregister_worker,
            "ping": self.on_ping,
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()
        self.last_event_id = await self.store.last_event_id()
        cfg = self.config
        self.server = await ws_create_server(
            self._route, cfg.host, cfg.port, max_frame_size=cfg.max_frame_bytes * 4 + 1024,
            websocket_handshake_timeout=5)
        loop = asyncio.get_running_loop()
        self.running = True
        self.tasks = [loop.create_task(self._events_loop()), loop.create_task(self._sweep_loop()),
                      loop.create_task(self._stats_loop())]

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        # a cancel can arrive inside a Redis read that turns it into a connection error, so the
        # loops also check `running`, and the wait is bounded
        self.running = False
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        transports = [c.transport for c in self.conns if c.transport is not None]
        for transport in transports:
            transport.send_close(WSCloseCode(CLOSE_GOING_AWAY), b"hub shutting down")
            transport.disconnect()
        # no store call may still be running when the caller closes the store
        for task in self.conn_tasks:
            task.cancel()
        if self.conn_tasks:
            await asyncio.wait(self.conn_tasks, timeout=5)
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), timeout=2)
            except TimeoutError:
                # a peer that does not read never lets a graceful close finish
                for transport in transports:
                    transport.underlying_transport.abort()
                await self.server.wait_closed()

    def _route(self, request: WSUpgradeRequest) -> Conn | WSUpgradeResponseWithListener | None:
        path, _, query = request.path.decode("latin-1").partition("?")
        parts = path.strip("/").split("/")
        if len(parts) not in (2, 3) or parts[0] != "ws" or parts[1] not in p.ROLE_TYPES:
            body = b"empfast hub: connect to /ws/client, /ws/worker or /ws/monitor\n"
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(404, body), None)
        authorized = self._authorized(request, query)
        return Conn(self, parts[1], parts[2] if len(parts) == 3 and parts[2] else None, authorized)

    def _authorized(self, request: WSUpgradeRequest, query: str) -> bool:
        expected = self.config.token
        if expected is None:
            return True
        given = parse_qs(query).get("token", [""])[0]
        header = request.headers.get("authorization", "")
        if not given and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), expected.encode())

    def attach(self, conn: Conn) -> None:
        self.conns.add(conn)
        if conn.role == "monitor":
            self.monitors.add(conn)

    def detach(self, conn: Conn) -> None:
        self.conns.discard(conn)
        self.monitors.discard(conn)
        self.stats_subscribers.discard(conn)
        for job_id in list(conn.subscriptions):
            self.unsubscribe(conn, job_id)
        if conn.worker_id and self.workers.get(conn.worker_id) is conn:
            # its leases stay: a worker that reconnects in time keeps its jobs; else the sweep
            # takes them back when its liveness lapses
            del self.workers[conn.worker_id]

    def batchable(self, conn: Conn, kind: str) -> bool:
        """Whether a frame of this type may join a batch on this connection (its role may send it)."""
        if kind == "complete_job":
            return conn.role == "worker" and conn.worker_id is not None
        return kind == "submit_job" and conn.role == "client"

    async def handle_batch(self, conn: Conn, requests: list[Request]) -> None:
        if requests[0].message["type"] == "complete_job":
            await self.complete_batch(conn, requests)
        else:
            await self.submit_batch(conn, requests)

    async def handle(self, conn: Conn, message: dict[str, Any], data: bytes, req: Any) -> None:
        kind = message["type"]
        p.check_role(conn.role, kind)
        if conn.role == "worker" and kind not in ("register_worker", "ping") and conn.worker_id is None:
            raise ProtocolError(e.NOT_REGISTERED, "send register_worker first")
        await self.handlers[kind](conn, message, data, req)

    @staticmethod
    def reply(conn: Conn, req: Any, frame: dict[str, Any]) -> None:
        if req is not None:
            frame["req"] = req
        conn.send(orjson.dumps(frame))

    # ---- clients -----------------------------------------------------------------------------

    def _new_job(self, body: dict[str, Any], payload: bytes, where: str = "") -> NewJob:
        """A validated job; `where` prefixes field names inside a batch (e.g. "jobs[2].")."""
        try:
            self._check_size(payload, "payload")
            return NewJob(
                job_type=p.get_str(body, "job_type"),
                payload=payload,
                priority=p.get_int(body, "priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
                job_id=p.get_opt_str(body, "job_id", max_bytes=MAX_JOB_ID_BYTES) or new_job_id(),
                max_attempts=p.get_int(body, "max_attempts", 3, 1, MAX_ATTEMPTS),
                delay_ms=p.get_number(body, "delay_s", 0, 0, MAX_DELAY_S) * 1000,
            )
        except ProtocolError as exc:
            if not where:
                raise
            field = where + exc.extra.get("field", "")
            raise ProtocolError(exc.code, f"{where.rstrip('.')}: {exc.message}",
                                  **{**exc.extra, "field": field}) from None

    def _check_size(self, value: bytes, field: str) -> None:
        """Payloads and results leave room for the frame built around them (docs/protocol.md 8)."""
        cap = payload_limit(self.config.max_frame_bytes)
        if len(value) > cap:
            raise ProtocolError(e.LIMIT_EXCEEDED, f"the {field} is {len(value)} bytes, over the limit "
                                  f"of {cap}: keep big data elsewhere and send its URL",
                                  field=field, limit=cap)

    def subscribe(self, conn: Conn, job_id: str) -> bool:
        """Subscribe unless the connection is at its limit; False when it is."""
        if job_id not in conn.subscriptions and len(conn.subscriptions) >= MAX_SUBSCRIPTIONS:
            return False
        conn.subscriptions.add(job_id)
        self.job_subscribers[job_id].add(conn)
        return True

    def unsubscribe(self, conn: Conn, job_id: str) -> None:
        conn.subscriptions.discard(job_id)
        conn.held_back.pop(job_id, None)
        subs = self.job_subscribers.get(job_id)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.job_subscribers[job_id]

    async def _add(self, conn: Conn, jobs: list[NewJob],
                   subscribe: list[bool]) -> tuple[list[Added], list[bool]]:
        """Add jobs, with the submitter subscribed before the store call so it misses no event."""
        subscribed = [wanted and self.subscribe(conn, job.job_id or "")
                      for job, wanted in zip(jobs, subscribe, strict=True)]
        try:
            added = await self.store.add_jobs(jobs)
        except BaseException:
            for job, sub in zip(jobs, subscribed, strict=True):
                if sub:
                    self.unsubscribe(conn, job.job_id or "")
            raise
        return added, subscribed

    async def on_submit_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        await self.submit_batch(conn, [Request(msg, data, req)])

    async def submit_batch(self, conn: Conn, requests: list[Request]) -> None:
        """`submit_job` frames of one client in one store call (addJobs). The script refuses a batch
        as a whole, so if it refuses one, each job is added on its own to answer each frame."""
        replies: list[bytes | None] = []
        jobs: list[NewJob] = []
        wanted: list[bool] = []
        for message, data, req in requests:
            try:
                jobs.append(self._new_job(message, p.raw_or_dumped(data, message, "payload", b"{}")))
                wanted.append(p.get_bool(message, "subscribe", True))
            except ProtocolError as exc:
                replies.append(error_for(exc, req, conn.role))
                continue
            replies.append(None)
        outcomes: list[tuple[Added, bool] | Exception] = []
        if jobs:
            try:
                outcomes = list(zip(*await self._add(conn, jobs, wanted), strict=True))
            except BadArgument:
                outcomes = [await self._add_one(conn, job, sub)
                            for job, sub in zip(jobs, wanted, strict=True)]
            except Exception as exc:
                outcomes = [exc] * len(jobs)
        answers: list[dict[str, Any] | Exception] = []
        finished: list[str] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                answers.append(outcome)
                continue
            added, subscribed = outcome
            answers.append({"type": "job_accepted", "job_id": added.job_id, "status": added.status,
                            "created": added.created, "subscribed": subscribed})
            if subscribed and added.status in p.FINAL_STATUSES:
                finished.append(added.job_id)
        self._answer_in_order(conn, requests, replies, answers)
        for job_id in finished:
            await self._send_final(conn, job_id)

    async def _add_one(self, conn: Conn, job: NewJob, subscribe: bool) -> tuple[Added, bool] | Exception:
        try:
            (added,), (subscribed,) = await self._add(conn, [job], [subscribe])
        except Exception as exc:
            return exc
        return added, subscribed

    async def on_submit_jobs(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        bodies = msg.get("jobs")
        if isinstance(bodies, list) and len(bodies) > MAX_BATCH:
            raise ProtocolError(e.LIMIT_EXCEEDED, f"{len(bodies)} jobs in one submit_jobs; send at most "
                                  f"{MAX_BATCH} per frame", field="jobs", limit=MAX_BATCH)
        if not isinstance(bodies, list) or not bodies:
            raise ProtocolError(e.BAD_MESSAGE, f"field 'jobs' must be a list of 1 to {MAX_BATCH} jobs",
                                  field="jobs")
        jobs = []
        for i, body in enumerate(bodies):
            if not isinstance(body, dict):
                raise ProtocolError(e.BAD_MESSAGE, f"jobs[{i}] must be an object", field=f"jobs[{i}]")
            # nested payloads are re-encoded: equal JSON, not the same bytes (docs/protocol.md)
            jobs.append(self._new_job(body, orjson.dumps(body.get("payload", {})), f"jobs[{i}]."))
        added, subscribed = await self._add(conn, jobs, [p.get_bool(msg, "subscribe", True)] * len(jobs))
        self.reply(conn, req, {"type": "jobs_accepted", "job_ids": [a.job_id for a in added],
                               "statuses": [a.status for a in added],
                               "created": [a.created for a in added], "subscribed": all(subscribed)})
        for a, sub in zip(added, subscribed, strict=True):
            if sub and a.status in p.FINAL_STATUSES:
                await self._send_final(conn, a.job_id)

    async def _job_status_frame(self, job_id: str, req: Any, **extra: Any) -> bytes:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        result = job.pop("result", None)
        job.pop("payload", None)
        frame = {"type": "job_status", "job_id": job_id, "job_type": job.get("type"),
                 "status": job.get("status"), "priority": job.get("priority"),
                 "progress": job.get("progress", 0.0), "message": job.get("message", ""),
                 "attempts": job.get("attempts", 0), "max_attempts": job.get("max_attempts"),
                 "worker_id": job.get("worker"), "error": job.get("error"), "errors": job["errors"],
                 "cancel_requested": job["cancel_requested"], "created_at": job.get("created_at"),
                 "updated_at": job.get("updated_at"), "started_at": job.get("started_at"),
                 "finished_at": job.get("finished_at"),
                 "run_at": job.get("run_at"), **extra}
        if req is not None:
            frame["req"] = req
        return p.splice(frame, "result", result if result is not None else b"null")

    async def on_get_job_status(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        conn.send(await self._job_status_frame(p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES), req))

    async def on_subscribe_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        since = p.get_opt_str(msg, "since", max_bytes=64)
        if since is not None and not p.EVENT_ID_RE.match(since):
            raise ProtocolError(e.BAD_MESSAGE, "field 'since' must be an event id like "
                                  "\"1718000000100-0\", as sent in 'event_id'", field="since")
        if not self.subscribe(conn, job_id):
            raise ProtocolError(e.LIMIT_EXCEEDED, f"this connection already has {MAX_SUBSCRIPTIONS} "
                                  "subscriptions: unsubscribe some first", limit=MAX_SUBSCRIPTIONS)
        # live events are held back until we know what the replay (or the job's state) covers
        held = conn.held_back[job_id] = []
        try:
            job = await self.store.get_job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            replay, resumed = ([], True) if since is None else await self.store.job_events_since(job_id,
                                                                                               since)
        except BaseException:
            self.unsubscribe(conn, job_id)
            raise
        conn.held_back.pop(job_id, None)
        reply: dict[str, Any] = {"type": "subscribed", "job_id": job_id}
        if since is not None:
            reply["resumed"] = resumed
        self.reply(conn, req, reply)
        if since is not None and resumed:
            self._send_replay(conn, since, replay, held)
            self._end_if_final(conn, job_id, job)
            return
        if job["status"] in p.FINAL_STATUSES or since is not None:
            # the job's state stands for every event before it (final, or trimmed from the stream)
            flag = {"synthetic": True} if since is None else {"resumed": False}
            conn.send(self._state_frame(job_id, job, self.last_event_id, flag))
            if self._end_if_final(conn, job_id, job):
                return
        for _, frame in held:
            conn.send(frame)

    def _send_replay(self, conn: Conn, since: str, replay: list[tuple[str, dict[str, bytes]]],
                     held: list[tuple[str, bytes]]) -> None:
        """The replayed events, then the held-back live ones the replay did not reach."""
        last = since
        for event_id, fields in replay:
            conn.send(self._event_frame(event_id, fields))
            last = event_id
        for event_id, frame in held:
            if _event_order(event_id) > _event_order(last):
                conn.send(frame)

    def _end_if_final(self, conn: Conn, job_id: str, job: dict[str, Any]) -> bool:
        if job["status"] in p.FINAL_STATUSES:
            self.unsubscribe(conn, job_id)
            return True
        return False

    async def _send_final(self, conn: Conn, job_id: str) -> None:
        job = await self.store.get_job(job_id)
        if job is not None:
            conn.send(self._state_frame(job_id, job, self.last_event_id, {"synthetic": True}))
        self.unsubscribe(conn, job_id)

    def _state_frame(self, job_id: str, job: dict[str, Any], event_id: str, flag: dict[str, bool]) -> bytes:
        """A synthetic event that tells a job's current state (docs/protocol.md section 6)."""
        status = job["status"]
        if status == "completed":
            return p.splice({"type": "job_completed", "job_id": job_id, "event_id": event_id,
                             "worker_id": job.get("worker"), "attempt": job.get("attempts"), **flag},
                            "result", job.get("result") or b"null")
        if status == "failed":
            frame: dict[str, Any] = {"type": "job_failed", "error": job.get("error"), "final": True,
                                     "attempt": job.get("attempts")}
        elif status == "cancelled":
            frame = {"type": "job_cancelled"}
        else:
            frame = {"type": "job_update", "status": status, "progress": job.get("progress", 0.0),
                     "message": job.get("message", "")}
        return orjson.dumps({**frame, "job_id": job_id, "event_id": event_id, **flag})

    async def on_unsubscribe_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        self.unsubscribe(conn, job_id)
        self.reply(conn, req, {"type": "unsubscribed", "job_id": job_id})

    async def on_cancel_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        await self.store.cancel(job_id)
        conn.send(await self._job_status_frame(job_id, req))

    async def on_retry_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        attempts = p.get_int(msg, "attempts", 1, 1, MAX_ATTEMPTS)
        retry_id = p.get_opt_str(msg, "retry_id", max_bytes=MAX_JOB_ID_BYTES) or ""
        # subscribed first, as for a submit, so the retrier misses none of the new run's events
        fresh = job_id not in conn.subscriptions and self.subscribe(conn, job_id)
        retried = False
        try:
            retried = await self.store.retry(job_id, attempts, retry_id=retry_id)
        finally:
            if fresh and not retried:
                self.unsubscribe(conn, job_id)
        conn.send(await self._job_status_frame(job_id, req, retried=retried))

    async def on_get_stats(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        stats = (await self.store.stats()).as_dict()
        self.reply(conn, req, {"type": "stats", **stats})

    # ---- workers -----------------------------------------------------------------------------

    def _assign(self, conn: Conn, jobs: list[ClaimedJob], req: Any = None,
                reassigned: bool = False) -> None:
        lease_s = self.store.settings.lease_ms / 1000
        for job in jobs:
            conn.jobs[job.job_id] = job.attempt
            head: dict[str, Any] = {"type": "job_assigned", "job_id": job.job_id,
                                    "job_type": job.job_type, "priority": job.priority,
                                    "attempt": job.attempt, "lease_s": lease_s}
            if reassigned:
                head["reassigned"] = True
            if req is not None:
                head["req"] = req
            conn.send(p.splice(head, "payload", job.payload))

    def _free_slots(self, conn: Conn) -> int:
        if conn.draining or conn.worker_id is None:
            return 0
        return max(0, conn.concurrency - len(conn.jobs))

    async def fill(self, conn: Conn) -> None:
        free = self._free_slots(conn)
        if free > 0 and conn.worker_id is not None:
            self._assign(conn, await self.store.claim(conn.worker_id, free))

    async def on_register_worker(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        worker_id = p.get_opt_str(msg, "worker_id")
        if worker_id is not None and conn.path_id is not None and worker_id != conn.path_id:
            raise ProtocolError(e.BAD_MESSAGE, f"field 'worker_id' ({worker_id!r}) differs from the id "
                                  f"in the path ({conn.path_id!r}): give one or make them equal",
                                  field="worker_id")
        worker_id = worker_id or conn.path_id or conn.worker_id or f"w-{uuid.uuid4().hex}"
        if not p.WORKER_ID_RE.match(worker_id):
            raise ProtocolError(e.BAD_MESSAGE, "a worker id is 1 to 128 characters of "
                                  "[A-Za-z0-9._:@-]", field="worker_id")
        if conn.worker_id is not None and worker_id != conn.worker_id:
            raise ProtocolError(e.BAD_MESSAGE, f"this connection is worker {conn.worker_id!r}; open "
                                  "another connection for another worker id", field="worker_id")
        job_types = p.get_str_list(msg, "job_types", max_items=MAX_JOB_TYPES_PER_WORKER)
        concurrency = p.get_int(msg, "concurrency", 1, 0, MAX_CONCURRENCY)
        previous = self.workers.get(worker_id)
        if previous is not None and previous is not conn:
            previous.close(e.REPLACED, f"worker id {worker_id!r} registered on another connection; "
                                       "this one is replaced (two processes share one id?)",
                           CLOSE_REPLACED)
        held = await self.store.register_worker(worker_id, job_types, concurrency, hub_id=self.hub_id)
        conn.worker_id, conn.job_types, conn.concurrency = worker_id, frozenset(job_types), concurrency
        conn.draining = False
        reassigned = [job_id for job_id in held if job_id not in conn.jobs]
        conn.jobs = held
        self.workers[worker_id] = conn
        settings = self.store.settings
        # a third of the shorter of lease and liveness (docs/protocol.md 4.2), so a configured
        # interval can never outlast a short lease
        heartbeat_s = min(self.config.heartbeat_interval_s,
                          min(settings.lease_ms, settings.liveness_ms) / 3000)
        self.reply(conn, req, {"type": "worker_registered", "worker_id": worker_id,
                               "heartbeat_interval_s": heartbeat_s, "lease_s": settings.lease_ms / 1000,
                               "liveness_s": settings.liveness_ms / 1000, "held": list(held)})
        await self._resend_held(conn, reassigned)
        await self.fill(conn)

    async def _resend_held(self, conn: Conn, job_ids: list[str]) -> None:
        """Jobs a worker still holds from an earlier connection go to it again, marked reassigned:
        a worker still running one ignores it, a restarted worker runs it (docs/protocol.md 5)."""
        for job_id in job_ids:
            job = await self.store.get_job(job_id)
            if job is None or job.get("status") != "active" or job.get("worker") != conn.worker_id:
                conn.jobs.pop(job_id, None)
                continue
            self._assign(conn, [ClaimedJob(job_id, job["type"], job.get("priority", 0),
                                           job.get("payload") or b"{}", conn.jobs[job_id])],
                         reassigned=True)

    async def on_claim_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        assert conn.worker_id is not None
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        job = await self.store.claim_by_id(conn.worker_id, job_id)
        self._assign(conn, [job], req)

    def _attempt(self, conn: Conn, msg: dict[str, Any]) -> tuple[str, int]:
        job_id = p.get_str(msg, "job_id", max_bytes=MAX_JOB_ID_BYTES)
        attempt = conn.jobs.get(job_id)
        if attempt is None:
            # a result re-sent after a reconnect names its attempt: the store answers it as a repeat
            attempt = p.get_int(msg, "attempt", 0, 0, 1_000_000)
        return job_id, attempt

    async def on_progress(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        assert conn.worker_id is not None
        job_id, attempt = self._attempt(conn, msg)
        progress = p.get_number(msg, "progress", -1, 0, 100)
        message = msg.get("message") or ""
        if not isinstance(message, str):
            raise ProtocolError(e.BAD_MESSAGE, "field 'message' must be a string")
        try:
            cancel = await self.store.progress(job_id, conn.worker_id, attempt, progress,
                                               message[:MAX_PROGRESS_MESSAGE_CHARS])
        except LeaseLost:
            conn.jobs.pop(job_id, None)
            raise
        if cancel:
            conn.send(self._cancel_frame(job_id, "cancelled"))
        if req is not None:
            self.reply(conn, req, {"type": "job_progress_ack", "job_id": job_id,
                                   "cancel_requested": cancel})

    async def on_complete_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        await self.complete_batch(conn, [Request(msg, data, req)])

    async def complete_batch(self, conn: Conn, requests: list[Request]) -> None:
        """`complete_job` frames of one worker in one store call (completeJobs), which also claims
        the worker's next jobs. Replies go out in request order, each with its own outcome."""
        assert conn.worker_id is not None
        replies: list[bytes | None] = []
        completions: list[Completion] = []
        for message, data, req in requests:
            try:
                job_id, attempt = self._attempt(conn, message)
                result = p.raw_or_dumped(data, message, "result", b"null")
                self._check_size(result, "result")
            except ProtocolError as exc:
                replies.append(error_for(exc, req, conn.role))
                continue
            conn.jobs.pop(job_id, None)
            completions.append(Completion(job_id, attempt, result))
            replies.append(None)
        next_jobs: list[ClaimedJob] = []
        outcomes: list[Exception | None] = []
        if completions:
            try:
                refused, next_jobs = await self.store.complete_many(
                    conn.worker_id, completions, claim_next=self._free_slots(conn))
                outcomes = list(refused)
            except Exception as exc:
                outcomes = [exc] * len(completions)
        self._answer_in_order(conn, requests, replies, [
            refused or {"type": "job_completed_ack", "job_id": completion.job_id}
            for completion, refused in zip(completions, outcomes, strict=True)])
        self._assign(conn, next_jobs)

    def _answer_in_order(self, conn: Conn, requests: list[Request], refused_early: list[bytes | None],
                         answers: list[dict[str, Any] | Exception]) -> None:
        """Reply to a batch in request order: a request refused before the store call has its error
        frame in `refused_early`; each of the others (None there) takes the next of `answers`, a
        reply frame or the exception that refused it."""
        pending = iter(answers)
        for (_, _, req), early in zip(requests, refused_early, strict=True):
            if early is not None:
                conn.send(early)
                continue
            answer = next(pending)
            if isinstance(answer, Exception):
                conn.send(error_for(answer, req, conn.role))
            else:
                self.reply(conn, req, answer)

    async def on_fail_job(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        assert conn.worker_id is not None
        job_id, attempt = self._attempt(conn, msg)
        error = msg.get("error")
        if not isinstance(error, str):
            raise ProtocolError(e.BAD_MESSAGE, "field 'error' is required and must be a string")
        retry = p.get_bool(msg, "retry", True)
        conn.jobs.pop(job_id, None)
        outcome = await self.store.fail(job_id, conn.worker_id, attempt, error[:MAX_ERROR_CHARS], retry=retry,
                                        claim_next=self._free_slots(conn))
        ack: dict[str, Any] = {"type": "job_failed_ack", "job_id": job_id, "final": outcome.final,
                               "status": outcome.status}
        if outcome.run_at:
            ack["retry_at"] = outcome.run_at
        self.reply(conn, req, ack)
        self._assign(conn, outcome.next_jobs)

    @staticmethod
    def _cancel_frame(job_id: str, reason: str) -> bytes:
        return orjson.dumps({"type": "cancel_job", "job_id": job_id, "reason": reason})

    def _drop_lost(self, conn: Conn, lost: list[str]) -> None:
        for job_id in lost:
            conn.jobs.pop(job_id, None)
            conn.send(self._cancel_frame(job_id, "lease_lost"))

    async def on_heartbeat(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        assert conn.worker_id is not None
        try:
            beat = await self.store.heartbeat(conn.worker_id, conn.jobs)
        except WorkerNotFound:
            # its record expired after missed heartbeats: register it again with its last values;
            # the jobs it held were taken back
            held = await self.store.register_worker(conn.worker_id, sorted(conn.job_types),
                                                    conn.concurrency, hub_id=self.hub_id)
            self._drop_lost(conn, [job_id for job_id in conn.jobs if job_id not in held])
            beat = await self.store.heartbeat(conn.worker_id, conn.jobs)
        self._drop_lost(conn, beat.lost)
        for job_id in beat.cancel:
            conn.send(self._cancel_frame(job_id, "cancelled"))
        self.reply(conn, req, {"type": "worker_heartbeat_ack", "worker_id": conn.worker_id,
                               "extended": beat.extended, "lost": beat.lost})
        if beat.lost:
            await self.fill(conn)

    async def on_unregister_worker(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        assert conn.worker_id is not None
        try:
            released = await self.store.deregister_worker(conn.worker_id)
        except WorkerNotFound:
            released = 0
        self.reply(conn, req, {"type": "worker_unregistered", "worker_id": conn.worker_id,
                               "released": released})
        if self.workers.get(conn.worker_id) is conn:
            del self.workers[conn.worker_id]
        conn.jobs.clear()
        if conn.transport is not None:
            conn.transport.send_close(WSCloseCode.OK)
            conn.transport.disconnect()

    async def on_ping(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        self.reply(conn, req, {"type": "pong"})

    async def on_worker_status(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        assert conn.worker_id is not None
        wanted = msg.get("status")
        if wanted not in ("idle", "draining"):
            raise ProtocolError(e.BAD_MESSAGE, "field 'status' must be \"idle\" or \"draining\"")
        status = await self.store.set_worker_status(conn.worker_id, wanted)
        conn.draining = status == "draining"
        self.reply(conn, req, {"type": "worker_status_ack", "worker_id": conn.worker_id, "status": status})
        await self.fill(conn)

    # ---- monitors ----------------------------------------------------------------------------

    async def on_subscribe_stats(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        conn.stats_interval_s = p.get_number(msg, "interval_s", 1.0, 0.25, 3600)
        self.stats_subscribers.add(conn)
        stats = {"type": "stats", **(await self.store.stats()).as_dict()}
        conn.stats_sent, conn.stats_sent_at = orjson.dumps(stats), asyncio.get_running_loop().time()
        self.reply(conn, req, stats)

    async def on_get_workers(self, conn: Conn, msg: dict[str, Any], data: bytes, req: Any) -> None:
        self.reply(conn, req, {"type": "workers", "workers": await self.store.get_workers()})

    # ---- events from every hub ---------------------------------------------------------------


    def _event_frame(self, event_id: str, f: dict[str, bytes]) -> bytes:
        ev, job_id = f["ev"], f["id"].decode()
        if ev == b"completed":
            return p.splice({"type": "job_completed", "job_id": job_id, "event_id": event_id,
                             "worker_id": f["worker"].decode(), "attempt": int(f["attempt"])},
                            "result", f["result"])
        frame: dict[str, Any] = {"job_id": job_id, "event_id": event_id}
        if ev == b"failed":
            final = f["final"] == b"1"
            frame.update(type="job_failed", error=f["error"].decode(), final=final, attempt=int(f["attempt"]))
            if not final:  # retried: now, or after a backoff
                frame["status"] = "scheduled" if "run_at" in f else "pending"
                if "run_at" in f:
                    frame["retry_at"] = int(f["run_at"])
        elif ev == b"cancelled":
            frame["type"] = "job_cancelled"
        elif ev == b"progress":
            frame.update(type="job_update", status="active", progress=float(f["progress"]),
                         message=f["message"].decode())
        elif ev == b"assigned":
            frame.update(type="job_update", status="active", worker_id=f["worker"].decode(),
                         attempt=int(f["attempt"]))
        elif ev == b"cancel_requested":
            frame.update(type="job_update", status="active", cancel_requested=True)
        else:  # added, pending
            frame.update(type="job_update", status=(f.get("status") or b"pending").decode())
        return orjson.dumps(frame)

    def _on_event(self, event_id: str, f: dict[str, bytes], wake: Counter[str]) -> None:
        ev = f["ev"]
        if ev == b"worker":
            self._on_worker_event(event_id, f)
            return
        job_id = f["id"].decode()
        if ev in (b"added", b"pending"):
            job_type = f["type"].decode()
            if f.get("status", b"pending") == b"pending":
                wake[job_type] += 1
                self._offer(job_id, job_type, f)
        elif ev == b"failed" and f.get("final") == b"0" and "run_at" not in f:
            wake[f["type"].decode()] += 1  # retried at once: pending again
        elif ev == b"cancel_requested":
            worker = self.workers.get(f["worker"].decode())
            if worker is not None and job_id in worker.jobs:
                worker.send(self._cancel_frame(job_id, "cancelled"))
        self._fan_out(job_id, event_id, f)

    def _fan_out(self, job_id: str, event_id: str, f: dict[str, bytes]) -> None:
        """A job event to its subscribers and the monitors; a final event ends the subscriptions."""
        subs = self.job_subscribers.get(job_id)
        if not subs and not self.monitors:
            return
        frame = self._event_frame(event_id, f)
        for conn in (*(subs or ()), *self.monitors):
            held = conn.held_back.get(job_id)
            if held is None:
                conn.send(frame)
            else:
                held.append((event_id, frame))
        ev = f["ev"]
        final = ev in TERMINAL_EVENTS or (ev == b"failed" and f.get("final") == b"1")
        if final and subs is not None:
            for conn in list(subs):
                if job_id not in conn.held_back:  # a subscribe in progress ends it itself
                    self.unsubscribe(conn, job_id)

    def _on_worker_event(self, event_id: str, f: dict[str, bytes]) -> None:
        worker_id, status = f["id"].decode(), f["status"].decode()
        frame = orjson.dumps({"type": "worker_status", "worker_id": worker_id, "status": status,
                              "event_id": event_id})
        for conn in self.monitors:
            conn.send(frame)
        hub = f.get("hub", b"").decode()
        local = self.workers.get(worker_id)
        if status == "registered" and hub and hub != self.hub_id and local is not None:
            # one connection per worker id, across hubs: the newer registration wins
            del self.workers[worker_id]
            local.jobs.clear()
            local.close(e.REPLACED, f"worker id {worker_id!r} registered on hub {hub!r}; this "
                                    "connection is replaced (two processes share one id?)", CLOSE_REPLACED)

    def _offer(self, job_id: str, job_type: str, f: dict[str, bytes]) -> None:
        frame = None
        for conn in self.workers.values():
            if conn.concurrency == 0 and not conn.draining and job_type in conn.job_types:
                frame = frame or orjson.dumps({"type": "job_available", "job_id": job_id,
                                               "job_type": job_type,
                                               "priority": int(f.get("priority", b"0"))})
                conn.send(frame)

    async def _wake(self, wake: Counter[str]) -> None:
        """New pending jobs: claim for local workers that can run them and have free slots, sharing
        the jobs among them and starting with a different worker each time, so that the first
        worker to register does not take every new job while the others idle."""
        self._wake_turn += 1
        for job_type, count in wake.items():
            eligible = [c for c in self.workers.values() if job_type in c.job_types and self._free_slots(c)]
            if not eligible:
                continue
            turn = self._wake_turn % len(eligible)
            share = -(-count // len(eligible))  # ceiling
            for conn in eligible[turn:] + eligible[:turn]:
                free = self._free_slots(conn)
                if count <= 0 or conn.worker_id is None or not free:
                    continue
                jobs = await self.store.claim(conn.worker_id, min(free, share, count))
                self._assign(conn, jobs)
                count -= len(jobs)

    async def _events_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_read = loop.time()
        while self.running:
            try:
                # a pause much longer than a blocking read (a stalled process) counts as an
                # interruption: the stream may have been trimmed past this hub's position meanwhile
                if loop.time() - last_read > max(10.0, self.config.events_block_ms / 100):
                    self.reader_interrupted = True
                if self.reader_interrupted:
                    await self._check_reader_gap()
                events = await self.store.read_events(self.last_event_id, count=1000,
                                                      block_ms=self.config.events_block_ms)
                last_read = loop.time()
                wake: Counter[str] = Counter()
                for event_id, fields in events:
                    self.last_event_id = event_id
                    self._on_event(event_id, fields, wake)
                if wake:
                    await self._wake(wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self.running:
                    return
                log.exception("reading the events stream failed; retrying in 1 s")
                self.reader_interrupted = True
                await asyncio.sleep(1)

    async def _check_reader_gap(self) -> None:
        """After the reader was interrupted: if the stream was trimmed past the last entry this hub
        read, its subscribers may have missed events, so each gets its job's state as an event
        marked `resumed: false`, and monitors get fresh stats (docs/protocol.md section 6)."""
        first = await self.store.first_event_id()
        self.reader_interrupted = False
        behind = first is not None and _event_order(first) > _event_order(self.last_event_id)
        if not behind or self.last_event_id == "0-0":
            return
        log.warning("the events stream was trimmed past this hub's position (%s < %s): sending each "
                    "subscription its job's state", self.last_event_id, first)
        for job_id, subs in list(self.job_subscribers.items()):
            job = await self.store.get_job(job_id)
            if job is None:
                continue
            frame = self._state_frame(job_id, job, self.last_event_id, {"resumed": False})
            for conn in list(subs):
                conn.send(frame)
                self._end_if_final(conn, job_id, job)
        if self.monitors:
            stats = orjson.dumps({"type": "stats", **(await self.store.stats()).as_dict()})
            for conn in list(self.monitors):
                conn.send(stats)

    async def _sweep_loop(self) -> None:
        while self.running:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                while (await self.store.sweep()).more:
                    pass
                await self._safety_net()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; trying again next interval")

    async def _safety_net(self) -> None:
        """Claim for local workers with free slots whose types have pending jobs. Dispatch is
        driven by events; this covers what no event announced to this hub (jobs back from an
        expired lease, a reader that fell behind), at the cost of one stats read a tick."""
        hungry = {t for conn in self.workers.values() if self._free_slots(conn) for t in conn.job_types}
        if not hungry:
            return
        by_type = (await self.store.stats()).by_type
        waiting = Counter({t: by_type[t]["pending"] for t in hungry if by_type.get(t, {}).get("pending")})
        if waiting:
            await self._wake(waiting)

    async def _stats_loop(self) -> None:
        """Stats to each subscribed monitor at its own interval, only when they changed since the
        last push to it; one read per tick is shared by all monitors."""
        loop = asyncio.get_running_loop()
        while self.running:
            await asyncio.sleep(self.config.stats_interval_s)
            now = loop.time()
            due = [c for c in self.stats_subscribers if now - c.stats_sent_at >= c.stats_interval_s]
            if not due:
                continue
            try:
                frame = orjson.dumps({"type": "stats", **(await self.store.stats()).as_dict()})
            except Exception:
                log.exception("stats failed; trying again next interval")
                continue
            for conn in due:
                if frame != conn.stats_sent:
                    conn.stats_sent, conn.stats_sent_at = frame, now
                    conn.send(frame)


def _event_order(event_id: str) -> tuple[int, int]:
    """Ids of entries read from the stream (always well formed), in stream order."""
    return event_key(event_id) or (0, 0)
