"""empfast next to BullMQ, side by side in one run on one private redis-server: the same three
workloads for each peer, one table with the ratios. See bench/README.md, "Comparison with BullMQ".

    python -m bench.compare [--jobs 20000] [--latency-rounds 1000] [--warmup 100] [--concurrency 50]
                            [--batch 500] [--only empfast|bullmq|empfast-sdk|empfast-protocol]
                            [--repeat 1] [--json OUT]

Peers, each with its own load process (so the load does not share an event loop with the hub):
empfast through its Python SDKs (sdk_load.py), empfast through a minimal client of the documented
protocol (protocol_load.py), and BullMQ from npm (bullmq_load.mjs). Both empfast peers talk to an
`empfast serve` of their own; Redis is flushed before each peer."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.compare import peers, report
from bench.compare.meter import Meter, Usage
from bench.compare.peers import PEERS, LoadProcess, Peer, log, private_redis, served_hub
from bench.compare.steps import WORKLOADS
from empfast import benchmark as load
from empfast.bars import percentile

# the workload: a no-op job of a 100-byte JSON payload (padded to exactly 100 bytes)
PAYLOAD = {"to": "someone@example.com", "template": "welcome", "n": 42, "pad": "x" * 35}
PAYLOAD_JSON = orjson.dumps(PAYLOAD).decode()
assert len(PAYLOAD_JSON) == 100, len(PAYLOAD_JSON)
ONLY = {"empfast": ("empfast-sdk", "empfast-protocol"), "bullmq": ("bullmq",),
        "empfast-sdk": ("empfast-sdk",), "empfast-protocol": ("empfast-protocol",)}


@dataclass(frozen=True)
class Options:
    jobs: int
    latency_rounds: int
    warmup: int
    concurrency: int
    batch: int
    only: str | None
    json_out: Path | None
    timeout_s: float
    cache_dir: Path
    repeat: int = 1

    @property
    def selected_peers(self) -> list[Peer]:
        wanted = ONLY[self.only] if self.only else tuple(p.name for p in PEERS)
        return [p for p in PEERS if p.name in wanted]

    def load_args(self) -> list[str]:
        """The flags every load process takes (steps.parse_load_options, bullmq_load.mjs)."""
        return ["--job-type", load.JOB_TYPE, "--payload", PAYLOAD_JSON, "--jobs", str(self.jobs),
                "--concurrency", str(self.concurrency), "--batch", str(self.batch),
                "--latency-rounds", str(self.latency_rounds), "--warmup", str(self.warmup)]

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "latency_rounds": self.latency_rounds, "warmup": self.warmup,
                "concurrency": self.concurrency, "batch": self.batch, "only": self.only,
                "repeat": self.repeat}


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs in the drain and in the mixed run")
    parser.add_argument("--latency-rounds", type=int, default=1_000, help="sequential jobs timed")
    parser.add_argument("--warmup", type=int, default=100, help="sequential jobs before those, not timed")
    parser.add_argument("--concurrency", type=int, default=50, help="the one worker's concurrency")
    parser.add_argument("--batch", type=int, default=500,
                        help="jobs per enqueue batch (addBulk, submit_jobs)")
    parser.add_argument("--only", choices=sorted(ONLY), help="run these peers only")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every peer, taking turns; the table shows each figure's median")
    parser.add_argument("--json", type=Path, dest="json_out", help="write every figure to this file")
    parser.add_argument("--timeout-s", type=float, default=600, help="give up on a workload after this")
    parser.add_argument("--cache-dir", type=Path, default=peers.default_cache_dir(),
                        help="where npm installs BullMQ (default $EMPFAST_BENCH_CACHE or "
                             "~/.cache/empfast-bench)")
    args = parser.parse_args(argv)
    if min(args.jobs, args.latency_rounds, args.concurrency, args.batch, args.repeat) < 1 or args.warmup < 0:
        parser.error("sizes must be positive")
    return Options(args.jobs, args.latency_rounds, args.warmup, args.concurrency, args.batch, args.only,
                   args.json_out, args.timeout_s, args.cache_dir, args.repeat)


def summarise(workload: str, result: dict[str, Any], usage: Usage) -> dict[str, Any]:
    """A workload's figures from what its load process reported and what the meter saw."""
    latencies = sorted(result.get("latencies_ms", []))
    # every job run between `go` and `done` costs Redis work, warm-up rounds included
    measured = result["jobs"] if "jobs" in result else result["rounds"] + result["warmup"]
    figures: dict[str, float | None] = {}
    if workload == "drain":
        figures["enqueue_jobs_per_s"] = measured / result["enqueue_s"]
        figures["run_jobs_per_s"] = measured / result["run_s"]
    elif workload == "mixed":
        figures["jobs_per_s"] = measured / result["elapsed_s"]
    else:
        figures.update(p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                       max_ms=latencies[-1] if latencies else None)
    figures["redis_cpu_us_per_job"] = usage.redis_cpu_s * 1e6 / measured
    figures["redis_script_wall_us_per_job"] = usage.script_s * 1e6 / measured
    figures["redis_commands_per_job"] = usage.total_commands / measured
    figures["redis_scripts_per_job"] = usage.script_calls / measured
    figures["redis_cpu_pct"] = 100 * usage.redis_cpu_s / usage.wall_s
    all_cpu_s: float | None = usage.redis_cpu_s
    for process, cpu_s in usage.process_cpu_s.items():
        figures[f"{process}_cpu_us_per_job"] = None if cpu_s is None else cpu_s * 1e6 / measured
        figures[f"{process}_cpu_pct"] = None if cpu_s is None else 100 * cpu_s / usage.wall_s
        all_cpu_s = None if cpu_s is None or all_cpu_s is None else all_cpu_s + cpu_s
    # the whole system's cost: BullMQ has no hub, empfast pays for one
    figures["all_cpu_us_per_job"] = None if all_cpu_s is None else all_cpu_s * 1e6 / measured
    return {"figures": figures, "jobs_measured": measured, "ran": result["ran"],
            "complete": result["ran"] == measured, "wall_s": usage.wall_s,
            "redis_commands": usage.commands, "result": result}


