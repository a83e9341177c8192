"""A smoke run of the comparison with BullMQ (`python -m bench.compare`, bench/README.md) at tiny
sizes: every peer runs every workload to the end and every job runs. Timings are never asserted;
this keeps the comparison working, it does not judge what it measures.

The BullMQ side needs Node.js and npm (npm installs BullMQ into ~/.cache/empfast-bench once, then
reuses it). Without them the test is skipped, unless EMPFAST_REQUIRE_COMPARE is set, as in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS = 300
LATENCY_ROUNDS = 20
WARMUP = 5


@pytest.fixture
def node_and_npm() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not on PATH: BullMQ's side of bench/compare needs Node.js and npm"
    if os.environ.get("EMPFAST_REQUIRE_COMPARE"):
        pytest.fail(f"{reason}, and EMPFAST_REQUIRE_COMPARE is set: apt-get install nodejs npm")
    pytest.skip(f"{reason} (apt-get install nodejs npm; EMPFAST_REQUIRE_COMPARE=1 makes this a failure)")


# The comparison starts a redis-server of its own; the session's `redis_server` fixture is asked for
# its verdict on the binary (skip, or fail under EMPFAST_REQUIRE_REAL_REDIS), as every real-Redis test.
@pytest.mark.real_redis
def test_every_peer_runs_every_job_of_every_workload(redis_server: RedisServer, node_and_npm: None,
                                                    tmp_path: Path) -> None:
    figures = tmp_path / "compare.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--jobs", str(JOBS), "--latency-rounds", str(LATENCY_ROUNDS),
         "--warmup", str(WARMUP), "--json", str(figures), "--timeout-s", "60"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]

    outcome = json.loads(figures.read_text())
    assert set(outcome["peers"]) == {"empfast-sdk", "empfast-protocol", "bullmq"}
    for peer, result in outcome["peers"].items():
        workloads = result["workloads"]
        assert set(workloads) == {"drain", "mixed", "latency"}, peer
        for workload in ("drain", "mixed"):
            assert workloads[workload]["ran"] == JOBS, (peer, workload, workloads[workload]["result"])
        latency = workloads["latency"]
        assert latency["ran"] == WARMUP + LATENCY_ROUNDS, (peer, latency["result"])
        assert len(latency["result"]["latencies_ms"]) == LATENCY_ROUNDS, peer
        # Redis did the work: the meter saw the commands of every peer
        assert workloads["drain"]["figures"]["redis_commands_per_job"] > 0, peer
    assert outcome["peers"]["bullmq"]["version"] == "6.7.0"
    # one table, with the ratio columns
    assert "SDK/BullMQ" in run.stdout and "protocol/BullMQ" in run.stdout
