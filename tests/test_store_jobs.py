"""Job transitions through the store, on real Redis and on fakeredis."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from support import MakeStore, T

from empfast.errors import BadArgument, JobNotFound, LeaseLost, NotPending, WrongJobType
from empfast.store import Completion, NewJob, Store, entry_events


async def worker(store: Store, worker_id: str = "w1", job_types: tuple[str, ...] = ("a",),
                 concurrency: int = 1) -> str:
    await store.register_worker(worker_id, list(job_types), concurrency, now=T)
    return worker_id


async def test_payload_and_result_are_kept_byte_for_byte(store: Store) -> None:
    payload = b'{"z": 1,   "a": [1.50, "\\u00e9"],"big": 12345678901234567890}'
    added = await store.add_job("a", payload, job_id="j1", now=T)
    assert added.created and added.status == "pending"
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    assert job.payload == payload
    result = b'{"out":  [3, 2, 1], "n": 1e400}'
    await store.complete("j1", "w1", job.attempt, result, now=T)
    saved = await store.get_job("j1")
    assert saved is not None
    assert saved["status"] == "completed" and saved["result"] == result and saved["payload"] == payload


async def test_same_id_twice_is_one_job_never_overwritten(store: Store) -> None:
    first = await store.add_job("a", b'{"v": 1}', job_id="same", priority=5, now=T)
    second = await store.add_job("a", b'{"v": 2}', job_id="same", priority=9, now=T)
    assert first.created and not second.created and second.status == "pending"
    job = await store.get_job("same")
    assert job is not None and job["payload"] == b'{"v": 1}' and job["priority"] == 5
    stats = await store.stats()
    assert stats.pending == 1 and stats.by_type["a"]["added"] == 1


async def test_idempotent_add_under_a_race(make_store: MakeStore) -> None:
    stores = [await make_store() for _ in range(4)]
    results = await asyncio.gather(*[
        stores[i % 4].add_job("a", orjson.dumps({"from": i}), job_id="raced", now=T) for i in range(40)
    ])
    assert sum(r.created for r in results) == 1
    stats = await stores[0].stats()
    assert stats.pending == 1 and stats.by_type["a"]["added"] == 1


async def test_batch_add_is_one_call_and_dedupes_within_the_batch(store: Store) -> None:
    added = await store.add_jobs([
        NewJob("a", b"1", job_id="x"), NewJob("a", b"2", job_id="y"), NewJob("a", b"3", job_id="x"),
    ], now=T)
    assert [(a.job_id, a.created) for a in added] == [("x", True), ("y", True), ("x", False)]
    assert (await store.stats()).pending == 2


@pytest.mark.parametrize(("job", "message"), [
    (NewJob("a", priority=1001), "priority"),
    (NewJob("a", priority=-1001), "priority"),
    (NewJob("a", max_attempts=0), "max_attempts"),
    (NewJob("a", delay_ms=-5), "delay"),
    (NewJob("", b"{}"), "job_type"),
    (NewJob("a", job_id="x" * 300), "job_id"),
])
async def test_a_bad_job_refuses_the_whole_batch_and_changes_nothing(
        store: Store, job: NewJob, message: str) -> None:
    with pytest.raises(BadArgument, match=message):
        await store.add_jobs([NewJob("a", job_id="good"), job], now=T)
    assert await store.get_job("good") is None
    assert (await store.stats()).pending == 0


async def test_priority_first_then_fifo(store: Store) -> None:
    order = [("p0-1", 0), ("p5-1", 5), ("p0-2", 0), ("pm1", -1), ("p5-2", 5), ("p0-3", 0)]
    for job_id, priority in order:
        await store.add_job("a", job_id=job_id, priority=priority, now=T)
    await worker(store, concurrency=10)
    claimed = await store.claim("w1", 10, now=T)
    assert [j.job_id for j in claimed] == ["p5-1", "p5-2", "p0-1", "p0-2", "p0-3", "pm1"]


async def test_worker_gets_best_job_across_its_types_and_never_other_types(store: Store) -> None:
    await store.add_job("a", job_id="a-low", priority=1, now=T)
    await store.add_job("c", job_id="c-top", priority=100, now=T)
    await store.add_job("b", job_id="b-high", priority=50, now=T)
    await store.add_job("a", job_id="a-old", priority=50, now=T - 1)
    await worker(store, job_types=("a", "b"), concurrency=10)
    claimed = await store.claim("w1", 10, now=T)
    # a-old was added last but with the same priority as b-high; FIFO is by the order jobs became ready
    assert [j.job_id for j in claimed] == ["b-high", "a-old", "a-low"]
    assert (await store.stats()).by_type["c"]["pending"] == 1


async def test_claim_respects_concurrency(store: Store) -> None:
    await store.add_jobs([NewJob("a") for _ in range(5)], now=T)
    await worker(store, concurrency=2)
    assert len(await store.claim("w1", 10, now=T)) == 2
    assert await store.claim("w1", 10, now=T) == []


async def test_many_concurrent_claimers_claim_every_job_exactly_once(make_store: MakeStore) -> None:
    stores = [await make_store() for _ in range(4)]
    await stores[0].add_jobs([NewJob("a", job_id=f"j{i}") for i in range(300)], now=T)
    for i in range(12):
        await stores[i % 4].register_worker(f"w{i}", ["a"], 1000, now=T)
    claimed: list[str] = []

    async def drain(store: Store, worker_id: str) -> None:
        while jobs := await store.claim(worker_id, 7, now=T):
            claimed.extend(j.job_id for j in jobs)

    await asyncio.gather(*[drain(stores[i % 4], f"w{i}") for i in range(12)])
    assert sorted(claimed) == sorted(f"j{i}" for i in range(300))
    stats = await stores[0].stats()
    assert stats.pending == 0 and stats.active == 300


async def test_complete_claims_the_next_job_in_the_same_call(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id=f"j{i}") for i in range(3)], now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    nxt = await store.complete(job.job_id, "w1", job.attempt, b"1", claim_next=1, now=T)
    assert [j.job_id for j in nxt] == ["j1"]
    nxt = await store.complete("j1", "w1", 1, b"2", claim_next=1, now=T)
    assert [j.job_id for j in nxt] == ["j2"]
    assert await store.complete("j2", "w1", 1, b"3", claim_next=1, now=T) == []
    stats = await store.stats()
    assert (stats.completed, stats.active, stats.pending) == (3, 0, 0)
    assert stats.workers["idle"] == 1 and stats.workers["busy"] == 0


async def test_a_repeated_completion_is_answered_ok_and_changes_nothing(store: Store) -> None:
    await store.add_job("a", job_id="j", now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    await store.complete("j", "w1", job.attempt, b'"first"', now=T)
    await store.complete("j", "w1", job.attempt, b'"second"', now=T + 5)
    saved = await store.get_job("j")
    assert saved is not None and saved["result"] == b'"first"'
    assert (await store.stats()).by_type["a"]["completed"] == 1


async def test_a_batch_of_completions_judges_each_and_claims_the_next_jobs(store: Store) -> None:
    await store.add_jobs([NewJob("a", b"{}", job_id=f"j{n}") for n in range(5)], now=T)
    await worker(store, concurrency=3)
    held = await store.claim("w1", 3, now=T)
    assert [j.job_id for j in held] == ["j0", "j1", "j2"]
    batch = [Completion("j0", 1, b'"r0"'), Completion("j1", 2, b'"stale"'),
             Completion("nope", 1, b"1"), Completion("j2", 1, b'"r2"'), Completion("j0", 1, b'"again"')]
    outcomes, next_jobs = await store.complete_many("w1", batch, claim_next=3, now=T + 1)
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "LeaseLost", "JobNotFound", "NoneType",
                                                    "NoneType"]
    assert [j.job_id for j in next_jobs] == ["j3", "j4"]  # two slots freed, j1 still held
    results = [(await store.get_job(f"j{n}")) for n in range(3)]
    assert [(r or {}).get("result") for r in results] == [b'"r0"', None, b'"r2"']
    assert (await store.stats()).completed == 2
    with pytest.raises(BadArgument):
        await store.complete_many("w1", [], now=T + 2)


async def test_a_complete_after_the_same_attempts_fail_is_refused_not_taken_as_a_repeat(
        store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=1, now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    assert (await store.fail("j", "w1", job.attempt, "broke", now=T)).status == "failed"
    with pytest.raises(LeaseLost):
        await store.complete("j", "w1", job.attempt, b'"late"', now=T + 1)
    again = await store.fail("j", "w1", job.attempt, "broke", now=T + 2)  # the fail's own repeat
    assert again.status == "failed"
    saved = await store.get_job("j")
    assert saved is not None and saved["status"] == "failed" and "result" not in saved


async def test_a_fail_resent_while_a_newer_attempt_runs_is_a_repeat_that_changes_nothing(
        store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=3, now=T)
    await worker(store)
    (first,) = await store.claim("w1", now=T)
    retry_at = (await store.fail("j", "w1", first.attempt, "broke", jitter=0.0, now=T)).run_at
    await store.sweep(now=retry_at)
    (second,) = await store.claim("w1", now=retry_at)
    again = await store.fail("j", "w1", first.attempt, "broke", now=retry_at + 1)  # its reply was lost
    assert again.status == "active" and not again.final and again.next_jobs == []
    saved = await store.get_job("j")
    assert saved is not None and saved["status"] == "active" and saved["attempts"] == second.attempt
    await store.complete("j", "w1", second.attempt, b'"done"', now=retry_at + 2)
    with pytest.raises(LeaseLost):  # done_by names attempt 2 now: attempt 1's fail is no repeat of it
        await store.fail("j", "w1", first.attempt, "broke", now=retry_at + 3)


async def test_only_the_lease_holder_may_progress_complete_or_fail(store: Store) -> None:
    await store.add_job("a", job_id="j", now=T)
    await worker(store, "w1")
    await worker(store, "w2")
    (job,) = await store.claim("w1", now=T)
    with pytest.raises(LeaseLost):
        await store.complete("j", "w2", job.attempt, b"1", now=T)
    with pytest.raises(LeaseLost):
        await store.progress("j", "w1", job.attempt + 1, 50, now=T)
    with pytest.raises(LeaseLost):
        await store.fail("j", "w2", job.attempt, "nope", now=T)
    with pytest.raises(JobNotFound):
        await store.complete("missing", "w1", 1, b"1", now=T)
    saved = await store.get_job("j")
    assert saved is not None and saved["status"] == "active" and saved["worker"] == "w1"


async def test_stale_completion_after_reclaim_is_rejected(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=3, now=T)
    await worker(store, "w1")
    await worker(store, "w2")
    (first,) = await store.claim("w1", now=T)
    # w1 hangs: no heartbeat, no progress; the lease expires and the sweep takes the job back
    await store.heartbeat("w2", now=T + 15_000)
    swept = await store.sweep(now=T + 15_000)
    assert swept.expired == 1
    (second,) = await store.claim("w2", now=T + 15_000)
    assert second.job_id == "j" and second.attempt == first.attempt + 1
    with pytest.raises(LeaseLost):
        await store.complete("j", "w1", first.attempt, b'"stale"', now=T + 16_000)
    await store.complete("j", "w2", second.attempt, b'"fresh"', now=T + 16_000)
    saved = await store.get_job("j")
    assert saved is not None and saved["result"] == b'"fresh"'
    assert saved["errors"] == ["lease expired (attempt 1)"]


async def test_the_same_worker_given_attempt_2_cannot_report_on_attempt_1(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=3, now=T)
    await worker(store, "w1")
    (first,) = await store.claim("w1", now=T)
    # w1's lease expires while its liveness (20 s) holds; the job comes back to w1 as attempt 2
    assert (await store.sweep(now=T + 11_000)).expired == 1
    (second,) = await store.claim("w1", now=T + 11_000)
    assert second.attempt == first.attempt + 1 == 2
    for stale in (first.attempt, 0):  # 0: a frame that names no attempt, with none tracked
        with pytest.raises(LeaseLost):
            await store.progress("j", "w1", stale, 50, now=T + 11_100)
        with pytest.raises(LeaseLost):
            await store.fail("j", "w1", stale, "stale", now=T + 11_100)
        with pytest.raises(LeaseLost):
            await store.complete("j", "w1", stale, b'"stale"', now=T + 11_100)
    await store.complete("j", "w1", second.attempt, b'"fresh"', now=T + 11_200)
    # after attempt 2 completed, attempt 1 is still no repeat of it; attempt 2 again is one
    with pytest.raises(LeaseLost):
        await store.complete("j", "w1", first.attempt, b'"stale"', now=T + 11_300)
    await store.complete("j", "w1", second.attempt, b'"again"', now=T + 11_300)
    saved = await store.get_job("j")
    assert saved is not None and saved["result"] == b'"fresh"' and saved["attempts"] == 2
    assert (await store.stats()).by_type["a"]["completed"] == 1


async def test_progress_extends_the_lease_and_is_validated(store: Store) -> None:
    await store.add_job("a", job_id="j", now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    assert await store.progress("j", "w1", job.attempt, 40, "downloading", now=T + 9_000) is False
    assert (await store.sweep(now=T + 12_000)).expired == 0  # the lease now runs to T + 19 s
    with pytest.raises(BadArgument, match="progress"):
        await store.progress("j", "w1", job.attempt, 101, now=T + 9_000)
    saved = await store.get_job("j")
    assert saved is not None and saved["progress"] == 40 and saved["message"] == "downloading"


async def test_retry_with_backoff_then_dead_letter_keeping_every_error(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=3, now=T)
    await worker(store)
    now = T
    run_ats = []
    for attempt in (1, 2):
        (job,) = await store.claim("w1", now=now)
        assert job.attempt == attempt
        out = await store.fail("j", "w1", attempt, f"boom {attempt}", jitter=1.0, now=now)
        assert out.status == "scheduled" and not out.final
        run_ats.append(out.run_at - now)
        assert await store.claim("w1", now=out.run_at - 1) == []  # not due yet
        await store.sweep(now=out.run_at)
        now = out.run_at
    assert run_ats == [1_000, 2_000]  # base 1 s, doubling (jitter 1.0 keeps the full delay)
    (job,) = await store.claim("w1", now=now)
    out = await store.fail("j", "w1", 3, "boom 3", now=now)
    assert out.status == "failed" and out.final
    saved = await store.get_job("j")
    assert saved is not None and saved["status"] == "failed"
    assert saved["errors"] == ["boom 1", "boom 2", "boom 3"]
    stats = await store.stats()
    assert stats.failed == 1 and stats.by_type["a"]["retried"] == 2


async def test_backoff_jitter_and_cap(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=20, now=T)
    # its liveness outlasts the longest backoff (60 s) between its messages
    await store.register_worker("w1", ["a"], 1, liveness_ms=10**9, now=T)
    (job,) = await store.claim("w1", now=T)
    out = await store.fail("j", "w1", 1, "x", jitter=0.0, now=T)
    assert out.run_at - T == 500  # jitter 0 halves the delay
    now, delays = out.run_at, []
    for _ in range(2, 12):
        await store.heartbeat("w1", now=now)
        await store.sweep(now=now)
        (job,) = await store.claim("w1", now=now)
        out = await store.fail("j", "w1", job.attempt, "x", jitter=1.0, now=now)
        delays.append(out.run_at - now)
        now = out.run_at
    assert delays == [min(60_000, 1_000 * 2 ** (attempt - 1)) for attempt in range(2, 12)]


async def test_not_retryable_failure_goes_straight_to_failed(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=5, now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    out = await store.fail("j", "w1", job.attempt, "bad input", retry=False, now=T)
    assert out.final and out.status == "failed"


async def test_cancel_pending_scheduled_running_and_finished(store: Store) -> None:
    await store.add_job("a", job_id="pending", now=T)
    await store.add_job("a", job_id="later", delay_ms=60_000, now=T)
    await store.add_job("a", job_id="running", priority=10, now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    assert job.job_id == "running"

    assert (await store.cancel("pending", now=T)) == ("cancelled", None, True)
    assert (await store.cancel("later", now=T)).status == "cancelled"
    outcome = await store.cancel("running", now=T)
    assert outcome == ("cancel_requested", "w1", True)
    # the worker hears of it on its next progress report or heartbeat, then stops
    assert await store.progress("running", "w1", job.attempt, 10, now=T) is True
    assert (await store.heartbeat("w1", now=T)).cancel == ["running"]
    out = await store.fail("running", "w1", job.attempt, "cancelled by request", now=T)
    assert out.status == "cancelled"
    again = await store.cancel("running", now=T)
    assert (again.status, again.changed) == ("cancelled", False)  # finished: unchanged
    with pytest.raises(JobNotFound):
        await store.cancel("nope")
    assert (await store.sweep(now=T + 120_000)).promoted == 0  # the cancelled delayed job stays put
    stats = await store.stats()
    assert stats.cancelled == 3 and stats.pending == 0 and stats.scheduled == 0


async def test_delayed_job_waits_in_scheduled_until_due(store: Store) -> None:
    await store.add_job("a", job_id="d", delay_ms=5_000, now=T)
    await worker(store)
    assert (await store.stats()).scheduled == 1
    assert await store.claim("w1", now=T) == []
    assert (await store.sweep(now=T + 4_999)).promoted == 0
    assert (await store.sweep(now=T + 5_000)).promoted == 1
    assert [j.job_id for j in await store.claim("w1", now=T + 5_000)] == ["d"]


async def test_claim_by_id_race_has_exactly_one_winner(make_store: MakeStore) -> None:
    stores = [await make_store() for _ in range(2)]
    await stores[0].add_job("a", job_id="offer", now=T)
    await stores[0].register_worker("w1", ["a"], 0, now=T)
    await stores[1].register_worker("w2", ["a"], 0, now=T)
    results = await asyncio.gather(
        stores[0].claim_by_id("w1", "offer", now=T), stores[1].claim_by_id("w2", "offer", now=T),
        return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, NotPending)]
    assert len(winners) == 1 and len(losers) == 1 and losers[0].status == "active"


async def test_claim_by_id_checks_type_and_existence(store: Store) -> None:
    await store.add_job("b", job_id="bjob", now=T)
    await worker(store, job_types=("a",))
    with pytest.raises(WrongJobType):
        await store.claim_by_id("w1", "bjob", now=T)
    with pytest.raises(JobNotFound):
        await store.claim_by_id("w1", "nope", now=T)


async def test_events_stream_records_each_transition(store: Store) -> None:
    await store.add_job("a", b'{"x":1}', job_id="j", now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    await store.progress("j", "w1", job.attempt, 50, "half", now=T)
    await store.complete("j", "w1", job.attempt, b'{"ok":true}', now=T)
    events = [(f[b"ev"], f.get(b"id")) for _, f in await store.read_events("0")]
    assert events == [
        (b"added", b"j"), (b"worker", b"w1"), (b"assigned", b"j"), (b"progress", b"j"),
        (b"completed", b"j")]
    completed = (await store.read_events("0"))[-1][1]
    assert completed[b"result"] == b'{"ok":true}' and completed[b"attempt"] == b"1"


async def test_a_batch_writes_one_entry_per_kind_and_each_job_keeps_its_own_events(store: Store) -> None:
    """addJobs, a claim and completeJobs write their jobs' events of one kind as one stream entry
    (the Redis cost of events per batch, not per job); readers still get one event per job, and a
    client resuming from an event id inside such an entry gets its job's later events only."""
    ids = [f"j{n}" for n in range(4)]
    await store.add_jobs([NewJob("a", b"{}", job_id=i) for i in ids], now=T)
    await worker(store, concurrency=4)
    held = await store.claim("w1", 4, now=T)
    outcomes, _ = await store.complete_many(
        "w1", [Completion(j.job_id, j.attempt, f'"r{j.job_id}"'.encode()) for j in held], now=T + 1)
    assert outcomes == [None] * 4
    events = await store.read_events("0")
    kinds = [(f[b"ev"], f[b"id"]) for _, f in events if f[b"ev"] != b"worker"]
    assert kinds == [(ev, i.encode()) for ev in (b"added", b"assigned", b"completed") for i in ids]
    entry_ids = {ev: {event_id for event_id, f in events if f[b"ev"] == ev}
                 for ev in (b"added", b"assigned", b"completed")}
    assert all(len(one) == 1 for one in entry_ids.values()), entry_ids  # one entry per kind
    done = {f[b"id"]: f for _, f in events if f[b"ev"] == b"completed"}
    assert done[b"j2"][b"result"] == b'"rj2"' and done[b"j2"][b"worker"] == b"w1"
    (added_id,) = entry_ids[b"added"]
    replay, complete = await store.job_events_since("j2", added_id)
    assert complete
    assert [(f[b"ev"], f[b"id"]) for _, f in replay] == [(b"assigned", b"j2"), (b"completed", b"j2")]
    assert replay[-1][1][b"result"] == b'"rj2"'


