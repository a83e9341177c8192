"""The client side of one hub connection, shared by the worker and client SDKs: requests matched to
their replies by `req`, pushes handed to the SDK, and reconnection with exponential backoff and
jitter. It knows the envelope (docs/protocol.md section 3), not what any message means: after each
(re)connect it calls the SDK's `on_connected` hook, which restores the SDK's state (register again,
resubscribe, re-send unacknowledged results).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
import ssl
import traceback
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import orjson
from picows import WSFrame, WSInvalidStatusError, WSListener, WSMsgType, WSTransport, ws_connect

from empfast.errors import FATAL_CODES, FORBIDDEN, NOT_FOUND
from empfast.limits import DEFAULT_MAX_FRAME_BYTES
from empfast.protocol import frame_header, masked_data, splice

log = logging.getLogger("empfast.connection")

CLOSE_WAIT_S = 1.0  # how long close() waits for the socket to be closed

# the refusals of a connect or of the SDK's restore that a reconnect as is cannot change: besides
# the fatal codes, `forbidden` (a worker token bound to other worker ids, docs/security.md)
RESTORE_REFUSED_FOR_GOOD = FATAL_CODES | {FORBIDDEN}

Push = Callable[[dict[str, Any], bytes], None]
Hook = Callable[[], Awaitable[None]]



class HubError(Exception):
    """The hub answered a request with an error frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.code: str = frame.get("code", "internal")
        self.frame = frame
        super().__init__(f"{self.code}: {frame.get('error', '')}")


def refused_upgrade(exc: WSInvalidStatusError) -> HubError | None:
    """The hub's 404 before the upgrade, a path or a queue it does not serve (its body says which),
    as a refusal for good; None for another status (503, a full hub: try again)."""
    if exc.response is None or exc.response.status != 404:
        return None
    body = (exc.raw_body or b"").decode("utf-8", "replace").strip()
    return HubError({"type": "error", "code": NOT_FOUND, "error": body or str(exc)})


class FrameTooLarge(ValueError):
    """A request larger than the hub accepts (its `welcome` frame says how large): not sent."""


class Disconnected(Exception):
    """The connection dropped before the reply came; the request's outcome is unknown."""


class ConnectionClosed(Exception):
    """The connection was closed for good (close() was called, or the hub refused us)."""


def endpoint(url: str, role: str, peer_id: str | None = None, queue: str | None = None) -> str:
    """The WebSocket URL of a role's endpoint on a hub given as ws://host:port (a path is kept),
    bound to `queue` (None: the hub's default queue; docs/protocol.md section 2). It never holds
    the token: Connection sends that in a header, so it is in no URL or log."""
    base = url.rstrip("/")
    if not base.endswith(f"/ws/{role}"):
        base = f"{base}/ws/{role}"
    if peer_id:
        base = f"{base}/{quote(peer_id, safe='')}"
    if queue:
        base = f"{base}?queue={quote(queue, safe='')}"
    return base


TOKEN_IN_URL_RE = re.compile(r"(?i)([?&]token=)[^&#\s]*")


def redact(text: str, token: str | None = None) -> str:
    """Text fit for a log line or an exception: the token, and any `token=` of a URL, as ***."""
    if token:
        text = text.replace(token, "***")
    return TOKEN_IN_URL_RE.sub(r"\1***", text)


def backoff_delays(base_s: float, cap_s: float) -> itertools.chain[float]:
    """Reconnect delays: exponential backoff with equal jitter, as the hub's retry backoff. Step n
    is base_s * 2**n capped at cap_s, and each delay is a random point in [½, 1] of its step (half
    fixed, half random; not "full jitter", which would draw from [0, 1] of the step). After 64
    steps every delay is in [½, 1] of cap_s."""
    return itertools.chain(
        (min(cap_s, base_s * 2 ** n) * random.uniform(0.5, 1.0) for n in range(64)),
        iter(lambda: cap_s * random.uniform(0.5, 1.0), None),
    )


