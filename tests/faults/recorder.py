"""The handlers of the fault tests' worker processes (`empfast worker recorder:HANDLERS`): each run
appends `<job id> <attempt> <pid> start` when it begins and `... done` when it returns, one line
with one write to an O_APPEND file, so lines of several processes never mix and a run cut short by
SIGKILL still left its `start`. The file is $EMPFAST_FAULT_RUNS."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from empfast.worker import Job


def _note(job: Job, what: str) -> None:
    line = f"{job.job_id} {job.attempt} {os.getpid()} {what}\n".encode()
    fd = os.open(os.environ["EMPFAST_FAULT_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def record(job: Job) -> dict[str, Any]:
    """Payload {"seconds": s}: sleeps s seconds (without progress, so only heartbeats keep the
    lease); the result names the run, so a test can tell whose outcome was stored."""
    _note(job, "start")
    await asyncio.sleep(float(job.payload.get("seconds", 0.2)))
    _note(job, "done")
    return {"pid": os.getpid(), "attempt": job.attempt}


HANDLERS = {"record": record}
