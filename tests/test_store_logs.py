"""Job logs and queue position through the store (docs/job-control.md section 6), on real Redis
and on fakeredis: fenced appends, the limits, events, and the log going with its job."""

from __future__ import annotations

import orjson
import pytest
from support import MakeStore, T

from empfast.errors import JobNotFound, LeaseLost
from empfast.limits import LOG_CUT_MARKER, MAX_LOG_LINE_BYTES, MAX_LOG_LINES
from empfast.store import NewJob, Store
from empfast.store.records import event_fields


async def running(store: Store, job_id: str = "j", worker_id: str = "w1", **job: object) -> int:
    """A job of type "a" running under `worker_id`; returns its attempt."""
    await store.add_job("a", job_id=job_id, now=T, **job)  # type: ignore[arg-type]
    await store.register_worker(worker_id, ["a"], 10, now=T)
    (claimed,) = await store.claim_by_id(worker_id, job_id, now=T),
    return claimed.attempt


async def job_keys(store: Store) -> set[str]:
    """Every key of the queue that belongs to one job, its hash or its log (SCAN: tests only)."""
    prefix = store.keys.prefix.replace("{", "\\{").replace("}", "\\}")
    return {key.decode() for kind in ("job:*", "logs:*")
            async for key in store.redis.scan_iter(match=prefix + kind)}


async def test_lines_are_stored_in_order_and_read_back_newest_first_cut(store: Store) -> None:
    attempt = await running(store)
    assert await store.append_log("j", "w1", attempt, ["one", "two"]) == 2
    assert await store.append_log("j", "w1", attempt, ["three"]) == 3
    job = await store.get_job("j", logs=100)
    assert job is not None and job["logs"] == ["one", "two", "three"]
    newest = await store.get_job("j", logs=2)
    assert newest is not None and newest["logs"] == ["two", "three"]
    plain = await store.get_job("j")
    assert plain is not None and "logs" not in plain


async def test_a_job_whose_id_ends_in_logs_is_not_another_jobs_log(store: Store) -> None:
    await store.add_job("a", job_id="x:logs", payload=b'{"mine":1}', now=T)
    attempt = await running(store, "x")
    assert await store.append_log("x", "w1", attempt, ["a line"]) == 1
    other = await store.get_job("x:logs")
    assert other is not None and other["status"] == "pending" and other["payload"] == b'{"mine":1}'
    job = await store.get_job("x", logs=10)
    assert job is not None and job["logs"] == ["a line"]


async def test_the_log_keeps_its_newest_lines_and_cuts_long_ones(store: Store) -> None:
    attempt = await running(store)
    await store.append_log("j", "w1", attempt, [f"old {i}" for i in range(MAX_LOG_LINES)])
    long_ascii = "x" * (MAX_LOG_LINE_BYTES + 10)
    long_utf8 = "é" * MAX_LOG_LINE_BYTES  # 2 bytes each: the cut must not split one
    assert await store.append_log("j", "w1", attempt, [long_ascii, long_utf8, "last"]) == MAX_LOG_LINES
    job = await store.get_job("j", logs=MAX_LOG_LINES)
    assert job is not None
    logs = job["logs"]
    assert len(logs) == MAX_LOG_LINES and logs[0] == "old 3" and logs[-1] == "last"
    for cut in logs[-3:-1]:
        assert cut.endswith(LOG_CUT_MARKER) and len(cut.encode()) <= MAX_LOG_LINE_BYTES
    assert logs[-3] == "x" * (MAX_LOG_LINE_BYTES - len(LOG_CUT_MARKER)) + LOG_CUT_MARKER
    assert set(logs[-2].removesuffix(LOG_CUT_MARKER)) == {"é"}
    exact = "y" * MAX_LOG_LINE_BYTES  # at the limit: kept whole
    await store.append_log("j", "w1", attempt, [exact])
    job = await store.get_job("j", logs=1)
    assert job is not None and job["logs"] == [exact]


