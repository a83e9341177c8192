"""The command line's commands that look at and act on jobs (docs/management.md): `status` (the
queue's counts or one job), `jobs` (the jobs of a status, a page at a time), `retry` (one job, or
every failed or cancelled one), `cancel`, `purge`, `pause`, `resume` and `workers`. cli.py registers
them; they speak to the hub through the client SDK, and through the monitor SDK for what only the
monitor role may ask (workers, bulk actions, pausing)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from empfast.bars import Board, bar
from empfast.client import BulkOutcome, Client, Monitor, NotRetryableError
from empfast.config import HubAddress
from empfast.connection import HubError
from empfast.limits import MAX_LOG_LINES

STATUSES = ("scheduled", "pending", "active", "completed", "failed", "cancelled", "waiting")
FINISHED = ("completed", "failed", "cancelled")
# the time a row shows, by status: when it finished, started, is due or was added
WHEN = {"completed": "finished_at", "failed": "finished_at", "cancelled": "finished_at",
        "active": "started_at", "scheduled": "run_at", "pending": "created_at", "waiting": "created_at"}
ERROR_CHARS = 60
CONNECT_TIMEOUT_S = 5.0  # how long a command waits for an unreachable hub


def client_of(hub: HubAddress) -> Client:
    return Client(hub.url, queue=hub.queue, token=hub.resolved_token(), connect_timeout_s=CONNECT_TIMEOUT_S)


def monitor_of(hub: HubAddress) -> Monitor:
    return Monitor(hub.url, queue=hub.queue, token=hub.resolved_token(), connect_timeout_s=CONNECT_TIMEOUT_S)


def add_retry_command(sub: Any) -> argparse.ArgumentParser:
    retry = sub.add_parser("retry", help="run a failed or cancelled job again, or all of them",
                           description="Run a job that failed for good (dead-lettered) or was "
                           "cancelled again, with --attempts more attempts; exit code 1 when the job "
                           "is in another state (nothing changes). With --all-failed (or "
                           "--all-cancelled) instead of JOB_ID: every such job, or those of --type, "
                           "in slices of 500, with a progress bar (needs a token for monitors when "
                           "the hub has tokens).")
    retry.add_argument("job_id", nargs="?", metavar="JOB_ID")
    every = retry.add_mutually_exclusive_group()
    every.add_argument("--all-failed", action="store_true", help="every failed (dead-lettered) job")
    every.add_argument("--all-cancelled", action="store_true", help="every cancelled job")
    retry.add_argument("--type", dest="job_type", metavar="TYPE", help="with --all-*: only jobs of this type")
    retry.add_argument("--dry-run", action="store_true", help="with --all-*: count them, change nothing")
    retry.add_argument("--attempts", type=int, default=1, help="more attempts to give each (default 1)")
    return retry


def add_purge_command(sub: Any) -> argparse.ArgumentParser:
    purge = sub.add_parser("purge", help="remove finished jobs",
                           description="Remove the jobs that ended --status (completed, failed or "
                           "cancelled), or those of --type, that finished at least --older-than ago: "
                           "their records are gone for good. In slices of 500, with a progress bar; "
                           "--dry-run counts them first.")
    purge.add_argument("--status", choices=FINISHED, required=True, help="which finished jobs")
    purge.add_argument("--type", dest="job_type", metavar="TYPE", help="only jobs of this type")
    purge.add_argument("--older-than", type=duration_s, default=0.0, metavar="AGE",
                       help="finished at least this long ago: 90 (seconds), 30s, 15m, 12h or 7d (default: "
                       "all)")
    purge.add_argument("--dry-run", action="store_true", help="count them, change nothing")
    return purge


def add_pause_commands(sub: Any) -> None:
    pause = sub.add_parser("pause", help="give workers no more jobs of a type",
                           description="Pause a job type: no worker is given a job of it until `empfast "
                           "resume TYPE`; its jobs wait in their order, submits go on, running jobs "
                           "finish. Every hub of the queue honours it.")
    pause.add_argument("job_type", metavar="TYPE")
    resume = sub.add_parser("resume", help="give workers jobs of a paused type again",
                            description="Resume a paused job type: its waiting jobs go to idle workers "
                            "at once.")
    resume.add_argument("job_type", metavar="TYPE")


def duration_s(text: str) -> float:
    """`90`, `30s`, `15m`, `12h` or `7d` as seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: use 90, 30s, 15m, 12h or 7d")
    return value


