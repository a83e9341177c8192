"""The connection the store runs its Lua scripts on: one socket, auto-pipelined.

Every EVALSHA issued in one event-loop turn goes out in one write; replies are parsed by hiredis (in
C) and handed to their callers in order. Why not redis-py for this path: its asyncio client spends
about 160 us of Python per call (a task and a timer per command, RESP encoded in Python, a pool
checkout; ../shared measurements, and bench/test_bench_store.py here), which a busy hub pays for
every batch of jobs; this connection costs under 10 us a call and lets Redis read many calls per
read. redis-py stays for everything else the store does (start-up, reads, the blocking XREAD).

What it does about failures:
- a call in flight when the connection breaks or times out fails with ConnectionError or
  TimeoutError and is never sent again: the caller decides (a script may have run; the hub answers
  `unavailable` and the SDKs re-send, which the scripts' idempotence makes safe);
- the next call connects again (AUTH, SELECT, TLS as the URL and options say), behind Redis
  Sentinels to the master they name at that moment (a failover breaks the connection);
- a READONLY reply (the server became a replica: a failover moved the master while this connection
  stayed up) and an UNBLOCKED one (a blocking read ended by that change) break the connection the
  same way, so the call is retried on the new master instead of failing until a restart;
- a reply slower than the command timeout closes the connection (one timer for the connection,
  not one per call).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float
# where the master is now (the Sentinels' answer), asked at every connect
Resolver = Callable[[], Awaitable[tuple[str, int]]]
# error replies that mean the server is no longer the master it was when this connection was made
# (a failover), or, on a Redis Cluster, no longer (or not yet alone) serves the queue's slot (a
# resharding, a restart): the connection is left and the call tried again on the right server
STALE_SERVER_REPLIES = ("READONLY", "UNBLOCKED", "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def _slot_master(client: RedisCluster, key: str) -> Resolver:
    """Where the master of `key`'s slot is: the cluster client's map the first time, asked of the
    cluster again at every later connect (a reconnect follows a MOVED, a failover or a restart)."""
    first = True

    async def resolve() -> tuple[str, int]:
        nonlocal first
        await client.initialize()
        if not first:
            await client.nodes_manager.initialize()
        first = False
        node = client.get_node_from_key(key)
        assert node is not None
        return node.host, node.port

    return resolve


def _bulk(value: Arg) -> bytes:
    """One RESP bulk-string header and body; big bytes values are appended, not copied, by the caller."""
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode()
    if type(value) is int:
        return b"%d" % value
    if type(value) is float:
        return repr(value).encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a Redis argument must be bytes, str, int or float, not {type(value).__name__}")


def command(*args: Arg) -> list[bytes]:
    """The RESP parts of one command (joined by the connection when it writes)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        body = _bulk(arg)
        parts += (b"$%d\r\n" % len(body), body, b"\r\n")
    return parts


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: PipelinedConnection) -> None:
        self.owner = owner
        self.reader = hiredis.Reader(replyError=ResponseError, protocolError=InvalidResponse)
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        # the loop, kept: asyncio.get_running_loop() makes a getpid() system call on Python 3.11
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()
        self.error: Exception | None = None

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        try:
            while (reply := self.reader.gets()) is not False:
                future = waiting.popleft()
                if future.done():  # its caller was cancelled: the reply is dropped
                    continue
                if type(reply) is ResponseError:
                    message = str(reply)
                    if message.startswith(STALE_SERVER_REPLIES):  # a replica now: the master moved
                        error = RedisConnectionError(f"Redis answered {message.split('.')[0]!r}: it is "
                                                     "no longer the master; reconnecting")
                        future.set_exception(error)
                        self.abort(error)
                        return
                    future.set_exception(NoScriptError(message) if message.startswith("NOSCRIPT")
                                         else reply)
                else:
                    future.set_result(reply)
        except InvalidResponse as exc:
            self.abort(RedisConnectionError(f"Redis sent a reply that is not RESP: {exc}"))
        self.owner.last_reply = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        why = exc or "by Redis"
        self.fail(self.error or RedisConnectionError(f"the Redis connection was closed ({why})"))
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self, error: Exception) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.abort()
        self.fail(error)

    def fail(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class PipelinedConnection:
    """One auto-pipelined connection to Redis (see the module's docstring)."""

    def __init__(self, *, host: str | None = None, port: int = 6379, path: str | None = None, db: int = 0,
                 username: str | None = None, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, connect_timeout_s: float = 5.0,
                 command_timeout_s: float = 5.0, retry: Retry | None = None,
                 resolve: Resolver | None = None) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.resolve = resolve  # set: host and port are asked of it at every connect (Sentinels)
        self.username, self.password, self.ssl_context = username, password, ssl_context
        self.connect_timeout_s, self.command_timeout_s = connect_timeout_s, command_timeout_s
        self.retry = retry
        self.writes = 0  # socket writes so far: tests and benchmarks count the batching
        self.last_reply = 0.0
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None

    @classmethod
    def like(cls, client: aioredis.Redis, route_key: str = "") -> PipelinedConnection | None:
        """A connection to the server a redis-py client talks to, as redis-py parsed its URL and
        options: behind Sentinels, to the master its pool finds at each connect; on a Redis Cluster,
        to the master that serves `route_key`'s slot, asked of the cluster at each connect. None for
        a client that is not on a socket (fakeredis, the embedded store)."""
        resolve: Resolver | None = None
        if isinstance(client, RedisCluster):
            # the cluster client keeps its Retry apart from its nodes' connection options
            kwargs = {**client.connection_kwargs, "retry": client.retry}
            tls = kwargs.get("connection_class") is SSLConnection
            resolve = _slot_master(client, route_key)
        else:
            pool = client.connection_pool
            if isinstance(pool, SentinelConnectionPool) and pool.is_master:
                # which also drops the pool's idle connections to an old master
                resolve = pool.get_master_address
            elif pool.connection_class not in (Connection, SSLConnection, UnixDomainSocketConnection):
                return None
            kwargs, tls = pool.connection_kwargs, issubclass(pool.connection_class, SSLConnection)
        context = None
        if tls:
            context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
            if kwargs.get("ssl_certfile"):
                context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"))
        return cls(host=kwargs.get("host"), port=int(kwargs.get("port", 6379)), path=kwargs.get("path"),
                   db=int(kwargs.get("db", 0)), username=kwargs.get("username"),
                   password=kwargs.get("password"), ssl_context=context,
                   connect_timeout_s=kwargs.get("socket_connect_timeout") or 5.0,
                   command_timeout_s=kwargs.get("socket_timeout") or 5.0, retry=kwargs.get("retry"),
                   resolve=resolve)

    async def call(self, parts: Sequence[bytes]) -> Any:
        """Send one command (the parts of `command()`), batched with the others of this loop turn,
        and return its reply; an error reply raises ResponseError (NoScriptError for NOSCRIPT).
        A broken connection or a timeout is retried as the redis-py client's Retry says (the
        store's `retries` option): every empfast script is safe to run twice (docs/data-model.md)."""
        try:
            return await self._send(parts)
        except (RedisConnectionError, RedisTimeoutError):
            if self.retry is None:
                raise

        async def send_again() -> Any:
            return await self._send(parts)

        async def ignore(error: Exception) -> None:
            pass

        return await self.retry.call_with_retry(send_again, ignore)

    async def _send(self, parts: Sequence[bytes]) -> Any:
        protocol = self._protocol
        if protocol is None or not protocol.usable:
            protocol = await self._connect()
        future = protocol.loop.create_future()
        if not protocol.waiting:  # the reply clock starts now, not at the last reply of long ago
            self.last_reply = time.monotonic()
        protocol.waiting.append(future)
        self._outbox += parts
        if not self._flush_scheduled:
            self._flush_scheduled = True
            protocol.loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._outbox = b"".join(self._outbox), []
        protocol = self._protocol
        if protocol is None or not protocol.usable:
            return  # its futures were failed when the connection was lost
        protocol.transport.write(data)
        self.writes += 1
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self.command_timeout_s, self._check,
                                                                   protocol)

    def _check(self, protocol: _Protocol) -> None:
        """While replies are awaited, a timer: no reply for a command timeout breaks the connection,
        failing its calls with TimeoutError."""
        self._watchdog = None
        if protocol is not self._protocol or not protocol.waiting:
            return
        quiet = time.monotonic() - self.last_reply
        if quiet >= self.command_timeout_s:
            protocol.abort(RedisTimeoutError(f"Redis sent no reply for {self.command_timeout_s} s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(self.command_timeout_s - quiet, self._check,
                                                               protocol)

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and protocol.usable:
                return protocol
            self._outbox = []  # parts of calls whose futures failed with the old connection
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    if self.resolve is not None:
                        self.host, self.port = await self.resolve()
                    if self.path:
                        _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
                    else:
                        _, protocol = await loop.create_connection(lambda: _Protocol(self), self.host,
                                                                   self.port, ssl=self.ssl_context)
                    await self._handshake(protocol)
            except (OSError, TimeoutError) as exc:
                self._protocol = None
                where = self.path or f"{self.host}:{self.port}"
                raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc}") from exc
            except BaseException:
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.abort()
                self._protocol = None
                raise
            return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        """AUTH and SELECT, written before the connection is handed out, so no call of another
        caller can come before them on the wire; their replies are awaited after."""
        steps: list[bytes] = []
        if self.password is not None:
            steps += command("AUTH", *([self.username] if self.username else []), self.password)
        if self.db:
            steps += command("SELECT", self.db)
        assert protocol.transport is not None
        replies = [asyncio.get_running_loop().create_future() for _ in range(bool(self.password is not None)
                                                                              + bool(self.db))]
        protocol.waiting.extend(replies)
        if steps:
            protocol.transport.write(b"".join(steps))
        self._protocol = protocol
        for reply in replies:
            await reply

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed
