"""A minimal HTTP/1.1 client over asyncio streams, for the tests of the hub's HTTP side: plain
requests, and Server-Sent Events read as they arrive. No client library, so the tests see the
bytes the hub sends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def _request_bytes(method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                return body
            body += await reader.readexactly(size)
            await reader.readline()
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()


async def http_request(port: int, method: str, path: str, *, body: Any = None,
                       headers: dict[str, str] | None = None, wait_s: float = 10.0) -> HttpAnswer:
    """One request on a connection of its own; `body` is sent as is (bytes) or as JSON."""
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    async with asyncio.timeout(wait_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request_bytes(method, path, data, headers))
            await writer.drain()
            status, got = await _read_head(reader)
            return HttpAnswer(status, got, await _read_body(reader, got))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.data)


@dataclass
class SseStream:
    status: int
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ended: bool = False

    async def next(self, wait_s: float = 5.0) -> SseEvent | None:
        """The next event (comments before it are kept with it); None when the stream ended."""
        event = SseEvent()
        async with asyncio.timeout(wait_s):
            while True:
                line = await self._line()
                if line is None:
                    self.ended = True
                    return None
                if line == "":
                    if event.data or event.id is not None or event.event != "message":
                        return event
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    event.comments.append(value)
                elif name == "data":
                    event.data = value if not event.data else event.data + "\n" + value
                elif name in ("event", "id"):
                    setattr(event, name, value)

    async def _line(self) -> str | None:
        """A line of the chunked body: chunks are read whole and split into lines."""
        while b"\n" not in self._buffer:
            size_line = await self.reader.readline()
            if not size_line:
                return None
            size = int(size_line.strip(), 16)
            if size == 0:
                return None
            self._buffer += await self.reader.readexactly(size)
            await self.reader.readline()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().removesuffix("\r")

    _buffer: bytes = b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def sse(port: int, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[SseStream]:
    """An SSE request; a refused one (not 200) has its body in `reader` still."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request_bytes("GET", path, None, {"Accept": "text/event-stream", **(headers or {})}))
    await writer.drain()
    status, got = await asyncio.wait_for(_read_head(reader), 10)
    stream = SseStream(status, got, reader, writer)
    try:
        yield stream
    finally:
        await stream.close()
