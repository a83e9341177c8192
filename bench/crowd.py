"""Many minimal WebSocket connections to a hub, in processes of their own, for the fan-out and
connection-scale benchmarks.

The crowd runs outside the bench process so that reading thousands of frames does not share an
event loop (and a GIL) with the peer that causes them; loopback only. Each child process is this
file run as a script: it opens its connections, subscribes them to a job when told to, says
`ready <connections>` on stdout, and then, for every progress message, says
`all <message> <first_ns> <last_ns> <frames>` once every one of its connections has that message's
`job_update` (times are CLOCK_MONOTONIC, which all processes of the machine share; `frames` counts
every `job_update` the child received so far). It exits when its stdin closes.

Run as: python bench/crowd.py URL PATH COUNT [JOB_ID], PATH being /ws/client or /ws/monitor (monitors get
every job event of the queue without subscribing).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CROWD_SCRIPT = Path(__file__).resolve()
# one process holds at most this many connections: on 2 cores more processes do not read faster,
# but a single loop with thousands of sockets makes the last arrival wait for the whole loop turn
CONNECTIONS_PER_PROCESS = 2_500


def raise_descriptor_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit (the hub raises its own); the new
    soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Report:
    """One child's `all` line: every one of its connections has the frame of `message`."""

    message: str
    first_ns: int
    last_ns: int
    frames: int


@dataclass
class Crowd:
    """`count` connections to `url`, spread over child processes; optionally subscribed to a job."""

    children: list[asyncio.subprocess.Process]
    connections: int
    reports: dict[str, list[Report]] = field(default_factory=dict)

    @classmethod
    async def start(cls, url: str, count: int, job_id: str | None = None, path: str = "/ws/client",
                    per_process: int = CONNECTIONS_PER_PROCESS, ready_timeout_s: float = 120.0) -> Crowd:
        """Start the children and wait until every connection is open (and subscribed)."""
        processes = max(1, math.ceil(count / per_process))
        sizes = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        children = [await asyncio.create_subprocess_exec(
            sys.executable, str(CROWD_SCRIPT), url, path, str(size), *([job_id] if job_id else []),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE) for size in sizes]
        crowd = cls(children, count)
        try:
            async with asyncio.timeout(ready_timeout_s):
                for child, size in zip(children, sizes, strict=True):
                    line = await crowd._line(child)
                    if line != f"ready {size}":
                        raise RuntimeError(f"a crowd process said {line!r}, not 'ready {size}'")
        except BaseException:
            await crowd.close()
            raise
        return crowd

    async def _line(self, child: asyncio.subprocess.Process) -> str:
        assert child.stdout is not None
        raw = await child.stdout.readline()
        if not raw:
            raise RuntimeError(f"a crowd process ended (exit code {await child.wait()})")
        return raw.decode().strip()

    async def all_have(self, message: str, timeout_s: float = 30.0) -> list[Report]:
        """Wait until every connection has the `job_update` whose message is `message`; one report per
        child process. Reports of other messages that come first are kept for their own call."""
        async with asyncio.timeout(timeout_s):
            while len(self.reports.get(message, [])) < len(self.children):
                await self._read_one_round()
        return self.reports.pop(message)

    async def _read_one_round(self) -> None:
        lines = await asyncio.gather(*(self._line(child) for child in self.children))
        for line in lines:
            if not line.startswith("all "):  # an error frame the hub sent a crowd connection
                raise RuntimeError(f"a crowd process said {line!r}")
            _all, message, first_ns, last_ns, frames = line.split()
            self.reports.setdefault(message, []).append(Report(message, int(first_ns), int(last_ns),
                                                               int(frames)))

    async def close(self) -> None:
        for child in self.children:
            if child.stdin is not None:
                child.stdin.close()
        for child in self.children:
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()


# ---- the child process -------------------------------------------------------------------------


async def _child(url: str, count: int, job_id: str | None) -> None:
    import orjson
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    out = sys.stdout
    waiting: dict[str, int] = {}  # message -> connections that have not had it yet
    first_seen: dict[str, int] = {}
    frames = 0
    greeted = asyncio.Event()
    answered = 0  # welcome (and subscribed) frames while setting up

    class Listener(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            nonlocal frames, answered
            if frame.msg_type != WSMsgType.TEXT:
                return
            now = time.monotonic_ns()
            data = orjson.loads(frame.get_payload_as_bytes())
            kind = data.get("type")
            if kind == "job_update" and "message" in data:
                frames += 1
                message = data["message"]
                left = waiting.get(message, count) - 1
                first_seen.setdefault(message, now)
                if left:
                    waiting[message] = left
                    return
                waiting.pop(message, None)
                out.write(f"all {message} {first_seen.pop(message)} {now} {frames}\n")
                out.flush()
            elif kind in ("welcome", "subscribed"):
                answered += 1
                if answered == count * (2 if job_id else 1):
                    greeted.set()
            elif kind == "error":
                out.write(f"error {data}\n")
                out.flush()

    transports: list[WSTransport] = []
    for _ in range(count):
        transport, _listener = await ws_connect(Listener, url)
        if job_id:
            transport.send(WSMsgType.TEXT, orjson.dumps({"type": "subscribe_job", "job_id": job_id}))
        transports.append(transport)
    await asyncio.wait_for(greeted.wait(), 60)
    out.write(f"ready {count}\n")
    out.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    for transport in transports:
        with contextlib.suppress(Exception):
            transport.send_close()
            transport.disconnect()


def main(argv: list[str]) -> None:
    import uvloop

    url, count = argv[0] + argv[1], int(argv[2])
    job_id = argv[3] if len(argv) > 3 else None
    raise_descriptor_limit()
    uvloop.run(_child(url, count, job_id))


if __name__ == "__main__":
    main(sys.argv[1:])