class Connection:
    """A connection that keeps itself open until close(). `request` waits for a connection, sends,
    and waits for the reply with the same `req`; if the socket drops first it raises Disconnected
    (the caller decides whether a retry is safe). `send` is fire-and-forget and drops the frame
    while disconnected."""

    def __init__(self, url: str, *, on_push: Push, on_connected: Hook | None = None,
                 backoff_base_s: float = 0.1, backoff_cap_s: float = 10.0,
                 connect_timeout_s: float = 5.0, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 token: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url
        # for a wss:// hub: None takes the system's CAs (and SSL_CERT_FILE, as OpenSSL does)
        self.ssl_context = ssl_context
        self.shown_url = redact(url, token)  # for logs: a token given in the URL is masked
        # in a header, never the URL: URLs end up in logs and proxies' access logs
        self._headers = {"Authorization": f"Bearer {token}"} if token else None
        self._token = token
        self.on_push = on_push
        self.on_connected = on_connected
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.connect_timeout_s = connect_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.transport: WSTransport | None = None
        self.ready = asyncio.Event()  # set while connected and on_connected has run
        self.fatal: HubError | None = None
        self.connects = 0  # sockets opened
        self.sessions = 0  # of those, the ones that came up with the SDK's state restored
        self._req_ids = itertools.count(1)
        self._outgoing: list[bytes] = []  # frames of this loop turn, written at its end (send)
        self.writes = 0  # socket writes of frames so far: tests count the batching
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self._closing = False
        self._ended = asyncio.Event()  # close() was called, or the hub refused us for good
        self._lost: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._welcome: asyncio.Future[dict[str, Any]] | None = None
        self.welcome: dict[str, Any] = {}

    async def start(self) -> None:
        """Connect (retrying with backoff) and keep the connection up in the background. Raises
        only when the first connection is refused for good (e.g. a wrong token)."""
        # the loop, kept: asyncio.get_running_loop() makes a getpid() system call on Python 3.11
        self.loop = loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._task = loop.create_task(self._keep_connected())
        await asyncio.shield(self._first)

    async def close(self) -> None:
        self._closing = True
        self._ended.set()
        if self.transport is not None:
            self._flush()  # what was sent goes before the close frame
            self.transport.send_close()
            self.transport.disconnect()
            # until the socket is closed (a TLS one after its close_notify): a command that ends
            # its event loop right after must not leave it half closed
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.transport.wait_disconnected(), CLOSE_WAIT_S)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail_pending(ConnectionClosed("the connection was closed"))

    async def wait_closed(self) -> None:
        """Return once the connection has ended for good: close() was called, or the hub refused it
        (then `fatal` says why). An SDK's run loop waits on this so a refused peer stops."""
        if self._task is not None:
            await asyncio.wait({self._task})

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_disconnected

    def send(self, message: dict[str, Any] | bytes) -> bool:
        """Queue one frame if connected (False when it was dropped). The frames of one event-loop
        turn (a worker's outcomes, a client's requests) go out in one socket write at its end,
        masked here as a client's frames must be: one system call for many frames."""
        if not self.connected:
            return False
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        outgoing = self._outgoing
        if not outgoing:
            self.loop.call_soon(self._flush)
        mask_key = random.randbytes(4)
        outgoing.append(frame_header(len(data), mask_key))
        outgoing.append(masked_data(data, mask_key))
        return True

    def _flush(self) -> None:
        """Write the queued frames (a drop discards them: _on_lost)."""
        if not self._outgoing:
            return
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        transport = self.transport
        if transport is not None and not transport.is_disconnected and not transport.is_close_frame_sent:
            transport.underlying_transport.write(data)
            self.writes += 1

    async def request(self, message: dict[str, Any], *, raw: tuple[str, bytes] | None = None,
                      timeout_s: float | None = 30.0, wait_connected: bool = True) -> dict[str, Any]:
        """Send a request and return the hub's reply; HubError for an error reply. `raw` is one
        member given as JSON text (name, text), spliced into the frame as is (never re-encoded).
        Waiting for a connection ends with ConnectionClosed when close() is called meanwhile."""
        if self._task is None:
            raise ConnectionClosed("not connected: call start() first")
        async with asyncio.timeout(timeout_s):
            while True:
                if self._closing:
                    raise ConnectionClosed("the connection was closed")
                if self.fatal is not None:
                    raise self.fatal
                if self.ready.is_set() or not wait_connected:
                    break
                await self._ready_or_ended()
            return await self._request_now(message, raw)

    def send_request(self, message: dict[str, Any], raw: tuple[str, bytes] | None = None
                     ) -> tuple[int, asyncio.Future[dict[str, Any]]] | None:
        """Send a request without waiting for its reply: its req id and the future the reply (an
        error reply too: the caller reads it) resolves, or fails with Disconnected when the
        connection drops first. None when not connected. For callers that keep many requests in
        flight without a task each (the worker's outbox); abandon_request gives up on one."""
        if not self.connected:
            return None
        req = next(self._req_ids)
        head = {**message, "req": req}
        data = splice(head, *raw) if raw is not None else orjson.dumps(head)
        limit = self.welcome.get("max_frame_bytes")
        if isinstance(limit, int) and len(data) > limit:
            # the hub would close the socket, and a re-send after the reconnect would do it again
            raise FrameTooLarge(f"a {message.get('type')} frame of {len(data)} bytes is over the hub's "
                                f"limit of {limit}: send a smaller payload (or batch), and keep big data "
                                "in object storage with its URL in the payload")
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._pending[req] = future
        self.send(data)
        return req, future

    def abandon_request(self, req: int) -> bool:
        """Stop waiting for a request's reply (its future is cancelled); False when it had come."""
        future = self._pending.pop(req, None)
        if future is None or future.done():
            return False
        future.cancel()
        return True

    async def _ready_or_ended(self) -> None:
        waits = {asyncio.ensure_future(self.ready.wait()), asyncio.ensure_future(self._ended.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _request_now(self, message: dict[str, Any], raw: tuple[str, bytes] | None) -> dict[str, Any]:
        sent = self.send_request(message, raw)
        if sent is None:
            raise Disconnected("not connected to the hub")
        req, future = sent
        try:
            reply = await future
        finally:
            self._pending.pop(req, None)
        if reply.get("type") == "error":
            raise HubError(reply)
        return reply

    # ---- the socket ----------------------------------------------------------------------------

    def _on_frame(self, data: bytes) -> None:
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("the hub sent a frame that is not JSON; ignored")
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if self._welcome is not None and not self._welcome.done():
            # the hub's first frame: `welcome`, or the error that refuses this connection
            if kind == "error":
                self._welcome.set_exception(HubError(frame))
            else:
                self._welcome.set_result(frame)
            if kind in ("welcome", "error"):
                return
        req = frame.get("req")
        future = self._pending.pop(req, None) if isinstance(req, int) else None
        if future is not None:
            if not future.done():
                future.set_result(frame)
            return
        if kind == "error" and frame.get("code") in FATAL_CODES:
            self.fatal = HubError(frame)
        try:
            self.on_push(frame, data)
        except Exception:
            log.exception("handling a %r frame from the hub failed", frame.get("type"))

    def _on_lost(self) -> None:
        self.ready.clear()
        self._outgoing.clear()  # frames for the connection that dropped; outcomes are re-sent
        self._fail_pending(Disconnected("the connection to the hub dropped before the reply"))
        self._lost.set()

    def _fail_pending(self, exc: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    async def _connect_once(self) -> None:
        connection = self

        class Listener(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    connection._on_frame(frame.get_payload_as_bytes())
                elif frame.msg_type == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()

            def on_ws_disconnected(self, transport: WSTransport) -> None:
                connection._on_lost()

        self._lost.clear()
        self._welcome = asyncio.get_running_loop().create_future()
        self.transport, _ = await ws_connect(
            Listener, self.url, ssl_context=self.ssl_context,
            # the loop's own TLS transport: aiofastnet's (1.2) left its socket unclosed at
            # close, which a short-lived command (the CLI) then reported
            use_aiofastnet=False if self.url.startswith("wss://") else None,
            websocket_handshake_timeout=self.connect_timeout_s,
            max_frame_size=self.max_frame_bytes * 4 + 1024, enable_auto_ping=True,
            auto_ping_idle_timeout=10, auto_ping_reply_timeout=10, extra_headers=self._headers)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({self._welcome, lost}, timeout=self.connect_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if self._welcome in done:
            self.welcome = self._welcome.result()  # HubError when the hub refused us
            return
        self._welcome.cancel()
        raise Disconnected("the hub closed the connection or sent no welcome frame in time")

    async def _session(self) -> None:
        """One connection's life: connect, let the SDK restore its state, wait until it drops."""
        try:
            await self._connect_once()
            self.connects += 1
            if self.on_connected is not None:
                await self.on_connected()
            if self.connected:
                self.ready.set()
                self.sessions += 1
                self._resolve_first(None)
            await self._lost.wait()
        finally:
            self.ready.clear()
            if self.transport is not None and not self.transport.is_disconnected:
                self.transport.disconnect()

    async def _keep_connected(self) -> None:
        delays = backoff_delays(self.backoff_base_s, self.backoff_cap_s)
        while not self._closing:
            sessions = self.sessions
            try:
                await self._session()
            except (TimeoutError, OSError, Disconnected) as exc:
                log.info("connection to the hub at %s failed or dropped (%s)", self.shown_url,
                         redact(str(exc), self._token))
            except WSInvalidStatusError as exc:
                self.fatal = refused_upgrade(exc)
                if self.fatal is None:
                    log.info("the hub at %s refused the upgrade (%s)", self.shown_url, exc)
            except HubError as exc:
                if exc.code in RESTORE_REFUSED_FOR_GOOD:
                    self.fatal = exc
                else:
                    log.warning("the hub refused the connection: %s", redact(str(exc), self._token))
            except Exception as exc:
                # a bug in the SDK's on_connected hook must not end reconnection for good; the
                # traceback's text is redacted, not the exception (the caller may need it as is)
                log.error("restoring the session with the hub at %s failed: %s", self.shown_url,
                          redact("".join(traceback.format_exception(exc)), self._token))
            if self.fatal is not None:
                if self._first is not None and self._first.done():
                    # start() has returned: no caller gets this refusal, so it is logged (on a first
                    # connection start() raises it, and the caller says it once)
                    log.error("the hub refused this connection for good: %s", self.fatal)
                self._resolve_first(self.fatal)
                self._fail_pending(self.fatal)
                self._ended.set()
                return
            if self._closing:
                return
            # it was up and restored: start the backoff again from its base; a hub that accepts the
            # socket but fails the restore (e.g. Redis down) keeps backing off
            if self.sessions > sessions:
                delays = backoff_delays(self.backoff_base_s, self.backoff_cap_s)
            delay = next(delays)
            log.info("reconnecting to %s in %.2f s", self.shown_url, delay)
            await asyncio.sleep(delay)

    def _resolve_first(self, exc: Exception | None) -> None:
        if self._first is not None and not self._first.done():
            if exc is None:
                self._first.set_result(None)
            else:
                self._first.set_exception(exc)