def add_status_command(sub: Any) -> argparse.ArgumentParser:
    status = sub.add_parser("status", help="the queue's counts, or one job's state",
                            description="Without JOB_ID: the queue's counts by status and job type. "
                            "With JOB_ID: that job's state, times, payload, its place in the line "
                            "while pending and, with --logs, its log lines.")
    status.add_argument("job_id", nargs="?", metavar="JOB_ID")
    status.add_argument("--logs", nargs="?", const=True, type=int, metavar="N",
                        help="with JOB_ID: its log lines (every kept one, or the newest N)")
    status.add_argument("--json", action="store_true", help="print the hub's JSON reply as is")
    return status


def add_jobs_command(sub: Any) -> argparse.ArgumentParser:
    jobs = sub.add_parser(
        "jobs", help="list the jobs of a status (failed by default), a page at a time",
        description="List the jobs of one status, oldest first (pending: in the order workers get "
        "them), as a table: id, type, attempts, worker, when (finished, started, due or added, UTC) "
        "and the last error. A longer listing ends with the command for the next page.")
    jobs.add_argument("--status", choices=STATUSES, default="failed", help="which jobs (default failed)")
    jobs.add_argument("--type", dest="job_type", metavar="TYPE", help="only jobs of this type")
    jobs.add_argument("--limit", type=int, default=20, help="rows per page, 1 to 500 (default 20)")
    jobs.add_argument("--newest", action="store_true", help="newest first")
    jobs.add_argument("--cursor", help="the page after this cursor (printed at the end of a page)")
    jobs.add_argument("--json", action="store_true", help="print the hub's JSON reply as is")
    return jobs


async def run_jobs(args: argparse.Namespace, hub: HubAddress) -> int:
    if not 1 <= args.limit <= 500:
        print(f"empfast jobs: --limit must be 1 to 500, not {args.limit}", file=sys.stderr)
        return 2
    async with client_of(hub) as client:
        try:
            page = await client.list_jobs(args.status, job_type=args.job_type, newest_first=args.newest,
                                          limit=args.limit, cursor=args.cursor)
        except HubError as exc:
            if exc.code not in ("bad_message", "forbidden"):
                raise
            print(f"empfast jobs: {exc.frame.get('error')}", file=sys.stderr)
            return 2
    page.pop("req", None)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(page) + b"\n")
        return 0
    print(jobs_table(page["rows"], args.status))
    if page["cursor"] is not None:
        again = [f"--status {args.status}"] + ([f"--type {args.job_type}"] if args.job_type else [])
        again += ["--newest"] if args.newest else []
        print(f"more: empfast jobs {' '.join(again)} --limit {args.limit} --cursor '{page['cursor']}'",
              file=sys.stderr)
    elif not page["rows"]:
        print(f"no {args.status} jobs" + (f" of type {args.job_type!r}" if args.job_type else ""),
              file=sys.stderr)
    return 0


def add_cancel_command(sub: Any) -> argparse.ArgumentParser:
    cancel = sub.add_parser("cancel", help="cancel a job",
                            description="Cancel a job: a pending or scheduled one at once, a running one "
                            "through its worker (which is told to stop; the job ends cancelled when it "
                            "does). Exit code 1 when the job had finished already (nothing changes).")
    cancel.add_argument("job_id", metavar="JOB_ID")
    return cancel


async def run_cancel(args: argparse.Namespace, hub: HubAddress) -> int:
    async with client_of(hub) as client:
        try:
            state = await client.cancel(args.job_id)
        except HubError as exc:
            return said_not_found(exc, args.job_id)
    status = state.get("status")
    if status == "cancelled":
        print(f"job {args.job_id} cancelled")
        return 0
    if state.get("cancel_requested"):
        print(f"job {args.job_id} is running on {state.get('worker_id')}: its worker was told to stop; "
              f"follow it with `empfast status {args.job_id}`")
        return 0
    print(f"job {args.job_id} is {status} already: nothing changed", file=sys.stderr)
    return 1


