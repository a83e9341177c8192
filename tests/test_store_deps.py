"""Job dependencies through the store (docs/job-control.md section 5), on real Redis and on
fakeredis: a child waits until every parent has completed, a parent that fails, is cancelled or
expires fails its waiting children and theirs, bad parents refuse the batch, and the children set
goes with its job."""

from __future__ import annotations

import pytest
from support import MakeStore, T

from empfast.errors import BadArgument
from empfast.limits import MAX_DEPENDENCIES
from empfast.store import NewJob, Store
from empfast.store.records import event_fields


async def run_job(store: Store, job_id: str, *, worker_id: str = "w1", ok: bool = True,
                  now: int = T) -> None:
    """Claim `job_id` for a worker of type "a" and complete it (or fail it for good)."""
    await store.register_worker(worker_id, ["a"], 10, now=now)
    claimed = await store.claim_by_id(worker_id, job_id, now=now)
    if ok:
        await store.complete(job_id, worker_id, claimed.attempt, b"1", now=now)
    else:
        await store.fail(job_id, worker_id, claimed.attempt, "boom", retry=False, now=now)


async def status(store: Store, job_id: str) -> str | None:
    job = await store.get_job(job_id)
    return job["status"] if job else None


async def test_fan_out_then_fan_in_runs_in_order(store: Store) -> None:
    """root -> (left, right) -> join: each stage pending only once the one before has completed."""
    await store.add_jobs([
        NewJob("a", job_id="root"),
        NewJob("a", job_id="left", depends_on=["root"]),
        NewJob("a", job_id="right", depends_on=["root"]),
        NewJob("a", job_id="join", depends_on=["left", "right"]),
    ], now=T)
    assert [await status(store, j) for j in ("root", "left", "right", "join")] == \
        ["pending", "waiting", "waiting", "waiting"]
    await run_job(store, "root")
    assert [await status(store, j) for j in ("left", "right", "join")] == ["pending", "pending", "waiting"]
    await run_job(store, "left")
    assert await status(store, "join") == "waiting"
    join = await store.get_job("join")
    assert join is not None and join["open_parents"] == 1 and join["depends_on"] == ["left", "right"]
    await run_job(store, "right")
    assert await status(store, "join") == "pending"
    await run_job(store, "join")
    assert await status(store, "join") == "completed"
    assert await store.redis.zcard(store.keys.waiting) == 0


async def test_a_released_child_takes_a_pending_event_and_its_own_delay(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="now", depends_on=["p"]),
                          NewJob("a", job_id="later", depends_on=["p"], delay_ms=60_000)], now=T)
    last = await store.last_event_id()
    await run_job(store, "p", now=T + 1000)
    assert await status(store, "now") == "pending"
    later = await store.get_job("later")
    assert later is not None and later["status"] == "scheduled" and later["run_at"] == T + 60_000
    events = [f for _, f in await store.read_events(last)]
    released = {f[b"id"]: f[b"status"] for f in events if f[b"ev"] == b"pending"}
    assert released == {b"now": b"pending", b"later": b"scheduled"}
    assert (await store.sweep(now=T + 60_000)).promoted == 1
    assert await status(store, "later") == "pending"


async def test_a_parent_that_fails_for_good_fails_child_and_grandchild(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p"]),
                          NewJob("a", job_id="g", depends_on=["c"], ttl_ms=600_000),
                          NewJob("a", job_id="other", depends_on=["c", "p"])], now=T)
    last = await store.last_event_id()
    await run_job(store, "p", ok=False)
    for job_id, parent in (("c", "p"), ("g", "c"), ("other", "p")):
        job = await store.get_job(job_id)
        assert job is not None and job["status"] == "failed"
        assert job["error"] == f"dependency failed: {parent} failed"
    failed = {f[b"id"]: f for _, f in await store.read_events(last) if f[b"ev"] == b"failed"}
    assert set(failed) == {b"p", b"c", b"g", b"other"} and all(f[b"final"] == b"1" for f in failed.values())
    assert await store.redis.zcard(store.keys.waiting) == 0
    assert await store.redis.zscore(store.keys.expiries, "g") is None  # it expires no more
    assert not await store.redis.exists(store.keys.children("p"), store.keys.children("c"))
    stats = await store.stats()
    assert stats.waiting == 0 and stats.by_type["a"]["waiting"] == 0 and stats.by_type["a"]["failed"] == 4


async def test_a_retried_failure_does_not_fail_the_children(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p", max_attempts=2), NewJob("a", job_id="c", depends_on=["p"])],
                         now=T)
    await store.register_worker("w1", ["a"], 10, now=T)
    claimed = await store.claim_by_id("w1", "p", now=T)
    outcome = await store.fail("p", "w1", claimed.attempt, "flaky", now=T)
    assert not outcome.final and await status(store, "c") == "waiting"
    await store.sweep(now=T + 3_600_000)  # the backoff is over: pending again
    await run_job(store, "p", now=T + 3_600_000)
    assert await status(store, "c") == "pending"


