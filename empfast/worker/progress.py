"""A worker's progress reports and log lines, coalesced per job: at most one `update_job_progress`
and one `append_job_log` frame (or a few, for a burst of lines bigger than a frame) per run every
interval; the latest progress and every log line (up to the MAX_LOG_LINES the hub keeps) always
sent, by a timer or just before the outcome, and kept while disconnected to go out after
re-registering (docs/sdks-and-cli.md, "Progress" and "Logs")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import orjson

from empfast.connection import Connection
from empfast.limits import (
    DEFAULT_MAX_FRAME_BYTES,
    LOG_CUT_MARKER,
    MAX_LOG_LINE_BYTES,
    MAX_LOG_LINES,
    payload_limit,
)
from empfast.worker.job import Run


def cut_log_line(line: str) -> str:
    """A line as the hub stores it (appendJobLog): at most MAX_LOG_LINE_BYTES of UTF-8, cut at a
    character boundary and ending with LOG_CUT_MARKER. Cut here too, so a burst of long lines does
    not cost frames; a lone surrogate (which no JSON encoder sends) becomes "?"."""
    data = line.encode("utf-8", "replace")
    if len(data) <= MAX_LOG_LINE_BYTES:
        return data.decode()
    return data[:MAX_LOG_LINE_BYTES - len(LOG_CUT_MARKER)].decode("utf-8", "ignore") + LOG_CUT_MARKER


def log_chunks(lines: list[str], max_bytes: int) -> Iterator[list[str]]:
    """The lines in as few frames' worth as hold at most MAX_LOG_LINES lines and `max_bytes` of JSON."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        length = len(orjson.dumps(line)) + 1
        if chunk and (len(chunk) == MAX_LOG_LINES or size + length > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += length
    if chunk:
        yield chunk


class ProgressReports:
    def __init__(self, connection: Connection, interval_s: float, registered: Callable[[], bool],
                 current: Callable[[Run], bool]) -> None:
        self.connection, self.interval_s = connection, interval_s
        # whether the worker is registered now; whether a run is still the one of its job id
        self._registered, self._current = registered, current

    @staticmethod
    def _running(run: Run) -> bool:
        return run.task is not None and not run.task.done() and run.cancel_reason is None

    def report(self, run: Run, pct: float, message: str) -> None:
        if self._running(run):
            run.unsent_progress = (pct, message)
            self._due(run)

    def log(self, run: Run, lines: list[str]) -> None:
        if self._running(run):
            run.unsent_logs.extend(cut_log_line(line) for line in lines)
            del run.unsent_logs[:-MAX_LOG_LINES]  # the hub would drop the older ones anyway
            self._due(run)

    def _due(self, run: Run) -> None:
        if run.flush_timer is not None:
            return  # a flush is due; it sends the latest value and every line
        loop = asyncio.get_running_loop()
        wait_s = run.progress_sent_at + self.interval_s - loop.time()
        if wait_s <= 0:
            self.send(run)
        else:
            run.flush_timer = loop.call_later(wait_s, self.flush, run)

    def flush(self, run: Run) -> None:
        """A run's unsent progress and lines, if the run is still current (a timer, after a reconnect)."""
        run.flush_timer = None
        if (run.unsent_progress is not None or run.unsent_logs) and self._current(run):
            self.send(run)

    def send(self, run: Run) -> None:
        if not self._registered():
            return  # kept: sent again after the reconnect
        # no req: the hub then answers only errors (a lost lease), which arrive as pushes
        if run.unsent_progress is not None:
            pct, message = run.unsent_progress
            self.connection.send({"type": "update_job_progress", "job_id": run.job.job_id,
                                  "progress": pct, "message": message})
            run.unsent_progress = None
        if run.unsent_logs:
            max_frame = int(self.connection.welcome.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES))
            for lines in log_chunks(run.unsent_logs, payload_limit(max_frame)):
                self.connection.send({"type": "append_job_log", "job_id": run.job.job_id,
                                      "attempt": run.job.attempt, "lines": lines})
            run.unsent_logs = []
        run.progress_sent_at = asyncio.get_running_loop().time()
