"""CI smoke of issue 9's and 10's benchmarks: each new module of bench/ runs at tiny sizes (set through its
EMPFAST_BENCH_* variables) in a pytest of its own, and its JSON report must show sane counts: every
subscriber and monitor got every event, every connection was welcomed, every job completed, INFO
commandstats was read. Never timings: this machine's figures belong in bench/README.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.real_redis

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["test_bench_fanout.py", "test_bench_scale.py", "test_bench_history.py", "test_bench_redis_cost.py",
           "test_bench_dashboard.py"]
TINY = {
    "EMPFAST_BENCH_FANOUT_SIZES": "1,10", "EMPFAST_BENCH_FANOUT_ROUNDS": "10",
    "EMPFAST_BENCH_MONITOR_FRAMES": "200", "EMPFAST_BENCH_IDLE_CONNECTIONS": "200",
    "EMPFAST_BENCH_HISTORY_JOBS": "2000", "EMPFAST_BENCH_HISTORY_BACKLOG": "300",
    "EMPFAST_BENCH_COST_JOBS": "200",
    "EMPFAST_BENCH_DASHBOARD_BACKLOG": "300", "EMPFAST_BENCH_DASHBOARD_ROUNDS": "2",
}


def test_the_new_benchmarks_run_at_tiny_sizes(redis_server: object, tmp_path: Path) -> None:
    # redis_server: skipped like the rest of real_redis when there is no redis-server binary (the bench
    # starts a redis-server of its own, on a free port)
    report = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *(f"bench/{m}" for m in MODULES), "--benchmark-only", "-q",
         "-p", "no:cacheprovider", f"--benchmark-json={report}"],
        cwd=ROOT, env={**os.environ, **TINY}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results: dict[str, dict[str, Any]] = {b["name"]: b["extra_info"]
                                          for b in orjson.loads(report.read_bytes())["benchmarks"]}

    for size in (1, 10):
        fanout = results[f"test_progress_reaches_every_subscriber[{size}]"]
        assert fanout["subscribers"] == size and fanout["rounds"] == 10
        assert fanout["every_subscriber_received"]
        monitors = results[f"test_frames_to_monitors[{size}]"]
        assert monitors["frames_per_burst"] == monitors["events_per_burst"] * size
        assert monitors["monitor_frames_per_s"] > 0

    scale = results["test_idle_connections_hub_rss"]
    assert scale["idle_connections"] == 200 and scale["every_connection_welcomed"]
    assert scale["hub_rss_connected_mb"] > 0

    history = results["test_drain_with_history"]
    assert history["finished_jobs_before"] == 2000 and history["completed_after"] == 2000 + 5 * 300
    assert history["empty_completed_after"] == 5 * 300 and len(history["paired_slower_pct"]) == 5

    dashboard = results["test_drain_with_a_dashboard_open"]
    assert dashboard["completed"] == 2 * 2 * 300 and len(dashboard["paired_slower_pct"]) == 2
    assert len(dashboard["sse_events_read"]) == 2  # the dashboard's load ran in each round

    for scenario in ("one_at_a_time", "backlog"):
        cost = results[f"test_redis_cost_per_job[{scenario}]"]
        assert cost["jobs"] == 200 and cost["every_job_completed"]
        assert cost["script_calls_per_job"] > 0 and cost["calls_in_scripts_per_job"] > 0
        assert "evalsha" in cost["calls_by_command"]