def test_an_entry_splits_into_its_jobs_events_at_field_names_only() -> None:
    one = [b"ev", b"progress", b"id", b"j1", b"progress", b"40", b"message", b"id"]
    assert entry_events(one) == [one]
    # a job type, a result or a worker id that reads "id" is a value, never the start of a group
    batch = [b"ev", b"assigned", b"id", b"id", b"type", b"id", b"worker", b"w", b"attempt", b"1",
             b"id", b"k", b"type", b"t", b"worker", b"id", b"attempt", b"2"]
    assert entry_events(batch) == [
        [b"ev", b"assigned", b"id", b"id", b"type", b"id", b"worker", b"w", b"attempt", b"1"],
        [b"ev", b"assigned", b"id", b"k", b"type", b"t", b"worker", b"id", b"attempt", b"2"]]


async def test_finished_jobs_are_trimmed_to_their_retention(make_store: MakeStore) -> None:
    store = await make_store(keep_completed_max=5, keep_completed_ms=60_000)
    await store.add_jobs([NewJob("a", job_id=f"j{i}") for i in range(12)], now=T)
    await store.register_worker("w1", ["a"], 100, now=T)
    for i, job in enumerate(await store.claim("w1", 100, now=T)):
        await store.complete(job.job_id, "w1", job.attempt, b"0", now=T + i)
    stats = await store.stats()
    assert stats.completed == 5
    assert await store.get_job("j0") is None and await store.get_job("j11") is not None
    swept = await store.sweep(now=T + 60_012)
    assert swept.trimmed == 5 and (await store.stats()).completed == 0


