"""A worker's progress reports, coalesced per job: at most one `update_job_progress` frame per run
every interval, the latest value always sent (by a timer, or just before the outcome), and kept
while disconnected to go out after re-registering (docs/sdks-and-cli.md, "Progress")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from empfast.connection import Connection
from empfast.worker.job import Run


class ProgressReports:
    def __init__(self, connection: Connection, interval_s: float, registered: Callable[[], bool],
                 current: Callable[[Run], bool]) -> None:
        self.connection, self.interval_s = connection, interval_s
        # whether the worker is registered now; whether a run is still the one of its job id
        self._registered, self._current = registered, current

    def report(self, run: Run, pct: float, message: str) -> None:
        if run.task is None or run.task.done() or run.cancel_reason is not None:
            return
        run.unsent_progress = (pct, message)
        if run.flush_timer is not None:
            return  # a flush is due; it sends this latest value
        loop = asyncio.get_running_loop()
        wait_s = run.progress_sent_at + self.interval_s - loop.time()
        if wait_s <= 0:
            self.send(run)
        else:
            run.flush_timer = loop.call_later(wait_s, self.flush, run)

    def flush(self, run: Run) -> None:
        """A run's latest unsent value, if the run is still current (a timer, or after a reconnect)."""
        run.flush_timer = None
        if run.unsent_progress is not None and self._current(run):
            self.send(run)

    def send(self, run: Run) -> None:
        if run.unsent_progress is None or not self._registered():
            return  # kept: sent again after the reconnect
        pct, message = run.unsent_progress
        # no req: the hub then answers only errors (a lost lease), which arrive as pushes
        self.connection.send({"type": "update_job_progress", "job_id": run.job.job_id,
                              "progress": pct, "message": message})
        run.unsent_progress = None
        run.progress_sent_at = asyncio.get_running_loop().time()
