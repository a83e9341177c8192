"""`empfast limit`: a job type's limits from the command line (docs/job-control.md section 3),
through the monitor SDK: `empfast limit TYPE --concurrency N --rate N --per-s S` sets them (what
is not given is unlimited), `--clear` removes them, no option shows every limited type. It is
registered with `pause` and `resume`, the other per-type settings (add_type_commands); cli.py wires
it (kept out of cli.py and manage.py, which are at their size limit)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from empfast.config import HubAddress
from empfast.connection import HubError
from empfast.manage import add_pause_commands, describe_limits, monitor_of, table


def add_type_commands(sub: Any) -> None:
    """`pause`, `resume` and `limit`: the settings of a job type."""
    add_pause_commands(sub)
    limit = sub.add_parser(
        "limit", help="limit how many jobs of a type run at once, or start per period",
        description="Limit a job type across every worker and hub: `--concurrency N` jobs running at once, "
        "`--rate N` starts per `--per-s S` seconds (default 1), `--group-concurrency N` running at once of "
        "each group (tenant). This replaces the type's limits (what is "
        "not given is unlimited); `--clear` removes them; with no option, every limited type is shown. "
        "Jobs held back wait, pending, in their order.")
    limit.add_argument("job_type", metavar="TYPE", nargs="?")
    limit.add_argument("--concurrency", type=int, help="at most N of its jobs running at once")
    limit.add_argument("--rate", type=int, help="at most N starts per --per-s seconds")
    limit.add_argument("--per-s", type=float, default=1.0, help="the rate's period (default 1 s)")
    limit.add_argument("--group-concurrency", type=int,
                       help="at most N running at once of each group (tenant)")
    limit.add_argument("--clear", action="store_true", help="remove the type's limits")


async def run_limit(args: argparse.Namespace, hub: HubAddress) -> int:
    given = args.concurrency is not None or args.rate is not None or args.group_concurrency is not None
    if args.clear and given:
        print("empfast limit: --clear or limits, not both", file=sys.stderr)
        return 2
    try:
        async with monitor_of(hub) as monitor:
            if args.job_type is None or not (given or args.clear):
                limits = (await monitor.stats()).get("limits", {})
                if args.job_type is not None:
                    limits = {t: v for t, v in limits.items() if t == args.job_type}
                print(limits_table(limits))
                return 0
            reply = await monitor.set_type_limits(args.job_type, concurrency=args.concurrency,
                                                  rate=args.rate, per_s=args.per_s,
                                                  group_concurrency=args.group_concurrency)
    except HubError as exc:
        print(f"empfast limit: {exc.frame.get('error', exc)}", file=sys.stderr)
        return 1
    print(f"job type {args.job_type!r}: {describe_limits(reply)}; {reply['pending']} jobs waiting")
    return 0


def limits_table(limits: dict[str, dict[str, Any]]) -> str:
    if not limits:
        return "no limited job types: set one with `empfast limit TYPE --concurrency N`"
    return table(("TYPE", "LIMITS"), [(t, describe_limits(v)) for t, v in sorted(limits.items())])
