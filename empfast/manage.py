"""The command line's management commands (docs/management.md): `empfast jobs` lists the jobs of a
status as a table, a page at a time; `empfast cancel` cancels a job; `empfast workers` lists the
registered workers. cli.py registers them; they speak to the hub through the client SDK, like
`submit` and `status` (`workers` through a monitor connection, the role that may ask for them)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from empfast.client import Client
from empfast.connection import Connection, HubError, endpoint

STATUSES = ("scheduled", "pending", "active", "completed", "failed", "cancelled")
# the time a row shows, by status: when it finished, started, is due or was added
WHEN = {"completed": "finished_at", "failed": "finished_at", "cancelled": "finished_at",
        "active": "started_at", "scheduled": "run_at", "pending": "created_at"}
ERROR_CHARS = 60


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


async def run_jobs(args: argparse.Namespace, url: str, token: str | None, connect_timeout_s: float) -> int:
    if not 1 <= args.limit <= 500:
        print(f"empfast jobs: --limit must be 1 to 500, not {args.limit}", file=sys.stderr)
        return 2
    async with Client(url, token=token, connect_timeout_s=connect_timeout_s) as client:
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


async def run_cancel(args: argparse.Namespace, url: str, token: str | None, connect_timeout_s: float) -> int:
    async with Client(url, token=token, connect_timeout_s=connect_timeout_s) as client:
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


def add_workers_command(sub: Any) -> argparse.ArgumentParser:
    workers = sub.add_parser("workers", help="list the registered workers",
                             description="The workers registered with the queue: id, status, job "
                             "types, jobs held of its concurrency, hub, and how long ago it was last "
                             "heard from.")
    workers.add_argument("--json", action="store_true", help="print the hub's JSON reply as is")
    return workers


async def run_workers(args: argparse.Namespace, url: str, token: str | None, connect_timeout_s: float) -> int:
    connection = Connection(endpoint(url, "monitor"), on_push=lambda frame, data: None, token=token,
                            connect_timeout_s=connect_timeout_s)
    try:
        async with asyncio.timeout(connect_timeout_s):
            await connection.start()
        reply = await connection.request({"type": "get_workers"}, timeout_s=30.0)
    except TimeoutError:
        raise TimeoutError(f"could not connect to the hub at {url} within {connect_timeout_s} s: is it "
                           "running, and is the URL right?") from None
    finally:
        await connection.close()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(reply["workers"]) + b"\n")
        return 0
    if not reply["workers"]:
        print("no workers registered: start one with `empfast worker`", file=sys.stderr)
        return 0
    print(workers_table(reply["workers"], time.time()))
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
