"""The figures of the fault and fuzz tests: short ones by default (CI), the issue's long ones with
EMPFAST_LONG=1, or any one set by its own variable (e.g. EMPFAST_FAULT_ROUNDS=20)."""

from __future__ import annotations

import os


def long_mode() -> bool:
    """EMPFAST_LONG=1: 50 worker kill rounds, 100,000 fuzz examples, and so on."""
    return os.environ.get("EMPFAST_LONG", "").lower() in {"1", "true", "yes"}


def figure(variable: str, short: int, long: int) -> int:
    """A count of a fault or fuzz test: the variable when set, else the long or the short figure."""
    value = os.environ.get(variable, "")
    return int(value) if value else long if long_mode() else short


# one line per fault scenario or fuzz run, printed at the end of a pytest run (tests/faults/conftest.py)
SUMMARY: list[str] = []


def summarize(line: str) -> None:
    """Print a test's figures in its output, and keep them for the run's summary."""
    SUMMARY.append(line)
    print(line)
