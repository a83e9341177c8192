"""The `empfast` command. It parses arguments, sets up logging and calls one run function; it holds
no Redis or socket logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn

import orjson
from redis.exceptions import RedisError

from empfast.bars import Board, bar
from empfast.benchmark import JOB_TYPE, OwnHubFailed, own_queue_hub, refuse_a_queue_in_use, run_bench
from empfast.client import JobCancelledError, JobFailedError
from empfast.config import (
    HubAddress,
    HubConfig,
    LoggingSettings,
    QueueSettings,
    RedisOptions,
    WorkerSettings,
)
from empfast.connection import HubError
from empfast.demo import run_demo
from empfast.handlers import HandlerSpecError, load_handlers
from empfast.hub import Hub
from empfast.hub.http import HttpListenError
from empfast.limit_command import add_type_commands, run_limit
from empfast.manage import (
    add_cancel_command,
    add_jobs_command,
    add_purge_command,
    add_queues_command,
    add_retry_command,
    add_status_command,
    add_workers_command,
    client_of,
    run_cancel,
    run_jobs,
    run_pause,
    run_purge,
    run_queues,
    run_retry,
    run_status,
    run_workers,
    say_if_nobody_takes,
)
from empfast.schedule_commands import add_schedules_command, run_schedules
from empfast.settings_cli import Alias, SettingsOptions
from empfast.store import Store, redis_from_options
from empfast.worker import Handler, Worker

log = logging.getLogger("empfast.cli")



async def run_hub(config: HubConfig, settings: QueueSettings, redis: RedisOptions | None) -> None:
    """Serve until SIGINT or SIGTERM, then close connections and stop. Without Redis options the
    state lives in the embedded store."""
    if redis is not None:
        store = Store(redis_from_options(redis), settings)
        where = f"Redis at {redis.masked_url()}"
    else:
        store = Store.embedded(settings)
        where = "the embedded store (in this process; not durable, one process only)"
    hub = Hub(store, config)
    try:
        await hub.start()
    except RedisError as exc:
        await store.close()
        fix = ("--redis-sentinels and --redis-master-name" if redis is not None and redis.sentinels
               else "--redis-url (EMPFAST_REDIS_URL)")
        raise StartupError(f"cannot reach {where} ({exc}): start it, or fix {fix}") from None
    except HttpListenError as exc:
        await store.close()
        raise StartupError(exc.strerror or str(exc)) from None
    except OSError as exc:
        await store.close()
        raise StartupError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): is "
                           "another hub running there? choose another --port") from None
    allowed = f"; opens {config.queues_allowed!r} on first use" if config.queues_allowed else ""
    log.info("empfast hub %s on ws://%s:%d/ws/{client,worker,monitor}, queue %r (of %s%s), state in %s; "
             "it takes %s", hub.hub_id, config.host, hub.port, settings.name, ", ".join(sorted(hub.rooms)),
             allowed, where, hub.capacity())
    if hub.http is not None:
        log.info("dashboard and HTTP side on http://%s:%d/ (REST /api, SSE, /openapi.json, /livez, /readyz, "
                 "/metrics)",
                 hub.http.host, hub.http.port)
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
        # the last line of a clean stop: an operator (and the Docker test) tells it from a crash
        log.info("stopped")


HUB = SettingsOptions(HubConfig, "the hub", aliases=(Alias("heartbeat-s", "heartbeat_interval_s"),))
QUEUE = SettingsOptions(QueueSettings, "the queue", renames={"name": "queue"}, aliases=(
    Alias("lease-s", "lease_ms", from_seconds=True), Alias("liveness-s", "liveness_ms", from_seconds=True),
    Alias("retry-backoff-s", "backoff_base_ms", from_seconds=True),
    Alias("retry-backoff-cap-s", "backoff_cap_ms", from_seconds=True)))
REDIS = SettingsOptions(RedisOptions, "Redis", prefix="redis", unset_help={
    "url": "none: the embedded store, in this process and not durable"})
BENCH_REDIS = SettingsOptions(RedisOptions, "Redis, for a hub of the bench's own on a fresh queue",
                              prefix="redis", unset_help={"url": "none: measure the hub at --url"})
WORKER = SettingsOptions(WorkerSettings, "the worker")
HUB_ADDRESS = SettingsOptions(HubAddress, "the hub to connect to")
LOGGING = SettingsOptions(LoggingSettings, "logging")
COMMAND_SETTINGS: dict[str, tuple[SettingsOptions[Any], ...]] = {
    "serve": (HUB, QUEUE, REDIS, LOGGING),
    "worker": (WORKER, HUB_ADDRESS, LOGGING),
    "submit": (HUB_ADDRESS,), "status": (HUB_ADDRESS,), "retry": (HUB_ADDRESS,), "jobs": (HUB_ADDRESS,),
    "cancel": (HUB_ADDRESS,), "workers": (HUB_ADDRESS,), "purge": (HUB_ADDRESS,), "pause": (HUB_ADDRESS,),
    "resume": (HUB_ADDRESS,), "queues": (HUB_ADDRESS,), "schedules": (HUB_ADDRESS,), "limit": (HUB_ADDRESS,),
    "bench": (HUB_ADDRESS, BENCH_REDIS),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """A usage error in one line: the full usage of serve is longer than a screen."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="empfast", description=(
        "empfast: a high-throughput job hub. Every option of serve and worker, and --url and --token "
        "of the other commands, can also come from the environment: --some-option is "
        "EMPFAST_SOME_OPTION (e.g. EMPFAST_REDIS_URL, EMPFAST_URL); a flag on the command line wins, "
        "and an empty variable counts as unset."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a hub, workers and a client in this process (no Redis needed)",
                          description="Start a hub on the embedded store, a few workers and a client, "
                          "run a mix of jobs with live progress, and print jobs/s and latency.")
    demo.add_argument("--jobs", type=int, default=300, help="how many jobs (default 300)")
    demo.add_argument("--workers", type=int, default=3, help="how many workers (default 3)")
    demo.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker (default 8)")
    demo.add_argument("--seed", type=int, default=None, help="seed of the job mix, to repeat a run")

    sub.add_parser("serve", help="run a hub", description=(
        "Run a hub, on Redis with --redis-url, else on the embedded store. Every option can also "
        "come from the environment as EMPFAST_<OPTION> (e.g. EMPFAST_REDIS_URL); a flag on the "
        "command line wins."))

    worker = sub.add_parser("worker", help="run a worker with handlers from your code (or the built-ins)",
                            description="Run a worker. HANDLERS is MODULE:OBJECT, a dict of job type -> "
                            "async handler (or a function returning one); 'builtin' (the default) "
                            "gives the demo handlers sleep, echo and fail. SIGTERM drains: running "
                            "jobs get --grace-s to finish, the rest are failed as retryable.")
    worker.add_argument("handlers", nargs="?", default="builtin", metavar="HANDLERS")

    submit = sub.add_parser("submit", help="submit a job (and wait for it with --wait)",
                            description="Submit one job. Prints its id; with --wait, shows its progress "
                            "and prints the result. Exit code 1 when the job failed or was cancelled.")
    submit.add_argument("job_type", metavar="TYPE")
    submit.add_argument("payload", nargs="?", default="{}", metavar="JSON", help="the payload (default {})")
    submit.add_argument("--priority", type=int, default=0, help="-1000..1000, higher first (default 0)")
    submit.add_argument("--job-id", default=None, help="an idempotency key: the same id is one job")
    submit.add_argument("--max-attempts", type=int, default=3)
    submit.add_argument("--delay-s", type=float, default=0.0)
    submit.add_argument("--run-at", type=a_time, default=None, metavar="TIME",
                        help="start at this time instead: ISO 8601 (local time without an offset) or "
                             "seconds since the epoch")
    # --timeout-s bounds --wait (it did before jobs had timeouts), so the job's limit has its own name
    submit.add_argument("--job-timeout-s", type=float, default=None,
                        help="fail an attempt that runs longer (default: the type's or the queue's)")
    submit.add_argument("--ttl-s", type=float, default=None, help="fail the job `expired` if it has not "
                                                                  "started this long from now")
    submit.add_argument("--expires-at", type=a_time, default=None, metavar="TIME",
                        help="as --ttl-s, at a time (as --run-at)")
    submit.add_argument("--group", default=None, help="its tenant: jobs of a type go round-robin by group")
    submit.add_argument("--depends-on", action="append", metavar="JOB_ID", help="wait until this job has "
                        "completed (repeat it for each parent; one that fails fails this job)")
    submit.add_argument("--wait", action="store_true", help="wait for the job, showing its progress")
    submit.add_argument("--timeout-s", type=float, default=None, help="give up waiting after this long")

    bench = sub.add_parser("bench", help="measure a hub: latency, backlog drain and a steady rate",
                           description="Measure a hub with in-process SDK workers running a no-op "
                           "handler: one job at a time (latency), a backlog (jobs/s), then a steady "
                           "offered rate (latency under load). The bench adds thousands of jobs, so it "
                           "never shares a queue with yours: with --redis-url (or EMPFAST_REDIS_URL) "
                           "it starts a hub of its own (`empfast serve`, loopback) on a fresh queue "
                           "bench-<random> of that Redis and deletes that queue afterwards; without "
                           "it, it measures the hub at --url, whose one queue it cannot change, and "
                           "refuses (exit code 2) unless that queue holds no job; its jobs then stay "
                           "there. With --embedded, it starts a hub on the embedded store in this "
                           "process instead (slow: fakeredis).")
    bench.add_argument("--embedded", action="store_true", help="run a hub on the embedded store here")
    bench.add_argument("--jobs", type=int, default=10_000, help="backlog size (default 10000)")
    bench.add_argument("--workers", type=int, default=2, help="workers (default 2)")
    bench.add_argument("--concurrency", type=int, default=64, help="slots per worker (default 64)")
    bench.add_argument("--rounds", type=int, default=200, help="jobs one at a time (default 200)")
    bench.add_argument("--rate", type=float, default=1000, help="steady jobs/s offered (default 1000)")
    bench.add_argument("--duration-s", type=float, default=4.0, help="steady run length (default 4)")

    add_retry_command(sub)
    add_status_command(sub)
    add_jobs_command(sub)
    add_cancel_command(sub)
    add_workers_command(sub)
    add_queues_command(sub)
    add_schedules_command(sub)
    add_purge_command(sub)
    add_type_commands(sub)  # pause, resume, limit
    for command, groups in COMMAND_SETTINGS.items():
        for options in groups:
            options.add_to(sub.choices[command])
    return parser


