"""Per-job timeouts, run_at and expiry in the store (docs/job-control.md sections 1 and 2), on real
Redis and on fakeredis, with explicit times (ms) instead of sleeps."""

from __future__ import annotations

import pytest
from support import MakeStore, T

from empfast.errors import BadArgument, LeaseLost
from empfast.limits import MAX_DELAY_S, MAX_TIMEOUT_S
from empfast.store import NewJob, Store


async def worker(store: Store, worker_id: str = "w1", concurrency: int = 1) -> str:
    await store.register_worker(worker_id, ["a"], concurrency, now=T)
    return worker_id


async def failed_events(store: Store) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await store.read_events("0") if fields[b"ev"] == b"failed"]


async def deadlines(store: Store) -> list[tuple[str, int]]:
    return [(m.decode(), int(s)) for m, s in await store.redis.zrange(store.keys.deadlines, 0, -1,
                                                                     withscores=True)]


async def expiries(store: Store) -> list[tuple[str, int]]:
    return [(m.decode(), int(s)) for m, s in await store.redis.zrange(store.keys.expiries, 0, -1,
                                                                     withscores=True)]


# ---- timeouts ----------------------------------------------------------------------------------

async def test_a_timed_out_attempt_fails_timeout_and_is_retried_then_dead_lettered(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j", max_attempts=2, timeout_ms=5_000)], now=T)
    assert (await store.get_job("j") or {})["timeout_ms"] == 5_000
    await worker(store)
    (job,) = await store.claim("w1", now=T)
    assert await deadlines(store) == [("j", T + 5_000)]
    # heartbeats and progress extend the lease, never the deadline
    await store.heartbeat("w1", {"j": 1}, now=T + 2_000)
    await store.progress("j", "w1", 1, 50, now=T + 4_000)
    assert await deadlines(store) == [("j", T + 5_000)]
    assert (await store.sweep(now=T + 4_999)).timed_out == 0
    swept = await store.sweep(now=T + 5_000)
    assert swept.timed_out == 1 and swept.expired == 0
    saved = await store.get_job("j") or {}
    assert saved["status"] == "pending" and saved["error"] == "timeout" and saved["errors"] == ["timeout"]
    assert await deadlines(store) == []
    (event,) = await failed_events(store)
    assert (event[b"error"], event[b"final"], event[b"worker"], event[b"attempt"]) == (
        b"timeout", b"0", b"w1", b"1")
    # the late outcome of the timed-out attempt is refused, and changes nothing
    with pytest.raises(LeaseLost):
        await store.complete("j", "w1", job.attempt, b'"late"', now=T + 5_001)
    with pytest.raises(LeaseLost):
        await store.progress("j", "w1", job.attempt, 99, now=T + 5_001)
    # the next attempt gets a deadline of its own, from its own start
    (again,) = await store.claim("w1", now=T + 6_000)
    assert again.attempt == 2 and await deadlines(store) == [("j", T + 11_000)]
    assert (await store.sweep(now=T + 11_000)).timed_out == 1
    saved = await store.get_job("j") or {}
    assert saved["status"] == "failed" and saved["errors"] == ["timeout", "timeout"]
    assert [e[b"final"] for e in await failed_events(store)] == [b"0", b"1"]
    assert (await store.stats()).by_type["a"]["active"] == 0 and await deadlines(store) == []


async def test_a_finished_attempt_leaves_no_deadline(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id=f"j{i}", timeout_ms=5_000) for i in range(3)], now=T)
    await worker(store, concurrency=3)
    await store.claim("w1", 3, now=T)
    await store.complete("j0", "w1", 1, now=T + 1)
    await store.fail("j1", "w1", 1, "boom", now=T + 1)
    assert await deadlines(store) == [("j2", T + 5_000)]
    await store.deregister_worker("w1", now=T + 2)
    assert await deadlines(store) == []
    assert (await store.sweep(now=T + 10_000)).timed_out == 0


