"""Fair sharing between tenants (docs/job-control.md 4): within a job type, claims go round-robin
across the groups that have pending work, priority then age within a group; on a real
redis-server and the embedded store, across two stores (two hubs) and a new store (a restart)."""

from __future__ import annotations

import pytest
from support import MakeStore, assert_groups_consistent

from empfast.errors import BadArgument, TypeLimited
from empfast.limits import MAX_GROUP_BYTES
from empfast.store import Completion, NewJob, Store

T = 1_000_000


def _ids(jobs: list) -> list[str]:
    return [j.job_id for j in jobs]


async def _group_keys(store: Store) -> list[str]:
    """The keys of the groups' bookkeeping: none may outlive the pending jobs they file."""
    found = [k.decode() for pattern in ("group:*", "groups:*", "parked:*")
             for k in await store.redis.keys(store.keys.prefix + pattern)]
    return sorted(found)


async def test_a_late_tenant_is_served_at_once_not_after_the_backlog(store: Store) -> None:
    await store.register_worker("w", ["t"], 1000, now=T)
    await store.add_jobs([NewJob("t", job_id=f"a{i:03}", group="A") for i in range(200)], now=T)
    await store.add_jobs([NewJob("t", job_id=f"b{i}", group="B") for i in range(3)], now=T)
    # one claim of ten: a job of each group in turn, then A's alone once B has none left
    assert _ids(await store.claim("w", 10, now=T)) == [
        "a000", "b0", "a001", "b1", "a002", "b2", "a003", "a004", "a005", "a006"]
    # B is out of the line, A alone in it: A's jobs in their order
    assert _ids(await store.claim("w", 3, now=T)) == ["a007", "a008", "a009"]
    await store.add_jobs([NewJob("t", job_id="c0", group="C")], now=T)
    # a claim of one at a time: C joined the back of the line, behind A (served just now)
    assert _ids(await store.claim("w", 1, now=T)) == ["a010"]
    assert _ids(await store.claim("w", 1, now=T)) == ["c0"]
    assert _ids(await store.claim("w", 1, now=T)) == ["a011"]
    assert await _group_keys(store) == [store.keys.group("t", "A"), store.keys.groups("t")]
    stats = await store.stats()
    assert stats.by_type["t"]["pending"] == 200 - 12
    await assert_groups_consistent(store)


async def test_priority_orders_jobs_within_a_group_not_across_groups(store: Store) -> None:
    await store.register_worker("w", ["t"], 100, now=T)
    await store.add_jobs([NewJob("t", job_id="a-low", group="A"), NewJob("t", job_id="b-low", group="B"),
                          NewJob("t", job_id="a-high", group="A", priority=5),
                          NewJob("t", job_id="b-top", group="B", priority=9)], now=T)
    # A's turn first (its first job came first); within each group the higher priority first
    assert _ids(await store.claim("w", 10, now=T)) == ["a-high", "b-top", "a-low", "b-low"]
    assert await _group_keys(store) == []


async def test_jobs_without_a_group_take_turns_as_one_group(store: Store) -> None:
    await store.register_worker("w", ["t"], 100, now=T)
    await store.add_jobs([NewJob("t", job_id=f"u{i}") for i in range(4)], now=T)
    assert await store.redis.hget(store.keys.meta, "grouped") is None  # no group yet: nothing kept
    assert await _group_keys(store) == []
    await store.add_jobs([NewJob("t", job_id=f"g{i}", group="G") for i in range(2)], now=T)
    await store.add_jobs([NewJob("t", job_id="u4")], now=T)  # filed under group '' now
    await assert_groups_consistent(store)
    assert _ids(await store.claim("w", 10, now=T)) == ["u0", "g0", "u1", "g1", "u2", "u3", "u4"]
    assert await store.redis.hget(store.keys.meta, "grouped") == b'["t"]'
    assert await _group_keys(store) == []


async def test_a_type_without_groups_keeps_no_group_keys_and_other_types_are_untouched(store: Store) -> None:
    await store.register_worker("w", ["plain", "fair"], 100, now=T)
    await store.add_jobs([NewJob("plain", job_id=f"p{i}", priority=i) for i in range(3)], now=T)
    await store.add_jobs([NewJob("fair", job_id="fa", group="A", priority=1),
                          NewJob("fair", job_id="fb", group="B", priority=1)], now=T)
    # across types the best head still wins: priority, then age (a grouped type's head is its
    # current group's best job)
    assert _ids(await store.claim("w", 10, now=T)) == ["p2", "p1", "fa", "fb", "p0"]
    assert await _group_keys(store) == []


