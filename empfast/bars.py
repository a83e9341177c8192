"""Progress output for the command line: lines redrawn in place on a terminal, or one plain line
every few seconds when the output is a file or a pipe (logs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def bar(fraction: float, width: int = 24) -> str:
    filled = max(0, min(width, round(width * fraction)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def percentile(sorted_values: list[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Board:
    """A block of status lines. `show` redraws at most every `interval_s` (always when forced)."""

    def __init__(self, stream: TextIO = sys.stderr, interval_s: float = 0.1,
                 plain_interval_s: float = 2.0) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.interval_s = interval_s if self.live else plain_interval_s
        self._drawn = 0
        self._last = 0.0

    def show(self, lines: list[str], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        if not self.live:
            if lines:
                print(lines[0], file=self.stream, flush=True)
            return
        # move up over the previous block, overwrite it line by line, clear what is left below
        out = "\x1b[F" * self._drawn + "".join(f"\x1b[2K{line}\n" for line in lines) + "\x1b[J"
        self.stream.write(out)
        self.stream.flush()
        self._drawn = len(lines)

    def close(self, lines: list[str]) -> None:
        """Draw the final state once more, so it stays on screen."""
        self.show(lines, force=True)
