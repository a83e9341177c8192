"""The comparison's one table: a row per figure, a column per peer, and the ratio of each empfast
peer to BullMQ; then the CPU each process used, the Redis commands behind the drain's figure, and
each peer's settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TextIO

from bench.compare.peers import SETTINGS


class Row(NamedTuple):
    label: str
    workload: str
    figure: str
    unit: str
    higher_is_better: bool


ROWS = (
    Row("drain: enqueue", "drain", "enqueue_jobs_per_s", "jobs/s", True),
    Row("drain: run the backlog", "drain", "run_jobs_per_s", "jobs/s", True),
    Row("mixed: enqueue while running", "mixed", "jobs_per_s", "jobs/s", True),
    Row("latency p50", "latency", "p50_ms", "ms", False),
    Row("latency p99", "latency", "p99_ms", "ms", False),
    Row("Redis CPU, drain", "drain", "redis_cpu_us_per_job", "us/job", False),
    Row("Redis commands, drain", "drain", "redis_commands_per_job", "per job", False),
    Row("  of them script calls", "drain", "redis_scripts_per_job", "per job", False),
    Row("Redis CPU, mixed", "mixed", "redis_cpu_us_per_job", "us/job", False),
    Row("Redis commands, mixed", "mixed", "redis_commands_per_job", "per job", False),
    Row("hub CPU, drain", "drain", "hub_cpu_us_per_job", "us/job", False),
    Row("load process CPU, drain", "drain", "load_cpu_us_per_job", "us/job", False),
    Row("all processes' CPU, drain", "drain", "all_cpu_us_per_job", "us/job", False),
    Row("all processes' CPU, mixed", "mixed", "all_cpu_us_per_job", "us/job", False),
)
LABELS = {"empfast-sdk": "empfast SDK", "empfast-protocol": "empfast protocol", "bullmq": "BullMQ"}
RATIO_LABELS = {"empfast-sdk": "SDK/BullMQ", "empfast-protocol": "protocol/BullMQ"}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _figure(peers: Mapping[str, Any], peer: str, row: Row) -> float | None:
    value = peers.get(peer, {}).get("workloads", {}).get(row.workload, {}).get("figures", {}).get(row.figure)
    return None if value is None else float(value)


def print_report(run: Mapping[str, Any], out: TextIO) -> None:
    peers = run["peers"]
    names = [name for name in LABELS if name in peers]
    ratios = [name for name in RATIO_LABELS if name in peers and "bullmq" in peers]
    options = run["options"]
    print(f"\nempfast vs BullMQ: {options['jobs']:,} no-op jobs of a {run['payload_bytes']}-byte JSON "
          f"payload, one worker at concurrency {options['concurrency']}, batches of {options['batch']}; "
          f"latency over {options['latency_rounds']:,} jobs after {options['warmup']} warm-up; "
          f"Redis {run['redis_version']}, {run['cpus']} CPUs", file=out)
    if options["repeat"] > 1:
        print(f"each figure is the median of {options['repeat']} rounds, the peers taking turns", file=out)
    header = [f"{'':<31}", f"{'unit':<8}", *(f"{LABELS[n]:>17}" for n in names),
              *(f"{RATIO_LABELS[n]:>16}" for n in ratios), "  better"]
    print("".join(header), file=out)
    for row in ROWS:
        cells = [f"{row.label:<31}", f"{row.unit:<8}"]
        cells += [f"{_number(_figure(peers, n, row)):>17}" for n in names]
        bullmq = _figure(peers, "bullmq", row)
        for name in ratios:
            value = _figure(peers, name, row)
            ratio = f"{value / bullmq:.2f}x" if value is not None and bullmq else "-"
            cells.append(f"{ratio:>16}")
        cells.append("  higher" if row.higher_is_better else "  lower")
        print("".join(cells), file=out)
    _print_cpu(peers, names, out)
    _print_commands(peers, names, out)
    _print_settings(run, names, out)


def _print_cpu(peers: Mapping[str, Any], names: list[str], out: TextIO) -> None:
    print("\nCPU, % of one core while each workload ran (Redis / hub / load process):", file=out)
    for name in names:
        parts = []
        for workload, summary in peers[name]["workloads"].items():
            figures = summary["figures"]
            shares = [_number(figures.get(f"{process}_cpu_pct")) for process in ("redis", "hub", "load")]
            parts.append(f"{workload} {' / '.join(shares)}")
        print(f"  {LABELS[name]:<17} " + ";  ".join(parts), file=out)


def _print_commands(peers: Mapping[str, Any], names: list[str], out: TextIO) -> None:
    print("\nRedis commands per job in the drain (INFO commandstats; scripts' redis.calls included):",
          file=out)
    for name in names:
        drain = peers[name]["workloads"].get("drain")
        if drain is None:
            continue
        jobs = drain["jobs_measured"]
        top = sorted(drain["redis_commands"].items(), key=lambda item: -item[1])[:10]
        per_job = ", ".join(f"{command} {calls / jobs:.2f}" for command, calls in top)
        print(f"  {LABELS[name]:<17} {per_job}", file=out)


def _print_settings(run: Mapping[str, Any], names: list[str], out: TextIO) -> None:
    options = run["options"]
    print(f"\nSettings (C = {options['concurrency']}, B = {options['batch']}):", file=out)
    for name in names:
        version = run["peers"][name].get("version")
        print(f"  {LABELS[name]}{f' {version}' if version else ''}:", file=out)
        for line in SETTINGS[name]:
            print(f"    - {line}", file=out)
