"""SIGINT and SIGTERM for a worker process: the first asks for a graceful stop, a second cuts the
grace period short (the Worker decides what each means)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable


def on_stop_signals(handler: Callable[[signal.Signals], None]) -> Callable[[], None]:
    """Call `handler(sig)` on SIGINT and SIGTERM until the returned function is called. Only the
    main thread may own signals: elsewhere (and where the platform has none) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals on this platform
            loop.add_signal_handler(sig, handler, sig)
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove
