"""Shared pieces of the tests (not fixtures)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from empfast.store import Store

# A fixed "now" in ms: tests move time by hand instead of sleeping.
T = 1_800_000_000_000

MakeStore = Callable[..., Awaitable[Store]]