async def test_cancel_a_parent_fails_its_children_and_a_waiting_child_is_cancelled(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c1", depends_on=["p"]),
                          NewJob("a", job_id="c2", depends_on=["p"])], now=T)
    assert (await store.cancel("c2", now=T)).status == "cancelled"
    assert (await store.cancel("p", now=T)).status == "cancelled"
    c1 = await store.get_job("c1")
    assert c1 is not None and c1["status"] == "failed" and c1["error"] == "dependency failed: p cancelled"
    assert await status(store, "c2") == "cancelled"  # cancelled before: left alone
    assert (await store.stats()).by_type["a"]["waiting"] == 0


async def test_a_running_parent_cancelled_fails_its_child_when_its_worker_gives_up(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p"])], now=T)
    await store.register_worker("w1", ["a"], 10, now=T)
    claimed = await store.claim_by_id("w1", "p", now=T)
    assert (await store.cancel("p", now=T)).status == "cancel_requested"
    assert await status(store, "c") == "waiting"
    await store.fail("p", "w1", claimed.attempt, "stopped", now=T)
    assert await status(store, "p") == "cancelled" and await status(store, "c") == "failed"


async def test_a_parent_retried_after_its_failure_leaves_the_failed_child_failed(store: Store) -> None:
    """The documented rule: the child failed with its parent; retrying the parent does not revive
    it (retry_job the child too, which then runs without waiting)."""
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p"])], now=T)
    await run_job(store, "p", ok=False)
    assert await store.retry("p", now=T)
    await run_job(store, "p")
    assert await status(store, "p") == "completed" and await status(store, "c") == "failed"
    assert await store.retry("c", now=T)
    assert await status(store, "c") == "pending"


async def test_parents_finished_before_the_add(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="done"), NewJob("a", job_id="bad")], now=T)
    await run_job(store, "done")
    await run_job(store, "bad", ok=False)
    added = await store.add_jobs([NewJob("a", job_id="ok", depends_on=["done"]),
                                  NewJob("a", job_id="doomed", depends_on=["done", "bad"]),
                                  NewJob("a", job_id="after", depends_on=["doomed"])], now=T)
    assert [(a.job_id, a.status) for a in added] == [
        ("ok", "pending"), ("doomed", "failed"), ("after", "failed")]
    doomed = await store.get_job("doomed")
    assert doomed is not None and doomed["error"] == "dependency failed: bad failed"
    after = await store.get_job("after")
    assert after is not None and after["error"] == "dependency failed: doomed failed"
    assert await store.redis.zscore(store.keys.failed, "doomed") is not None
    assert not await store.redis.exists(store.keys.children("done"), store.keys.children("bad"))


@pytest.mark.parametrize(("depends_on", "message"), [
    (["nope"], "depends_on names nope, which is no job of this queue"),
    (["self"], "depends_on must not name the job itself"),
    (["later"], "depends_on names later"),  # a later job of the batch is no parent
    ([f"p{i}" for i in range(MAX_DEPENDENCIES + 1)], f"1 to {MAX_DEPENDENCIES} job ids"),
])
async def test_bad_parents_refuse_the_batch_and_write_nothing(store: Store, depends_on: list[str],
                                                             message: str) -> None:
    await store.add_job("a", job_id="p", now=T)
    before = sorted(await store.redis.keys("*"))
    with pytest.raises(BadArgument, match=message):
        await store.add_jobs([NewJob("a", job_id="first"), NewJob("a", job_id="self", depends_on=depends_on),
                              NewJob("a", job_id="later")], now=T)
    assert sorted(await store.redis.keys("*")) == before
    job = await store.get_job("p")
    assert job is not None and "children" not in job


async def test_a_repeated_add_of_a_child_changes_nothing(store: Store) -> None:
    batch = [NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p", "p"])]
    await store.add_jobs(batch, now=T)
    again = await store.add_jobs(batch, now=T)
    assert [(a.status, a.created) for a in again] == [("pending", False), ("waiting", False)]
    assert await store.redis.smembers(store.keys.children("p")) == {b"c"}
    job = await store.get_job("c")
    assert job is not None and job["open_parents"] == 1 and job["depends_on"] == ["p"]
    await run_job(store, "p")
    assert await status(store, "c") == "pending"


async def test_a_waiting_child_expires(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p"], ttl_ms=1000),
                          NewJob("a", job_id="g", depends_on=["c"])], now=T)
    result = await store.sweep(now=T + 1000)
    assert result.expired_waiting == 1
    c = await store.get_job("c")
    assert c is not None and c["status"] == "failed" and c["error"] == "expired"
    g = await store.get_job("g")
    assert g is not None and g["status"] == "failed" and g["error"] == "dependency failed: c failed"
    await run_job(store, "p")  # its children set still names c: left alone
    assert await status(store, "c") == "failed"