def _listing_command(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A command that prints a table, or with --json the hub's reply as is."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.add_argument("--json", action="store_true", help="print the hub's JSON reply as is")
    return parser


def add_workers_command(sub: Any) -> argparse.ArgumentParser:
    return _listing_command(sub, "workers", "list the registered workers", "The workers registered with "
                            "the queue: id, status, job types, jobs held of its concurrency, hub, and "
                            "how long ago it was last heard from.")


def add_queues_command(sub: Any) -> argparse.ArgumentParser:
    return _listing_command(sub, "queues", "list the hub's queues with their counts", "Every queue the "
                            "hub serves (its default, --queues, and those opened on first use), with "
                            "its jobs by status and its workers; --queue of the other commands picks one.")


async def run_queues(args: argparse.Namespace, hub: HubAddress) -> int:
    async with monitor_of(hub) as monitor:
        queues = await monitor.queues()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(queues) + b"\n")
        return 0
    header = ("QUEUE", *(status.upper() for status in STATUSES), "WORKERS", "PAUSED")
    print(table(header, [(q["queue"], *(str(q.get(status, 0)) for status in STATUSES),
                          str(sum(q.get("workers", {}).values())), ",".join(q.get("paused", [])) or "-")
                         for q in queues]))
    return 0


async def registered_workers(hub: HubAddress) -> list[dict[str, Any]]:
    """The workers' records, asked through a monitor connection (the role that may ask)."""
    async with monitor_of(hub) as monitor:
        return await monitor.workers()


async def say_if_nobody_takes(job_type: str, hub: HubAddress) -> None:
    """One line when no registered worker takes `job_type` (a job of it waits until one does);
    nothing when there is one, or when the workers cannot be asked (a token only for clients)."""
    try:
        workers = await registered_workers(hub)
    except (HubError, TimeoutError, OSError):
        return
    if not any(job_type in (worker.get("job_types") or ()) for worker in workers):
        print(f"no registered worker takes type {job_type!r}: the job waits until one does (start one "
              "with `empfast worker` and handlers for it)", file=sys.stderr)


async def run_workers(args: argparse.Namespace, hub: HubAddress) -> int:
    workers = await registered_workers(hub)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(workers) + b"\n")
        return 0
    if not workers:
        print("no workers registered: start one with `empfast worker`", file=sys.stderr)
        return 0
    print(workers_table(workers, time.time()))
    return 0


def workers_table(workers: list[dict[str, Any]], now_s: float) -> str:
    header = ("WORKER", "STATUS", "JOBS", "TYPES", "HUB", "LAST SEEN")
    cells = [(w["worker_id"], w.get("status") or "", f"{w.get('active_jobs', 0)}/{w.get('concurrency')}",
              ",".join(w.get("job_types") or []), w.get("hub") or "",
              f"{max(0.0, now_s - w.get('last_seen', 0) / 1000):.1f} s ago") for w in workers]
    return table(header, cells)


def jobs_table(rows: list[dict[str, Any]], status: str) -> str:
    when = WHEN[status]
    header = ("JOB_ID", "TYPE", "ATTEMPTS", "WORKER", when.removesuffix("_at").upper() + " (UTC)", "ERROR")
    cells = [(row["job_id"], row.get("job_type") or "", f"{row.get('attempts', 0)}/{row.get('max_attempts')}",
              row.get("worker_id") or "", readable_time(row.get(when)), one_line(row.get("error")))
             for row in rows]
    return table(header, cells)


