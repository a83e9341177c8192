"""The peers of the comparison, and the processes each one needs: BullMQ installed from npm into a
scratch folder, `empfast serve` on the comparison's Redis, and a load process per peer that speaks
steps.py's handshake on its stdin and stdout."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPARE_DIR = Path(__file__).resolve().parent
REPO_ROOT = COMPARE_DIR.parent.parent

# RedisServer, running_redis_server and empfast_serve live in tests/support.py: reuse them, as
# bench/conftest.py does, do not copy them.
TESTS_DIR = REPO_ROOT / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support import REDIS_BINARY, RedisServer, ServedHub, empfast_serve, running_redis_server  # noqa: E402

BULLMQ_VERSION = "6.7.0"
# Since v6 ioredis is an optional peer dependency of bullmq, so it is installed by name: the version
# bullmq 6.7.0 is developed and tested with (its devDependencies).
IOREDIS_VERSION = "5.11.1"
QUEUE = "compare"

SETTINGS = {
    "empfast-sdk": [
        "`empfast serve` (uvloop, one process), default settings, --queue compare",
        "one Python process on uvloop: empfast.client.Client + one empfast.worker.Worker",
        "worker: concurrency C, no-op async handler returning {ok: true} (empfast.benchmark)",
        "enqueue: Client.submit_many, batch_size B (one submit_jobs frame per batch, awaited)",
        "latency: Client.submit, then JobHandle.result()",
    ],
    "empfast-protocol": [
        "`empfast serve` as above",
        "one Python process on uvloop: raw picows WebSocket + orjson, docs/protocol.md only",
        "worker: register_worker concurrency C, batch true; one complete_jobs at once for each jobs_assigned",
        "enqueue: submit_jobs of B jobs, subscribe false, each after the previous reply",
        "latency: submit_job with a job id, then its job_completed event",
    ],
    "bullmq": [
        f"bullmq {BULLMQ_VERSION} + ioredis {IOREDIS_VERSION} from npm, Node.js, one process",
        "Worker: concurrency C, no-op async processor returning {ok: true}; defaults otherwise "
        "(lock 30 s, stalled check 30 s, no metrics)",
        "jobs: removeOnComplete true, removeOnFail 1000 (docs: auto-removal of finished jobs; as fast "
        "as keeping all and cheaper for Redis, where {count: 1000} was slower)",
        "enqueue: Queue.addBulk of B jobs, each after the previous one resolved",
        "latency: Queue.add, then the job's 'completed' event from QueueEvents (not "
        "job.waitUntilFinished, which adds an isFinished script per job and fails on a removed job)",
    ],
}


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    return Path(os.environ.get("EMPFAST_BENCH_CACHE") or Path.home() / ".cache" / "empfast-bench")


def install_bullmq(cache_dir: Path) -> Path:
    """The scratch folder holding node_modules/bullmq at the pinned version, installed by npm on
    first use and kept for the next runs. Nothing of BullMQ is written into the repository."""
    folder = cache_dir / f"bullmq-{BULLMQ_VERSION}-ioredis-{IOREDIS_VERSION}"
    installed = folder / "installed"
    if installed.exists():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: install Node.js and npm, or use --only empfast")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"private": True, "dependencies": {"bullmq": BULLMQ_VERSION, "ioredis": IOREDIS_VERSION}}
    (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"installing bullmq {BULLMQ_VERSION} and ioredis {IOREDIS_VERSION} with npm into {folder}")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel", "error"], cwd=folder,
                   check=True, stdout=subprocess.DEVNULL)
    # the marker is written last, so an interrupted install is redone next time
    installed.write_text(f"bullmq {BULLMQ_VERSION}, ioredis {IOREDIS_VERSION}\n")
    return folder


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    """The run's one redis-server, of its own, on a free loopback port (never 6379)."""
    if not REDIS_BINARY:
        raise RuntimeError("no redis-server on PATH: install it (apt-get install redis-server)")
    with running_redis_server("the comparison needs a redis-server") as server:
        yield server


@contextlib.contextmanager
def served_hub(redis_url: str) -> Iterator[ServedHub]:
    """`empfast serve` in its own process, as a user runs it (tests/support.py's empfast_serve)."""
    with empfast_serve(redis_url, QUEUE, cwd=REPO_ROOT) as hub:
        yield hub


class LoadProcess:
    """A peer's load process: its stdout lines are read by a thread, so every wait has a timeout,
    and a process that dies is reported instead of waited for."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT,
                                     text=True)
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, event: str, workload: str | None = None, timeout_s: float = 60) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"no {event!r} from the load process within {timeout_s:g} s") from None
        if line is None:
            raise RuntimeError(f"the load process ended (exit {self.proc.wait()}) before {event!r}")
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            raise RuntimeError(f"the load process wrote a line that is not JSON: {line!r}") from None
        if message.get("event") != event or (workload and message.get("workload") != workload):
            raise RuntimeError(f"expected {event!r} {workload or ''} from the load process, got {line}")
        return message

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 30) -> None:
        """Wait for a clean exit after the last workload; kill it if it does not come."""
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("the load process did not exit after its last workload") from None
        if code != 0:
            raise RuntimeError(f"the load process exited with {code}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class Peer:
    """A peer's load process: an empfast one (a Python module, against a hub of its own) or
    BullMQ's (bullmq_load.mjs under node, straight on Redis)."""

    name: str
    python_module: str | None

    @property
    def needs_hub(self) -> bool:
        return self.python_module is not None

    def command(self, *, hub_url: str | None, redis_port: int, modules: Path | None,
                load_args: list[str]) -> list[str]:
        if self.python_module is not None:
            assert hub_url is not None
            return [sys.executable, "-m", self.python_module, "--url", hub_url, *load_args]
        assert modules is not None
        return [shutil.which("node") or "node", str(COMPARE_DIR / "bullmq_load.mjs"), "--modules",
                str(modules), "--redis-port", str(redis_port), *load_args]


EMPFAST_SDK = Peer("empfast-sdk", "bench.compare.sdk_load")
EMPFAST_PROTOCOL = Peer("empfast-protocol", "bench.compare.protocol_load")
BULLMQ = Peer("bullmq", None)
PEERS = (EMPFAST_SDK, EMPFAST_PROTOCOL, BULLMQ)
