"""The worker SDK against a real hub, with a raw WebSocket client on the other side: what a client
sees of jobs that a Worker runs, across failures, cancels, reconnects and shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support import MakeStore, WSPeer, started_hub, submit, ws_url

from empfast.connection import HubError
from empfast.handlers import HandlerSpecError, load_handlers
from empfast.hub import Hub
from empfast.limits import LOG_CUT_MARKER, MAX_LOG_LINE_BYTES
from empfast.worker import Handler, Job, NonRetryableError, Worker

MakeWorker = Callable[..., Worker]



@pytest.fixture
async def make_worker(hub: Hub) -> AsyncIterator[MakeWorker]:
    """Workers on the test hub, each stopped (without grace) at the end of the test."""
    made: list[Worker] = []

    def make(handlers: dict[str, Handler], **options: Any) -> Worker:
        options.setdefault("ack_timeout_s", 2.0)
        worker = Worker(ws_url(hub), handlers, **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.stop(grace_s=0)


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[WSPeer]:
    peer = await WSPeer.connect(f"{ws_url(hub)}/ws/client")
    yield peer
    peer.close()



async def job_status(client: WSPeer, job_id: str) -> dict[str, Any]:
    client.send({"type": "get_job_status", "job_id": job_id})
    return await client.until("job_status", job_id=job_id)


async def frames_until(client: WSPeer, kind: str, wait_s: float = 5.0, **match: Any) -> list[dict[str, Any]]:
    """Every frame up to and including the first of this type (and these field values)."""
    seen = []
    async with asyncio.timeout(wait_s):
        while True:
            frame = await client.next(wait_s)
            seen.append(frame)
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return seen


async def test_a_handlers_result_and_progress_reach_the_client(make_worker: MakeWorker,
                                                               client: WSPeer) -> None:
    async def double(job: Job) -> dict[str, Any]:
        await job.progress(40, "halfway")
        return {"doubled": job.payload["n"] * 2, "attempt": job.attempt}

    worker = make_worker({"double": double})
    await worker.start()
    job_id = await submit(client, "double", {"n": 21})
    update = await client.until("job_update", progress=40.0)
    assert update["job_id"] == job_id and update["message"] == "halfway"
    done = await client.until("job_completed", job_id=job_id)
    assert done["result"] == {"doubled": 42, "attempt": 1}
    assert done["worker_id"] == worker.worker_id
    async with asyncio.timeout(5):
        await worker.wait_idle()
    assert worker.stats.completed == 1 and worker.stats.in_flight == 0


async def test_the_decorator_registers_a_handler(make_worker: MakeWorker, client: WSPeer) -> None:
    worker = make_worker({})

    @worker.handler("shout")
    async def shout(job: Job) -> str:
        return str(job.payload["text"]).upper()

    await worker.start()
    await submit(client, "shout", {"text": "hi"})
    assert (await client.until("job_completed"))["result"] == "HI"


async def test_concurrency_n_runs_n_handlers_at_once_and_never_more(make_worker: MakeWorker,
                                                                   client: WSPeer) -> None:
    running = peak = started = 0
    all_slots_busy, release = asyncio.Event(), asyncio.Event()

    async def hold(job: Job) -> None:
        nonlocal running, peak, started
        running += 1
        started += 1
        peak = max(peak, running)
        if running == 3:
            all_slots_busy.set()
        try:
            await release.wait()
        finally:
            running -= 1

    worker = make_worker({"hold": hold}, concurrency=3)
    await worker.start()
    job_ids = [await submit(client, "hold") for _ in range(7)]
    async with asyncio.timeout(5):
        await all_slots_busy.wait()
    assert started == 3
    release.set()
    finished = set()
    async with asyncio.timeout(10):
        while finished != set(job_ids):
            finished.add((await client.until("job_completed"))["job_id"])
    assert peak == 3 and started == 7


async def test_a_raising_handler_fails_the_attempt_and_the_job_runs_again(make_worker: MakeWorker,
                                                                          client: WSPeer) -> None:
    attempts: list[int] = []

    async def flaky(job: Job) -> str:
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise ValueError("disk on fire")
        return "recovered"

    await make_worker({"flaky": flaky}).start()
    job_id = await submit(client, "flaky")
    failed = await client.until("job_failed", job_id=job_id)
    assert failed["final"] is False and "disk on fire" in failed["error"]
    assert failed["status"] == "scheduled" and failed["retry_at"] > 0  # after a backoff
    done = await client.until("job_completed", job_id=job_id)
    assert done["result"] == "recovered" and done["attempt"] == 2
    assert attempts == [1, 2]


async def test_a_non_retryable_error_fails_the_job_for_good(make_worker: MakeWorker, client: WSPeer) -> None:
    calls = 0

    async def picky(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise NonRetryableError("payload has no 'url'")

    worker = make_worker({"picky": picky})
    await worker.start()
    job_id = await submit(client, "picky")
    failed = await client.until("job_failed", job_id=job_id)
    assert failed["final"] is True and failed["error"] == "payload has no 'url'"
    status = await job_status(client, job_id)
    assert status["status"] == "failed" and status["attempts"] == 1 and calls == 1
    async with asyncio.timeout(5):
        await worker.wait_idle()
    assert worker.stats.failed == 1


async def test_a_cancel_from_a_client_cancels_the_handler(make_worker: MakeWorker, client: WSPeer) -> None:
    started, saw_cancel = asyncio.Event(), asyncio.Event()

    async def forever(job: Job) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    worker = make_worker({"forever": forever})
    await worker.start()
    job_id = await submit(client, "forever")
    async with asyncio.timeout(5):
        await started.wait()
    client.send({"type": "cancel_job", "job_id": job_id, "req": "cancel"})
    # its reply (the state right after the cancel: still active) may come before or after the event
    awaited = {"job_status", "job_cancelled"}
    while awaited:
        awaited.discard((await client.until_any(tuple(awaited)))["type"])
    assert saw_cancel.is_set()
    assert (await job_status(client, job_id))["status"] == "cancelled"
    async with asyncio.timeout(5):
        await worker.wait_idle()
    assert worker.stats.cancelled == 1 and worker.stats.in_flight == 0


async def test_heartbeats_keep_a_job_that_outlasts_its_lease(make_worker: MakeWorker, client: WSPeer) -> None:
    async def slow(job: Job) -> str:
        await asyncio.sleep(3.0)  # the hub's lease is 2 s, and this handler reports no progress
        return "finished"

    await make_worker({"slow": slow}).start()
    job_id = await submit(client, "slow")
    seen = await frames_until(client, "job_completed", wait_s=10, job_id=job_id)
    assert not [frame for frame in seen if frame["type"] == "job_failed"]
    assert seen[-1]["attempt"] == 1 and seen[-1]["result"] == "finished"


@pytest.mark.parametrize("finish_while", ["disconnected", "reconnected"])
async def test_a_socket_drop_mid_job_loses_no_result_and_applies_none_twice(
        make_worker: MakeWorker, client: WSPeer, finish_while: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    runs: list[bool] = []  # per run: was the worker connected when the handler returned?

    async def survive(job: Job) -> str:
        started.set()
        await release.wait()
        runs.append(worker.connection.connected)
        return "survived"

    # a slower first reconnect (0.25 to 0.5 s), so the handler surely finishes before it
    worker = make_worker({"survive": survive}, reconnect_base_s=0.5)
    # on re-register the hub sends the held job again, marked reassigned; it must not run twice
    reassigned = asyncio.Event()
    deliver = worker.connection.on_push

    def spy(frame: dict[str, Any], data: bytes) -> None:
        jobs = frame.get("jobs") if frame["type"] == "jobs_assigned" else [frame]  # a batch worker's frames
        if frame["type"] in ("job_assigned", "jobs_assigned") and any(job.get("reassigned") for job in jobs):
            reassigned.set()
        deliver(frame, data)

    worker.connection.on_push = spy
    await worker.start()
    job_id = await submit(client, "survive")
    async with asyncio.timeout(5):
        await started.wait()
    transport = worker.connection.transport
    assert transport is not None
    transport.disconnect()
    await transport.wait_disconnected()
    if finish_while == "reconnected":
        async with asyncio.timeout(5):
            await reassigned.wait()
    release.set()
    done = await client.until("job_completed", job_id=job_id)
    assert done["result"] == "survived" and done["attempt"] == 1
    assert done["worker_id"] == worker.worker_id  # the same id after the reconnect
    async with asyncio.timeout(5):
        await reassigned.wait()
        await worker.wait_idle()
    assert runs == [finish_while == "reconnected"]
    assert worker.connection.connects == 2 and worker.stats.completed == 1
    client.send({"type": "get_stats"})
    assert (await client.until("stats"))["by_type"]["survive"]["completed"] == 1
    assert (await job_status(client, job_id))["attempts"] == 1


async def test_a_job_whose_lease_lapsed_while_disconnected_is_stopped(make_worker: MakeWorker,
                                                                    client: WSPeer) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    # the first reconnect comes 2.25 to 4.5 s after the drop: after the 2 s lease has lapsed
    worker = make_worker({"stuck": stuck}, reconnect_base_s=4.5, reconnect_cap_s=4.5)
    await worker.start()
    job_id = await submit(client, "stuck", max_attempts=1)
    async with asyncio.timeout(5):
        await started.wait()
    transport = worker.connection.transport
    assert transport is not None
    transport.disconnect()
    failed = await client.until("job_failed", job_id=job_id)
    assert failed["final"] is True and "lease expired" in failed["error"]
    # back on the hub, the worker learns the job is no longer its own and stops running it
    async with asyncio.timeout(8):
        await cancelled.wait()
        await worker.wait_idle()
    assert worker.stats.lease_lost == 1
    assert worker.stats.failed == worker.stats.dropped == 0  # nothing was sent about the job


@pytest.mark.parametrize("swallows", [False, True])
async def test_a_timed_out_job_is_stopped_and_reports_nothing(make_worker: MakeWorker, client: WSPeer,
                                                              swallows: bool) -> None:
    """cancel_job reason timeout: the handler's task is cancelled, and the attempt is not reported,
    even by a handler that swallows the cancel and returns a result (it would be refused)."""
    cancelled = asyncio.Event()

    async def slow(job: Job) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            if not swallows:
                raise
        return "too late"

    worker = make_worker({"slow": slow})
    await worker.start()
    job_id = await submit(client, "slow", timeout_s=0.3, max_attempts=1)
    failed = await client.until("job_failed", job_id=job_id)
    assert (failed["error"], failed["final"]) == ("timeout", True)
    async with asyncio.timeout(5):
        await cancelled.wait()
        await worker.wait_idle()
    assert worker.stats.timed_out == 1
    assert worker.stats.completed == worker.stats.failed == worker.stats.dropped == 0
    status = await job_status(client, job_id)
    assert (status["status"], status["result"]) == ("failed", None)


async def test_stop_finishes_jobs_within_the_grace_and_hands_back_the_rest(make_worker: MakeWorker,
                                                                          client: WSPeer) -> None:
    quick_started, stuck_started, stuck_cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def quick(job: Job) -> str:
        quick_started.set()
        await asyncio.sleep(0.3)
        return "done in time"

    async def stuck(job: Job) -> None:
        stuck_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stuck_cancelled.set()
            raise

    leaving = make_worker({"quick": quick, "stuck": stuck}, concurrency=2)
    await leaving.start()
    quick_id, stuck_id = await submit(client, "quick"), await submit(client, "stuck")
    async with asyncio.timeout(5):
        await quick_started.wait()
        await stuck_started.wait()
    began = time.monotonic()
    await leaving.stop(grace_s=1.0)
    assert time.monotonic() - began < 3.0
    assert stuck_cancelled.is_set()
    assert leaving.stats.completed == 1 and leaving.stats.failed == 1
    failed = await client.until("job_failed", job_id=stuck_id)
    assert failed["final"] is False and "worker shutting down" in failed["error"]
    assert (await job_status(client, quick_id))["result"] == "done in time"

    async def unstuck(job: Job) -> str:
        return "rescued"

    other = make_worker({"stuck": unstuck})
    await other.start()
    done = await client.until("job_completed", job_id=stuck_id)
    assert done["result"] == "rescued" and done["worker_id"] == other.worker_id and done["attempt"] == 2


async def test_run_stops_gracefully_on_sigint(hub: Hub, make_worker: MakeWorker, client: WSPeer) -> None:
    started = asyncio.Event()

    async def work(job: Job) -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "finished before exit"

    worker = make_worker({"work": work}, grace_s=5.0)
    running = asyncio.create_task(worker.run())
    async with asyncio.timeout(5):
        await worker.connection.ready.wait()  # run() installs its signal handlers before connecting
    job_id = await submit(client, "work")
    async with asyncio.timeout(5):
        await started.wait()
    signal.raise_signal(signal.SIGINT)
    async with asyncio.timeout(2):  # the grace is 5 s: stop waits for the job, not the whole grace
        await running
    assert (await client.until("job_completed", job_id=job_id))["result"] == "finished before exit"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monitor = await WSPeer.connect(f"{ws_url(hub)}/ws/monitor")
    monitor.send({"type": "get_workers"})
    workers = (await monitor.until("workers"))["workers"]
    assert worker.worker_id not in [w["worker_id"] for w in workers]  # it unregistered
    monitor.close()


async def test_a_second_process_with_the_same_worker_id_ends_the_first(make_worker: MakeWorker) -> None:
    async def noop(job: Job) -> None:
        return None

    first = make_worker({"noop": noop}, worker_id="shared-id")
    running = asyncio.create_task(first.run())
    async with asyncio.timeout(5):
        await first.connection.ready.wait()
    await make_worker({"noop": noop}, worker_id="shared-id").start()
    with pytest.raises(HubError, match="replaced"):
        async with asyncio.timeout(5):
            await running


async def test_progress_from_a_tight_loop_is_coalesced_and_the_last_value_arrives(
        make_worker: MakeWorker, client: WSPeer) -> None:
    release = asyncio.Event()

    async def chatty(job: Job) -> None:
        for step in range(1, 1001):
            await job.progress(step / 10, f"step {step}")
        await release.wait()

    await make_worker({"chatty": chatty}).start()
    job_id = await submit(client, "chatty")
    # the last value arrives although the handler keeps running and reports nothing more
    seen = await frames_until(client, "job_update", progress=100.0)
    assert seen[-1]["message"] == "step 1000"
    release.set()
    seen += await frames_until(client, "job_completed", job_id=job_id)
    progress_frames = [frame for frame in seen if frame["type"] == "job_update" and "progress" in frame]
    assert len(progress_frames) <= 3


async def test_job_log_lines_are_coalesced_and_all_reach_the_hub_before_the_completion(
        make_worker: MakeWorker, client: WSPeer) -> None:
    async def logger(job: Job) -> str:
        job.log("starting")
        for step in range(200):
            job.log(f"step {step}", "é" * 2000)  # the long one is cut by the SDK as the hub would
            await asyncio.sleep(0)
        job.log("done")
        with pytest.raises(TypeError):
            job.log(42)  # type: ignore[arg-type]
        return "ok"

    await make_worker({"logger": logger}, progress_interval_s=0.05).start()
    job_id = await submit(client, "logger")
    seen = await frames_until(client, "job_completed", job_id=job_id)
    logs = [frame for frame in seen if frame["type"] == "job_log"]
    assert 1 <= len(logs) <= 10  # coalesced: a frame per interval, not per call
    lines = [line for frame in logs for line in frame["lines"]]
    assert len(lines) == 402 and lines[0] == "starting" and lines[-1] == "done"
    assert lines[1] == "step 0" and lines[2].endswith(LOG_CUT_MARKER)
    assert len(lines[2].encode()) <= MAX_LOG_LINE_BYTES
    status = await job_status(client, job_id)  # stored before the completion: all of them
    client.send({"type": "get_job_status", "job_id": job_id, "logs": 3, "req": 1})
    assert (await client.until("job_status", req=1))["logs"] == ["step 199", lines[-2], "done"]
    assert status["status"] == "completed"


async def test_a_job_built_by_hand_logs_nowhere() -> None:
    job = Job("j", "t")
    job.log("nothing happens")  # no hub: a no-op, so a handler can be unit-tested


async def test_builtin_handlers(make_worker: MakeWorker, client: WSPeer) -> None:
    await make_worker(load_handlers("builtin"), concurrency=4).start()
    # one batch: its reply comes before any event of its jobs, so no event is skipped
    client.send({"type": "submit_jobs", "jobs": [
        {"job_type": "sleep", "payload": {"seconds": 0.2, "steps": 2}},
        {"job_type": "echo", "payload": {"a": [1, 2], "b": None}},
        {"job_type": "fail", "payload": {"message": "nope", "retry": False}},
        {"job_type": "fail", "payload": {"message": "again"}},
    ]})
    sleep_id, echo_id, dead_id, retry_id = (await client.until("jobs_accepted"))["job_ids"]
    outcomes: dict[str, dict[str, Any]] = {}
    progress: list[float] = []
    async with asyncio.timeout(10):
        while len(outcomes) < 4:
            frame = await client.next()
            if frame["type"] == "job_update" and frame["job_id"] == sleep_id and "progress" in frame:
                progress.append(frame["progress"])
            elif frame["type"] in ("job_completed", "job_failed") and frame["job_id"] not in outcomes:
                outcomes[frame["job_id"]] = frame
    assert progress == [50.0, 100.0]
    assert outcomes[sleep_id]["result"] == {"slept": 0.2}
    assert outcomes[echo_id]["result"] == {"a": [1, 2], "b": None}
    assert outcomes[dead_id]["final"] is True and "nope" in outcomes[dead_id]["error"]
    assert outcomes[retry_id]["final"] is False and "again" in outcomes[retry_id]["error"]


async def test_a_worker_without_handlers_or_with_a_sync_handler_is_refused() -> None:
    with pytest.raises(ValueError, match="no handlers"):
        await Worker("ws://127.0.0.1:1").start()

    def blocking(job: Job) -> None:
        return None

    with pytest.raises(TypeError, match="async def"):
        Worker("ws://127.0.0.1:1", {"a": blocking})  # type: ignore[dict-item]


async def handle_nothing(job: Job) -> None:
    return None


@pytest.mark.parametrize("worker_id", ["gpu:jobs", "a b", "x" * 129])
def test_a_bad_worker_id_is_refused_before_connecting(worker_id: str) -> None:
    with pytest.raises(ValueError, match="not ending in ':jobs'"):
        Worker("ws://127.0.0.1:1", {"a": handle_nothing}, worker_id=worker_id)


# ---- load_handlers ---------------------------------------------------------------------------------

JOBS_MODULE = '''
async def handle(job):
    return job.payload

HANDLERS = {"a": handle}
NOT_A_MAPPING = 3
SYNC = {"a": lambda job: None}

def make_handlers():
    return {"b": handle}
'''


@pytest.fixture
def jobs_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "empfast_test_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "empfast_test_broken.py").write_text("import empfast_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("empfast_test_jobs", "empfast_test_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return "empfast_test_jobs"


@pytest.mark.parametrize("spec", ["builtin", "", "  builtin "])
def test_load_handlers_builtin(spec: str) -> None:
    assert sorted(load_handlers(spec)) == ["echo", "fail", "sleep"]


def test_load_handlers_from_a_mapping_or_a_factory(jobs_module: str) -> None:
    assert list(load_handlers(f"{jobs_module}:HANDLERS")) == ["a"]
    assert list(load_handlers(f"{jobs_module}:make_handlers")) == ["b"]


@pytest.mark.parametrize(("spec", "advice"), [
    ("empfast_no_such_module:HANDLERS", "was not found"),
    ("empfast_test_broken:HANDLERS", "not installed"),
    ("empfast_test_jobs", "is not MODULE:OBJECT"),
    ("empfast_test_jobs:MISSING", "has no 'MISSING'"),
    ("empfast_test_jobs:NOT_A_MAPPING", "not a mapping"),
    ("empfast_test_jobs:handle", "single handler"),
    ("empfast_test_jobs:SYNC", "async def"),
])
def test_load_handlers_says_what_to_fix(jobs_module: str, spec: str, advice: str) -> None:
    with pytest.raises(HandlerSpecError, match=advice):
        load_handlers(spec)


async def test_a_newer_attempt_assigned_while_the_lost_run_is_stopping_still_runs(
        hub: Hub, make_worker: MakeWorker, client: WSPeer) -> None:
    first_started, cleanup_done = asyncio.Event(), asyncio.Event()
    attempts: list[int] = []

    async def slow_to_stop(job: Job) -> str:
        attempts.append(job.attempt)
        if job.attempt > 1:
            return f"attempt {job.attempt}"
        first_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.5)  # a slow cleanup: the hub assigns the job again meanwhile
            cleanup_done.set()
        return "never"

    await make_worker({"slow": slow_to_stop}).start()
    job_id = await submit(client, "slow")
    async with asyncio.timeout(5):
        await first_started.wait()
    # the lease (2 s) lapses as far as Redis knows: the sweep takes the job back, the worker's next
    # heartbeat learns the lease was lost and the hub hands the job to the same worker again
    assert (await hub.store.sweep(now=int(time.time() * 1000) + 2_500)).expired == 1
    done = await client.until("job_completed", job_id=job_id, wait_s=10)
    assert done["result"] == "attempt 2" and done["attempt"] == 2
    assert cleanup_done.is_set() and attempts == [1, 2]


async def test_a_worker_told_it_is_not_registered_heartbeats_at_once_and_gets_the_job(
        make_store: MakeStore) -> None:
    """The hub says not_registered when the worker's record is gone (Redis lost it): the SDK
    heartbeats at once, so the waiting job runs now, not one heartbeat interval (here 10 s) later."""
    async def echo(job: Job) -> Any:
        return job.payload

    async with started_hub(make_store, lease_ms=30_000, liveness_ms=60_000) as hub:
        client = await WSPeer.connect(f"{ws_url(hub)}/ws/client")
        worker = Worker(ws_url(hub), {"a": echo}, worker_id="w1", heartbeat_interval_s=10.0)
        await worker.start()
        try:
            keys = hub.store.keys
            await hub.store.redis.delete(keys.worker("w1"))  # as if Redis lost the record
            await hub.store.redis.zrem(keys.workers, "w1")
            started = time.monotonic()
            job_id = await submit(client, "a", {"n": 1})
            done = await client.until("job_completed", job_id=job_id, wait_s=15)
            assert done["result"] == {"n": 1} and time.monotonic() - started < 3
        finally:
            await worker.stop(grace_s=0)
            client.close()
