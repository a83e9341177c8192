"""Job dependencies (docs/job-control.md section 5) as users reach them: the client SDK's submit
and submit_many, the `empfast` command's submit --depends-on, jobs --status waiting and status,
and the REST API's POST /api/jobs and status filter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_support import HttpAnswer, http_request
from in_process import run_in_process
from support import WSPeer, register, ws_url

from empfast.client import Client, HubError, JobSpec
from empfast.hub import Hub


async def complete_next(worker: WSPeer, job_id: str) -> None:
    assigned = await worker.until("job_assigned", job_id=job_id, wait_s=5)
    worker.send({"type": "complete_job", "job_id": job_id, "attempt": assigned["attempt"],
                 "result": job_id})


async def test_the_client_submits_children_alone_and_in_a_batch(hub: Hub) -> None:
    worker = await register(hub, "w1", ["a"])
    async with Client(ws_url(hub)) as client:
        ids = await client.submit_many([JobSpec("a", job_id="root"),
                                        {"job_type": "a", "job_id": "mid", "depends_on": ["root"]}])
        assert ids == ["root", "mid"]
        leaf = await client.submit("a", job_id="leaf", depends_on=["mid", "root"])
        assert leaf.status == "waiting"
        state = await client.status("leaf")
        assert (state["status"], state["depends_on"], state["open_parents"]) == (
            "waiting", ["mid", "root"], 2)
        for job_id in ("root", "mid", "leaf"):
            await complete_next(worker, job_id)
        assert await leaf.result(timeout=5) == "leaf"
        with pytest.raises(HubError) as refused:
            await client.submit("a", depends_on=["no-such-job"])
        assert refused.value.code == "bad_message" and "no-such-job" in str(refused.value)
    worker.close()


async def call(hub: Hub, method: str, path: str, body: Any = None) -> HttpAnswer:
    assert hub.http is not None
    return await http_request(hub.http.port, method, path, body=body)


async def run_cli(hub: Hub, *args: str) -> tuple[int, str, str]:
    # in a thread: the command runs an event loop of its own, and this one serves the hub
    proc = await asyncio.wait_for(asyncio.to_thread(run_in_process, *args, "--url", ws_url(hub)), 60)
    return proc.returncode, proc.stdout, proc.stderr


async def test_the_command_line_submits_lists_and_shows_a_waiting_job(hub: Hub) -> None:
    await hub.store.add_job("a", job_id="p1")
    await hub.store.add_job("a", job_id="p2")
    code, out, err = await run_cli(hub, "submit", "a", "--job-id", "child", "--depends-on", "p1",
                                   "--depends-on", "p2")
    assert code == 0 and out.strip() == "child" and "child waiting" in err, err
    code, out, err = await run_cli(hub, "jobs", "--status", "waiting")
    assert code == 0 and "child" in out and "p1" not in out, out + err
    code, out, err = await run_cli(hub, "status", "child")
    assert code == 0 and "depends on   p1, p2 (2 open)" in out, out + err
    code, out, err = await run_cli(hub, "submit", "a", "--depends-on", "ghost")
    assert code != 0 and "ghost" in err


async def test_rest_submits_a_child_and_filters_the_waiting_jobs(http_hub: Hub) -> None:
    await http_hub.store.add_job("a", job_id="parent")
    answer = await call(http_hub, "POST", "/api/jobs", {"job_type": "a", "job_id": "kid",
                                                          "depends_on": ["parent"]})
    assert (answer.status, answer.json()["status"]) == (201, "waiting"), answer.body
    listed = await call(http_hub, "GET", "/api/jobs?status=waiting")
    assert listed.status == 200 and [row["job_id"] for row in listed.json()["rows"]] == ["kid"]
    refused = await call(http_hub, "POST", "/api/jobs", {"job_type": "a", "depends_on": ["missing"]})
    assert refused.status == 400 and "missing" in refused.json()["error"]
    state = await call(http_hub, "GET", "/api/jobs/kid")
    assert state.json()["depends_on"] == ["parent"]
