"""Built-in demo handlers (`sleep`, `echo`, `fail`) and `load_handlers`, which turns the
`empfast worker MODULE:OBJECT` argument into a mapping of job type -> handler."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from empfast.worker import Handler, Job, NonRetryableError, check_handler

BUILTIN_SPECS = frozenset({"", "builtin"})


class HandlerSpecError(ValueError):
    """A MODULE:OBJECT handler spec that cannot be loaded; the message says what to fix."""


def _payload(job: Job) -> dict[str, Any]:
    if job.payload is None:
        return {}
    if not isinstance(job.payload, dict):
        raise NonRetryableError(f"job type {job.job_type!r} takes a JSON object as payload, got "
                                f"{type(job.payload).__name__}")
    return job.payload


async def sleep(job: Job) -> dict[str, float]:
    """Payload {"seconds": float, "steps": int}: sleeps in steps, reporting progress after each."""
    payload = _payload(job)
    try:
        seconds = float(payload.get("seconds", 1.0))
        steps = max(1, int(payload.get("steps", 10)))
    except (TypeError, ValueError) as exc:
        raise NonRetryableError(f"sleep: 'seconds' must be a number and 'steps' an integer ({exc})") from None
    if seconds < 0:
        raise NonRetryableError(f"sleep: 'seconds' must not be negative, got {seconds}")
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await job.progress(100 * step / steps, f"step {step}/{steps}")
    return {"slept": seconds}


async def echo(job: Job) -> Any:
    """Returns the payload as the result."""
    return job.payload


async def fail(job: Job) -> None:
    """Fails with the payload's "message"; for good (no retry) when the payload has "retry": false."""
    payload = _payload(job)
    message = str(payload.get("message") or "failed on purpose")
    if payload.get("retry", True) is False:
        raise NonRetryableError(message)
    raise RuntimeError(message)


BUILTIN_HANDLERS: dict[str, Handler] = {"sleep": sleep, "echo": echo, "fail": fail}


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise HandlerSpecError(
                f"module {module_name!r} was not found: check the name, and run from the directory "
                "that holds it, pass that directory with --app-dir, or add it to PYTHONPATH") from None
        raise HandlerSpecError(f"importing {module_name!r} failed: it imports {missing!r}, which is not "
                               "installed in this environment") from exc


def load_handlers(spec: str) -> dict[str, Handler]:
    """Handlers from "MODULE:OBJECT", where OBJECT is a mapping of job type -> async handler, or a
    callable returning one. "builtin" (or "") gives the demo handlers sleep, echo and fail."""
    spec = spec.strip()
    if spec in BUILTIN_SPECS:
        return dict(BUILTIN_HANDLERS)
    module_name, colon, object_path = spec.partition(":")
    if not colon or not module_name or not object_path:
        raise HandlerSpecError(f"handler spec {spec!r} is not MODULE:OBJECT: write e.g. "
                               "'myapp.jobs:HANDLERS' (a dict of job type -> async handler), or 'builtin' "
                               "for the demo handlers")
    found: Any = _import(module_name)
    for name in object_path.split("."):
        if not hasattr(found, name):
            raise HandlerSpecError(f"{module_name!r} has no {object_path!r}: define it there as a dict of "
                                   "job type -> async handler (or a function returning one)")
        found = getattr(found, name)
    if inspect.iscoroutinefunction(found):
        raise HandlerSpecError(f"{spec!r} is a single handler, not a mapping: export a dict such as "
                               f"{{'my_type': {object_path}}} and name that instead")
    if callable(found) and not isinstance(found, Mapping):
        found = found()
    if not isinstance(found, Mapping):
        raise HandlerSpecError(f"{spec!r} is a {type(found).__name__}, not a mapping: it must be a dict of "
                               "job type -> async handler, or a function returning one")
    if not found:
        raise HandlerSpecError(f"{spec!r} is empty: add at least one job type -> async handler")
    try:
        return {job_type: check_handler(job_type, handler) for job_type, handler in found.items()}
    except (TypeError, ValueError) as exc:
        raise HandlerSpecError(f"{spec!r}: {exc}") from None