async def test_cancel_expiry_and_claim_by_id_take_a_job_out_of_its_group(store: Store) -> None:
    await store.register_worker("w", ["t"], 100, now=T)
    await store.add_jobs([NewJob("t", job_id="a0", group="A"), NewJob("t", job_id="a1", group="A"),
                          NewJob("t", job_id="b0", group="B", ttl_ms=1000),
                          NewJob("t", job_id="c0", group="C")], now=T)
    assert (await store.cancel("a0"))[0] == "cancelled"
    (claimed,) = [await store.claim_by_id("w", "c0", now=T)]
    assert claimed.job_id == "c0"
    await store.sweep(now=T + 2000)  # b0 expires
    await assert_groups_consistent(store)
    assert (await store.get_job("b0"))["status"] == "failed"
    line = await store.redis.zrange(store.keys.groups("t"), 0, -1)
    assert line == [b"A"]  # B and C left the line with their last job
    assert _ids(await store.claim("w", 10, now=T + 2000)) == ["a1"]
    assert await _group_keys(store) == []


async def test_a_retried_or_delayed_job_comes_back_to_its_group(store: Store) -> None:
    await store.register_worker("w", ["t"], 100, now=T)
    await store.add_jobs([NewJob("t", job_id="a0", group="A"), NewJob("t", job_id="b0", group="B"),
                          NewJob("t", job_id="b1", group="B", delay_ms=500)], now=T)
    assert _ids(await store.claim("w", 1, now=T)) == ["a0"]
    out = await store.fail("a0", "w", 1, "boom", retry=True, claim_next=0, now=T)
    assert out.status == "scheduled"  # its backoff
    await store.sweep(now=T + 15_000)  # b1 and a0 due
    assert (await store.get_job("b1"))["group"] == "B"
    assert (await store.get_job("a0"))["status"] == "pending"
    await assert_groups_consistent(store)
    assert _ids(await store.claim("w", 10, now=T + 15_000)) == ["b0", "a0", "b1"]
    _, nxt = await store.complete_many("w", [Completion("b0", 1, b"1")], claim_next=5, now=T + 15_000)
    assert nxt == [] and await _group_keys(store) == []


async def test_many_groups_each_get_a_turn_before_any_gets_a_second(store: Store) -> None:
    await store.register_worker("w", ["t"], 10_000, now=T)
    await store.add_jobs([NewJob("t", job_id=f"big{i:03}", group="big") for i in range(500)], now=T)
    await store.add_jobs([NewJob("t", job_id=f"g{i:03}", group=f"tenant{i:03}") for i in range(300)], now=T)
    taken: list[str] = []
    while len(taken) < 600:
        taken += _ids(await store.claim("w", 37, now=T))
    # a claim reads the first 37 groups of the line: big's turn came once in the first, then every
    # small tenant's one job before big's second (its jobs came first, but only one a turn)
    small = [at for at, job_id in enumerate(taken) if job_id.startswith("g")]
    assert len(small) == 300 and max(small) == 300
    await assert_groups_consistent(store)
    assert taken[0] == "big000" and taken[301:] == [f"big{i:03}" for i in range(1, len(taken) - 300)]


async def test_two_stores_and_a_new_store_share_one_line(store: Store, make_store: MakeStore) -> None:
    """Two hubs claim from the same line, and a hub started later goes on where it was: the line
    is in Redis, not in a hub."""
    other = await make_store()
    await store.register_worker("w1", ["t"], 100, now=T)
    await other.register_worker("w2", ["t"], 100, now=T)
    await store.add_jobs([NewJob("t", job_id=f"a{i}", group="A") for i in range(5)], now=T)
    await other.add_jobs([NewJob("t", job_id=f"b{i}", group="B") for i in range(5)], now=T)
    got = [_ids(await s.claim(w, 1, now=T)) for s, w in [(store, "w1"), (other, "w2")] * 2]
    assert got == [["a0"], ["b0"], ["a1"], ["b1"]]
    restarted = await make_store()
    assert _ids(await restarted.claim("w1", 4, now=T)) == ["a2", "b2", "a3", "b3"]
    await assert_groups_consistent(store)


