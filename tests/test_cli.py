"""The `empfast` command as a user runs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from support import WSPeer, free_port


async def test_serve_on_the_embedded_store_answers_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "empfast", "serve", "--port", str(port), stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert "embedded store" in line and f":{port}/ws/" in line
        client = await WSPeer.connect(f"ws://127.0.0.1:{port}/ws/client")
        client.send({"type": "submit_job", "job_type": "echo", "payload": {"n": 1}})
        assert (await client.until("job_accepted"))["created"] is True
        client.send({"type": "get_stats"})
        assert (await client.until("stats"))["pending"] == 1
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_demo_runs_jobs_without_redis() -> None:
    out = subprocess.run([sys.executable, "-m", "empfast", "demo", "--jobs", "200", "--workers", "2"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "ran 200 jobs" in out and "completed=200" in out
