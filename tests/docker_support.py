"""Docker for the tests: the image built by docker/build.sh (as CI and a user build it), containers
that are always removed, and bounded waits. Docker missing is a skip, or a failure when
EMPFAST_REQUIRE_DOCKER is set (as CI sets it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "docker" / "build.sh"
INSTALL = "apt-get install docker.io docker-compose debootstrap"


def docker_missing(reason: str) -> NoReturn:
    if os.environ.get("EMPFAST_REQUIRE_DOCKER"):
        pytest.fail(f"{reason}, and EMPFAST_REQUIRE_DOCKER is set: {INSTALL}")
    pytest.skip(f"{reason} ({INSTALL}; EMPFAST_REQUIRE_DOCKER=1 makes this a failure)")


def require_docker() -> None:
    """A docker client, and a daemon that answers or that docker/build.sh can start (root)."""
    if not shutil.which("docker"):
        docker_missing("no docker command")
    if docker("info", check=False, timeout=20).returncode == 0:
        return
    if not shutil.which("dockerd") or os.geteuid() != 0:
        docker_missing("no Docker daemon answers, and no dockerd that this user can start")


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One docker command, bounded in time; a failure raises with its output."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def build(tag: str, *options: str, timeout: float = 900) -> float:
    """docker/build.sh TAG (it starts dockerd and makes a local base when needed); its seconds."""
    started = time.monotonic()
    done = subprocess.run(["bash", str(BUILD_SCRIPT), *options, tag], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"docker/build.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return time.monotonic() - started


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).stdout.strip()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               explain: Callable[[], str] = lambda: "") -> float:
    """Poll until check() holds; its seconds. A timeout fails with what was awaited and explain()."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s. {explain()}")
        time.sleep(0.2)
    return time.monotonic() - started


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON log lines of a container's output (the image logs JSON); other lines are left out."""
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                lines.append(entry)
    return lines


class Containers:
    """Containers run by one test, named with a unique prefix and all removed at the end."""

    def __init__(self) -> None:
        self.prefix = f"empfast-test-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []

    def run(self, name: str, *args: str) -> str:
        """docker run -d --name PREFIX-NAME ARGS...; the container's name."""
        full = f"{self.prefix}-{name}"
        self.names.append(full)
        docker("run", "-d", "--name", full, *args)
        return full

    def logs(self, name: str) -> str:
        done = docker("logs", name, check=False, timeout=20)
        return done.stdout + done.stderr

    def all_logs(self) -> str:
        return "\n".join(f"--- {name}:\n{self.logs(name)[-3000:]}" for name in self.names)

    def remove(self) -> None:
        if self.names:
            docker("rm", "-f", "-v", *self.names, check=False, timeout=60)


@contextlib.contextmanager
def containers() -> Iterator[Containers]:
    """Containers removed at the end whatever happens; their logs printed when the test failed."""
    made = Containers()
    try:
        yield made
    except BaseException:
        print(made.all_logs())
        raise
    finally:
        made.remove()
