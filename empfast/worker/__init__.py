"""The worker SDK: register job types with the hub, run each assigned job in its own task through
an `async def handler(job)`, and report the outcome so that no result is lost and none is applied
twice, across reconnects and shutdown. docs/protocol.md (sections 4.2, 4.4, 5 and 7) is the contract.

    worker = Worker("ws://127.0.0.1:8765", concurrency=4)

    @worker.handler("resize")
    async def resize(job: Job) -> dict[str, str]:
        await job.progress(50, "resizing")
        return {"url": "..."}

    await worker.run()  # until SIGINT/SIGTERM, then a graceful stop

- worker.py: the Worker (connection, registration, heartbeats, running jobs, graceful stop)
- job.py: the Job a handler gets, the handler contract, a run and its outcome
- outbox.py: outcomes kept and re-sent until the hub acknowledges them
"""

from empfast.ids import default_worker_id
from empfast.worker.job import Handler, Job, NonRetryableError, check_handler
from empfast.worker.outbox import WorkerStats
from empfast.worker.worker import Worker, run_worker

__all__ = ["Handler", "Job", "NonRetryableError", "Worker", "WorkerStats", "check_handler",
           "default_worker_id", "run_worker"]
