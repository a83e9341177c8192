"""Repeating jobs (docs/job-control.md section 2): what a schedule may be, when it is due, and each
due run added once whatever the number of hubs, on a real redis-server and on the embedded store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from in_process import run_in_process
from support import FAST_TIMINGS, MakeStore, ws_url

from empfast.client import Monitor
from empfast.config import HubConfig
from empfast.connection import HubError
from empfast.hub import Hub
from empfast.schedules import Schedule, ScheduleError

PARIS_WINTER_MS = 1_796_185_276_171  # 2026-12-02 in the afternoon, Paris in winter time (UTC+1)


@pytest.mark.parametrize(("fields", "field"), [
    ({"name": "a b", "every_s": 60}, "name"),
    ({}, "cron"),
    ({"cron": "* * * * *", "every_s": 60}, "cron"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"every_s": 0.5}, "every_s"),
    ({"every_s": 60, "tz": "Mars/Olympus"}, "tz"),
])
def test_a_schedule_that_cannot_be_kept_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        Schedule(**{"name": "n", "job_type": "t", **fields})
    assert refused.value.field == field


def test_due_times_are_on_the_interval_grid_or_the_cron_in_its_zone() -> None:
    every = Schedule("tick", "t", every_s=60)
    assert every.next_due_ms(60_000) == 120_000 and every.next_due_ms(60_001) == 120_000
    nightly = Schedule("nightly", "t", cron="0 3 * * *", tz="Europe/Paris")
    due = nightly.next_due_ms(PARIS_WINTER_MS)
    assert due % 86_400_000 == 2 * 3_600_000  # 03:00 in Paris in winter is 02:00 UTC
    assert 0 < due - PARIS_WINTER_MS <= 86_400_000
    assert Schedule.from_json(nightly.to_json()) == nightly


@contextlib.asynccontextmanager
async def hubs(make_store: MakeStore, count: int) -> AsyncIterator[list[Hub]]:
    """`count` hubs on one queue of one Redis, sweeping every 50 ms."""
    started: list[Hub] = []
    try:
        for _ in range(count):
            hub = Hub(await make_store(name="sched"), HubConfig(port=0, http_port=0, **FAST_TIMINGS))
            await hub.start()
            started.append(hub)
        yield started
    finally:
        for hub in started:
            await hub.stop()


async def runs_of(hub: Hub, name: str) -> list[int]:
    """The due times (ms) of the jobs a schedule added, in order."""
    page = await hub.store.list_jobs("pending", limit=500)
    return sorted(int(row["job_id"].rsplit(":", 1)[1]) for row in page.rows
                  if row["job_id"].startswith(f"sched:{name}:"))


async def test_each_due_run_is_added_once_by_two_hubs(make_store: MakeStore) -> None:
    async with hubs(make_store, 2) as (first, second), Monitor(ws_url(first)) as monitor:
        reply = await monitor.set_schedule("tick", "report", {"n": 1}, every_s=1)
        assert reply["created"] is True and reply["next_run_at_ms"] % 1000 == 0
        await asyncio.sleep(3.5)
        await monitor.pause_schedule("tick")
        due = await runs_of(second, "tick")
        assert len(due) >= 3
        assert [b - a for a, b in itertools.pairwise(due)] == [1000] * (len(due) - 1)  # no gap
        # one `added` per run: the other hub's add of the same run found it there
        assert (await first.store.stats()).by_type["report"]["added"] == len(due)
        job = await first.store.get_job(f"sched:tick:{due[0]}")
        assert job is not None and job["payload"] == b'{"n":1}'
        await asyncio.sleep(1.2)  # paused: no more runs
        assert await runs_of(first, "tick") == due


async def test_pause_resume_list_and_remove(make_store: MakeStore) -> None:
    async with hubs(make_store, 1) as (hub,), Monitor(ws_url(hub)) as monitor:
        await monitor.set_schedule("nightly", "report", cron="0 3 * * *", tz="Europe/Paris")
        paused = await monitor.pause_schedule("nightly")
        assert paused["paused"] is True and paused["next_run_at_ms"] is None
        resumed = await monitor.resume_schedule("nightly")
        assert resumed["paused"] is False and resumed["next_run_at_ms"] > 0
        (listed,) = await monitor.schedules()
        assert (listed["name"], listed["cron"], listed["tz"]) == ("nightly", "0 3 * * *", "Europe/Paris")
        assert await monitor.remove_schedule("nightly") is True
        assert await monitor.remove_schedule("nightly") is False and await monitor.schedules() == []
        with pytest.raises(HubError, match="no schedule 'nightly'"):
            await monitor.pause_schedule("nightly")
        with pytest.raises(HubError, match="not a cron expression") as refused:
            await monitor.set_schedule("bad", "report", cron="every day")
        assert refused.value.frame["field"] == "cron" and await monitor.schedules() == []


async def test_a_hub_that_was_down_adds_one_run_for_the_time_missed(make_store: MakeStore) -> None:
    async with hubs(make_store, 1) as (hub,):
        store = hub.store
        now = await store.clock_ms()
        tick = Schedule("tick", "report", every_s=3600)
        await store.set_schedule(tick, now - 10 * 3_600_000)  # ten runs ago: the hubs were all down
        await hub.schedules.fire_due(hub.default_room)
        await hub.schedules.fire_due(hub.default_room)
        assert await runs_of(hub, "tick") == [now - 10 * 3_600_000]
        (_, due), = await store.get_schedules()
        assert due is not None and now < due <= now + 3_600_000


async def test_the_command_line_sets_lists_and_removes_a_schedule(make_store: MakeStore) -> None:
    async with hubs(make_store, 1) as (hub,):
        url = ws_url(hub)

        def cli(*args: str) -> tuple[int, str, str]:
            done = run_in_process("schedules", *args, "--url", url)
            return done.returncode, done.stdout, done.stderr

        code, out, _ = await asyncio.to_thread(cli, "set", "nightly", "report", '{"k": 1}', "--cron",
                                               "0 3 * * *", "--tz", "Europe/Paris")
        assert code == 0 and "nightly" in out and "cron 0 3 * * * Europe/Paris" in out
        code, out, _ = await asyncio.to_thread(cli, "list", "--json")
        assert code == 0 and [s["payload"] for s in orjson.loads(out)] == [{"k": 1}]
        code, _, err = await asyncio.to_thread(cli, "set", "bad", "report", "--every-s", "0.1")
        assert code == 1 and "every_s must be" in err
        code, out, _ = await asyncio.to_thread(cli, "remove", "nightly")
        assert code == 0 and "removed" in out
        code, _, err = await asyncio.to_thread(cli, "pause")
        assert code == 2 and "name the schedule" in err
