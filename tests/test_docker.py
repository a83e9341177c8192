"""The Docker image, built by docker/build.sh as CI and users build it, and run for real: a hub
container and a worker container on a redis-server of the test's own, a job from the host through
the client SDK, the image's health check, a clean stop on SIGTERM; and the compose file.

Containers use the host's network (loopback only), so nothing leaves this machine. Skipped when
Docker is missing, unless EMPFAST_REQUIRE_DOCKER is set (CI sets it): then that is a failure.
The figures (build seconds, image bytes) go to $EMPFAST_ARTIFACTS/docker.json when it is set."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import (
    build,
    containers,
    docker,
    image_size,
    inspect,
    json_lines,
    require_docker,
    wait_until,
)
from support import RedisServer, free_port, listening

from empfast.client import Client

IMAGE = "empfast:test"
FIGURES: dict[str, float] = {}


def record(**figures: float) -> None:
    """Keep a figure: printed, and written with the others to the CI artefacts when they are kept."""
    FIGURES.update(figures)
    print(", ".join(f"{name} {value:g}" for name, value in figures.items()))
    if folder := os.environ.get("EMPFAST_ARTIFACTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "docker.json").write_text(json.dumps(FIGURES, indent=1) + "\n")


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The project's image, built once for this module (kept afterwards: its layers cache the
    next build)."""
    require_docker()
    seconds = build(IMAGE)
    record(image_build_s=round(seconds, 1), image_mb=round(image_size(IMAGE) / 1e6, 1))
    yield IMAGE


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


async def run_one_job(url: str) -> object:
    async with Client(url) as client:
        job = await client.submit("echo", {"from": "the host"})
        return await job.result(timeout=30)


def test_the_image_holds_a_venv_and_no_compiler_and_runs_as_a_user(image: str) -> None:
    assert inspect(image, "{{.Config.User}}") == "empfast"
    assert inspect(image, "{{json .Config.Entrypoint}}") == '["empfast"]'
    assert inspect(image, "{{json .Config.Cmd}}") == '["serve"]'
    found = docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                   "command -v gcc cc || true; command -v empfast; id -u", timeout=60).stdout.split()
    assert found == ["/opt/empfast/bin/empfast", "10001"], found


def test_a_hub_and_a_worker_in_containers_run_a_job_on_redis(image: str, redis_server: RedisServer) -> None:
    """The hub and worker containers on the test's redis-server; the job comes from the host."""
    port, http_port = free_port(), free_port()
    # on the host's network the hub listens on loopback only, not on every interface of the machine
    network = ["--network", "host", "-e", "EMPFAST_HOST=127.0.0.1"]
    started = time.monotonic()
    with containers() as made:
        hub = made.run("hub", *network, "--health-interval", "1s", "-e", f"EMPFAST_PORT={port}",
                       "-e", f"EMPFAST_HTTP_PORT={http_port}", "-e", f"EMPFAST_REDIS_URL={redis_server.url}",
                       image, "serve", "--queue", "docker-test")
        wait_until(lambda: listening(port), 30, "the hub container listens", made.all_logs)
        worker = made.run("worker", *network, "--health-interval", "1s",
                          "-e", f"EMPFAST_URL=ws://127.0.0.1:{port}", image, "worker", "--concurrency", "2")

        assert asyncio.run(run_one_job(f"ws://127.0.0.1:{port}")) == {"from": "the host"}

        status, page = http_get(f"http://127.0.0.1:{http_port}/")  # the dashboard, from the package data
        assert status == 200 and "<title>empfast</title>" in page
        assert http_get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200  # Redis and the Lua scripts
        for name in (hub, worker):
            wait_until(lambda name=name: inspect(name, "{{.State.Health.Status}}") == "healthy", 30,
                       f"{name} is healthy", lambda name=name: inspect(name, "{{json .State.Health}}"))
        assert docker("exec", hub, "id", "-un").stdout.strip() == "empfast"

        stopping = time.monotonic()
        docker("stop", "--time", "10", hub, timeout=30)  # SIGTERM, then SIGKILL after 10 s
        stop_s = time.monotonic() - stopping
        assert inspect(hub, "{{.State.ExitCode}}") == "0", made.logs(hub)
        assert stop_s < 5, f"the hub took {stop_s:.1f} s to stop on SIGTERM"
        messages = [line.get("msg") for line in json_lines(made.logs(hub))]
        assert "stopping" in messages and messages[-1] == "stopped", messages
    record(container_run_s=round(time.monotonic() - started, 1), hub_stop_s=round(stop_s, 2))