async def test_a_dead_lettered_job_can_be_retried_with_more_attempts(store: Store) -> None:
    await store.add_job("a", job_id="j", max_attempts=1, now=T)
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    assert (await store.fail("j", "w1", job.attempt, "boom", now=T)).status == "failed"
    assert (await store.stats()).failed == 1
    assert await store.retry("j", attempts=2, now=T + 10) == "retried"
    again = await store.get_job("j")
    assert again is not None and again["status"] == "pending" and again["max_attempts"] == 3
    assert (await store.stats()).failed == 0 and (await store.stats()).pending == 1
    (job2,) = await store.claim("w1", now=T + 20)
    assert job2.attempt == 2  # attempts go on: attempt 1's error stays on record
    with pytest.raises(LeaseLost):  # a worker still holding attempt 1 cannot report on attempt 2
        await store.complete("j", "w1", 1, b'"stale"', now=T + 21)
    await store.complete("j", "w1", 2, b'"ok"', now=T + 30)
    done = await store.get_job("j")
    assert done is not None and done["result"] == b'"ok"' and done["errors"] == ["boom"]
    assert (await store.stats()).by_type["a"]["retried"] == 1


async def test_only_failed_or_cancelled_jobs_are_retried(store: Store) -> None:
    await store.add_job("a", job_id="waiting", now=T)
    await store.add_job("a", job_id="stopped", now=T)
    await store.cancel("stopped", now=T)
    assert await store.retry("waiting", now=T) == ""
    assert (await store.get_job("waiting") or {})["status"] == "pending"
    assert await store.retry("stopped", now=T) == "retried"
    assert (await store.get_job("stopped") or {})["status"] == "pending"
    assert await store.retry("stopped", retry_id="r1", now=T) == ""  # pending now: not again
    await store.cancel("stopped", now=T)
    assert await store.retry("stopped", retry_id="r2", now=T) == "retried"
    assert await store.retry("stopped", retry_id="r2", now=T) == "repeated"  # a repeat of r2: no change
    assert (await store.get_job("stopped") or {})["max_attempts"] == 1  # 0 used + 1, once
    # the run r2 started ends cancelled again: a late repeat of r2 must not start another run
    await store.cancel("stopped", now=T)
    assert await store.retry("stopped", retry_id="r2", now=T) == "repeated"
    assert (await store.get_job("stopped") or {})["status"] == "cancelled"
    assert await store.retry("stopped", retry_id="r3", now=T) == "retried"  # a new retry does
    with pytest.raises(JobNotFound):
        await store.retry("never", now=T)
    with pytest.raises(BadArgument):
        await store.retry("stopped", attempts=0, now=T)


