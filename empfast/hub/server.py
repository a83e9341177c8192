"""The hub process: start and stop, routing of a WebSocket upgrade by path, auth, the table from
message type to handler, and the hub-wide registries (peers, local workers, monitors, job
subscriptions). What each message does lives in clients.py and workers.py; what events do, in
dispatch.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from picows import (
    WSCloseCode,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from empfast import errors as e
from empfast import messages as m
from empfast.config import HubConfig
from empfast.errors import ProtocolError
from empfast.hub import frames
from empfast.hub.auth import NOBODY, Auth, Identity
from empfast.hub.clients import ClientHandlers
from empfast.hub.conn import CLOSE_GOING_AWAY, Peer
from empfast.hub.dispatch import Dispatcher
from empfast.hub.monitors import MonitorHandlers
from empfast.hub.workers import WorkerHandlers
from empfast.limits import MAX_SUBSCRIPTIONS
from empfast.store import Store

FrameHandler = Callable[[Peer, Any], Awaitable[None]]  # (the connection, its decoded message)
BatchHandler = Callable[[Peer, list[Any]], Awaitable[None]]


class Hub:
    """One hub process: its connections, registries and background loops. All job state is in
    Redis; the hub keeps only what belongs to its own connections."""

    def __init__(self, store: Store, config: HubConfig | None = None) -> None:
        self.store = store
        self.config = config or HubConfig()
        self.hub_id = self.config.hub_id or f"hub-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.auth = Auth.from_config(self.config)  # the tokens of each role, read once
        self.peers: set[Peer] = set()
        self.workers: dict[str, Peer] = {}  # worker id -> its connection to this hub
        self.monitors: set[Peer] = set()
        self.stats_subscribers: set[Peer] = set()
        self.subscribers: defaultdict[str, set[Peer]] = defaultdict(set)  # job id -> who follows it
        self.server: asyncio.Server | None = None
        self.peer_tasks: set[asyncio.Task[None]] = set()  # each connection's frame handler
        self.running = False
        self.clients = ClientHandlers(self)
        self.worker_handlers = WorkerHandlers(self)
        self.monitor_handlers = MonitorHandlers(self)
        self.dispatch = Dispatcher(self)
        # message type -> its `on_<wire name>` handler, derived from the declarations in messages.py
        self.handlers: dict[type[m.AnyMessage], FrameHandler] = m.handler_table(
            self.clients, self.worker_handlers, self.monitor_handlers, self)
        # consecutive frames of these types on one connection share one store call
        self.batch_handlers: dict[type[m.AnyMessage], BatchHandler] = {
            m.SubmitJob: self.clients.submit_batch, m.CompleteJob: self.worker_handlers.complete_batch,
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()
        await self.dispatch.prepare()
        cfg = self.config
        self.server = await ws_create_server(
            self._route, cfg.host, cfg.port, max_frame_size=cfg.max_frame_bytes * 4 + 1024,
            websocket_handshake_timeout=5)
        self.running = True
        self.dispatch.start()
        self.monitor_handlers.start()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        # a cancel can arrive inside a Redis read that turns it into a connection error, so the
        # loops also check `running`, and the wait is bounded
        self.running = False
        await self.dispatch.stop()
        await self.monitor_handlers.stop()
        transports = [peer.transport for peer in self.peers if peer.transport is not None]
        for transport in transports:
            transport.send_close(WSCloseCode(CLOSE_GOING_AWAY), b"hub shutting down")
            transport.disconnect()
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

    # ---- connections -------------------------------------------------------------------------

    def _route(self, request: WSUpgradeRequest) -> Peer | WSUpgradeResponseWithListener | None:
        path, _, query = request.path.decode("latin-1").partition("?")
        parts = path.strip("/").split("/")
        if len(parts) not in (2, 3) or parts[0] != "ws" or parts[1] not in m.ROLE_TYPES:
            body = b"empfast hub: connect to /ws/client, /ws/worker or /ws/monitor\n"
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(404, body), None)
        identity = self._authorized(request, query, parts[1])
        peer = Peer(self, parts[1], parts[2] if len(parts) == 3 and parts[2] else None, identity is not None)
        peer.identity = identity or NOBODY
        return peer

    def _authorized(self, request: WSUpgradeRequest, query: str, role: str) -> Identity | None:
        """The identity of the token presented, or None when it does not open this role."""
        given = parse_qs(query).get("token", [""])[0]
        header = request.headers.get("authorization", "")
        if not given and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return self.auth.identify(given, role)

    def attach(self, peer: Peer) -> None:
        self.peers.add(peer)
        if peer.task is not None:
            self.peer_tasks.add(peer.task)
            peer.task.add_done_callback(self.peer_tasks.discard)
        if peer.role == "monitor":
            self.monitors.add(peer)

    def detach(self, peer: Peer) -> None:
        self.peers.discard(peer)
        self.monitors.discard(peer)
        self.stats_subscribers.discard(peer)
        for job_id in list(peer.subs.jobs):
            self.unsubscribe(peer, job_id)
        if peer.worker is not None and self.workers.get(peer.worker.worker_id) is peer:
            # its leases stay: a worker that reconnects in time keeps its jobs; else the sweep
            # takes them back when its liveness lapses
            del self.workers[peer.worker.worker_id]

    # ---- job subscriptions -------------------------------------------------------------------

    def subscribe(self, peer: Peer, job_id: str) -> bool:
        """Subscribe unless the connection is at its limit; False when it is."""
        if job_id not in peer.subs.jobs and len(peer.subs.jobs) >= MAX_SUBSCRIPTIONS:
            return False
        peer.subs.jobs.add(job_id)
        self.subscribers[job_id].add(peer)
        return True

    def unsubscribe(self, peer: Peer, job_id: str) -> None:
        peer.subs.jobs.discard(job_id)
        peer.subs.buffered.pop(job_id, None)
        subs = self.subscribers.get(job_id)
        if subs is not None:
            subs.discard(peer)
            if not subs:
                del self.subscribers[job_id]

    # ---- routing of frames -------------------------------------------------------------------

    def batchable(self, peer: Peer, message: m.AnyMessage) -> bool:
        """Whether a message may join a batch (decoding let only the role's own types through)."""
        return type(message) in self.batch_handlers and (peer.role != "worker" or peer.worker is not None)

    async def handle_batch(self, peer: Peer, run: list[m.AnyMessage]) -> None:
        await self.batch_handlers[type(run[0])](peer, run)

    async def handle(self, peer: Peer, message: m.AnyMessage) -> None:
        if peer.role == "worker" and peer.worker is None and not isinstance(message, (m.RegisterWorker,
                                                                                       m.Ping)):
            raise ProtocolError(e.NOT_REGISTERED, "send register_worker first")
        await self.handlers[type(message)](peer, message)

    async def on_ping(self, peer: Peer, message: m.Ping) -> None:
        peer.reply(message.req, frames.pong())
