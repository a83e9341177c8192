"""empfast through a minimal peer of our own that speaks only docs/protocol.md: raw WebSocket text
frames of JSON (picows and orjson), nothing imported from empfast. It is what a worker or client
written in another language sees of the hub, without the Python SDKs' bookkeeping (request
tracking, re-sends, watches, one task per job).

- The worker registers with the orchestrator's concurrency as a batch worker (`"batch": true`,
  protocol.md §4.2), answers every `jobs_assigned` with one `complete_jobs` of all its jobs at once
  (with each job's `attempt`, not waiting for the previous ack), and sends `worker_heartbeat` every
  `heartbeat_interval_s`, as every worker must. With `EMPFAST_BENCH_SINGLE_FRAMES=1` it registers
  without `batch` and answers each `job_assigned` with a `complete_job` (the frames of a worker
  that does not batch).
- The client sends `submit_jobs` batches (`subscribe: false`), one after another, each after the
  previous reply; for the latency, `submit_job` with its own job id, then waits for that job's
  `job_completed` event (which may come before `job_accepted`, §4.1).

Run by bench/compare (python -m bench.compare), which drives it through steps.py's handshake."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.compare import steps

RESULT = {"ok": True}
BATCH = os.environ.get("EMPFAST_BENCH_SINGLE_FRAMES") != "1"
Message = dict[str, Any]


class FrameSocket(WSListener):
    """One hub connection: each text frame is parsed and handed to `on_message`; a close frame is
    answered with its code, as protocol.md §2 asks."""

    def __init__(self, on_message: Callable[[Message], None]) -> None:
        self.on_message = on_message
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.on_message(orjson.loads(frame.get_payload_as_bytes()))
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.on_message({"type": "disconnected"})

    def send(self, message: Message) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(message))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close(1000)
            self.transport.disconnect()


async def open_socket(url: str, on_message: Callable[[Message], None]) -> FrameSocket:
    _, listener = await ws_connect(lambda: FrameSocket(on_message), url)
    assert isinstance(listener, FrameSocket)
    return listener


class ProtocolWorker:
    """A worker that completes every job it is given, at once."""

    def __init__(self, url: str, worker_id: str, job_type: str, concurrency: int) -> None:
        self.url, self.worker_id, self.job_type, self.concurrency = url, worker_id, job_type, concurrency
        self.assigned = 0
        self.acked = 0
        self.socket: FrameSocket | None = None
        self.unregistered = False
        self._registered: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._target = 0
        self._reached: asyncio.Future[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    def expect(self, more: int) -> asyncio.Future[None]:
        """A future done once `more` completions past the ones seen so far are acknowledged."""
        self._target = self.acked + more
        self._reached = asyncio.get_running_loop().create_future()
        return self._reached

    async def register(self) -> None:
        self.socket = await open_socket(f"{self.url}/ws/worker/{self.worker_id}", self._on_message)
        self.socket.send({"type": "register_worker", "req": "register", "job_types": [self.job_type],
                          "concurrency": self.concurrency, "batch": BATCH})
        registered = await asyncio.wait_for(self._registered, 10)
        self._heartbeats = asyncio.ensure_future(self._heartbeat_loop(registered["heartbeat_interval_s"]))

    async def _heartbeat_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            assert self.socket is not None
            self.socket.send({"type": "worker_heartbeat"})

    def _on_message(self, message: Message) -> None:
        kind = message["type"]
        if kind == "jobs_assigned":
            jobs = message["jobs"]
            self.assigned += len(jobs)
            assert self.socket is not None
            self.socket.send({"type": "complete_jobs", "jobs": [
                {"job_id": job["job_id"], "attempt": job["attempt"], "result": RESULT} for job in jobs]})
        elif kind == "jobs_completed_ack":
            if message["refused"]:
                self._fail(RuntimeError(f"the hub refused completions: {message['refused']}"))
            self._count_acks(len(message["job_ids"]))
        elif kind == "job_assigned":
            self.assigned += 1
            assert self.socket is not None
            self.socket.send({"type": "complete_job", "job_id": message["job_id"],
                              "attempt": message["attempt"], "result": RESULT})
        elif kind == "job_completed_ack":
            self._count_acks(1)
        elif kind == "worker_registered":
            self._registered.set_result(message)
        elif kind == "worker_unregistered":
            self.unregistered = True
        elif kind not in ("welcome", "worker_heartbeat_ack") and not self.unregistered:
            self._fail(RuntimeError(f"the protocol worker got {message}"))

    def _count_acks(self, acks: int) -> None:
        self.acked += acks
        if self.acked >= self._target and self._reached is not None and not self._reached.done():
            self._reached.set_result(None)

    def _fail(self, error: Exception) -> None:
        for future in (self._registered, self._reached):
            if future is not None and not future.done():
                future.set_exception(error)

    async def unregister(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        if self.socket is not None:
            self.socket.send({"type": "unregister_worker"})
            assert self.socket.transport is not None
            # the hub answers and closes with 1000 (protocol.md §4.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.socket.transport.wait_disconnected(), 5)


class ProtocolClient:
    """Requests matched to replies by `req`; `job_completed` events matched to waiting submits."""

    def __init__(self) -> None:
        self.socket: FrameSocket | None = None
        self._requests = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._completions: dict[str, asyncio.Future[Message]] = {}

    async def connect(self, url: str) -> None:
        self.socket = await open_socket(f"{url}/ws/client", self._on_message)

    def request(self, message: Message) -> asyncio.Future[Message]:
        req = next(self._requests)
        future = self._replies[req] = asyncio.get_running_loop().create_future()
        assert self.socket is not None
        self.socket.send({**message, "req": req})
        return future

    def _on_message(self, message: Message) -> None:
        kind = message["type"]
        req = message.get("req")
        if req is not None:
            future = self._replies.pop(req)
            if kind == "error":
                future.set_exception(RuntimeError(f"the hub refused a request: {message}"))
            else:
                future.set_result(message)
        elif kind == "job_completed":
            completion = self._completions.pop(message["job_id"], None)
            if completion is not None:
                completion.set_result(message)
        elif kind in ("error", "disconnected") or (kind == "job_failed" and message.get("final")):
            failure = RuntimeError(f"the protocol client got {message}")
            for future in (*self._replies.values(), *self._completions.values()):
                if not future.done():
                    future.set_exception(failure)

    async def submit_batches(self, job_type: str, payload: Any, count: int, batch: int) -> None:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            reply = await self.request({"type": "submit_jobs", "subscribe": False,
                                        "jobs": [{"job_type": job_type, "payload": payload}] * size})
            if len(reply["job_ids"]) != size:
                raise AssertionError(f"submit_jobs of {size} jobs answered {reply}")

    async def submit_and_wait(self, job_type: str, payload: Any) -> Message:
        """Submit one job and wait for its `job_completed`, registered before the submit leaves."""
        job_id = uuid.uuid4().hex
        completion = self._completions[job_id] = asyncio.get_running_loop().create_future()
        await self.request({"type": "submit_job", "job_type": job_type, "payload": payload, "job_id": job_id})
        return await asyncio.wait_for(completion, 30)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


async def drain(client: ProtocolClient, worker: ProtocolWorker, options: steps.LoadOptions) -> None:
    """Enqueue every job, then register the worker: timed from its connect to the last ack."""
    reached = worker.expect(options.jobs)
    await steps.ready("drain")
    began = time.perf_counter()
    await client.submit_batches(options.job_type, options.payload, options.jobs, options.batch)
    enqueued = time.perf_counter()
    await worker.register()
    await reached
    ended = time.perf_counter()
    steps.done("drain", {"jobs": options.jobs, "ran": worker.assigned, "enqueue_s": enqueued - began,
                         "run_s": ended - enqueued})


async def mixed(client: ProtocolClient, worker: ProtocolWorker, options: steps.LoadOptions) -> None:
    """The registered worker runs the jobs while they are enqueued."""
    ran_before = worker.assigned
    reached = worker.expect(options.jobs)
    await steps.ready("mixed")
    began = time.perf_counter()
    await client.submit_batches(options.job_type, options.payload, options.jobs, options.batch)
    await reached
    elapsed_s = time.perf_counter() - began
    steps.done("mixed", {"jobs": options.jobs, "ran": worker.assigned - ran_before, "elapsed_s": elapsed_s})


async def latency(client: ProtocolClient, worker: ProtocolWorker, options: steps.LoadOptions) -> None:
    ran_before = worker.assigned
    await steps.ready("latency")
    latencies_ms = []
    for _ in range(options.warmup + options.latency_rounds):
        began = time.perf_counter()
        completed = await client.submit_and_wait(options.job_type, options.payload)
        if completed["result"] != RESULT:
            raise AssertionError(f"a compare job ended with {completed}")
        latencies_ms.append((time.perf_counter() - began) * 1000)
    steps.done("latency", {"rounds": options.latency_rounds, "warmup": options.warmup,
                           "ran": worker.assigned - ran_before,
                           "latencies_ms": latencies_ms[options.warmup:]})


async def main(options: steps.LoadOptions) -> None:
    client = ProtocolClient()
    await client.connect(options.url)
    worker = ProtocolWorker(options.url, "compare-protocol", options.job_type, options.concurrency)
    steps.emit({"event": "hello", "peer": "empfast-protocol"})
    try:
        await drain(client, worker, options)
        await mixed(client, worker, options)
        await latency(client, worker, options)
    finally:
        await worker.unregister()
        client.close()


if __name__ == "__main__":
    uvloop.run(main(steps.parse_load_options(__doc__ or "")))
