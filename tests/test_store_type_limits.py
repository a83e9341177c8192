"""A job type's limits (docs/job-control.md 3): a global concurrency limit and a rate limit,
enforced by every claiming script, on a real redis-server and the embedded store."""

from __future__ import annotations

import pytest

from empfast.errors import BadArgument, TypeLimited
from empfast.store import Completion, NewJob, Store, TypeLimit, entry_events

T = 1_000_000


async def _ids(jobs: list) -> list[str]:
    return [j.job_id for j in jobs]


async def test_concurrency_limit_holds_across_workers_and_every_claim_path(store: Store) -> None:
    await store.register_worker("w1", ["a", "b"], 10, now=T)
    await store.register_worker("w2", ["a"], 10, now=T)
    await store.add_jobs([NewJob("a", job_id=f"a{i}") for i in range(6)], now=T)
    state = await store.set_type_limits("a", 2, None)
    assert (state.changed, state.pending, state.limits) == (True, 6, {"a": TypeLimit(2)})
    assert not (await store.set_type_limits("a", 2, None)).changed  # a repeat changes nothing
    first = await store.claim("w1", 10, now=T)
    assert await _ids(first) == ["a0", "a1"]
    assert await store.claim("w2", 10, now=T) == []  # the limit is global, not per worker
    # a submit that claims for an idle worker, and claim by id, are held back too
    _, claimed = await store.add_and_claim([NewJob("a", job_id="a9")], worker_id="w2", max_claim=5, now=T)
    assert claimed == []
    with pytest.raises(TypeLimited):
        await store.claim_by_id("w2", "a3", now=T)
    # other types are not limited, in the same claim as a limited one
    await store.add_jobs([NewJob("b", job_id=f"b{i}") for i in range(3)], now=T)
    assert await _ids(await store.claim("w1", 10, now=T)) == ["b0", "b1", "b2"]
    # a completion frees a slot: its own next claim takes the next job in order
    _, nxt = await store.complete_many("w1", [Completion("a0", 1, b"1")], claim_next=5, now=T)
    assert await _ids(nxt) == ["a2"]
    # a failure frees one too (retried: back in the pending set, behind the older jobs)
    out = await store.fail("a1", "w1", 1, "boom", retry=False, claim_next=0, now=T)
    assert out.status == "failed"
    assert await _ids(await store.claim("w2", 10, now=T)) == ["a3"]
    stats = await store.stats()
    assert stats.by_type["a"]["active"] == 2 and stats.by_type["a"]["pending"] == 3
    assert stats.as_dict()["limits"] == {"a": {"concurrency": 2, "rate": None, "per_s": None,
                                               "group_concurrency": None}}
    # clearing the limit releases the waiting jobs at once
    state = await store.set_type_limits("a", None, None)
    assert (state.changed, state.pending, state.limits) == (True, 3, {})
    assert await store.redis.hget(store.keys.meta, "limits") is None
    assert await _ids(await store.claim("w2", 10, now=T)) == ["a4", "a5", "a9"]
    kinds = [e[1] for _, flat in await store.redis.xrange(store.keys.events) for e in entry_events(flat)]
    assert kinds.count(b"limits") == 2


async def test_rate_limit_gives_at_most_n_starts_a_period_and_says_when_the_next_is_due(store: Store) -> None:
    await store.register_worker("w", ["r"], 100, now=T)
    await store.add_jobs([NewJob("r", job_id=f"r{i:02}") for i in range(20)], now=T)
    await store.set_type_limits("r", None, 5, 1.0)
    jobs, waits = await store.claim_waits("w", 100, now=T)
    assert await _ids(jobs) == [f"r{i:02}" for i in range(5)]
    assert waits == {"r": 200}  # one token every 200 ms
    jobs, waits = await store.claim_waits("w", 100, now=T + 100)
    assert jobs == [] and waits == {"r": 100}
    jobs, waits = await store.claim_waits("w", 100, now=T + 200)
    assert await _ids(jobs) == ["r05"] and waits == {"r": 200}
    # a second later the bucket is full again: five more, no more
    jobs, _ = await store.claim_waits("w", 100, now=T + 1400)
    assert await _ids(jobs) == [f"r{i:02}" for i in range(6, 11)]
    # both limits: the smaller allowance wins; the bucket key expires once it would be full
    await store.set_type_limits("r", 1, 5, 1.0)
    assert await store.redis.pttl(store.keys.prefix + "rate:r") > 0
    assert await store.claim("w", 100, now=T + 5000) == []  # 11 active already


async def test_limits_for_a_worker_of_several_types_keep_the_order(store: Store) -> None:
    await store.register_worker("w", ["a", "b"], 10, now=T)
    await store.add_jobs([NewJob("a", job_id="a0"), NewJob("b", job_id="b0"), NewJob("a", job_id="a1"),
                          NewJob("b", job_id="b1"), NewJob("a", job_id="a2")], now=T)
    await store.set_type_limits("a", 1, None)
    assert await _ids(await store.claim("w", 10, now=T)) == ["a0", "b0", "b1"]
    assert (await store.stats()).by_type["a"]["pending"] == 2


@pytest.mark.parametrize(("concurrency", "rate", "per_s"), [
    (0, None, 1.0), (-1, None, 1.0), (10**9, None, 1.0), (None, 0, 1.0), (None, 5, 0.0),
    (None, 5, 10**6), (1.5, None, 1.0)])
async def test_bad_limits_are_refused_and_change_nothing(store: Store, concurrency: object, rate: object,
                                                         per_s: float) -> None:
    await store.set_type_limits("a", 3, None)
    with pytest.raises(BadArgument):
        await store.set_type_limits("a", concurrency, rate, per_s)  # type: ignore[arg-type]
    assert await store.type_limits() == {"a": TypeLimit(3)}
    with pytest.raises(BadArgument):
        await store.set_type_limits("", 1, None)