async def test_scheduled_jobs_are_counted_by_type_as_they_come_and_go(store: Store) -> None:
    # the dashboard's per-type counts: delayed on add, waiting out a retry's backoff, then due,
    # or cancelled while waiting
    await store.add_jobs([NewJob("a", job_id=f"a{i}", delay_ms=60_000) for i in range(3)]
                         + [NewJob("b", job_id="b0", delay_ms=60_000), NewJob("b", job_id="b1")], now=T)
    by_type = (await store.stats()).by_type
    assert (by_type["a"]["scheduled"], by_type["b"]["scheduled"]) == (3, 1)
    await store.cancel("a0", now=T)
    await store.cancel("b1", now=T)  # pending: not scheduled, nothing to take off
    await store.sweep(now=T + 60_000)  # a1, a2 and b0 are due
    await store.register_worker("w1", ["b"], 1, now=T + 60_000)
    (job,) = await store.claim("w1", now=T + 60_000)
    await store.fail(job.job_id, "w1", job.attempt, "later", jitter=0.0, now=T + 60_000)  # a backoff
    stats = await store.stats()
    assert (stats.by_type["a"]["scheduled"], stats.by_type["b"]["scheduled"]) == (0, 1)
    assert stats.scheduled == 1 and stats.by_type["a"]["pending"] == 2
