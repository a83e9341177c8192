"""The load processes' side of the comparison's handshake, shared by the two empfast load processes
(bullmq_load.mjs speaks the same lines in JavaScript).

A load process runs the workloads in WORKLOADS order. Before each one it prints
`{"event":"ready","workload":...}` on stdout and waits for a `go` line on stdin: the orchestrator
resets Redis's statistics and samples every process's CPU in between, so the figures cover the
workload and not the set-up. After it, it prints `{"event":"done","workload":...,"result":{...}}`.
Nothing else may go to stdout; progress and errors go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import orjson

WORKLOADS = ("drain", "mixed", "latency")


@dataclass(frozen=True)
class LoadOptions:
    """What every load process is told, by the orchestrator, in the same flags."""

    url: str
    job_type: str
    payload: Any
    jobs: int
    concurrency: int
    batch: int
    latency_rounds: int
    warmup: int


def parse_load_options(description: str) -> LoadOptions:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True, help="the hub, ws://HOST:PORT")
    parser.add_argument("--job-type", required=True)
    parser.add_argument("--payload", required=True, type=orjson.loads, help="every job's payload, JSON")
    for name in ("jobs", "concurrency", "batch", "latency-rounds", "warmup"):
        parser.add_argument(f"--{name}", required=True, type=int)
    args = parser.parse_args()
    return LoadOptions(args.url, args.job_type, args.payload, args.jobs, args.concurrency, args.batch,
                       args.latency_rounds, args.warmup)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.flush()


async def ready(workload: str) -> None:
    """Say the workload is set up, and wait for the orchestrator's `go`."""
    emit({"event": "ready", "workload": workload})
    # a thread reads stdin, so the event loop (and the hub connections on it) keeps running
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise RuntimeError(f"expected 'go' before {workload}, got {line!r}")


def done(workload: str, result: dict[str, Any]) -> None:
    emit({"event": "done", "workload": workload, "result": result})
