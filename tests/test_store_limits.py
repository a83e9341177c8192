"""The limits the scripts enforce: read from the queue's meta hash (written by the store from
empfast/limits.py), measured in UTF-8 bytes, as the hub measures them."""

from __future__ import annotations

import pytest
from support import T

from empfast.errors import BadArgument
from empfast.limits import LUA_LIMITS, MAX_DELAY_S, MAX_PRIORITY
from empfast.store import NewJob, Store


async def test_the_store_writes_every_limit_into_the_meta_hash(store: Store) -> None:
    meta = await store.redis.hgetall(store.keys.meta)
    assert {name: int(meta[name.encode()]) for name in LUA_LIMITS} == LUA_LIMITS


async def test_a_job_type_is_limited_in_bytes_not_characters(store: Store) -> None:
    with pytest.raises(BadArgument, match=r"job_type must be 1 to 128 bytes"):
        await store.add_job("é" * 100, job_id="too-long", now=T)  # 100 characters, 200 bytes
    assert await store.get_job("too-long") is None
    added = await store.add_job("é" * 64, job_id="fits", now=T)  # 128 bytes
    assert added.created and added.status == "pending"


async def test_a_worker_id_is_limited_in_bytes(store: Store) -> None:
    with pytest.raises(BadArgument, match=r"worker_id must be 1 to 128 bytes"):
        await store.register_worker("é" * 65, ["a"], now=T)
    assert await store.get_workers() == []


async def test_a_delay_over_the_maximum_is_refused_and_changes_nothing(store: Store) -> None:
    too_late = MAX_DELAY_S * 1000 + 1
    with pytest.raises(BadArgument, match=r"job 2: delay must be a number of ms from 0 to 31536000000"):
        await store.add_jobs([NewJob("a", job_id="good"), NewJob("a", job_id="late", delay_ms=too_late)],
                             now=T)
    assert await store.get_job("good") is None and await store.get_job("late") is None
    stats = await store.stats()
    assert stats.pending == 0 and stats.scheduled == 0
    added = await store.add_job("a", job_id="a-year", delay_ms=MAX_DELAY_S * 1000, now=T)
    assert added.status == "scheduled"


async def test_the_scripts_read_their_limits_from_the_meta_hash(store: Store) -> None:
    """A smaller limit written into the meta hash is enforced at once: no script restates one."""
    await store.redis.hset(store.keys.meta, mapping={"max_job_type_bytes": 4, "max_attempts": 2})
    with pytest.raises(BadArgument, match=r"job_type must be 1 to 4 bytes"):
        await store.add_job("abcde", now=T)
    with pytest.raises(BadArgument, match=r"max_attempts must be an integer from 1 to 2"):
        await store.add_job("abcd", max_attempts=3, now=T)
    assert (await store.add_job("abcd", max_attempts=2, now=T)).created


async def test_a_claim_takes_at_most_max_claim_jobs(store: Store) -> None:
    await store.redis.hset(store.keys.meta, "max_claim", 2)
    await store.add_jobs([NewJob("a") for _ in range(6)], now=T)
    await store.register_worker("w1", ["a"], 10, now=T)
    assert len(await store.claim("w1", 5, now=T)) == 2
    (job, *_) = await store.claim("w1", 1, now=T)
    assert len(await store.complete(job.job_id, "w1", job.attempt, claim_next=5, now=T)) == 2


async def test_a_meta_hash_deleted_under_a_running_store_is_written_again(store: Store) -> None:
    await store.redis.delete(store.keys.meta)  # as FLUSHDB does, while the scripts stay loaded
    added = await store.add_job("a", job_id="after", now=T)
    assert added.created
    assert await store.redis.hget(store.keys.meta, "max_priority") == str(MAX_PRIORITY).encode()


async def test_the_highest_and_lowest_priorities_keep_their_order_and_fifo(store: Store) -> None:
    # pending score = (max_priority - priority) * 2^42 + seq, exact in a double below 2^53
    assert (2 * MAX_PRIORITY + 1) * 2 ** 42 <= 2 ** 53
    order = [("low-1", -MAX_PRIORITY), ("top-1", MAX_PRIORITY), ("low-2", -MAX_PRIORITY),
             ("top-2", MAX_PRIORITY)]
    for job_id, priority in order:
        await store.add_job("a", job_id=job_id, priority=priority, now=T)
    await store.register_worker("w1", ["a"], 4, now=T)
    claimed = await store.claim("w1", 4, now=T)
    assert [j.job_id for j in claimed] == ["top-1", "top-2", "low-1", "low-2"]
