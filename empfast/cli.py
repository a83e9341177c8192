"""The `empfast` command. It parses arguments, sets up logging and calls one run function; it holds
no Redis or socket logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from empfast.store import NewJob, Store


def _bar(done: int, total: int, started: float, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    rate = done / max(time.perf_counter() - started, 1e-9)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} jobs  {rate:,.0f} jobs/s"


async def run_store_demo(jobs: int, workers: int) -> None:
    """Runs jobs through the Lua state machine on the embedded store: add in batches, then workers
    claim and complete (complete-and-claim-next: one call per job)."""
    store = await Store.embedded()
    print("empfast demo: embedded store (fakeredis with Lua, in this process; not durable)")
    started = time.perf_counter()
    for start in range(0, jobs, 500):
        await store.add_jobs(NewJob("echo", b'{"n": %d}' % i) for i in range(start, min(jobs, start + 500)))
    added_s = time.perf_counter() - started
    done = 0

    async def work(worker_id: str) -> None:
        nonlocal done
        await store.register_worker(worker_id, ["echo"], 1)
        claimed = await store.claim(worker_id)
        while claimed:
            job = claimed[0]
            claimed = await store.complete(job.job_id, worker_id, job.attempt, job.payload, claim_next=1)
            done += 1
            if done % 100 == 0 or done == jobs:
                print(_bar(done, jobs, run_started), end="", file=sys.stderr, flush=True)

    run_started = time.perf_counter()
    await asyncio.gather(*(work(f"demo-worker-{i}") for i in range(workers)))
    run_s = time.perf_counter() - run_started
    print(file=sys.stderr)
    stats = await store.stats()
    print(f"added {jobs} jobs in {added_s:.2f} s ({jobs / added_s:,.0f} jobs/s, batches of 500)")
    print(f"ran {done} jobs with {workers} workers in {run_s:.2f} s ({done / run_s:,.0f} jobs/s)")
    print(f"stats: pending={stats.pending} active={stats.active} completed={stats.completed} "
          f"(the completed set keeps the newest {store.settings.keep_completed_max})")
    await store.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empfast", description="empfast: a high-throughput job hub")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run jobs through empfast on the embedded store (no Redis needed)")
    demo.add_argument("--jobs", type=int, default=2000, help="how many jobs (default 2000)")
    demo.add_argument("--workers", type=int, default=4, help="how many workers (default 4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        asyncio.run(run_store_demo(args.jobs, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