def table(header: tuple[str, ...], cells: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell; the last one left as long as it is."""
    widths = [max([len(header[i]), *(len(c[i]) for c in cells)]) for i in range(len(header) - 1)]
    lines = []
    for line in (header, *cells):
        lines.append("  ".join(f"{value:<{width}}" for value, width in zip(line, widths, strict=False))
                     + "  " + line[-1])
    return "\n".join(line.rstrip() for line in lines)


def stats_table(stats: dict[str, Any]) -> str:
    """Counts of now (what the sets hold) apart from totals (counters since the queue began): the
    finished sets hold only what retention keeps, so `completed` now is not the number ever done."""
    now = "  ".join(f"{k} {stats.get(k, 0)}" for k in ("pending", "scheduled", "active", "waiting"))
    kept = "  ".join(f"{k} {stats.get(k, 0)}" for k in ("completed", "failed", "cancelled"))
    lines = [f"jobs now     {now}", f"kept now     {kept}   (finished jobs retention keeps)"]
    workers = stats.get("workers") or {}
    lines.append("workers now  " + "  ".join(f"{k} {v}" for k, v in sorted(workers.items())))
    if stats.get("paused"):
        lines.append("paused now   " + ", ".join(stats["paused"]) + "   (`empfast resume TYPE`)")
    for job_type, limit in sorted((stats.get("limits") or {}).items()):
        lines.append(f"limited      {job_type}: {describe_limits(limit)}   "
                     f"(`empfast limit {job_type} --clear`)")
    by_type = stats.get("by_type") or {}
    if by_type:
        columns = ("pending", "scheduled", "active", "waiting", "added", "completed", "failed", "retried",
                   "cancelled")
        width = max(8, *(len(t) for t in by_type))
        lines.append("")
        lines.append(f"{'':<{width}}{'now':>44}   {'totals since the queue began':>51}")
        lines.append(f"{'type':<{width}}" + "".join(f"{c:>11}" for c in columns))
        for job_type, counts in sorted(by_type.items()):
            lines.append(f"{job_type:<{width}}" + "".join(f"{counts.get(c, 0):>11}" for c in columns))
    return "\n".join(lines)


def describe_limits(limit: dict[str, Any]) -> str:
    """A job type's limits (set_type_limits) in words."""
    parts = []
    if limit.get("concurrency") is not None:
        parts.append(f"at most {limit['concurrency']} running")
    if limit.get("rate") is not None:
        parts.append(f"at most {limit['rate']} starts per {limit['per_s']:g} s")
    if limit.get("group_concurrency") is not None:
        parts.append(f"at most {limit['group_concurrency']} running per group")
    return ", ".join(parts) or "no limits"


def job_table(job: dict[str, Any]) -> str:
    keys = ("job_id", "job_type", "group", "status", "position", "priority", "progress", "message",
            "attempts", "max_attempts", "worker_id")
    lines = [f"{k:<13}{job.get(k)}" for k in keys if job.get(k) not in (None, "")]
    if job.get("depends_on"):  # its parents, and how many have not completed yet
        open_parents = job.get("open_parents") or 0
        lines.append(f"{'depends on':<13}{', '.join(job['depends_on'])} ({open_parents} open)")
    if job.get("timeout_ms"):
        lines.append(f"{'timeout':<13}{job['timeout_ms'] / 1000:g} s per attempt")
    for key in ("created_at", "started_at", "finished_at", "run_at", "expires_at"):  # in UTC, with the waits
        if job.get(key):
            lines.append(f"{key:<13}{readable_time(job[key])} UTC")
    if job.get("created_at") and job.get("started_at"):
        waited_s = (job["started_at"] - job["created_at"]) / 1000
        lines.append(f"{'waited':<13}{waited_s:.3f} s (added -> last start)")
    if job.get("started_at") and job.get("finished_at"):
        ran_s = (job["finished_at"] - job["started_at"]) / 1000
        lines.append(f"{'ran':<13}{ran_s:.3f} s (last start -> end)")
    for attempt, error in enumerate(job.get("errors") or [], start=1):
        lines.append(f"{'error ' + str(attempt):<13}{error}")
    lines.append(f"{'payload':<13}{orjson.dumps(job.get('payload')).decode()}")
    lines.append(f"{'result':<13}{orjson.dumps(job.get('result')).decode()}")
    if "logs" in job:  # asked for (--logs): oldest first, one a line
        lines.append(f"{'logs':<13}{len(job['logs'])} lines")
        lines += [f"  {line}" for line in job["logs"]]
    return "\n".join(lines)


async def run_retry(args: argparse.Namespace, hub: HubAddress) -> int:
    if (args.job_id is None) == (not args.all_failed and not args.all_cancelled):
        print("empfast retry: give a JOB_ID, or --all-failed or --all-cancelled (not both)", file=sys.stderr)
        return 2
    if args.job_id is None:
        status = "failed" if args.all_failed else "cancelled"
        async with monitor_of(hub) as monitor:
            outcome = await monitor.retry_jobs(status=status, job_type=args.job_type, attempts=args.attempts,
                                               dry_run=args.dry_run, on_progress=ProgressBar("retrying"))
        return said_bulk(outcome, f"{status} jobs" + (f" of type {args.job_type!r}" if args.job_type else ""),
                         "retried")
    async with client_of(hub) as client:
        try:
            handle = await client.retry(args.job_id, args.attempts)
        except NotRetryableError as exc:
            print(f"{exc}; nothing changed", file=sys.stderr)
            return 1
        except HubError as exc:
            return said_not_found(exc, args.job_id)
    print(f"job {handle.job_id} retried: {handle.status}")
    return 0


async def run_purge(args: argparse.Namespace, hub: HubAddress) -> int:
    async with monitor_of(hub) as monitor:
        outcome = await monitor.remove_jobs(args.status, job_type=args.job_type, older_than_s=args.older_than,
                                            dry_run=args.dry_run, on_progress=ProgressBar("removing"))
    which = f"{args.status} jobs" + (f" of type {args.job_type!r}" if args.job_type else "")
    if args.older_than:
        which += f" older than {args.older_than:g} s"
    return said_bulk(outcome, which, "removed")


async def run_pause(args: argparse.Namespace, hub: HubAddress) -> int:
    pause = args.command == "pause"
    async with monitor_of(hub) as monitor:
        state = await (monitor.pause_type if pause else monitor.resume_type)(args.job_type)
    now = "paused" if pause else "resumed"
    print(f"job type {args.job_type!r} {now}: {state['pending']} jobs waiting; paused types: "
          f"{', '.join(state['paused_types']) or 'none'}")
    return 0


class ProgressBar:
    """A bulk action's progress frames as a bar on stderr."""

    def __init__(self, doing: str) -> None:
        self.doing = doing
        self.board = Board(sys.stderr)  # the stream of now (a caller may have redirected it)

    def __call__(self, frame: dict[str, Any]) -> None:
        total = max(1, frame.get("total", 0))
        looked = frame.get("looked", 0)
        self.board.show([f"{self.doing} {bar(looked / total)} {looked:,} of {frame.get('total', 0):,} "
                         f"looked at, {frame.get('jobs', 0):,} jobs"])


def said_bulk(outcome: BulkOutcome, which: str, done: str) -> int:
    if outcome.code is not None:
        print(f"stopped after {outcome.jobs:,} {which} {done} ({outcome.code}): {outcome.error}",
              file=sys.stderr)
        return 1
    if outcome.dry_run:
        print(f"dry run: {outcome.jobs:,} {which} would be {done}; nothing changed")
    else:
        print(f"{outcome.jobs:,} {which} {done}")
    return 0


async def run_status(args: argparse.Namespace, hub: HubAddress) -> int:
    bad_count = args.logs is not None and args.logs is not True and not 0 < args.logs <= MAX_LOG_LINES
    if bad_count or (args.logs is not None and not args.job_id):
        print(f"empfast status: --logs takes a JOB_ID, and N from 1 to {MAX_LOG_LINES}", file=sys.stderr)
        return 2
    async with client_of(hub) as client:
        if args.job_id:
            try:
                reply = await client.status(args.job_id, payload=True, logs=args.logs or False)
            except HubError as exc:
                return said_not_found(exc, args.job_id)
        else:
            reply = await client.stats()
    reply.pop("req", None)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
    else:
        print(job_table(reply) if args.job_id else stats_table(reply))
    return 0


def said_not_found(exc: HubError, job_id: str) -> int:
    """A command's answer to a job id the hub does not know: one line and exit code 1; any other
    refusal goes on up."""
    if exc.code != "not_found":
        raise exc
    print(f"no job {job_id!r} (never added, or removed by retention)", file=sys.stderr)
    return 1


def readable_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def one_line(error: str | None) -> str:
    text = " ".join((error or "").split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"