async def test_another_attempt_or_worker_is_lease_lost_and_writes_nothing(store: Store) -> None:
    attempt = await running(store)
    await store.register_worker("w2", ["a"], 1, now=T)
    for worker_id, stale in (("w1", attempt + 1), ("w1", 0), ("w2", attempt)):
        with pytest.raises(LeaseLost):
            await store.append_log("j", worker_id, stale, ["nope"])
    await store.complete("j", "w1", attempt, b"1", now=T + 1)
    with pytest.raises(LeaseLost):  # a finished job takes no more lines
        await store.append_log("j", "w1", attempt, ["late"])
    with pytest.raises(JobNotFound):
        await store.append_log("nothing", "w1", 1, ["x"])
    job = await store.get_job("j", logs=10)
    assert job is not None and job["logs"] == []
    assert await job_keys(store) == {store.keys.job("j")}


async def test_one_event_per_append_with_its_lines(store: Store) -> None:
    attempt = await running(store)
    await store.append_log("j", "w1", attempt, ['a "quoted" line', "ünïcode / slash"])
    entries = await store.redis.xrange(store.keys.events)
    logs = [fields for _, flat in entries if (fields := event_fields(flat))[b"ev"] == b"log"]
    assert len(logs) == 1
    (fields,) = logs
    assert fields[b"id"] == b"j" and fields[b"type"] == b"a" and fields[b"worker"] == b"w1"
    assert fields[b"attempt"] == str(attempt).encode()
    assert orjson.loads(fields[b"lines"]) == ['a "quoted" line', "ünïcode / slash"]


async def test_retention_and_removal_delete_the_log_with_its_job(make_store: MakeStore) -> None:
    store = await make_store(keep_completed_max=2, keep_completed_ms=60_000, keep_failed_ms=60_000)
    await store.add_jobs([NewJob("a", job_id=f"j{i}", max_attempts=1) for i in range(6)], now=T)
    await store.register_worker("w1", ["a"], 10, now=T)
    for job in await store.claim("w1", 10, now=T):
        await store.append_log(job.job_id, "w1", job.attempt, [f"log of {job.job_id}"])
        if job.job_id in ("j4", "j5"):
            await store.fail(job.job_id, "w1", job.attempt, "boom", now=T)
        else:
            await store.complete(job.job_id, "w1", job.attempt, b"0", now=T + int(job.job_id[1:]))
    # completed j0..j3 over a cap of 2: the finishes trimmed the oldest, with their logs
    keys = await job_keys(store)
    assert store.keys.job_logs("j0") not in keys and store.keys.job_logs("j3") in keys
    await store.sweep(now=T + 60_010)  # the rest is past its age: every hash and log goes
    assert await job_keys(store) == set()
    # removal: a failed job removed by remove_jobs takes its log along
    attempt = await running(store, "r", max_attempts=1)
    await store.append_log("r", "w1", attempt, ["x"])
    await store.fail("r", "w1", attempt, "boom", now=T + 70_000)
    assert await job_keys(store) == {store.keys.job("r"), store.keys.job_logs("r")}
    await store.remove_jobs_slice("failed", until_ms=T + 70_000)
    assert await job_keys(store) == set()


async def test_position_of_pending_jobs_in_priority_order(store: Store) -> None:
    added = await store.add_jobs([NewJob("a", job_id="low", priority=-1), NewJob("a", job_id="mid"),
                                  NewJob("b", job_id="other"), NewJob("a", job_id="later", delay_ms=5000),
                                  NewJob("a", job_id="top", priority=5)], now=T, positions=True)
    # each job's rank when it was added: "top" jumped ahead of both
    assert [(a.job_id, a.position) for a in added] == [
        ("low", 0), ("mid", 0), ("other", 0), ("later", None), ("top", 0)]
    again = await store.add_jobs([NewJob("a", job_id="low")], now=T, positions=True)
    assert again[0].position == 2 and not again[0].created
    assert (await store.add_jobs([NewJob("a", job_id="new")], now=T))[0].position is None  # not asked
    for job_id, rank in (("top", 0), ("mid", 1), ("new", 2), ("low", 3), ("other", 0)):
        job = await store.get_job(job_id, position=True)
        assert job is not None and job["position"] == rank, job_id
    scheduled = await store.get_job("later", position=True)
    assert scheduled is not None and "position" not in scheduled
    await store.register_worker("w1", ["a"], 1, now=T)
    (claimed,) = await store.claim("w1", now=T)
    assert claimed.job_id == "top"
    running_job = await store.get_job("top", position=True)
    assert running_job is not None and "position" not in running_job
    mid = await store.get_job("mid", position=True)
    assert mid is not None and mid["position"] == 0
