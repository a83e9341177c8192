"""The Worker: its connection to the hub, registration and heartbeats, the jobs it runs (each in
its own task, progress coalesced), and a graceful stop. Outcomes go through the Outbox
(outbox.py); a job's pieces are in job.py. docs/protocol.md (sections 4.2, 4.4, 5 and 7) is the
contract."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any

from picows import WSTransport

from empfast.connection import Connection, ConnectionClosed, Disconnected, HubError, endpoint
from empfast.ids import default_worker_id
from empfast.limits import DEFAULT_MAX_FRAME_BYTES, MAX_CONCURRENCY, payload_limit
from empfast.protocol import WORKER_ID_RE, WORKER_ID_RULE
from empfast.worker.job import (
    SHUTDOWN_ERROR,
    Handler,
    Job,
    NonRetryableError,
    Outcome,
    Run,
    cancelled_outcome,
    check_handler,
    completion,
    failure,
    no_handler,
)
from empfast.worker.outbox import Outbox, WorkerStats
from empfast.worker.progress import ProgressReports
from empfast.worker.signals import on_stop_signals

log = logging.getLogger("empfast.worker")

class Worker:
    """A worker process's connection to the hub and the jobs it runs. Use `await run()` (until
    SIGINT/SIGTERM), `async with Worker(...)`, or `start()` and `stop()`. It serves one queue of
    the hub (`queue`; None: the hub's default): a worker of several queues is a Worker each."""

    def __init__(self, url: str, handlers: Mapping[str, Handler] | None = None, *,
                 queue: str | None = None, worker_id: str | None = None, concurrency: int = 1,
                 token: str | None = None,
                 grace_s: float = 30.0, heartbeat_interval_s: float | None = None,
                 progress_interval_s: float = 0.1, ack_timeout_s: float = 10.0,
                 reconnect_base_s: float = 0.1, reconnect_cap_s: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, got {concurrency}")
        self.worker_id = worker_id or default_worker_id()
        if not WORKER_ID_RE.match(self.worker_id):
            raise ValueError(f"worker id {self.worker_id!r} is not valid: use {WORKER_ID_RULE}")
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.progress_interval_s = progress_interval_s
        self.ack_timeout_s = ack_timeout_s
        self.handlers: dict[str, Handler] = {}
        for job_type, handler in (handlers or {}).items():
            self.handlers[job_type] = check_handler(job_type, handler)
        self.stats = WorkerStats()
        self.connection = Connection(
            endpoint(url, "worker", queue=queue), on_push=self._on_push, on_connected=self._on_connected,
            backoff_base_s=reconnect_base_s, backoff_cap_s=reconnect_cap_s, token=token,
            ssl_context=ssl_context)
        self._runs: dict[str, Run] = {}
        # job id -> a newer attempt assigned while the lost run of that job was still stopping
        self._next_attempt: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # keeps background tasks referenced
        self._slots = asyncio.Semaphore(concurrency)
        self._idle = asyncio.Event()  # no job running and every outcome acknowledged
        self._idle.set()
        self._session: WSTransport | None = None  # the socket we are registered on
        self._heartbeat_every = 10.0
        self._heartbeats: asyncio.Task[None] | None = None
        self._started = False
        self._draining = False
        self._stop_requested = asyncio.Event()
        self._grace_cut = asyncio.Event()  # a second signal: stop waiting for in-flight jobs
        self._stopping: asyncio.Task[None] | None = None
        self.outbox = Outbox(self.connection, self.stats, ack_timeout_s=ack_timeout_s,
                             registered=self._registered, spawn=self._spawn, on_change=self._update_idle)
        self.progress = ProgressReports(self.connection, progress_interval_s, self._registered,
                                        lambda run: self._runs.get(run.job.job_id) is run)

    # ---- registration of handlers and lifecycle ----------------------------------------------

    def handler(self, job_type: str) -> Callable[[Handler], Handler]:
        """Decorator: `@worker.handler("resize")` over an `async def resize(job)`."""

        def register(fn: Handler) -> Handler:
            if self._started:
                raise RuntimeError("register handlers before start(): the hub learns the job types "
                                   "when the worker registers")
            self.handlers[job_type] = check_handler(job_type, fn)
            return fn

        return register

    async def start(self) -> None:
        """Connect and register; returns once registered. Raises HubError if the hub refuses for
        good (a wrong token). While the hub is unreachable it keeps retrying with backoff."""
        if not self.handlers:
            raise ValueError("the worker has no handlers: pass handlers={'type': fn} or use "
                             "@worker.handler('type')")
        if self._started:
            return
        self._started = True
        log.info("worker %s starting: job types %s, concurrency %d", self.worker_id,
                 sorted(self.handlers), self.concurrency)
        await self.connection.start()

    async def run(self) -> None:
        """Run until SIGINT/SIGTERM (or stop() from elsewhere), then stop gracefully. A second
        signal cuts the grace period short. Raises HubError if the hub refused the worker for good
        (e.g. `replaced`: another process registered the same worker id)."""
        # installed before connecting, so a signal also ends a wait for an unreachable hub
        remove_signal_handlers = on_stop_signals(self._on_stop_signal)
        try:
            if await self._until_stop_requested(self.start()):
                await self._until_stop_requested(self.connection.wait_closed())
        finally:
            remove_signal_handlers()
            # refused for good (replaced): the outcomes could never be delivered, so no grace
            await self.stop(grace_s=0 if self.connection.fatal is not None else None)
        if self.connection.fatal is not None:
            raise self.connection.fatal

    async def _until_stop_requested(self, work: Awaitable[None]) -> bool:
        """Await `work` unless a stop is requested first (then cancel it); True if it finished."""
        work_done = asyncio.ensure_future(work)
        stop_wait = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({work_done, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            work_done.cancel()
        if work_done.done() and not work_done.cancelled():
            work_done.result()  # e.g. HubError: the hub refused this worker for good
            return True
        return False

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs, let in-flight jobs finish within the grace period, fail the rest
        retryable ("worker shutting down"), wait (bounded) for the hub's acks, unregister, close.
        Safe to call more than once; later calls wait for the first."""
        self._stop_requested.set()
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(
                self._shutdown(self.grace_s if grace_s is None else grace_s))
        await asyncio.shield(self._stopping)

    async def wait_idle(self) -> None:
        """Return once no job is running and the hub has acknowledged every outcome."""
        await self._idle.wait()

    def _update_idle(self) -> None:
        if self._runs or self.outbox.pending:
            self._idle.clear()
        else:
            self._idle.set()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        if self._stop_requested.is_set():
            log.warning("%s again: cancelling in-flight jobs now", sig.name)
            self._grace_cut.set()
        else:
            log.info("%s: stopping after in-flight jobs (up to %.0f s; again to cut short)",
                     sig.name, self.grace_s)
            self._stop_requested.set()

    async def _shutdown(self, grace_s: float) -> None:
        self._draining = True
        if self._registered():
            # no new jobs from here on; the held ones keep their leases
            with contextlib.suppress(HubError, Disconnected, ConnectionClosed, TimeoutError):
                await self.connection.request({"type": "worker_status", "status": "draining"},
                                              timeout_s=self.ack_timeout_s, wait_connected=False)
        await self._finish_in_flight(grace_s)
        if self.connection.fatal is None:
            try:
                async with asyncio.timeout(self.ack_timeout_s):
                    await self.outbox.all_acked.wait()
            except TimeoutError:
                log.warning("%d job outcomes were not acknowledged before shutdown; the hub re-runs "
                            "those jobs when their leases lapse", len(self.outbox.pending))
        if self._registered():
            with contextlib.suppress(HubError, Disconnected, ConnectionClosed, TimeoutError):
                reply = await self.connection.request({"type": "unregister_worker"},
                                                      timeout_s=self.ack_timeout_s, wait_connected=False)
                if reply.get("released"):
                    log.info("unregistered; %d held jobs went back to pending", reply["released"])
        self._session = None
        await self.connection.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("worker %s stopped: %s", self.worker_id, self.stats)

    async def _finish_in_flight(self, grace_s: float) -> None:
        tasks = {run.task for run in self._runs.values() if run.task is not None}
        if not tasks:
            return
        log.info("waiting up to %.1f s for %d in-flight jobs", grace_s, len(tasks))
        # asyncio.wait inside a task of its own: cancelling that wait leaves the jobs running
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        cut = asyncio.ensure_future(self._grace_cut.wait())
        try:
            await asyncio.wait({all_done, cut}, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            all_done.cancel()
            cut.cancel()
        for run in list(self._runs.values()):
            if run.task is not None and not run.task.done():
                log.warning("job %s outlived the grace period; cancelling it (it will be retried)",
                            run.job.job_id)
                run.cancel("shutdown")
        left = {run.task for run in self._runs.values() if run.task is not None}
        if left:
            # a handler that swallows cancellation must not hold the process forever
            await asyncio.wait(left, timeout=self.ack_timeout_s)

    # ---- the session: registration, heartbeats, pushes -----------------------------------------

    def _registered(self) -> bool:
        return (self._session is not None and self._session is self.connection.transport
                and self.connection.connected)

    async def _on_connected(self) -> None:
        """After every (re)connect: register with the same id, then restore what the hub must know
        (drain mode, unsent progress, unacknowledged outcomes)."""
        self._session = None
        running_before = {run: run.job.attempt for run in self._runs.values()}
        reply = await self.connection.request(
            {"type": "register_worker", "worker_id": self.worker_id, "job_types": sorted(self.handlers),
             "concurrency": self.concurrency, "batch": True},
            timeout_s=self.ack_timeout_s, wait_connected=False)
        # batch frames both ways when this hub takes them (an older one leaves `batch` out)
        self.outbox.batch = reply.get("batch") is True
        self._heartbeat_every = self._heartbeat_interval(reply)
        held = reply.get("held") or []
        self._stop_runs_not_held(running_before, set(held))
        if self.connection.connects > 1:
            log.info("worker %s re-registered; the hub says it holds %d jobs", self.worker_id, len(held))
        self._session = self.connection.transport
        if self._draining:
            await self.connection.request({"type": "worker_status", "status": "draining"},
                                          timeout_s=self.ack_timeout_s, wait_connected=False)
        if held:
            # the leases ran on while we were away: extend them now, not one interval from now
            self.connection.send({"type": "worker_heartbeat"})
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        self._heartbeats = self._spawn(self._heartbeat_loop(self.connection.transport))
        for run in list(self._runs.values()):
            self.progress.flush(run)
        self.outbox.deliver_all()

    def _stop_runs_not_held(self, running_before: dict[Run, int], held: set[str]) -> None:
        """A job that ran through the disconnect but that the hub no longer counts as ours lost its
        lease meanwhile (it was swept back and may run elsewhere): stop it, as for a lease_lost push."""
        for run, attempt in running_before.items():
            job = run.job
            # a run whose attempt moved on was assigned again on this connection: it is ours
            if job.job_id not in held and job.attempt == attempt and self._runs.get(job.job_id) is run:
                self._on_cancel(job.job_id, "lease_lost")

    def _heartbeat_interval(self, registered: dict[str, Any]) -> float:
        # a third of the lease and liveness even if the hub advertises a longer interval
        candidates = [registered.get("heartbeat_interval_s"), self.heartbeat_interval_s]
        for key in ("lease_s", "liveness_s"):
            value = registered.get(key)
            if isinstance(value, int | float) and value > 0:
                candidates.append(value / 3)
        valid = [c for c in candidates if isinstance(c, int | float) and c > 0]
        return max(0.05, min(valid)) if valid else 10.0

    async def _heartbeat_loop(self, transport: WSTransport | None) -> None:
        while self._session is transport and self.connection.connected:
            await asyncio.sleep(self._heartbeat_every)
            if self._session is transport and self._registered():
                # the ack is not awaited: lost leases come back as cancel_job pushes
                self.connection.send({"type": "worker_heartbeat"})

    def _on_push(self, frame: dict[str, Any], data: bytes) -> None:
        kind = frame.get("type")
        if kind == "job_assigned":
            self._on_assigned(frame)
        elif kind == "jobs_assigned":
            lease_s = frame.get("lease_s", 30.0)
            for job in frame.get("jobs") or ():
                self._on_assigned(job, lease_s)
        elif kind == "cancel_job":
            self._on_cancel(frame.get("job_id"), frame.get("reason"))
        elif kind == "error":
            self._on_error(frame)
        # anything else (heartbeat acks, frames of newer protocol versions) needs nothing from us

    def _on_error(self, frame: dict[str, Any]) -> None:
        code, job_id = frame.get("code"), frame.get("job_id")
        if code == "lease_lost" and isinstance(job_id, str):
            # the answer to a progress frame: the job runs elsewhere now
            self._on_cancel(job_id, "lease_lost")
        elif code == "not_registered" and self._registered():
            # our record lapsed (or Redis lost it): a heartbeat registers us again with the same
            # values (docs/protocol.md 4.5), now rather than one interval from now
            log.warning("the hub no longer knows worker %s; sending a heartbeat to register again",
                        self.worker_id)
            self.connection.send({"type": "worker_heartbeat"})
        elif code in ("replaced", "unauthorized"):
            log.error("the hub refused worker %s for good: %s", self.worker_id, frame.get("error"))
        else:
            log.warning("the hub answered %s: %s", code, frame.get("error"))

    def _on_assigned(self, frame: dict[str, Any], lease_s: float | None = None) -> None:
        """A job_assigned, or an item of a jobs_assigned (which carries `lease_s` once for all)."""
        job_id = frame.get("job_id")
        if not isinstance(job_id, str):
            return
        attempt = frame.get("attempt") if isinstance(frame.get("attempt"), int) else 0
        running = self._runs.get(job_id)
        if running is not None and running.lost and attempt > running.job.attempt:
            # the lost run is still stopping: the new attempt starts once it has ended
            self._next_attempt[job_id] = frame if lease_s is None else {**frame, "lease_s": lease_s}
            return
        if running is not None:
            # docs/protocol.md 5.5: never a second run of one job id; a newer attempt (our lease
            # lapsed and we got the job again) is the one this run reports on
            running.job.attempt = max(running.job.attempt, attempt)
            return
        finished = self.outbox.pending.get(job_id)
        if finished is not None:
            if finished.attempt >= attempt:
                return  # a repeat after a reconnect: the outcome is already on its way
            # our lease on the finished attempt lapsed before its outcome got through: that
            # outcome can never be stored, and the new attempt must run
            self.outbox.forget(finished)
        job_type = str(frame.get("job_type", ""))
        run = Run(job=Job(job_id, job_type, frame.get("payload"), attempt=attempt,
                           priority=frame.get("priority", 0), reassigned=bool(frame.get("reassigned")),
                           lease_s=frame.get("lease_s", 30.0) if lease_s is None else lease_s),
                   handler=self.handlers.get(job_type) or no_handler)
        run.job._report = functools.partial(self.progress.report, run)
        run.job._log = functools.partial(self.progress.log, run)
        if self._draining:
            log.info("job %s arrived while shutting down; handing it back", job_id)
            self.outbox.submit(failure(run.job, SHUTDOWN_ERROR, retry=True))
            return
        self._runs[job_id] = run
        self.stats.in_flight += 1
        self._idle.clear()
        run.task = self.connection.loop.create_task(self._run_job(run))

    def _on_cancel(self, job_id: object, reason: object) -> None:
        run = self._runs.get(job_id) if isinstance(job_id, str) else None
        if run is None or run.task is None or run.task.done():
            return  # finished already: a completion wins over a cancel (docs/protocol.md 4.4)
        if reason == "lease_lost":
            log.warning("lost the lease on job %s (attempt %d); stopping it", job_id, run.job.attempt)
            self.stats.lease_lost += 1
            run.cancel("lease_lost")
        elif reason == "timeout":
            log.warning("job %s (attempt %d) ran past its timeout and was failed; stopping it", job_id,
                        run.job.attempt)
            self.stats.timed_out += 1
            run.cancel("timeout")
        else:
            log.info("job %s was cancelled", job_id)
            run.cancel("cancelled")

    # ---- running a job ---------------------------------------------------------------------------

    async def _run_job(self, run: Run) -> None:
        job = run.job
        outcome: Outcome | None = None
        try:
            await self._slots.acquire()
            try:
                self.stats.started += 1
                result = await run.handler(job)
            finally:
                self._slots.release()
            # a handler that swallowed the cancel of a lost attempt reports nothing: it would be refused
            outcome = None if run.lost else completion(job, result, self._max_result_bytes())
        except asyncio.CancelledError:
            outcome = cancelled_outcome(run)
            if run.cancel_reason is None:
                raise  # not our cancel (the event loop is closing): let it through
        except NonRetryableError as exc:
            log.info("job %s failed for good: %s", job.job_id, exc)
            outcome = failure(job, str(exc) or type(exc).__name__, retry=False)
        except Exception as exc:
            log.exception("job %s (%s, attempt %d) raised", job.job_id, job.job_type, job.attempt)
            outcome = failure(job, f"{type(exc).__name__}: {exc}", retry=True)
        finally:
            self._end_run(run, outcome)

    def _end_run(self, run: Run, outcome: Outcome | None) -> None:
        job_id = run.job.job_id
        if self._runs.get(job_id) is run:
            del self._runs[job_id]
        self.stats.in_flight -= 1
        if run.flush_timer is not None:
            run.flush_timer.cancel()
            run.flush_timer = None
        if outcome is None:
            self._update_idle()
            newer = self._next_attempt.pop(job_id, None)
            if newer is not None:
                self._on_assigned(newer)
            return
        if (run.unsent_progress is not None or run.unsent_logs) and run.cancel_reason != "lease_lost":
            self.progress.send(run)  # the last value and every line go out before the outcome
        self.outbox.submit(outcome)

    def _max_result_bytes(self) -> int:
        return payload_limit(int(self.connection.welcome.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.connection.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def run_worker(url: str, handlers: Mapping[str, Handler], *, worker_id: str | None = None,
                     concurrency: int = 1, token: str | None = None, grace_s: float = 30.0) -> None:
    """Run a worker until SIGINT/SIGTERM, then stop gracefully (the `empfast worker` command)."""
    worker = Worker(url, handlers, worker_id=worker_id, concurrency=concurrency, token=token,
                    grace_s=grace_s)
    await worker.run()