def a_time(value: str) -> float:
    """A time of the command line as seconds since the epoch: a number, or ISO 8601."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).astimezone().timestamp()  # naive: local time
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither ISO 8601 (2026-12-03T14:00:00+01:00) "
                                         "nor seconds since the epoch") from None


async def run_submit(args: argparse.Namespace, hub: HubAddress) -> int:
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        print(f"empfast submit: the payload is not valid JSON ({exc}); quote it for your shell, "
              """e.g. '{"seconds": 2}'""", file=sys.stderr)
        return 2
    async with client_of(hub) as client:
        handle = await client.submit(args.job_type, payload, priority=args.priority, job_id=args.job_id,
                                     max_attempts=args.max_attempts, delay_s=args.delay_s,
                                     run_at=args.run_at, timeout_s=args.job_timeout_s, ttl_s=args.ttl_s,
                                     expires_at=args.expires_at, group=args.group, depends_on=args.depends_on)
        created = "" if handle.created else " (it existed already: same job id)"
        place = "" if handle.position is None else f", {handle.position} ahead of it"
        print(f"job {handle.job_id} {handle.status}{place}{created}", file=sys.stderr)
        if not args.wait:
            print(handle.job_id)
            return 0
        await say_if_nobody_takes(args.job_type, hub)
        board = Board(sys.stderr)
        line = f"{bar(0)}   0.0% {handle.status}"
        try:
            async with asyncio.timeout(args.timeout_s):
                async for event in handle.events():
                    if event["type"] == "job_update":
                        pct = event.get("progress", 0.0)
                        line = (f"{bar(pct / 100)} {pct:5.1f}% {event.get('status', '')} "
                                f"{event.get('message', '')}")
                    elif event["type"] == "job_failed" and not event.get("final"):
                        line = f"{bar(0)}   0.0% retrying: {event.get('error', '')}"
                    board.show([line])
                board.close([line])
                result = await handle.result()
        except JobFailedError as exc:
            print(f"job {handle.job_id} failed: {exc.error}", file=sys.stderr)
            return 1
        except JobCancelledError:
            print(f"job {handle.job_id} was cancelled", file=sys.stderr)
            return 1
        except TimeoutError:
            print(f"gave up waiting after {args.timeout_s} s; the job goes on: "
                  f"empfast status {handle.job_id}", file=sys.stderr)
            return 1
        except asyncio.CancelledError:  # Ctrl-C: the job is the hub's now, not this command's
            print(f"\nstopped waiting; the job goes on: empfast status {handle.job_id}", file=sys.stderr)
            raise
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
        return 0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import orjson

        entry = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(settings: LoggingSettings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    # the WebSocket library logs every connection and disconnection at INFO: an operator's log is
    # about workers, refusals and limits (the hub's own lines), so its chatter stays at DEBUG
    chatty = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("picows").setLevel(logging.NOTSET if chatty else logging.WARNING)


def redis_options(args: argparse.Namespace) -> RedisOptions | None:
    """The Redis options given, or None for the embedded store when no Redis URL is."""
    given = REDIS.given(args)
    if given.keys() & {"url", "sentinels", "master_name"}:  # Sentinels need no URL: they name the master
        return RedisOptions(**given)
    if given:  # they would silently do nothing
        raise ValueError(f"{', '.join(REDIS.flag(name) for name in given)}: no effect without "
                         "--redis-url (EMPFAST_REDIS_URL) or --redis-sentinels, as the hub then runs on "
                         "the embedded store")
    return None


async def run_worker_command(hub: HubAddress, settings: WorkerSettings,
                             handlers: Mapping[str, Handler]) -> None:
    """Run a worker until SIGINT/SIGTERM, then stop gracefully."""
    worker = Worker(hub.url, handlers, queue=hub.queue, token=hub.resolved_token(),
                    worker_id=settings.worker_id, concurrency=settings.concurrency, grace_s=settings.grace_s,
                    heartbeat_interval_s=settings.heartbeat_interval_s,
                    progress_interval_s=settings.progress_interval_s,
                    ack_timeout_s=settings.ack_timeout_s, reconnect_base_s=settings.reconnect_base_s,
                    reconnect_cap_s=settings.reconnect_cap_s)
    await worker.run()


async def run_bench_command(args: argparse.Namespace, hub: HubAddress) -> int:
    # the streams of now, not the ones run_bench's defaults saw at import (a caller may redirect)
    options = {"jobs": args.jobs, "workers": args.workers, "concurrency": args.concurrency,
               "rounds": args.rounds, "rate": args.rate, "duration_s": args.duration_s,
               "out": sys.stdout, "progress": sys.stderr}
    redis = BENCH_REDIS.given(args)
    if "url" in redis and not args.embedded:
        return await _bench_on_own_queue(RedisOptions(**redis), _as_variables(redis), options)
    if not args.embedded:
        await refuse_a_queue_in_use(hub.url, hub.resolved_token())
        await run_bench(hub.url, token=hub.resolved_token(), **options)
        print(f"the bench's jobs (type {JOB_TYPE}) stay in the queue behind {hub.url}", file=sys.stderr)
        return 0
    store = Store.embedded(QueueSettings(name="bench"))
    embedded_hub = Hub(store, HubConfig(port=0, http_port=0))
    await embedded_hub.start()
    try:
        print("a hub on the embedded store in this process (fakeredis: about 2 ms a script)")
        await run_bench(f"ws://127.0.0.1:{embedded_hub.port}", **options)
    finally:
        await embedded_hub.stop()
        await store.close()
    return 0


async def _bench_on_own_queue(redis: RedisOptions, variables: dict[str, str], options: dict[str, Any]) -> int:
    try:
        async with own_queue_hub(redis, variables) as hub:
            print(f"a hub of the bench's own (pid {hub.pid}) on the fresh queue {hub.queue!r} of Redis at "
                  f"{redis.masked_url()}; the queue is deleted afterwards")
            await run_bench(hub.url, token=hub.token, **options)
    except OwnHubFailed as exc:
        print(f"empfast bench: {exc}", file=sys.stderr)
        return 2
    print(f"queue {hub.queue!r} deleted")
    return 0


def _as_variables(redis: dict[str, Any]) -> dict[str, str]:
    """The Redis options given to bench, as the EMPFAST_REDIS_* variables its hub reads (not flags:
    a password in a flag would show in `ps`)."""
    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    return {BENCH_REDIS.variable(name): text(value) for name, value in redis.items() if value is not None}


def _run(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


class StartupError(Exception):
    """A hub that cannot start: the message says why and what to change."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except HandlerSpecError as exc:
        print(f"empfast worker: {exc}", file=sys.stderr)
    except StartupError as exc:
        print(f"empfast serve: {exc}", file=sys.stderr)
    except ValueError as exc:  # a setting refused: a bad EMPFAST_ variable, config.py, the Worker
        print(f"empfast {args.command}: {exc}", file=sys.stderr)
    except HubError as exc:
        if exc.code == "unauthorized":
            print(f"empfast {args.command}: the hub refused the token (missing or wrong for this role): "
                  "give the right one with --token-file FILE, the EMPFAST_TOKEN variable or --token",
                  file=sys.stderr)
        else:
            print(f"empfast {args.command}: the hub refused: {exc}", file=sys.stderr)
    except TimeoutError as exc:  # the SDK's message names the hub and what to check
        print(f"empfast {args.command}: {exc or 'timed out'}; start a hub with `empfast serve`",
              file=sys.stderr)
    except BrokenPipeError:  # `empfast status | head -1`: the reader went away, not the hub
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"empfast {args.command}: {exc}; is the hub running at {HUB_ADDRESS.build(args).url}? "
              "start one with `empfast serve`", file=sys.stderr)
    return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        _run(run_demo(args.jobs, args.workers, args.concurrency, args.seed, out=sys.stdout,
                      progress=sys.stderr))
        return 0
    if args.command == "serve":
        config, settings, redis = HUB.build(args), QUEUE.build(args), redis_options(args)
        setup_logging(LOGGING.build(args))
        _run(run_hub(config, settings, redis))
        return 0
    hub = HUB_ADDRESS.build(args)
    if args.command == "worker":
        settings = WORKER.build(args)
        setup_logging(LOGGING.build(args))
        sys.path.insert(0, os.path.abspath(settings.app_dir))  # as uvicorn's --app-dir: import user code
        _run(run_worker_command(hub, settings, load_handlers(args.handlers)))
        return 0
    management = {"jobs": run_jobs, "cancel": run_cancel, "workers": run_workers, "queues": run_queues,
                  "status": run_status, "retry": run_retry, "purge": run_purge, "pause": run_pause,
                  "resume": run_pause, "schedules": run_schedules, "limit": run_limit}.get(args.command)
    if management is not None:
        return _run(management(args, hub))
    run_command = {"submit": run_submit, "bench": run_bench_command}[args.command]
    return _run(run_command(args, hub))


if __name__ == "__main__":
    sys.exit(main())
