"""One file to deploy: empfast as a shiv zipapp (the package, its dependencies and their compiled
extensions in one .pyz), built as the README says and run by a bare Python: `-I -S`, so no venv,
no site-packages and no PYTHON* variable can lend it a module. A hub served from the file on the
test's redis-server runs a job of a worker and a client from the SDKs of this checkout."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RedisServer, free_port, listening

from empfast.client import Client
from empfast.worker import Job, Worker

ROOT = Path(__file__).resolve().parent.parent
# the interpreter the venv was made from: Python alone, as on a machine that has nothing else
BARE_PYTHON = sys._base_executable


def build_pyz(out: Path) -> None:
    """The README's command: shiv installs the project and its dependencies with pip, then zips;
    from a copy of the working tree without build/ (setuptools adds to what an older build left
    there, such as a script that was renamed since: seen here)."""
    tree = out.parent / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "artifacts", "*.pyz"))
    done = subprocess.run([sys.executable, "-m", "shiv", "-c", "empfast", "-o", str(out), str(tree)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"shiv failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """empfast.pyz, built once per test session in a folder of its own."""
    pytest.importorskip("shiv", reason="shiv is in the test extra: pip install -e '.[test]'")
    out = tmp_path_factory.mktemp("pyz") / "empfast.pyz"
    started = time.monotonic()
    build_pyz(out)
    print(f"empfast.pyz: {out.stat().st_size / 1e6:.1f} MB, built in {time.monotonic() - started:.1f} s")
    return out


@pytest.fixture
def served_from_pyz(pyz: Path, redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`python -I -S empfast.pyz serve` on the test's Redis until it listens; SIGTERM at the end,
    and its exit code and log checked: a clean stop."""
    port, http_port = free_port(), free_port()
    # shiv unpacks the file once into SHIV_ROOT (default ~/.shiv): here, the test's own folder
    env = {"PATH": os.environ.get("PATH", ""), "SHIV_ROOT": str(tmp_path / "shiv")}
    log_path = tmp_path / "hub.log"
    with log_path.open("wb") as log:
        hub = subprocess.Popen([BARE_PYTHON, "-I", "-S", str(pyz), "serve", "--port", str(port),
                                "--http-port", str(http_port), "--redis-url", redis_server.url,
                                "--queue", "pyz"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60  # the first run unpacks the file
        while not listening(port):
            assert hub.poll() is None, f"the .pyz hub exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"the .pyz hub did not listen: {log_path.read_text()}"
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}", http_port
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(timeout=20) == 0, log_path.read_text()
        assert log_path.read_text().rstrip().endswith("stopped")
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait(timeout=10)


async def test_a_hub_served_from_the_single_file_runs_a_job(served_from_pyz: tuple[str, int]) -> None:
    url, http_port = served_from_pyz

    async def double(job: Job) -> int:
        return 2 * job.payload["n"]

    worker = Worker(url, {"double": double}, concurrency=1, ack_timeout_s=2.0)
    await worker.start()
    try:
        async with Client(url) as client:
            job = await client.submit("double", {"n": 21})
            assert await job.result(timeout=20) == 42
    finally:
        await worker.stop(grace_s=0)
    # the package data came along: the dashboard's files (and the Lua scripts, or no job had run)
    page = await asyncio.to_thread(lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{http_port}/", timeout=5).read().decode())
    assert "<title>empfast</title>" in page