async def test_a_lease_expiry_takes_the_deadline_and_the_next_claim_sets_a_new_one(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j", timeout_ms=50_000)], now=T)
    await worker(store)
    await store.claim("w1", lease_ms=1_000, now=T)
    await store.sweep(now=T + 1_001)  # the lease lapsed: the attempt is taken back
    assert await deadlines(store) == []
    await store.register_worker("w1", ["a"], now=T + 2_000)
    await store.claim("w1", now=T + 2_000)
    assert await deadlines(store) == [("j", T + 52_000)]


async def test_a_job_without_a_timeout_never_touches_the_deadlines(store: Store) -> None:
    await store.add_job("a", job_id="j", now=T)
    await worker(store)
    await store.claim("w1", now=T)
    assert not await store.redis.exists(store.keys.deadlines)
    assert "timeout_ms" not in (await store.get_job("j") or {})
    await store.complete("j", "w1", 1, now=T + 1)


async def test_the_queue_and_type_defaults_are_taken_when_the_job_is_added(make_store: MakeStore) -> None:
    store = await make_store(job_timeout_s=30, type_timeouts="b=2.5, c=600")
    await store.add_jobs([NewJob("a", job_id="a1"), NewJob("b", job_id="b1"),
                          NewJob("b", job_id="b2", timeout_ms=1_000)], now=T)
    timeouts = [(await store.get_job(j) or {}).get("timeout_ms") for j in ("a1", "b1", "b2")]
    assert timeouts == [30_000, 2_500, 1_000]
    # another store of the queue without defaults: its start removes them for new jobs
    plain = await make_store()
    await plain.add_job("b", job_id="b3", now=T)
    assert "timeout_ms" not in (await plain.get_job("b3") or {})
    assert await store.redis.hget(store.keys.meta, "type_timeouts") is None


@pytest.mark.parametrize("value", ["b", "b=", "=5", "b=0", f"b={MAX_TIMEOUT_S + 1}", "b=x", "b=1,b=2"])
def test_bad_type_timeouts_are_refused_at_start(value: str) -> None:
    from conftest import settings_for_tests

    with pytest.raises(ValueError, match="type_timeouts"):
        settings_for_tests(type_timeouts=value)


# ---- run_at ----------------------------------------------------------------------------------------

async def test_run_at_in_the_future_is_scheduled_and_in_the_past_runs_at_once(store: Store) -> None:
    added = await store.add_jobs([NewJob("a", job_id="later", run_at_ms=T + 60_000),
                                  NewJob("a", job_id="now", run_at_ms=T - 60_000)], now=T)
    assert [(a.job_id, a.status) for a in added] == [("later", "scheduled"), ("now", "pending")]
    assert (await store.get_job("later") or {})["run_at"] == T + 60_000
    assert (await store.sweep(now=T + 59_999)).promoted == 0
    assert (await store.sweep(now=T + 60_000)).promoted == 1
    assert (await store.get_job("later") or {})["status"] == "pending"


async def test_run_at_beyond_the_delay_limit_is_refused(store: Store) -> None:
    with pytest.raises(BadArgument, match=f"run_at must be a time at most {MAX_DELAY_S} s from now"):
        await store.add_jobs([NewJob("a", job_id="far", run_at_ms=T + MAX_DELAY_S * 1000 + 1)], now=T)
    assert await store.get_job("far") is None
    await store.add_jobs([NewJob("a", job_id="edge", run_at_ms=T + MAX_DELAY_S * 1000)], now=T)


# ---- expiry -------------------------------------------------------------------------------------

async def test_a_pending_job_past_its_ttl_fails_expired_for_good(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j", ttl_ms=1_000, max_attempts=5)], now=T)
    assert await expiries(store) == [("j", T + 1_000)]
    assert (await store.get_job("j") or {})["expires_at"] == T + 1_000
    assert (await store.sweep(now=T + 999)).expired_waiting == 0
    assert (await store.sweep(now=T + 1_000)).expired_waiting == 1
    saved = await store.get_job("j") or {}
    assert saved["status"] == "failed" and saved["error"] == "expired"
    (event,) = await failed_events(store)
    assert (event[b"error"], event[b"final"], event[b"attempt"]) == (b"expired", b"1", b"0")
    stats = await store.stats()
    assert (stats.pending, stats.failed, await expiries(store)) == (0, 1, [])
    await worker(store)
    assert await store.claim("w1", now=T + 2_000) == []


async def test_a_scheduled_job_past_its_expiry_fails_expired(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j", delay_ms=5_000, expires_at_ms=T + 6_000)], now=T)
    swept = await store.sweep(now=T + 6_000)  # due and expired at once: the expiry comes first
    assert (swept.expired_waiting, swept.promoted) == (1, 0)
    assert (await store.get_job("j") or {})["status"] == "failed"
    stats = await store.stats()
    assert (stats.scheduled, stats.by_type["a"]["scheduled"], stats.failed) == (0, 0, 1)


async def test_a_claimed_job_does_not_expire(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j", ttl_ms=1_000)], now=T)
    await worker(store)
    await store.claim("w1", now=T + 500)
    assert await expiries(store) == []
    assert (await store.sweep(now=T + 5_000)).expired_waiting == 0
    assert (await store.get_job("j") or {})["status"] == "active"


async def test_a_cancelled_job_leaves_the_expiries(store: Store) -> None:
    await store.add_jobs([NewJob("a", job_id="j", ttl_ms=1_000)], now=T)
    await store.cancel("j", now=T + 1)
    assert await expiries(store) == []


@pytest.mark.parametrize(("job", "why"), [
    (NewJob("a", timeout_ms=0), "timeout must be"),
    (NewJob("a", timeout_ms=MAX_TIMEOUT_S * 1000 + 1), "timeout must be"),
    (NewJob("a", ttl_ms=MAX_DELAY_S * 1000 + 1), "ttl must be"),
    (NewJob("a", ttl_ms=0), "ttl must be"),
    (NewJob("a", expires_at_ms=T), "expires_at must be a time after now"),
    (NewJob("a", expires_at_ms=T + MAX_DELAY_S * 1000 + 1), "expires_at must be"),
    (NewJob("a", delay_ms=5_000, ttl_ms=5_000), "expire before it is due"),
    (NewJob("a", run_at_ms=T + 9_000, expires_at_ms=T + 8_000), "expire before it is due"),
])
async def test_bad_times_refuse_the_batch_and_add_nothing(store: Store, job: NewJob, why: str) -> None:
    with pytest.raises(BadArgument, match=why):
        await store.add_jobs([NewJob("a", job_id="good", ttl_ms=1_000), job._replace(job_id="bad")], now=T)
    assert await store.get_job("good") is None and await store.get_job("bad") is None
    assert (await store.stats()).pending == 0 and await expiries(store) == []
