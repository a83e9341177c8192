"""Listing jobs over the wire (docs/protocol.md `list_jobs`, docs/management.md): a monitor or a
client pages through a status with the cursor of each reply, through raw frames, the client SDK and
`empfast jobs`; bad cursors and scoped clients are refused and nothing changes."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator

import orjson
import pytest
from in_process import run_in_process
from support import MakeStore, connect, register, submit, ws_url
from test_security import SCOPED, TIMINGS

from empfast.client import Client
from empfast.config import HubConfig
from empfast.hub import Hub


@pytest.fixture
async def scoped_hub(make_store: MakeStore) -> AsyncIterator[Hub]:
    """A hub under client scope own (each client sees its own jobs; `root` is an admin token)."""
    hub = Hub(await make_store(), HubConfig(**TIMINGS, **SCOPED))
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_monitor_pages_through_failed_jobs_of_a_type_newest_first(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    ids = [await submit(client, "resize", {"n": n}, max_attempts=1) for n in range(5)]
    other = await submit(client, "ocr", max_attempts=1)
    worker = await register(hub, "w1", ["resize", "ocr"], concurrency=6)
    assigned = [await worker.until("job_assigned") for _ in range(6)]
    for job in assigned:
        worker.send({"type": "fail_job", "job_id": job["job_id"], "error": f"broke {job['job_id']}",
                     "retry": False, "req": job["job_id"]})
    for job in assigned:
        await worker.until("job_failed_ack", req=job["job_id"])
    monitor = await connect(hub, "/ws/monitor")
    seen, cursor = [], None
    while True:
        request = {"type": "list_jobs", "req": len(seen), "status": "failed", "job_type": "resize",
                   "order": "newest", "limit": 2, **({"cursor": cursor} if cursor else {})}
        monitor.send(request)
        page = await monitor.until("jobs", req=len(seen))
        seen += page["rows"]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sorted(row["job_id"] for row in seen) == sorted(ids) and other not in {r["job_id"] for r in seen}
    finished = [row["finished_at"] for row in seen]
    assert finished == sorted(finished, reverse=True)
    assert all(row["status"] == "failed" and row["error"] == f"broke {row['job_id']}" for row in seen)
    # payloads on request, raw as submitted
    monitor.send({"type": "list_jobs", "req": "p", "status": "failed", "job_type": "resize", "limit": 1,
                  "payloads": True})
    (row,) = (await monitor.until("jobs", req="p"))["rows"]
    assert row["payload"] == {"n": 0} and row["result"] is None


async def test_a_bad_cursor_or_status_is_refused_and_the_connection_stays(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    client.send({"type": "list_jobs", "req": 1, "status": "pending", "cursor": "nonsense"})
    error = await client.until("error", req=1)
    assert (error["code"], error["field"]) == ("bad_message", "cursor")
    client.send({"type": "list_jobs", "req": 2, "status": "done"})
    assert (await client.until("error", req=2))["field"] == "status"
    client.send({"type": "list_jobs", "req": 3, "status": "pending", "limit": 501})
    assert (await client.until("error", req=3))["field"] == "limit"
    client.send({"type": "list_jobs", "req": 4, "status": "pending"})
    assert (await client.until("jobs", req=4))["rows"] == []


async def test_a_client_under_scope_own_may_not_list_but_an_admin_token_may(scoped_hub: Hub) -> None:
    hub = scoped_hub
    alice = await connect(hub, "/ws/client?token=alice")
    await submit(alice, "render", job_id="alices-job", delay_s=60)
    bob = await connect(hub, "/ws/client?token=bob")
    bob.send({"type": "list_jobs", "req": 1, "status": "scheduled"})
    assert (await bob.until("error", req=1))["code"] == "forbidden"
    root = await connect(hub, "/ws/client?token=root")
    root.send({"type": "list_jobs", "req": 2, "status": "scheduled"})
    assert [row["job_id"] for row in (await root.until("jobs", req=2))["rows"]] == ["alices-job"]


async def test_the_client_sdk_iterates_every_job_of_a_status_once(hub: Hub) -> None:
    async with Client(ws_url(hub)) as client:
        ids = await client.submit_many([{"job_type": "later", "payload": {"i": i}, "delay_s": 60}
                                        for i in range(23)])
        listed = [row async for row in client.iter_jobs("scheduled", page_size=5)]
        assert [row["job_id"] for row in listed] == ids  # due at the same time: by id, as made
        page = await client.list_jobs("scheduled", limit=1, payloads=True)
        assert orjson.loads(orjson.dumps(page["rows"][0]["payload"])) == {"i": 0}
        assert page["cursor"] is not None


async def test_empfast_jobs_shows_a_page_as_a_table_and_the_command_for_the_next(hub: Hub) -> None:
    client = await connect(hub, "/ws/client")
    ids = [await submit(client, "resize", job_id=f"job-{n}", max_attempts=1) for n in range(3)]
    worker = await register(hub, "w1", ["resize"], concurrency=3)
    for _ in ids:
        job = await worker.until("job_assigned")
        worker.send({"type": "fail_job", "job_id": job["job_id"], "error": "upstream 503\n  at line 2",
                     "retry": False})
    client.send({"type": "get_stats", "req": "s"})
    while (await client.until("stats", req="s"))["failed"] < 3:
        await asyncio.sleep(0.05)
        client.send({"type": "get_stats", "req": "s"})

    def jobs(*args: str) -> tuple[int, str, str]:
        proc = run_in_process("jobs", *args, "--url", ws_url(hub))
        return proc.returncode, proc.stdout, proc.stderr

    code, out, err = await asyncio.to_thread(jobs, "--limit", "2")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["JOB_ID", "TYPE", "ATTEMPTS", "WORKER"]
    assert [row.split()[0] for row in rows] == ["job-0", "job-1"]
    assert all("1/1" in row and "w1" in row and "upstream 503 at line 2" in row for row in rows)
    more = err.strip().removeprefix("more: empfast jobs ")
    code, out, err = await asyncio.to_thread(jobs, *shlex.split(more))
    assert code == 0 and [row.split()[0] for row in out.splitlines()[1:]] == ["job-2"]
    assert "more:" not in err
    code, out, err = await asyncio.to_thread(jobs, "--status", "pending")
    assert code == 0 and out.splitlines()[1:] == [] and "no pending jobs" in err
    code, _, err = await asyncio.to_thread(jobs, "--cursor", "nonsense")
    assert code == 2 and "cursor" in err
