"""The hub process: start and stop, routing of a WebSocket upgrade by path, auth, the table from
message type to handler, and the hub-wide registries (peers, local workers, monitors, job
subscriptions). What each message does lives in clients.py and workers.py; what events do, in
dispatch.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from picows import (
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from empfast import errors as e
from empfast import messages as m
from empfast.config import HubConfig, check_queue_name
from empfast.errors import ProtocolError
from empfast.hub import frames
from empfast.hub.auth import NOBODY, Auth, Identity
from empfast.hub.bulk import BulkRunner
from empfast.hub.clients import ClientHandlers
from empfast.hub.conn import CLOSE_GOING_AWAY, NOT_REGISTERED_YET, Peer
from empfast.hub.http import HttpSide
from empfast.hub.monitors import MonitorHandlers
from empfast.hub.room import QueueRoom
from empfast.hub.schedules import ScheduleHandlers
from empfast.hub.workers import WorkerHandlers
from empfast.store import Store

log = logging.getLogger("empfast.hub")

# descriptors kept for what is not a peer's connection: the listening socket, the Redis pool (64
# by default), log files, and connections accepted only to be refused with 503
DESCRIPTOR_RESERVE = 256

# (the connection, its decoded message); a handler of a message that may change nothing (cancel_job
# of a finished job) returns whether it did, which the HTTP side answers 409 for
FrameHandler = Callable[[Peer, Any], Awaitable[bool | None]]
BatchHandler = Callable[[Peer, list[Any]], Awaitable[None]]


def handler_table(*rooms: object) -> dict[type[m.AnyMessage], Any]:
    """Message class -> the bound `on_<wire name>` handler (messages.handler_name) of the first room
    that has one, for every type of every role; a missing handler fails the start-up, not the first
    frame of that type."""
    table: dict[type[m.AnyMessage], Any] = {}
    for cls in m.ALL_MESSAGES.values():
        name = m.handler_name(cls)
        owner = next((room for room in rooms if hasattr(room, name)), None)
        if owner is None:
            raise AttributeError(f"no handler {name} for {m.tag_of(cls)!r} messages")
        table[cls] = getattr(owner, name)
    return table


class Hub:
    """One hub process: its connections, registries and background loops. All job state is in
    Redis; the hub keeps only what belongs to its own connections."""

    def __init__(self, store: Store, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.hub_id = self.config.hub_id or f"hub-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.auth = Auth.from_config(self.config)  # the tokens of each role, read once
        self.peers: set[Peer] = set()
        # queue name -> the queue served here; the store given is the default queue (a connection
        # that names none is bound to it), more are opened at start (queues) or on first use
        # (queues_allowed)
        self.default_room = QueueRoom(self, store)
        self.rooms: dict[str, QueueRoom] = {self.default_room.name: self.default_room}
        self._opening: dict[str, asyncio.Task[None]] = {}
        self.server: asyncio.Server | None = None
        self.connections = 0  # open WebSocket connections, authorized or not
        self.connection_limit = self.config.max_connections  # lowered at start by the descriptor limit
        self.descriptor_reserve = DESCRIPTOR_RESERVE
        self.inbox_bytes = 0  # received from every connection and not yet handled
        self.frames_in = self.frames_out = 0  # WebSocket text frames since start (metrics)
        self.reading_paused: set[Peer] = set()  # connections the hub stopped reading from
        self.peer_tasks: set[asyncio.Task[None]] = set()  # each connection's frame handler
        self.running = False
        self.clients = ClientHandlers(self)
        self.worker_handlers = WorkerHandlers(self)
        self.monitor_handlers = MonitorHandlers(self)
        self.bulk = BulkRunner(self)
        self.schedules = ScheduleHandlers(self)
        # the HTTP side (REST, SSE, health, metrics) on its own port; None when http_port is 0
        self.http: HttpSide | None = HttpSide(self) if self.config.http_port else None
        # message type -> its `on_<wire name>` handler, derived from the declarations in messages.py
        self.handlers: dict[type[m.AnyMessage], FrameHandler] = handler_table(
            self.clients, self.worker_handlers, self.monitor_handlers, self.schedules, self)
        # consecutive frames of these types on one connection share one store call
        self.batch_handlers: dict[type[m.AnyMessage], BatchHandler] = {
            m.SubmitJob: self.clients.submit_batch, m.CompleteJob: self.worker_handlers.complete_batch,
            m.CompleteJobs: self.worker_handlers.complete_batch,
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The default queue's store."""
        return self.default_room.store

    async def start(self) -> None:
        for name in self.config.queue_names():
            if name not in self.rooms:
                self.rooms[name] = QueueRoom(self, self.store.for_queue(name))
        try:
            for room in self.rooms.values():
                await room.open()
        except BaseException:
            await self._close_rooms()
            raise
        cfg = self.config
        descriptors = raise_descriptor_limit(cfg.max_connections)
        self.descriptor_reserve = min(DESCRIPTOR_RESERVE, descriptors // 2)  # half of very few
        self.connection_limit = min(cfg.max_connections, descriptors - self.descriptor_reserve)
        # picows pings a connection silent for ping_interval_s and closes it (1001) when no pong
        # comes within as long again: a peer gone mid-frame, or without a FIN, is not kept for ever.
        # The loop's own server, not aiofastnet's: out of descriptors, aiofastnet 1.2's accept
        # handler fails (socket.remove_reader) and runs again at once, a traceback each time, while
        # the loop's backs off
        self.server = await ws_create_server(
            self._route, cfg.host, cfg.port, max_frame_size=cfg.max_frame_bytes * 4 + 1024,
            websocket_handshake_timeout=5, enable_auto_ping=True, use_aiofastnet=False,
            auto_ping_idle_timeout=cfg.ping_interval_s, auto_ping_reply_timeout=cfg.ping_interval_s,
            ssl=self.tls_context())
        for sock in self.server.sockets:
            # inherited by each accepted connection: a fixed receive buffer bounds what one read
            # brings, so a connection the hub pauses can go over its budget by about one buffer
            # (with the kernel's autotuning, a flood grew reads to megabytes)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.socket_receive_bytes)
        self.running = True
        for room in self.rooms.values():
            room.run()
        self.monitor_handlers.start()
        if self.http is not None:
            try:
                await self.http.start()
            except BaseException:
                await self.stop()
                raise

    def tls_context(self) -> ssl.SSLContext | None:
        """The server side of wss:// (and https://), from tls_certfile and tls_keyfile; None: plain."""
        cfg = self.config
        if cfg.tls_certfile is None or cfg.tls_keyfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cfg.tls_certfile, cfg.tls_keyfile)
        return context

    def capacity(self) -> str:
        """How many connections the started hub takes, and why: for its start-up log line."""
        return (f"up to {self.connection_limit} connections (max_connections {self.config.max_connections}; "
                f"descriptor limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} minus "
                f"{self.descriptor_reserve} kept for Redis and files)")

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        # a cancel can arrive inside a Redis read that turns it into a connection error, so the
        # loops also check `running`, and the wait is bounded
        self.running = False
        for task in self._opening.values():
            task.cancel()
        for room in self.rooms.values():
            await room.stop()
        await self.monitor_handlers.stop()
        await self.bulk.stop()
        transports = [peer.transport for peer in self.peers if peer.transport is not None]
        for peer in list(self.peers):
            peer.close_quietly(CLOSE_GOING_AWAY, "hub shutting down")
        # no store call may still be running when the caller closes the store
        for task in self.peer_tasks:
            task.cancel()
        if self.peer_tasks:
            await asyncio.wait(self.peer_tasks, timeout=5)
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), timeout=2)
            except TimeoutError:
                # a peer that does not read never lets a graceful close finish
                for transport in transports:
                    transport.underlying_transport.abort()
                await self.server.wait_closed()
        if self.http is not None:  # last: until here, /readyz answers 503 (the hub is stopping)
            await self.http.stop()
        await self._close_rooms()

    async def _close_rooms(self) -> None:
        """Close the stores of the queues the hub opened; the default store is its caller's."""
        for room in list(self.rooms.values()):
            if room is not self.default_room:
                await room.store.close()
                del self.rooms[room.name]

    # ---- connections -------------------------------------------------------------------------

    def _route(self, request: WSUpgradeRequest) -> Peer | WSUpgradeResponseWithListener | None:
        path, _, query = request.path.decode("latin-1").partition("?")
        parts = path.strip("/").split("/")
        if len(parts) not in (2, 3) or parts[0] != "ws" or parts[1] not in m.ROLE_TYPES:
            body = b"empfast hub: connect to /ws/client, /ws/worker or /ws/monitor\n"
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(404, body), None)
        if self.connections >= self.connection_limit:
            # refused before the upgrade, so a full hub costs one short HTTP answer, not a socket
            body = (f"empfast hub: full ({self.connection_limit} connections, max_connections); "
                    "try again later or another hub\n").encode()
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(503, body), None)
        fields = parse_qs(query)
        identity = self._authorized(request, fields, parts[1])
        room = self.default_room
        if identity is not None:  # a peer without a valid token opens no queue and learns none
            name = fields.get("queue", [""])[0] or room.name
            if name not in self.rooms and (refusal := self._cannot_open(name)) is not None:
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(404, f"empfast hub: {refusal}\n".encode()), None)
            room = self.rooms.get(name) or self._open_room(name)
        peer = Peer(self, room, parts[1], parts[2] if len(parts) == 3 and parts[2] else None,
                    identity is not None)
        peer.identity = identity or NOBODY
        return peer

    def _authorized(self, request: WSUpgradeRequest, query: dict[str, list[str]],
                    role: str) -> Identity | None:
        """The identity of the token presented, or None when it does not open this role."""
        given = query.get("token", [""])[0]
        header = request.headers.get("authorization", "")
        if not given and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return self.auth.identify(given, role)

    # ---- queues --------------------------------------------------------------------------------

    def _cannot_open(self, name: str) -> str | None:
        """Why a queue this hub does not serve yet cannot be opened for a connection; None if it can."""
        try:
            check_queue_name(name)
        except ValueError as exc:
            return str(exc)
        if not self.config.allows_queue(name):
            allowed = self.config.queues_allowed
            served = ", ".join(sorted(self.rooms)) + (f"; queues_allowed {allowed!r}" if allowed else "")
            return (f"queue {name!r} is not served here (this hub serves {served}): connect with "
                    "?queue= one of them, or start the hub with it in --queues")
        if len(self.rooms) >= self.config.max_queues:
            return (f"this hub serves {len(self.rooms)} queues already (max_queues): connect to a queue it "
                    "serves, or raise max_queues")
        return None

    def _open_room(self, name: str) -> QueueRoom:
        """A queue opened on first use (_cannot_open said it may be): registered at once (so a
        second connection finds it), its store started by a task that its first connections wait
        for (QueueRoom.opened)."""
        loop = asyncio.get_running_loop()
        room = QueueRoom(self, self.store.for_queue(name))
        room.opened = loop.create_future()
        self.rooms[name] = room
        task = loop.create_task(self._start_room(room))
        self._opening[name] = task
        task.add_done_callback(lambda _: self._opening.pop(name, None))
        return room

    async def _start_room(self, room: QueueRoom) -> None:
        assert room.opened is not None
        try:
            await room.open()
        except asyncio.CancelledError:  # the hub is stopping
            room.opened.cancel()
            raise
        except Exception as exc:
            log.warning("could not open queue %r: %s", room.name, exc)
            if self.rooms.get(room.name) is room:  # the next connection that names it tries again
                del self.rooms[room.name]
            room.opened.set_exception(exc)
            room.opened.exception()  # retrieved: a queue nobody waits for is only logged
            await room.store.close()
            return
        room.opened.set_result(None)
        if self.running:
            room.run()
        log.info("opened queue %r on its first use", room.name)

    def inbox_released(self, size: int) -> None:
        """Frames of `size` bytes were handled (or dropped with their connection): connections
        paused for the hub's budget read again once it is under half."""
        self.inbox_bytes -= size
        if self.reading_paused and self.inbox_bytes <= self.config.max_inbound_total_bytes // 2:
            for peer in list(self.reading_paused):
                peer.resume_if_caught_up()

    def attach(self, peer: Peer) -> None:
        self.peers.add(peer)
        if peer.task is not None:
            self.peer_tasks.add(peer.task)
            peer.task.add_done_callback(self.peer_tasks.discard)
        peer.room.attach(peer)

    def detach(self, peer: Peer) -> None:
        self.peers.discard(peer)
        self.reading_paused.discard(peer)
        self.bulk.forget(peer)
        peer.room.detach(peer)

    # ---- routing of frames -------------------------------------------------------------------

    def batchable(self, peer: Peer, message: m.AnyMessage) -> bool:
        """Whether a message may join a batch (decoding let only the role's own types through)."""
        return type(message) in self.batch_handlers and (peer.role != "worker" or peer.worker is not None)

    def pipelined(self, message: m.AnyMessage) -> bool:
        """Whether a batch of this message may be in flight while the connection reads on: a
        worker's completions (Peer._flush, handle_pipelined)."""
        return type(message) in (m.CompleteJob, m.CompleteJobs)

    async def handle_pipelined(self, peer: Peer, run: list[m.AnyMessage],
                               after: asyncio.Future[None] | None) -> None:
        """A pipelined batch, which answers only after `after`, the batch before it, has answered."""
        await self.worker_handlers.complete_batch(peer, run, after=after)  # type: ignore[arg-type]

    async def handle_batch(self, peer: Peer, run: list[m.AnyMessage]) -> None:
        await self.batch_handlers[type(run[0])](peer, run)

    async def handle(self, peer: Peer, message: m.AnyMessage) -> bool | None:
        """Handle one message; False when it changed nothing it was asked to (FrameHandler)."""
        if peer.must_register_first(m.tag_of(type(message))):
            raise ProtocolError(e.NOT_REGISTERED, NOT_REGISTERED_YET)
        return await self.handlers[type(message)](peer, message)

    async def on_ping(self, peer: Peer, message: m.Ping) -> None:
        peer.reply(message.req, frames.pong())


def raise_descriptor_limit(max_connections: int) -> int:
    """Raise the process's soft limit on open descriptors towards what `max_connections` needs,
    up to the hard limit (a hub at the limit accepts nothing, not even to refuse); the descriptors
    the process may have open after (unlimited counts as what it needs)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + DESCRIPTOR_RESERVE
    if soft == resource.RLIM_INFINITY:
        return wanted
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, wanted, exc)
    return soft