async def test_a_job_whose_id_ends_in_children_is_not_another_jobs_children(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="x"), NewJob("a", job_id="x:children"),
                          NewJob("a", job_id="c", depends_on=["x"])], now=T)
    other = await store.get_job("x:children")
    assert other is not None and other["status"] == "pending"
    assert await store.redis.smembers(store.keys.children("x")) == {b"c"}


async def test_retention_removes_the_children_set_with_the_parent(make_store: MakeStore) -> None:
    store = await make_store(keep_completed_max=1)
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p"]),
                          NewJob("a", job_id="q")], now=T)
    await store.redis.sadd(store.keys.children("p"), "stale")  # as a set left by a crash would be
    await run_job(store, "p")
    await store.redis.sadd(store.keys.children("p"), "stale")
    await run_job(store, "q")  # over keep_completed_max: p's hash goes, and its children set with it
    assert await store.get_job("p") is None
    assert not await store.redis.exists(store.keys.children("p"))


async def test_waiting_jobs_are_listed_and_counted(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c1", depends_on=["p"]),
                          NewJob("b", job_id="c2", depends_on=["p"])], now=T)
    page = await store.list_jobs("waiting")
    assert [row["job_id"] for row in page.rows] == ["c1", "c2"]
    assert {row["status"] for row in page.rows} == {"waiting"}
    only_b = await store.list_jobs("waiting", job_type="b")
    assert [row["job_id"] for row in only_b.rows] == ["c2"]
    stats = await store.stats()
    assert stats.waiting == 2 and stats.by_type["a"]["waiting"] == 1 and stats.by_type["b"]["waiting"] == 1
    assert stats.as_dict()["waiting"] == 2


async def test_a_long_chain_fails_without_recursion(store: Store) -> None:
    chain = [NewJob("a", job_id="n0")] + [NewJob("a", job_id=f"n{i}", depends_on=[f"n{i - 1}"])
                                           for i in range(1, 300)]
    await store.add_jobs(chain, now=T)
    await store.cancel("n0", now=T)
    assert await status(store, "n299") == "failed"
    entries = await store.redis.xrange(store.keys.events)
    failed = [event_fields(e[1]) for e in entries if event_fields(e[1])[b"ev"] == b"failed"]
    assert len(failed) == 299


async def test_a_released_child_is_claimed_in_the_parents_completion_call(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="p"), NewJob("a", job_id="c", depends_on=["p"])], now=T)
    await store.register_worker("w1", ["a"], 1, now=T)
    claimed = await store.claim_by_id("w1", "p", now=T)
    next_jobs = await store.complete("p", "w1", claimed.attempt, b"1", claim_next=1, now=T)
    assert [job.job_id for job in next_jobs] == ["c"]
    assert await status(store, "c") == "active"


async def test_a_parent_lost_with_its_worker_on_its_last_attempt_fails_its_children(store: Store) -> None:
    """Through releaseJob: a deregistered worker (deregisterWorker), a lapsed lease (the sweep); and
    an attempt past its timeout (the sweep)."""
    parents = [NewJob("a", job_id=p, max_attempts=1, timeout_ms=500 if p == "p3" else None)
               for p in ("p1", "p2", "p3")]
    children = [NewJob("a", job_id=f"c{i}", depends_on=[f"p{i}"]) for i in (1, 2, 3)]
    await store.add_jobs(parents + children, now=T)
    await store.register_worker("w1", ["a"], 2, now=T)
    await store.claim_by_id("w1", "p1", now=T)
    await store.deregister_worker("w1", now=T)
    c1 = await store.get_job("c1")
    assert c1 is not None and (c1["status"], c1["error"]) == ("failed", "dependency failed: p1 failed")
    await store.register_worker("w2", ["a"], 1, now=T)
    await store.claim_by_id("w2", "p2", lease_ms=1000, now=T)
    assert (await store.sweep(now=T + 2000)).expired == 1
    c2 = await store.get_job("c2")
    assert c2 is not None and (c2["status"], c2["error"]) == ("failed", "dependency failed: p2 failed")
    await store.register_worker("w3", ["a"], 1, liveness_ms=60_000, now=T + 2000)
    await store.claim_by_id("w3", "p3", lease_ms=60_000, now=T + 2000)
    assert (await store.sweep(now=T + 2600)).timed_out == 1
    c3 = await store.get_job("c3")
    assert c3 is not None and (c3["status"], c3["error"]) == ("failed", "dependency failed: p3 failed")