def _progress_line(peer: Peer, workload: str, summary: dict[str, Any]) -> str:
    figures = summary["figures"]
    if workload == "drain":
        what = (f"enqueue {figures['enqueue_jobs_per_s']:,.0f} jobs/s, "
                f"run {figures['run_jobs_per_s']:,.0f} jobs/s")
    elif workload == "mixed":
        what = f"{figures['jobs_per_s']:,.0f} jobs/s"
    else:
        what = f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
    return (f"{peer.name} {workload}: {what}; Redis {figures['redis_cpu_us_per_job']:.1f} us/job, "
            f"{figures['redis_commands_per_job']:.1f} commands/job; ran {summary['ran']}/"
            f"{summary['jobs_measured']}")


def run_peer(peer: Peer, server: peers.RedisServer, options: Options, modules: Path | None) -> dict[str, Any]:
    """One peer's three workloads, on a flushed Redis, with a hub of its own for empfast."""
    server.flush()
    assert server.process is not None
    with contextlib.ExitStack() as stack:
        hub_url = None
        pids: dict[str, int] = {}
        if peer.needs_hub:
            hub = stack.enter_context(served_hub(server.url))
            hub_url, pids["hub"] = hub.url, hub.pid
            # the pid is there to attach a profiler (py-spy record -p PID) during a workload
            log(f"{peer.name}: empfast serve at {hub.url}, pid {hub.pid}")
        load_process = LoadProcess(peer.command(hub_url=hub_url, redis_port=server.port, modules=modules,
                                                load_args=options.load_args()))
        stack.callback(load_process.kill)
        pids["load"] = load_process.pid
        log(f"{peer.name}: load process pid {load_process.pid}")
        meter = Meter(server.port, pids)
        stack.callback(meter.close)
        hello = load_process.expect("hello")
        workloads = {}
        for workload in WORKLOADS:
            load_process.expect("ready", workload, options.timeout_s)
            meter.start()
            load_process.go()
            done = load_process.expect("done", workload, options.timeout_s)
            workloads[workload] = summarise(workload, done["result"], meter.stop())
            log(_progress_line(peer, workload, workloads[workload]))
        load_process.finish()
    return {"version": hello.get("version"), "workloads": workloads}


def median_workloads(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One peer's rounds as one: the median of each figure and command count, the fewest jobs run."""
    merged = {}
    for workload, first in runs[0]["workloads"].items():
        summaries = [r["workloads"][workload] for r in runs]
        figures = {}
        for name in first["figures"]:
            values = [s["figures"][name] for s in summaries if s["figures"][name] is not None]
            figures[name] = statistics.median(values) if values else None
        commands = {name: statistics.median(s["redis_commands"].get(name, 0) for s in summaries)
                    for name in first["redis_commands"]}
        merged[workload] = {**first, "figures": figures, "redis_commands": commands,
                            "ran": min(s["ran"] for s in summaries),
                            "complete": all(s["complete"] for s in summaries),
                            "result": summaries[-1]["result"]}
    return merged


def run(options: Options) -> dict[str, Any]:
    wanted = options.selected_peers
    modules = None
    if any(not p.needs_hub for p in wanted):
        missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"{' and '.join(missing)} not on PATH: BullMQ's side needs Node.js and npm "
                               "(apt-get install nodejs npm), or run --only empfast")
        modules = peers.install_bullmq(options.cache_dir)
    with private_redis() as server:
        with redis.Redis(port=server.port) as client:
            redis_version = client.info("server")["redis_version"]
        log(f"redis-server {redis_version} on port {server.port}; peers: {', '.join(p.name for p in wanted)}")
        rounds: dict[str, list[dict[str, Any]]] = {p.name: [] for p in wanted}
        # peers take turns, round after round, so that a burst of other work on the machine
        # falls on one round of each rather than on all of one peer's
        for number in range(1, options.repeat + 1):
            for peer in wanted:
                log(f"{peer.name}: round {number} of {options.repeat}")
                rounds[peer.name].append(run_peer(peer, server, options, modules))
    results = {name: {"version": runs[0]["version"], "workloads": median_workloads(runs),
                      "rounds": [r["workloads"] for r in runs]} for name, runs in rounds.items()}
    return {"options": options.as_dict(), "payload_bytes": len(PAYLOAD_JSON), "redis_version": redis_version,
            "cpus": os.cpu_count(), "machine": platform.platform(), "peers": results}


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    # SIGTERM unwinds like an error, so the redis-server, hubs and load processes are stopped too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        outcome = run(options)
    except RuntimeError as exc:
        log(f"failed: {exc}")
        return 2
    report.print_report(outcome, sys.stdout)
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(outcome, indent=1) + "\n")
        log(f"figures written to {options.json_out}")
    incomplete = [f"{peer} {workload}" for peer, result in outcome["peers"].items()
                  for workload, summary in result["workloads"].items() if not summary["complete"]]
    if incomplete:
        log(f"not every job ran: {', '.join(incomplete)}")
        return 1
    return 0
