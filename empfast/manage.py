"""The command line's management commands (docs/management.md): `empfast jobs` lists the jobs of a
status as a table, a page at a time. cli.py registers them; they speak to the hub through the client
SDK, like `submit` and `status`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from empfast.client import Client
from empfast.connection import HubError

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


def jobs_table(rows: list[dict[str, Any]], status: str) -> str:
    when = WHEN[status]
    header = ("JOB_ID", "TYPE", "ATTEMPTS", "WORKER", when.removesuffix("_at").upper() + " (UTC)", "ERROR")
    cells = [(row["job_id"], row.get("job_type") or "", f"{row.get('attempts', 0)}/{row.get('max_attempts')}",
              row.get("worker_id") or "", readable_time(row.get(when)), one_line(row.get("error")))
             for row in rows]
    widths = [max([len(header[i]), *(len(c[i]) for c in cells)]) for i in range(len(header) - 1)]
    lines = []
    for line in (header, *cells):
        lines.append("  ".join(f"{value:<{width}}" for value, width in zip(line, widths, strict=False))
                     + "  " + line[-1])
    return "\n".join(line.rstrip() for line in lines)


def readable_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def one_line(error: str | None) -> str:
    text = " ".join((error or "").split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"
