"""Redis losing its scripts, restarting under the store, and layout versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.crc import key_slot
from support import MakeStore, RedisServer, T

from empfast.config import QueueSettings, RedisOptions
from empfast.errors import LayoutMismatch
from empfast.schedules import Schedule
from empfast.scripts import Script
from empfast.store import Store, redis_from_options


async def test_noscript_after_script_flush_is_recovered(store: Store) -> None:
    await store.add_job("a", job_id="before", now=T)
    await store.redis.script_flush()
    added = await store.add_job("a", job_id="after", now=T)  # NOSCRIPT -> load again -> retry
    assert added.created
    assert (await store.stats()).pending == 2


async def test_incompatible_layout_is_refused_with_a_clear_message(make_store: MakeStore) -> None:
    store = await make_store()
    await store.redis.hset(store.keys.meta, "layout", "999")
    other = Store(store.redis, store.settings)
    with pytest.raises(LayoutMismatch, match=r"layout '999'.*another queue name"):
        await other.start()


async def test_queues_share_one_redis_without_seeing_each_other(make_store: MakeStore) -> None:
    one, two = await make_store(name="one"), await make_store(name="two")
    await one.add_job("a", job_id="j", now=T)
    assert (await two.stats()).pending == 0 and await two.get_job("j") is None
    assert one.keys.job("j") == "{one}:job:j"


def test_queue_names_cannot_break_the_hash_tag() -> None:
    with pytest.raises(ValueError, match="queue name"):
        QueueSettings(name="a}b")


@pytest.mark.real_redis
async def test_redis_restart_under_the_store(redis_server: RedisServer) -> None:
    redis_server.flush()
    store = Store(redis_from_options(RedisOptions(url=redis_server.url, retries=8)),
                  QueueSettings(name="restart"))
    await store.start()
    await store.add_job("a", job_id="lost-with-redis", now=T)
    redis_server.stop()
    redis_server.start()  # no persistence: data and scripts are gone, connections are broken
    added = await store.add_job("a", job_id="after-restart", now=T)
    assert added.created
    stats = await store.stats()
    assert stats.pending == 1
    assert await store.redis.hget(store.keys.meta, "layout") == b"1"
    await store.close()


async def test_every_script_gets_keys_of_one_cluster_slot(store: Store,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each script's KEYS, and the prefix it builds per-job and per-worker keys from, share the
    queue's hash tag, so every script runs on Redis Cluster. Every script is called once."""
    calls: list[tuple[str, list[str], str]] = []
    evalsha = store._evalsha  # the one place every script call goes through

    async def recording(script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        calls.append((script.name, [str(k) for k in keys], str(args[0])))
        return await evalsha(script, keys, args)

    monkeypatch.setattr(store, "_evalsha", recording)
    await store.add_job("a", job_id="j", now=T)
    await store.register_worker("w1", ["a"], 2, now=T)
    (job,) = await store.claim("w1", now=T)
    await store.progress("j", "w1", job.attempt, 50, now=T)
    await store.append_log("j", "w1", job.attempt, ["a line"])
    await store.heartbeat("w1", now=T)
    await store.fail("j", "w1", job.attempt, "x", retry=False, now=T)
    await store.retry("j", now=T)
    job = await store.claim_by_id("w1", "j", now=T)
    await store.complete("j", "w1", job.attempt, now=T)
    await store.cancel("j", now=T)
    await store.set_worker_status("w1", "draining", now=T)
    await store.deregister_worker("w1", now=T)
    await store.sweep(now=T)
    await store.stats()
    await store.list_jobs("pending")
    await store.list_jobs("completed", job_type="a")
    await store.retry_jobs_slice(until_ms=T, dry_run=True)
    await store.remove_jobs_slice("completed", until_ms=T, dry_run=True)
    await store.set_type_paused("a", True)
    await store.set_type_limits("a", 2, 10, 1.0)
    nightly = Schedule("nightly", "a", cron="0 3 * * *")
    await store.set_schedule(nightly, T)
    await store.advance_schedule("nightly", T, T + 86_400_000)
    await store.remove_schedule("nightly")
    assert {name for name, _, _ in calls} == set(store.scripts)
    slot = key_slot(store.keys.meta.encode())
    for name, keys, prefix in calls:
        assert prefix == store.keys.prefix, name
        assert [key_slot(k.encode()) for k in keys] == [slot] * len(keys), name
    assert key_slot(store.keys.job("j").encode()) == key_slot(store.keys.pending("a").encode()) == slot
    assert key_slot(store.keys.worker_jobs("w1").encode()) == slot
    assert key_slot(store.keys.job_logs("j").encode()) == slot