async def test_a_bad_group_is_refused_and_nothing_is_written(store: Store) -> None:
    too_long = "g" * (MAX_GROUP_BYTES + 1)
    with pytest.raises(BadArgument, match="group must be at most"):
        await store.add_jobs([NewJob("t", job_id="ok", group="A"), NewJob("t", job_id="bad", group=too_long)],
                             now=T)
    assert await store.get_job("ok") is None
    assert await store.redis.hget(store.keys.meta, "grouped") is None
    assert await _group_keys(store) == []


async def test_a_group_at_its_limit_steps_aside_for_the_others(store: Store) -> None:
    """group_concurrency (set_type_limits): at most N active jobs of each group; a group at its
    limit is parked out of the line, so it never holds back the others, and comes back when one
    of its jobs ends, or when the limit changes."""
    await store.register_worker("w", ["t"], 100, now=T)
    await store.add_jobs([NewJob("t", job_id=f"a{i}", group="A") for i in range(6)]
                         + [NewJob("t", job_id=f"b{i}", group="B") for i in range(6)]
                         + [NewJob("t", job_id=f"u{i}") for i in range(3)], now=T)
    state = await store.set_type_limits("t", None, None, group_concurrency=2)
    assert state.limits["t"].group_concurrency == 2
    assert _ids(await store.claim("w", 100, now=T)) == ["a0", "b0", "u0", "a1", "b1", "u1", "u2"]
    assert await store.claim("w", 100, now=T) == []  # A and B at their limit; '' has no limit
    assert set(await store.redis.smembers(store.keys.parked("t"))) == {b"A", b"B"}
    with pytest.raises(TypeLimited):
        await store.claim_by_id("w", "a2", now=T)
    await assert_groups_consistent(store)
    # a new tenant is not held back by the parked ones
    await store.add_jobs([NewJob("t", job_id="c0", group="C")], now=T)
    assert _ids(await store.claim("w", 100, now=T)) == ["c0"]
    # one of A's jobs ends (completed, or failed and retried): A is back in the line for one more
    _, nxt = await store.complete_many("w", [Completion("a0", 1, b"1")], claim_next=100, now=T)
    assert _ids(nxt) == ["a2"]
    out = await store.fail("b0", "w", 1, "boom", retry=True, claim_next=100, now=T)
    assert out.status == "scheduled" and _ids(out.next_jobs) == ["b2"]
    await assert_groups_consistent(store)
    # a raised limit puts the parked groups back at once
    await store.set_type_limits("t", None, None, group_concurrency=3)
    assert _ids(await store.claim("w", 100, now=T)) == ["a3", "b3"]
    await assert_groups_consistent(store)
    # cleared: no bound per group any more
    await store.set_type_limits("t", None, None)
    assert _ids(await store.claim("w", 100, now=T)) == ["a4", "b4", "a5", "b5"]
    await assert_groups_consistent(store)
    assert await store.redis.scard(store.keys.parked("t")) == 0


async def test_a_bad_group_limit_is_refused(store: Store) -> None:
    with pytest.raises(BadArgument, match="group_concurrency is a whole number"):
        await store.set_type_limits("t", None, None, group_concurrency=0)
    assert await store.type_limits() == {}


async def test_a_child_released_by_its_parent_takes_its_groups_turn(store: Store) -> None:
    """A job waiting for its parent (depends_on) is filed under its group when it becomes pending."""
    await store.register_worker("w", ["parent", "t"], 100, now=T)
    await store.add_jobs([NewJob("parent", job_id="p0")], now=T)
    await store.add_jobs([NewJob("t", job_id=f"a{i}", group="A") for i in range(5)]
                         + [NewJob("t", job_id="child", group="B", depends_on=["p0"])], now=T)
    assert (await store.get_job("child"))["status"] == "waiting"
    await assert_groups_consistent(store)
    assert _ids(await store.claim("w", 1, now=T)) == ["p0"]
    _, nxt = await store.complete_many("w", [Completion("p0", 1, b"1")], claim_next=4, now=T)
    assert _ids(nxt) == ["a0", "child", "a1", "a2"]
    await assert_groups_consistent(store)
