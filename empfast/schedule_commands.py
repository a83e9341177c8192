"""`empfast schedules`: the command line's view of a queue's repeating jobs (docs/job-control.md
section 2), through the monitor SDK: list them, set one (a cron expression in a time zone, or every
N seconds), pause, resume or remove one. cli.py registers it."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from empfast.config import HubAddress
from empfast.connection import HubError
from empfast.manage import monitor_of, table

ACTIONS = ("list", "set", "pause", "resume", "remove")


def add_schedules_command(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "schedules", help="list, set, pause, resume or remove repeating jobs",
        description="A queue's repeating jobs: `schedules list`; `schedules set NAME TYPE [PAYLOAD] --cron "
        "'0 3 * * *' [--tz Europe/Paris]` or `--every-s 60` (creates or replaces NAME); `schedules "
        "pause|resume|remove NAME`. Each due run is added once, as job sched:NAME:DUE_MS, whatever "
        "the number of hubs.")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("name", nargs="?", metavar="NAME")
    parser.add_argument("job_type", nargs="?", metavar="TYPE")
    parser.add_argument("payload", nargs="?", metavar="PAYLOAD", help="JSON (default {})")
    parser.add_argument("--cron", help="a cron expression of five fields, in --tz")
    parser.add_argument("--tz", default="UTC", help="the cron expression's time zone (default UTC)")
    parser.add_argument("--every-s", type=float, help="or: every this many seconds")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--paused", action="store_true", help="set it paused")
    parser.add_argument("--json", action="store_true", help="print the hub's JSON reply as is")
    return parser


async def run_schedules(args: argparse.Namespace, hub: HubAddress) -> int:
    if args.action != "list" and not args.name:
        print(f"empfast schedules {args.action}: name the schedule: empfast schedules {args.action} NAME",
              file=sys.stderr)
        return 2
    if args.action == "set" and not args.job_type:
        print("empfast schedules set: give NAME and TYPE, then --cron or --every-s", file=sys.stderr)
        return 2
    try:
        payload = orjson.loads(args.payload) if args.payload else None
    except orjson.JSONDecodeError as exc:
        print(f"empfast schedules set: the payload is not valid JSON ({exc})", file=sys.stderr)
        return 2
    try:
        async with monitor_of(hub) as monitor:
            if args.action == "list":
                reply: Any = await monitor.schedules()
            elif args.action == "set":
                reply = await monitor.set_schedule(
                    args.name, args.job_type, payload, cron=args.cron, every_s=args.every_s, tz=args.tz,
                    priority=args.priority, max_attempts=args.max_attempts, paused=args.paused)
            elif args.action == "remove":
                reply = {"name": args.name, "removed": await monitor.remove_schedule(args.name)}
            else:
                reply = await (monitor.pause_schedule if args.action == "pause"
                               else monitor.resume_schedule)(args.name)
    except HubError as exc:
        print(f"empfast schedules {args.action}: {exc.frame.get('error', exc)}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
    elif args.action == "remove":
        print(f"schedule {args.name!r} " + ("removed" if reply["removed"] else "did not exist"))
    else:
        print(schedules_table(reply if args.action == "list" else [reply]))
    return 0


def schedules_table(schedules: list[dict[str, Any]]) -> str:
    if not schedules:
        return "no schedules: add one with `empfast schedules set NAME TYPE --cron '...'`"
    cells = [(s["name"], s["job_type"],
              f"cron {s['cron']} {s['tz']}" if s.get("cron") else f"every {s['every_s']:g} s",
              "paused" if s["paused"] else when(s.get("next_run_at_ms"))) for s in schedules]
    return table(("NAME", "TYPE", "WHEN", "NEXT RUN"), cells)


def when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
