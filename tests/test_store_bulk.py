"""Bulk actions and pausing through the store (docs/management.md section 3), on real Redis and on
fakeredis: a bulk retry or removal over many slices acts on every matching job exactly once and on
no other; a job that finishes after the action started is left alone; a dry run counts and changes
nothing; a paused type's jobs are given to no worker by any claim, and resuming gives them out in
their order."""

from __future__ import annotations

import pytest
from support import T

from empfast.errors import BadArgument, TypePaused
from empfast.store import Completion, Cursor, NewJob, Slice, Store, entry_events


async def dead_letter(store: Store, job_type: str, ids: list[str], now: int) -> None:
    """Add jobs of one attempt each and fail them for good, all at `now`."""
    worker_id = f"w-{job_type}"
    await store.register_worker(worker_id, [job_type], len(ids), now=now)
    await store.add_jobs([NewJob(job_type, job_id=job_id, max_attempts=1) for job_id in ids], now=now)
    for job in await store.claim(worker_id, len(ids), now=now):
        await store.fail(job.job_id, worker_id, job.attempt, f"boom {job.job_id}", retry=False, now=now)
    await store.deregister_worker(worker_id, now=now)


async def complete(store: Store, job_type: str, ids: list[str], now: int) -> None:
    worker_id = f"w-{job_type}"
    await store.register_worker(worker_id, [job_type], len(ids), now=now)
    await store.add_jobs([NewJob(job_type, job_id=job_id) for job_id in ids], now=now)
    jobs = await store.claim(worker_id, len(ids), now=now)
    await store.complete_many(worker_id, [Completion(j.job_id, j.attempt, b"1") for j in jobs], now=now)
    await store.deregister_worker(worker_id, now=now)


async def every_slice(action, **options: object) -> tuple[list[Slice], int]:  # type: ignore[no-untyped-def]
    """Run an action's slices to its end: the slices and the jobs acted on."""
    slices: list[Slice] = []
    cursor: Cursor | None = None
    while True:
        done = await action(cursor=cursor, **options)
        slices.append(done)
        cursor = done.cursor
        if cursor is None:
            return slices, sum(s.jobs for s in slices)
        assert len(slices) < 1000, "the action does not end"


async def test_a_bulk_retry_of_one_type_in_small_slices_retries_each_of_its_jobs_once(store: Store) -> None:
    # a and b interleaved in one finish time (a tie) and over several, so slices end inside ties
    for n in range(4):
        await dead_letter(store, "a", [f"a{n}-{i}" for i in range(5)], T + n)
        await dead_letter(store, "b", [f"b{n}-{i}" for i in range(3)], T + n)
    slices, retried = await every_slice(store.retry_jobs_slice, job_type="a", attempts=2,
                                        until_ms=T + 10, size=3)
    assert retried == 20 and len(slices) > 6
    assert sum(s.looked for s in slices) == 32  # every entry looked at once: b's stay, passed by
    stats = await store.stats()
    assert stats.pending == 20 and stats.failed == 12
    assert stats.by_type["a"]["retried"] == 20 and stats.by_type["b"]["retried"] == 0
    job = await store.get_job("a2-3")
    assert job is not None
    assert (job["status"], job["max_attempts"], job["attempts"]) == ("pending", 3, 1)
    assert job["errors"] == ["boom a2-3"]  # the failed attempt's error stays on record
    pending_events = [e for _, flat in await store.redis.xrange(store.keys.events)
                      for e in entry_events(flat) if e[1] == b"pending"]
    assert sorted(e[3].decode() for e in pending_events) == sorted(f"a{n}-{i}" for n in range(4)
                                                                   for i in range(5))
    # the jobs run again, in the order they failed
    await store.register_worker("w", ["a"], 50, now=T + 20)
    claimed = [j.job_id for j in await store.claim("w", 50, now=T + 20)]
    assert claimed[:5] == [f"a0-{i}" for i in range(5)] and len(claimed) == 20


async def test_a_job_that_fails_after_the_action_started_is_not_retried_by_it(store: Store) -> None:
    await dead_letter(store, "a", ["early-1", "early-2"], T)
    await dead_letter(store, "a", ["late"], T + 5_000)
    _, retried = await every_slice(store.retry_jobs_slice, until_ms=T + 1_000)
    assert retried == 2
    late = await store.get_job("late")
    assert late is not None and late["status"] == "failed"


