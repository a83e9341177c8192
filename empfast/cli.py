"""The `empfast` command. It parses arguments, sets up logging and calls one run function; it holds
no Redis or socket logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

from empfast.config import HubConfig, QueueSettings, RedisOptions
from empfast.hub import Hub
from empfast.store import NewJob, Store, redis_from_options

log = logging.getLogger("empfast.cli")


def _bar(done: int, total: int, started: float, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    rate = done / max(time.perf_counter() - started, 1e-9)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} jobs  {rate:,.0f} jobs/s"


async def run_store_demo(jobs: int, workers: int) -> None:
    """Runs jobs through the Lua state machine on the embedded store: add in batches, then workers
    claim and complete (complete-and-claim-next: one call per job)."""
    store = Store.embedded()
    await store.start()
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


async def run_hub(config: HubConfig, settings: QueueSettings, redis_url: str | None) -> None:
    """Serve until SIGINT or SIGTERM, then close connections and stop."""
    if redis_url:
        store = Store(redis_from_options(RedisOptions(url=redis_url)), settings)
        where = f"Redis at {redis_url}"
    else:
        store = Store.embedded(settings)
        where = "the embedded store (in this process; not durable, one process only)"
    hub = Hub(store, config)
    await hub.start()
    log.info("empfast hub %s on ws://%s:%d/ws/{client,worker,monitor}, queue %r, state in %s",
             hub.hub_id, config.host, hub.port, settings.name, where)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("stopping")
        await hub.stop()
        await store.close()


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"EMPFAST_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empfast", description="empfast: a high-throughput job hub")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run jobs through empfast on the embedded store (no Redis needed)")
    demo.add_argument("--jobs", type=int, default=2000, help="how many jobs (default 2000)")
    demo.add_argument("--workers", type=int, default=4, help="how many workers (default 4)")

    serve = sub.add_parser("serve", help="run a hub", description=(
        "Run a hub. Every option can also come from the environment as EMPFAST_<OPTION> "
        "(e.g. EMPFAST_REDIS_URL); a flag on the command line wins."))
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(_env("PORT", "8765") or 8765))
    serve.add_argument("--redis-url", default=_env("REDIS_URL"),
                       help="Redis URL; without one the hub runs on the embedded store")
    serve.add_argument("--queue", default=_env("QUEUE", "default"))
    serve.add_argument("--token", default=_env("TOKEN"), help="require ?token=... on every connection")
    serve.add_argument("--lease-s", type=float, default=float(_env("LEASE_S", "30") or 30))
    serve.add_argument("--heartbeat-s", type=float, default=float(_env("HEARTBEAT_S", "10") or 10))
    serve.add_argument("--sweep-interval-s", type=float,
                       default=float(_env("SWEEP_INTERVAL_S", "1") or 1))
    serve.add_argument("--retry-backoff-s", type=float,
                       default=float(_env("RETRY_BACKOFF_S", "1") or 1))
    serve.add_argument("--max-frame-bytes", type=int,
                       default=int(_env("MAX_FRAME_BYTES", str(1 << 20)) or 1 << 20))
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--json-logs", action="store_true", default=_env("JSON_LOGS") == "1")
    return parser


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import orjson

        entry = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str, json_logs: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        asyncio.run(run_store_demo(args.jobs, args.workers))
    elif args.command == "serve":
        setup_logging(args.log_level, args.json_logs)
        lease_ms = int(args.lease_s * 1000)
        settings = QueueSettings(name=args.queue, lease_ms=lease_ms, liveness_ms=lease_ms,
                                 backoff_base_ms=int(args.retry_backoff_s * 1000))
        config = HubConfig(host=args.host, port=args.port, token=args.token,
                           max_frame_bytes=args.max_frame_bytes, heartbeat_interval_s=args.heartbeat_s,
                           sweep_interval_s=args.sweep_interval_s)
        import uvloop

        uvloop.run(run_hub(config, settings, args.redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
