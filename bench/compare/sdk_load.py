"""empfast through its Python SDKs, as users run it: one `Client` and one `Worker` (concurrency from
the orchestrator, a no-op handler) in this process, on uvloop, against `empfast serve` in another
process. The workers, the countdown handler and the drain are empfast.benchmark's, the same code
`empfast bench` runs; the submits are the SDK's `submit_many` and `submit`.

Run by bench/compare (python -m bench.compare), which drives it through steps.py's handshake."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import uvloop

from bench.compare import steps
from empfast import benchmark as load
from empfast.client import Client


def job_specs(options: steps.LoadOptions, count: int) -> list[dict[str, Any]]:
    return [{"job_type": options.job_type, "payload": options.payload}] * count


async def drain(client: Client, options: steps.LoadOptions) -> None:
    """Enqueue every job, then start the worker and time it until the last completion is acked."""
    countdown = load.Countdown(options.jobs)
    workers = load.make_workers(options.url, 1, options.concurrency, countdown, "compare-sdk-drain")
    await steps.ready("drain")
    began = time.perf_counter()
    await client.submit_many(job_specs(options, options.jobs), batch_size=options.batch)
    enqueue_s = time.perf_counter() - began
    run_s = await load.drain(workers, countdown)
    steps.done("drain", {"jobs": options.jobs, "ran": options.jobs - countdown.left,
                         "enqueue_s": enqueue_s, "run_s": run_s})
    await load.stop_workers(workers)


async def mixed(client: Client, options: steps.LoadOptions) -> None:
    """The worker runs while the jobs are enqueued, batch after batch; timed from the first submit
    to the last acknowledged completion."""
    countdown = load.Countdown(options.jobs)
    workers = load.make_workers(options.url, 1, options.concurrency, countdown, "compare-sdk-mixed")
    await asyncio.gather(*(w.start() for w in workers))
    await steps.ready("mixed")
    began = time.perf_counter()
    await client.submit_many(job_specs(options, options.jobs), batch_size=options.batch)
    await countdown.done.wait()
    await asyncio.gather(*(w.wait_idle() for w in workers))
    elapsed_s = time.perf_counter() - began
    steps.done("mixed", {"jobs": options.jobs, "ran": options.jobs - countdown.left, "elapsed_s": elapsed_s})
    await load.stop_workers(workers)


async def latency(client: Client, options: steps.LoadOptions) -> None:
    """One job at a time, submit -> result as the client sees it; the warm-up rounds are not kept."""
    total = options.warmup + options.latency_rounds
    countdown = load.Countdown(total)
    workers = load.make_workers(options.url, 1, options.concurrency, countdown, "compare-sdk-latency")
    await asyncio.gather(*(w.start() for w in workers))
    await steps.ready("latency")
    latencies_ms = []
    for _ in range(total):
        began = time.perf_counter()
        handle = await client.submit(options.job_type, options.payload)
        if await handle.result(timeout=30) != load.RESULT:
            raise AssertionError("a compare job returned the wrong result")
        latencies_ms.append((time.perf_counter() - began) * 1000)
    steps.done("latency", {"rounds": options.latency_rounds, "warmup": options.warmup,
                           "ran": total - countdown.left, "latencies_ms": latencies_ms[options.warmup:]})
    await load.stop_workers(workers)


async def main(options: steps.LoadOptions) -> None:
    # make_workers registers empfast.benchmark's job type only
    if options.job_type != load.JOB_TYPE:
        raise SystemExit(f"the SDK load runs jobs of type {load.JOB_TYPE!r} only")
    async with Client(options.url) as client:
        steps.emit({"event": "hello", "peer": "empfast-sdk"})
        await drain(client, options)
        await mixed(client, options)
        await latency(client, options)


if __name__ == "__main__":
    uvloop.run(main(steps.parse_load_options(__doc__ or "")))