async def test_a_dry_run_counts_and_changes_nothing(store: Store) -> None:
    await dead_letter(store, "a", [f"j{i}" for i in range(7)], T)
    before = await store.redis.xlen(store.keys.events)
    _, would = await every_slice(store.retry_jobs_slice, until_ms=T, size=2, dry_run=True)
    assert would == 7
    assert (await store.stats()).failed == 7
    assert await store.redis.xlen(store.keys.events) == before
    _, would_remove = await every_slice(store.remove_jobs_slice, status="failed", until_ms=T, dry_run=True)
    assert would_remove == 7 and await store.get_job("j3") is not None


async def test_cancelled_jobs_are_retried_from_their_own_set(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id=f"c{i}") for i in range(3)], now=T)
    for i in range(3):
        await store.cancel(f"c{i}", now=T)
    await dead_letter(store, "a", ["f1"], T)
    _, retried = await every_slice(store.retry_jobs_slice, status="cancelled", until_ms=T)
    assert retried == 3
    stats = await store.stats()
    assert (stats.pending, stats.cancelled, stats.failed) == (3, 0, 1)


async def test_removal_takes_the_finished_jobs_older_than_the_cut_of_one_type(store: Store) -> None:
    await complete(store, "a", [f"old-a{i}" for i in range(6)], T)
    await complete(store, "b", [f"old-b{i}" for i in range(2)], T)
    await complete(store, "a", [f"new-a{i}" for i in range(2)], T + 60_000)
    assert await store.count_finished("completed", T + 1) == 8
    _, removed = await every_slice(store.remove_jobs_slice, status="completed", job_type="a",
                                   until_ms=T + 1, size=4)
    assert removed == 6
    assert await store.get_job("old-a3") is None
    assert await store.get_job("old-b1") is not None and await store.get_job("new-a0") is not None
    assert (await store.stats()).completed == 4


async def test_bulk_actions_refuse_a_status_they_do_not_act_on(store: Store) -> None:
    with pytest.raises(BadArgument):
        await store.retry_jobs_slice(status="completed", until_ms=T)
    with pytest.raises(BadArgument):
        await store.remove_jobs_slice("pending", until_ms=T)
    with pytest.raises(BadArgument):  # the script checks the slice size too
        await store.retry_jobs_slice(until_ms=T, size=501)


async def test_a_paused_type_is_given_to_no_worker_until_it_is_resumed(store: Store) -> None:
    await store.register_worker("w", ["a", "b"], 10, now=T)
    await store.add_jobs([NewJob("a", job_id=f"a{i}") for i in range(3)], now=T)
    state = await store.set_type_paused("a", True)
    assert (state.changed, state.pending, state.paused) == (True, 3, ["a"])
    assert not (await store.set_type_paused("a", True)).changed  # a repeat changes nothing
    await store.add_jobs([NewJob("b", job_id="b1")], now=T)
    assert [j.job_id for j in await store.claim("w", 10, now=T)] == ["b1"]
    # a submit that claims for an idle worker, and the next jobs of a completion, pass it by too
    _, claimed = await store.add_and_claim([NewJob("a", job_id="a9")], worker_id="w", max_claim=5, now=T)
    assert claimed == []
    assert await store.complete_many("w", [Completion("b1", 1, b"1")], claim_next=5, now=T) == ([None], [])
    with pytest.raises(TypePaused):
        await store.claim_by_id("w", "a1", now=T)
    stats = await store.stats()
    assert stats.paused == ["a"] and stats.by_type["a"]["pending"] == 4

    state = await store.set_type_paused("a", False)
    assert (state.changed, state.pending, state.paused) == (True, 4, [])
    assert [j.job_id for j in await store.claim("w", 10, now=T)] == ["a0", "a1", "a2", "a9"]
    kinds = [e[1] for _, flat in await store.redis.xrange(store.keys.events) for e in entry_events(flat)]
    assert kinds.count(b"paused") == 1 and kinds.count(b"resumed") == 1
