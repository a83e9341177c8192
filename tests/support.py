"""Shared pieces of the tests (not fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
import redis
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from empfast.config import HubConfig
from empfast.hub import Hub
from empfast.store import Store

# A fixed "now" in ms: tests move time by hand instead of sleeping.
T = 1_800_000_000_000

DISCONNECTED = b"<disconnected>"

MakeStore = Callable[..., Awaitable[Store]]


REDIS_BINARY = shutil.which("redis-server")


# a hub's background loops made quick, so tests see sweeps, stats and events within a few tenths
FAST_TIMINGS = {"sweep_interval_s": 0.05, "stats_interval_s": 0.05, "events_block_ms": 50}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A redis-server of the tests' own, on a free port, that a test may kill and start again."""

    port: int
    workdir: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_BINARY
        self.process = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--logfile", str(Path(self.workdir) / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        with redis.Redis(port=self.port) as client:
            client.flushall()


class WSPeer:
    """A test peer over a real WebSocket: frames go into a queue; every wait has a timeout, so a
    broken test fails fast instead of hanging."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: WSTransport | None = None

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> WSPeer:
        peer = cls()

        class Listener(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    peer.frames.put_nowait(frame.get_payload_as_bytes())

            def on_ws_disconnected(self, transport: WSTransport) -> None:
                peer.frames.put_nowait(DISCONNECTED)

        peer.transport, _ = await ws_connect(Listener, url, extra_headers=headers)
        return peer

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.transport is not None
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        self.transport.send(WSMsgType.TEXT, data)

    async def next(self, wait_s: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(wait_s):
            raw = await self.frames.get()
        return {"type": DISCONNECTED.decode()} if raw == DISCONNECTED else orjson.loads(raw)

    async def until(self, kind: str, wait_s: float = 5.0, **match: object) -> dict[str, Any]:
        """The next frame of this type (and these field values); frames before it are skipped."""
        async with asyncio.timeout(wait_s):
            while True:
                frame = await self.next(wait_s)
                if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                    return frame

    async def until_any(self, kinds: tuple[str, ...], wait_s: float = 5.0) -> dict[str, Any]:
        """The next frame of any of these types; frames of other types before it are skipped."""
        async with asyncio.timeout(wait_s):
            while True:
                frame = await self.next(wait_s)
                if frame["type"] in kinds:
                    return frame

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()


def require_redis_binary(purpose: str) -> None:
    """Skip a test that needs redis-server when there is none; in CI (EMPFAST_REQUIRE_REAL_REDIS), fail."""
    if not REDIS_BINARY:
        if os.environ.get("EMPFAST_REQUIRE_REAL_REDIS"):
            pytest.fail("no redis-server binary, and EMPFAST_REQUIRE_REAL_REDIS is set: install redis-server")
        pytest.skip(f"no redis-server binary on PATH: {purpose} (apt-get install redis-server)")


@contextlib.contextmanager
def running_redis_server(purpose: str) -> Iterator[RedisServer]:
    """A redis-server of our own for a test session; skips (or fails, in CI) when there is none."""
    require_redis_binary(purpose)
    with tempfile.TemporaryDirectory(prefix="empfast-redis-") as workdir:
        server = RedisServer(free_port(), workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()



class ServedHub(NamedTuple):
    """An `empfast serve` process: its address and pid (for /proc readings and profilers)."""

    url: str
    pid: int


@contextlib.contextmanager
def empfast_serve(redis_url: str, queue: str, *options: str, cwd: Path | None = None) -> Iterator[ServedHub]:
    """`empfast serve` in its own process on a free loopback port, as a user runs it, until it
    listens; stopped with SIGTERM at the end. Its log is kept to explain an early exit."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "empfast", "serve", "--port", str(port), "--http-port", "0",
             "--redis-url", redis_url,
             "--queue", queue, "--log-level", "warning", *options],
            stderr=log, env={**os.environ, "EMPFAST_JSON_LOGS": ""}, cwd=cwd)
        try:
            deadline = time.monotonic() + 20
            while not listening(port):
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"empfast serve exited: {log.read().decode()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"empfast serve did not listen on port {port} within 20 s")
                time.sleep(0.05)
            yield ServedHub(f"ws://127.0.0.1:{port}", proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def listening(port: int) -> bool:
    """Whether something accepts connections on this loopback port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ws_url(hub: Hub, path: str = "") -> str:
    """The hub's address, with a path such as "/ws/client" when given."""
    return f"ws://127.0.0.1:{hub.port}{path}"


async def connect(hub: Hub, path: str, headers: dict[str, str] | None = None) -> WSPeer:
    """A raw peer on one of the hub's endpoints, past its welcome frame."""
    peer = await WSPeer.connect(ws_url(hub, path), headers)
    assert (await peer.next())["type"] == "welcome"
    return peer


async def register(hub: Hub, worker_id: str, job_types: list[str], concurrency: int = 1,
                   batch: bool = False) -> WSPeer:
    """A raw worker peer, registered (asking for jobs_assigned frames with `batch`)."""
    worker = await connect(hub, f"/ws/worker/{worker_id}")
    worker.send({"type": "register_worker", "job_types": job_types, "concurrency": concurrency,
                 "batch": batch})
    assert (await worker.until("worker_registered")).get("batch", False) is batch
    return worker


async def submit(client: WSPeer, job_type: str, payload: Any = None, **fields: object) -> str:
    """Submit from a raw client peer; the job id."""
    message: dict[str, Any] = {"type": "submit_job", "job_type": job_type, **fields}
    if payload is not None:
        message["payload"] = payload
    client.send(message)
    return (await client.until("job_accepted"))["job_id"]


@contextlib.asynccontextmanager
async def started_hub(make_store: MakeStore, **settings: object) -> AsyncIterator[Hub]:
    """A hub on a free port whose queue has these settings (lease_ms, liveness_ms, ...), with fast
    background loops, stopped at the end."""
    hub = Hub(await make_store(**settings),
              HubConfig(port=0, http_port=0, sweep_interval_s=0.05, stats_interval_s=0.05,
                        events_block_ms=50))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def assert_groups_consistent(store: Store) -> None:
    """The groups' bookkeeping (docs/job-control.md 4) agrees with the jobs: each pending job of a
    grouped type is in its group's set (group '' when it has none) and no other job is; the groups
    with pending jobs are those in the type's line or parked by the per-group limit; each group's
    active count is its number of active jobs. A job missing from its group would never be claimed;
    a group missing from the line and the parked set, never served; a count off, its limit wrong."""
    redis, keys = store.redis, store.keys
    grouped = await redis.hget(keys.meta, "grouped")
    active: dict[str, dict[str, int]] = {}
    for job_id in await redis.zrange(keys.active, 0, -1):
        job_type, group = await redis.hmget(keys.job(job_id.decode()), "type", "group")
        if group is not None:
            counts = active.setdefault(job_type.decode(), {})
            counts[group.decode()] = counts.get(group.decode(), 0) + 1
    for job_type in orjson.loads(grouped) if grouped else []:
        filed: dict[str, set[bytes]] = {}
        for job_id in await redis.zrange(keys.pending(job_type), 0, -1):
            group = await redis.hget(keys.job(job_id.decode()), "group")
            filed.setdefault(group.decode() if group else "", set()).add(job_id)
        base = keys.group(job_type, "")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", base) + "*"
        found = {key.decode()[len(base):]: set(await redis.zrange(key, 0, -1))
                 async for key in redis.scan_iter(match=pattern, count=1000)}
        assert found == filed, (job_type, found, filed)
        line = {g.decode() for g in await redis.zrange(keys.groups(job_type), 0, -1)}
        parked = {g.decode() for g in await redis.smembers(keys.parked(job_type))}
        assert line | parked == set(filed), (job_type, line, parked, set(filed))
        counted = await redis.hgetall(keys.group_active(job_type))
        counts = {g.decode(): int(n) for g, n in counted.items()}
        assert counts == active.get(job_type, {}), (job_type, counts)
