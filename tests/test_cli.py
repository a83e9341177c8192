"""The `empfast` command as a user runs it: in this process through `cli.main`, and as real
processes where the process is the point (signals, two hubs), with a hub on the embedded store."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import orjson
import pytest
from in_process import run_in_process
from support import RedisServer, WSPeer, free_port

from empfast import cli, manage
from empfast.client import Client, Monitor
from empfast.config import HubConfig, LoggingSettings, QueueSettings
from empfast.hub import Hub
from empfast.store import Store

REAL_SETUP_LOGGING = cli.setup_logging  # the autouse fixture below replaces it for the other tests

EMPFAST = [sys.executable, "-m", "empfast"]


@pytest.fixture(autouse=True)
def _leave_the_test_process_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve and worker run in process would replace pytest's log handlers and grow sys.path."""
    monkeypatch.setattr(cli, "setup_logging", lambda settings: None)
    monkeypatch.setattr(sys, "path", list(sys.path))


async def start_hub(port: int, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(*EMPFAST, "serve", "--port", str(port), "--http-port", "0",
                                                *extra,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
    where = "Redis at" if "--redis-url" in extra else "embedded store"
    assert where in line and f":{port}/ws/" in line, line
    return proc


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 20)


async def run(*args: str, url: str) -> tuple[int, str, str]:
    # in a thread: the command runs an event loop of its own
    proc = await asyncio.wait_for(asyncio.to_thread(run_in_process, *args, "--url", url), 60)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
async def hub_url() -> AsyncIterator[str]:
    port = free_port()
    proc = await start_hub(port)
    yield f"ws://127.0.0.1:{port}"
    assert await stop(proc) == 0


async def test_submit_takes_a_job_timeout_a_start_time_and_a_ttl(hub_url: str) -> None:
    code, out, err = await run("submit", "later", "--run-at", "2999-01-01T00:00:00+00:00",
                               "--job-timeout-s", "90", "--ttl-s", "60", url=hub_url)
    assert code != 0 and "run_at must be a time at most" in err  # a year ahead at most
    code, out, err = await run("submit", "later", "--run-at", "1700000000", "--job-timeout-s", "90",
                               "--ttl-s", "60", url=hub_url)
    assert code == 0, err
    job_id = out.strip()
    code, out, err = await run("status", job_id, url=hub_url)
    assert code == 0 and "90 s per attempt" in out and "expires_at" in out, out + err
    code, _, err = await run("submit", "later", "--run-at", "next tuesday", url=hub_url)
    assert code == 2 and "neither ISO 8601" in err
    code, out, err = await run("submit", "report", "--group", "acme", url=hub_url)
    assert code == 0, err
    code, out, err = await run("status", out.strip(), url=hub_url)
    assert code == 0 and re.search(r"^group +acme$", out, re.M), out + err
    code, _, err = await run("submit", "report", "--group", "x" * 129, url=hub_url)
    assert code != 0 and "group" in err and "128" in err, err


async def test_serve_on_the_embedded_store_answers_and_stops_cleanly_on_sigterm(hub_url: str) -> None:
    client = await WSPeer.connect(f"{hub_url}/ws/client")
    client.send({"type": "submit_job", "job_type": "echo", "payload": {"n": 1}})
    assert (await client.until("job_accepted"))["created"] is True
    client.send({"type": "get_stats"})
    assert (await client.until("stats"))["pending"] == 1
    client.close()


async def test_submit_wait_worker_and_status_from_the_command_line(hub_url: str) -> None:
    worker = await asyncio.create_subprocess_exec(
        *EMPFAST, "worker", "builtin", "--url", hub_url, "--worker-id", "cli-w1", "--concurrency", "2",
        stderr=asyncio.subprocess.DEVNULL)
    try:
        code, out, err = await run("submit", "sleep", '{"seconds": 0.3, "steps": 3}', "--wait",
                                   url=hub_url)
        assert code == 0, err
        assert orjson.loads(out) == {"slept": 0.3}
        job_id = err.split()[1]
        code, out, err = await run("submit", "fail", '{"message": "no luck", "retry": false}', "--wait",
                                   url=hub_url)
        assert code == 1 and "no luck" in err
        failed_id = err.split()[1]
        code, out, _ = await run("retry", failed_id, "--attempts", "2", url=hub_url)
        assert code == 0 and f"job {failed_id} retried" in out
        code, _, err = await run("retry", job_id, url=hub_url)
        assert code == 1 and "completed" in err
        code, out, _ = await run("status", job_id, url=hub_url)
        assert code == 0 and "completed" in out and "cli-w1" in out
        code, out, _ = await run("status", "--json", url=hub_url)
        stats = orjson.loads(out)
        assert stats["by_type"]["sleep"]["completed"] == 1 and stats["by_type"]["fail"]["retried"] == 1
        code, out, _ = await run("status", url=hub_url)
        assert code == 0 and "sleep" in out and "fail" in out
        # current counts and running totals are told apart
        assert "jobs now" in out and "kept now" in out and "totals since the queue began" in out
    finally:
        assert await stop(worker) == 0  # SIGTERM: the worker drains and exits cleanly


async def test_status_shows_the_place_in_line_and_the_logs(hub_url: str) -> None:
    code, out, err = await run("submit", "ocr", "{}", url=hub_url)
    assert code == 0 and "pending, 0 ahead of it" in err, err
    job_id = out.strip()
    code, out, err = await run("submit", "ocr", "{}", url=hub_url)
    code, out, _ = await run("status", out.strip(), url=hub_url)
    assert "position     1" in out.splitlines(), out
    worker = await WSPeer.connect(f"{hub_url}/ws/worker/cli-logs")
    worker.send({"type": "register_worker", "job_types": ["ocr"]})
    assert (await worker.until("job_assigned"))["job_id"] == job_id
    worker.send({"type": "append_job_log", "job_id": job_id, "lines": ["page 1", "page 2"], "req": 1})
    await worker.until("job_log_ack")
    code, out, _ = await run("status", job_id, "--logs", url=hub_url)
    assert code == 0 and out.splitlines()[-3:] == ["logs         2 lines", "  page 1", "  page 2"], out
    code, out, _ = await run("status", job_id, "--logs", "1", url=hub_url)
    assert out.splitlines()[-2:] == ["logs         1 lines", "  page 2"], out
    code, out, _ = await run("status", job_id, url=hub_url)
    assert "  page 1" not in out and "position" not in out
    worker.close()


async def test_bad_input_on_the_command_line_says_what_to_do(hub_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manage, "CONNECT_TIMEOUT_S", 0.5)  # the unreachable hub below: fail sooner
    code, _, err = await run("submit", "echo", "{not json", url=hub_url)
    assert code == 2 and "not valid JSON" in err
    code, _, err = await run("status", "no-such-job", url=hub_url)
    assert code == 1 and "no job" in err
    code, _, err = await run("status", "--logs", url=hub_url)
    assert code == 2 and "--logs takes a JOB_ID" in err
    code, _, err = await run("submit", "echo", "--priority", "5000", url=hub_url)
    assert code == 2 and "priority" in err
    code, _, err = await run("status", url=f"ws://127.0.0.1:{free_port()}")
    assert code == 2 and "empfast serve" in err


async def test_cancel_workers_and_a_readable_job_status(hub_url: str) -> None:
    worker = await asyncio.create_subprocess_exec(
        *EMPFAST, "worker", "builtin", "--url", hub_url, "--worker-id", "cli-w2",
        stderr=asyncio.subprocess.DEVNULL)
    try:
        code, out, err = await run("submit", "fail", '{"message": "boom", "retry": false}', "--wait",
                                   url=hub_url)
        failed_id = err.split()[1]
        code, out, _ = await run("status", failed_id, url=hub_url)
        lines = {line.split("  ")[0]: line for line in out.splitlines()}
        assert code == 0 and lines["error 1"].endswith("boom") and "UTC" in lines["finished_at"], out
        assert lines["ran"].endswith("s (last start -> end)"), out
        assert lines["payload"].endswith('{"message":"boom","retry":false}'), out
        code, out, _ = await run("workers", url=hub_url)
        (row,) = out.splitlines()[1:]
        assert row.split()[:3] == ["cli-w2", "idle", "0/1"] and "s ago" in row
        # a registered worker takes `echo`: no word about a missing worker
        code, out, err = await run("submit", "echo", '{"x": 1}', "--wait", url=hub_url)
        assert code == 0 and "no registered worker" not in err, err
        code, out, err = await run("submit", "echo", "{}", "--delay-s", "60", url=hub_url)
        later = out.strip()
        code, out, _ = await run("cancel", later, url=hub_url)
        assert code == 0 and out.strip() == f"job {later} cancelled"
        code, out, _ = await run("cancel", later, url=hub_url)  # again: it is cancelled, as asked
        assert code == 0 and out.strip() == f"job {later} cancelled"
        code, _, err = await run("cancel", failed_id, url=hub_url)
        assert code == 1 and "is failed already: nothing changed" in err
        code, _, err = await run("cancel", "no-such-job", url=hub_url)
        assert code == 1 and "no job" in err
    finally:
        assert await stop(worker) == 0


async def test_a_closed_stdout_or_ctrl_c_is_one_line_not_a_traceback(hub_url: str) -> None:
    # `empfast status | head -c 1`: the reader is gone before anything is written

    def with_stdout_closed() -> tuple[int, bytes]:
        proc = subprocess.Popen([*EMPFAST, "status", "--url", hub_url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        with proc.stderr:
            err = proc.stderr.read()
        return proc.wait(timeout=30), err

    code, err = await asyncio.to_thread(with_stdout_closed)
    assert code == 0 and b"hub" not in err, err
    # Ctrl-C while waiting for a job no worker takes
    waiting = await asyncio.create_subprocess_exec(*EMPFAST, "submit", "nobody-runs-this", "{}", "--wait",
                                                   "--url", hub_url, stderr=asyncio.subprocess.PIPE)
    assert waiting.stderr is not None
    first = await asyncio.wait_for(waiting.stderr.readline(), 30)
    assert first.startswith(b"job ")
    await asyncio.sleep(0.3)
    waiting.send_signal(signal.SIGINT)
    rest = await asyncio.wait_for(waiting.stderr.read(), 30)
    assert await waiting.wait() == 130
    assert b"the job goes on: empfast status" in rest and b"Traceback" not in rest, rest
    assert b"no registered worker takes type 'nobody-runs-this'" in rest, rest


def test_at_info_the_log_has_the_hubs_lines_not_the_websocket_librarys() -> None:
    root, picows = logging.getLogger(), logging.getLogger("picows")
    kept = (root.handlers[:], root.level, picows.level)
    try:
        REAL_SETUP_LOGGING(LoggingSettings(log_level="info"))
        assert not picows.isEnabledFor(logging.INFO)  # a line per connection and disconnection
        assert logging.getLogger("empfast.hub").isEnabledFor(logging.INFO)
        REAL_SETUP_LOGGING(LoggingSettings(log_level="debug"))
        assert picows.isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = kept[0]
        root.setLevel(kept[1])
        picows.setLevel(kept[2])


async def test_a_worker_registration_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(Store.embedded(QueueSettings(name="logs")), HubConfig(port=0, http_port=0))
    await hub.start()
    try:
        with caplog.at_level(logging.INFO, logger="empfast.hub"):
            worker = await WSPeer.connect(f"ws://127.0.0.1:{hub.port}/ws/worker/log-w1")
            worker.send({"type": "register_worker", "job_types": ["a", "b"], "concurrency": 3})
            await worker.until("worker_registered")
            worker.close()
        assert "worker log-w1 registered: types a,b, concurrency 3" in caplog.text
    finally:
        await hub.stop()


async def test_an_http_url_is_refused_in_one_line_with_the_ws_form() -> None:
    code, _, err = await run("status", url="http://127.0.0.1:8765")
    assert code == 2 and err.count("\n") == 1 and "try --url ws://127.0.0.1:8765" in err


def test_a_worker_with_a_bad_handler_spec_says_what_to_fix() -> None:
    proc = run_in_process("worker", "no_such_module_xyz:HANDLERS")
    assert proc.returncode == 2 and "no_such_module_xyz" in proc.stderr and "--app-dir" in proc.stderr


def test_every_command_has_help() -> None:
    for command in ("demo", "serve", "worker", "submit", "status", "retry", "jobs", "cancel", "workers",
                    "bench"):
        help_run = run_in_process(command, "--help")
        help_run.check_returncode()
        out = help_run.stdout
        assert out.startswith("usage: empfast " + command)


def test_demo_runs_jobs_through_a_hub_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPFAST_REDIS_URL", "")
    demo = run_in_process("demo", "--jobs", "120", "--workers", "2", "--seed", "7")
    demo.check_returncode()
    out = demo.stdout
    assert "120 jobs in" in out and "jobs/s through the hub" in out
    found = re.search(r"completed (\d+), failed for good (\d+)", out)
    assert found is not None, out
    completed, failed = int(found[1]), int(found[2])
    assert completed + failed == 120 and failed < 12
    assert "p50" in out and "p99" in out


def test_a_hub_with_a_bad_setting_refuses_to_start_and_says_which() -> None:
    proc = run_in_process("serve", "--lease-s", "-1", "--port", str(free_port()))
    assert proc.returncode == 2 and "lease_ms must be positive" in proc.stderr


def test_bench_measures_a_hub_of_its_own() -> None:
    bench = run_in_process("bench", "--embedded", "--jobs", "100", "--rounds", "10", "--rate", "40",
                           "--duration-s", "1", "--concurrency", "8")
    bench.check_returncode()
    out = bench.stdout
    assert re.search(r"one job at a time \(10\): submit -> completed p50 [\d.]+ ms, p99 [\d.]+ ms", out), out
    assert re.search(r"backlog of 100: submit_many [\d,]+ jobs/s; drained at [\d,]+ jobs/s", out), out
    assert re.search(r"40 jobs/s offered for 1 s: \d+ jobs/s achieved", out), out


@pytest.mark.real_redis
async def test_two_hub_processes_on_one_redis_act_as_one(redis_server: RedisServer) -> None:
    redis_server.flush()
    ports = [free_port(), free_port()]
    hubs = [await start_hub(port, "--redis-url", redis_server.url, "--sweep-interval-s", "0.2")
            for port in ports]
    worker = await asyncio.create_subprocess_exec(
        *EMPFAST, "worker", "--url", f"ws://127.0.0.1:{ports[1]}", "--worker-id", "far-away",
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async with Client(f"ws://127.0.0.1:{ports[0]}") as client:
            handle = await client.submit("sleep", {"seconds": 0.2, "steps": 2})
            events = [event async for event in handle.events()]
            assert [e["type"] for e in events][-1] == "job_completed"
            assert any(e.get("progress") == 50.0 for e in events)  # progress crossed hubs too
            assert events[-1]["worker_id"] == "far-away" and events[-1]["result"] == {"slept": 0.2}
    finally:
        assert await stop(worker) == 0
        for hub in hubs:
            assert await stop(hub) == 0


def test_a_hub_that_cannot_start_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_in_process("serve", "--port", str(port))
    assert proc.returncode == 2 and "choose another --port" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_in_process("serve", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 2 and "cannot reach Redis" in proc.stderr and "Traceback" not in proc.stderr
    monkeypatch.setenv("EMPFAST_PORT", "abc")
    proc = run_in_process("serve")
    assert proc.returncode == 2 and "invalid int value: 'abc'" in proc.stderr


async def test_bulk_retry_purge_and_pause_from_the_command_line(hub_url: str) -> None:
    async with Client(hub_url) as client:
        ids = [(await client.submit("echo", {"n": n}, delay_s=60)).job_id for n in range(3)]
        other = (await client.submit("sleep", {}, delay_s=60)).job_id
        for job_id in [*ids, other]:
            await client.cancel(job_id)
    code, out, err = await run("retry", "--all-cancelled", "--type", "echo", "--dry-run", url=hub_url)
    assert code == 0
    assert out.strip() == "dry run: 3 cancelled jobs of type 'echo' would be retried; nothing changed"
    code, out, err = await run("retry", "--all-cancelled", "--type", "echo", url=hub_url)
    assert code == 0 and out.strip() == "3 cancelled jobs of type 'echo' retried", (out, err)
    assert "retrying [" in err  # the progress bar
    code, out, _ = await run("pause", "echo", url=hub_url)
    assert code == 0 and out.strip() == "job type 'echo' paused: 3 jobs waiting; paused types: echo"
    code, out, _ = await run("status", url=hub_url)
    assert "paused now   echo" in out and "jobs now     pending 3" in out, out
    code, out, _ = await run("resume", "echo", url=hub_url)
    assert code == 0 and out.strip() == "job type 'echo' resumed: 3 jobs waiting; paused types: none"
    code, out, _ = await run("purge", "--status", "cancelled", "--older-than", "1d", url=hub_url)
    assert code == 0 and out.strip() == "0 cancelled jobs older than 86400 s removed"
    code, out, _ = await run("purge", "--status", "cancelled", url=hub_url)
    assert code == 0 and out.strip() == "1 cancelled jobs removed"
    code, out, _ = await run("status", other, url=hub_url)
    assert code == 1
    # bad input says what to do and changes nothing
    code, _, err = await run("retry", url=hub_url)
    assert code == 2 and "--all-failed or --all-cancelled" in err
    code, _, err = await run("purge", "--status", "completed", "--older-than", "soon", url=hub_url)
    assert code == 2 and "use 90, 30s, 15m, 12h or 7d" in err
    code, _, err = await run("purge", url=hub_url)
    assert code == 2 and "--status" in err


async def test_a_job_types_limits_from_the_command_line_and_the_sdk(hub_url: str) -> None:
    async with Client(hub_url) as client:
        for n in range(3):
            await client.submit("render", {"n": n}, delay_s=60)
    code, out, err = await run("limit", "render", "--concurrency", "2", "--rate", "10", "--per-s", "60",
                               url=hub_url)
    assert code == 0, err
    assert out.strip() == "job type 'render': at most 2 running, at most 10 starts per 60 s; 0 jobs waiting"
    code, out, _ = await run("limit", url=hub_url)
    assert code == 0 and "render" in out and "at most 2 running" in out
    code, out, _ = await run("status", url=hub_url)  # the queue's status names its limited types
    assert code == 0 and ("limited      render: at most 2 running, at most 10 starts per 60 s   "
                          "(`empfast limit render --clear`)") in out.splitlines()
    code, _, err = await run("limit", "render", "--concurrency", "0", url=hub_url)
    assert code == 1 and "concurrency" in err
    code, _, err = await run("limit", "render", "--clear", "--rate", "3", url=hub_url)
    assert code == 2 and "not both" in err
    code, out, _ = await run("limit", "render", "--clear", url=hub_url)
    assert code == 0 and out.strip() == "job type 'render': no limits; 0 jobs waiting"
    async with Monitor(hub_url) as monitor:
        reply = await monitor.set_type_limits("render", rate=5, per_s=2)
        assert (reply["concurrency"], reply["rate"], reply["per_s"]) == (None, 5, 2.0)
        assert (await monitor.stats())["limits"] == {"render": {"concurrency": None, "rate": 5, "per_s": 2.0,
                                                                "group_concurrency": None}}
        assert (await monitor.set_type_limits("render"))["limits"] == {}
